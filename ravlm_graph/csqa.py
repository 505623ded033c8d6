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

import argparse
import copy
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

    from .datasets.records import VQARecord

logger = logging.getLogger(__name__)

__all__ = ["VARIANTS", "CSQAConfig", "TextFeatures", "GraphFeatures", "ChoiceScorer", "build_text_features",
           "build_graph_features", "train_variant", "predict", "run_csqa", "add_arguments", "run_from_args",
           "main"]

#: Model variants: text only, and text + knowledge-graph read-out.
VARIANTS: tuple[str, ...] = ("no_kg", "kg")

# Node origins seen by the graph encoder. 1-3 are the retriever's codes, with its
# second origin slot ("image") carrying the answer-choice concepts.
ORIGIN_OTHER, ORIGIN_QUESTION, ORIGIN_CHOICE, ORIGIN_BOTH, ORIGIN_CONTEXT = 0, 1, 2, 3, 4
_NUM_ORIGINS = 5


@dataclass(frozen=True)
class CSQAConfig:
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
        from .config import RETRIEVAL_METHODS
        from .gnn import GNN_KINDS

        if self.method not in RETRIEVAL_METHODS:
            raise ValueError(f"{o}.method: expected one of {RETRIEVAL_METHODS}, found {self.method!r}")
        if self.gnn_kind not in GNN_KINDS:
            raise ValueError(f"{o}.gnn_kind: expected one of {GNN_KINDS}, found {self.gnn_kind!r}")
        if self.gnn_hidden % self.gnn_heads:
            raise ValueError(f"{o}.gnn_heads: expected a divisor of gnn_hidden={self.gnn_hidden}, "
                             f"found {self.gnn_heads}")


# --------------------------------------------------------------------------- data

def load_questions(path: str | os.PathLike, *, limit: int | None = None, what: str = "file") -> list["VQARecord"]:
    """The labelled CommonsenseQA records of ``path`` (the first ``limit`` of them).

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed records (from :func:`~ravlm_graph.datasets.loaders.load_csqa`),
            or no record with an answer key.
    """
    from .datasets.loaders import load_csqa

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: expected the CommonsenseQA {what} (JSON lines), found no such file")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected an integer >= 1 or None, found {limit!r}")
    records = [r for r in load_csqa(p) if r.correct_choice is not None and r.choices]
    if not records:
        raise ValueError(f"{p}: expected labelled CommonsenseQA records (with an 'answerKey'), found none")
    return records[:limit] if limit is not None else records


def _num_choices(records: Sequence["VQARecord"]) -> int:
    return max(len(r.choices) for r in records)


@dataclass
class TextFeatures:
    """Frozen sentence embeddings of one question set, padded to ``C`` choices.

    Fields:
        pair (Q, C, D) float32: embedding of ``"<question> <choice>"``.
        choice (Q, C, D) float32: embedding of the choice text alone.
        mask (Q, C) bool: real choices (False: padding).
        labels (Q,) long: index of the correct choice.
    """

    pair: np.ndarray
    choice: np.ndarray
    mask: np.ndarray
    labels: np.ndarray

    @property
    def num_questions(self) -> int:
        return int(self.pair.shape[0])

    @property
    def num_choices(self) -> int:
        return int(self.pair.shape[1])

    def features(self) -> torch.Tensor:
        """(Q, C, 3D) ``[pair, choice, pair * choice]``."""
        t, c = torch.from_numpy(self.pair), torch.from_numpy(self.choice)
        return torch.cat([t, c, t * c], dim=-1)


def pair_text(question: str, choice: str) -> str:
    """The text embedded for a (question, choice) pair."""
    return f"{question.strip()} {choice.strip()}"


def build_text_features(records: Sequence["VQARecord"], encoder, *, num_choices: int | None = None,
                        progress: bool = False) -> TextFeatures:
    """Embed every (question, choice) pair and every distinct choice text once."""
    q, c = len(records), num_choices or _num_choices(records)
    pairs, where, choice_texts = [], [], {}
    for i, r in enumerate(records):
        for j, ch in enumerate(r.choices):
            pairs.append(pair_text(r.question, ch))
            where.append((i, j))
            choice_texts.setdefault(ch.strip(), len(choice_texts))
    d = int(encoder.dim)
    pair = np.zeros((q, c, d), dtype=np.float32)
    choice = np.zeros((q, c, d), dtype=np.float32)
    mask = np.zeros((q, c), dtype=bool)
    vec = np.asarray(encoder.encode(pairs, progress=progress), dtype=np.float32)
    cvec = np.asarray(encoder.encode(list(choice_texts), progress=progress), dtype=np.float32)
    for k, (i, j) in enumerate(where):
        pair[i, j] = vec[k]
        choice[i, j] = cvec[choice_texts[records[i].choices[j].strip()]]
        mask[i, j] = True
    labels = np.asarray([r.correct_choice for r in records], dtype=np.int64)
    return TextFeatures(pair, choice, mask, labels)


@dataclass
class GraphFeatures:
    """One retrieved subgraph per (question, choice) pair, stored flat.

    Pair ``p = question * C + choice``; its nodes are ``node_ptr[p]:node_ptr[p+1]`` and its
    edges ``edge_ptr[p]:edge_ptr[p+1]`` (``edge_index`` local to the pair's graph).

    Fields:
        node_store_id (N,) long: store ids; node_origin (N,) long (0-3, see module);
        node_relevance (N,) float32; edge_index (2, E) long; edge_type (E,) long;
        choice_concepts / facts: per pair, for the predictions file.
        num_relations: relation types of the store.
        info: grounding and retrieval counts.
    """

    num_choices: int
    node_ptr: np.ndarray
    node_store_id: np.ndarray
    node_origin: np.ndarray
    node_relevance: np.ndarray
    edge_ptr: np.ndarray
    edge_index: np.ndarray
    edge_type: np.ndarray
    num_relations: int
    choice_concepts: list[list[str]] = field(default_factory=list)
    facts: list[list[str]] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def num_nodes(self, p: int) -> int:
        return int(self.node_ptr[p + 1] - self.node_ptr[p])


def _question_entities(grounder, record) -> list:
    from .grounding.types import Entity

    ents = {e.concept: e for e in grounder.ground(record.question).entities}
    if record.question_concept:
        ents[record.question_concept] = Entity(record.question_concept, 1.0, "question")
    return list(ents.values())


def _choice_entities(grounder, kg, text: str) -> list:
    from .grounding.types import Entity

    found = list(grounder.ground(text).entities)
    if not found and kg.lookup(text) is not None:  # e.g. a choice the grounder splits oddly
        found = [Entity(kg.concept_name(kg.lookup(text)), 1.0, "question")]
    # The retriever's second origin slot marks the choice's concepts.
    return [Entity(e.concept, e.score, "image") for e in found]


def _pair_facts(sg, choice_set: set[str], max_facts: int) -> list[str]:
    if max_facts <= 0 or sg.num_edges == 0:
        return []
    facts = sg.facts()
    first = [f for f in facts if f.head in choice_set or f.tail in choice_set]
    rest = [f for f in facts if not (f.head in choice_set or f.tail in choice_set)]
    return [f.verbalize() for f in (first + rest)[:max_facts]]


def build_graph_features(records: Sequence["VQARecord"], kg: "KnowledgeGraph", retriever, grounder, *,
                         config: CSQAConfig, num_choices: int | None = None, keep_facts: bool = False,
                         pair_embeddings: np.ndarray | None = None, progress: bool = False,
                         desc: str = "subgraphs") -> GraphFeatures:
    """Ground, retrieve and flatten one subgraph per (question, choice) pair.

    ``pair_embeddings`` (Q, C, D): the pair texts' embeddings, used as the query of the
    relevance-based retrieval methods (``relevance``/``hybrid``/``pcst``).
    """
    from tqdm.auto import tqdm

    c = num_choices or _num_choices(records)
    node_counts, edge_counts = [], []
    ids, origins, rels, eis, ets = [], [], [], [], []
    choice_concepts: list[list[str]] = []
    facts: list[list[str]] = []
    empty = no_choice_seed = 0
    q_seeds = c_seeds = 0
    needs_query = config.method in ("relevance", "hybrid", "pcst")
    if needs_query and pair_embeddings is None:
        raise ValueError(f"retrieval method {config.method!r} needs the pair embeddings, found none")
    for i, r in enumerate(tqdm(records, desc=desc, unit="question", disable=not progress, dynamic_ncols=True)):
        q_ents = _question_entities(grounder, r)
        q_seeds += len(q_ents)
        for j in range(c):
            if j >= len(r.choices):
                node_counts.append(0); edge_counts.append(0)
                choice_concepts.append([]); facts.append([])
                continue
            c_ents = _choice_entities(grounder, kg, r.choices[j])
            c_seeds += len(c_ents)
            query = pair_embeddings[i, j] if needs_query else None
            sg = retriever.retrieve(q_ents + c_ents, None, budget=config.budget, method=config.method,
                                    question_embedding=query, ground_question=False, use_cache=False)
            n, e = int(sg.num_nodes), int(sg.num_edges)
            node_counts.append(n); edge_counts.append(e)
            names = [x.concept for x in c_ents]
            choice_concepts.append(names)
            if n == 0:
                empty += 1
            if not any(o in (ORIGIN_CHOICE, ORIGIN_BOTH) for o in sg.origin.tolist()):
                no_choice_seed += 1
            if n:
                ids.append(sg.node_id.numpy()); origins.append(sg.origin.numpy())
                rels.append(sg.node_relevance.numpy()); eis.append(sg.edge_index.numpy())
                ets.append(sg.edge_type.numpy())
            facts.append(_pair_facts(sg, set(names), config.max_facts) if keep_facts and n else [])
    node_ptr = np.concatenate([[0], np.cumsum(node_counts)]).astype(np.int64)
    edge_ptr = np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64)
    cat = (lambda xs, dt, shape: np.concatenate(xs).astype(dt) if xs else np.zeros(shape, dtype=dt))
    pairs = int(sum(len(r.choices) for r in records))
    info = {"pairs": pairs, "empty_subgraphs": empty, "pairs_without_choice_concept": no_choice_seed,
            "mean_nodes": round(float(np.sum(node_counts)) / max(pairs, 1), 2),
            "mean_edges": round(float(np.sum(edge_counts)) / max(pairs, 1), 2),
            "mean_question_seeds": round(q_seeds / max(len(records), 1), 2),
            "mean_choice_seeds": round(c_seeds / max(pairs, 1), 2)}
    return GraphFeatures(
        num_choices=c, node_ptr=node_ptr, node_store_id=cat(ids, np.int64, (0,)),
        node_origin=cat(origins, np.int64, (0,)), node_relevance=cat(rels, np.float32, (0,)),
        edge_ptr=edge_ptr,
        edge_index=np.concatenate(eis, axis=1).astype(np.int64) if eis else np.zeros((2, 0), np.int64),
        edge_type=cat(ets, np.int64, (0,)), num_relations=int(kg.num_relations),
        choice_concepts=choice_concepts, facts=facts, info=info)


def _ranges(ptr: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``ptr[s]:ptr[s+1]`` for ``s`` in ``sel``, and each range's length."""
    starts = ptr[sel]
    counts = ptr[sel + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), counts
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return shift + np.arange(total, dtype=np.int64), counts


@dataclass
class _GraphBatch:
    x_rows: torch.Tensor          # (N,) rows of the node table; -1 for context nodes
    ctx_pos: torch.Tensor         # (G,) position of each graph's context node
    edge_index: torch.Tensor      # (2, E')
    edge_type: torch.Tensor       # (E',)
    origin: torch.Tensor          # (N,)
    relevance: torch.Tensor       # (N,)
    batch: torch.Tensor           # (N,)


def _collate_graphs(g: GraphFeatures, node_rows: np.ndarray, pairs: np.ndarray) -> _GraphBatch:
    """Graphs of ``pairs`` as one disjoint union, each with a context node first.

    The context node is linked to every seed: relation ``R`` to question concepts and
    ``R + 1`` to choice concepts (R = the store's relation count).
    """
    nsel, ncount = _ranges(g.node_ptr, pairs)
    esel, ecount = _ranges(g.edge_ptr, pairs)
    gsz = ncount + 1                                   # (G,) nodes incl. context
    base = np.cumsum(gsz) - gsz                        # (G,) context positions
    total = int(gsz.sum())
    graph_of_node = np.repeat(np.arange(len(pairs)), ncount)
    kg_pos = np.repeat(base + 1, ncount) + (np.arange(len(nsel)) - np.repeat(np.cumsum(ncount) - ncount, ncount))
    rows = np.full(total, -1, dtype=np.int64)
    rows[kg_pos] = node_rows[nsel]
    origin = np.full(total, ORIGIN_CONTEXT, dtype=np.int64)
    origin[kg_pos] = g.node_origin[nsel]
    rel = np.ones(total, dtype=np.float32)
    rel[kg_pos] = g.node_relevance[nsel]
    edge_graph_base = np.repeat(base + 1, ecount)
    ei = g.edge_index[:, esel] + edge_graph_base
    et = g.edge_type[esel]
    seeds = g.node_origin[nsel] > 0
    ctx_src = base[graph_of_node[seeds]]
    ctx_dst = kg_pos[seeds]
    ctx_type = np.where(g.node_origin[nsel][seeds] == ORIGIN_QUESTION, g.num_relations, g.num_relations + 1)
    ei = np.concatenate([ei, np.stack([ctx_src, ctx_dst])], axis=1)
    et = np.concatenate([et, ctx_type])
    batch = np.repeat(np.arange(len(pairs)), gsz)
    return _GraphBatch(torch.from_numpy(rows), torch.from_numpy(base.astype(np.int64)),
                       torch.from_numpy(ei.astype(np.int64)), torch.from_numpy(et.astype(np.int64)),
                       torch.from_numpy(origin), torch.from_numpy(rel), torch.from_numpy(batch))


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
            from .gnn import GNNConfig, GraphEncoder

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


# --------------------------------------------------------------------------- training

@dataclass
class _Split:
    """Tensors of one question set for one variant."""

    pair: torch.Tensor            # (Q, C, D)
    choice: torch.Tensor          # (Q, C, D)
    mask: torch.Tensor            # (Q, C)
    labels: torch.Tensor          # (Q,)
    graphs: GraphFeatures | None = None
    node_rows: np.ndarray | None = None


def _make_split(tf: TextFeatures, graphs: GraphFeatures | None = None, node_rows: np.ndarray | None = None) -> _Split:
    return _Split(torch.from_numpy(tf.pair), torch.from_numpy(tf.choice), torch.from_numpy(tf.mask),
                  torch.from_numpy(tf.labels), graphs, node_rows)


def _scores(model: ChoiceScorer, split: _Split, qs: np.ndarray, node_table: torch.Tensor | None) -> torch.Tensor:
    """(B, C) scores of the questions ``qs`` (padding choices: -inf)."""
    c = split.pair.shape[1]
    idx = torch.from_numpy(qs)
    pair = split.pair[idx].reshape(len(qs) * c, -1)  # (B*C, D)
    choice = split.choice[idx].reshape(len(qs) * c, -1)  # (B*C, D)
    text = torch.cat([pair, choice, pair * choice], dim=-1)  # (B*C, 3D)
    graph = None
    if model.use_kg:
        pairs = (qs[:, None] * c + np.arange(c)[None, :]).reshape(-1)
        graph = _collate_graphs(split.graphs, split.node_rows, pairs)
    s = model(text, pair, graph, node_table).reshape(len(qs), c)
    return s.masked_fill(~split.mask[idx], float("-inf"))


def predict(model: ChoiceScorer, split: _Split, node_table: torch.Tensor | None = None,
            batch_size: int = 64) -> np.ndarray:
    """(Q, C) scores in eval mode."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, split.labels.shape[0], batch_size):
            qs = np.arange(i, min(i + batch_size, split.labels.shape[0]))
            out.append(_scores(model, split, qs, node_table))
    return torch.cat(out).numpy() if out else np.zeros((0, split.pair.shape[1]), np.float32)


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((scores.argmax(1) == labels).mean()) if len(labels) else float("nan")


def train_variant(variant: str, train: _Split, val: _Split | None, config: CSQAConfig, *, text_dim: int,
                  node_table: torch.Tensor | None = None, progress: bool = False) -> tuple[ChoiceScorer, dict]:
    """Train one variant with cross-entropy over the choices; returns the model (the best
    epoch on ``val`` when given, else the last) and a history."""
    from tqdm.auto import tqdm

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    num_rel = train.graphs.num_relations if variant == "kg" else None
    model = ChoiceScorer(text_dim, config, num_rel)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = train.labels.shape[0]
    steps = config.epochs * math.ceil(n / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(steps, 1), pct_start=0.1,
                                                anneal_strategy="cos")
    history = []
    best, best_state, best_epoch = -1.0, None, config.epochs
    bar = tqdm(total=steps, desc=f"train {variant}", unit="step", disable=not progress, dynamic_ncols=True)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = rng.permutation(n)
        total, seen = 0.0, 0
        for i in range(0, n, config.batch_size):
            qs = order[i:i + config.batch_size]
            s = _scores(model, train, qs, node_table)
            loss = nn.functional.cross_entropy(s, train.labels[torch.from_numpy(qs)])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(qs)
            seen += len(qs)
            bar.update(1)
        rec = {"epoch": epoch, "train_loss": round(total / max(seen, 1), 4)}
        if val is not None:
            acc = _accuracy(predict(model, val, node_table), val.labels.numpy())
            rec["val_accuracy"] = round(acc, 4)
            if acc > best:
                best, best_epoch = acc, epoch
                best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(rec)
        history.append(rec)
        logger.info("%s epoch %d: %s", variant, epoch, rec)
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, {"history": history, "best_epoch": best_epoch,
                   "val_accuracy": round(best, 4) if val is not None else None}


# --------------------------------------------------------------------------- runner

def _open_kg(kg, kg_cache):
    if isinstance(kg, str):
        from .pipeline import open_kg

        return open_kg(kg, cache_root=kg_cache)
    return kg


def _kg_name(kg) -> str:
    if isinstance(kg, str):
        return kg
    meta = getattr(kg, "meta", None) or {}
    return str(meta.get("name") or getattr(kg, "path", None) or type(kg).__name__)


def _write_predictions(path: Path, records, scores: np.ndarray, graphs: GraphFeatures | None) -> None:
    c = scores.shape[1]
    with path.open("w", encoding="utf-8") as f:
        for i, r in enumerate(records):
            k = len(r.choices)
            s = scores[i, :k]
            pred = int(np.argmax(s))
            row: dict[str, Any] = {"qid": r.qid, "question": r.question, "choices": list(r.choices),
                                   "scores": [round(float(x), 4) for x in s], "predicted": pred,
                                   "correct": int(r.correct_choice), "is_correct": pred == r.correct_choice}
            if graphs is not None:
                ps = [i * c + j for j in range(k)]
                row["subgraph_nodes"] = [graphs.num_nodes(p) for p in ps]
                row["choice_concepts"] = [graphs.choice_concepts[p] for p in ps]
                row["facts"] = [graphs.facts[p] for p in ps]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _markdown(results: dict) -> str:
    lines = ["# CommonsenseQA: the MiniLM-based scorer with and without the knowledge graph", "",
             f"Train: `{results['train_file']}` ({results['n_train']} questions, {results['n_val']} of them held out "
             f"to pick the epoch); dev: `{results['dev_file']}` ({results['n_dev']} questions); "
             f"KG: {results['kg'] or 'none'}; encoder: {results['encoder']} (frozen).", "",
             "| variant | dev accuracy | dev questions | best epoch | held-out train accuracy | train s |",
             "|---|---|---|---|---|---|"]
    for name, v in results["variants"].items():
        val = f"{100 * v['val_accuracy']:.1f} %" if v.get("val_accuracy") is not None else "-"
        lines.append(f"| {name} | {100 * v['accuracy']:.1f} % | {v['n']} | {v['best_epoch']} | {val} | "
                     f"{v['train_seconds']:.1f} |")
    lines += ["", "Chance: 20 % with 5 choices. The model: a small MLP (and, for `kg`, a 2-layer GNN over one "
              "retrieved ConceptNet subgraph per choice) on frozen all-MiniLM-L6-v2 sentence embeddings, "
              "not a fine-tuned language model.", ""]
    if results.get("graph_stats"):
        lines.append("Subgraphs: " + "; ".join(f"{k}: {json.dumps(v)}" for k, v in results["graph_stats"].items()))
        lines.append("")
    lines.append("Feature seconds: " + json.dumps(results["feature_seconds"]))
    return "\n".join(lines) + "\n"


def run_csqa(train_path: str | os.PathLike, dev_path: str | os.PathLike, out_dir: str | os.PathLike, *,
             kg: "str | KnowledgeGraph" = "bundled:cn100k", kg_cache: str | os.PathLike | None = "stores",
             variants: Sequence[str] = VARIANTS, epochs: int | None = None, limit: int | None = None,
             dev_limit: int | None = None, seed: int | None = None, config: CSQAConfig | None = None,
             encoder=None, node_cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Train each variant on ``train_path``, evaluate on ``dev_path``, write the results.

    Args:
        train_path / dev_path: CommonsenseQA JSON lines (only labelled records are used).
        out_dir: created if needed; receives ``results.json``, ``results.md`` and
            ``predictions_<variant>.jsonl``.
        kg: engine spec (``bundled:cn100k``, a store folder) or a loaded store; only
            opened when the ``kg`` variant runs.
        kg_cache: folder for the bundled stores (default ``stores``).
        variants: some of :data:`VARIANTS`.
        epochs, seed: override ``config``'s (None: keep them; the default seed is 0).
        limit: use only the first ``limit`` training questions; dev_limit: the first
            ``dev_limit`` dev questions (default: all).
        config: model and training settings (default :class:`CSQAConfig`).
        encoder: sentence encoder with ``dim``, ``name`` and ``encode(texts, progress=)``;
            default the packaged all-MiniLM-L6-v2.
        node_cache_dir: cache of node-name embeddings (default: the store's ``cache/``).
        progress: tqdm bars.

    Returns:
        The dict written to ``results.json``.

    Raises:
        FileNotFoundError: a missing input file.
        ValueError: unknown or no variants, a file without labelled records, bad settings.
    """
    variants = list(dict.fromkeys(variants))
    if not variants:
        raise ValueError(f"variants: expected some of {VARIANTS}, found none")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variant(s) {bad}; expected some of {VARIANTS}")
    cfg = config or CSQAConfig()
    over = {k: v for k, v in (("epochs", epochs), ("seed", seed)) if v is not None}
    cfg = CSQAConfig(**{**asdict(cfg), **over})
    train_recs = load_questions(train_path, limit=limit, what="training file")
    dev_recs = load_questions(dev_path, limit=dev_limit, what="dev file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if encoder is None:
        from .embeddings import TextEncoder

        encoder = TextEncoder.from_package()
    c = max(_num_choices(train_recs), _num_choices(dev_recs))
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    train_tf = build_text_features(train_recs, encoder, num_choices=c, progress=progress)
    dev_tf = build_text_features(dev_recs, encoder, num_choices=c, progress=progress)
    secs["text_embeddings"] = round(time.perf_counter() - t0, 1)

    # Held-out slice of the training questions (epoch selection only).
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(train_recs))
    n_val = int(round(cfg.val_fraction * len(train_recs))) if len(train_recs) > 1 else 0
    val_idx, fit_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    graph_stats: dict[str, Any] = {}
    store = None
    train_g = dev_g = None
    node_table = None
    train_rows = dev_rows = None
    if "kg" in variants:
        from .config import RetrievalConfig
        from .embeddings import NodeEmbeddings
        from .grounding.text import TextGrounder
        from .retrieval import SubgraphRetriever

        t0 = time.perf_counter()
        store = _open_kg(kg, kg_cache)
        secs["open_kg"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        node_emb = NodeEmbeddings(store, encoder, cache_dir=node_cache_dir)
        grounder = TextGrounder(store)
        retriever = SubgraphRetriever(store, RetrievalConfig(budget=cfg.budget, method=cfg.method, cache_size=0),
                                      embeddings=node_emb, encoder=encoder, grounder=grounder)
        train_g = build_graph_features(train_recs, store, retriever, grounder, config=cfg, num_choices=c,
                                       pair_embeddings=train_tf.pair, progress=progress,
                                       desc="subgraphs (train)")
        dev_g = build_graph_features(dev_recs, store, retriever, grounder, config=cfg, num_choices=c,
                                     keep_facts=True, pair_embeddings=dev_tf.pair, progress=progress,
                                     desc="subgraphs (dev)")
        secs["subgraphs"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        uniq = np.unique(np.concatenate([train_g.node_store_id, dev_g.node_store_id]))
        node_emb.compute(uniq, progress=progress)
        node_emb.save()
        node_table = torch.from_numpy(node_emb.get(uniq))
        train_rows = np.searchsorted(uniq, train_g.node_store_id)
        dev_rows = np.searchsorted(uniq, dev_g.node_store_id)
        secs["node_embeddings"] = round(time.perf_counter() - t0, 1)
        graph_stats = {"train": train_g.info, "dev": dev_g.info, "distinct_nodes": int(len(uniq))}

    def subset(tf: TextFeatures, idx: np.ndarray) -> TextFeatures:
        return TextFeatures(tf.pair[idx], tf.choice[idx], tf.mask[idx], tf.labels[idx])

    def subset_graphs(g: GraphFeatures | None, idx: np.ndarray) -> GraphFeatures | None:
        if g is None:
            return None
        pairs = (idx[:, None] * g.num_choices + np.arange(g.num_choices)[None, :]).reshape(-1)
        nsel, ncount = _ranges(g.node_ptr, pairs)
        esel, ecount = _ranges(g.edge_ptr, pairs)
        return GraphFeatures(g.num_choices, np.concatenate([[0], np.cumsum(ncount)]).astype(np.int64),
                             g.node_store_id[nsel], g.node_origin[nsel], g.node_relevance[nsel],
                             np.concatenate([[0], np.cumsum(ecount)]).astype(np.int64), g.edge_index[:, esel],
                             g.edge_type[esel], g.num_relations,
                             [g.choice_concepts[p] for p in pairs], [g.facts[p] for p in pairs], dict(g.info))

    def split_of(tf, g, rows, idx):
        if idx is None:
            return _make_split(tf, g, rows)
        sg = subset_graphs(g, idx)
        r = None
        if g is not None:
            pairs = (idx[:, None] * g.num_choices + np.arange(g.num_choices)[None, :]).reshape(-1)
            r = rows[_ranges(g.node_ptr, pairs)[0]]
        return _make_split(subset(tf, idx), sg, r)

    results: dict[str, Any] = {
        "dataset": "commonsenseqa", "train_file": str(train_path), "dev_file": str(dev_path),
        "n_train": len(train_recs), "n_val": int(n_val), "n_dev": len(dev_recs), "limit": limit,
        "dev_limit": dev_limit, "kg": _kg_name(kg) if "kg" in variants else None,
        "encoder": getattr(encoder, "name", type(encoder).__name__), "torch_threads": torch.get_num_threads(),
        "feature_seconds": secs, "graph_stats": graph_stats, "variants": {},
    }
    for v in variants:
        use_g = v == "kg"
        fit = split_of(train_tf, train_g if use_g else None, train_rows, fit_idx)
        val = split_of(train_tf, train_g if use_g else None, train_rows, val_idx) if n_val else None
        dev = split_of(dev_tf, dev_g if use_g else None, dev_rows, None)
        t0 = time.perf_counter()
        model, hist = train_variant(v, fit, val, cfg, text_dim=int(encoder.dim),
                                    node_table=node_table if use_g else None, progress=progress)
        train_s = time.perf_counter() - t0
        scores = predict(model, dev, node_table if use_g else None)
        acc = _accuracy(scores, dev.labels.numpy())
        _write_predictions(out / f"predictions_{v}.jsonl", dev_recs, scores, dev_g if use_g else None)
        settings = {k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "hidden", "dropout",
                                                 "val_fraction", "seed")}
        settings["text_features"] = "[emb(question + choice), emb(choice), product]"
        if use_g:
            settings.update({k: getattr(cfg, k) for k in ("gnn_kind", "gnn_hidden", "gnn_layers", "gnn_heads",
                                                          "budget", "method")})
        results["variants"][v] = {
            "accuracy": round(acc, 4), "n": len(dev_recs), "correct": int(round(acc * len(dev_recs))),
            "train_seconds": round(train_s, 1), "best_epoch": hist["best_epoch"],
            "val_accuracy": hist["val_accuracy"], "history": hist["history"],
            "parameters": int(sum(p.numel() for p in model.parameters())), "settings": settings,
        }
        logger.info("%s: dev accuracy %.4f (%d questions)", v, acc, len(dev_recs))
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "results.md").write_text(_markdown(results), encoding="utf-8")
    return results


# --------------------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of the CommonsenseQA run (for ``python -m ravlm_graph.csqa`` and CLIs)."""
    d = CSQAConfig()
    parser.add_argument("--train", required=True, help="CommonsenseQA training file (JSON lines)")
    parser.add_argument("--dev", required=True, help="CommonsenseQA dev file (JSON lines, labelled)")
    parser.add_argument("--out", required=True, help="output folder (results.json, results.md, predictions)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="variants to train (default: no_kg kg)")
    parser.add_argument("--kg", default="bundled:cn100k", help="bundled:cn100k[+fvqa] or a store folder")
    parser.add_argument("--kg-cache", default="stores", help="folder for the bundled stores (default stores)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training questions")
    parser.add_argument("--dev-limit", type=int, default=None, help="use the first N dev questions")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"questions per step (default {d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"default {d.lr}")
    parser.add_argument("--budget", type=int, default=d.budget, help=f"subgraph nodes per choice (default {d.budget})")
    parser.add_argument("--method", default=d.method, help=f"retrieval pruning (default {d.method})")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction,
                        help=f"training questions held out to pick the epoch (default {d.val_fraction})")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run_from_args(args: argparse.Namespace) -> dict:
    """Run :func:`run_csqa` from parsed :func:`add_arguments` options; prints the table."""
    if args.threads is not None:
        torch.set_num_threads(int(args.threads))
    cfg = CSQAConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, budget=args.budget,
                     method=args.method, val_fraction=args.val_fraction, seed=args.seed)
    res = run_csqa(args.train, args.dev, args.out, kg=args.kg, kg_cache=args.kg_cache, variants=args.variants,
                   limit=args.limit, dev_limit=args.dev_limit, config=cfg, progress=not args.no_progress)
    print(_markdown(res))
    return res


def main(argv: Sequence[str] | None = None, prog: str = "python -m ravlm_graph.csqa") -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog=prog,
        description="CommonsenseQA dev accuracy of a small scorer on frozen MiniLM embeddings, "
                    "with and without the knowledge graph."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_from_args(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
