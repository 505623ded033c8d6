"""The built-in knowledge-VQA model: a MiniLM trunk reading graph and image tokens, a pointer answer head."""

from ravlm_graph.models.knowledge_vqa.configuration import FUSIONS, KnowledgeVQAConfig
from ravlm_graph.models.knowledge_vqa.modeling import KnowledgeVQAModel, KnowledgeVQAOutput, VQABatch, answer_distribution
from ravlm_graph.models.knowledge_vqa.processing import Example, FeatureBuilder, collate

__all__ = ["Example", "FUSIONS", "FeatureBuilder", "KnowledgeVQAConfig", "KnowledgeVQAModel", "KnowledgeVQAOutput",
           "VQABatch", "answer_distribution", "collate"]
