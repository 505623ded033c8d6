"""Answer metrics for knowledge-VQA: VQA accuracy, top-k, multiple choice, soft scores,
knowledge coverage, and per-group breakdowns.

Answer normalisation follows the official VQA evaluation script (Antol et al. 2015,
``vqaEval.py``): punctuation handling (a comma between digits, the period rule),
number words ``none``/``zero``..``ten`` to digits, articles dropped, and apostrophe-less
contractions restored (``dont`` -> ``don't``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
