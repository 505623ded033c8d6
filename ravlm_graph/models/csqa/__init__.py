"""The CommonsenseQA scorer: a fine-tuned cross-encoder, with or without a QA-GNN-style graph module."""

from ravlm_graph.models.csqa.configuration import VARIANTS, CSQAConfig
from ravlm_graph.models.csqa.modeling import CSQAModel, CSQAOutput
from ravlm_graph.models.csqa.processing import CSQABatch, CSQAExamples

__all__ = ["CSQABatch", "CSQAConfig", "CSQAExamples", "CSQAModel", "CSQAOutput", "VARIANTS"]
