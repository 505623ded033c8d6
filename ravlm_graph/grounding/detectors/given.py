""":class:`GivenEntities`: the objects annotated with a record (or typed by a user) as
image entities, with their boxes when given — the given-entities mode, no vision model."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ravlm_graph.types import Entity
from ravlm_graph.grounding.detectors.base import ImageEntityDetector, _ORIGIN
from ravlm_graph.grounding.labels import map_label_to_concept

if TYPE_CHECKING:  # pragma: no cover
    pass


# --------------------------------------------------------------------------------------
# Given entities
# --------------------------------------------------------------------------------------


def _coerce_box(value: Any, where: str, xywh: bool = False) -> tuple[float, float, float, float]:
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: expected a box of 4 numbers, found {value!r}") from e
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{where}: expected a box of 4 finite numbers, found {value!r}")
    x0, y0, a, b = vals
    x1, y1 = (x0 + a, y0 + b) if xywh else (a, b)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"{where}: expected x0 <= x1 and y0 <= y1, found {value!r}")
    return (x0, y0, x1, y1)


class GivenEntities(ImageEntityDetector):
    """The image entities that come with a record (dataset object annotations).

    :meth:`detect` accepts:

    * a :class:`~ravlm_graph.datasets.VQARecord` (or anything with ``.entities`` whose items
      have ``name`` and ``origin``): its ``origin="image"`` entities; boxes are read from
      ``record.extra[box_key]`` when it is a mapping name -> box;
    * an iterable of annotations, each a name (``"dog"``), a ``(name, box)`` pair, or a
      mapping with ``name`` / ``label`` / ``category`` / ``names`` (Visual Genome) and
      optionally ``box`` (x0, y0, x1, y1), ``bbox`` (COCO: x, y, w, h),
      ``x``/``y``/``w``/``h`` (Visual Genome) and ``score``.

    Names map to concepts with :func:`map_label_to_concept` (through ``kg`` when given);
    scores default to 1.0. Exact duplicates (same concept and box) are dropped.

    Args:
        kg: optional knowledge graph for the name -> concept mapping.
        box_key: key of ``record.extra`` that holds name -> box (default ``"boxes"``).
    """

    def __init__(self, kg: Any = None, *, box_key: str = "boxes"):
        self.kg = kg
        self.box_key = box_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kg={'yes' if self.kg is not None else 'no'}, box_key={self.box_key!r})"

    def detect(self, image: Any) -> list[Entity]:
        items: list[tuple[str, Any, bool, float]] = []  # (name, box, box_is_xywh, score)
        if hasattr(image, "entities") and not isinstance(image, Mapping):
            boxes = {}
            extra = getattr(image, "extra", None)
            if isinstance(extra, Mapping) and isinstance(extra.get(self.box_key), Mapping):
                boxes = extra[self.box_key]
            for e in image.entities:
                if getattr(e, "origin", _ORIGIN) != _ORIGIN:
                    continue
                name = getattr(e, "name", None) or getattr(e, "concept", None)
                items.append((name, boxes.get(name), False, 1.0))
            where_root = f"record {getattr(image, 'qid', '?')!r}"
        elif isinstance(image, (str, bytes)) or not isinstance(image, Iterable):
            raise TypeError(f"GivenEntities.detect: expected a record with .entities or an iterable of "
                            f"annotations, found {type(image).__name__}")
        else:
            where_root = "annotations"
            for i, a in enumerate(image):
                items.append(self._parse(a, f"{where_root}[{i}]"))
        out: list[Entity] = []
        seen: set[tuple] = set()
        for i, (name, box, xywh, score) in enumerate(items):
            where = f"{where_root}[{i}]"
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{where}: expected a non-empty object name, found {name!r}")
            concept = map_label_to_concept(name, self.kg)
            b = _coerce_box(box, where, xywh) if box is not None else None
            try:
                score = float(score)
            except (TypeError, ValueError):
                score = math.nan
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"{where}: expected a score in [0, 1], found {score!r}")
            key = (concept, b)
            if key in seen:
                continue
            seen.add(key)
            out.append(Entity(concept=concept, score=score, origin=_ORIGIN, box=b, label=name))
        return out

    @staticmethod
    def _parse(a: Any, where: str) -> tuple[Any, Any, bool, float]:
        if isinstance(a, str):
            return (a, None, False, 1.0)
        if isinstance(a, Mapping):
            name = next((a[k] for k in ("name", "label", "category", "concept") if k in a), None)
            if name is None and isinstance(a.get("names"), Sequence) and a["names"]:
                name = a["names"][0]
            score = a.get("score", 1.0)
            if "box" in a:
                return (name, a["box"], False, score)
            if "bbox" in a:
                return (name, a["bbox"], True, score)
            if all(k in a for k in ("x", "y", "w", "h")):
                return (name, (a["x"], a["y"], a["w"], a["h"]), True, score)
            return (name, None, False, score)
        if isinstance(a, Sequence) and len(a) == 2:
            return (a[0], a[1], False, 1.0)
        raise ValueError(f"{where}: expected a name, a (name, box) pair or a mapping, found {a!r}")
