"""Plain triple files: CN-100K (``Relation \\t head \\t tail [\\t weight]``), FVQA facts, TSV.

Column order is configurable (``order="rht"`` for relation-head-tail, the
CN-100K and FVQA layout; ``"hrt"`` for head-relation-tail). Concept names
are normalised to ConceptNet terms (``"rest area"`` -> ``rest_area``). A first
line naming the columns (``relation head tail``) is recognised and skipped.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Iterator
from urllib.parse import unquote

from ._io import InputError, PathOrFile, ReadStats, iter_lines, source_name
from .conceptnet import FLOAT32_MAX
from .records import Assertion, IngestStats
from .relations import is_conceptnet_relation
from .store import normalize_concept

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab separates columns
_HEADER_WORDS = {"relation", "rel", "predicate", "head", "tail", "subject", "object", "weight", "h", "r", "t"}


def _concept(text: str) -> str:
    """A triple file's concept column: free text, or a ConceptNet URI (``/c/en/ice_cream/n``) -> ``ice_cream``."""
    t = text.strip()
    if t.startswith("/c/"):
        parts = t.split("/")
        t = unquote(parts[3]) if len(parts) > 3 else ""
    return normalize_concept(t)


def _check_order(rows: list, order: str, name: str) -> None:
    """Refuse a file whose relation column holds concepts while another column holds relation names."""
    ri = order.index("r")
    known = [sum(is_conceptnet_relation(r[j]) for r in rows) for j in range(3)]
    if known[ri] * 2 >= len(rows):
        return
    j = max((k for k in range(3) if k != ri), key=lambda k: known[k])
    if known[j] * 2 < len(rows):
        return
    right = list(order)
    right[ri], right[j] = right[j], right[ri]
    ex_rel = next(r[ri] for r in rows if not is_conceptnet_relation(r[ri]))
    ex_known = next(r[j] for r in rows if is_conceptnet_relation(r[j]))
    raise InputError(f"{name}: with --order {order} column {ri + 1} is the relation, but it holds concepts "
                     f"({ex_rel.strip()[:40]!r}) while column {j + 1} holds ConceptNet relation names "
                     f"({ex_known.strip()[:40]!r}) in {known[j]} of the first {len(rows)} rows; "
                     f"pass --order {''.join(right)}")


def iter_triples(
    src: PathOrFile,
    order: str = "rht",
    stats: IngestStats | None = None,
    read_stats: ReadStats | None = None,
    strict: bool = False,
    on_block: Callable[[], None] | None = None,
    batch_size: int = 50_000,
) -> Iterator[list[Assertion]]:
    """Parse a tab-separated triple file, yielding lists of :class:`Assertion`.

    Args:
        src: path or binary file object (``.gz`` detected).
        order: ``"rht"`` or ``"hrt"``: where the relation, head and tail columns are.
        strict: raise on the first malformed line instead of counting it.
        batch_size: records per yielded list.

    Raises:
        InputError: unreadable input; a malformed line when ``strict``; a file with no valid line.
    """
    if sorted(order) != ["h", "r", "t"]:
        raise ValueError(f"order: expected a permutation of 'rht' such as 'rht' or 'hrt', found {order!r}")
    ri, hi, ti = order.index("r"), order.index("h"), order.index("t")
    stats = stats if stats is not None else IngestStats()
    name = source_name(src)
    stats.source = stats.source or name
    batch: list[Assertion] = []

    def bad(lineno, reason, detail):
        msg = f"{name}:{lineno}: {detail}"
        if strict:
            raise InputError(msg)
        stats.malformed(reason, msg)

    n = 0
    order_check: list | None = []  # the first rows' columns, to catch a wrong --order
    for lineno, raw in iter_lines(src, read_stats):
        n = lineno
        stats.lines_read = lineno
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad(lineno, "invalid UTF-8", f"invalid UTF-8 at byte {e.start}")
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        c = _CONTROL.search(line)
        if c is not None:
            col = line.count("\t", 0, c.start()) + 1
            bad(lineno, "control character", f"control character U+{ord(c.group()):04X} in column {col}")
            continue
        cols = line.split("\t")
        if len(cols) not in (3, 4):
            if lineno == 1 and len(cols) == 1 and ("," in line or " " in line.strip()):
                raise InputError(f"{name}:1: expected tab-separated columns (relation, head, tail[, weight]), "
                                 f"found {line[:80]!r}")
            bad(lineno, "column count", f"expected 3 or 4 tab-separated columns (relation, head, tail[, weight]), "
                                        f"found {len(cols)}")
            continue
        if lineno == 1 and {c.strip().lower() for c in cols} <= _HEADER_WORDS:
            stats.skipped["header row"] += 1
            continue
        rel, head, tail = cols[ri].strip(), _concept(cols[hi]), _concept(cols[ti])
        if not rel:
            bad(lineno, "empty relation", f"the relation column {cols[ri]!r} is empty")
            continue
        if not head or not tail:
            which, raw_val = ("head", cols[hi]) if not head else ("tail", cols[ti])
            bad(lineno, "empty concept", f"the {which} column {raw_val!r} is empty after normalisation")
            continue
        if order_check is not None:
            order_check.append(cols[:3])
            if len(order_check) >= 1000:
                _check_order(order_check, order, name)
                order_check = None
        w = 1.0
        if len(cols) == 4:
            try:
                w = float(cols[3])
            except ValueError:
                bad(lineno, "bad weight", f"expected a number in the weight column, found {cols[3][:40]!r}")
                continue
            if not math.isfinite(w) or abs(w) > FLOAT32_MAX:
                bad(lineno, "bad weight", f"expected a finite weight, found {cols[3][:40]!r}")
                continue
        batch.append(Assertion(rel, head, tail, w, None, lineno))
        if len(batch) >= batch_size and order_check is None:
            stats.records += len(batch)
            yield batch
            batch = []
            if on_block is not None:
                on_block()
    if order_check:
        _check_order(order_check, order, name)
    if batch:
        stats.records += len(batch)
        yield batch
    if on_block is not None:
        on_block()
    if n and stats.records == 0 and stats.n_malformed:
        raise InputError(f"{name}: no valid triple in {n} lines; first problem: {stats.malformed_samples[0]}")
