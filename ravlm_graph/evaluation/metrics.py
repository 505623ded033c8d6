"""Answer metrics for knowledge-VQA: VQA accuracy, top-k, multiple choice, soft scores,
knowledge coverage, and per-group breakdowns.

Answer normalisation follows the official VQA evaluation script (Antol et al. 2015,
``vqaEval.py``): punctuation handling (a comma between digits, the period rule),
number words ``none``/``zero``..``ten`` to digits, articles dropped, and apostrophe-less
contractions restored (``dont`` -> ``don't``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "breakdown",
    "exact_match",
    "multiple_choice_accuracy",
    "normalize_answer",
    "soft_score_accuracy",
    "subgraph_coverage",
    "topk_accuracy",
    "vqa_accuracy",
    "vqa_answer_scores",
]

# Punctuation of the official script; the apostrophe is kept (contractions).
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
          ">", "<", "@", "`", ",", "?", "!")
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its look-behind is malformed (it is a
# look-ahead for the text "<=digit"), so in effect a period is removed unless a digit
# follows it ("2.5" keeps its period, "5." and "mr." lose theirs). Reproduced as is.
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
# The official call passes re.UNICODE (32) as the substitution count.
_PERIOD_MAX_SUBS = 32

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})

# Apostrophe-less forms -> apostrophe forms (the idea of the official table; the
# common entries written out here).
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldntve": "couldn't've", "couldnt've": "couldn't've",
    "couldn'tve": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadntve": "hadn't've", "hadnt've": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hedve": "he'd've", "hed've": "he'd've",
    "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "im": "i'm",
    "ive": "i've", "isnt": "isn't", "itd": "it'd", "itdve": "it'd've", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "lets": "let's", "maam": "ma'am",
    "mightnt": "mightn't", "mightntve": "mightn't've", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock",
    "oughtnt": "oughtn't", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "shes": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldntve": "shouldn't've", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebodyd": "somebody'd", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldntve": "wouldn't've", "wouldnt've": "wouldn't've", "yall": "y'all",
    "youd": "you'd", "youll": "you'll", "youre": "you're", "youve": "you've",
}


def _process_punctuation(text: str) -> str:
    # Official rule: a mark next to a space (or any comma between digits anywhere in
    # the answer) is deleted; otherwise it is replaced by a space ("black/white").
    out = text
    delete_all = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in _PUNCT:
        if delete_all or (p + " ") in text or (" " + p) in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_SUBS)


def _process_digits_articles(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(word)
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(answer: str) -> str:
    """Normalise an answer as the official VQA evaluation does.

    Newlines and tabs become spaces; punctuation is deleted or spaced out; periods not
    followed by a digit are dropped; the text is lower-cased; ``none``/``zero``..``ten``
    become digits; ``a``/``an``/``the`` are removed; contractions get their apostrophe.

    Args:
        answer: a raw answer, e.g. ``"Two dogs."``.

    Returns:
        The normalised answer, e.g. ``"2 dogs"``.
    """
    if not isinstance(answer, str):
        raise TypeError(f"normalize_answer: expected a str, found {type(answer).__name__}")
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_digits_articles(_process_punctuation(text))


def vqa_accuracy(prediction: str, answers: Sequence[str], *, official_unanimous_quirk: bool = False) -> float:
    """VQA accuracy of one prediction against the human answers.

    For each human, the prediction is scored ``min(#other humans who gave it / 3, 1)``
    against the remaining ones; the result is the mean over humans (with 10 answers:
    the 10 leave-one-out subsets of 9). Both sides are normalised with
    :func:`normalize_answer`.

    Args:
        prediction: the predicted answer.
        answers: the human answers (usually 10), raw.
        official_unanimous_quirk: reproduce the official script's skip of normalisation
            when all human answers are identical (then ``"Yes."`` scores 0 against ten
            ``"yes"``). Off by default.

    Returns:
        The accuracy in [0, 1].

    Raises:
        ValueError: ``answers`` is empty.
    """
    if isinstance(answers, str):
        raise TypeError("vqa_accuracy: expected a sequence of answers, found a str")
    if len(answers) == 0:
        raise ValueError("vqa_accuracy: expected at least one human answer, found none")
    gts = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    pred = prediction.replace("\n", " ").replace("\t", " ").strip()
    if not (official_unanimous_quirk and len(set(gts)) == 1):
        gts = [normalize_answer(a) for a in gts]
        pred = normalize_answer(pred)
    matches = sum(1 for a in gts if a == pred)
    total = 0.0
    for a in gts:
        # Leaving out one human who matched removes one match.
        others = matches - (1 if a == pred else 0)
        total += min(1.0, others / 3)
    return total / len(gts)


def vqa_answer_scores(answers: Sequence[str]) -> dict[str, float]:
    """Soft score of every distinct normalised answer: its :func:`vqa_accuracy`.

    Args:
        answers: the human answers (usually 10).

    Returns:
        normalised answer -> VQA accuracy it would get, in first-seen order.
    """
    scores: dict[str, float] = {}
    for a in answers:
        n = normalize_answer(a)
        if n not in scores:
            scores[n] = vqa_accuracy(n, answers)
    return scores


def exact_match(prediction: str, answers: str | Iterable[str]) -> float:
    """1.0 when the normalised prediction equals a normalised answer, else 0.0.

    Args:
        prediction: the predicted answer.
        answers: one answer or several accepted answers.
    """
    if isinstance(answers, str):
        answers = [answers]
    p = normalize_answer(prediction)
    return 1.0 if any(normalize_answer(a) == p for a in answers) else 0.0


def topk_accuracy(ranked_predictions: Sequence[str], answers: str | Iterable[str], k: int) -> float:
    """1.0 when one of the first ``k`` predictions matches an answer (FVQA top-1 / top-3).

    Args:
        ranked_predictions: predictions, best first.
        answers: one answer or several accepted answers.
        k: how many predictions count (>= 1).
    """
    if isinstance(ranked_predictions, str):
        raise TypeError("topk_accuracy: expected a ranked sequence of predictions, found a str")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"topk_accuracy: expected k >= 1, found {k!r}")
    if isinstance(answers, str):
        answers = [answers]
    gold = {normalize_answer(a) for a in answers}
    return 1.0 if any(normalize_answer(p) in gold for p in ranked_predictions[:k]) else 0.0


def multiple_choice_accuracy(predicted_choices: Sequence[int], correct_choices: Sequence[int]) -> float:
    """Fraction of questions whose predicted choice index equals the correct one.

    Args:
        predicted_choices: predicted option index per question.
        correct_choices: correct option index per question (same length).

    Returns:
        The accuracy in [0, 1].

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    if len(predicted_choices) != len(correct_choices):
        raise ValueError(
            f"multiple_choice_accuracy: expected as many predictions as questions, found "
            f"{len(predicted_choices)} predictions for {len(correct_choices)} questions")
    if not correct_choices:
        raise ValueError("multiple_choice_accuracy: expected at least one question, found none")
    return sum(1 for p, c in zip(predicted_choices, correct_choices) if p == c) / len(correct_choices)


def soft_score_accuracy(prediction: str, answer_scores: Mapping[str, float]) -> float:
    """Score of the prediction in a soft-label table (LXMERT format), 0.0 when absent.

    The prediction and the table's keys are compared after :func:`normalize_answer`;
    when several keys normalise alike, the highest score counts.

    Args:
        prediction: the predicted answer.
        answer_scores: answer -> soft score, e.g. ``{"racing": 1, "motocross": 0.667}``.
    """
    p = normalize_answer(prediction)
    best = 0.0
    for answer, score in answer_scores.items():
        if normalize_answer(answer) == p:
            best = max(best, float(score))
    return best


def _concept_key(name: str) -> str:
    return "_".join(name.strip().lower().replace("_", " ").split())


def subgraph_coverage(answer_concepts: Iterable[str], subgraph_node_names: Iterable[str]) -> float:
    """1.0 when at least one answer concept is a node of the retrieved subgraph.

    Names are compared ConceptNet-style (lower case, spaces and underscores alike).

    Args:
        answer_concepts: concepts accepted as the answer (e.g. ``("makeup_cabinet",)``).
        subgraph_node_names: names of the subgraph's nodes.

    Returns:
        1.0 or 0.0; NaN when there is no answer concept (nothing to cover).
    """
    wanted = {_concept_key(a) for a in answer_concepts if a and a.strip()}
    if not wanted:
        return math.nan
    nodes = {_concept_key(n) for n in subgraph_node_names}
    return 1.0 if wanted & nodes else 0.0


def breakdown(records_results: Iterable[Any], key: str | Callable[[Any], Any],
              value: str | Callable[[Any], float] = "score") -> dict[Any, float]:
    """Mean value per group (per relation, per split, ...).

    Args:
        records_results: items to group: mappings, or objects with attributes.
        key: the grouping field name (e.g. ``"relation"``, ``"split"``) or a function
            of the item. An item whose key is a list/tuple counts in each of its groups.
        value: the field name holding the per-item score, or a function of the item.
            NaN values are skipped.

    Returns:
        group -> mean score, groups in first-seen order.

    Raises:
        KeyError: an item lacks the key or value field (naming the item's position).
    """
    def get(item: Any, name: str, pos: int) -> Any:
        if isinstance(item, Mapping):
            if name not in item:
                raise KeyError(f"breakdown: item {pos}: missing field {name!r}")
            return item[name]
        if not hasattr(item, name):
            raise KeyError(f"breakdown: item {pos}: missing field {name!r}")
        return getattr(item, name)

    sums: dict[Any, list[float]] = {}
    for pos, item in enumerate(records_results):
        group = key(item) if callable(key) else get(item, key, pos)
        score = float(value(item) if callable(value) else get(item, value, pos))
        if math.isnan(score):
            continue
        groups = group if isinstance(group, (list, tuple)) else (group,)
        for g in dict.fromkeys(groups):
            acc = sums.setdefault(g, [0.0, 0])
            acc[0] += score
            acc[1] += 1
    return {g: s / n for g, (s, n) in sums.items()}
