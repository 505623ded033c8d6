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
