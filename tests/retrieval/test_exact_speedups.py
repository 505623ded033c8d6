"""The retrieval speed-ups give exactly what the straightforward code gave.

The reference below is the code before them (personalised PageRank, pruning, the induced
edges of the subgraph, seed and grounding look-ups), kept verbatim in a subclass; the
retriever must return the same subgraphs (node order, edges, types, relevances, names,
seeds, origins, info) on built-in val questions, and the same PageRank values bit for bit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ravlm_graph.grounding.text import TextGrounder
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.retrieval.retriever import SubgraphRetriever, _ranked
from ravlm_graph.retrieval.scoring import _ranges, personalized_pagerank
from ravlm_graph.retrieval.subgraph import Subgraph
from ravlm_graph.types import Entity


# --------------------------------------------------------------------------- reference

def ref_personalized_pagerank(src, dst, weight, num_nodes, restart, alpha=0.25, iters=20):
    r = np.asarray(restart, dtype=np.float64)
    total = r.sum()
    if total <= 0:
        raise ValueError("no restart mass")
    r = r / total
    s = np.concatenate([src, dst])
    d = np.concatenate([dst, src])
    w = np.ones(len(s)) if weight is None else np.concatenate([weight, weight]).astype(np.float64)
    out_w = np.bincount(s, weights=w, minlength=num_nodes)
    wn = w / np.maximum(out_w[s], 1e-12)
    dangling = out_w == 0
    p = r.copy()
    for _ in range(iters):
        spread = np.bincount(d, weights=p[s] * wn, minlength=num_nodes)
        p = (1 - alpha) * (spread + p[dangling].sum() * r) + alpha * r
    return p


class RefGrounder(TextGrounder):
    def _score(self, m):
        deg = int(self._degree[self.kg.find_id(m.concept)])
        hub = self.config.hub_degree
        spec = 1.0 if deg <= hub else 1.0 / (1.0 + math.log10(deg / hub))
        s = m.quality * spec
        if m.concept in self._general:
            s *= self.config.general_penalty
        return s


class RefRetriever(SubgraphRetriever):
    """The retriever with its pre-speed-up PageRank, pruning, subgraph build and look-ups."""

    def _seeds(self, entities):
        from ravlm_graph.retrieval.subgraph import _ORIGIN_BIT

        seeds, missing, ents = {}, [], []
        for e in entities:
            ents.append(e)
            i = self.kg.lookup(e.concept)
            if i is None:
                missing.append(e.concept)
                continue
            bits, score = seeds.get(i, (0, 0.0))
            seeds[i] = (bits | _ORIGIN_BIT[e.origin], max(score, float(e.score)))
        return seeds, missing, ents

    def _ppr(self, cand, seed_w, tr_edges):
        cfg = self.config
        with self._positions(cand) as local:
            s, d = local[self._src[tr_edges]], local[self._dst[tr_edges]]
        ok = (s >= 0) & (d >= 0)
        restart = np.zeros(len(cand))
        restart[:len(seed_w)] = seed_w
        return ref_personalized_pagerank(s[ok], d[ok], self._w[tr_edges[ok]], len(cand), restart,
                                         cfg.ppr_alpha, cfg.ppr_iters)

    def _select(self, cand, score, parent, n_seeds, budget, connect, edge_cost):
        if budget <= n_seeds:
            return np.arange(min(budget, n_seeds))
        rest = np.arange(n_seeds, len(cand))
        order = rest[np.argsort(-score[rest], kind="stable")]
        if not connect and edge_cost is None:
            return np.concatenate([np.arange(n_seeds), order[:budget - n_seeds]])
        with self._positions(cand) as pos:
            ppos = pos[parent].tolist()
        chosen_l = [i < n_seeds for i in range(len(cand))]
        kept = list(range(n_seeds))
        for i in order.tolist():
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
                continue
            for c in chain:
                chosen_l[c] = True
            kept.extend(reversed(chain))
        return np.asarray(kept, dtype=np.int64)

    def _build(self, nodes, score, seed_bits, n_seeds, rels):
        cfg = self.config
        kg = self.kg
        n = len(nodes)
        rel = np.clip(score, 0.0, 1.0).astype(np.float32)
        n_kept_seeds = min(n_seeds, n)
        rel[:n_kept_seeds] = 1.0
        sn = np.sort(nodes)
        eids = _ranges(self._out_indptr[sn], self._out_indptr[sn + 1])
        with self._positions(nodes) as pos:
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
        sg = Subgraph(edge_index=np.stack([spos, dpos]).astype(np.int64), edge_type=self._rel[eids],
                      edge_weight=self._w[eids].copy(), node_id=nodes.astype(np.int64), node_relevance=rel,
                      edge_relevance=erel, seed_mask=seed_mask, origin=origin)
        sg.num_nodes = n
        if kg.has_surface:
            sg.edge_surface = [kg.surface_text(int(e)) or "" for e in eids.tolist()]
        sg.node_names = kg.concept_names(nodes.tolist())
        sg.relation_names = rels
        return sg


def differences(a: Subgraph, b: Subgraph) -> list[str]:
    """The fields in which two subgraphs differ (timings aside)."""
    out = []
    for f in Subgraph.TENSOR_FIELDS:
        x, y = a.array(f), b.array(f)
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            out.append(f)
    for f in ("node_names", "relation_names", "entities", "question", "reason", "num_nodes"):
        if getattr(a, f, None) != getattr(b, f, None):
            out.append(f)
    if a._store.get("edge_surface") != b._store.get("edge_surface"):
        out.append("edge_surface")
    if {k: v for k, v in a.info.items() if k != "seconds"} != {k: v for k, v in b.info.items() if k != "seconds"}:
        out.append("info")
    return out


# --------------------------------------------------------------------------- units

def _random_graph(rng, n, e, zero_weights=False):
    src = rng.integers(0, n, e)
    dst = rng.integers(0, n, e)
    w = rng.random(e) * 3
    if zero_weights:
        w[rng.random(e) < 0.3] = 0.0
    restart = np.zeros(n)
    restart[: max(1, n // 10)] = rng.random(max(1, n // 10)) + 0.01
    return src, dst, w, n, restart


@pytest.mark.parametrize("seed", range(6))
def test_pagerank_is_bit_identical_to_the_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    # Sparse graphs leave nodes without edges (dangling); zero weights make more.
    src, dst, w, n, restart = _random_graph(rng, n, int(rng.integers(0, 3 * n)), zero_weights=seed % 2 == 1)
    for weight in (w, None):
        a = ref_personalized_pagerank(src, dst, weight, n, restart, 0.25, 20)
        b = personalized_pagerank(src, dst, weight, n, restart, 0.25, 20)
        assert np.array_equal(a, b)


def test_pagerank_without_dangling_nodes_is_bit_identical():
    rng = np.random.default_rng(7)
    n = 300
    src = np.arange(n)
    dst = np.roll(src, 1)  # a ring: every node has edges
    extra = rng.integers(0, n, (2, 900))
    src, dst = np.concatenate([src, extra[0]]), np.concatenate([dst, extra[1]])
    w = rng.random(len(src)) + 0.1
    restart = np.zeros(n)
    restart[:5] = 1.0
    assert np.array_equal(ref_personalized_pagerank(src, dst, w, n, restart, 0.3, 30),
                          personalized_pagerank(src, dst, w, n, restart, 0.3, 30))


@pytest.mark.parametrize("k", [1, 3, 10, 50, 99, 100, 150])
def test_ranked_is_the_stable_argsort(k):
    rng = np.random.default_rng(k)
    x = rng.integers(0, 12, 100).astype(np.float64)  # many ties
    x[rng.integers(0, 100, 5)] = -0.0
    head, tail = _ranked(x, k)
    assert len(head) >= min(k, len(x))
    assert np.array_equal(np.concatenate([head, tail()]), np.argsort(x, kind="stable"))
    x[rng.integers(0, 100, 90)] = np.nan  # NaNs sort last
    head, tail = _ranked(x, k)
    assert np.array_equal(np.concatenate([head, tail()]), np.argsort(x, kind="stable"))


# --------------------------------------------------------------------------- built-in questions

@pytest.fixture(scope="module")
def builtin():
    from ravlm_graph.datasets import load_builtin
    from ravlm_graph.kg import open_kg

    kg = open_kg("bundled:cn100k+fvqa")
    recs = load_builtin("val")[:40]
    return kg, [(list(r.entities), r.question) for r in recs]


@pytest.mark.parametrize("settings", [dict(method="ppr", budget=96),
                                      dict(method="khop", budget=48, connect=False)])
def test_builtin_questions_give_the_reference_subgraphs(builtin, settings):
    kg, questions = builtin
    cfg = RetrievalConfig(**settings)
    ref = RefRetriever(kg, cfg, grounder=RefGrounder(kg))
    new = SubgraphRetriever(kg, cfg)
    n_edges = 0
    for ents, q in questions:
        a = ref.retrieve(ents, q, use_cache=False)
        b = new.retrieve(ents, q, use_cache=False)
        assert differences(a, b) == [], q
        n_edges += b.num_edges
    assert n_edges > 0


def test_both_sides_of_the_induced_edges_give_the_reference(builtin):
    """Kept nodes with more out-edges than in-edges, and the other way round."""
    kg, _ = builtin
    deg_out, deg_in = np.diff(kg.out_indptr), np.diff(kg.in_indptr)
    cfg = RetrievalConfig(method="ppr", budget=40)
    ref, new = RefRetriever(kg, cfg, grounder=RefGrounder(kg)), SubgraphRetriever(kg, cfg)
    sides = set()
    for i in np.argsort(-(deg_out + deg_in))[:30].tolist():
        name = kg.concept_name(i)
        a = ref.retrieve([name], use_cache=False)
        b = new.retrieve([name], use_cache=False)
        assert differences(a, b) == [], name
        ids = b.array("node_id")
        sides.add(int(deg_in[ids].sum()) < int(deg_out[ids].sum()))
    assert sides == {True, False}


def test_remembered_lookups_keep_missing_seeds_and_cache_hits(builtin):
    kg, questions = builtin
    new = SubgraphRetriever(kg, RetrievalConfig(method="ppr", budget=32))
    ents = [Entity("no_such_concept_xyz", 1.0, "image"), Entity("dog", 0.9, "image")]
    for _ in range(2):  # the second time from the remembered look-ups
        sg = new.retrieve(ents, "What can this do?", use_cache=False)
        assert sg.info["missing_seeds"] == ["no_such_concept_xyz"] and "dog" in sg.node_names
    a = new.retrieve(ents, "What can this do?")
    b = new.retrieve(ents, "What can this do?")  # a cache hit: an equal copy
    assert a is not b and differences(a, b) == []
    empty = new.retrieve([Entity("no_such_concept_xyz", 1.0, "image")], use_cache=False)
    assert empty.is_empty and empty.info["missing_seeds"] == ["no_such_concept_xyz"]


def test_subgraph_clone_equals_the_deep_copy_and_is_independent(builtin):
    import copy

    from ravlm_graph.utils.graph import GraphData

    kg, questions = builtin
    new = SubgraphRetriever(kg, RetrievalConfig(method="ppr", budget=32))
    for ents, q in questions[:5]:
        sg = new.retrieve(ents, q, use_cache=False)
        sg.info["nested"] = {"a": [1, 2.5, None, "x"], "b": (1, 2)}
        ref = copy.deepcopy(sg)
        c = sg.clone()
        assert type(c) is Subgraph and differences(c, ref) == [] and c.info == ref.info
        assert c.entities is not sg.entities and c.info is not sg.info
        assert c.info["nested"] is not sg.info["nested"] and c.info["nested"]["a"] is not sg.info["nested"]["a"]
        assert c.array("node_id") is not sg.array("node_id") and c.node_names is not sg.node_names
        c.info["nested"]["a"].append(3)
        c.entities.append(Entity("extra", 1.0, "image"))
        c.array("node_relevance")[:] = 0
        assert differences(sg, ref) == [] and sg.info == ref.info  # the original is untouched
        assert differences(GraphData.clone(sg), ref) == []
    # An entity with a mutable box is deep-copied, as before.
    sg = new.retrieve([Entity("dog", 1.0, "image")], use_cache=False)
    object.__setattr__(sg.entities[0], "box", [0, 0, 1, 1])
    c = sg.clone()
    assert c.entities[0] == sg.entities[0] and c.entities[0].box is not sg.entities[0].box
