"""open_kg takes a store folder as a str or a pathlib.Path; other types are a TypeError."""

from pathlib import Path

import pytest

from kg_ingest import KnowledgeGraph
from ravlm_graph.kg import open_kg


def test_open_kg_accepts_a_path(tmp_path):
    KnowledgeGraph.from_arrays(["a", "b"], ["IsA"], [0], [1], [0], [1.0]).save(tmp_path / "s")
    for spec in (tmp_path / "s", str(tmp_path / "s")):
        kg = open_kg(spec)
        assert kg.num_nodes == 2 and kg.path == Path(tmp_path / "s")


@pytest.mark.parametrize("spec", [None, 5, b"bundled:cn100k", ["bundled:cn100k"]])
def test_open_kg_refuses_other_types(spec):
    with pytest.raises(TypeError, match="spec: expected 'bundled:<name>' or a store folder"):
        open_kg(spec)
