"""Inputs of the CommonsenseQA scorer: tokenised (question, choice) pairs and their subgraphs.

Every expensive input is built once per run: the token ids of each pair
(:func:`tokenize_pairs`) and, for the graph variant, one retrieved ConceptNet subgraph per
pair (:func:`build_graph_features`: the question's concepts and the choice's concepts are
the seeds). :class:`CSQAExamples` holds them for a question set; its collate function
turns a list of question indices into a :class:`CSQABatch` for the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ravlm_graph.models.csqa.configuration import (ORIGIN_BOTH, ORIGIN_CHOICE, ORIGIN_CONTEXT, ORIGIN_QUESTION,
                                                   CSQAConfig)
from ravlm_graph.types import Entity

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

    from ravlm_graph.types import VQARecord


def max_choices(records: Sequence["VQARecord"]) -> int:
    """The largest number of choices of a question in ``records``."""
    return max(len(r.choices) for r in records)


def pair_text(question: str, choice: str) -> str:
    """The text of a (question, choice) pair where one string is needed (retrieval queries)."""
    return f"{question.strip()} {choice.strip()}"


@dataclass
class PairTokens:
    """Token ids of every (question, choice) pair, unpadded; pair ``p = question * C + choice``.

    Fields:
        input_ids / token_type_ids: one list of ids per pair (``[CLS] question [SEP] choice [SEP]``).
        pad_id: the tokenizer's padding id.
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    pad_id: int

    def pad(self, pairs: Sequence[int]) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask``, ``token_type_ids`` (P, L) of ``pairs``, padded to the longest."""
        length = max(len(self.input_ids[p]) for p in pairs)
        ids = torch.full((len(pairs), length), self.pad_id, dtype=torch.long)
        types = torch.zeros((len(pairs), length), dtype=torch.long)
        mask = torch.zeros((len(pairs), length), dtype=torch.long)
        for row, p in enumerate(pairs):
            n = len(self.input_ids[p])
            ids[row, :n] = torch.tensor(self.input_ids[p])
            types[row, :n] = torch.tensor(self.token_type_ids[p])
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def tokenize_pairs(records: Sequence["VQARecord"], tokenizer, *, max_length: int,
                   num_choices: int | None = None, facts: Sequence[Sequence[str]] | None = None) -> PairTokens:
    """Token ids of each (question, choice) pair; missing choices (padding) get an empty choice.

    ``facts`` (one list per pair, pair ``p = question * C + choice``): sentences appended to
    the choice (``choice ; fact ; fact``); only this second segment is cut to ``max_length``.
    """
    c = num_choices or max_choices(records)
    if facts is not None and len(facts) != len(records) * c:
        raise ValueError(f"tokenize_pairs: expected {len(records) * c} fact lists (one per pair), found {len(facts)}")
    questions, choices = [], []
    for i, r in enumerate(records):
        for j in range(c):
            questions.append(r.question.strip())
            text = r.choices[j].strip() if j < len(r.choices) else ""
            if facts is not None and text and facts[i * c + j]:
                text = " ; ".join([text] + [f.strip() for f in facts[i * c + j]])
            choices.append(text)
    if facts is None:
        enc = tokenizer(questions, choices, truncation=True, max_length=max_length)
    else:
        ids, types = [], []
        for q, ch in zip(questions, choices):  # the question is never cut for the facts' sake
            try:
                e = tokenizer(q, ch, truncation="only_second", max_length=max_length)
            except Exception:  # the question alone is longer than max_length
                e = tokenizer(q, ch, truncation=True, max_length=max_length)
            ids.append(e["input_ids"])
            types.append(e.get("token_type_ids") or [0] * len(e["input_ids"]))
        return PairTokens(ids, types, int(tokenizer.pad_token_id or 0))
    types = enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]
    return PairTokens(list(enc["input_ids"]), list(types), int(tokenizer.pad_token_id or 0))


@dataclass
class GraphFeatures:
    """One retrieved subgraph per (question, choice) pair, stored flat.

    Pair ``p = question * C + choice``; its nodes are ``node_ptr[p]:node_ptr[p+1]`` and its
    edges ``edge_ptr[p]:edge_ptr[p+1]`` (``edge_index`` local to the pair's graph).

    Fields:
        node_store_id (N,) long: store ids; node_origin (N,) long (0-3, the ORIGIN_* codes);
        node_relevance (N,) float32; edge_index (2, E) long; edge_type (E,) long;
        choice_concepts / facts: per pair, for the predictions file.
        num_relations: relation types of the store.
        links (P, 2R + 3) float32: per pair, the question-choice link counts of its subgraph
            (see :func:`link_features`).
        text_facts: per pair, the facts read as text (``CSQAConfig.text_facts``; empty lists
            without it).
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
    links: np.ndarray | None = None
    text_facts: list[list[str]] = field(default_factory=list)

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


def _pair_facts(sg, choice_set: set[str], max_facts: int, question_set: set[str] | None = None) -> list[str]:
    """Up to ``max_facts`` sentences of a pair's subgraph: edges between a question concept and
    a choice concept first, then the other edges of the choice's concepts, then the rest (most
    relevant first within each group)."""
    if max_facts <= 0 or sg.num_edges == 0:
        return []
    facts = sg.facts()
    q = question_set or set()

    def rank(f) -> int:
        touches = f.head in choice_set or f.tail in choice_set
        links = (f.head in choice_set and f.tail in q) or (f.tail in choice_set and f.head in q)
        return 0 if links else (1 if touches else 2)

    return [f.verbalize() for f in sorted(facts, key=rank)[:max_facts]]  # sorted() is stable


def num_link_features(num_relations: int) -> int:
    """Width of :func:`link_features` for a store of ``num_relations`` relation types."""
    return 2 * int(num_relations) + 3


def link_features(edge_index: np.ndarray, edge_type: np.ndarray, origin: np.ndarray, num_relations: int) -> np.ndarray:
    """How one pair's subgraph links the question's concepts to the choice's (2R + 3 counts).

    ``[0:R]``: edges question concept -> choice concept per relation; ``[R:2R]``: choice ->
    question per relation; ``2R``: two-step paths question - x - choice (either direction,
    through a non-seed node); ``2R+1``: the choice has a concept in the subgraph;
    ``2R+2``: a choice concept is also a question concept. Concepts of both count as both.
    """
    r = int(num_relations)
    out = np.zeros(num_link_features(r), dtype=np.float32)
    origin = np.asarray(origin)
    is_q = (origin == ORIGIN_QUESTION) | (origin == ORIGIN_BOTH)
    is_c = (origin == ORIGIN_CHOICE) | (origin == ORIGIN_BOTH)
    out[2 * r + 1] = float(is_c.any())
    out[2 * r + 2] = float((origin == ORIGIN_BOTH).any())
    if edge_index.shape[1] == 0:
        return out
    src, dst, et = edge_index[0], edge_index[1], np.asarray(edge_type)
    qc = is_q[src] & is_c[dst] & (src != dst)
    cq = is_c[src] & is_q[dst] & (src != dst)
    np.add.at(out, et[qc], 1.0)
    np.add.at(out, r + et[cq], 1.0)
    # Two-step paths through a non-seed node: (#question neighbours) x (#choice neighbours).
    mid = origin == 0
    n = len(origin)
    und_a, und_b = np.concatenate([src, dst]), np.concatenate([dst, src])
    q_nb = np.zeros(n); c_nb = np.zeros(n)
    sel = mid[und_a]
    np.add.at(q_nb, und_a[sel & is_q[und_b]], 1.0)
    np.add.at(c_nb, und_a[sel & is_c[und_b]], 1.0)
    out[2 * r] = float((q_nb * c_nb).sum())
    return out


def build_graph_features(records: Sequence["VQARecord"], kg: "KnowledgeGraph", retriever, grounder, *,
                         config: CSQAConfig, num_choices: int | None = None, keep_facts: bool = False,
                         encoder=None, progress: bool = False, desc: str = "subgraphs") -> GraphFeatures:
    """Ground, retrieve and flatten one subgraph per (question, choice) pair.

    ``encoder`` embeds each pair's text as the query of the relevance-based retrieval
    methods (``relevance``/``hybrid``/``pcst``); ``ppr`` needs none.
    """
    from tqdm.auto import tqdm

    c = num_choices or max_choices(records)
    node_counts, edge_counts = [], []
    ids, origins, rels, eis, ets = [], [], [], [], []
    choice_concepts: list[list[str]] = []
    facts: list[list[str]] = []
    text_facts: list[list[str]] = []
    nlink = num_link_features(kg.num_relations)
    links = np.zeros((len(records) * c, nlink), dtype=np.float32)
    empty = no_choice_seed = 0
    q_seeds = c_seeds = 0
    needs_query = config.method in ("relevance", "hybrid", "pcst")
    if needs_query and encoder is None:
        raise ValueError(f"retrieval method {config.method!r} needs a text encoder for its query, found none")
    for i, r in enumerate(tqdm(records, desc=desc, unit="question", disable=not progress, dynamic_ncols=True)):
        q_ents = _question_entities(grounder, r)
        q_seeds += len(q_ents)
        # One encoder call per question (its choices' pair texts together).
        queries = encoder.encode([pair_text(r.question, x) for x in r.choices]) if needs_query else None
        for j in range(c):
            if j >= len(r.choices):
                node_counts.append(0); edge_counts.append(0)
                choice_concepts.append([]); facts.append([]); text_facts.append([])
                continue
            c_ents = _choice_entities(grounder, kg, r.choices[j])
            c_seeds += len(c_ents)
            query = queries[j] if needs_query else None
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
                links[i * c + j] = link_features(sg.edge_index.numpy(), sg.edge_type.numpy(), sg.origin.numpy(),
                                                 kg.num_relations)
                ids.append(sg.node_id.numpy()); origins.append(sg.origin.numpy())
                rels.append(sg.node_relevance.numpy()); eis.append(sg.edge_index.numpy())
                ets.append(sg.edge_type.numpy())
            q_names = {x.concept for x in q_ents}
            facts.append(_pair_facts(sg, set(names), config.max_facts, q_names) if keep_facts and n else [])
            text_facts.append(_pair_facts(sg, set(names), config.text_facts, q_names) if n else [])
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
        choice_concepts=choice_concepts, facts=facts, info=info, links=links, text_facts=text_facts)



@dataclass
class GraphBatch:
    """The subgraphs of a batch's pairs as one disjoint union, each with a context node first.

    Fields:
        x (N, node_dim) float: node-name embeddings (zeros at the context nodes, which the
            model fills from the text).
        ctx_pos (G,) long: position of each pair's context node.
        edge_index (2, E) long; edge_type (E,) long; origin (N,) long; relevance (N,) float;
        batch (N,) long: the pair of each node.
        links (G, 2R + 3) float: the pairs' question-choice link counts (None: not computed).
    """

    x: torch.Tensor
    ctx_pos: torch.Tensor
    edge_index: torch.Tensor
    edge_type: torch.Tensor
    origin: torch.Tensor
    relevance: torch.Tensor
    batch: torch.Tensor
    links: torch.Tensor | None = None


def collate_graphs(g: GraphFeatures, node_table: np.ndarray, node_rows: np.ndarray,
                   pairs: Sequence[int]) -> GraphBatch:
    """The graphs of ``pairs``; ``node_table[node_rows[k]]`` is the embedding of stored node ``k``.

    The context node is linked to every seed: relation ``R`` to question concepts and
    ``R + 1`` to choice concepts (R = the store's relation count).
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    nsel = [np.arange(g.node_ptr[p], g.node_ptr[p + 1]) for p in pairs]
    esel = [np.arange(g.edge_ptr[p], g.edge_ptr[p + 1]) for p in pairs]
    ncount = np.array([len(x) for x in nsel], dtype=np.int64)
    nsel = np.concatenate(nsel) if len(pairs) else np.zeros(0, np.int64)
    ecount = np.array([len(x) for x in esel], dtype=np.int64)
    esel = np.concatenate(esel) if len(pairs) else np.zeros(0, np.int64)
    gsz = ncount + 1                                   # (G,) nodes incl. context
    base = np.cumsum(gsz) - gsz                        # (G,) context positions
    total = int(gsz.sum())
    graph_of_node = np.repeat(np.arange(len(pairs)), ncount)
    kg_pos = np.repeat(base + 1, ncount) + (np.arange(len(nsel)) - np.repeat(np.cumsum(ncount) - ncount, ncount))
    x = np.zeros((total, node_table.shape[1]), dtype=np.float32)
    x[kg_pos] = node_table[node_rows[nsel]]
    origin = np.full(total, ORIGIN_CONTEXT, dtype=np.int64)
    origin[kg_pos] = g.node_origin[nsel]
    rel = np.ones(total, dtype=np.float32)
    rel[kg_pos] = g.node_relevance[nsel]
    ei = g.edge_index[:, esel] + np.repeat(base + 1, ecount)
    et = g.edge_type[esel]
    seeds = g.node_origin[nsel] > 0
    ctx_src = base[graph_of_node[seeds]]
    ctx_dst = kg_pos[seeds]
    ctx_type = np.where(g.node_origin[nsel][seeds] == ORIGIN_QUESTION, g.num_relations, g.num_relations + 1)
    ei = np.concatenate([ei, np.stack([ctx_src, ctx_dst])], axis=1)
    et = np.concatenate([et, ctx_type])
    batch = np.repeat(np.arange(len(pairs)), gsz)
    links = None if g.links is None else torch.from_numpy(np.ascontiguousarray(g.links[pairs]))
    return GraphBatch(torch.from_numpy(x), torch.from_numpy(base.astype(np.int64)),
                      torch.from_numpy(ei.astype(np.int64)), torch.from_numpy(et.astype(np.int64)),
                      torch.from_numpy(origin), torch.from_numpy(rel), torch.from_numpy(batch), links)


@dataclass
class CSQABatch:
    """A batch of Q questions with C choices each (P = Q * C pairs).

    Fields:
        tokens: ``input_ids``, ``attention_mask``, ``token_type_ids``, each (P, L) long.
        choice_mask (Q, C) bool: real choices (False: padding).
        labels (Q,) long: the right choice, or None.
        graph: the pairs' subgraphs (the ``kg`` variant), or None.
    """

    tokens: dict[str, torch.Tensor]
    choice_mask: torch.Tensor
    labels: torch.Tensor | None = None
    graph: GraphBatch | None = None


@dataclass
class CSQAExamples:
    """One question set, ready for the model; ``collate(question_indices)`` builds a batch.

    Fields:
        tokens: the pairs' token ids.
        choice_mask (Q, C) bool; labels (Q,) long (-1: unlabelled).
        graphs, node_table (U, D) float32, node_rows (N,) long: the subgraphs and the row of
            each stored node in the node table (the ``kg`` variant; None otherwise).
    """

    tokens: PairTokens
    choice_mask: np.ndarray
    labels: np.ndarray
    graphs: GraphFeatures | None = None
    node_table: np.ndarray | None = None
    node_rows: np.ndarray | None = None

    @property
    def num_questions(self) -> int:
        return int(self.choice_mask.shape[0])

    @property
    def num_choices(self) -> int:
        return int(self.choice_mask.shape[1])

    def collate(self, questions: Sequence[int], *, with_graphs: bool = True) -> CSQABatch:
        qs = np.asarray(list(questions), dtype=np.int64)
        c = self.num_choices
        pairs = (qs[:, None] * c + np.arange(c)[None, :]).reshape(-1)
        graph = None
        if with_graphs and self.graphs is not None:
            graph = collate_graphs(self.graphs, self.node_table, self.node_rows, pairs)
        labels = torch.from_numpy(self.labels[qs])
        return CSQABatch(self.tokens.pad(pairs.tolist()), torch.from_numpy(self.choice_mask[qs]),
                         None if bool((labels < 0).any()) else labels, graph)


def build_examples(records: Sequence["VQARecord"], tokenizer, config: CSQAConfig, *, num_choices: int,
                   graphs: GraphFeatures | None = None, node_table: np.ndarray | None = None,
                   node_rows: np.ndarray | None = None) -> CSQAExamples:
    """Tokenise ``records`` and bundle them with their subgraphs (if any); with ``config.use_kg``
    and ``config.text_facts`` the pairs' facts are read as text too."""
    mask = np.zeros((len(records), num_choices), dtype=bool)
    for i, r in enumerate(records):
        mask[i, :len(r.choices)] = True
    labels = np.asarray([-1 if r.correct_choice is None else r.correct_choice for r in records], dtype=np.int64)
    facts = graphs.text_facts if graphs is not None and config.use_kg and config.text_facts else None
    tokens = tokenize_pairs(records, tokenizer, max_length=config.max_length, num_choices=num_choices, facts=facts)
    return CSQAExamples(tokens, mask, labels, graphs, node_table, node_rows)
