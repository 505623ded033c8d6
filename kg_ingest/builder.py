"""The builder: consumes parsed records, produces a :class:`KnowledgeGraph`.

Parallel-edge rule: records with the same (head, relation, tail) after
normalisation and relation merging become one edge whose weight is the
**maximum** of their weights (and whose surface text is that of the heaviest
record). Max, not sum, keeps weights on ConceptNet's own scale whatever the
number of sources that repeat a fact. Self-loops (head == tail after
normalisation) are dropped. Edges below ``min_weight`` are dropped.
"""

from __future__ import annotations

import math
import re
from array import array
from typing import Iterable

import numpy as np

from .records import Assertion, IngestStats
from .relations import INVERSE_SUFFIX, RelationConfig, canonical_relation


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class GraphBuilder:
    """Accumulates edges; :meth:`build` returns an in-memory :class:`KnowledgeGraph`.

    Args:
        relations (RelationConfig): relation keep/drop/merge/inverse rules.
        min_weight (float): drop edges whose weight is below this. Default 0.0.
        keep_surface (bool): keep records' surface texts. Default False.
        stats (IngestStats | None): counters to update.
    """

    def __init__(self, relations: RelationConfig | None = None, min_weight: float = 0.0,
                 keep_surface: bool = False, stats: IngestStats | None = None):
        self.relations = relations or RelationConfig()
        self.min_weight = float(min_weight)
        if not math.isfinite(self.min_weight):
            raise ValueError(f"min_weight: expected a finite number, found {min_weight!r}")
        self.keep_surface = keep_surface
        self.stats = stats if stats is not None else IngestStats()
        self._vocab: dict[str, int] = {}
        self._rel_ids: dict[str, int] = {}
        self._rel_cache: dict[str, tuple[int, bool] | None] = {}
        self._rel_fold: dict[str, str] = {}
        self._src = array("i")
        self._dst = array("i")
        self._rel = array("h")
        self._w = array("f")
        self._surface: list[str | None] = []
        self._dropped: dict[str, int] = {}

    @property
    def dropped_relations(self) -> dict[str, int]:
        """Records dropped by the relation config, per input relation (canonical name), most first."""
        out: dict[str, int] = {}
        for r, c in self._dropped.items():
            k = canonical_relation(r)
            out[k] = out.get(k, 0) + c
        return dict(sorted(out.items(), key=lambda t: (-t[1], t[0])))

    def _resolve(self, relation: str):
        r = self.relations.resolve(relation)
        if r is None:
            slot = None
        else:
            name, rev = r
            # Names not in ConceptNet's set: case variants are one relation (first spelling met).
            name = self._rel_fold.setdefault(name.lower(), name)
            rid = self._rel_ids.get(name)
            if rid is None:
                rid = self._rel_ids[name] = len(self._rel_ids)
                if rid >= 32767 // 2:
                    raise ValueError(f"too many distinct relations (>{rid}); a relation config can merge them")
            slot = (rid, rev)
        self._rel_cache[relation] = slot
        return slot

    def add(self, relation: str, head: str, tail: str, weight: float = 1.0, surface: str | None = None) -> bool:
        """Add one edge; returns False when it was filtered out."""
        return self.add_batch([Assertion(relation, head, tail, weight, surface)]) == 1

    def add_batch(self, records: Iterable[Assertion]) -> int:
        """Add records (hot loop of every ingest); returns how many were kept."""
        vocab = self._vocab
        cache = self._rel_cache
        skipped = self.stats.skipped
        src_a, dst_a, rel_a, w_a = self._src.append, self._dst.append, self._rel.append, self._w.append
        surf_a = self._surface.append if self.keep_surface else None
        min_w = self.min_weight
        kept = 0
        n_rel_drop = n_weight = n_loop = 0
        dropped = self._dropped
        for rec in records:
            relation, head, tail, weight, surface = rec[0], rec[1], rec[2], rec[3], rec[4]
            slot = cache.get(relation, False)
            if slot is False:
                slot = self._resolve(relation)
            if slot is None:
                n_rel_drop += 1
                dropped[relation] = dropped.get(relation, 0) + 1
                continue
            if weight < min_w:
                n_weight += 1
                continue
            if head == tail:
                n_loop += 1
                continue
            rid, rev = slot
            if rev:
                head, tail = tail, head
            h = vocab.get(head)
            if h is None:
                h = vocab[head] = len(vocab)
            t = vocab.get(tail)
            if t is None:
                t = vocab[tail] = len(vocab)
            src_a(h)
            dst_a(t)
            rel_a(rid)
            w_a(weight)
            if surf_a is not None:
                surf_a(surface)
            kept += 1
        if n_rel_drop:
            skipped["relation dropped"] += n_rel_drop
        if n_weight:
            skipped["below min weight"] += n_weight
        if n_loop:
            skipped["self-loop"] += n_loop
        return kept

    def build(self, meta: dict | None = None):
        """Sort, merge parallel edges, build CSR both ways; returns a KnowledgeGraph."""
        from .store import KnowledgeGraph

        names = list(self._vocab)
        n = len(names)
        # Last line of defence: the parsers reject control characters with the
        # input line; a name holding one must never reach a store.
        bad = _CONTROL.search("".join(names)) if n else None
        if bad is not None:
            who = next(x for x in names if _CONTROL.search(x))
            raise ValueError(f"concept name {who!r} holds the control character U+{ord(bad.group()):04X}")
        rel_names = list(self._rel_ids)
        # Concepts sorted by code point (== UTF-8 byte order) so that lookups on a
        # loaded store are binary searches over the memory-mapped name blob.
        order = sorted(range(n), key=names.__getitem__)
        remap = np.empty(n, dtype=np.int32)
        remap[np.asarray(order, dtype=np.int64)] = np.arange(n, dtype=np.int32)
        names_sorted = [names[i] for i in order]
        del names, order, self._vocab
        self._vocab = {}

        src = remap[np.frombuffer(self._src, dtype=np.int32)] if n else np.zeros(0, np.int32)
        dst = remap[np.frombuffer(self._dst, dtype=np.int32)] if n else np.zeros(0, np.int32)
        rel = np.frombuffer(self._rel, dtype=np.int16).copy()
        w = np.frombuffer(self._w, dtype=np.float32).copy()
        surface = self._surface if self.keep_surface else None
        self._src, self._dst, self._rel, self._w, self._surface = array("i"), array("i"), array("h"), array("f"), []
        del remap

        # Relations whose every record was filtered out (weight, self-loop) are not stored.
        if rel_names:
            used = np.zeros(len(rel_names), dtype=bool)
            used[rel] = True
            if not used.all():
                new_id = (np.cumsum(used) - 1).astype(np.int16)
                rel = new_id[rel]
                rel_names = [r for r, u in zip(rel_names, used.tolist()) if u]

        if self.relations.add_inverse and len(src):
            r0 = len(rel_names)
            rel_names = rel_names + [r + INVERSE_SUFFIX for r in rel_names]
            src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
            rel = np.concatenate([rel, rel + np.int16(r0)])
            w = np.concatenate([w, w])
            if surface is not None:
                surface = surface + surface

        # Sort by (src, rel, dst, -weight): the first of each run of parallel edges
        # is the heaviest one.
        order = np.lexsort((-w, dst, rel, src))
        src, dst, rel, w = src[order], dst[order], rel[order], w[order]
        if len(src):
            first = np.ones(len(src), dtype=bool)
            first[1:] = (src[1:] != src[:-1]) | (rel[1:] != rel[:-1]) | (dst[1:] != dst[:-1])
            keep = np.flatnonzero(first)
        else:
            keep = np.zeros(0, dtype=np.int64)
        self.stats.merged_parallel = int(len(src) - len(keep))
        src, dst, rel, w = src[keep], dst[keep], rel[keep], w[keep]
        surf_list = None
        if surface is not None:
            idx = order[keep]
            surf_list = [surface[i] for i in idx.tolist()]
        del order, keep
        self.stats.kept = int(len(src))
        if len(w) and not np.all(np.isfinite(w)):
            raise ValueError(f"edge weight {float(w[~np.isfinite(w)][0])} is not a finite float32 number")
        return KnowledgeGraph.from_arrays(
            names=names_sorted, relations=rel_names, src=src, dst=dst, rel=rel, weight=w,
            surface=surf_list, meta=meta or {})
