"""Seed concepts -> a pruned, readable :class:`Subgraph` of the knowledge graph.

Pipeline (all vectorised numpy on the store's CSR arrays; no networkx):

1. **Seeds**: entities (``origin`` question / image) mapped to store ids; absent ones
   are reported in ``Subgraph.info["missing_seeds"]``.
2. **Expansion**: ``k`` hops, following each node's heaviest edges first, at most
   ``max_degree`` per node and direction (``seed_max_degree`` for seeds). When a hop's
   frontier is larger than ``max_frontier`` nodes, only the most relevant ones (text
   similarity to the question, when known) are expanded further — a beam.
3. **Scoring** of the candidates, by ``method``:
   ``khop`` (closer first), ``relevance`` (cosine similarity of the node name's
   all-MiniLM-L6-v2 embedding with the question's), ``ppr`` (personalised PageRank
   from the seeds on the candidate graph, restarts weighted by entity score), ``hybrid``
   (relevance and PPR mixed), ``pcst`` (hybrid prizes, then a greedy prize-collecting
   tree: a node joins with its path to the tree only when its prize pays for the edges).
4. **Pruning** to ``budget`` nodes: seeds first, then by score; with ``connect`` a node
   joins with the path that discovered it, so the subgraph stays connected to the seeds.

Personalised PageRank: Haveliwala, "Topic-sensitive PageRank", WWW 2002.
Prize-collecting Steiner trees for retrieval: He et al., "G-Retriever", 2024
(https://arxiv.org/abs/2402.07630).

>>> retriever = SubgraphRetriever(kg)
>>> sg = retriever.retrieve(["apple", "knife"], question="What is used to cut an apple?")
>>> sg.verbalize(max_facts=3)
['knife is used for cut', ...]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np


if TYPE_CHECKING:  # pragma: no cover

    pass


# --------------------------------------------------------------------------- helpers

def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each pair, vectorised."""
    lens = np.maximum(ends - starts, 0)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    keep = lens > 0
    starts, lens = starts[keep], lens[keep]
    offs = np.cumsum(lens) - lens
    out = np.ones(total, dtype=np.int64)
    out[0] = starts[0]
    out[offs[1:]] = starts[1:] - (starts[:-1] + lens[:-1] - 1)
    return np.cumsum(out)


def personalized_pagerank(src: np.ndarray, dst: np.ndarray, weight: np.ndarray | None, num_nodes: int,
                          restart: np.ndarray, alpha: float = 0.25, iters: int = 20) -> np.ndarray:
    """Personalised PageRank by power iteration on an undirected (symmetrised) graph.

    Args:
        src, dst: (E,) local node indices of the edges.
        weight: (E,) non-negative edge weights, or None (all 1).
        num_nodes: N.
        restart: (N,) restart distribution (normalised here).
        alpha: restart probability.
        iters: power iterations.

    Returns:
        (N,) stationary probabilities (sum 1).
    """
    r = np.asarray(restart, dtype=np.float64)
    total = r.sum()
    if total <= 0:
        raise ValueError("personalized_pagerank: expected a restart vector with positive mass, found none")
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


def _minmax(x: np.ndarray) -> np.ndarray:
    if not len(x):
        return x
    lo, hi = float(x.min()), float(x.max())
    return np.ones_like(x) if hi - lo < 1e-12 else (x - lo) / (hi - lo)
