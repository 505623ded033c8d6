"""Evaluation metrics for knowledge-VQA and commonsense QA."""

from ravlm_graph.evaluation.metrics import breakdown, exact_match, multiple_choice_accuracy, soft_score_accuracy, subgraph_coverage, topk_accuracy, vqa_accuracy
from ravlm_graph.datasets.answers import normalize_answer, vqa_answer_scores

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
