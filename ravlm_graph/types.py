"""One record type for every knowledge-VQA / commonsense-QA dataset.

A :class:`VQARecord` holds a question, its human answers (with soft scores), the
optional multiple-choice options, the image reference (opened lazily), the entities
given with the question, and the supporting knowledge :class:`Fact` s. Records are
frozen: mappings are stored as :class:`types.MappingProxyType` over a private copy,
sequences as tuples, so a record can be shared between threads and caches safely.

Concept names follow the ConceptNet convention used by the KG side of the project:
lower case, words joined by underscores (``makeup_cabinet``); relations use
ConceptNet's CamelCase names (``AtLocation``).
"""

from __future__ import annotations

import logging
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional, Tuple

from kg_ingest.relations import CONCEPTNET_RELATIONS
from kg_ingest.store import normalize_concept as _normalize_term
from ravlm_graph.utils.english import Realiser

logger = logging.getLogger(__name__)

_RELATION_BY_KEY = {r.lower(): r for r in CONCEPTNET_RELATIONS}

_CONCEPT_URI = re.compile(r"^/c/[a-z]{2,3}/")


def canonical_relation(name: str) -> str | None:
    """Map a relation name to ConceptNet's CamelCase name.

    Args:
        name: ``"UsedFor"``, ``"/r/UsedFor"``, ``"usedfor"``, ``"used_for"`` or ``"Used For"``.

    Returns:
        The canonical name (``"UsedFor"``), or None when it is not a ConceptNet relation.
    """
    key = name.strip()
    if key.startswith("/r/"):
        key = key[3:]
    key = re.sub(r"[\s_/]+", "", key).lower()
    return _RELATION_BY_KEY.get(key)


def normalize_concept(text: str) -> str:
    """ConceptNet-style concept name: lower case, whitespace runs as one underscore.

    A ConceptNet URI (``/c/en/ice_cream/n``) is reduced to its term (``ice_cream``).

    Args:
        text: a concept name or surface form, e.g. ``"Makeup Cabinet"``.

    Returns:
        The normalised name, e.g. ``"makeup_cabinet"``; ``""`` for blank input.
    """
    s = text.strip()
    if _CONCEPT_URI.match(s):
        s = s.split("/")[3]
    return _normalize_term(s.replace("_", " "))


@dataclass(frozen=True)
class Fact:
    """A knowledge triple ``(head, relation, tail)`` over ConceptNet-style concepts.

    Args:
        head: head concept, e.g. ``"apple"``.
        relation: CamelCase relation, e.g. ``"UsedFor"`` (FVQA comparatives: ``"MoreBig"``).
        tail: tail concept, e.g. ``"eat"``.
        source: where the fact comes from (``"conceptnet"``, ``"dbpedia"``, ``"webchild"``);
            informative only, not part of equality or hashing.
        surface: ConceptNet's ``surfaceText`` of the edge (``"[[a knife]] is used for
            [[cutting]]"``) when the store kept it; not part of equality or hashing.
    """

    head: str
    relation: str
    tail: str
    source: str | None = field(default=None, compare=False)
    surface: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("head", "relation", "tail"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Fact: expected a non-empty string for {name}, found {value!r}")

    def verbalize(self, realiser: Realiser | None = None) -> str:
        """An English sentence (:class:`~ravlm_graph.utils.english.Realiser`), e.g.
        ``Fact("knife", "UsedFor", "cut")`` -> ``"a knife is used for cutting"``;
        ConceptNet's surface text when the fact carries one.

        Args:
            realiser: the realiser to use (one with a KG ``purposes`` lookup names
                compounds better: ``park_lot`` -> ``parking lot``); default: a plain one.
        """
        return (realiser or _PLAIN).fact(self.head, self.relation, self.tail, self.surface)

    def as_tuple(self) -> tuple[str, str, str]:
        """``(head, relation, tail)``."""
        return (self.head, self.relation, self.tail)


_PLAIN = Realiser()


def _freeze_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if isinstance(value, MappingProxyType):
        return value
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class VQARecord:
    """One question of a knowledge-VQA or commonsense-QA dataset.

    Args:
        qid: question id as a string (``"271"``, ``"22jbM6gDxdaMaunuzgrsBB"``).
        question: the question text.
        dataset: ``"fvqa"``, ``"okvqa"``, ``"vqa"``, ``"aokvqa"``, ``"csqa"``, ...
        split: ``"train"``, ``"val"``, ``"test"``, ... as named by the source.
        answers: every valid human answer, raw and in source order (VQA: the 10 answers);
            empty for unlabelled (test) records.
        answer_scores: answer -> soft score in [0, 1]; stored read-only.
        answer_concepts: ConceptNet-style concepts that count as the answer in the KG
            (FVQA: the answer end of the supporting fact).
        choices: multiple-choice options, or None.
        correct_choice: index into ``choices`` of the correct option, or None.
        image_path: where the image is expected; opened only by :meth:`load_image`.
        image_id: the dataset's image id (COCO id, FVQA file name), or None (text-only).
        entities: entities given with the question (:class:`Entity`).
        facts: supporting facts (:class:`Fact`).
        question_concept: CommonsenseQA's question concept, ConceptNet-style, or None.
        rationales: human rationales (A-OKVQA).
        extra: source-specific fields; stored read-only.
    """

    qid: str
    question: str
    dataset: str
    split: str
    answers: tuple[str, ...] = ()
    answer_scores: Mapping[str, float] = field(default_factory=dict)
    answer_concepts: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    correct_choice: int | None = None
    image_path: Path | None = None
    image_id: str | None = None
    entities: tuple[Entity, ...] = ()
    facts: tuple[Fact, ...] = ()
    question_concept: str | None = None
    rationales: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Freeze containers so records never share mutable state.
        object.__setattr__(self, "answers", tuple(self.answers))
        object.__setattr__(self, "answer_concepts", tuple(self.answer_concepts))
        object.__setattr__(self, "entities", tuple(self.entities))
        object.__setattr__(self, "facts", tuple(self.facts))
        object.__setattr__(self, "rationales", tuple(self.rationales))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "answer_scores", _freeze_mapping(self.answer_scores))
        object.__setattr__(self, "extra", _freeze_mapping(self.extra))
        if self.image_path is not None and not isinstance(self.image_path, Path):
            object.__setattr__(self, "image_path", Path(self.image_path))
        if self.correct_choice is not None:
            if self.choices is None:
                raise ValueError(f"{self.dataset} record {self.qid!r}: correct_choice given without choices")
            if not 0 <= self.correct_choice < len(self.choices):
                raise ValueError(
                    f"{self.dataset} record {self.qid!r}: expected correct_choice in "
                    f"0..{len(self.choices) - 1}, found {self.correct_choice}")

    @property
    def correct_answer(self) -> str | None:
        """The correct choice's text when there is one, else the highest-scored answer."""
        if self.correct_choice is not None:
            assert self.choices is not None
            return self.choices[self.correct_choice]
        if self.answer_scores:
            return max(self.answer_scores.items(), key=lambda kv: kv[1])[0]
        return self.answers[0] if self.answers else None

    @property
    def image_entities(self) -> tuple[Entity, ...]:
        """Entities whose origin is ``"image"``."""
        return tuple(e for e in self.entities if e.origin == "image")

    def load_image(self):
        """Open the image with PIL and return it converted to RGB.

        Returns:
            PIL.Image.Image: the decoded RGB image (fully loaded, file closed).

        Raises:
            FileNotFoundError: the record has no image, or the file does not exist.
            ValueError: the file exists but cannot be decoded as an image.
        """
        from PIL import Image, UnidentifiedImageError

        where = f"{self.dataset} record {self.qid!r}"
        if self.image_path is None:
            raise FileNotFoundError(f"{where}: no image path (load the dataset with images_root=...)")
        if not self.image_path.is_file():
            raise FileNotFoundError(f"{where}: image file not found: {self.image_path}")
        try:
            with Image.open(self.image_path) as im:
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ValueError(f"{where}: cannot decode image {self.image_path}: {e}") from e

#: Allowed values of :attr:`Entity.origin`.
ORIGINS = ("question", "image")


@dataclass(frozen=True)
class Entity:
    """A KG concept found in the question or in the image.

    Args:
        concept (str): the normalised ConceptNet concept, e.g. ``"ice_cream"``.
        score (float): confidence in ``[0, 1]``.
        origin (str): ``"question"`` or ``"image"``.
        span (tuple[int, int], optional): character span ``[start, end)`` in the question.
        box (tuple[float, float, float, float], optional): ``(x0, y0, x1, y1)`` in the image.
        label (str, optional): the surface text or detector label it came from.
        referred (bool): the question points at this image entity ("the thing on the
            left"); set by :func:`ravlm_graph.grounding.spatial.refer_entities`.
    """

    concept: str
    score: float
    origin: str
    span: Optional[Tuple[int, int]] = None
    box: Optional[Tuple[float, float, float, float]] = None
    label: Optional[str] = None
    referred: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.concept, str) or not self.concept:
            raise ValueError(f"Entity.concept: expected a non-empty str, found {self.concept!r}")
        if self.origin not in ORIGINS:
            raise ValueError(f"Entity.origin: expected one of {ORIGINS}, found {self.origin!r}")
        if self.span is not None:
            if len(self.span) != 2 or not (0 <= self.span[0] <= self.span[1]):
                raise ValueError(f"Entity.span: expected (start, end) with 0 <= start <= end, found {self.span!r}")
        if not isinstance(self.score, numbers.Real) or isinstance(self.score, bool) or not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Entity.score: expected a number in [0, 1], found {self.score!r}")
        if self.box is not None:
            b = self.box
            if isinstance(b, (str, bytes)) or len(b) != 4 or not all(
                    isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v for v in b):
                raise ValueError(f"Entity.box: expected 4 numbers (x0, y0, x1, y1), found {b!r}")
            if b[0] > b[2] or b[1] > b[3]:
                raise ValueError(f"Entity.box: expected x0 <= x1 and y0 <= y1, found {tuple(b)!r}")

#: ``Subgraph.origin`` codes.
ORIGIN_CODES = {"other": 0, "question": 1, "image": 2, "both": 3}
