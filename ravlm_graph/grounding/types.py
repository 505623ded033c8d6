"""Typed records shared by the grounding stages (text and image) and retrieval."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ["Entity", "ORIGINS"]

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
    """

    concept: str
    score: float
    origin: str
    span: Optional[Tuple[int, int]] = None
    box: Optional[Tuple[float, float, float, float]] = None
    label: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.concept, str) or not self.concept:
            raise ValueError(f"Entity.concept: expected a non-empty str, found {self.concept!r}")
        if self.origin not in ORIGINS:
            raise ValueError(f"Entity.origin: expected one of {ORIGINS}, found {self.origin!r}")
        if self.span is not None:
            if len(self.span) != 2 or not (0 <= self.span[0] <= self.span[1]):
                raise ValueError(f"Entity.span: expected (start, end) with 0 <= start <= end, found {self.span!r}")
        if self.box is not None and len(self.box) != 4:
            raise ValueError(f"Entity.box: expected 4 floats (x0, y0, x1, y1), found {self.box!r}")
