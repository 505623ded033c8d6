"""Seed concepts -> a pruned, readable :class:`Subgraph` of the knowledge graph.

Pipeline (all vectorised numpy on the store's CSR arrays; no networkx):

1. **Seeds**: entities (``origin`` question / image) mapped to store ids; absent ones
   are reported in ``Subgraph.info["missing_seeds"]``.
2. **Expansion**: ``k`` hops, following each node's heaviest edges first, at most
   ``max_degree`` per node and direction (``seed_max_degree`` for seeds). When a hop's
   frontier is larger than ``max_frontier`` nodes, only the most relevant ones (text
   similarity to the question, when known) are expanded further — a beam.
3. **Scoring** of the candidates by ``method``, a :class:`~ravlm_graph.retrieval.methods.RetrievalMethod`
   from the :data:`~ravlm_graph.retrieval.methods.METHODS` registry: ``khop`` (closer
   first), ``relevance`` (cosine similarity of the node name's all-MiniLM-L6-v2 embedding
   with the question's), ``ppr`` (personalised PageRank from the seeds on the candidate
   graph, restarts weighted by entity score), ``hybrid`` (relevance and PPR mixed),
   ``pcst`` (hybrid prizes, then a greedy prize-collecting tree: a node joins with its
   path to the tree only when its prize pays for the edges).
4. **Pruning** to ``budget`` nodes: seeds first, then by score; with ``connect`` a node
   joins with the path that discovered it, so the subgraph stays connected to the seeds.

Personalised PageRank: Haveliwala, "Topic-sensitive PageRank", WWW 2002.
Prize-collecting Steiner trees for retrieval: He et al., "G-Retriever", 2024
(https://arxiv.org/abs/2402.07630).

>>> retriever = SubgraphRetriever(kg)
>>> sg = retriever.retrieve(["apple", "knife"], question="What is used to cut an apple?")
>>> sg.verbalize(max_facts=3)
['a knife is used for cutting', ...]
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.types import Entity, Fact
from ravlm_graph.retrieval.scoring import _ranges, personalized_pagerank, relation_match, relation_prior
from ravlm_graph.retrieval.subgraph import Subgraph, _ORIGIN_BIT
from ravlm_graph.retrieval.embeddings import NodeEmbeddings
from ravlm_graph.grounding.text import TextGrounder
from ravlm_graph.retrieval.methods import METHODS, ScoringInputs

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

    from ravlm_graph.retrieval.embeddings import NodeEmbeddings, TextEncoder
    from ravlm_graph.grounding.text import TextGrounder

logger = logging.getLogger(__name__)


def _ranked(x: np.ndarray, k: int):
    """``np.argsort(x, kind="stable")`` in two parts: the head, the first ``k`` or more positions
    (every value up to the k-th smallest, ties included), and a function that gives the rest.
    Their concatenation is exactly the stable argsort; only the head is sorted up front."""
    n = len(x)
    if k < n:
        kth = np.partition(x, k - 1)[k - 1]
        if not np.isnan(kth):
            low = x <= kth
            head = np.flatnonzero(low)
            head = head[np.argsort(x[head], kind="stable")]

            def tail() -> np.ndarray:
                rest = np.flatnonzero(~low)
                return rest[np.argsort(x[rest], kind="stable")]

            return head, tail
    return np.argsort(x, kind="stable"), lambda: np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------- retriever

class SubgraphRetriever:
    """Retrieves a pruned :class:`Subgraph` around seed concepts.

    Args:
        kg: the store.
        config: a :class:`~ravlm_graph.config.RetrievalConfig` (defaults when None).
        embeddings: node-name embeddings (:class:`~ravlm_graph.embeddings.NodeEmbeddings`);
            needed by ``relevance`` / ``hybrid`` / ``pcst``; created (with the default
            cache location) on first need when None.
        encoder: the question encoder; by default the one of ``embeddings``.
        grounder: a :class:`~ravlm_graph.grounding.text.TextGrounder` used when a question
            is given without question entities; created on first need when None.

    The per-store edge order used by the degree caps (heaviest first) is computed once
    on construction (a sort of the edges; ~50 ms per million edges).
    """

    def __init__(self, kg: "KnowledgeGraph", config: RetrievalConfig | None = None, *,
                 embeddings: "NodeEmbeddings | None" = None, encoder: "TextEncoder | None" = None,
                 grounder: "TextGrounder | None" = None, max_frontier: int = 256) -> None:
        self.kg = kg
        self.config = config or RetrievalConfig()
        self._embeddings = embeddings
        self._encoder = encoder
        self._grounder = grounder
        self.max_frontier = int(max_frontier)
        self._cache: OrderedDict = OrderedDict()
        self._relation_vecs: np.ndarray | None = None
        e = kg.num_edges
        w = np.asarray(kg.edge_weight, dtype=np.float32)
        tie = (np.arange(e, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2 ** 32)
        # Edge ids grouped like the CSR segments, heaviest first inside each segment.
        self._out_order = np.lexsort((tie, -w, np.asarray(kg.edge_src))).astype(np.int64)
        self._in_order = np.lexsort((tie, -w, np.asarray(kg.edge_dst))).astype(np.int64)
        self._src = np.asarray(kg.edge_src, dtype=np.int64)
        self._dst = np.asarray(kg.edge_dst, dtype=np.int64)
        self._rel = np.asarray(kg.edge_rel, dtype=np.int64)
        self._w = w
        self._out_indptr = np.asarray(kg.out_indptr, dtype=np.int64)
        self._in_indptr = np.asarray(kg.in_indptr, dtype=np.int64)
        self._scratch = threading.local()  # per thread: a store-sized map of local positions
        self._ids: dict[str, int | None] = {}  # seed name -> store id (None: absent), as kg.lookup gives

    def __repr__(self) -> str:
        c = self.config
        return f"SubgraphRetriever(kg={self.kg!r}, method={c.method!r}, k={c.k}, budget={c.budget})"

    # ----------------------------------------------------------- components
    @property
    def embeddings(self) -> "NodeEmbeddings":
        if self._embeddings is None:

            self._embeddings = NodeEmbeddings(self.kg, self._encoder)
        return self._embeddings

    @property
    def encoder(self) -> "TextEncoder":
        if self._encoder is None:
            self._encoder = self.embeddings.encoder
        return self._encoder

    @property
    def grounder(self) -> "TextGrounder":
        if self._grounder is None:

            self._grounder = TextGrounder(self.kg)
        return self._grounder

    def embed_question(self, question: str) -> np.ndarray:
        """(D,) unit embedding of the question (cached on disk with the node embeddings)."""
        return self.embed_questions([question])[0]

    def embed_questions(self, questions: Sequence[str]) -> np.ndarray:
        """(len(questions), D) unit embeddings, encoded in one batch (the ones not in the disk
        cache): what :meth:`retrieve` takes as ``question_embedding``."""
        if self._encoder is None or self._encoder is self.embeddings._encoder:
            return self.embeddings.encode_texts(list(questions))
        return np.asarray(self._encoder.encode(list(questions)), dtype=np.float32)

    @property
    def needs_question_vector(self) -> bool:
        """Whether :meth:`retrieve` with the default method embeds the question."""
        return METHODS.get(self.config.method).needs_question or self.config.relation_weight > 0

    def _node_vectors(self, ids: np.ndarray) -> np.ndarray:
        # Rows are gathered from the (possibly memory-mapped float16) matrix and converted
        # per query: a float32 copy of a 1 M-node matrix would cost 1.5 GB of memory.
        return self.embeddings.get(ids)

    def relation_vectors(self) -> np.ndarray:
        """(R, D) unit embeddings of the store's relations, each verbalised with placeholder
        ends (``"something is used for something"``); computed once per retriever."""
        if self._relation_vecs is None:
            phrases = [Fact("something", r, "something").verbalize() for r in self.kg.relations]
            self._relation_vecs = np.asarray(self.encoder.encode(phrases), dtype=np.float32)
        return self._relation_vecs

    # ----------------------------------------------------------------- seeds
    def _seeds(self, entities: Sequence[Entity | str]) -> tuple[dict[int, tuple[int, float]], list[str], list[Entity]]:
        """store id -> (origin bits, score); names not in the store; entities as Entity."""
        seeds: dict[int, tuple[int, float]] = {}
        missing: list[str] = []
        ents: list[Entity] = []
        ids = self._ids
        for e in entities:
            ents.append(e)
            i = ids.get(e.concept, -1)
            if i == -1:  # not looked up yet (a binary search of the store's names)
                i = self.kg.lookup(e.concept)
                if len(ids) >= 65536:
                    ids.clear()
                ids[e.concept] = i
            if i is None:
                missing.append(e.concept)
                continue
            bits, score = seeds.get(i, (0, 0.0))
            seeds[i] = (bits | _ORIGIN_BIT[e.origin], max(score, float(e.score)))
        return seeds, missing, ents

    # ------------------------------------------------------------- expansion
    def _gather(self, nodes: np.ndarray, cap: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(edge ids, frontier node, other end) of the capped edges of ``nodes``."""
        d = self.config.direction
        eids, here, there = [], [], []
        for kind in ("out", "in"):
            if d not in (kind, "both"):
                continue
            indptr, order = (self._out_indptr, self._out_order) if kind == "out" else (self._in_indptr, self._in_order)
            starts, ends = indptr[nodes], indptr[nodes + 1]
            if cap is not None:
                ends = np.minimum(ends, starts + cap)
            pos = _ranges(starts, ends)
            e = order[pos]
            eids.append(e)
            if kind == "out":
                here.append(self._src[e]); there.append(self._dst[e])
            else:
                here.append(self._dst[e]); there.append(self._src[e])
        return np.concatenate(eids), np.concatenate(here), np.concatenate(there)

    def _expand(self, seed_ids: np.ndarray, qvec: np.ndarray | None):
        """Candidates: ids (M,), hop (M,), parent store id (M,), discovering edge (M,),
        plus all traversed edge ids."""
        cfg = self.config
        n = self.kg.num_nodes
        hop = np.full(n, -1, dtype=np.int8)
        hop[seed_ids] = 0
        ids = [seed_ids]
        hops = [np.zeros(len(seed_ids), dtype=np.int64)]
        parents = [seed_ids.copy()]
        pedges = [np.full(len(seed_ids), -1, dtype=np.int64)]
        traversed = []
        rels = [self._node_vectors(seed_ids) @ qvec] if qvec is not None else None
        frontier = seed_ids
        total = len(seed_ids)
        for h in range(1, cfg.k + 1):
            if not len(frontier) or total >= cfg.max_candidates:
                break
            cap = cfg.seed_max_degree if h == 1 else cfg.max_degree
            e, here, there = self._gather(frontier, cap)
            traversed.append(e)
            new = hop[there] < 0
            e, here, there = e[new], here[new], there[new]
            if not len(there):
                break
            uniq, first = np.unique(there, return_index=True)
            if total + len(uniq) > cfg.max_candidates:
                # Keep the heaviest discovering edges (the order within caps is by weight).
                keep = np.argsort(-self._w[e[first]], kind="stable")[:cfg.max_candidates - total]
                keep.sort()
                uniq, first = uniq[keep], first[keep]
            hop[uniq] = h
            ids.append(uniq); hops.append(np.full(len(uniq), h, dtype=np.int64))
            parents.append(here[first]); pedges.append(e[first])
            total += len(uniq)
            frontier = uniq
            if rels is not None:
                rels.append(self._node_vectors(uniq) @ qvec)  # (M_h,) cosine similarity
            if h < cfg.k and len(frontier) > self.max_frontier:
                # Beam: expand only the frontier nodes closest to the question (or heaviest).
                score = rels[-1] if rels is not None else self._w[e[first]]
                frontier = frontier[np.argpartition(-score, self.max_frontier - 1)[:self.max_frontier]]
        cand = np.concatenate(ids)
        tr = np.concatenate(traversed) if traversed else np.zeros(0, dtype=np.int64)
        rel = np.concatenate(rels) if rels is not None else None
        return cand, np.concatenate(hops), np.concatenate(parents), np.concatenate(pedges), tr, rel

    @contextmanager
    def _positions(self, nodes: np.ndarray):
        """A store-sized array holding each of ``nodes``' (unique store ids) position in
        ``nodes`` and -1 elsewhere, for the duration of the block. The array is allocated once
        per thread and only the given entries are written and reset, so a lookup costs
        O(len(nodes)) instead of a sort and binary searches."""
        pos = getattr(self._scratch, "pos", None)
        if pos is None or len(pos) != self.kg.num_nodes:
            pos = self._scratch.pos = np.full(self.kg.num_nodes, -1, dtype=np.int64)
        pos[nodes] = np.arange(len(nodes))
        try:
            yield pos
        finally:
            pos[nodes] = -1

    # --------------------------------------------------------------- scoring
    def _ppr(self, cand: np.ndarray, seed_w: np.ndarray, tr_edges: np.ndarray) -> np.ndarray:
        """Personalised PageRank from the seeds on the traversed edges among the candidates."""
        cfg = self.config
        with self._positions(cand) as local:
            s, d = local[self._src[tr_edges]], local[self._dst[tr_edges]]
        ok = (s >= 0) & (d >= 0)
        restart = np.zeros(len(cand))
        restart[:len(seed_w)] = seed_w
        return personalized_pagerank(s[ok], d[ok], self._w[tr_edges[ok]], len(cand), restart,
                                     cfg.ppr_alpha, cfg.ppr_iters)

    # --------------------------------------------------------------- pruning
    def _select(self, cand: np.ndarray, score: np.ndarray, parent: np.ndarray, n_seeds: int, budget: int,
                connect: bool, edge_cost: float | None) -> np.ndarray:
        """Positions (into ``cand``) of the kept nodes: seeds first, then by score."""
        if budget <= n_seeds:
            return np.arange(min(budget, n_seeds))
        head, tail = _ranked(-score[n_seeds:], 2 * (budget - n_seeds) + 64)
        if not connect and edge_cost is None:
            order = head if len(head) >= budget - n_seeds else np.concatenate([head, tail()])
            return np.concatenate([np.arange(n_seeds), order[:budget - n_seeds] + n_seeds])
        with self._positions(cand) as pos:
            ppos = pos[parent].tolist()  # parent's position in cand
        chosen = np.zeros(len(cand), dtype=bool)
        chosen[:n_seeds] = True
        chosen_l = chosen.tolist()
        kept = list(range(n_seeds))

        def order():  # the candidates by score, best first; the rest sorted only when reached
            yield from (head + n_seeds).tolist()
            yield from (tail() + n_seeds).tolist()

        for i in order():
            if len(kept) >= budget:
                break
            if chosen_l[i]:
                continue
            chain = [i]
            j = ppos[i]
            while not chosen_l[j]:
                chain.append(j)
                j = ppos[j]
            if len(kept) + len(chain) > budget:
                continue
            if edge_cost is not None and float(score[chain].sum()) < edge_cost * len(chain):
                continue  # the prizes do not pay for the edges that connect them
            for c in chain:
                chosen_l[c] = True
            kept.extend(reversed(chain))
        return np.asarray(kept, dtype=np.int64)

    # ------------------------------------------------------------------ main
    def retrieve(self, entities: Sequence[Entity | str] | None = None, question: str | None = None, *,
                 budget: int | None = None, method: str | None = None,
                 question_embedding: np.ndarray | None = None, ground_question: bool | None = None,
                 use_cache: bool = True) -> Subgraph:
        """The subgraph around ``entities`` (and the question's concepts).

        Args:
            entities: seeds, as :class:`Entity` (keeping their origin) or concept names
                (origin ``"question"``). None: only the question's concepts.
            question: the question; used for relevance and, when no entity comes from the
                question (or ``ground_question=True``), grounded into more seeds.
            budget: node budget (default ``config.budget``); 0 gives an empty subgraph.
            method: pruning method (default ``config.method``); see the module docstring.
            question_embedding: (D,) precomputed unit embedding of ``question``.
            ground_question: ground the question into seeds (default: when no entity has
                origin ``"question"``).
            use_cache: reuse the result of an identical earlier call.

        Returns:
            A :class:`Subgraph`; an empty one has ``reason`` set (no seeds, seeds absent
            from the KG, budget 0).

        Raises:
            ValueError: negative budget, unknown method, relevance without a question.
            TypeError: seeds of another type.
        """
        cfg = self.config
        t0 = time.perf_counter()
        budget = cfg.budget if budget is None else budget
        method = cfg.method if method is None else method
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
            raise ValueError(f"retrieve: expected a budget >= 0 nodes, found {budget!r}")

        if method not in METHODS:
            raise ValueError(f"retrieve: expected method in {METHODS.names()}, found {method!r}")
        kind = METHODS.get(method)
        if question is not None and not isinstance(question, str):
            raise TypeError(f"retrieve: expected the question as a str, found {type(question).__name__}")
        if isinstance(entities, (str, Entity)):
            entities = [entities]
        entities = self._as_entities(entities or [])
        q = question.strip() if question else ""
        info: dict[str, Any] = {"method": method, "budget": int(budget)}
        if ground_question is None:
            ground_question = bool(q) and not any(e.origin == "question" for e in entities)
        if ground_question and q:
            g = self.grounder.ground(q)
            info["grounding"] = g.reason
            entities = entities + list(g.entities)
        rels = list(self.kg.relations)
        if budget == 0:
            return Subgraph.empty("budget is 0 nodes", entities=entities,
                                  relation_names=rels, question=question, info=info)
        key = None
        if use_cache and cfg.cache_size:
            key = (tuple((e.concept, e.origin, e.score) for e in entities), q, int(budget), method)
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit.clone()
        seeds, missing, ents = self._seeds(entities)
        info["missing_seeds"] = missing
        if not seeds:
            if not ents:
                reason = ("no seed concepts: the question is empty" if not q else
                          "no seed concepts: no concept of the knowledge graph found in the question")
            else:
                reason = f"none of the seed concepts is in the knowledge graph: {', '.join(missing)}"
            return Subgraph.empty(reason, entities=ents, relation_names=rels, question=question, info=info)
        if missing:
            logger.debug("retrieve: seeds not in the KG: %s", ", ".join(missing))

        # Seeds ordered by score (the best are kept when the budget is below their count).
        items = sorted(seeds.items(), key=lambda kv: (-kv[1][1], kv[0]))
        seed_ids = np.asarray([i for i, _ in items], dtype=np.int64)
        seed_bits = np.asarray([b for _, (b, _) in items], dtype=np.int64)
        seed_w = np.asarray([max(s, 1e-3) for _, (_, s) in items], dtype=np.float64)

        qvec = None
        if kind.needs_question:
            if question_embedding is not None:
                qvec = np.asarray(question_embedding, dtype=np.float32).ravel()
            elif q:
                qvec = self.embed_question(q)
            else:
                raise ValueError(f"retrieve: method {method!r} needs a question (or question_embedding), found none")
        t1 = time.perf_counter()
        cand, hops, parent, pedge, tr, rel = self._expand(seed_ids, qvec)
        t2 = time.perf_counter()
        if kind.needs_question and rel is None:
            raise ValueError(f"retrieve: method {method!r} needs a question (or question_embedding), found none")
        score, parts = kind.score(ScoringInputs(closeness=cfg.hop_decay ** hops.astype(np.float64), relevance=rel,
                                                ppr=lambda: self._ppr(cand, seed_w, tr),
                                                relevance_weight=cfg.relevance_weight))
        if cfg.relation_weight > 0 and (q or question_embedding is not None):
            # The asked relation's edges of the seeds first (see RetrievalConfig.relation_weight).
            qv = qvec if qvec is not None else (
                np.asarray(question_embedding, dtype=np.float32).ravel() if question_embedding is not None
                else self.embed_question(q))
            prior = relation_prior(qv, self.relation_vectors(), cfg.relation_temperature)
            match = relation_match(cand, seed_w, self._src[tr], self._dst[tr], self._rel[tr], prior)
            score = (score + cfg.relation_weight * match) / (1.0 + cfg.relation_weight)
            info["relation_prior"] = {self.kg.relations[i]: round(float(prior[i]), 3)
                                      for i in np.argsort(-prior)[:3]}
        n_seeds = len(seed_ids)
        keep = self._select(cand, score, parent, n_seeds, int(budget), cfg.connect,
                            cfg.pcst_edge_cost if kind.prize_collecting else None)
        t3 = time.perf_counter()
        sg = self._build(cand[keep], score[keep], seed_bits, n_seeds, rels)
        sg.entities = ents
        sg.question = question
        sg.reason = None
        info.update(candidates=int(len(cand)), traversed_edges=int(len(tr)),
                    seconds={"embed_question": t1 - t0, "expand": t2 - t1, "score_prune": t3 - t2,
                             "build": time.perf_counter() - t3})
        sg.info = info
        if key is not None:
            self._cache[key] = sg
            if len(self._cache) > cfg.cache_size:
                self._cache.popitem(last=False)
            return sg.clone()
        return sg

    @staticmethod
    def _as_entities(entities: Iterable[Entity | str]) -> list[Entity]:
        out = []
        for e in entities:
            if isinstance(e, str):
                if not e.strip():
                    raise ValueError("retrieve: expected non-empty seed concept names, found ''")
                e = Entity(e.strip(), 1.0, "question")
            elif not isinstance(e, Entity):
                raise TypeError(f"retrieve: expected seeds as Entity or str, found {type(e).__name__}")
            out.append(e)
        return out

    def _build(self, nodes: np.ndarray, score: np.ndarray, seed_bits: np.ndarray, n_seeds: int,
               rels: list[str]) -> Subgraph:
        cfg = self.config
        kg = self.kg
        n = len(nodes)
        rel = np.clip(score, 0.0, 1.0).astype(np.float32)
        n_kept_seeds = min(n_seeds, n)
        rel[:n_kept_seeds] = 1.0
        # Induced edges among the kept nodes, in edge id order (the out-edges of the nodes in id
        # order); found from the side with fewer edges (hubs often have many more out-edges).
        sn = np.sort(nodes)
        starts, ends = self._out_indptr[sn], self._out_indptr[sn + 1]
        in_starts, in_ends = self._in_indptr[sn], self._in_indptr[sn + 1]
        with self._positions(nodes) as pos:
            if int((in_ends - in_starts).sum()) < int((ends - starts).sum()):
                eids = self._in_order[_ranges(in_starts, in_ends)]
                eids = np.sort(eids[pos[self._src[eids]] >= 0])
                dpos = pos[self._dst[eids]]
            else:
                eids = _ranges(starts, ends)
                dpos = pos[self._dst[eids]]
                inside = dpos >= 0
                eids, dpos = eids[inside], dpos[inside]
            spos = pos[self._src[eids]]
        erel = np.sqrt(rel[spos] * rel[dpos]).astype(np.float32)
        if cfg.max_edges is not None and len(eids) > cfg.max_edges:
            top = np.sort(np.argsort(-erel, kind="stable")[:cfg.max_edges])
            eids, spos, dpos, erel = eids[top], spos[top], dpos[top], erel[top]
        seed_mask = np.zeros(n, dtype=bool)
        seed_mask[:n_kept_seeds] = True
        origin = np.zeros(n, dtype=np.int64)
        origin[:n_kept_seeds] = seed_bits[:n_kept_seeds]
        sg = Subgraph(  # numpy fields: tensors on first read (Subgraph.TENSOR_FIELDS)
            edge_index=np.stack([spos, dpos]).astype(np.int64),
            edge_type=self._rel[eids],
            edge_weight=self._w[eids].copy(),
            node_id=nodes.astype(np.int64),
            node_relevance=rel,
            edge_relevance=erel,
            seed_mask=seed_mask,
            origin=origin,
        )
        sg.num_nodes = n
        if kg.has_surface:  # ConceptNet's own sentences, for the evidence
            sg.edge_surface = [kg.surface_text(int(e)) or "" for e in eids.tolist()]
        sg.node_names = kg.concept_names(nodes.tolist())
        sg.relation_names = rels
        return sg

    def clear_cache(self) -> None:
        self._cache.clear()
