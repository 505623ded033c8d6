"""The CommonsenseQA choice scorer, with and without a QA-GNN-style graph module."""

from ravlm_graph.models.csqa.configuration import VARIANTS, CSQAConfig
from ravlm_graph.models.csqa.modeling import ChoiceScorer

__all__ = ["CSQAConfig", "ChoiceScorer", "VARIANTS"]
