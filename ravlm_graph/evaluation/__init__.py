"""Evaluation metrics for knowledge-VQA and commonsense QA."""

from .metrics import (
    breakdown,
    exact_match,
    multiple_choice_accuracy,
    normalize_answer,
    soft_score_accuracy,
    subgraph_coverage,
    topk_accuracy,
    vqa_accuracy,
    vqa_answer_scores,
)

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
