"""The CommonsenseQA scorer: a fine-tuned cross-encoder, optionally joined with a graph module.

Each (question, choice) pair is read by a pretrained text transformer (the trunk,
all-MiniLM-L6-v2 by default, maybe only its first layers) as
``[CLS] question [SEP] choice [SEP]``; its pooled state gives the pair's score, and the
choices of a question compete through a softmax (cross-entropy over the choices).

With ``use_kg`` a graph module joins the trunk, after QA-GNN (Yasunaga et al., NAACL
2021, https://arxiv.org/abs/2104.06378), much reduced:

1. the pair's subgraph (retrieved around the question's and the choice's concepts, see
   :mod:`~ravlm_graph.models.csqa.processing`) gets a context node, linked to every seed by
   two extra relation types (context-question, context-choice);
2. node features: the frozen name embedding of each concept, an origin embedding
   (question / choice / both / other / context) and the retrieval relevance; the context
   node's features are a projection of the pair's pooled trunk state, so the graph is
   conditioned on the pair and its gradients reach the trunk;
3. a :class:`~ravlm_graph.nn.gnn.GraphEncoder` (GATv2 with relation-type edge features);
4. read-out: attention pooling over the concept nodes (query: the pooled text state), the
   context node's final state and the mean state of the choice's own concept nodes; they
   join the pooled text state in the scoring MLP;
5. optionally (``link_features``), how the subgraph links the question's concepts to the
   choice's (edge counts per relation and direction, two-step paths), through one layer,
   also into the scoring MLP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ravlm_graph.models.csqa.configuration import (FORMAT, FORMAT_VERSION, NUM_ORIGINS, ORIGIN_BOTH, ORIGIN_CHOICE,
                                                   CSQAConfig)
from ravlm_graph.models.csqa.processing import CSQABatch, GraphBatch, num_link_features
from ravlm_graph.nn.gnn import GNNConfig, GraphEncoder
from ravlm_graph.retrieval.embeddings import minilm_path
from ravlm_graph.utils.graph import GraphData, scatter, segment_softmax
from ravlm_graph.utils.checkpoint import CheckpointError, read_config, read_weights, write_checkpoint


def load_trunk(config: CSQAConfig):
    """The tokenizer and the text transformer named by ``config.text_backbone``, cut to
    ``config.trunk_layers`` layers."""
    from transformers import AutoModel, AutoTokenizer  # heavy optional dependency

    spec = config.text_backbone
    path = str(minilm_path()) if spec == "minilm" else spec
    if spec != "minilm" and not Path(path).is_dir():
        raise CheckpointError(f"text_backbone: {path!r} is neither 'minilm' nor a local model folder")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    trunk = AutoModel.from_pretrained(path, local_files_only=True)
    n = len(trunk.encoder.layer)
    if config.trunk_layers > n:
        raise ValueError(f"CSQAConfig.trunk_layers: expected at most the trunk's {n} layers, "
                         f"found {config.trunk_layers}")
    if config.trunk_layers:
        trunk.encoder.layer = trunk.encoder.layer[:config.trunk_layers]
        trunk.config.num_hidden_layers = config.trunk_layers
    return tokenizer, trunk


@dataclass
class CSQAOutput:
    """Output of :class:`CSQAModel`.

    Fields:
        logits (Q, C) float: choice scores; padding choices are ``-inf``.
        loss () float: cross-entropy over the choices, when the batch has labels (else None).
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None


class CSQAModel(nn.Module):
    """Scores the choices of CommonsenseQA questions (see the module docstring).

    Args:
        config (CSQAConfig): the settings; ``num_relations`` and ``node_dim`` must match the
            store and the node-name encoder when ``use_kg``.
        trunk: an already loaded text transformer (None: loaded from ``config.text_backbone``).

    Shapes:
        ``forward(batch)`` with Q questions and C choices -> :class:`CSQAOutput` with
        ``logits`` (Q, C).
    """

    def __init__(self, config: CSQAConfig, trunk=None) -> None:
        super().__init__()
        if config.use_kg and config.num_relations < 1:
            raise ValueError("CSQAConfig.num_relations: the kg variant needs the store's relation count, found 0")
        self.config = config
        if trunk is None:
            _, trunk = load_trunk(config)
        self.trunk = trunk
        if config.freeze_embeddings:
            trunk.embeddings.requires_grad_(False)
        layers = trunk.encoder.layer
        if config.train_layers > len(layers):
            raise ValueError(f"CSQAConfig.train_layers: expected at most the trunk's {len(layers)} layers, "
                             f"found {config.train_layers}")
        if config.train_layers:
            for layer in layers[:len(layers) - config.train_layers]:
                layer.requires_grad_(False)
        d = trunk.config.hidden_size
        in_dim = d
        if config.use_kg:
            h = config.gnn_hidden
            self.context = nn.Linear(d, config.node_dim)
            self.gnn = GraphEncoder(GNNConfig(kind=config.gnn_kind, in_dim=config.node_dim, hidden_dim=h,
                                              num_layers=config.gnn_layers, num_relations=config.num_relations + 2,
                                              num_origins=NUM_ORIGINS, heads=config.gnn_heads,
                                              dropout=config.dropout))
            self.query = nn.Linear(d, h)
            in_dim += 3 * h
            if config.link_features:
                self.link = nn.Sequential(nn.Linear(num_link_features(config.num_relations), h), nn.GELU())
                in_dim += h
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(in_dim, config.hidden), nn.GELU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.hidden, 1))

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(variant={c.variant!r}, trunk_layers={len(self.trunk.encoder.layer)}, "
                f"train_layers={c.train_layers or 'all'}, pooling={c.pooling!r}, "
                f"gnn={c.gnn_kind if c.use_kg else None!r})")

    def backbone_parameters(self):
        """The pretrained trunk's parameters (fine-tuned with ``TrainConfig.backbone_lr``)."""
        return self.trunk.parameters()

    def forward(self, batch: CSQABatch) -> CSQAOutput:
        q, c = batch.choice_mask.shape
        states = self.trunk(**batch.tokens).last_hidden_state  # (P, L, D)
        if self.config.pooling == "cls":
            text = states[:, 0]  # (P, D)
        else:
            m = batch.tokens["attention_mask"].unsqueeze(-1).to(states.dtype)  # (P, L, 1)
            text = (states * m).sum(1) / m.sum(1).clamp(min=1.0)  # (P, D)
        feats = [text]
        if self.config.use_kg:
            if batch.graph is None:
                raise ValueError("CSQAModel: the kg variant needs the pairs' subgraphs, found a batch without them")
            feats += list(self._graph_readout(text, batch.graph))
        logits = self.head(torch.cat(feats, dim=-1)).view(q, c)  # (Q, C)
        logits = logits.masked_fill(~batch.choice_mask, float("-inf"))
        loss = None
        if batch.labels is not None:
            loss = nn.functional.cross_entropy(logits, batch.labels)
        return CSQAOutput(logits=logits, loss=loss)

    def _graph_readout(self, text: torch.Tensor, g: GraphBatch):
        n_graphs = text.shape[0]
        x = g.x.clone()
        x[g.ctx_pos] = self.context(text)  # (G, node_dim)
        data = GraphData(x=x, edge_index=g.edge_index, edge_type=g.edge_type, origin=g.origin,
                    node_relevance=g.relevance, batch=g.batch, num_nodes=x.shape[0])
        h = self.gnn(data, num_graphs=n_graphs).node_states  # (N, H)
        ctx_state = h[g.ctx_pos]  # (G, H)
        concept = torch.ones(h.shape[0], dtype=torch.bool)
        concept[g.ctx_pos] = False
        hb, bb = h[concept], g.batch[concept]
        q = self.query(text)  # (G, H)
        score = (hb * q[bb]).sum(-1) / math.sqrt(h.shape[1])
        w = segment_softmax(score, bb, n_graphs)
        pooled = scatter(hb * w.unsqueeze(-1), bb, dim=0, dim_size=n_graphs, reduce="sum")  # (G, H)
        ch = (g.origin == ORIGIN_CHOICE) | (g.origin == ORIGIN_BOTH)
        choice_mean = scatter(h[ch], g.batch[ch], dim=0, dim_size=n_graphs, reduce="mean")  # (G, H)
        if not self.config.link_features:
            return pooled, ctx_state, choice_mean
        if g.links is None:
            raise ValueError("CSQAModel: link_features needs the pairs' link counts, found a batch without them")
        return pooled, ctx_state, choice_mean, self.link(torch.log1p(g.links))  # (G, H)

    # ----------------------------------------------------------- save / load
    def save_pretrained(self, path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (atomically) into the folder ``path``."""
        return write_checkpoint(path, self.config.to_dict(), self.state_dict(), format_name=FORMAT,
                                format_version=FORMAT_VERSION)

    @classmethod
    def from_pretrained(cls, path) -> "CSQAModel":
        """Load a folder written by :meth:`save_pretrained` (the trunk's architecture and
        tokenizer come from ``text_backbone``, its weights from the folder)."""
        cfg = read_config(path, FORMAT, FORMAT_VERSION)
        body = {k: v for k, v in cfg.items() if k not in ("format", "format_version")}
        try:
            config = CSQAConfig.from_dict(body)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{Path(path) / 'config.json'}: {e}") from e
        model = cls(config)
        read_weights(path, model)
        return model.eval()
