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

import functools
import re
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote

from ._io import InputError, PathOrFile, ReadStats, iter_lines, read_regular_file, source_name
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
# N-Triples 1.1 (https://www.w3.org/TR/n-triples/#n-triples-grammar), one statement per line.
_HEX = "[0-9A-Fa-f]"
_UCHAR = rf"\\u{_HEX}{{4}}|\\U{_HEX}{{8}}"
_IRIREF = rf'<((?:[^\x00-\x20<>"{{}}|^`\\]|{_UCHAR})*)>'
_PN_CHARS_BASE = ("A-Za-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02FF\u0370-\u037D\u037F-\u1FFF\u200C-\u200D"
                  "\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD\U00010000-\U000EFFFF")
_PN_CHARS_U = _PN_CHARS_BASE + "_:"
_PN_CHARS = _PN_CHARS_U + "\\-0-9\u00B7\u0300-\u036F\u203F-\u2040"
_BNODE = rf"_:[{_PN_CHARS_U}0-9](?:[{_PN_CHARS}.]*[{_PN_CHARS}])?"
_STRING = rf'"((?:[^"\\\n\r]|\\[tbnrf"\'\\]|{_UCHAR})*)"'
_LANGTAG = r"@[a-zA-Z]+(?:-[a-zA-Z0-9]+)*"
_NT_STATEMENT_RE = (
    rf"[ \t]*(?:{_IRIREF}|({_BNODE}))"           # subject: 1 IRI, 2 blank node
    rf"[ \t]*{_IRIREF}"                          # predicate: 3
    rf"[ \t]*(?:{_IRIREF}|({_BNODE})|{_STRING}(?:\^\^{_IRIREF}|{_LANGTAG})?)"  # object: 4 IRI, 5 bnode, 6 literal
    rf"[ \t]*\.[ \t]*(?:#.*)?"
)  # compiled on first use (its Unicode classes take a while to compile)
_NT_BLANK = re.compile(r"[ \t]*(?:#.*)?")
_ESCAPE = re.compile(rf"{_UCHAR}|\\[tbnrf\"'\\]")
_ECHAR = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_IRI_FORBIDDEN = re.compile(r'[\x00-\x20<>"{}|^`\\]')


@functools.lru_cache(maxsize=1)
def _nt_statement() -> "re.Pattern[str]":
    return re.compile(_NT_STATEMENT_RE)


def _unescape(text: str) -> str:
    """Decode ``\\uXXXX``/``\\UXXXXXXXX`` (and string escapes); ValueError for a code point that is not a character."""
    if "\\" not in text:
        return text

    def one(m):
        e = m.group()
        if e[1] in "uU":
            cp = int(e[2:], 16)
            if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                raise ValueError(f"escape {e} is not a Unicode character")
            return chr(cp)
        return _ECHAR[e[1]]

    return _ESCAPE.sub(one, text)


def parse_ntriples_line(line: str):
    """One N-Triples line -> ``None`` (blank or comment) or ``(subject, predicate, object, kind)``.

    ``kind`` is ``"iri"``, ``"bnode"`` or ``"literal"``; IRIs are returned with
    their escapes decoded. Raises ValueError naming what is wrong.
    """
    if _NT_BLANK.fullmatch(line):
        return None
    m = _nt_statement().fullmatch(line)
    if m is None:
        raise ValueError("expected an N-Triples statement '<s> <p> <o> .'")
    s_iri, s_bn, p_iri, o_iri, o_bn, o_lit, o_dt = m.groups()
    iris = [x for x in (s_iri, p_iri, o_iri, o_dt) if x is not None]
    out = []
    for raw in iris:
        iri = _unescape(raw)
        if _IRI_FORBIDDEN.search(iri):
            raise ValueError(f"IRI <{raw[:60]}> holds a character an IRI may not hold")
        if not _SCHEME.match(iri):
            raise ValueError(f"relative IRI <{raw[:60]}>; N-Triples needs absolute IRIs")
        out.append(iri)
    it = iter(out)
    subj = next(it) if s_iri is not None else s_bn
    pred = next(it)
    if o_iri is not None:
        return subj, pred, next(it), "iri"
    if o_bn is not None:
        return subj, pred, o_bn, "bnode"
    return subj, pred, _unescape(o_lit), "literal"


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
        return canonical_relation(unquote(iri[len(CN) + 2:]))
    local = re.split(r"[#/]", iri.rstrip("/#"))[-1]
    return canonical_relation(unquote(local))


# The --format names accepted (rdflib's parser plugin names).
RDF_FORMATS = ("nt", "turtle", "xml", "json-ld", "n3", "trig", "nquads", "trix", "hext")


def _one_line(msg: str, limit: int = 300) -> str:
    """rdflib's multi-line parser messages on one line (runs of whitespace to one space), shortened."""
    s = " ".join(msg.split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def guess_format(path: str | Path) -> str:
    p = str(path).lower()
    if p.endswith(".gz"):
        p = p[:-3]
    for ext, fmt in _FORMATS.items():
        if p.endswith(ext):
            return fmt
    raise InputError(f"{path}: cannot tell the RDF format from the file name; pass --format "
                     f"(one of: {', '.join(RDF_FORMATS)})")


def iter_rdf(
    src: PathOrFile,
    fmt: str | None = None,
    stats: IngestStats | None = None,
    read_stats: ReadStats | None = None,
    strict: bool = False,
    on_block: Callable[[], None] | None = None,
    batch_size: int = 50_000,
    jsonld_context: str | Path | None = None,
) -> Iterator[list[Assertion]]:
    """Parse an RDF file into concept-to-concept :class:`Assertion` batches.

    N-Triples is streamed line by line (any size); other formats are parsed by
    rdflib in memory. Nothing but the input is ever read, and nothing is
    fetched: a JSON-LD ``@context`` (or ``@import``) that names a URL or a file
    is refused unless ``jsonld_context`` gives a local file to use for every
    such reference; an XML document type that names an external entity is refused.
    """
    name = source_name(src)
    stats = stats if stats is not None else IngestStats()
    stats.source = stats.source or name
    fmt = fmt or (guess_format(name) if name != "<stream>" else None)
    if fmt is None:
        raise InputError(f"{name}: pass the RDF format (nt, turtle, xml, json-ld, ...)")
    if jsonld_context is not None and not Path(jsonld_context).exists():
        raise InputError(f"{jsonld_context}: the --jsonld-context file: no such file")
    if fmt in ("nt", "ntriples", "nt11"):
        yield from _iter_ntriples(src, name, stats, read_stats, strict, on_block, batch_size)
        return
    yield from _iter_rdflib(src, name, fmt, stats, read_stats, batch_size, jsonld_context)


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
        try:
            t = parse_ntriples_line(line)
        except ValueError as e:
            msg = f"{name}:{lineno}: {e}, found {line.strip()[:80]!r}"
            if strict:
                raise InputError(msg) from None
            stats.malformed("bad N-Triples", msg)
            continue
        if t is None:
            continue
        subj, pred, obj, kind = t
        if subj.startswith("_:") or kind == "bnode":
            stats.skipped["blank node"] += 1
            continue
        if kind == "literal":
            stats.skipped["literal object"] += 1
            continue
        rec = _emit(subj, pred, obj, lineno, stats)
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


def _context_refs(node, found: list) -> None:
    """Collect every @context / @import value that refers to something outside the document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "@context":
                for c in v if isinstance(v, list) else [v]:
                    if isinstance(c, str):
                        found.append(c)
                    elif isinstance(c, dict):
                        if isinstance(c.get("@import"), str):
                            found.append(c["@import"])
                        _context_refs(c, found)
            else:
                _context_refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _context_refs(v, found)


def _inline_contexts(node, local):
    """Replace every external @context reference by ``local`` (a context object)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "@context":
                items = v if isinstance(v, list) else [v]
                new = []
                for c in items:
                    if isinstance(c, str):
                        new.append(local)
                    elif isinstance(c, dict):
                        if isinstance(c.get("@import"), str):  # the imported context first, then the rest
                            new.append(local)
                            c = {ck: cv for ck, cv in c.items() if ck != "@import"}
                        new.append(_inline_contexts(c, local))
                    else:
                        new.append(c)
                out[k] = new if isinstance(v, list) or len(new) > 1 else new[0]
            else:
                out[k] = _inline_contexts(v, local)
        return out
    if isinstance(node, list):
        return [_inline_contexts(v, local) for v in node]
    return node


def _prepare_jsonld(data: bytes, name: str, context_file) -> bytes:
    import json

    try:
        doc = json.loads(data.decode("utf-8-sig"))
        refs: list[str] = []
        _context_refs(doc, refs)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{name}: cannot parse as json-ld RDF: {e}") from e
    except RecursionError:
        raise InputError(f"{name}: cannot parse as json-ld RDF: the JSON nests too deeply") from None
    if not refs:
        return data
    if context_file is None:
        raise InputError(f"{name}: the JSON-LD @context refers to {refs[0]!r}; kg-ingest never fetches or reads "
                         f"anything but its input: save that context as a local file and pass it with "
                         f"--jsonld-context FILE")
    raw = read_regular_file(context_file, 16 << 20, "JSON-LD context")
    try:
        local = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{context_file}: the JSON-LD context is not valid JSON: {e}") from e
    except RecursionError:
        raise InputError(f"{context_file}: the JSON-LD context nests too deeply to be read") from None
    if isinstance(local, dict) and "@context" in local:
        local = local["@context"]
    if not isinstance(local, (dict, list)):
        raise InputError(f"{context_file}: expected a JSON-LD context object, found {type(local).__name__}")
    more: list[str] = []
    _context_refs({"@context": local}, more)
    if more:
        raise InputError(f"{context_file}: the context itself refers to {more[0]!r}; give a self-contained context")
    return json.dumps(_inline_contexts(doc, local)).encode("utf-8")


_XML_EXTERNAL = re.compile(rb"<!DOCTYPE[^>\[]*(?:\[[^\]]*\])?[^>]*>|<!ENTITY[^>]*>", re.S)


def _check_xml(data: bytes, name: str) -> None:
    for m in _XML_EXTERNAL.finditer(data[:1 << 20]):
        if re.search(rb"\b(?:SYSTEM|PUBLIC)\b", m.group()):
            raise InputError(f"{name}: the XML document type names an external entity; kg-ingest never reads "
                             f"anything but its input")


def _iter_rdflib(src, name, fmt, stats, read_stats, batch_size, jsonld_context=None):
    try:
        import rdflib
    except ImportError as e:  # pragma: no cover
        raise ImportError("RDF input needs rdflib: pip install 'ravlm-graph[rdf]'") from e
    from rdflib.parser import Parser

    try:
        rdflib.plugin.get(fmt, Parser)
    except rdflib.plugin.PluginException:
        raise InputError(f"{name}: unknown RDF format {fmt!r}; expected one of: {', '.join(RDF_FORMATS)}") from None
    from ._io import iter_blocks

    # Decompresses .gz; rdflib parses from memory. ``read_stats`` records the input's SHA-256.
    data = b"".join(iter_blocks(src, read_stats, threaded=False, max_line=None))
    if fmt in ("json-ld", "jsonld", "application/ld+json"):
        data = _prepare_jsonld(data, name, jsonld_context)
    elif fmt in ("xml", "application/rdf+xml", "trix"):
        _check_xml(data, name)
    # A Dataset keeps the triples of every named graph (N-Quads, TriG, TriX, JSON-LD "@graph"
    # with an "@id"); a plain Graph would keep only the default graph's.
    g = rdflib.Dataset()
    try:
        g.parse(data=data, format=fmt)
    except Exception as e:  # rdflib raises many parser-specific types
        if isinstance(e, ImportError):
            raise
        if isinstance(e, rdflib.plugin.PluginException) and "No plugin registered" in str(e):
            raise InputError(f"{name}: unknown RDF format {fmt!r}; expected one of: {', '.join(RDF_FORMATS)}") from e
        raise InputError(f"{name}: cannot parse as {fmt} RDF: {_one_line(str(e)) or type(e).__name__}") from e
    stats.lines_read = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    batch: list[Assertion] = []
    for s, p, o, _ in g.quads((None, None, None, None)):
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
