"""Subgraph retrieval: seed concepts -> a pruned, scored :class:`Subgraph`."""

from ravlm_graph.retrieval.config import RETRIEVAL_METHODS, RetrievalConfig
from ravlm_graph.retrieval.methods import METHODS, RetrievalMethod
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.retrieval.subgraph import ReasoningPath, Subgraph

__all__ = ["METHODS", "RETRIEVAL_METHODS", "ReasoningPath", "RetrievalConfig", "RetrievalMethod", "Subgraph",
           "SubgraphRetriever"]
