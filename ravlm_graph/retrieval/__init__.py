"""Subgraph retrieval: seed concepts -> a pruned, scored :class:`Subgraph`."""

from ravlm_graph.retrieval.config import RETRIEVAL_METHODS, RetrievalConfig
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.retrieval.subgraph import ReasoningPath, Subgraph

__all__ = ["RETRIEVAL_METHODS", "ReasoningPath", "RetrievalConfig", "Subgraph", "SubgraphRetriever"]
