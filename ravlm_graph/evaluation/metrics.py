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
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from ravlm_graph.datasets.answers import normalize_answer, vqa_accuracy, vqa_answer_scores

logger = logging.getLogger(__name__)

__all__ = ["breakdown", "exact_match", "multiple_choice_accuracy", "normalize_answer", "soft_score_accuracy",
           "subgraph_coverage", "topk_accuracy", "vqa_accuracy", "vqa_answer_scores"]


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
        k: how many predictions count: an integer >= 1 (a bool is refused).

    Raises:
        TypeError: ``ranked_predictions`` is a str, or ``k`` is not an integer (or is a bool).
        ValueError: ``k`` < 1.
    """
    if isinstance(ranked_predictions, str):
        raise TypeError("topk_accuracy: expected a ranked sequence of predictions, found a str")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"topk_accuracy: expected an integer k >= 1, found {type(k).__name__} {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"topk_accuracy: expected k >= 1, found {k!r}")
    if isinstance(answers, str):
        answers = [answers]
    gold = {normalize_answer(a) for a in answers}
    return 1.0 if any(normalize_answer(p) in gold for p in ranked_predictions[:k]) else 0.0


def multiple_choice_accuracy(predicted_choices: Sequence[int], correct_choices: Sequence[int]) -> float:
    """Fraction of questions whose predicted choice index equals the correct one.

    Args:
        predicted_choices: predicted option index per question (a list, tuple or 1-D array).
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
    if len(correct_choices) == 0:  # not `not correct_choices`: ambiguous for a numpy array
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
