"""Is a question English? A cheap guess, so that a question the engine cannot read gets a
clear message instead of a confident answer.

The engine's text side (tokenizer, concept linker, ConceptNet's English concepts) reads
English only. :func:`guess_language` looks at two things, no model and no dependency:

* the script of the letters: mostly CJK, Cyrillic, Arabic, Greek, Hebrew, Devanagari,
  Hangul, Thai or kana letters is not English;
* for Latin-script text, common function words of a few European languages and French
  elisions (``l'objet``, ``qu'est``), against English function words. The word lists
  hold only words that are not also English words (no "a", "on", "son", "pour").

>>> guess_language("Qu'est-ce que c'est, l'objet à gauche ?").language
'French'
>>> guess_language("What is the thing on the left used for?").language
'English'
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

__all__ = ["LanguageGuess", "guess_language", "non_english_message", "check_question", "InputWarning"]

_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "French": frozenset("""le la les une des du et est sont que qui quoi où quel quelle quels quelles dans sur
        avec pas ce cette ces il elle ils elles nous vous je tu au aux être peut faire fait utilise utilisé
        objet chose côté gauche droite haut bas milieu""".split()),
    "Spanish": frozenset("""el los las una unos unas del y es son que qué quién dónde cuál cómo para por este esta
        estos se objeto cosa izquierda derecha arriba abajo usa sirve puede""".split()),
    "German": frozenset("""der die das ein eine einen und ist sind was wer wo wie welche welcher welches nicht
        für auf ich sie es wir ihr dem des zu ding links rechts oben unten kann wird benutzt""".split()),
    "Italian": frozenset("""il gli della delle degli che chi cosa quale è sono questo questa nel sinistra destra
        oggetto usato serve può""".split()),
    "Portuguese": frozenset("""os um uma da das dos é são quem onde qual não coisa esquerda direita usado serve
        pode está""".split()),
    "Dutch": frozenset("""het een en zijn wat wie waar welke niet voor dit deze ding links rechts gebruikt kan
        wordt""".split()),
}
# English function words and question words (the common ones; enough to outvote a
# borrowed foreign word such as "café" or "la" in "la carte").
_ENGLISH = frozenset("""the a an is are was were be been do does did what which who whom whose where when why how
    this that these those it its of in on at to for with from by and or not can could would should will you your
    there here thing object item picture image used use kind type something someone made have has""".split())
# Scripts by the first word of a letter's Unicode name.
_SCRIPTS = {"CJK": "Chinese/Japanese", "HIRAGANA": "Japanese", "KATAKANA": "Japanese", "HANGUL": "Korean",
            "CYRILLIC": "a Cyrillic-script language", "ARABIC": "Arabic", "HEBREW": "Hebrew", "GREEK": "Greek",
            "DEVANAGARI": "Hindi", "THAI": "Thai", "BENGALI": "Bengali", "TAMIL": "Tamil",
            "ARMENIAN": "Armenian", "GEORGIAN": "Georgian", "ETHIOPIC": "Amharic"}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_ELISION = re.compile(r"\b(?:l|d|qu|j|n|c)['’][aeiouhéèêàâîôûœ]", re.IGNORECASE)


@dataclass(frozen=True)
class LanguageGuess:
    """The guess: ``language`` (``"English"``, ``"French"``, ...; ``"unknown"`` when no
    word says), whether it ``is_english`` (unknown counts as English), and the
    ``evidence`` (the words or script it rests on)."""

    language: str
    is_english: bool
    evidence: tuple[str, ...] = ()


def _script_of(ch: str) -> str | None:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    first = name.split(" ", 1)[0]
    return first


def guess_language(text: str) -> LanguageGuess:
    """Guess the language of a question (see the module docstring for how)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return LanguageGuess("unknown", True)
    scripts: dict[str, int] = {}
    for c in letters:
        s = _script_of(c)
        if s is not None and s != "LATIN":
            scripts[s] = scripts.get(s, 0) + 1
    other = sum(scripts.values())
    if other / len(letters) > 0.3:
        top = max(scripts, key=scripts.get)
        lang = _SCRIPTS.get(top, f"a {top.title()}-script language")
        return LanguageGuess(lang, False, tuple(sorted({c for c in text if _script_of(c) == top}))[:5])
    words = [w.lower() for w in _WORD.findall(text)]
    english = [w for w in words if w in _ENGLISH]
    best, hits = "unknown", []
    for lang, vocab in _FUNCTION_WORDS.items():
        h = [w for w in words if w in vocab]
        if lang == "French":
            h += [m.group(0)[:-1] for m in _ELISION.finditer(text)]
        if len(h) > len(hits):
            best, hits = lang, h
    if len(hits) >= 2 and len(hits) > len(english):
        return LanguageGuess(best, False, tuple(dict.fromkeys(hits)))
    if english:
        return LanguageGuess("English", True, tuple(dict.fromkeys(english)))
    return LanguageGuess("unknown", True)


def non_english_message(text: str) -> str | None:
    """A message when ``text`` does not look English (or has no word at all), else None."""
    if text.strip() and not any(ch.isalnum() for ch in text):
        return (f"the question has no words (no letter or digit): {text[:60]!r}; the engine reads English "
                f"questions and its answer would not be meaningful")
    g = guess_language(text)
    if g.is_english:
        return None
    shown = ", ".join(repr(e) for e in g.evidence[:5])
    return (f"the question looks like {g.language} ({shown}); this engine reads English questions only "
            f"and its answer would not be meaningful: {text[:60]!r}")


class InputWarning(UserWarning):
    """Something about a question or its entities the engine can work with, but that the
    user should know (a non-English question, an entity unknown to the graph)."""


# Line breaks and tabs inside a question are read as spaces; any other control character
# (a terminal escape, a bell) is refused: it would be echoed raw and breaks word matching.
_SPACES = re.compile("[\t\n\r\x0b\x0c\x1c-\x1f\x85\u2028\u2029]")


def check_question(question: Any, where: str = "question") -> str:
    """A question as the engine takes it: a non-blank str (TypeError / ValueError else).

    Tabs and line breaks become spaces; other control characters (Unicode category Cc,
    e.g. a terminal escape sequence) raise ValueError naming the first one.
    """
    if not isinstance(question, str):
        raise TypeError(f"{where}: expected the question as a str, found {type(question).__name__}")
    question = _SPACES.sub(" ", question)
    if not question.strip():
        raise ValueError(f"{where} is empty: expected a question, found {question!r}")
    for i, ch in enumerate(question):
        if unicodedata.category(ch) == "Cc":
            raise ValueError(f"{where}: contains a control character (U+{ord(ch):04X} at position {i}); "
                             f"expected plain text, found {question[:60]!r}")
    return question
