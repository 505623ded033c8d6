""":class:`GivenEntities`: the objects annotated with a record (or typed by a user) as
image entities, with their boxes when given — the given-entities mode, no vision model.

Entities a user types (``ravlm answer --entities``, ``engine.answer(..., entities=...)``)
are parsed here too: ``"knife@left,bread@10,20,60,80"`` (:func:`parse_entity_list`), a
JSON file (:func:`read_entity_file`), names, pairs and mappings (:func:`coerce_entity`);
:func:`resolve_entities` maps their names to the graph's concepts (a lemma with more
facts is used: ``"scissors"`` -> ``scissor``; an unknown name gets the nearest concepts)
and turns positions into boxes."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ravlm_graph.types import Entity
from ravlm_graph.grounding.config import GroundingConfig
from ravlm_graph.grounding.detectors.base import ImageEntityDetector, _ORIGIN
from ravlm_graph.grounding.labels import _normalise_label, map_label_to_concept
from ravlm_graph.grounding.spatial import parse_position, position_box
from ravlm_graph.grounding.text import concept_variants

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


# --------------------------------------------------------------------------------------
# Entities a user gives: "knife@left,bread@right", boxes, JSON files, API values
# --------------------------------------------------------------------------------------

# A concept with fewer facts than this is not preferred over a lemma of it that has more
# ("scissors" has 1 edge in CN-100K, "scissor" 26).
_MIN_FACTS = 3


@dataclass(frozen=True)
class EntitySpec:
    """An image entity as a user gives it, before it is mapped to the graph.

    Fields:
        name: the object's name as written (``"scissors"``).
        box: ``(x0, y0, x1, y1)`` in pixels, or in fractions of the image when every value
            is at most 1; None.
        position: ``(x, y)`` targets in [0, 1] from words (``"top right"`` -> (1, 0)); None.
        score: confidence in [0, 1] (default 1).
        where: where it was given (``"--entities item 2"``, ``"ents.json[1]"``), for messages.
    """

    name: str
    box: tuple[float, float, float, float] | None = None
    position: tuple[float | None, float | None] | None = None
    score: float = 1.0
    where: str = "entity"


def _spec_error(where: str, expected: str, found: Any) -> ValueError:
    return ValueError(f"{where}: expected {expected}, found {found!r}")


def _parse_one(text: str, where: str, config: GroundingConfig | None) -> EntitySpec:
    """``knife``, ``knife@left``, ``knife@top right``, ``knife@10,20,60,80``."""
    name, sep, at = text.partition("@")
    name = name.strip()
    if not name:
        raise _spec_error(where, "an object name before '@' (e.g. knife@left)" if sep else "an object name", text)
    if _is_number(name):
        raise _spec_error(where, "an object name, not a number (a box is 4 numbers after '@': "
                                 "knife@x0,y0,x1,y1)", text)
    if not sep:
        return EntitySpec(name, where=where)
    at = at.strip()
    if not at:
        raise _spec_error(where, "a position (left, top right, ...) or a box x0,y0,x1,y1 after '@'", text)
    parts = [p.strip() for p in at.split(",")]
    if len(parts) > 1 or _is_number(parts[0]):
        if len(parts) != 4:
            raise _spec_error(where, "a box of 4 numbers x0,y0,x1,y1 after '@'", text)
        return EntitySpec(name, box=_coerce_box(parts, where), where=where)
    try:
        pos = parse_position(at, config)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return EntitySpec(name, position=pos, where=where)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def parse_entity_list(text: str, config: GroundingConfig | None = None, source: str = "--entities") -> list[EntitySpec]:
    """Parse ``"knife@left,bread@right"``, ``"knife@10,20,60,80,bread"`` or ``"knife;bread"``.

    Items are separated by commas (or semicolons); a box's four numbers follow ``@``
    and are read as one item.

    Raises:
        ValueError: an empty list (``""``, ``","``), an empty item, a bad position or box;
            the message names the item.
    """
    if not isinstance(text, str):
        raise TypeError(f"{source}: expected a comma-separated string of object names, found {type(text).__name__}")
    pieces = [p.strip() for p in text.replace(";", ",").split(",")]
    items: list[str] = []
    k = 0
    while k < len(pieces):
        p = pieces[k]
        name, sep, at = p.partition("@")
        if sep and _is_number(at.strip()):  # a box: this number and the next three
            items.append(",".join(pieces[k:k + 4]))
            k += 4
            continue
        items.append(p)
        k += 1
    if not any(items):
        raise ValueError(f"{source}: expected one or more object names such as 'knife,bread' "
                         f"(optionally knife@left or knife@x0,y0,x1,y1), found {text!r}")
    out = []
    for i, item in enumerate(items, 1):
        if not item:
            raise ValueError(f"{source}: item {i} is empty in {text!r} (expected names separated by single commas)")
        out.append(_parse_one(item, f"{source} item {i} ({item!r})", config))
    return out


def read_entity_file(path: str | os.PathLike, config: GroundingConfig | None = None) -> list[EntitySpec]:
    """Entities from a JSON file: a list (or ``{"entities": [...]}``) whose items are names
    or objects with ``concept``/``name``/``label``, and optionally ``box`` (x0, y0, x1, y1),
    ``bbox`` (x, y, w, h), ``position`` (``"left"``) and ``score``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON (with its line) or an invalid item (with its index).
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p}: expected a JSON entity file, found a folder")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: entity file not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: expected UTF-8 JSON, found undecodable bytes ({e.reason})") from None
    if isinstance(data, Mapping) and "entities" in data:
        data = data["entities"]
    if not isinstance(data, list):
        raise ValueError(f"{p}: expected a JSON list of entities (or {{\"entities\": [...]}}), found "
                         f"{type(data).__name__}")
    if not data:
        raise ValueError(f"{p}: expected at least one entity, found an empty list")
    return [coerce_entity(item, f"{p.name}[{i}]", config) for i, item in enumerate(data)]


#: The keys an entity object (JSON file or mapping) may have.
_ENTITY_KEYS = ("concept", "name", "label", "category", "score", "box", "bbox", "position")


def coerce_entity(item: Any, where: str = "entity", config: GroundingConfig | None = None) -> EntitySpec | Entity:
    """One entity as the API accepts it: an :class:`Entity` (kept), a name
    (``"knife"``, ``"knife@left"``), a ``(name, box)`` or ``(name, "left")`` pair, or a
    mapping (see :func:`read_entity_file`).

    Raises:
        TypeError / ValueError: anything else, naming ``where``.
    """
    if isinstance(item, Entity):
        return item
    if isinstance(item, str):
        if not item.strip():
            raise _spec_error(where, "a non-empty object name", item)
        return _parse_one(item, where, config)
    if isinstance(item, Mapping):
        unknown = [k for k in item if k not in _ENTITY_KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; an entity object "
                             f"takes {', '.join(_ENTITY_KEYS)}")
        name = next((item[k] for k in ("concept", "name", "label", "category") if k in item), None)
        if not isinstance(name, str) or not name.strip():
            raise _spec_error(where, "an object with a non-empty 'concept' (or 'name')", dict(item))
        score = item.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= float(score) <= 1.0:
            raise _spec_error(where, "a score in [0, 1]", score)
        box = pos = None
        if item.get("box") is not None:
            box = _coerce_box(item["box"], where)
        elif item.get("bbox") is not None:
            box = _coerce_box(item["bbox"], where, xywh=True)
        if item.get("position") is not None:
            if not isinstance(item["position"], str):
                raise _spec_error(where, "a position in words ('left', 'top right')", item["position"])
            try:
                pos = parse_position(item["position"], config)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        return EntitySpec(name.strip(), box=box, position=pos, score=float(score), where=where)
    if isinstance(item, Sequence) and not isinstance(item, (bytes, bytearray)) and len(item) == 2:
        name, loc = item
        if not isinstance(name, str) or not name.strip():
            raise _spec_error(where, "a (name, box) pair with a non-empty name", item)
        if isinstance(loc, str):
            try:
                return EntitySpec(name.strip(), position=parse_position(loc, config), where=where)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        return EntitySpec(name.strip(), box=None if loc is None else _coerce_box(loc, where), where=where)
    raise TypeError(f"{where}: expected an object name, a (name, box) pair, a mapping or an Entity, "
                    f"found {type(item).__name__} {item!r}")


@dataclass(frozen=True)
class ConceptMatch:
    """How a given name was mapped: ``concept`` used, whether the graph ``known`` it,
    a ``note`` when it was changed or is unknown, and the nearest ``suggestions``."""

    name: str
    concept: str
    known: bool
    note: str | None = None
    suggestions: tuple[str, ...] = ()


def _plural_stems(name: str) -> list[str]:
    """Rule-based singulars of the last word, for plurals a lemmatiser keeps
    (``jeans`` -> ``jean``, ``berries`` -> ``berry``, ``knives`` -> ``knife``)."""
    head, _, last = name.rpartition("_")
    pre = head + "_" if head else ""
    out = []
    if len(last) > 3 and last.endswith("ies"):
        out.append(last[:-3] + "y")
    if len(last) > 3 and last.endswith("ves"):
        out += [last[:-3] + "f", last[:-3] + "fe"]
    if len(last) > 3 and last.endswith("es"):
        out.append(last[:-2])
    if len(last) > 2 and last.endswith("s") and not last.endswith("ss"):
        out.append(last[:-1])
    return [pre + w for w in out]


def _degree(kg: Any, i: int) -> int:
    return int(len(kg.out_edges(i)) + len(kg.in_edges(i)))


def _edits1(word: str) -> set[str]:
    letters = "abcdefghijklmnopqrstuvwxyz_"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in letters}
    out |= {a + c + b for a, b in splits for c in letters}
    return out


def nearest_concepts(name: str, kg: Any, limit: int = 5) -> list[str]:
    """Concepts of ``kg`` spelt like ``name``: lemma forms, one edit away, or sharing its
    start; those with more facts first."""
    norm = _normalise_label(name)
    if not norm:
        return []
    cands: dict[str, int] = {}
    for c in concept_variants(norm) | set(_plural_stems(norm)) | (_edits1(norm) if len(norm) >= 3 else set()):
        i = kg.find_id(c)
        if i is not None and c != norm:
            cands[c] = 1
    if len(norm) >= 3:
        for c in kg.search(norm[:max(3, len(norm) - 2)], limit=50):
            if c != norm and c.count("_") <= norm.count("_") + 1:
                cands.setdefault(c, 2)
    ranked = sorted(cands, key=lambda c: (cands[c], -_degree(kg, kg.find_id(c)), c))
    return ranked[:limit]


def resolve_concept(name: str, kg: Any = None) -> ConceptMatch:
    """Map a user's object name to a concept of ``kg``.

    The name as written (normalised: lower case, underscores, no article) is kept when
    the graph has it with at least a few facts; otherwise a lemma form with more facts is
    used (``"scissors"`` -> ``scissor``) and the note says so. A name the graph lacks in
    every form is kept as written, with the nearest concepts as suggestions.
    """
    norm = _normalise_label(name)
    if not norm:
        raise ValueError(f"expected a non-blank object name, found {name!r}")
    if kg is None:
        return ConceptMatch(name, map_label_to_concept(name), True)
    forms = [norm] + sorted(concept_variants(norm) - {norm}) + [map_label_to_concept(name)] + _plural_stems(norm)
    found = []
    for c in dict.fromkeys(forms):
        i = kg.find_id(c)
        if i is not None:
            found.append((c, _degree(kg, i)))
    if found and found[0][0] == norm and found[0][1] >= _MIN_FACTS:
        return ConceptMatch(name, norm, True)
    if found:
        best, deg = max(found, key=lambda cd: cd[1])
        if best == norm:
            return ConceptMatch(name, norm, True)
        given = dict(found).get(norm)
        had = f"`{norm}` has {given} fact{'s' if given != 1 else ''}" if given is not None else \
            f"`{norm}` is not in the knowledge graph"
        return ConceptMatch(name, best, True, f"entity {name!r}: used concept `{best}` ({deg} facts; {had})")
    near = tuple(nearest_concepts(norm, kg))
    hint = f"; nearest concepts: {', '.join(near)}" if near else ""
    return ConceptMatch(name, norm, False, f"entity {name!r}: `{norm}` is not a concept of the knowledge graph "
                                           f"(it adds no facts){hint}", near)


def resolve_entities(items: Iterable[Any], kg: Any = None, image_size: tuple[int, int] | None = None,
                     config: GroundingConfig | None = None) -> tuple[list[Entity], list[ConceptMatch]]:
    """User-given entities -> image :class:`Entity` s with concepts of ``kg`` and boxes.

    Args:
        items: anything :func:`coerce_entity` accepts (names, ``name@left``, pairs,
            mappings, :class:`EntitySpec`, :class:`Entity`).
        kg: the graph names are mapped to (None: normalised names).
        image_size: (width, height): positions become the 3 x 3 grid cell they name,
            fractional boxes are scaled; None: positions need it (ValueError).
        config: position word sets.

    Returns:
        (entities, matches): the entities in input order (exact duplicates dropped) and,
        per non-Entity item, how its name was mapped (notes and suggestions).

    Raises:
        ValueError: no entity at all, an invalid item, a box outside the image.
    """
    if isinstance(items, (str, bytes)):
        raise TypeError("expected a list of entities, found a single string (parse it with parse_entity_list)")
    specs = [it if isinstance(it, (EntitySpec, Entity)) else coerce_entity(it, f"entity {i}", config)
             for i, it in enumerate(items)]
    if not specs:
        raise ValueError("expected at least one entity, found none")
    out: list[Entity] = []
    matches: list[ConceptMatch] = []
    seen: set[tuple] = set()
    for s in specs:
        if isinstance(s, Entity):
            ent = s
        else:
            m = resolve_concept(s.name, kg)
            matches.append(m)
            box = s.box
            if box is not None and image_size is not None:
                w, h = image_size
                if max(box) <= 1.0 and (w > 1 or h > 1):  # fractions of the image
                    box = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
                elif box[0] >= w or box[1] >= h or box[2] <= 0 or box[3] <= 0:
                    raise ValueError(f"{s.where}: box {s.box} lies outside the {w} x {h} image")
                clipped = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(w)), min(box[3], float(h)))
                if clipped != tuple(box):
                    note = f"{s.where}: box {s.box} reaches outside the {w} x {h} image; clipped to {clipped}"
                    m = dataclasses.replace(m, note=f"{m.note}; {note}" if m.note else note)
                    matches[-1] = m
                    box = clipped
            if s.position is not None:
                if image_size is None:
                    raise ValueError(f"{s.where}: a position needs the image size")
                box = position_box(s.position[0], s.position[1], *image_size)
            ent = Entity(m.concept, s.score, _ORIGIN, box=box, label=s.name)
        key = (ent.concept, ent.box)
        if key in seen:
            continue
        seen.add(key)
        out.append(ent)
    return out, matches


def parse_entities(entities: Any, where: str = "entities") -> list:
    """Check given entities before anything is loaded: a string ``"knife@left,bread"``
    or a sequence of names, pairs, mappings, :class:`EntitySpec` s or :class:`Entity` s.

    Returns the items as :class:`EntitySpec` / :class:`Entity`; raises ValueError or
    TypeError naming the bad item.
    """
    if isinstance(entities, str):
        return parse_entity_list(entities, source=where)
    if isinstance(entities, (Mapping, Entity, EntitySpec)):  # one entity given alone
        entities = [entities]
    if isinstance(entities, (bytes, bytearray)) or not hasattr(entities, "__iter__"):
        raise TypeError(f"{where}: expected a list of entities or a string 'knife,bread', "
                        f"found {type(entities).__name__}")
    items = [e if isinstance(e, (Entity, EntitySpec)) else coerce_entity(e, f"{where}[{i}]")
             for i, e in enumerate(entities)]
    if not items:
        raise ValueError(f"{where}: expected at least one entity, found an empty list "
                         f"(pass entities=None to detect them in the image)")
    return items
