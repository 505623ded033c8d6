"""CommonsenseQA (multiple choice) with and without the knowledge graph: a QA-GNN-lite.

What the model is: a **small scorer trained on top of frozen all-MiniLM-L6-v2 sentence
embeddings** — not a fine-tuned language model. Each (question, choice) pair gets one
score; the choices of a question compete through a softmax (cross-entropy over the
choices). Two variants, trained with identical settings so that the difference is the
knowledge graph only:

* ``no_kg`` — text only. Features of a pair: the frozen MiniLM embedding ``t`` of
  ``"<question> <choice>"``, the embedding ``c`` of the choice alone, and ``t * c``;
  a two-layer MLP maps them to a score. This is "the MiniLM-based model without the KG".
* ``kg`` — the same text features, plus a graph read-out (after QA-GNN, Yasunaga et al.,
  NAACL 2021, https://arxiv.org/abs/2104.06378, much reduced):

  1. seeds: the concepts grounded in the question (plus the dataset's question concept)
     and the concepts grounded in the choice text;
  2. a small subgraph around the seeds is retrieved (personalised PageRank pruning,
     ``budget`` nodes) from the store;
  3. node features: the MiniLM embedding of the concept name, an origin embedding
     (question / choice / both / other / context) and the retrieval relevance;
  4. a context node carrying ``t`` is linked to every seed (two extra relation types:
     context-question, context-choice), which conditions the graph on the pair;
  5. a 2-layer GATv2 :class:`~ravlm_graph.gnn.GraphEncoder` with relation-type edge
     features;
  6. read-out: attention pooling over the concept nodes with a projection of ``t`` as
     the query, the context node's final state, and the mean state of the choice's
     own concept nodes; these join the text features in the scoring MLP.

Every expensive feature (text embeddings, grounding, subgraphs, node-name embeddings)
is computed once per run, with a progress bar; training epochs then only gather
tensors. Training is seeded: the same seed and data give the same scores. A held-out
slice of the *training* file (``val_fraction``) picks the best epoch; the dev file is
used only for the reported accuracy.

Run it::

    python -m ravlm_graph.csqa --train train.jsonl --dev valid.jsonl --out runs/csqa

which writes ``results.json``, ``results.md`` and ``predictions_<variant>.jsonl`` into
``--out``. :func:`run_csqa` is the same from Python and accepts an injected encoder and
store (tests use a hash stand-in encoder and a tiny graph).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from ravlm_graph.models.csqa.configuration import ORIGIN_BOTH, ORIGIN_CHOICE
from ravlm_graph.models.csqa.configuration import CSQAConfig, _NUM_ORIGINS
from ravlm_graph.models.csqa.processing import _GraphBatch
from ravlm_graph.nn.gnn import GNNConfig, GraphEncoder

if TYPE_CHECKING:  # pragma: no cover

    pass


# --------------------------------------------------------------------------- model

class ChoiceScorer(nn.Module):
    """Scores (question, choice) pairs from frozen text embeddings, optionally with a graph.

    Args:
        text_dim: width D of the sentence embeddings.
        config: the run settings.
        num_relations: relation types of the store (None: text only, the ``no_kg`` variant).

    Shapes:
        ``forward(text (P, 3D), pair_emb (P, D), graph, node_table (U, D))`` -> (P,) scores.
    """

    def __init__(self, text_dim: int, config: CSQAConfig, num_relations: int | None = None) -> None:
        super().__init__()
        self.text_dim = int(text_dim)
        self.use_kg = num_relations is not None
        in_dim = 3 * self.text_dim
        if self.use_kg:

            h = config.gnn_hidden
            self.gnn = GraphEncoder(GNNConfig(kind=config.gnn_kind, in_dim=self.text_dim, hidden_dim=h,
                                              num_layers=config.gnn_layers, num_relations=num_relations + 2,
                                              num_origins=_NUM_ORIGINS, heads=config.gnn_heads,
                                              dropout=config.dropout))
            self.query = nn.Linear(self.text_dim, h)
            in_dim += 3 * h
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(in_dim, config.hidden), nn.GELU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.hidden, 1))

    def forward(self, text: torch.Tensor, pair_emb: torch.Tensor | None = None, graph: _GraphBatch | None = None,
                node_table: torch.Tensor | None = None) -> torch.Tensor:
        feats = [text]
        if self.use_kg:
            if graph is None or node_table is None or pair_emb is None:
                raise ValueError("ChoiceScorer: the kg variant needs pair embeddings, graphs and the node table")
            feats += list(self._graph_readout(pair_emb, graph, node_table))
        return self.head(torch.cat(feats, dim=-1)).squeeze(-1)

    def _graph_readout(self, pair_emb: torch.Tensor, g: _GraphBatch, node_table: torch.Tensor):
        from torch_geometric.data import Data
        from torch_geometric.utils import scatter, softmax

        n_graphs = pair_emb.shape[0]
        x = torch.empty(g.origin.shape[0], self.text_dim)
        is_ctx = g.x_rows < 0
        x[~is_ctx] = node_table[g.x_rows[~is_ctx]]
        x[g.ctx_pos] = pair_emb
        data = Data(x=x, edge_index=g.edge_index, edge_type=g.edge_type, origin=g.origin,
                    node_relevance=g.relevance, batch=g.batch, num_nodes=x.shape[0])
        h = self.gnn(data, num_graphs=n_graphs).node_states  # (N, H)
        ctx_state = h[g.ctx_pos]  # (G, H)
        concept = ~is_ctx
        hb, bb = h[concept], g.batch[concept]
        q = self.query(pair_emb)  # (G, H)
        score = (hb * q[bb]).sum(-1) / math.sqrt(h.shape[1])
        w = softmax(score, bb, num_nodes=n_graphs)
        pooled = scatter(hb * w.unsqueeze(-1), bb, dim=0, dim_size=n_graphs, reduce="sum")  # (G, H)
        ch = (g.origin == ORIGIN_CHOICE) | (g.origin == ORIGIN_BOTH)
        choice_mean = scatter(h[ch], g.batch[ch], dim=0, dim_size=n_graphs, reduce="mean")  # (G, H)
        return pooled, ctx_state, choice_mean
