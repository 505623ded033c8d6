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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from ravlm_graph.models.csqa.configuration import ORIGIN_BOTH, ORIGIN_CHOICE, ORIGIN_CONTEXT, ORIGIN_QUESTION
from ravlm_graph.models.csqa.configuration import CSQAConfig
from ravlm_graph.types import Entity

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

    from ravlm_graph.types import VQARecord


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

    ents = {e.concept: e for e in grounder.ground(record.question).entities}
    if record.question_concept:
        ents[record.question_concept] = Entity(record.question_concept, 1.0, "question")
    return list(ents.values())


def _choice_entities(grounder, kg, text: str) -> list:

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
