"""Component configurations: one dataclass per component, validated on construction.

Each config round-trips through :meth:`to_dict` / :meth:`from_dict` (JSON-safe) so it
can be written as ``config.json`` next to a checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping
from ravlm_graph.utils.config import Config, _check_range


# Words too general to be a useful seed on their own (kept with a reduced score, or
# dropped with ``drop_general=True``); they are common, very high-degree ConceptNet hubs.
DEFAULT_GENERAL_CONCEPTS: tuple[str, ...] = (
    "person", "people", "someone", "somebody", "something", "thing", "things", "human",
    "man", "woman", "place", "way", "time", "object", "item", "stuff", "kind", "type",
    "picture", "image", "photo", "name", "part", "use", "good", "bad", "many", "much",
)


@dataclass(frozen=True)
class GroundingConfig(Config):
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

