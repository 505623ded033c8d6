"""The cheap is-it-English guess that keeps the engine from answering a question it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ravlm_graph.grounding.language import check_question, guess_language, non_english_message

BUILTIN = Path(__file__).resolve().parents[2] / "ravlm_graph" / "data" / "builtin_small"


@pytest.mark.parametrize("question, language", [
    ("Qu'est-ce que c'est, l'objet à gauche ?", "French"),
    ("À quoi sert la chose à gauche ?", "French"),
    ("Est-ce que le couteau coupe le pain ?", "French"),
    ("¿Para qué sirve la cosa de la izquierda?", "Spanish"),
    ("Wofür wird das Ding links benutzt?", "German"),
    ("A cosa serve questo oggetto?", "Italian"),
    ("Waar wordt het ding links voor gebruikt?", "Dutch"),
    ("左边的东西是用来做什么的？", "Chinese/Japanese"),
    ("この物は何に使いますか", "Japanese"),
    ("왼쪽에 있는 것은 무엇에 쓰나요?", "Korean"),
    ("Для чего нужна вещь слева?", "a Cyrillic-script language"),
])
def test_other_languages(question, language):
    g = guess_language(question)
    assert not g.is_english and g.language == language and g.evidence
    msg = non_english_message(question)
    assert msg.startswith(f"the question looks like {language}") and "English questions only" in msg


@pytest.mark.parametrize("question", [
    "What is the thing on the left used for?",
    "Is the café open on Sundays?",                  # a borrowed word
    "Would you order crème brûlée at a restaurant?",
    "What is la carte in a restaurant?",
    "Which object keeps you dry when it rains?",
    "Is it a no?",
    "42?",
    "",
])
def test_english_and_unknown_pass(question):
    assert guess_language(question).is_english
    assert non_english_message(question) is None


def test_no_built_in_question_is_flagged():
    qs = [json.loads(line)["question"] for split in ("train", "test_iid", "test_other_style")
          for line in (BUILTIN / f"{split}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(qs) > 1000
    assert [q for q in qs if not guess_language(q).is_english] == []


@pytest.mark.parametrize("question, found", [("???", "no words"), ("🍎?", "no words"), ("... !", "no words")])
def test_a_question_without_words_gets_a_message(question, found):
    assert found in non_english_message(question)


def test_check_question_reads_line_breaks_as_spaces_and_refuses_control_characters():
    assert check_question("What is\non the\tleft?\u2028") == "What is on the left? "
    for bad, code in (("What\x1b[2J is it?", "U+001B"), ("What is\x07 it?", "U+0007"), ("\x00What?", "U+0000")):
        with pytest.raises(ValueError, match=code.replace("+", r"\+")):
            check_question(bad, "--question")
