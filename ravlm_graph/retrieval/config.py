"""Component configurations: one dataclass per component, validated on construction.

Each config round-trips through :meth:`to_dict` / :meth:`from_dict` (JSON-safe) so it
can be written as ``config.json`` next to a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from ravlm_graph.retrieval.methods import METHODS
from ravlm_graph.utils.config import Config, check_bool, check_choice, check_range

#: The registered retrieval methods at import time (``METHODS.names()`` is always current).
RETRIEVAL_METHODS: tuple[str, ...] = METHODS.names()


@dataclass(frozen=True)
class RetrievalConfig(Config):
    """Subgraph retrieval (seed concepts -> pruned :class:`~ravlm_graph.retrieval.Subgraph`).

    Args:
        k (int): hops of the expansion around the seeds (default 2).
        direction (str): follow ``"out"``, ``"in"`` or ``"both"`` edge directions (default both).
        max_degree (int | None): expand at most this many edges per node and direction,
            the heaviest first (ties in a fixed pseudo-random order); None: all (default 64).
        seed_max_degree (int | None): the same cap for the seeds themselves (default 512).
        max_candidates (int): hard cap on candidate nodes before pruning (default 5000).
        budget (int): node budget of the returned subgraph, seeds included (default 200). The
            one owner of the budget: engines, recipes and feature builders read it here.
        method (str): a name registered in :data:`~ravlm_graph.retrieval.methods.METHODS`: ``"khop"`` (nearest first), ``"relevance"`` (text embedding
            similarity with the question), ``"ppr"`` (personalised PageRank from the seeds),
            ``"hybrid"`` (relevance and PPR mixed), ``"pcst"`` (hybrid prizes, then a
            prize-collecting Steiner tree). Default ``"hybrid"``.
        relevance_weight (float): weight of text similarity in ``hybrid`` (default 0.5).
        ppr_alpha (float): restart probability of personalised PageRank (default 0.25).
        ppr_iters (int): power iterations (default 20).
        hop_decay (float): score factor per hop away from the seeds (default 0.85).
        connect (bool): keep the subgraph connected to the seeds by adding each kept
            node's path back to a seed (counts against the budget; default True).
        pcst_edge_cost (float): cost of an edge in ``pcst`` (default 0.05).
        max_edges (int | None): keep at most this many edges (most relevant first); None: all.
        relation_weight (float): weight of the asked relation in the node scores: a node
            joined to a seed by an edge of the relation the question most likely asks
            about (zero-shot, from text embeddings of the relations' phrases) ranks before
            the others; the final score is ``(score + w * match) / (1 + w)``. 0 turns it
            off (default 0).
        relation_temperature (float): softmax temperature of the relation prior on cosine
            similarities (default 0.05).
        cache_size (int): results kept per retriever, by (seeds, question) (default 256).
    """

    k: int = 2
    direction: str = "both"
    max_degree: int | None = 64
    seed_max_degree: int | None = 512
    max_candidates: int = 5000
    budget: int = 200
    method: str = "hybrid"
    relevance_weight: float = 0.5
    ppr_alpha: float = 0.25
    ppr_iters: int = 20
    hop_decay: float = 0.85
    connect: bool = True
    pcst_edge_cost: float = 0.05
    max_edges: int | None = None
    relation_weight: float = 0.0
    relation_temperature: float = 0.05
    cache_size: int = 256

    def validate(self) -> None:
        o = "RetrievalConfig"
        check_range(o, "k", self.k, 0, 6, kind=int)
        if self.direction not in ("out", "in", "both"):
            raise ValueError(f"{o}.direction: expected 'out', 'in' or 'both', found {self.direction!r}")
        for name in ("max_degree", "seed_max_degree", "max_edges"):
            v = getattr(self, name)
            if v is not None:
                check_range(o, name, v, 1, kind=int)
        check_range(o, "max_candidates", self.max_candidates, 1, 10_000_000, kind=int)
        check_range(o, "budget", self.budget, 0, 1_000_000, kind=int)
        check_choice(o, "method", self.method, METHODS)
        check_range(o, "relevance_weight", self.relevance_weight, 0.0, 1.0)
        check_range(o, "ppr_alpha", self.ppr_alpha, 1e-6, 1.0)
        check_range(o, "ppr_iters", self.ppr_iters, 1, 1000, kind=int)
        check_range(o, "hop_decay", self.hop_decay, 0.0, 1.0)
        check_range(o, "pcst_edge_cost", self.pcst_edge_cost, 0.0)
        check_range(o, "relation_weight", self.relation_weight, 0.0)
        check_range(o, "relation_temperature", self.relation_temperature, 1e-4)
        check_range(o, "cache_size", self.cache_size, 0, kind=int)
        check_bool(o, "connect", self.connect)
