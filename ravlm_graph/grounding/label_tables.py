"""Detector class labels -> ConceptNet concepts, through written tables.

Two tables ship in ``ravlm_graph/data/labels/``:

* ``coco.json`` — the 90 COCO category ids (80 used by detectors trained on COCO), each
  with its name and the ConceptNet terms to try, in order (``"dining table"`` ->
  ``dining_table``, then ``table``).
* ``imagenet.json`` — the 1,000 ImageNet-1k classes in classifier order, each a WordNet 3.0
  synset with its lemmas, plus the WordNet hypernym graph above them (written by
  ``benchmarks/make_imagenet_labels.py`` from WordNet 3.0).

A class maps to the first of its terms that is a concept of the given graph with at least
``min_degree`` edges. ImageNet classes try their own lemmas first, then the lemmas of their
hypernyms, nearest level first (``"Rhodesian ridgeback"`` -> ``hound`` -> ``dog``), never
skipping synsets above ``min_synset_depth`` and the upper-ontology nodes of
:data:`TOO_GENERAL_SYNSETS` (``entity``, ``object``, ``artifact`` say nothing about the picture). Each term is tried as written and as the
singular of its last word (``"skis"`` -> ``ski``).

Typical use::

    table = load_label_table("imagenet")
    mapper = LabelMapper(table, kg)
    mapper.concept(281)            # ConceptMatch(label='tabby', concept='cat', via='hypernym', ...)
    coverage(table, kg).share      # share of the classes that land on a concept
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from kg_ingest.store import normalize_concept

__all__ = [
    "ConceptMatch",
    "CoverageReport",
    "LabelClass",
    "LabelMapper",
    "LabelTable",
    "TOO_GENERAL_SYNSETS",
    "coverage",
    "label_table_path",
    "load_label_table",
]

logger = logging.getLogger(__name__)

#: The tables this package ships, by name.
TABLE_FILES = {"coco": "coco.json", "imagenet": "imagenet.json"}
_FORMATS = {"coco": "ravlm-coco-labels", "imagenet": "ravlm-imagenet-labels"}
_VERSION = 1

#: WordNet's upper-ontology synsets (depth 4-5 below ``entity``) that a hypernym walk never
#: lands on: they name no kind of thing a picture could show ("artifact", "organism", ...).
TOO_GENERAL_SYNSETS = frozenset({
    "n00004258",  # living thing
    "n00004475",  # organism, being
    "n00019128",  # natural object
    "n00021939",  # artifact
    "n00022903",  # article
    "n03076708",  # commodity
    "n03129123",  # creation
    "n03575240",  # instrumentality
    "n03932203",  # piece
    "n08620061",  # point
    "n09626238",  # peer, equal
    "n09816771",  # associate
    "n14580897",  # material, stuff
})


@dataclass(frozen=True)
class LabelClass:
    """One class of a detector's label space.

    Attributes:
        index (int): the detector's class index (COCO: the category id 1..90; ImageNet: the
            classifier output 0..999).
        key (str): a stable id (COCO: the id as text; ImageNet: the WordNet id ``n########``).
        name (str): the display name (the first lemma for ImageNet).
        terms (tuple[str, ...]): the class's own ConceptNet terms to try, in order.
        used (bool): whether detectors predict it (COCO's 10 unused ids are False).
    """

    index: int
    key: str
    name: str
    terms: tuple[str, ...]
    used: bool = True


@dataclass(frozen=True)
class ConceptMatch:
    """Where one class landed in a graph.

    Attributes:
        label (str): the class name.
        concept (str or None): the graph's concept name; None when no term matched.
        via (str): ``"name"`` (one of the class's own terms), ``"hypernym"`` or ``"none"``.
        term (str or None): the table term that matched.
        level (int): 0 for the class's own terms, n for a hypernym n levels up.
        degree (int): the concept's edge count (0 when unmatched).
    """

    label: str
    concept: Optional[str]
    via: str
    term: Optional[str] = None
    level: int = 0
    degree: int = 0


@dataclass
class LabelTable:
    """A detector's classes and, for WordNet-based tables, the hypernym graph above them.

    Attributes:
        kind (str): ``"coco"`` or ``"imagenet"``.
        classes (list[LabelClass]): in table order.
        synsets (dict): WordNet id -> ``{"names": [...], "parents": [...], "depth": int}``
            (empty for COCO).
        source (str): where the table was read from.
    """

    kind: str
    classes: list[LabelClass]
    synsets: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        self._by_index = {c.index: c for c in self.classes}
        if len(self._by_index) != len(self.classes):
            raise ValueError(f"{self.source}: duplicate class indices")

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index: int) -> LabelClass:
        try:
            return self._by_index[int(index)]
        except KeyError:
            lo, hi = min(self._by_index), max(self._by_index)
            raise KeyError(f"{self.kind} label table: no class {index} (expected {lo}..{hi})") from None

    @property
    def used(self) -> list[LabelClass]:
        """The classes detectors predict."""
        return [c for c in self.classes if c.used]

    def name(self, index: int) -> str:
        return self[index].name

    def hypernym_levels(self, index: int, *, min_synset_depth: int = 4,
                        max_levels: int = 12) -> list[list[str]]:
        """Lemmas of the class's hypernyms, one list per level up (nearest first).

        Synsets whose depth below WordNet's root is under ``min_synset_depth``, and those of
        :data:`TOO_GENERAL_SYNSETS`, are skipped; the walk stops after ``max_levels`` levels.
        """
        if not self.synsets:
            return []
        seen = {self[index].key}
        frontier = list(self.synsets.get(self[index].key, {}).get("parents", []))
        levels: list[list[str]] = []
        while frontier and len(levels) < max_levels:
            names: list[str] = []
            nxt: list[str] = []
            for w in frontier:
                if w in seen:
                    continue
                seen.add(w)
                s = self.synsets.get(w)
                if s is None:
                    raise ValueError(f"{self.source}: synset {w} is named as a parent but not listed")
                if int(s.get("depth", 0)) >= min_synset_depth and w not in TOO_GENERAL_SYNSETS:
                    names.extend(s["names"])
                nxt.extend(s.get("parents", []))
            levels.append(names)
            frontier = nxt
        return levels


def label_table_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Path of a shipped table (``"coco"`` or ``"imagenet"``), or of ``root/<file>``."""
    if name not in TABLE_FILES:
        raise ValueError(f"label table: expected one of {sorted(TABLE_FILES)}, found {name!r}")
    base = Path(root) if root is not None else Path(__file__).resolve().parent.parent / "data" / "labels"
    return base / TABLE_FILES[name]


def load_label_table(name: str, path: str | os.PathLike | None = None) -> LabelTable:
    """Read the ``"coco"`` or ``"imagenet"`` table (the shipped file unless ``path`` is given).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a table of that kind; the message names the file and the entry.
    """
    if name not in TABLE_FILES:
        raise ValueError(f"label table: expected one of {sorted(TABLE_FILES)}, found {name!r}")
    p = Path(path) if path is not None else label_table_path(name)
    try:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}:{e.lineno}: not valid JSON: {e.msg}") from e
    if not isinstance(data, Mapping) or data.get("format") != _FORMATS[name]:
        found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{p}: expected format {_FORMATS[name]!r}, found {found!r}")
    if data.get("version") != _VERSION:
        raise ValueError(f"{p}: expected version {_VERSION}, found {data.get('version')!r}")
    rows = data.get("classes")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{p}: expected a non-empty 'classes' list")
    classes = []
    for i, r in enumerate(rows):
        try:
            if name == "coco":
                terms = tuple(r.get("concepts") or (r["name"],))
                classes.append(LabelClass(int(r["id"]), str(r["id"]), str(r["name"]), terms, bool(r.get("used", True))))
            else:
                names = tuple(r["names"])
                if not names:
                    raise ValueError("no names")
                classes.append(LabelClass(int(r["index"]), str(r["wnid"]), names[0], names, True))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{p}: classes[{i}]: expected {'id, name, concepts' if name == 'coco' else 'index, wnid, names'}"
                             f", found {r!r} ({e})") from e
    synsets = dict(data.get("synsets") or {})
    if name == "imagenet":
        missing = [c.key for c in classes if c.key not in synsets]
        if missing:
            raise ValueError(f"{p}: classes without a synset entry, e.g. {missing[:3]}")
    return LabelTable(kind=name, classes=classes, synsets=synsets, source=str(p))


def _singular_last_word(term: str) -> str:
    """``"hot dogs"`` -> ``"hot dog"``; the term itself when lemminflect is missing."""
    words = term.split("_")
    try:
        from lemminflect import getLemma
    except ImportError:  # optional: plurals then simply stay plurals
        return term
    lemmas = getLemma(words[-1], upos="NOUN")
    if lemmas and lemmas[0] and lemmas[0] != words[-1]:
        words[-1] = lemmas[0].lower()
    return "_".join(words)


class LabelMapper:
    """Maps the classes of one table onto the concepts of one graph (computed on first use).

    Args:
        table (LabelTable): the detector's classes.
        kg: a :class:`kg_ingest.KnowledgeGraph` (anything with ``lookup``, ``concept_name``
            and ``degree()``).
        min_degree (int): a concept needs at least this many edges (default 1).
        min_synset_depth (int): hypernyms above this WordNet depth are not used (default 4).
        max_levels (int): hypernym levels to climb at most (default 12).
    """

    def __init__(self, table: LabelTable, kg: Any, *, min_degree: int = 1, min_synset_depth: int = 4,
                 max_levels: int = 12):
        if min_degree < 0:
            raise ValueError(f"LabelMapper.min_degree: expected >= 0, found {min_degree}")
        self.table, self.kg = table, kg
        self.min_degree, self.min_synset_depth, self.max_levels = min_degree, min_synset_depth, max_levels
        self._degree = kg.degree()
        self._cache: dict[int, ConceptMatch] = {}

    def _find(self, term: str) -> Optional[tuple[str, int]]:
        norm = normalize_concept(term)
        if not norm:
            return None
        for cand in dict.fromkeys((norm, _singular_last_word(norm))):
            i = self.kg.lookup(cand)
            if i is not None:
                deg = int(self._degree[i])
                if deg >= self.min_degree:
                    return self.kg.concept_name(i), deg
        return None

    def concept(self, index: int) -> ConceptMatch:
        """The concept of class ``index`` (a :class:`ConceptMatch`, ``concept=None`` if none)."""
        index = int(index)
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        c = self.table[index]
        match = ConceptMatch(label=c.name, concept=None, via="none")
        for term in c.terms:
            found = self._find(term)
            if found:
                match = ConceptMatch(c.name, found[0], "name", term, 0, found[1])
                break
        else:
            levels = self.table.hypernym_levels(index, min_synset_depth=self.min_synset_depth,
                                                max_levels=self.max_levels)
            for lvl, names in enumerate(levels, 1):
                found = next(((t, f) for t in names if (f := self._find(t))), None)
                if found:
                    match = ConceptMatch(c.name, found[1][0], "hypernym", found[0], lvl, found[1][1])
                    break
        self._cache[index] = match
        return match

    def concepts(self, indices: Iterable[int] | None = None) -> dict[int, ConceptMatch]:
        """``{index: ConceptMatch}`` for the given classes (default: every used class)."""
        idx = [c.index for c in self.table.used] if indices is None else list(indices)
        return {i: self.concept(i) for i in idx}


@dataclass
class CoverageReport:
    """How many classes of a table land on a concept with enough edges.

    Attributes:
        table (str): ``"coco"`` or ``"imagenet"``.
        total (int): classes counted (the used ones).
        by_name (int): matched through one of their own terms.
        by_hypernym (int): matched through a hypernym.
        unmatched (list[str]): names of the classes left without a concept.
    """

    table: str
    total: int
    by_name: int
    by_hypernym: int
    unmatched: list[str]

    @property
    def matched(self) -> int:
        return self.by_name + self.by_hypernym

    @property
    def share(self) -> float:
        return self.matched / self.total if self.total else 0.0

    def summary(self) -> str:
        return (f"{self.table}: {self.matched}/{self.total} classes = {100 * self.share:.1f} % on a concept "
                f"({self.by_name} by their own name, {self.by_hypernym} by a hypernym; "
                f"{len(self.unmatched)} without)")


def coverage(table: LabelTable, kg: Any, **mapper_kw: Any) -> CoverageReport:
    """Map every used class of ``table`` onto ``kg`` and count the outcomes."""
    m = LabelMapper(table, kg, **mapper_kw)
    res = m.concepts()
    return CoverageReport(
        table=table.kind, total=len(res),
        by_name=sum(r.via == "name" for r in res.values()),
        by_hypernym=sum(r.via == "hypernym" for r in res.values()),
        unmatched=[r.label for r in res.values() if r.concept is None],
    )
