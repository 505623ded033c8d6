"""KnowledgeGraph: a compact, memory-mappable graph store.

On disk a store is a folder::

    meta.json              format, version, counts, ingest config, source hash, file sizes
    relations.json         relation names (relation id = position)
    concepts.bin           UTF-8 concept names, concatenated, sorted by code point
    concepts.off.npy       int64 (N+1,) offsets into concepts.bin
    edge_src.npy           int32 (E,)  edges sorted by (src, relation, dst)
    edge_dst.npy           int32 (E,)
    edge_rel.npy           int16 (E,)
    edge_weight.npy        float32 (E,)
    out_indptr.npy         int64 (N+1,) CSR over edges by source
    in_indptr.npy          int64 (N+1,) CSR over in_eid by target
    in_eid.npy             int32 (E,)  edge ids sorted by (dst, src)
    surface.bin, surface.off.npy   optional: per-edge surface text

Loading memory-maps every array, so it takes milliseconds whatever the size;
concept lookup is a binary search over the sorted names, so no dictionary is
built on load.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from . import _files, _replace
from ._files import StoreError

FORMAT = "ravlm-kg-store"
FORMAT_VERSION = 2  # 2: per-file checksums in meta.json
_READABLE_VERSIONS = (1, 2)

_ARRAYS = {
    # name: (dtype, length key: "N+1" | "E")
    "concepts.off": (np.int64, "N+1"),
    "edge_src": (np.int32, "E"),
    "edge_dst": (np.int32, "E"),
    "edge_rel": (np.int16, "E"),
    "edge_weight": (np.float32, "E"),
    "out_indptr": (np.int64, "N+1"),
    "in_indptr": (np.int64, "N+1"),
    "in_eid": (np.int32, "E"),
}
_SURFACE_ARRAYS = {"surface.off": (np.int64, "E+1")}


class Neighbor(NamedTuple):
    relation: str
    concept: str
    weight: float


class Edge(NamedTuple):
    head: str
    relation: str
    tail: str
    weight: float


class Resolution(NamedTuple):
    """What :meth:`KnowledgeGraph.resolve` chose for a typed text."""

    id: int
    concept: str
    how: str  # "exact", "normalised" or "lemma"
    degree: int  # edges in and out
    text: str  # what was typed


# English irregular plurals (a closed list of the language, not of any data set).
_IRREGULAR = {"men": "man", "women": "woman", "children": "child", "feet": "foot", "teeth": "tooth",
              "mice": "mouse", "geese": "goose", "people": "person", "oxen": "ox", "lice": "louse",
              "dice": "die", "knives": "knife", "wives": "wife", "lives": "life", "leaves": "leaf",
              "loaves": "loaf", "halves": "half", "wolves": "wolf", "shelves": "shelf", "calves": "calf",
              "thieves": "thief", "scarves": "scarf", "hooves": "hoof", "elves": "elf", "selves": "self"}


def _singular_forms(term: str) -> list[str]:
    """Singular candidates for the last word of a ConceptNet term (``ice_creams`` -> ``ice_cream``)."""
    head, sep, word = term.rpartition("_")
    forms: list[str] = []
    if word in _IRREGULAR:
        forms.append(_IRREGULAR[word])
    if len(word) > 3 and word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if len(word) > 3 and word.endswith("ves"):
        forms += [word[:-3] + "f", word[:-3] + "fe"]
    if len(word) > 3 and word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh", "o")):
        forms.append(word[:-2])
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        forms.append(word[:-1])
    return [head + sep + f for f in dict.fromkeys(forms) if f and f != word]


_WS = re.compile(r"[\s\-]+")


def normalize_concept(text: str) -> str:
    """Free text -> ConceptNet term: ``"  Ice-Cream "`` -> ``"ice_cream"``.

    NFC-normalised, lower-cased, runs of spaces/hyphens to one underscore,
    surrounding punctuation stripped.
    """
    t = unicodedata.normalize("NFC", text).strip().lower()
    t = t.strip(" \t\n.,;:!?\"'()[]{}")
    t = _WS.sub("_", t)
    return t.strip("_")


class KnowledgeGraph:
    """A directed multi-relational graph of concepts with CSR adjacency both ways.

    Build one with the ingest functions (:func:`kg_ingest.ingest_conceptnet`, ...)
    or load a saved store with :meth:`load`. Node ids are positions in the sorted
    concept vocabulary; edge ids are positions in the (src, relation, dst)-sorted
    edge arrays.
    """

    def __init__(self, *, names_blob, names_off, relations, src, dst, rel, weight,
                 out_indptr, in_indptr, in_eid, surface_blob=None, surface_off=None,
                 meta=None, path=None):
        self._blob = names_blob
        self._off = names_off
        self.relations: list[str] = list(relations)
        self.edge_src = src
        self.edge_dst = dst
        self.edge_rel = rel
        self.edge_weight = weight
        self.out_indptr = out_indptr
        self.in_indptr = in_indptr
        self.in_eid = in_eid
        self._surface_blob = surface_blob
        self._surface_off = surface_off
        self.meta: dict = dict(meta or {})
        self.path: Path | None = Path(path) if path is not None else None
        self._rel_index = {r: i for i, r in enumerate(self.relations)}

    # ------------------------------------------------------------------ build
    @classmethod
    def from_arrays(cls, names: Sequence[str], relations: Sequence[str], src, dst, rel, weight,
                    surface: Sequence[str | None] | None = None, meta: dict | None = None) -> "KnowledgeGraph":
        """Assemble a store from sorted names and edges sorted by (src, rel, dst)."""
        n = len(names)
        enc = [s.encode("utf-8") for s in names]
        off = np.zeros(n + 1, dtype=np.int64)
        if n:
            np.cumsum(np.fromiter((len(b) for b in enc), dtype=np.int64, count=n), out=off[1:])
        blob = b"".join(enc)
        src = np.ascontiguousarray(src, dtype=np.int32)
        dst = np.ascontiguousarray(dst, dtype=np.int32)
        out_indptr = np.zeros(n + 1, dtype=np.int64)
        in_indptr = np.zeros(n + 1, dtype=np.int64)
        if n:
            np.cumsum(np.bincount(src, minlength=n), out=out_indptr[1:])
            np.cumsum(np.bincount(dst, minlength=n), out=in_indptr[1:])
        in_eid = np.argsort(dst, kind="stable").astype(np.int32)  # stable keeps src order per target
        s_blob = s_off = None
        if surface is not None:
            senc = [(s or "").encode("utf-8") for s in surface]
            s_off = np.zeros(len(senc) + 1, dtype=np.int64)
            if senc:
                np.cumsum(np.fromiter((len(b) for b in senc), dtype=np.int64, count=len(senc)), out=s_off[1:])
            s_blob = b"".join(senc)
        meta = dict(meta or {})
        meta.update(num_nodes=n, num_edges=int(len(src)), num_relations=len(relations))
        return cls(names_blob=blob, names_off=off, relations=relations, src=src, dst=dst,
                   rel=np.ascontiguousarray(rel, dtype=np.int16),
                   weight=np.ascontiguousarray(weight, dtype=np.float32),
                   out_indptr=out_indptr, in_indptr=in_indptr, in_eid=in_eid,
                   surface_blob=s_blob, surface_off=s_off, meta=meta)

    # ------------------------------------------------------------- properties
    @property
    def num_nodes(self) -> int:
        return len(self._off) - 1

    @property
    def num_edges(self) -> int:
        return len(self.edge_src)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    @property
    def has_surface(self) -> bool:
        return self._surface_off is not None

    @property
    def language(self) -> str | None:
        """The single language of the concepts, or None when names carry ``lang/``."""
        return self.meta.get("language", "en")

    def __len__(self) -> int:
        return self.num_nodes

    def __repr__(self) -> str:
        where = f", path='{self.path}'" if self.path else ""
        return (f"KnowledgeGraph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"num_relations={self.num_relations}{where})")

    # ---------------------------------------------------------------- lookups
    def concept_name(self, i: int) -> str:
        """The name of concept id ``i`` (IndexError when out of range)."""
        if type(i) is not int or not 0 <= i < self.num_nodes:
            i = _check_id(i, self.num_nodes, "concept id", "i")
        return self._name(i)

    def _name(self, i: int) -> str:
        """The name of a concept id known to be in range (no argument checks: inner loops)."""
        try:
            return str(self._blob[self._off[i]:self._off[i + 1]], "utf-8")
        except UnicodeDecodeError as e:
            where = self.path / "concepts.bin" if self.path else "concepts.bin"
            raise StoreError(f"{where}: damaged store: concept {int(i)} is not valid UTF-8 ({e.reason})") from e

    def concept_names(self, ids: Iterable[int]) -> list[str]:
        """The names of concept ids (a sequence or array of integers), in the given order."""
        arr = _id_array(ids, self.num_nodes, "ids", "concept ids")
        blob = self._blob
        starts, ends = self._off[arr].tolist(), self._off[arr + 1].tolist()
        try:
            return [str(blob[a:b], "utf-8") for a, b in zip(starts, ends)]
        except UnicodeDecodeError:
            return [self._name(i) for i in arr.tolist()]  # names the damaged concept

    def _bsearch(self, key: bytes) -> int:
        """Index of the first name >= key."""
        blob, off = self._blob, self._off
        lo, hi = 0, self.num_nodes
        while lo < hi:
            mid = (lo + hi) >> 1
            if bytes(blob[off[mid]:off[mid + 1]]) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def find_id(self, name: str) -> int | None:
        """Exact lookup; None when absent."""
        return self._find(_encode(name, "name"))

    def _find(self, key: bytes) -> int | None:
        i = self._bsearch(key)
        if i < self.num_nodes and bytes(self._blob[self._off[i]:self._off[i + 1]]) == key:
            return i
        return None

    def lookup(self, text: str, lemma: bool = False) -> int | None:
        """Exact name first, then the normalised text (``"Ice Cream"`` -> ``ice_cream``).

        With ``lemma=True``, the choice of :meth:`resolve` (``"scissors"`` ->
        ``scissor`` when that concept has more edges).
        """
        return self._lookup(text, lemma, "text")

    def _lookup(self, text: str, lemma: bool, what: str) -> int | None:
        key = _encode(text, what)
        if lemma:
            r = self.resolve(text)
            return None if r is None else r.id
        i = self._find(key)
        if i is None:
            norm = normalize_concept(text)
            if norm and norm != text:
                i = self._find(norm.encode("utf-8"))
        return i

    def resolve(self, text: str) -> "Resolution | None":
        """The concept a person most likely means by ``text``, and how it was found.

        Candidates: the text as typed, its normalised form, and singular forms of
        its last word (``scissors`` -> ``scissor``, ``knives`` -> ``knife``,
        ``berries`` -> ``berry``, ``mice`` -> ``mouse``). Among those in the
        graph, the one with the most edges wins (the typed form on a tie), so a
        rarely-used plural never hides the concept that holds the facts.
        Returns None when no candidate is in the graph.
        """
        _encode(text, "text")
        cands: list[tuple[str, str]] = [(text, "exact")]
        norm = normalize_concept(text)
        if norm and norm != text:
            cands.append((norm, "normalised"))
        base = norm or text
        for form in _singular_forms(base):
            cands.append((form, "lemma"))
        best = None
        seen = set()
        for name, how in cands:
            if name in seen:
                continue
            seen.add(name)
            i = self._find(name.encode("utf-8"))
            if i is None:
                continue
            deg = int(self.out_indptr[i + 1] - self.out_indptr[i] + self.in_indptr[i + 1] - self.in_indptr[i])
            if best is None or deg > best.degree:
                best = Resolution(i, name, how, deg, text)
        return best

    def concept_id(self, concept: str | int) -> int:
        """Id of a concept given by name (exact or normalised) or id; KeyError if absent."""
        return self._cid(concept, "concept")

    def _cid(self, concept, what: str) -> int:
        if isinstance(concept, (int, np.integer)) and not isinstance(concept, (bool, np.bool_)):
            c = int(concept)
            if not 0 <= c < self.num_nodes:
                raise KeyError(f"concept id {c} out of range [0, {self.num_nodes})")
            return c
        if not isinstance(concept, str):
            raise TypeError(f"{what}: expected a concept name (str) or id (int), found "
                            f"{type(concept).__name__} {_short(concept)}")
        i = self._lookup(concept, False, what)
        if i is None:
            hint = self.search(normalize_concept(concept)[:4], limit=3) if concept.strip() else []
            more = f"; similar names: {', '.join(hint)}" if hint else ""
            raise KeyError(f"concept {concept!r} is not in the graph{more}")
        return i

    def __contains__(self, concept: str) -> bool:
        if not isinstance(concept, str):
            return False
        try:
            return self.lookup(concept) is not None
        except ValueError:  # not valid Unicode: no concept has that name
            return False

    def search(self, prefix: str, limit: int = 20) -> list[str]:
        """Concept names starting with ``prefix`` (normalised), in sorted order; at most ``limit``."""
        _encode(prefix, "prefix")
        limit = _count(limit, "limit")
        p = normalize_concept(prefix) if prefix.strip() else ""
        key = p.encode("utf-8")
        i = self._bsearch(key)
        out = []
        while i < self.num_nodes and len(out) < limit:
            b = bytes(self._blob[self._off[i]:self._off[i + 1]])
            if not b.startswith(key):
                break
            out.append(b.decode("utf-8"))
            i += 1
        return out

    def relation_id(self, relation: str) -> int:
        from .relations import canonical_relation

        if not isinstance(relation, str):
            raise TypeError(f"relation: expected a relation name (str), found {type(relation).__name__} "
                            f"{_short(relation)}")
        r = self._rel_index.get(relation)
        if r is None:
            r = self._rel_index.get(canonical_relation(relation))
        if r is None:
            raise KeyError(f"relation {relation!r} is not in the graph; relations: {', '.join(self.relations)}")
        return r

    def surface_text(self, edge_id: int) -> str | None:
        if type(edge_id) is not int or not 0 <= edge_id < self.num_edges:
            edge_id = _check_id(edge_id, self.num_edges, "edge id", "edge_id")
        if self._surface_off is None:
            return None
        e = edge_id
        s = bytes(self._surface_blob[self._surface_off[e]:self._surface_off[e + 1]]).decode("utf-8")
        return s or None

    # ---------------------------------------------------------------- queries
    def out_edges(self, node: int) -> np.ndarray:
        """Ids of the edges whose head is concept id ``node``."""
        if type(node) is not int or not 0 <= node < self.num_nodes:
            node = _check_id(node, self.num_nodes, "concept id", "node")
        return np.arange(self.out_indptr[node], self.out_indptr[node + 1])

    def in_edges(self, node: int) -> np.ndarray:
        """Ids of the edges whose tail is concept id ``node``."""
        if type(node) is not int or not 0 <= node < self.num_nodes:
            node = _check_id(node, self.num_nodes, "concept id", "node")
        return np.asarray(self.in_eid[self.in_indptr[node]:self.in_indptr[node + 1]], dtype=np.int64)

    def _edges_of(self, node: int, direction: str, rel: int | None):
        _check_direction(direction)
        groups = []
        if direction in ("out", "both"):
            groups.append(("out", self.out_edges(node)))
        if direction in ("in", "both"):
            groups.append(("in", self.in_edges(node)))
        for d, e in groups:
            if rel is not None:
                e = e[self.edge_rel[e] == rel]
            yield d, e

    def neighbors(self, concept: str | int, relation: str | None = None,
                  direction: str = "out") -> list[Neighbor]:
        """Neighbours of ``concept`` as (relation, concept, weight) records.

        Args:
            concept: name or id.
            relation: only this relation (e.g. ``"UsedFor"``). Default: all.
            direction: ``"out"`` (concept is the head), ``"in"`` (the tail) or ``"both"``.
        """
        node = self.concept_id(concept)
        rel = None if relation is None else self.relation_id(relation)
        out: list[Neighbor] = []
        for d, e in self._edges_of(node, direction, rel):
            other = self.edge_dst[e] if d == "out" else self.edge_src[e]
            for r, o, w in zip(self.edge_rel[e].tolist(), other.tolist(), self.edge_weight[e].tolist()):
                out.append(Neighbor(self.relations[r], self._name(o), w))
        return out

    def incident_edges(self, concept: str | int, relation: str | None = None,
                       direction: str = "out") -> list[Edge]:
        """Edges at ``concept`` as full (head, relation, tail, weight) records, outgoing first.

        Unlike :meth:`neighbors`, each record keeps its direction: for
        ``direction="in"`` the concept is the tail.
        """
        node = self.concept_id(concept)
        rel = None if relation is None else self.relation_id(relation)
        out: list[Edge] = []
        for _, e in self._edges_of(node, direction, rel):
            out.extend(self._edge(x) for x in e.tolist())
        return out

    def edges_between(self, a: str | int, b: str | int) -> list[Edge]:
        """All edges between two concepts, in either direction."""
        ia, ib = self.concept_id(a), self.concept_id(b)
        out = []
        for x, y in ((ia, ib), (ib, ia)):
            e = self.out_edges(x)
            e = e[self.edge_dst[e] == y]
            for eid in e.tolist():
                out.append(self._edge(eid))
        return out

    def edge(self, eid: int) -> Edge:
        """Edge ``eid`` as a (head, relation, tail, weight) record (IndexError when out of range)."""
        if type(eid) is not int or not 0 <= eid < self.num_edges:
            eid = _check_id(eid, self.num_edges, "edge id", "eid")
        return self._edge(eid)

    def _edge(self, eid: int) -> Edge:
        return Edge(self._name(self.edge_src[eid]), self.relations[self.edge_rel[eid]],
                    self._name(self.edge_dst[eid]), float(self.edge_weight[eid]))

    def _gather(self, nodes: np.ndarray, direction: str, max_degree: int | None):
        """Neighbour ids of ``nodes`` (vectorised CSR slicing)."""
        parts = []
        if direction in ("out", "both"):
            parts.append(_csr_gather(self.out_indptr, None, self.edge_dst, nodes, max_degree))
        if direction in ("in", "both"):
            parts.append(_csr_gather(self.in_indptr, self.in_eid, self.edge_src, nodes, max_degree))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def k_hop(self, seeds: Iterable[str | int] | str | int, k: int = 2, direction: str = "both",
              max_degree: int | None = None) -> np.ndarray:
        """Node ids within ``k`` hops of the seeds (seeds included), sorted.

        Args:
            seeds: concept names or ids.
            k: number of hops (>= 0).
            direction: follow ``"out"``, ``"in"`` or ``"both"`` edge directions.
            max_degree: expand at most this many edges per node and direction (the
                first ones in store order); None expands all.
        """
        _check_direction(direction)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"k: expected a non-negative integer number of hops, found {k!r}")
        if max_degree is not None:
            max_degree = _count(max_degree, "max_degree", "a non-negative integer number of edges, or None")
        ids = self._seed_ids(seeds)
        n = self.num_nodes
        visited = np.zeros(n, dtype=bool)
        visited[ids] = True
        frontier = ids
        for hop in range(int(k)):
            if not len(frontier):
                break
            nb = self._gather(frontier, direction, max_degree)
            if hop == k - 1:
                visited[nb] = True  # the last hop needs no frontier
                break
            if len(nb) > n >> 4:
                # Large expansions: a mask over all nodes beats sorting millions of ids.
                new = np.zeros(n, dtype=bool)
                new[nb] = True
                new &= ~visited
                frontier = np.flatnonzero(new)
            else:
                nb = nb[~visited[nb]]
                frontier = np.unique(nb)
            visited[frontier] = True
        return np.flatnonzero(visited)

    def _seed_ids(self, seeds, what: str = "seeds") -> np.ndarray:
        """Sorted unique ids of concepts given by names and ids; a lone name, id or bytes is one item."""
        if isinstance(seeds, (str, bytes, bytearray, int, np.integer, np.bool_)):
            seeds = [seeds]
        elif isinstance(seeds, np.ndarray) and seeds.ndim == 0:
            seeds = [seeds[()]]
        elif seeds is None or not hasattr(seeds, "__iter__"):
            raise TypeError(f"{what}: expected concept names or ids (a name, an id or a list of them), found "
                            f"{type(seeds).__name__} {_short(seeds)}")
        ids = sorted({self._cid(s, what) for s in seeds})
        return np.asarray(ids, dtype=np.int64)

    def subgraph(self, nodes: Iterable[str | int] | np.ndarray | str | int) -> "SubgraphView":
        """The induced subgraph: the given nodes and every edge among them.

        ``nodes``: concept names or ids, an integer id array, or one name or id.
        """
        if isinstance(nodes, np.ndarray) and nodes.ndim == 1 and nodes.dtype.kind in "iu":
            ids = np.unique(nodes.astype(np.int64))
            if len(ids) and (ids[0] < 0 or ids[-1] >= self.num_nodes):
                raise IndexError(f"nodes: node ids must lie in [0, {self.num_nodes})")
        else:
            ids = self._seed_ids(nodes, "nodes")
        return SubgraphView(self, ids, self._induced_edges(ids))

    def induced_edges(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Ids of the edges whose both ends are among the concept ids ``ids`` (unique)."""
        return self._induced_edges(np.unique(_id_array(ids, self.num_nodes, "ids", "concept ids")))

    def _induced_edges(self, ids: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.num_nodes, dtype=bool)
        mask[ids] = True
        starts, ends = self.out_indptr[ids], self.out_indptr[ids + 1]
        eids = _ranges(starts, ends)
        return eids[mask[self.edge_dst[eids]]]

    def degree(self, direction: str = "both") -> np.ndarray:
        _check_direction(direction)
        out = np.diff(self.out_indptr)
        if direction == "out":
            return out
        inn = np.diff(self.in_indptr)
        return inn if direction == "in" else out + inn

    def relation_counts(self) -> dict[str, int]:
        c = np.bincount(self.edge_rel, minlength=self.num_relations)
        return {r: int(c[i]) for i, r in sorted(enumerate(self.relations), key=lambda t: -c[t[0]])}

    def degree_stats(self, top: int = 10) -> dict:
        """Summary statistics of total degree, plus the ``top`` concepts by degree (the same keys
        for an empty store)."""
        top = _count(top, "top")
        d = self.degree("both")
        if not len(d):
            return {"mean": 0.0, "median": 0.0, "max": 0, "p99": 0.0, "isolated": 0, "top": []}
        k = min(top, len(d))
        top_ids = np.argpartition(-d, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        top_ids = top_ids[np.argsort(-d[top_ids], kind="stable")]
        return {
            "mean": float(d.mean()), "median": float(np.median(d)), "max": int(d.max()),
            "p99": float(np.percentile(d, 99)), "isolated": int((d == 0).sum()),
            "top": [(self._name(i), int(d[i])) for i in top_ids.tolist()],
        }

    # ---------------------------------------------------------------- exports
    def to_networkx(self, nodes=None):
        """networkx.MultiDiGraph (whole graph, or the subgraph induced by ``nodes``)."""
        from .export import to_networkx

        return to_networkx(self, *self._export_sel(nodes))

    def to_pyg(self, nodes=None):
        """torch_geometric ``Data`` with edge_index, edge_type, edge_weight, node ids."""
        from .export import to_pyg

        return to_pyg(self, *self._export_sel(nodes))

    def to_rdflib(self, nodes=None):
        """rdflib.Graph with ConceptNet IRIs (``http://conceptnet.io/c/en/apple``)."""
        from .export import to_rdflib

        return to_rdflib(self, *self._export_sel(nodes))

    def _export_sel(self, nodes):
        if nodes is None:
            return None, None
        sg = self.subgraph(nodes)
        return sg.node_ids, sg.edge_ids

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the store to ``path`` atomically (see :func:`write_atomically`)."""
        def write(tmp: Path):
            _write_store(self, tmp)

        return write_atomically(_as_path(path, "path"), write)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True, verify: bool | str = True) -> "KnowledgeGraph":
        """Open a saved store; arrays are memory-mapped (``mmap=False`` reads them into RAM).

        Args:
            path: the store folder.
            mmap: map the arrays (default) or read them into memory.
            verify: ``True``/``"full"`` (default): file kinds and sizes, the
                checksum of every file, and the structural cross-checks of every
                offset array against the edges it indexes (35 ms for a 1/10-scale
                ConceptNet store, 11 MB); ``"quick"``: the same with checksums of
                the small files only (names, relations), so a changed weight
                passes; ``False``/``"none"``: file kinds, headers and sizes only
                (3 ms).

        A store must not be modified in place while a process has it mapped
        (truncating a mapped file kills the reader with SIGBUS); replace it as a
        whole, as ``kg-ingest`` and :meth:`save` do: readers keep the old files.

        Raises:
            StoreError: not a store, another format version, or damaged files (names the file).
        """
        return _load_store(_as_path(path, "path"), mmap, verify)


@dataclass
class SubgraphView:
    """Nodes and edges of a store selected together (ids into the parent store)."""

    kg: KnowledgeGraph
    node_ids: np.ndarray
    edge_ids: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def num_edges(self) -> int:
        return len(self.edge_ids)

    def node_names(self) -> list[str]:
        return self.kg.concept_names(self.node_ids.tolist())

    def edges(self) -> list[Edge]:
        return [self.kg.edge(e) for e in self.edge_ids.tolist()]

    def to_networkx(self):
        from .export import to_networkx

        return to_networkx(self.kg, self.node_ids, self.edge_ids)

    def to_pyg(self):
        from .export import to_pyg

        return to_pyg(self.kg, self.node_ids, self.edge_ids)

    def to_rdflib(self):
        from .export import to_rdflib

        return to_rdflib(self.kg, self.node_ids, self.edge_ids)

    def __repr__(self) -> str:
        return f"SubgraphView(num_nodes={self.num_nodes}, num_edges={self.num_edges})"


def _encode(text, what: str) -> bytes:
    """``text`` as UTF-8; TypeError for a non-string, ValueError for text that is not valid Unicode."""
    if not isinstance(text, str):
        raise TypeError(f"{what}: expected a concept name (str), found {type(text).__name__} {_short(text)}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what}: {_short(text)} is not valid Unicode text (a lone surrogate "
                         f"{text[e.start]!r} at position {e.start}); no concept has such a name") from None


def _check_id(x, n: int, kind: str, what: str) -> int:
    """``x`` as an id in [0, n): TypeError for a non-integer (or a bool), IndexError out of range."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{what}: expected an integer {kind}, found {type(x).__name__} {_short(x)}")
    i = int(x)
    if not 0 <= i < n:
        raise IndexError(f"{kind} {i} out of range [0, {n})")
    return i


def _id_array(ids, n: int, what: str, kind: str) -> np.ndarray:
    """A sequence or array of ids in [0, n) as an int64 array (checked once, vectorised)."""
    if isinstance(ids, (str, bytes, bytearray)) or ids is None or not hasattr(ids, "__iter__"):
        raise TypeError(f"{what}: expected a sequence of integer {kind}, found {type(ids).__name__} "
                        f"{_short(ids)}")
    arr = ids if isinstance(ids, np.ndarray) else np.asarray(ids if isinstance(ids, (list, tuple)) else list(ids))
    if arr.ndim != 1:
        raise TypeError(f"{what}: expected a flat sequence of integer {kind}, found an array of shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what}: expected integer {kind}, found {arr.dtype.name if arr.dtype.kind != 'U' else 'str'} "
                        f"values")
    arr = arr.astype(np.int64, copy=False)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n:
        raise IndexError(f"{what}: {kind} {lo if lo < 0 else hi} out of range [0, {n})")
    return arr


def _count(x, what: str, expected: str = "a non-negative integer") -> int:
    """A non-negative integer argument: TypeError for a non-integer (or a bool), ValueError below 0."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{what}: expected {expected}, found {type(x).__name__} {_short(x)}")
    if x < 0:
        raise ValueError(f"{what}: expected {expected}, found {x!r}")
    return int(x)


def _as_path(path, what: str) -> Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise TypeError(f"{what}: expected a folder path (str or os.PathLike), found {type(path).__name__} "
                    f"{_short(path)}")


def _check_direction(direction: str) -> None:
    if direction not in ("out", "in", "both"):
        raise ValueError(f"direction: expected 'out', 'in' or 'both', found {direction!r}")


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, e)`` for each pair, vectorised."""
    lens = (ends - starts).astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    nz = lens > 0
    starts, lens = starts[nz].astype(np.int64), lens[nz]
    # Each element = its run's start + position within the run.
    run_first = np.cumsum(lens) - lens
    out = np.arange(total, dtype=np.int64) - np.repeat(run_first - starts, lens)
    return out


def _csr_gather(indptr, perm, targets, nodes, max_degree):
    starts = np.asarray(indptr[nodes], dtype=np.int64)
    ends = np.asarray(indptr[nodes + 1], dtype=np.int64)
    if max_degree is not None:
        ends = np.minimum(ends, starts + int(max_degree))
    pos = _ranges(starts, ends)
    eids = pos if perm is None else np.asarray(perm[pos], dtype=np.int64)
    return np.asarray(targets[eids], dtype=np.int64)


# -------------------------------------------------------------------- on disk
VERIFY_LEVELS = ("none", "quick", "full")
_MAX_JSON_BYTES = 64 << 20  # meta.json / relations.json: far above any real store's
_SMALL_FILES = ("relations.json", "concepts.bin", "concepts.off.npy")  # hashed by a quick check


def _verify_level(verify) -> str:
    if verify is True:
        return "full"
    if verify is False or verify is None:
        return "none"
    if verify in VERIFY_LEVELS:
        return verify
    raise ValueError(f"verify: expected True, False, 'none', 'quick' or 'full', found {verify!r}")


def write_atomically(path: str | os.PathLike, write, *, locked: bool = False) -> Path:
    """Run ``write(tmp_dir)`` then swap ``tmp_dir`` in at ``path`` (see :mod:`kg_ingest._replace`).

    One writer per ``path`` at a time (an advisory lock beside it; pass
    ``locked=True`` when the caller holds it). The old store stays complete and
    reachable at ``path`` until the new one replaces it in one atomic exchange;
    on any failure the temporary folder is removed and the old store is
    untouched. Leftovers of interrupted writers are removed first. A non-empty
    folder that is not a store is refused.
    """
    return _replace.write_folder(Path(path), write, locked=locked)


def _write_store(kg: KnowledgeGraph, d: Path) -> None:
    w = _files.FileWriter(d)
    w.write_bytes("concepts.bin", kg._blob if len(kg._blob) else b"")
    w.write_npy("concepts.off.npy", kg._off, np.int64)
    w.write_npy("edge_src.npy", kg.edge_src, np.int32)
    w.write_npy("edge_dst.npy", kg.edge_dst, np.int32)
    w.write_npy("edge_rel.npy", kg.edge_rel, np.int16)
    w.write_npy("edge_weight.npy", kg.edge_weight, np.float32)
    w.write_npy("out_indptr.npy", kg.out_indptr, np.int64)
    w.write_npy("in_indptr.npy", kg.in_indptr, np.int64)
    w.write_npy("in_eid.npy", kg.in_eid, np.int32)
    if kg.has_surface:
        w.write_bytes("surface.bin", kg._surface_blob if len(kg._surface_blob) else b"")
        w.write_npy("surface.off.npy", kg._surface_off, np.int64)
    w.write_bytes("relations.json", json.dumps(kg.relations, ensure_ascii=False, indent=0).encode("utf-8"))
    meta = {k: v for k, v in kg.meta.items() if k not in ("files", "checksums")}
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, num_nodes=kg.num_nodes,
                num_edges=kg.num_edges, num_relations=kg.num_relations,
                has_surface=kg.has_surface, files=dict(w.sizes),
                checksums={"algorithm": w.algorithm, "files": dict(w.checksums)})
    # meta.json last: a folder without it is never taken for a finished store.
    w.write_bytes("meta.json", json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8"))


def _int_field(mp, meta, key, required=True):
    v = meta.get(key)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise StoreError(f"{mp}: damaged metadata: expected a non-negative integer {key!r}, found {v!r}")
    return v


def _read_meta(sd: "_files.StoreDir") -> dict:
    mp = sd.name("meta.json")
    if not sd.exists("meta.json"):
        raise StoreError(f"{sd.path}: not a kg store (no meta.json); build one with `kg-ingest`")
    raw = sd.read_small("meta.json", _MAX_JSON_BYTES, what="metadata file")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{mp}: damaged metadata: not valid JSON ({e})") from e
    except RecursionError:
        raise StoreError(f"{mp}: damaged metadata: JSON nested too deeply to be read") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError(f"{mp}: not a kg store metadata file (expected format {FORMAT!r})")
    ver = meta.get("format_version")
    if isinstance(ver, bool) or ver not in _READABLE_VERSIONS:  # true == 1 in Python
        raise StoreError(f"{mp}: store format version {ver!r}; this kg_ingest reads versions "
                         f"{', '.join(map(str, _READABLE_VERSIONS))} — re-run the ingest")
    _int_field(mp, meta, "num_nodes")
    _int_field(mp, meta, "num_edges")
    files = meta.get("files")
    if ver >= 2 or files is not None:
        if not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in files.items()):
            raise StoreError(f"{mp}: damaged metadata: expected 'files' to map file names to sizes in bytes, "
                             f"found {_short(files)}")
    if not isinstance(meta.get("language", "en"), (str, type(None))):
        raise StoreError(f"{mp}: damaged metadata: expected a language code or null for 'language', "
                         f"found {_short(meta.get('language'))}")
    if not isinstance(meta.get("has_surface", False), bool):
        raise StoreError(f"{mp}: damaged metadata: expected true or false for 'has_surface', "
                         f"found {_short(meta.get('has_surface'))}")
    if ver >= 2:
        ck = meta.get("checksums")
        if (not isinstance(ck, dict) or not isinstance(ck.get("algorithm"), str)
                or not isinstance(ck.get("files"), dict)
                or not all(isinstance(v, str) for v in ck["files"].values())):
            raise StoreError(f"{mp}: damaged metadata: expected 'checksums' with 'algorithm' and 'files', "
                             f"found {_short(ck)}")
        try:
            _files.new_hasher(ck["algorithm"])
        except StoreError as e:
            raise StoreError(f"{mp}: {e}") from None
        missing = sorted(set(files) - set(ck["files"]))
        if missing:
            raise StoreError(f"{mp}: damaged metadata: no checksum for {', '.join(missing)}")
    return meta


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _load_store(d: Path, mmap: bool, verify) -> KnowledgeGraph:
    level = _verify_level(verify)
    if not d.exists() and not d.is_symlink():
        raise StoreError(f"{d}: no such store folder" + _aside_hint(d))
    with _files.StoreDir(d) as sd:
        meta = _read_meta(sd)
        return _open_arrays(sd, meta, mmap, level)


def _aside_hint(d: Path) -> str:
    try:
        olds = sorted(p.name for p in d.parent.glob(f".{d.name}.old-*"))
    except OSError:
        return ""
    if olds:
        return (f" (an interrupted ingest left the previous store at {d.parent / olds[-1]}; the next "
                f"`kg-ingest ... --out {d}` restores it, or rename it back)")
    return ""


def _open_arrays(sd, meta: dict, mmap: bool, level: str) -> KnowledgeGraph:
    n, e = meta["num_nodes"], meta["num_edges"]
    files = meta.get("files") or {}
    checks = (meta.get("checksums") or {}).get("files", {})
    algo = (meta.get("checksums") or {}).get("algorithm")
    expect = {"N+1": n + 1, "E": e, "E+1": e + 1}
    specs = dict(_ARRAYS)
    if meta.get("has_surface"):
        specs.update(_SURFACE_ARRAYS)
    names = [f"{k}.npy" for k in specs] + ["concepts.bin", "relations.json"]
    if meta.get("has_surface"):
        names.append("surface.bin")
    if meta["format_version"] >= 2:
        missing = [f for f in names if f not in files]
        if missing:
            raise StoreError(f"{sd.name('meta.json')}: damaged metadata: 'files' does not list "
                             f"{', '.join(missing)}")
    arrays = {}
    for name, (dtype, lk) in specs.items():
        fname = f"{name}.npy"
        arrays[name] = sd.load_npy(fname, dtype, expect[lk], mmap, files.get(fname))
    blobs = {}
    for bname, offname in (("concepts.bin", "concepts.off"), ("surface.bin", "surface.off")):
        if offname not in arrays:
            continue
        off = arrays[offname]
        if int(off[0]) != 0 or int(off[-1]) < 0:
            raise StoreError(f"{sd.name(offname + '.npy')}: damaged store: offsets do not start at 0")
        if files.get(bname) not in (None, int(off[-1])):
            raise StoreError(f"{sd.name(bname)}: metadata says {files[bname]} bytes, offsets expect {int(off[-1])}")
        blobs[bname] = sd.map_bytes(bname, int(off[-1]), mmap)
    raw_rel = sd.read_small("relations.json", _MAX_JSON_BYTES, files.get("relations.json"))
    rp = sd.name("relations.json")
    try:
        relations = json.loads(raw_rel.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as ex:
        raise StoreError(f"{rp}: damaged: not a JSON list ({ex})") from ex
    except RecursionError:
        raise StoreError(f"{rp}: damaged: not a JSON list (nested too deeply to be read)") from None
    if not isinstance(relations, list) or not all(isinstance(r, str) and r for r in relations):
        raise StoreError(f"{rp}: expected a JSON list of relation names")
    if len(set(relations)) != len(relations):
        raise StoreError(f"{rp}: damaged store: a relation name is listed twice")
    if level != "none":
        if meta["format_version"] >= 2:
            hashed = _SMALL_FILES if level == "quick" else names
            for fname in hashed:
                got = sd.hash(fname, algo)
                if got != checks.get(fname):
                    raise StoreError(f"{sd.name(fname)}: damaged store: checksum {got} differs from the "
                                     f"{checks.get(fname)} recorded when it was written (changed, replaced "
                                     f"or copied from another store)")
        elif level == "full":
            raise StoreError(f"{sd.name('meta.json')}: a format version 1 store carries no checksums, so its "
                             f"content cannot be verified; re-run the ingest to write a version "
                             f"{FORMAT_VERSION} store")
        _check_structure(sd, arrays, blobs["concepts.bin"], n, e, relations)
    return KnowledgeGraph(names_blob=blobs["concepts.bin"], names_off=arrays["concepts.off"], relations=relations,
                          src=arrays["edge_src"], dst=arrays["edge_dst"], rel=arrays["edge_rel"],
                          weight=arrays["edge_weight"], out_indptr=arrays["out_indptr"],
                          in_indptr=arrays["in_indptr"], in_eid=arrays["in_eid"],
                          surface_blob=blobs.get("surface.bin"), surface_off=arrays.get("surface.off"),
                          meta=meta, path=sd.path)


def _check_structure(sd, a: dict, blob, n: int, e: int, relations: list) -> None:
    """Every derived array agrees with the edges it indexes (O(N + E), vectorised).

    Offsets: each out_indptr segment holds exactly the edges of its source in
    edge_src; in_eid is the permutation that sorts edges by (target, edge id),
    and each in_indptr segment holds exactly the edges of its target. Edges are sorted by (source, relation,
    target) without repeats; ids lie in range; weights are finite. Concept names:
    non-empty, valid UTF-8, each starting on a character boundary, strictly
    increasing in byte order (what lookups' binary search relies on).
    """
    def fail(fname, what):
        raise StoreError(f"{sd.name(fname)}: damaged store: {what}")

    r = len(relations)
    off = np.asarray(a["concepts.off"])
    lens = np.diff(off)
    if len(lens) and lens.min() <= 0:
        fail("concepts.off.npy", "concept offsets are not strictly increasing (an empty or negative-length name)")
    b = np.frombuffer(blob, dtype=np.uint8) if len(blob) else np.zeros(0, np.uint8)
    try:
        str(blob, "utf-8")
    except UnicodeDecodeError as ex:
        fail("concepts.bin", f"invalid UTF-8 at byte {ex.start}")
    if n and np.any((b[off[:-1]] & 0xC0) == 0x80):
        fail("concepts.off.npy", "an offset falls inside a UTF-8 character of concepts.bin")
    bad = _first_unsorted(b, off)
    if bad is not None:
        fail("concepts.bin", f"concept names are not in strictly increasing byte order "
                             f"(names {bad} and {bad + 1}); lookups would miss concepts")

    src, dst, rel = a["edge_src"], a["edge_dst"], a["edge_rel"]
    for name, x, hi, what in (("edge_src", src, n, "node"), ("edge_dst", dst, n, "node"),
                              ("edge_rel", rel, r, "relation"), ("in_eid", a["in_eid"], e, "edge")):
        if e and (int(x.min()) < 0 or int(x.max()) >= hi):
            fail(name + ".npy", f"{what} ids outside [0, {hi})")
    for ip in ("out_indptr", "in_indptr"):
        x = np.asarray(a[ip])
        if int(x[0]) != 0 or int(x[-1]) != e:
            fail(ip + ".npy", f"offsets run from {int(x[0])} to {int(x[-1])}, expected 0 to the edge count {e}")
        if n and np.diff(x).min() < 0:
            fail(ip + ".npy", "offsets decrease")
    if e > 1:
        s0, s1 = src[:-1], src[1:]
        if np.any(s1 < s0):
            fail("edge_src.npy", "edges are not sorted by source")
        same = s1 == s0
        r0, r1 = rel[:-1], rel[1:]
        if np.any(same & (r1 < r0)):
            fail("edge_rel.npy", "edges of a source are not sorted by relation")
        if np.any(same & (r1 == r0) & (dst[1:] <= dst[:-1])):
            fail("edge_dst.npy", "edges of a source and relation are not sorted by target without repeats")
    if not _segments_match(a["out_indptr"], src, n):
        fail("out_indptr.npy", "offsets disagree with the edges' sources in edge_src.npy")
    if e and not np.all(np.isfinite(a["edge_weight"])):
        fail("edge_weight.npy", "a weight is not a finite number")
    eid = np.asarray(a["in_eid"], dtype=np.int64)
    if e:
        seen = np.zeros(e, dtype=bool)
        seen[eid] = True
        if not seen.all():
            fail("in_eid.npy", "is not a permutation of the edge ids (an edge id is repeated or missing)")
        d = np.asarray(dst)[eid]
        if np.any(d[1:] < d[:-1]):
            fail("in_eid.npy", "does not order the edges by their targets in edge_dst.npy (one of the two "
                               "is damaged)")
        if np.any((d[1:] == d[:-1]) & (eid[1:] <= eid[:-1])):
            fail("in_eid.npy", "edges of one target are not in edge-id order")
        if not _segments_match(a["in_indptr"], d, n):
            fail("in_indptr.npy", "offsets disagree with the edges' targets in edge_dst.npy")


def _segments_match(indptr, keys, n: int) -> bool:
    """For non-decreasing ``keys`` and monotone ``indptr`` over them: every segment i holds only i.

    Checking each non-empty segment's first and last key is enough: keys are
    sorted, and the segments cover every position, so no key can name an
    empty segment.
    """
    x = np.asarray(indptr, dtype=np.int64)
    lo, hi = x[:-1], x[1:]
    nz = np.flatnonzero(hi > lo)
    if not len(nz):
        return True
    k = np.asarray(keys)
    return bool(np.array_equal(k[lo[nz]], nz) and np.array_equal(k[hi[nz] - 1], nz))


_KEEP_TOP = np.array([0] + [((1 << (8 * r)) - 1) << (8 * (8 - r)) for r in range(1, 9)], dtype=np.uint64)


def _first_unsorted(b: np.ndarray, off: np.ndarray) -> int | None:
    """First i with name[i] >= name[i+1] (byte order), compared 8 bytes at a time; None if sorted."""
    n = len(off) - 1
    if n < 2:
        return None
    padded = np.zeros(len(b) + 8, dtype=np.uint8)
    padded[:len(b)] = b
    # Big-endian 8-byte window starting at every byte (a strided view, no copy).
    win = np.ndarray(shape=(len(b) + 1,), dtype=">u8", buffer=padded, strides=(1,))
    starts = np.asarray(off[:-1], dtype=np.int64)
    lens = np.diff(np.asarray(off, dtype=np.int64))

    def key(ids, k):
        rem = np.clip(lens[ids] - k, 0, 8)
        return win[starts[ids] + k].astype(np.uint64) & _KEEP_TOP[rem], lens[ids] - k

    allk, allr = key(np.arange(n, dtype=np.int64), 0)
    ka, kb, ra, rb = allk[:-1], allk[1:], allr[:-1], allr[1:]
    idx = np.arange(n - 1, dtype=np.int64)
    k = 0
    while True:
        eq = ka == kb
        wrong = (ka > kb) | (eq & (ra <= 8) & (ra >= rb)) | (eq & (rb <= 8) & (ra > 8))
        if wrong.any():
            return int(idx[np.flatnonzero(wrong)[0]])
        more = eq & (ra > 8) & (rb > 8)
        idx = idx[more]
        if not len(idx):
            return None
        k += 8
        ka, ra = key(idx, k)
        kb, rb = key(idx + 1, k)


def verify_store(path: str | os.PathLike, level: str = "full") -> dict:
    """Check a store without keeping it open; returns a short report.

    ``"full"`` compares every file with its recorded checksum and runs the
    structural checks; ``"quick"`` hashes only the small files. Raises
    :class:`StoreError` naming the first damaged file.
    """
    import time

    t = time.perf_counter()
    kg = _load_store(_as_path(path, "path"), True, level)
    files = kg.meta.get("files") or {}
    return {"path": str(kg.path), "level": level, "files": len(files),
            "bytes": int(sum(files.values())), "seconds": time.perf_counter() - t,
            "checksum": (kg.meta.get("checksums") or {}).get("algorithm"),
            "num_nodes": kg.num_nodes, "num_edges": kg.num_edges}


def save_and_reload(kg: KnowledgeGraph, path: str | os.PathLike) -> KnowledgeGraph:
    """Write ``kg`` to ``path`` and open the written store, holding the writer lock across both
    (so a concurrent writer cannot swap the folder between the write and the load)."""
    target = _replace.check_target(path)
    with _replace.target_lock(target):
        _replace.write_folder(target, lambda tmp: _write_store(kg, tmp), locked=True)
        return KnowledgeGraph.load(path)  # by the name the caller gave (a symlink keeps its name)
