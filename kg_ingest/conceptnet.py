"""Streaming parser of the official ConceptNet 5.x assertions dump (``.csv`` / ``.csv.gz``).

Each line has five tab-separated columns::

    edge URI \\t relation URI \\t start URI \\t end URI \\t JSON info

The parser never holds the file in memory. For a language filter (the common
case: English, ~10 % of the 34 M lines) a regular expression finds the candidate
lines inside each 8 MiB block, and only those are split and JSON-decoded; the
other lines are still checked for their column count (a block whose tab count
is not four per line is re-read line by line to report the bad lines). With
``languages=None`` every line is parsed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import unquote

import numpy as np

from ._io import InputError, PathOrFile, ReadStats, iter_blocks, source_name
from .records import Assertion, IngestStats

try:  # orjson is a core dependency; json is the fallback
    import orjson

    _loads = orjson.loads
    _JSONError: tuple[type[BaseException], ...] = (orjson.JSONDecodeError,)
except ImportError:  # pragma: no cover
    import json

    _loads = json.loads
    _JSONError = (ValueError,)

_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# Bytes of a concept term that need no cleaning: printable ASCII but upper case,
# space and "%". A term with any other byte goes through clean_term.
_PLAIN = bytes(b for b in range(33, 127) if not (65 <= b <= 90 or b == 37))
# ConceptNet's part-of-speech letters (WordNet's): noun, verb, adjective, satellite adjective, adverb.
POS_TAGS = frozenset("nvasr")
_POS_BYTES = frozenset(c.encode() for c in POS_TAGS)
_SPACES = re.compile(r" +")
_HEADER_CELL = re.compile(rb"[A-Za-z][A-Za-z_ ]{0,39}")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # weights are stored as float32
_LANG_START = re.compile(rb"[a-z]{2}")
_LANG_RE = re.compile(r"^[a-z]{2,3}(?:[-_][a-z0-9]+)*$|^mul$")


# Counted when --surface meets a surfaceText that is not a string (the edge is kept, without text).
BAD_SURFACE = "bad surfaceText (kept)"


def _json_spelling(value) -> str:
    """A JSON value as the input spelled it (``"2.0"``, ``true``, ``null``), not as Python prints it."""
    import json

    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _bad_char(text: str):
    """The first Unicode control (Cc: C0, DEL, C1 such as U+0085) or line/paragraph separator, or None."""
    for ch in text:
        if ch < " " or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029":
            return ch
    return None


def clean_term(term: str) -> str:
    """A dump URI's term (or term/pos/sense) as ConceptNet spells concepts.

    Percent-escapes decoded, NFC, lower case, runs of spaces to one ``_``, empty
    ``/`` segments dropped. Raises ValueError naming a control or line/paragraph
    separator character (or an invalid percent-escape).
    """
    if "%" in term:
        term = unquote(term, errors="strict")
    bad = _bad_char(term)
    if bad is not None:
        raise ValueError(f"control character U+{ord(bad):04X}")
    term = unicodedata.normalize("NFC", term.lower())
    if " " in term:
        term = _SPACES.sub("_", term.strip(" "))
    if "/" in term:
        term = "/".join(x for x in term.split("/") if x)
    return term


@dataclass
class ConceptNetOptions:
    """How the dump's URIs become store concepts.

    Args:
        languages (tuple[str, ...] | None): keep edges whose both ends are in these
            languages (default ``("en",)``); ``None`` keeps every language.
        keep_pos (bool): keep the part-of-speech suffix (``apple/n``): one of ConceptNet's
            letters ``n`` (noun), ``v`` (verb), ``a`` (adjective), ``s`` (satellite adjective),
            ``r`` (adverb); any other first suffix segment is dropped. Default False.
        keep_sense (bool): keep the whole sense suffix (``apple/n/wn/food``). Default False.
        keep_surface (bool): keep ``surfaceText`` for verbalisation. Default False.
        strict (bool): stop at the first malformed line instead of counting it.
    """

    languages: tuple[str, ...] | None = ("en",)
    keep_pos: bool = False
    keep_sense: bool = False
    keep_surface: bool = False
    strict: bool = False

    def __post_init__(self):
        if self.languages is not None:
            if isinstance(self.languages, str):
                self.languages = (self.languages,)
            langs = tuple(dict.fromkeys(l.strip().lower() for l in self.languages))
            if not langs:
                raise ValueError("ConceptNetOptions.languages: expected at least one language code, or None for all")
            for l in langs:
                if not _LANG_RE.match(l):
                    raise ValueError(f"ConceptNetOptions.languages: {l!r} is not a language code like 'en' or 'fr'")
            self.languages = langs

    @property
    def prefix_language(self) -> bool:
        """Concept names carry their language (``fr/pomme``) unless one language is kept."""
        return self.languages is None or len(self.languages) > 1


class _LineParser:
    """Parses one dump line; shared by the fast and the line-by-line paths."""

    def __init__(self, name: str, opts: ConceptNetOptions, stats: IngestStats):
        self.name = name
        self.opts = opts
        self.stats = stats
        self.langs = None if opts.languages is None else frozenset(l.encode() for l in opts.languages)

    def bad(self, lineno: int, reason: str, detail: str) -> None:
        msg = f"{self.name}:{lineno}: {detail}"
        if self.opts.strict:
            raise InputError(msg)
        self.stats.malformed(reason, msg)

    def uri_parts(self, uri: bytes, lineno: int, which: str):
        """``/c/en/apple/n/wn/food`` split in up to 5 parts; None (reported) when the URI is malformed."""
        parts = uri.split(b"/", 4)
        if (len(parts) < 4 or parts[0] or parts[1] != b"c" or not parts[3]
                or not 2 <= len(parts[2]) <= _MAX_LANG or not _LANG_START.match(parts[2])):
            self.bad(lineno, "bad URI", f"expected a concept URI like /c/en/apple in the {which} column, "
                                        f"found {uri[:80].decode('utf-8', 'replace')!r}")
            return None
        c = _CONTROL.search(uri)
        if c is not None:
            self.bad(lineno, "control character", f"control character U+{c.group()[0]:04X} in the {which} URI "
                                                  f"at byte {c.start()}")
            return None
        return parts

    def concept(self, uri: bytes, lineno: int, which: str, parts=None):
        """``/c/en/apple/n/wn/food`` -> ``apple`` (or with suffixes); None when filtered/bad."""
        if parts is None:
            parts = self.uri_parts(uri, lineno, which)
            if parts is None:
                return None
        lang = parts[2]
        if self.langs is not None and lang not in self.langs:
            self.stats.skipped["language"] += 1
            return None
        term = parts[3]
        if len(parts) == 5 and (self.opts.keep_pos or self.opts.keep_sense):
            segs = [x for x in parts[4].split(b"/") if x]
            if not self.opts.keep_sense:
                segs = segs[:1] if segs and segs[0] in _POS_BYTES else []
            if segs:
                term = term + b"/" + b"/".join(segs)
        try:
            text = term.decode("utf-8")
            prefix = lang.decode("utf-8") + "/" if self.opts.prefix_language else ""
        except UnicodeDecodeError as e:
            self.bad(lineno, "invalid UTF-8", f"invalid UTF-8 in the {which} URI at byte {e.start}")
            return None
        if term.translate(None, _PLAIN):
            try:
                text = clean_term(text)
            except UnicodeDecodeError:
                self.bad(lineno, "invalid UTF-8", f"invalid UTF-8 in a percent-escape of the {which} URI")
                return None
            except ValueError as e:
                self.bad(lineno, "control character", f"{e} in the {which} URI")
                return None
            if not text.split("/", 1)[0]:
                self.bad(lineno, "empty concept", f"the {which} URI's term is empty after cleaning")
                return None
        return prefix + text if prefix else text

    def parse(self, line: bytes, lineno: int) -> Assertion | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        parts = line.split(b"\t")
        if lineno == 1 and all(_HEADER_CELL.fullmatch(c.strip()) for c in parts):
            self.stats.skipped["header row"] += 1  # e.g. "uri relation start end info"
            return None
        if len(parts) != 5:
            if not line.strip():
                self.stats.skipped["blank line"] += 1
                return None
            self.bad(lineno, "column count", f"expected 5 tab-separated columns, found {len(parts)}")
            return None
        _edge, rel, start, end, info = parts
        if not rel.startswith(b"/r/") or len(rel) == 3:
            self.bad(lineno, "bad URI", f"expected a relation URI like /r/IsA in column 2, "
                                        f"found {rel[:80].decode('utf-8', 'replace')!r}")
            return None
        c = _CONTROL.search(rel)
        if c is not None:
            self.bad(lineno, "control character", f"control character U+{c.group()[0]:04X} in the relation URI "
                                                  f"at byte {c.start()}")
            return None
        if not start.startswith(b"/c/") or not end.startswith(b"/c/"):
            other = end if start.startswith(b"/c/") else start
            if other.startswith((b"http://", b"https://")):
                self.stats.skipped["non-concept end"] += 1
                return None
        # Both URIs are checked before the language filter looks at either.
        sp = self.uri_parts(start, lineno, "start")
        if sp is None:
            return None
        ep = self.uri_parts(end, lineno, "end")
        if ep is None:
            return None
        if self.langs is not None and (sp[2] not in self.langs or ep[2] not in self.langs):
            self.stats.skipped["language"] += 1
            return None
        # Checked after the skips above, as the block reader skips such lines without this parser.
        if b" " in rel:
            self.bad(lineno, "bad URI", f"a space in the relation URI {rel[:80].decode('utf-8', 'replace')!r}")
            return None
        head = self.concept(start, lineno, "start", sp)
        if head is None:
            return None
        tail = self.concept(end, lineno, "end", ep)
        if tail is None:
            return None
        try:
            meta = _loads(info)
        except _JSONError as e:
            self.bad(lineno, "bad JSON", f"column 5 is not valid JSON ({str(e).splitlines()[0][:80]})")
            return None
        if not isinstance(meta, dict):
            self.bad(lineno, "bad JSON", f"expected a JSON object in column 5, found {type(meta).__name__}")
            return None
        weight = meta.get("weight", 1.0)
        if (isinstance(weight, bool) or not isinstance(weight, (int, float))
                or not -FLOAT32_MAX <= weight <= FLOAT32_MAX):
            self.bad(lineno, "bad weight", f"expected a numeric 'weight' (a finite float32) in the JSON, "
                                           f"found {_json_spelling(weight)[:40]}")
            return None
        surface = meta.get("surfaceText") if self.opts.keep_surface else None
        if surface is not None and not isinstance(surface, str):
            self.stats.skipped[BAD_SURFACE] += 1
        try:
            relation = rel[3:].decode("utf-8")
        except UnicodeDecodeError as e:
            self.bad(lineno, "invalid UTF-8", f"invalid UTF-8 in the relation URI at byte {e.start}")
            return None
        return Assertion(relation, head, tail, float(weight), surface if isinstance(surface, str) else None, lineno)


class _BlockIndex:
    """Per-block line/column positions, computed with numpy in the reader thread.

    ``tabs`` is (lines, 4): the four tab positions of each line; ``ends`` the
    line ends; ``cand`` the indices of the lines the parser must look at: those
    whose start and end URIs carry one of the wanted language prefixes, and
    those that are not clearly well-formed lines of another language (a URI of
    the wrong shape, a control character); ``slow`` flags, per ``cand`` entry,
    the lines that go to the full line parser. ``skipped_language`` and
    ``skipped_external`` count the other lines (well-formed, another language;
    an end that is a URL). ``tabs is None`` when some line has not exactly four
    tabs (the block then goes through the line-by-line parser).
    """

    __slots__ = ("n_lines", "tabs", "ends", "cand", "slow", "skipped_language", "skipped_external")

    def __init__(self, n_lines, tabs=None, ends=None, cand=None, slow=None, skipped_language=0, skipped_external=0):
        self.n_lines, self.tabs, self.ends, self.cand, self.slow = n_lines, tabs, ends, cand, slow
        self.skipped_language, self.skipped_external = skipped_language, skipped_external


_MAX_LANG = 12  # longest language segment accepted in a concept URI


def _prefix_test(p: bytes):
    """(shift, value) such that ``window >> shift == value`` tests a prefix of up to 8 bytes."""
    return np.uint64(64 - 8 * len(p)), np.uint64(int.from_bytes(p, "big"))


def _make_indexer(languages: tuple[str, ...] | None):
    prefixes = [b"/c/" + l.encode() + b"/" for l in languages] if languages is not None else [b"/c/"]
    tests = [_prefix_test(p) for p in prefixes if len(p) <= 8]
    long_prefixes = [p for p in prefixes if len(p) > 8]
    C, R = _prefix_test(b"/c/"), _prefix_test(b"/r/")
    HTTP, HTTPS = _prefix_test(b"http://"), _prefix_test(b"https://")
    u8, slash = np.uint64(0xFF), np.uint64(47)

    def byte(w, k):  # byte k (0-based) of each big-endian 8-byte window
        return (w >> np.uint64(56 - 8 * k)) & u8

    def gather_match(a, pos, p):
        last = len(a) - 1
        m = np.ones(len(pos), dtype=bool)
        for k, c in enumerate(p):
            m &= a[np.minimum(pos + k, last)] == c
        return m

    def concept_shape(a, w, pos, stop):
        """``/c/<lang>/<term>``: lang 2..12 bytes starting with two a-z letters, term non-empty.

        Returns (ok, unsure): ``unsure`` lines (a language longer than 3
        letters) are decided by the line parser.
        """
        b3, b4, b5, b6, b7 = byte(w, 3), byte(w, 4), byte(w, 5), byte(w, 6), byte(w, 7)
        ok = ((w >> C[0]) == C[1]) & (b3 >= 97) & (b3 <= 122) & (b4 >= 97) & (b4 <= 122)
        two, three = b5 == slash, (b5 != slash) & (b6 == slash)
        term_first = np.where(two, b6, b7)
        term_at = pos + np.where(two, 6, 7)
        unsure = ok & ~two & ~three
        ok &= (two | three) & (term_at < stop) & (term_first != slash)
        return ok, unsure

    def index(block: bytes) -> _BlockIndex:
        a = np.frombuffer(block, dtype=np.uint8)
        ctrl = np.flatnonzero(a < 32)  # tabs, newlines and any other control byte
        kind = a[ctrl]
        ends = ctrl[kind == 10]
        tabs = ctrl[kind == 9]
        odd = ctrl[(kind != 9) & (kind != 10)]
        if block.find(b"\x7f") >= 0:
            odd = np.union1d(odd, np.flatnonzero(a == 127))
        if not block.endswith(b"\n"):
            ends = np.append(ends, len(block))
        n = len(ends)
        if len(tabs) != 4 * n or len(block) < 16:
            return _BlockIndex(n)
        if len(odd):
            # A CR right before the line end is a CRLF line end; any other control byte is suspect.
            at_end = np.isin(odd + 1, ends) & (a[odd] == 13)
            odd = odd[~at_end]
        tabs = tabs.reshape(n, 4)
        starts = np.empty(n, dtype=np.int64)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        if not (np.all(tabs[:, 0] >= starts) and np.all(tabs[:, 3] < ends)):
            return _BlockIndex(n)  # some line has too many tabs, another too few
        # Big-endian 8-byte window at any byte (a strided view, no copy); a
        # column starting in the last 8 bytes goes to the line parser.
        n8 = len(block) - 7
        win = np.ndarray(shape=(n8,), dtype=">u8", buffer=block, strides=(1,))
        r_pos, s_pos, e_pos = tabs[:, 0] + 1, tabs[:, 1] + 1, tabs[:, 2] + 1
        near_end = e_pos >= n8
        r_w = win[np.minimum(r_pos, n8 - 1)].astype(np.uint64)
        s_w = win[np.minimum(s_pos, n8 - 1)].astype(np.uint64)
        e_w = win[np.minimum(e_pos, n8 - 1)].astype(np.uint64)
        wanted = np.zeros(n, dtype=bool)
        for sh, v in tests:
            wanted |= ((s_w >> sh) == v)
        w_end = np.zeros(n, dtype=bool)
        for sh, v in tests:
            w_end |= ((e_w >> sh) == v)
        wanted &= w_end
        for p in long_prefixes:
            wanted |= gather_match(a, s_pos, p) & gather_match(a, e_pos, p)
        rel_ok = ((r_w >> R[0]) == R[1]) & (tabs[:, 1] > tabs[:, 0] + 4)
        s_http = ((s_w >> HTTP[0]) == HTTP[1]) | ((s_w >> HTTPS[0]) == HTTPS[1])
        e_http = ((e_w >> HTTP[0]) == HTTP[1]) | ((e_w >> HTTPS[0]) == HTTPS[1])
        s_ok, s_unsure = concept_shape(a, s_w, s_pos, tabs[:, 2])
        e_ok, e_unsure = concept_shape(a, e_w, e_pos, tabs[:, 3])
        # Lines skipped without the parser: a well-formed relation, each end a
        # well-formed concept or a URL, at least one end a URL or not wanted.
        fine = rel_ok & (s_ok | s_http) & (e_ok | e_http) & ~near_end & ~s_unsure & ~e_unsure
        bad_line = None
        if len(odd):
            bad_line = np.zeros(n, dtype=bool)
            bad_line[np.searchsorted(ends, odd)] = True
            fine &= ~bad_line
        external = fine & (s_http | e_http)
        language = fine & ~external & ~wanted
        cand = np.flatnonzero(~(external | language))
        slow = ~fine[cand]
        if bad_line is not None:
            slow |= bad_line[cand]
        return _BlockIndex(n, tabs[cand].tolist(), ends[cand].tolist(), cand.tolist(), slow.tolist(),
                           int(language.sum()), int(external.sum()))

    return index


def iter_assertions(
    src: PathOrFile,
    options: ConceptNetOptions | None = None,
    stats: IngestStats | None = None,
    read_stats: ReadStats | None = None,
    on_block: Callable[[], None] | None = None,
) -> Iterator[list[Assertion]]:
    """Parse a ConceptNet assertions dump, yielding lists of :class:`Assertion` (one per block).

    Args:
        src: path or binary file object; ``.gz`` content is detected by its magic bytes.
        options: language filter and URI normalisation (:class:`ConceptNetOptions`).
        stats: counters to update (lines read, skips by reason, malformed samples).
        read_stats: byte counters for a progress bar.
        on_block: called after each block (progress updates).

    Raises:
        InputError: unreadable input, or a malformed line with ``strict=True``, or a
            file in which no line is a ConceptNet assertion.
    """
    opts = options or ConceptNetOptions()
    stats = stats if stats is not None else IngestStats()
    name = source_name(src)
    stats.source = stats.source or name
    lp = _LineParser(name, opts, stats)
    fast = _fast_parser(lp)
    base = 0  # lines before the current block
    checked_format = False
    for block, idx in iter_blocks(src, read_stats, analyze=_make_indexer(opts.languages)):
        out: list[Assertion] = []
        if idx.tabs is not None:
            # Every line has five columns; parse only the candidate lines.
            fast(block, idx, base, out)
            # Well-formed lines of other languages, and lines whose end is a URL.
            if idx.skipped_language:
                stats.skipped["language"] += idx.skipped_language
            if idx.skipped_external:
                stats.skipped["non-concept end"] += idx.skipped_external
        else:
            lines = block.split(b"\n")
            if block.endswith(b"\n"):
                lines.pop()
            for i, line in enumerate(lines):
                rec = lp.parse(line, base + i + 1)
                if rec is not None:
                    out.append(rec)
        base += idx.n_lines
        stats.lines_read = base
        if not checked_format:
            checked_format = True
            _check_looks_like_conceptnet(block, name, stats)
        stats.records += len(out)
        if out:
            yield out
        if on_block is not None:
            on_block()


def _fast_parser(lp: _LineParser):
    """The hot loop for candidate lines of a well-formed block.

    Handles the common shape (one language, plain JSON weight) inline and hands
    anything unusual to the full line parser, so both paths give the same records.
    """
    opts = lp.opts
    single = opts.languages is not None and len(opts.languages) == 1 and not (opts.keep_pos or opts.keep_sense)
    plen = len(opts.languages[0]) + 4 if single else 0  # len("/c/en/")
    keep_surface = opts.keep_surface
    rel_cache: dict[bytes, str] = {}
    loads = _loads
    errors = _JSONError
    plain = _PLAIN

    def run(block: bytes, idx: _BlockIndex, base: int, out: list) -> None:
        append = out.append
        if not single:
            for i, (t0, _t1, _t2, _t3), le in zip(idx.cand, idx.tabs, idx.ends):
                ls = block.rfind(b"\n", 0, t0) + 1
                rec = lp.parse(block[ls:le], base + i + 1)
                if rec is not None:
                    append(rec)
            return
        for i, (t0, t1, t2, t3), le, slow in zip(idx.cand, idx.tabs, idx.ends, idx.slow):
            if slow:
                ls = block.rfind(b"\n", 0, t0) + 1
                rec = lp.parse(block[ls:le], base + i + 1)
                if rec is not None:
                    append(rec)
                continue
            start = block[t1 + 1 + plen:t2]
            end = block[t2 + 1 + plen:t3]
            j = start.find(b"/")
            if j >= 0:
                start = start[:j]
            j = end.find(b"/")
            if j >= 0:
                end = end[:j]
            rel = rel_cache.get(block[t0 + 1:t1])
            info = block[t3 + 1:le]
            meta = None
            # Terms that need cleaning (upper case, space, %, non-ASCII) go to the full parser.
            if start and end and rel is not None   and not (start + end).translate(None, plain):
                try:
                    meta = loads(info)
                except errors:
                    meta = None
            w = meta.get("weight", 1.0) if type(meta) is dict else None
            if type(w) is not float or not -FLOAT32_MAX <= w <= FLOAT32_MAX:
                # Unusual line (int weight, bad JSON, empty term, new relation, ...):
                # the full parser decides and reports.
                ls = block.rfind(b"\n", 0, t0) + 1
                rec = lp.parse(block[ls:le], base + i + 1)
                if rec is not None:
                    append(rec)
                    rb = block[t0 + 1:t1]
                    if rb.startswith(b"/r/") and len(rb) > 3:
                        rel_cache[rb] = rec.relation
                continue
            try:
                h, t = start.decode(), end.decode()
            except UnicodeDecodeError:
                ls = block.rfind(b"\n", 0, t0) + 1
                lp.parse(block[ls:le], base + i + 1)  # reports the bad bytes
                continue
            surface = meta.get("surfaceText") if keep_surface else None
            if surface is not None and type(surface) is not str:
                lp.stats.skipped[BAD_SURFACE] += 1
            append(Assertion(rel, h, t, w, surface if type(surface) is str else None, base + i + 1))

    return run


def _check_looks_like_conceptnet(block: bytes, name: str, stats: IngestStats) -> None:
    """Refuse a file whose first lines are all malformed (some other CSV)."""
    if stats.n_malformed and stats.n_malformed >= min(stats.lines_read, 1000) * 0.9:
        first = block.split(b"\n", 1)[0][:120].decode("utf-8", "replace")
        raise InputError(
            f"{name}:1: this does not look like a ConceptNet assertions dump: expected 5 tab-separated "
            f"columns (edge URI, /r/ relation, /c/ start, /c/ end, JSON), found {first!r}; "
            f"{stats.n_malformed} of the first {stats.lines_read} lines are malformed"
        )
