"""Checks of the benchmark commands' options, made before anything heavy loads."""

from __future__ import annotations

from pathlib import Path


def check_out_dir(out: str | Path, option: str = "out") -> Path:
    """``out`` as a folder to write results into (created later if needed), checked before any work:
    it, or the nearest of its parents that exists, must be a folder.

    Raises:
        ValueError: ``out`` or one of its parents is a file.
    """
    p = Path(out)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                what = "is a file" if q == p else f"is inside {q}, a file"
                raise ValueError(f"{option}: expected a folder (created if needed), but {p} {what}")
            break
    return p


def check_limit(limit: int | None, option: str = "limit") -> int | None:
    """``limit`` (questions to evaluate): None or an integer >= 1."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"{option}: expected an integer >= 1, found {limit!r}")
    return limit

