"""Retrieval methods come from a registry: a new method is one class and one register line."""

import numpy as np
import pytest

from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.retrieval.methods import METHODS, RetrievalMethod, ScoringInputs
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from tests.test_retrieval import TRIPLES, make_kg


def test_registered_methods_and_what_they_need():
    assert set(METHODS) == {"khop", "relevance", "ppr", "hybrid", "pcst"}
    needs = {n for n in METHODS if METHODS.get(n).needs_question}
    assert needs == {"relevance", "hybrid", "pcst"}
    assert [n for n in METHODS if METHODS.get(n).prize_collecting] == ["pcst"]
    x = ScoringInputs(closeness=np.array([1.0, 0.85, 0.7]), relevance=np.array([0.1, 0.9, 0.5]),
                      ppr=lambda: np.array([0.5, 0.3, 0.2]), relevance_weight=0.5)
    assert METHODS.get("khop").score(x)[0].tolist() == [1.0, 0.85, 0.7]
    hybrid, parts = METHODS.get("hybrid").score(x)
    assert set(parts) == {"relevance", "ppr"} and hybrid.shape == (3,)
    with pytest.raises(ValueError, match=r"RetrievalConfig.method: expected one of \(.*'pcst'.*\), found 'bfs'"):
        RetrievalConfig(method="bfs")


class FarFirst(RetrievalMethod):
    """Farthest from the seeds first (a test method)."""

    @staticmethod
    def score(x):
        return 1.0 - x.closeness, {}


def test_a_new_method_is_one_registry_line():
    METHODS.register("far_first", FarFirst)
    try:
        kg = make_kg(TRIPLES)
        r = SubgraphRetriever(kg, RetrievalConfig(method="far_first", budget=3, connect=False))
        sg = r.retrieve(["apple"])
        near = SubgraphRetriever(kg, RetrievalConfig(method="khop", budget=3, connect=False)).retrieve(["apple"])
        assert sg.info["method"] == "far_first" and sg.num_nodes == 3
        assert set(sg.node_names) != set(near.node_names)  # two-hop nodes instead of neighbours
    finally:
        METHODS.unregister("far_first")
    with pytest.raises(ValueError, match="expected method in"):
        SubgraphRetriever(make_kg(TRIPLES)).retrieve(["apple"], method="far_first")
