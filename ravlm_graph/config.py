"""Component configurations: one dataclass per component, validated on construction.

Each config round-trips through :meth:`to_dict` / :meth:`from_dict` (JSON-safe) so it
can be written as ``config.json`` next to a checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

__all__ = ["GroundingConfig", "RetrievalConfig", "RETRIEVAL_METHODS"]


def _from_dict(cls, data: Mapping[str, Any]):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}; expected some of {sorted(names)}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    return cls(**kwargs)


def _check_range(owner: str, name: str, value, lo=None, hi=None, kind=(int, float)) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{owner}.{name}: expected a number, found {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{owner}.{name}: expected a value >= {lo}, found {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{owner}.{name}: expected a value <= {hi}, found {value!r}")


# Words too general to be a useful seed on their own (kept with a reduced score, or
# dropped with ``drop_general=True``); they are common, very high-degree ConceptNet hubs.
DEFAULT_GENERAL_CONCEPTS: tuple[str, ...] = (
    "person", "people", "someone", "somebody", "something", "thing", "things", "human",
    "man", "woman", "place", "way", "time", "object", "item", "stuff", "kind", "type",
    "picture", "image", "photo", "name", "part", "use", "good", "bad", "many", "much",
)


@dataclass(frozen=True)
class GroundingConfig:
    """Text grounding (question -> ConceptNet concepts).

    Args:
        max_ngram (int): longest word n-gram matched against the vocabulary (default 5).
        lemmatize (bool): also match lemma forms of the words (lemminflect; default True).
        drop_determiners (bool): also match n-grams with articles/possessives removed
            (``"watching the film"`` -> ``watch_film``; default True).
        keep_nested (bool): also return concepts nested inside a longer match (``"ice"``
            inside ``"ice cream"``), with their score times ``nested_penalty`` (default True).
        nested_penalty (float): score factor of nested matches (default 0.5).
        general_concepts (tuple[str, ...]): over-general concepts (``person``, ``thing``, ...).
        drop_general (bool): drop them instead of down-weighting (default False).
        general_penalty (float): score factor of a general concept (default 0.3).
        hub_degree (int): degree above which a concept's score is lowered by specificity
            (default 100).
        min_score (float): concepts scoring below this are not returned (default 0.0).
    """

    max_ngram: int = 5
    lemmatize: bool = True
    drop_determiners: bool = True
    keep_nested: bool = True
    nested_penalty: float = 0.5
    general_concepts: tuple[str, ...] = DEFAULT_GENERAL_CONCEPTS
    drop_general: bool = False
    general_penalty: float = 0.3
    hub_degree: int = 100
    min_score: float = 0.0

    def __post_init__(self) -> None:
        o = "GroundingConfig"
        _check_range(o, "max_ngram", self.max_ngram, 1, 10, kind=int)
        _check_range(o, "nested_penalty", self.nested_penalty, 0.0, 1.0)
        _check_range(o, "general_penalty", self.general_penalty, 0.0, 1.0)
        _check_range(o, "hub_degree", self.hub_degree, 1, kind=int)
        _check_range(o, "min_score", self.min_score, 0.0, 1.0)
        if isinstance(self.general_concepts, str) or not all(isinstance(c, str) for c in self.general_concepts):
            raise ValueError(f"{o}.general_concepts: expected a tuple of concept names, found {self.general_concepts!r}")
        object.__setattr__(self, "general_concepts", tuple(self.general_concepts))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["general_concepts"] = list(self.general_concepts)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GroundingConfig":
        return _from_dict(cls, data)


#: Pruning methods of :class:`RetrievalConfig`.
RETRIEVAL_METHODS: tuple[str, ...] = ("khop", "relevance", "ppr", "hybrid", "pcst")


@dataclass(frozen=True)
class RetrievalConfig:
    """Subgraph retrieval (seed concepts -> pruned :class:`~ravlm_graph.retrieval.Subgraph`).

    Args:
        k (int): hops of the expansion around the seeds (default 2).
        direction (str): follow ``"out"``, ``"in"`` or ``"both"`` edge directions (default both).
        max_degree (int | None): expand at most this many edges per node and direction,
            the heaviest first (ties in a fixed pseudo-random order); None: all (default 64).
        seed_max_degree (int | None): the same cap for the seeds themselves (default 512).
        max_candidates (int): hard cap on candidate nodes before pruning (default 5000).
        budget (int): node budget of the returned subgraph, seeds included (default 200).
        method (str): pruning: ``"khop"`` (nearest first), ``"relevance"`` (text embedding
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
    cache_size: int = 256

    def __post_init__(self) -> None:
        o = "RetrievalConfig"
        _check_range(o, "k", self.k, 0, 6, kind=int)
        if self.direction not in ("out", "in", "both"):
            raise ValueError(f"{o}.direction: expected 'out', 'in' or 'both', found {self.direction!r}")
        for name in ("max_degree", "seed_max_degree", "max_edges"):
            v = getattr(self, name)
            if v is not None:
                _check_range(o, name, v, 1, kind=int)
        _check_range(o, "max_candidates", self.max_candidates, 1, kind=int)
        _check_range(o, "budget", self.budget, 0, kind=int)
        if self.method not in RETRIEVAL_METHODS:
            raise ValueError(f"{o}.method: expected one of {RETRIEVAL_METHODS}, found {self.method!r}")
        _check_range(o, "relevance_weight", self.relevance_weight, 0.0, 1.0)
        _check_range(o, "ppr_alpha", self.ppr_alpha, 1e-6, 1.0)
        _check_range(o, "ppr_iters", self.ppr_iters, 1, 1000, kind=int)
        _check_range(o, "hop_decay", self.hop_decay, 0.0, 1.0)
        _check_range(o, "pcst_edge_cost", self.pcst_edge_cost, 0.0)
        _check_range(o, "cache_size", self.cache_size, 0, kind=int)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RetrievalConfig":
        return _from_dict(cls, data)

    def replace(self, **changes: Any) -> "RetrievalConfig":
        """A copy with some fields changed (validated again)."""
        from dataclasses import replace

        return replace(self, **changes)


# The other components' configurations live beside their code (they import torch);
# they are re-exported here on first use so that every config has one address.
_ELSEWHERE = {"GNNConfig": "gnn", "FusionConfig": "fusion", "BackboneConfig": "backbones",
              "KnowledgeVQAConfig": "modeling", "TrainConfig": "training", "EngineConfig": "pipeline"}


def __getattr__(name: str):
    mod = _ELSEWHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'ravlm_graph.config' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"ravlm_graph.{mod}"), name)
