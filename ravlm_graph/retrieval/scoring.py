"""Node scores for pruning a candidate subgraph: personalised PageRank over a CSR graph,
min-max scaling, and CSR range expansion."""

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
    has_dangling = bool(dangling.any())
    ar = alpha * r
    p = r.copy()
    flow = np.empty(len(s))
    # Each step is p = (1 - alpha) * (spread + p[dangling].sum() * r) + alpha * r, computed in
    # place with the same floating-point operations; without dangling nodes the middle term
    # is + 0.0 * r, which changes no value (spread >= 0), and is skipped.
    for _ in range(iters):
        np.take(p, s, out=flow)
        flow *= wn
        spread = np.bincount(d, weights=flow, minlength=num_nodes)
        if has_dangling:
            spread += p[dangling].sum() * r
        spread *= 1 - alpha
        spread += ar
        p = spread
    return p


def _minmax(x: np.ndarray) -> np.ndarray:
    if not len(x):
        return x
    lo, hi = float(x.min()), float(x.max())
    return np.ones_like(x) if hi - lo < 1e-12 else (x - lo) / (hi - lo)


# --------------------------------------------------------------------------- asked relation

def relation_prior(question_vec: np.ndarray, relation_vecs: np.ndarray, temperature: float = 0.05) -> np.ndarray:
    """How likely the question asks about each relation, from text embeddings alone.

    Each relation is represented by the embedding of its verbalised form with
    placeholder ends (``"something is used for something"``); the question's cosine
    similarity to each, softened by ``temperature``, gives a softmax, rescaled so that
    the most likely relation weighs 1. Zero-shot: nothing is learnt from a dataset.

    Args:
        question_vec: (D,) unit embedding of the question.
        relation_vecs: (R, D) unit embeddings of the relations' phrases.
        temperature: softmax temperature on cosine similarities (> 0).

    Returns:
        (R,) weights in (0, 1], the largest exactly 1.
    """
    if temperature <= 0:
        raise ValueError(f"relation_prior: expected a temperature > 0, found {temperature}")
    z = (np.asarray(relation_vecs, dtype=np.float64) @ np.asarray(question_vec, dtype=np.float64)) / temperature
    z = np.exp(z - z.max())  # (R,)
    return z / z.max()


def relation_match(cand: np.ndarray, seed_w: np.ndarray, src: np.ndarray, dst: np.ndarray,
                   rel: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Per candidate: its best edge to a seed, weighed by the asked relation.

    A candidate joined to seed ``s`` by an edge of relation ``r`` (either direction)
    scores ``seed_w[s] * prior[r]``; the maximum over its edges is kept, 0 without one.
    Ranking by it puts the asked relation's edges of the (most trusted) seeds first.

    Args:
        cand: (M,) store ids of the candidates, the seeds first (``len(seed_w)`` of them).
        seed_w: (S,) seed weights (entity scores).
        src, dst, rel: (E,) store ids of the traversed edges' ends and their relation ids.
        prior: (R,) weight per relation id (:func:`relation_prior`).

    Returns:
        (M,) scores in [0, max(seed_w)]; the seeds' own entries count their edges to
        other seeds.
    """
    out = np.zeros(len(cand), dtype=np.float64)
    if not len(cand) or not len(src):
        return out
    order = np.argsort(cand, kind="stable")
    sc = cand[order]

    def local(x: np.ndarray) -> np.ndarray:
        p = np.minimum(np.searchsorted(sc, x), len(sc) - 1)
        return np.where(sc[p] == x, order[p], -1)

    s, d = local(src), local(dst)
    n_seeds = len(seed_w)
    w = np.asarray(prior, dtype=np.float64)[rel]  # (E,)
    fwd = (s >= 0) & (s < n_seeds) & (d >= 0)  # seed -> candidate
    np.maximum.at(out, d[fwd], seed_w[s[fwd]] * w[fwd])
    back = (d >= 0) & (d < n_seeds) & (s >= 0)  # candidate -> seed
    np.maximum.at(out, s[back], seed_w[d[back]] * w[back])
    return out
