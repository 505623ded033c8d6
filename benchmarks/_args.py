"""Argument checks shared by the benchmark scripts: each refuses a bad value at parse time.

The ``type=`` helpers raise :class:`argparse.ArgumentTypeError`, so argparse prints one
``error:`` line (exit status 2) before any work starts. The ``check_*`` helpers are for
checks that need several arguments at once; they call ``parser.error``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _number(kind, text: str):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, found {text!r}") from None
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, found {text!r}")
    return v


def _bounded(kind, ok, expected: str, name: str):
    """An argparse ``type=``: a ``kind`` number for which ``ok(v)`` holds, else "expected ..."."""
    def parse(text: str):
        v = _number(kind, text)
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}")
        return v
    parse.__name__ = name
    return parse


positive_int = _bounded(int, lambda v: v >= 1, "an integer >= 1", "positive_int")
nonneg_int = _bounded(int, lambda v: v >= 0, "an integer >= 0", "nonneg_int")
positive_float = _bounded(float, lambda v: v > 0, "a number > 0", "positive_float")
nonneg_float = _bounded(float, lambda v: v >= 0, "a number >= 0", "nonneg_float")


def fraction(text: str) -> float:
    """A number in (0, 1]: a share of the full ConceptNet dump."""
    v = _number(float, text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], found {text!r}")
    return v


def probability(text: str) -> float:
    v = _number(float, text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], found {text!r}")
    return v


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    return text


def store_dir(text: str) -> str:
    """A kg_ingest store folder (one holding ``meta.json``)."""
    existing_dir(text)
    if not (Path(text) / "meta.json").is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a KG store (no meta.json)")
    return text


def output_file(text: str) -> str:
    """A file to write: its folder must exist and it must not be a folder itself."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file path")
    if not p.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: folder {p.parent} does not exist")
    return text


def json_value(text: str):
    """Any JSON value, or an argparse error naming what is wrong with the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None


def json_object(text: str) -> dict:
    v = json_value(text)
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, found {text!r}")
    return v


def check_files(parser: argparse.ArgumentParser, *paths: Path, what: str = "") -> None:
    """``parser.error`` naming the first of ``paths`` that is not a file."""
    for p in paths:
        if not Path(p).is_file():
            parser.error(f"{p}: no such file{' (' + what + ')' if what else ''}")


def one_line(e: BaseException) -> str:
    """An exception's message on one line (for ``parser.error``)."""
    return " ".join(str(e).split())
