"""Words of a question with their character offsets, split into clauses at punctuation.

The one tokeniser of question text: the concept linker (:mod:`.text`) and the spatial
reference parser (:mod:`.spatial`) read the same tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Token", "tokenize"]

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*")
_BREAK = re.compile(r"[.,;:!?()\[\]{}\"/]")


@dataclass(frozen=True)
class Token:
    """A word of the input: ``text`` (as written), ``norm`` (lower case, no ``'s``),
    ``start``/``end`` character offsets, and ``sentence`` (clause index: matches never
    cross punctuation)."""

    text: str
    norm: str
    start: int
    end: int
    clause: int


def tokenize(text: str) -> list[Token]:
    """Words with character offsets; clauses are separated by punctuation."""
    out: list[Token] = []
    clause = 0
    pos = 0
    for m in _TOKEN.finditer(text):
        if _BREAK.search(text, pos, m.start()):
            clause += 1
        pos = m.end()
        w = m.group(0)
        norm = w.lower().replace("’", "'")
        if norm.endswith("'s") and len(norm) > 2:
            norm = norm[:-2]
        elif norm.endswith("s'"):
            norm = norm[:-1]
        out.append(Token(w, norm, m.start(), m.end(), clause))
    return out
