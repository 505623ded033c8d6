"""Runner helpers: coverage of the answer by subgraph budget."""

from types import SimpleNamespace

from ravlm_graph.evaluation.bench import coverage_by_budget


class FakeRetriever:
    """Returns the first ``budget`` names of a fixed ranking, and records the seeds it got."""

    def __init__(self, ranking):
        self.ranking = ranking
        self.calls = []

    def retrieve(self, entities, question, budget):
        self.calls.append(([(e.concept, e.origin, e.box) for e in entities], question, budget))
        return SimpleNamespace(node_names=self.ranking[:budget])


def test_coverage_grows_with_budget_and_uses_the_rows_image_entities():
    r = FakeRetriever(["knife", "bread", "cut", "kitchen", "fork"])
    rows = [
        {"question": "q1", "answers": ["cut"], "entities": [
            {"concept": "knife", "origin": "image", "score": 0.9, "box": [0, 0, 4, 4], "label": "left"},
            {"concept": "use", "origin": "question", "score": 1.0, "box": None}]},
        {"question": "q2", "answers": ["fork", "spoon"], "entities": []},
        {"question": "q3", "answers": ["yes"], "entities": []},
        {"question": "q4", "answers": ["sky"], "entities": []},
    ]
    cov = coverage_by_budget(r, rows, budgets=(2, 3, 5), progress=False)
    assert cov == {"2": 0.25, "3": 0.5, "5": 0.75}  # yes/no always covered; "sky" never
    seeds, question, budget = r.calls[0]
    assert seeds == [("knife", "image", (0, 0, 4, 4))] and question == "q1" and budget == 2
    assert len(r.calls) == 3 * 3  # the yes/no question needs no retrieval


def test_results_table_reports_unknown_relations():
    from ravlm_graph.evaluation.bench import results_table

    m = {"n": 10, "accuracy": 0.5, "top3": 0.7, "coverage": 0.9,
         "unknown_relations": {"conservation_status": 2, "capital_of": 1}, "n_unknown_relation": 3}
    table = results_table({"fvqa": m, "_meta": {}}, "FVQA")
    assert "| fvqa | 10 | 50.0 | 70.0 | 90.0 |" in table
    assert ("- fvqa: 3 questions with a relation the loader does not know "
            "(conservation_status x2, capital_of x1); evaluated all the same") in table
    clean = results_table({"fvqa": {**m, "unknown_relations": {}, "n_unknown_relation": 0}}, "FVQA")
    assert "does not know" not in clean
