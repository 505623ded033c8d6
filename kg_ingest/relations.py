"""Relations as configuration: which to keep, which to drop, how to merge them.

A :class:`RelationConfig` maps each relation name met in the input to either
"drop" or ``(output_relation, reversed)``. Nothing about ConceptNet's relation
set is hard-coded in the parsers; the defaults live here as data.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# ConceptNet 5.7's relation names, used to restore CamelCase for sources that
# write them in lower case (CN-100K's rel.txt, FVQA facts).
CONCEPTNET_RELATIONS = (
    "RelatedTo FormOf IsA PartOf HasA UsedFor CapableOf AtLocation Causes HasSubevent "
    "HasFirstSubevent HasLastSubevent HasPrerequisite HasProperty MotivatedByGoal "
    "ObstructedBy Desires CreatedBy Synonym Antonym DistinctFrom DerivedFrom SymbolOf "
    "DefinedAs MannerOf LocatedNear HasContext SimilarTo EtymologicallyRelatedTo "
    "EtymologicallyDerivedFrom CausesDesire MadeOf ReceivesAction InstanceOf Entails "
    "NotDesires NotUsedFor NotCapableOf NotHasProperty NotIsA NotHasA NotMadeOf NotPartOf "
    "ExternalURL InheritsFrom DesireOf LocationOfAction HasPainIntensity HasPainCharacter"
).split()
_CANONICAL = {r.lower(): r for r in CONCEPTNET_RELATIONS}
_SEPARATORS = re.compile(r"[\s_\-]+")

# Dropped unless the user says otherwise: links out of ConceptNet, and the
# DBpedia-imported relations (genre, capital, ...), which are not commonsense.
DEFAULT_DROP = ("ExternalURL", "dbpedia/*")

NEGATED = ("NotDesires", "NotUsedFor", "NotCapableOf", "NotHasProperty", "NotIsA",
           "NotHasA", "NotMadeOf", "NotPartOf")

# The 17 merged relation types of QA-GNN-style ConceptNet preprocessing.
# A leading "*" means the edge is reversed when merged (B HasA A -> A PartOf B).
QAGNN_MERGE_GROUPS = {
    "AtLocation": ["AtLocation", "LocatedNear"],
    "CapableOf": ["CapableOf"],
    "Causes": ["Causes", "CausesDesire", "*MotivatedByGoal"],
    "CreatedBy": ["CreatedBy"],
    "Desires": ["Desires"],
    "Antonym": ["Antonym", "DistinctFrom"],
    "HasContext": ["HasContext"],
    "HasProperty": ["HasProperty"],
    "HasSubevent": ["HasSubevent", "HasFirstSubevent", "HasLastSubevent",
                    "HasPrerequisite", "Entails", "MannerOf"],
    "IsA": ["IsA", "InstanceOf", "DefinedAs"],
    "MadeOf": ["MadeOf"],
    "NotCapableOf": ["NotCapableOf"],
    "NotDesires": ["NotDesires"],
    "PartOf": ["PartOf", "*HasA"],
    "RelatedTo": ["RelatedTo", "SimilarTo", "Synonym"],
    "UsedFor": ["UsedFor"],
    "ReceivesAction": ["ReceivesAction"],
}

PRESETS = ("conceptnet", "qagnn17")
INVERSE_SUFFIX = "_inv"


def canonical_relation(name: str) -> str:
    """``/r/IsA`` -> ``IsA``; ``atlocation``, ``AT_LOCATION``, ``at location`` -> ``AtLocation``.

    ConceptNet's relation names are matched ignoring case and the separators
    space, ``_`` and ``-``; other names are returned unchanged.
    """
    n = name.strip()
    if n.startswith("/r/"):
        n = n[3:]
    n = n.rstrip("/")
    hit = _CANONICAL.get(n.lower())
    if hit is None:
        hit = _CANONICAL.get(_SEPARATORS.sub("", n).lower(), n)
    return hit


def is_conceptnet_relation(name: str) -> bool:
    """Whether ``name`` is one of ConceptNet's relation names (as :func:`canonical_relation` matches them)."""
    return canonical_relation(name) in _KNOWN


_KNOWN = frozenset(CONCEPTNET_RELATIONS)


@dataclass
class RelationConfig:
    """Which relations to keep and how to name them in the store.

    Args:
        keep (list[str] | None): if given, only these relations (glob patterns such
            as ``"dbpedia/*"`` allowed) are kept. Default: keep all not dropped.
        drop (list[str]): relations (globs) to drop. Default: ``ExternalURL``, ``dbpedia/*``.
        merge (dict[str, list[str]]): output relation -> input relations merged into it;
            an input written ``"*Name"`` is reversed.
        others (str): what becomes of relations a non-empty merge map does not
            name: ``"keep"`` (default: stored under their own name) or ``"drop"``
            (the map defines the relation set, as in the ``qagnn17`` preset).
            Dropped records are counted per relation in the ingest summary.
        add_inverse (bool): also add each edge reversed, under ``<relation>_inv``.
    """

    keep: list[str] | None = None
    drop: list[str] = field(default_factory=lambda: list(DEFAULT_DROP))
    merge: dict[str, list[str]] = field(default_factory=dict)
    add_inverse: bool = False
    others: str = "keep"

    def __post_init__(self):
        if self.keep is not None and not isinstance(self.keep, (list, tuple)):
            raise ValueError(f"RelationConfig.keep: expected a list of names, found {type(self.keep).__name__}")
        if not isinstance(self.drop, (list, tuple)):
            raise ValueError(f"RelationConfig.drop: expected a list of names, found {type(self.drop).__name__}")
        if not isinstance(self.merge, dict):
            raise ValueError(f"RelationConfig.merge: expected a mapping, found {type(self.merge).__name__}")
        if self.others not in ("keep", "drop"):
            raise ValueError(f"RelationConfig.others: expected 'keep' or 'drop', found {self.others!r}")
        self.keep = None if self.keep is None else [canonical_relation(k) for k in self.keep]
        self.drop = [canonical_relation(d) for d in self.drop]
        seen: dict[str, str] = {}
        merge: dict[str, list[str]] = {}
        for out, ins in self.merge.items():
            if isinstance(ins, str) or not isinstance(ins, (list, tuple)):
                raise ValueError(f"RelationConfig.merge[{out!r}]: expected a list of relation names, found {ins!r}")
            lst = []
            for i in ins:
                rev = i.startswith("*")
                name = canonical_relation(i[1:] if rev else i)
                if name in seen:
                    raise ValueError(
                        f"RelationConfig.merge: relation {name!r} is merged into both {seen[name]!r} and {out!r}")
                seen[name] = out
                lst.append(("*" if rev else "") + name)
            merge[canonical_relation(out)] = lst
        self.merge = merge
        self._merge_index = {n.lstrip("*"): (out, n.startswith("*")) for out, ins in merge.items() for n in ins}
        self._cache: dict[str, tuple[str, bool] | None] = {}

    @classmethod
    def preset(cls, name: str, **overrides) -> "RelationConfig":
        """``"conceptnet"``: all relations but the default drops; ``"qagnn17"``: the 17 merged types."""
        if name == "conceptnet":
            return cls(**overrides)
        if name == "qagnn17":
            overrides.setdefault("others", "drop")
            return cls(merge={k: list(v) for k, v in QAGNN_MERGE_GROUPS.items()}, **overrides)
        raise ValueError(f"unknown relation preset {name!r}; expected one of {', '.join(PRESETS)}")

    @classmethod
    def from_json(cls, path: str | Path) -> "RelationConfig":
        """Load from a JSON file with any of the keys ``keep``, ``drop``, ``merge``, ``add_inverse``."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{p}: cannot read relation config: {e}") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{e.lineno}: relation config is not valid JSON: {e.msg}") from e
        except RecursionError:
            raise ValueError(f"{p}: relation config nests too deeply to be read") from None
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a JSON object with keep/drop/merge/add_inverse, found {type(data).__name__}")
        unknown = set(data) - {"keep", "drop", "merge", "others", "add_inverse", "preset"}
        if unknown:
            raise ValueError(f"{p}: unknown keys {sorted(unknown)}; expected keep, drop, merge, others, add_inverse, "
                             f"preset")
        preset = data.pop("preset", None)
        if preset:
            return cls.preset(preset, **data)
        return cls(**data)

    def to_dict(self) -> dict:
        return {"keep": self.keep, "drop": self.drop, "merge": self.merge, "others": self.others,
                "add_inverse": self.add_inverse}

    def resolve(self, relation: str) -> tuple[str, bool] | None:
        """Map an input relation to ``(output_name, reversed)``, or None to drop it."""
        hit = self._cache.get(relation, False)
        if hit is not False:
            return hit
        name = canonical_relation(relation)
        out: tuple[str, bool] | None
        if any(fnmatch.fnmatchcase(name, pat) for pat in self.drop):
            out = None
        elif self.keep is not None and not any(fnmatch.fnmatchcase(name, pat) for pat in self.keep):
            out = None
        elif self.merge and name in self._merge_index:
            out = self._merge_index[name]
        elif self.merge and self.others == "drop":
            out = None
        else:
            out = (name, False)
        self._cache[relation] = out
        return out


__all__ = ["RelationConfig", "canonical_relation", "is_conceptnet_relation", "CONCEPTNET_RELATIONS", "QAGNN_MERGE_GROUPS",
           "DEFAULT_DROP", "NEGATED", "INVERSE_SUFFIX"]
