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
import shutil
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

FORMAT = "ravlm-kg-store"
FORMAT_VERSION = 1

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


class StoreError(ValueError):
    """A store folder that is missing, damaged or of another format."""


class Neighbor(NamedTuple):
    relation: str
    concept: str
    weight: float


class Edge(NamedTuple):
    head: str
    relation: str
    tail: str
    weight: float


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
        i = int(i)
        if not 0 <= i < self.num_nodes:
            raise IndexError(f"concept id {i} out of range [0, {self.num_nodes})")
        return bytes(self._blob[self._off[i]:self._off[i + 1]]).decode("utf-8")

    def concept_names(self, ids: Iterable[int]) -> list[str]:
        return [self.concept_name(i) for i in ids]

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
        key = name.encode("utf-8")
        i = self._bsearch(key)
        if i < self.num_nodes and bytes(self._blob[self._off[i]:self._off[i + 1]]) == key:
            return i
        return None

    def lookup(self, text: str) -> int | None:
        """Exact name first, then the normalised text (``"Ice Cream"`` -> ``ice_cream``)."""
        if not isinstance(text, str):
            raise TypeError(f"expected a concept name (str), found {type(text).__name__}")
        i = self.find_id(text)
        if i is None:
            norm = normalize_concept(text)
            if norm and norm != text:
                i = self.find_id(norm)
        return i

    def concept_id(self, concept: str | int) -> int:
        """Id of a concept given by name (exact or normalised) or id; KeyError if absent."""
        if isinstance(concept, (int, np.integer)):
            c = int(concept)
            if not 0 <= c < self.num_nodes:
                raise KeyError(f"concept id {c} out of range [0, {self.num_nodes})")
            return c
        i = self.lookup(concept)
        if i is None:
            hint = self.search(normalize_concept(concept)[:4], limit=3) if concept.strip() else []
            more = f"; similar names: {', '.join(hint)}" if hint else ""
            raise KeyError(f"concept {concept!r} is not in the graph{more}")
        return i

    def __contains__(self, concept: str) -> bool:
        return isinstance(concept, str) and self.lookup(concept) is not None

    def search(self, prefix: str, limit: int = 20) -> list[str]:
        """Concept names starting with ``prefix`` (normalised), in sorted order."""
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

        r = self._rel_index.get(relation)
        if r is None:
            r = self._rel_index.get(canonical_relation(relation))
        if r is None:
            raise KeyError(f"relation {relation!r} is not in the graph; relations: {', '.join(self.relations)}")
        return r

    def surface_text(self, edge_id: int) -> str | None:
        if self._surface_off is None:
            return None
        e = int(edge_id)
        s = bytes(self._surface_blob[self._surface_off[e]:self._surface_off[e + 1]]).decode("utf-8")
        return s or None

    # ---------------------------------------------------------------- queries
    def out_edges(self, node: int) -> np.ndarray:
        return np.arange(self.out_indptr[node], self.out_indptr[node + 1])

    def in_edges(self, node: int) -> np.ndarray:
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
                out.append(Neighbor(self.relations[r], self.concept_name(o), w))
        return out

    def edges_between(self, a: str | int, b: str | int) -> list[Edge]:
        """All edges between two concepts, in either direction."""
        ia, ib = self.concept_id(a), self.concept_id(b)
        out = []
        for x, y in ((ia, ib), (ib, ia)):
            e = self.out_edges(x)
            e = e[self.edge_dst[e] == y]
            for eid in e.tolist():
                out.append(self.edge(eid))
        return out

    def edge(self, eid: int) -> Edge:
        eid = int(eid)
        return Edge(self.concept_name(self.edge_src[eid]), self.relations[self.edge_rel[eid]],
                    self.concept_name(self.edge_dst[eid]), float(self.edge_weight[eid]))

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

    def _seed_ids(self, seeds) -> np.ndarray:
        if isinstance(seeds, (str, int, np.integer)):
            seeds = [seeds]
        ids = sorted({self.concept_id(s) for s in seeds})
        return np.asarray(ids, dtype=np.int64)

    def subgraph(self, nodes: Iterable[str | int] | np.ndarray) -> "SubgraphView":
        """The induced subgraph: the given nodes and every edge among them."""
        if isinstance(nodes, np.ndarray) and nodes.dtype.kind in "iu":
            ids = np.unique(nodes.astype(np.int64))
            if len(ids) and (ids[0] < 0 or ids[-1] >= self.num_nodes):
                raise IndexError(f"node ids must lie in [0, {self.num_nodes})")
        else:
            ids = self._seed_ids(list(nodes))
        return SubgraphView(self, ids, self.induced_edges(ids))

    def induced_edges(self, ids: np.ndarray) -> np.ndarray:
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
        """Summary statistics of total degree, plus the top concepts by degree."""
        d = self.degree("both")
        if not len(d):
            return {"mean": 0.0, "median": 0.0, "max": 0, "isolated": 0, "top": []}
        k = min(top, len(d))
        top_ids = np.argpartition(-d, k - 1)[:k]
        top_ids = top_ids[np.argsort(-d[top_ids], kind="stable")]
        return {
            "mean": float(d.mean()), "median": float(np.median(d)), "max": int(d.max()),
            "p99": float(np.percentile(d, 99)), "isolated": int((d == 0).sum()),
            "top": [(self.concept_name(i), int(d[i])) for i in top_ids],
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

        return write_atomically(Path(path), write)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True, verify: bool = True) -> "KnowledgeGraph":
        """Open a saved store; arrays are memory-mapped (``mmap=False`` reads them into RAM).

        Raises:
            StoreError: not a store, another format version, or damaged files.
        """
        return _load_store(Path(path), mmap, verify)


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
def write_atomically(path: Path, write) -> Path:
    """Run ``write(tmp_dir)`` then move ``tmp_dir`` into place as ``path``.

    The temporary folder lives beside ``path`` (same file system, so the final
    rename is atomic). An existing store at ``path`` is replaced only after the
    new one is complete; on any failure the temporary folder is removed and the
    old store is untouched. A non-empty folder that is not a store is refused.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise StoreError(f"{path}: exists and is not a folder; refusing to replace it with a store")
        if any(path.iterdir()) and not (path / "meta.json").exists():
            raise StoreError(f"{path}: a non-empty folder that is not a kg store; refusing to replace it "
                             f"(choose a new --out folder)")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    except OSError as e:
        raise StoreError(f"{path}: cannot write the store here: {e.strerror or e}") from e
    try:
        write(tmp)
        if path.exists():
            old = parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_store(kg: KnowledgeGraph, d: Path) -> None:
    files = {}

    def save_arr(name, arr, dtype):
        p = d / f"{name}.npy"
        np.save(p, np.ascontiguousarray(arr, dtype=dtype))
        files[p.name] = p.stat().st_size

    (d / "concepts.bin").write_bytes(bytes(kg._blob))
    files["concepts.bin"] = (d / "concepts.bin").stat().st_size
    save_arr("concepts.off", kg._off, np.int64)
    save_arr("edge_src", kg.edge_src, np.int32)
    save_arr("edge_dst", kg.edge_dst, np.int32)
    save_arr("edge_rel", kg.edge_rel, np.int16)
    save_arr("edge_weight", kg.edge_weight, np.float32)
    save_arr("out_indptr", kg.out_indptr, np.int64)
    save_arr("in_indptr", kg.in_indptr, np.int64)
    save_arr("in_eid", kg.in_eid, np.int32)
    if kg.has_surface:
        (d / "surface.bin").write_bytes(bytes(kg._surface_blob))
        files["surface.bin"] = (d / "surface.bin").stat().st_size
        save_arr("surface.off", kg._surface_off, np.int64)
    (d / "relations.json").write_text(json.dumps(kg.relations, ensure_ascii=False, indent=0), encoding="utf-8")
    files["relations.json"] = (d / "relations.json").stat().st_size
    meta = dict(kg.meta)
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, num_nodes=kg.num_nodes,
                num_edges=kg.num_edges, num_relations=kg.num_relations,
                has_surface=kg.has_surface, files=files)
    # meta.json last: a folder without it is never taken for a finished store.
    (d / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")


def _load_store(d: Path, mmap: bool, verify: bool) -> KnowledgeGraph:
    if not d.exists():
        raise StoreError(f"{d}: no such store folder")
    if not d.is_dir():
        raise StoreError(f"{d}: expected a store folder, found a file")
    mp = d / "meta.json"
    if not mp.exists():
        raise StoreError(f"{d}: not a kg store (no meta.json); build one with `kg-ingest`")
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{mp}: damaged metadata: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError(f"{mp}: not a kg store metadata file (expected format {FORMAT!r})")
    ver = meta.get("format_version")
    if ver != FORMAT_VERSION:
        raise StoreError(f"{mp}: store format version {ver!r}; this kg_ingest reads version {FORMAT_VERSION} "
                         f"— re-run the ingest")
    try:
        n, e = int(meta["num_nodes"]), int(meta["num_edges"])
        files = meta["files"]
    except (KeyError, TypeError, ValueError) as ex:
        raise StoreError(f"{mp}: damaged metadata: missing or bad field {ex}") from ex
    expect = {"N+1": n + 1, "E": e, "E+1": e + 1}
    specs = dict(_ARRAYS)
    if meta.get("has_surface"):
        specs.update(_SURFACE_ARRAYS)
    arrays = {}
    for name, (dtype, lk) in specs.items():
        p = d / f"{name}.npy"
        if not p.exists():
            raise StoreError(f"{p}: missing store file")
        size = p.stat().st_size
        if files.get(p.name) not in (None, size):
            raise StoreError(f"{p}: size {size} bytes, metadata says {files[p.name]} (truncated or replaced file)")
        try:
            a = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as ex:
            raise StoreError(f"{p}: damaged array file: {ex}") from ex
        if a.dtype != np.dtype(dtype) or a.ndim != 1 or len(a) != expect[lk]:
            raise StoreError(f"{p}: expected {np.dtype(dtype).name} array of length {expect[lk]}, "
                             f"found {a.dtype.name} {a.shape}")
        arrays[name] = a
    blobs = {}
    for bname, offname in (("concepts.bin", "concepts.off"), ("surface.bin", "surface.off")):
        if offname not in arrays:
            continue
        p = d / bname
        if not p.exists():
            raise StoreError(f"{p}: missing store file")
        size = p.stat().st_size
        if int(arrays[offname][-1]) != size or int(arrays[offname][0]) != 0:
            raise StoreError(f"{p}: size {size} bytes, offsets expect {int(arrays[offname][-1])} (truncated file)")
        if size == 0:
            blobs[bname] = b""
        elif mmap:
            blobs[bname] = np.memmap(p, dtype=np.uint8, mode="r")
        else:
            blobs[bname] = p.read_bytes()
    try:
        relations = json.loads((d / "relations.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as ex:
        raise StoreError(f"{d / 'relations.json'}: missing or damaged: {ex}") from ex
    if not isinstance(relations, list) or not all(isinstance(r, str) for r in relations):
        raise StoreError(f"{d / 'relations.json'}: expected a JSON list of relation names")
    if verify:
        _verify(d, arrays, n, e, len(relations))
    blob = blobs["concepts.bin"]
    if isinstance(blob, np.memmap):
        blob = memoryview(blob)
    sblob = blobs.get("surface.bin")
    if isinstance(sblob, np.memmap):
        sblob = memoryview(sblob)
    return KnowledgeGraph(names_blob=blob, names_off=arrays["concepts.off"], relations=relations,
                          src=arrays["edge_src"], dst=arrays["edge_dst"], rel=arrays["edge_rel"],
                          weight=arrays["edge_weight"], out_indptr=arrays["out_indptr"],
                          in_indptr=arrays["in_indptr"], in_eid=arrays["in_eid"],
                          surface_blob=sblob, surface_off=arrays.get("surface.off"), meta=meta, path=d)


def _verify(d: Path, a: dict, n: int, e: int, r: int) -> None:
    """Cheap structural checks (O(N + E) vectorised), so damage fails here, not deep in a query."""
    def fail(name, what):
        raise StoreError(f"{d / (name + '.npy')}: damaged store: {what}")

    for ip in ("out_indptr", "in_indptr", "concepts.off"):
        x = a[ip]
        last = e if ip != "concepts.off" else x[-1]
        if x[0] != 0 or x[-1] != last or (len(x) > 1 and np.any(x[1:] < x[:-1])):
            fail(ip, "offsets are not a non-decreasing sequence from 0 to the edge count")
    if e:
        for name in ("edge_src", "edge_dst"):
            x = a[name]
            if x.min() < 0 or x.max() >= n:
                fail(name, f"node ids outside [0, {n})")
        if a["edge_rel"].min() < 0 or a["edge_rel"].max() >= r:
            fail("edge_rel", f"relation ids outside [0, {r})")
        if a["in_eid"].min() < 0 or a["in_eid"].max() >= e:
            fail("in_eid", f"edge ids outside [0, {e})")
        # The out-CSR must agree with edge_src.
        if np.any(np.diff(a["edge_src"]) < 0):
            fail("edge_src", "edges are not sorted by source")
