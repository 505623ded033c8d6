"""Any RDF graph in: N-Triples streamed line by line; Turtle, RDF/XML, JSON-LD, ... through rdflib.

IRIs become concepts: a ConceptNet IRI (``http://conceptnet.io/c/en/apple/n``)
gives its term (``apple``); any other IRI gives its local name (after the last
``#`` or ``/``), percent-decoded and normalised (``Ice_Cream`` -> ``ice_cream``).
Predicates become relations the same way (``http://conceptnet.io/r/IsA`` ->
``IsA``), with ``rdf:type`` and ``rdfs:subClassOf`` read as ``IsA``. Triples
whose object is a literal or a blank node carry no concept-to-concept fact and
are counted as skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote

from ._io import InputError, PathOrFile, ReadStats, iter_lines, source_name
from .records import Assertion, IngestStats
from .relations import canonical_relation
from .store import normalize_concept

CN = "http://conceptnet.io/"
_PREDICATE_ALIASES = {
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#type": "IsA",
    "http://www.w3.org/2000/01/rdf-schema#subClassOf": "IsA",
}
_FORMATS = {
    ".nt": "nt", ".ntriples": "nt", ".ttl": "turtle", ".turtle": "turtle", ".rdf": "xml", ".xml": "xml",
    ".owl": "xml", ".jsonld": "json-ld", ".json": "json-ld", ".n3": "n3", ".trig": "trig", ".nq": "nquads",
}
# <subject> <predicate> object .  (object: IRI, blank node or literal)
_NT_LINE = re.compile(r'^\s*(<[^>]*>|_:\S+)\s+<([^>]*)>\s+(<[^>]*>|_:\S+|".*)\s*\.\s*$')


def iri_to_concept(iri: str) -> str:
    """``http://conceptnet.io/c/en/ice_cream/n`` -> ``ice_cream``; other IRIs -> local name."""
    if iri.startswith(CN + "c/"):
        parts = iri[len(CN):].split("/")
        term = parts[2] if len(parts) > 2 else ""
        return normalize_concept(unquote(term))
    local = re.split(r"[#/]", iri.rstrip("/#"))[-1]
    return normalize_concept(unquote(local).replace("_", " "))


def iri_to_relation(iri: str) -> str:
    if iri in _PREDICATE_ALIASES:
        return _PREDICATE_ALIASES[iri]
    if iri.startswith(CN + "r/"):
        return canonical_relation(iri[len(CN) + 2:])
    local = re.split(r"[#/]", iri.rstrip("/#"))[-1]
    return canonical_relation(unquote(local))


def guess_format(path: str | Path) -> str:
    p = str(path).lower()
    if p.endswith(".gz"):
        p = p[:-3]
    for ext, fmt in _FORMATS.items():
        if p.endswith(ext):
            return fmt
    raise InputError(f"{path}: cannot tell the RDF format from the file name; pass --format "
                     f"(one of: nt, turtle, xml, json-ld, n3, trig, nquads)")


def iter_rdf(
    src: PathOrFile,
    fmt: str | None = None,
    stats: IngestStats | None = None,
    read_stats: ReadStats | None = None,
    strict: bool = False,
    on_block: Callable[[], None] | None = None,
    batch_size: int = 50_000,
) -> Iterator[list[Assertion]]:
    """Parse an RDF file into concept-to-concept :class:`Assertion` batches.

    N-Triples is streamed line by line (any size); other formats are parsed by
    rdflib in memory.
    """
    name = source_name(src)
    stats = stats if stats is not None else IngestStats()
    stats.source = stats.source or name
    fmt = fmt or (guess_format(name) if name != "<stream>" else None)
    if fmt is None:
        raise InputError(f"{name}: pass the RDF format (nt, turtle, xml, json-ld, ...)")
    if fmt in ("nt", "ntriples", "nt11"):
        yield from _iter_ntriples(src, name, stats, read_stats, strict, on_block, batch_size)
        return
    yield from _iter_rdflib(src, name, fmt, stats, strict, batch_size)


def _emit(s_iri, p_iri, o, lineno, stats):
    rel = iri_to_relation(p_iri)
    head, tail = iri_to_concept(s_iri), iri_to_concept(o)
    if not head or not tail or not rel:
        stats.skipped["empty name"] += 1
        return None
    return Assertion(rel, head, tail, 1.0, None, lineno)


def _iter_ntriples(src, name, stats, read_stats, strict, on_block, batch_size):
    batch: list[Assertion] = []
    last = 0
    for lineno, raw in iter_lines(src, read_stats):
        last = lineno
        stats.lines_read = lineno
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            msg = f"{name}:{lineno}: invalid UTF-8 at byte {e.start}"
            if strict:
                raise InputError(msg)
            stats.malformed("invalid UTF-8", msg)
            continue
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _NT_LINE.match(s)
        if m is None:
            msg = f"{name}:{lineno}: expected an N-Triples statement '<s> <p> <o> .', found {s[:80]!r}"
            if strict:
                raise InputError(msg)
            stats.malformed("bad N-Triples", msg)
            continue
        subj, pred, obj = m.groups()
        if subj.startswith("_:") or obj.startswith("_:"):
            stats.skipped["blank node"] += 1
            continue
        if obj.startswith('"'):
            stats.skipped["literal object"] += 1
            continue
        rec = _emit(subj[1:-1], pred, obj[1:-1], lineno, stats)
        if rec is not None:
            batch.append(rec)
        if len(batch) >= batch_size:
            stats.records += len(batch)
            yield batch
            batch = []
            if on_block:
                on_block()
    if batch:
        stats.records += len(batch)
        yield batch
    if on_block:
        on_block()
    if last and stats.records == 0 and stats.n_malformed:
        raise InputError(f"{name}: no valid N-Triples statement in {last} lines; "
                         f"first problem: {stats.malformed_samples[0]}")


def _iter_rdflib(src, name, fmt, stats, strict, batch_size):
    try:
        import rdflib
    except ImportError as e:  # pragma: no cover
        raise ImportError("RDF input needs rdflib: pip install 'ravlm-graph[rdf]'") from e
    from ._io import iter_blocks

    data = b"".join(iter_blocks(src, threaded=False))  # decompresses .gz; rdflib parses from memory
    g = rdflib.Graph()
    try:
        g.parse(data=data, format=fmt)
    except Exception as e:  # rdflib raises many parser-specific types
        if isinstance(e, ImportError):
            raise
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise InputError(f"{name}: cannot parse as {fmt} RDF: {first}") from e
    stats.lines_read = data.count(b"\n") + 1
    batch: list[Assertion] = []
    for s, p, o in g:
        if isinstance(o, rdflib.Literal):
            stats.skipped["literal object"] += 1
            continue
        if isinstance(s, rdflib.BNode) or isinstance(o, rdflib.BNode):
            stats.skipped["blank node"] += 1
            continue
        rec = _emit(str(s), str(p), str(o), 0, stats)
        if rec is not None:
            batch.append(rec)
        if len(batch) >= batch_size:
            stats.records += len(batch)
            yield batch
            batch = []
    if batch:
        stats.records += len(batch)
        yield batch
