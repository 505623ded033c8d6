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

from dataclasses import dataclass
from typing import TYPE_CHECKING
from ravlm_graph.retrieval.config import RETRIEVAL_METHODS
from ravlm_graph.nn.gnn import GNN_KINDS
from ravlm_graph.utils.config import Config


if TYPE_CHECKING:  # pragma: no cover

    pass

#: Model variants: text only, and text + knowledge-graph read-out.
VARIANTS: tuple[str, ...] = ("no_kg", "kg")
ORIGIN_OTHER, ORIGIN_QUESTION, ORIGIN_CHOICE, ORIGIN_BOTH, ORIGIN_CONTEXT = 0, 1, 2, 3, 4
_NUM_ORIGINS = 5


@dataclass(frozen=True)
class CSQAConfig(Config):
    """Settings shared by both variants (the KG-only ones are ignored by ``no_kg``).

    Args:
        epochs (int): passes over the training questions (default 10).
        batch_size (int): questions per step (default 32).
        lr (float): AdamW learning rate (default 1e-3).
        weight_decay (float): AdamW weight decay (default 0.01).
        hidden (int): width of the scoring MLP (default 256).
        dropout (float): dropout in the MLP and the GNN (default 0.2).
        val_fraction (float): share of the training questions held out to pick the best
            epoch (default 0.1; 0: train on all and keep the last epoch).
        seed (int): seed of the split, the initialisation, dropout and the order (default 0).
        gnn_kind (str): graph convolution (default ``"gatv2"``).
        gnn_hidden (int): node-state width (default 64).
        gnn_layers (int): message-passing layers (default 2).
        gnn_heads (int): attention heads (default 4).
        budget (int): nodes per retrieved subgraph, seeds included (default 32).
        method (str): retrieval pruning (default ``"ppr"``; ``"hybrid"`` also needs the
            name embeddings of every candidate node, i.e. most of the store).
        max_facts (int): facts per choice written to the predictions (default 3).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    hidden: int = 256
    dropout: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    gnn_kind: str = "gatv2"
    gnn_hidden: int = 64
    gnn_layers: int = 2
    gnn_heads: int = 4
    budget: int = 32
    method: str = "ppr"
    max_facts: int = 3

    def __post_init__(self) -> None:
        o = "CSQAConfig"
        for name in ("epochs", "batch_size", "hidden", "gnn_hidden", "gnn_heads", "budget"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{o}.{name}: expected an integer >= 1, found {v!r}")
        for name in ("gnn_layers", "max_facts", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{o}.{name}: expected an integer >= 0, found {v!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"{o}.val_fraction: expected a number in [0, 1), found {self.val_fraction!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{o}.dropout: expected a number in [0, 1), found {self.dropout!r}")
        if not self.lr > 0:
            raise ValueError(f"{o}.lr: expected a number > 0, found {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"{o}.weight_decay: expected a number >= 0, found {self.weight_decay!r}")

        if self.method not in RETRIEVAL_METHODS:
            raise ValueError(f"{o}.method: expected one of {RETRIEVAL_METHODS}, found {self.method!r}")
        if self.gnn_kind not in GNN_KINDS:
            raise ValueError(f"{o}.gnn_kind: expected one of {GNN_KINDS}, found {self.gnn_kind!r}")
        if self.gnn_hidden % self.gnn_heads:
            raise ValueError(f"{o}.gnn_heads: expected a divisor of gnn_hidden={self.gnn_hidden}, "
                             f"found {self.gnn_heads}")
