"""Subgraph.paths / facts / verbalize arguments: numpy integers are indices, bools and negative
counts are refused, ``max_paths=0`` gives no path."""

import numpy as np
import pytest

from ravlm_graph.retrieval.subgraph import Subgraph


@pytest.fixture
def sg():
    """knife -UsedFor-> cut, knife -AtLocation-> kitchen, kitchen -PartOf-> house; seed: knife."""
    names = ["knife", "cut", "kitchen", "house"]
    s = Subgraph(edge_index=np.array([[0, 0, 2], [1, 2, 3]], dtype=np.int64),
                 edge_type=np.array([0, 1, 2], dtype=np.int64), edge_weight=np.ones(3, dtype=np.float32),
                 node_id=np.arange(4, dtype=np.int64), node_relevance=np.array([1, .5, .9, .8], dtype=np.float32),
                 edge_relevance=np.array([.3, .9, .6], dtype=np.float32),
                 seed_mask=np.array([1, 0, 0, 0], dtype=bool), origin=np.array([1, 0, 0, 0], dtype=np.int64))
    s.num_nodes = 4
    s.node_names = names
    s.relation_names = ["UsedFor", "AtLocation", "PartOf"]
    return s


def test_paths_accepts_numpy_integer_indices(sg):
    want = [str(p) for p in sg.paths("house")]
    assert want == ["knife --AtLocation--> kitchen --PartOf--> house"]
    for t in (3, np.int64(3), np.int32(3), np.uint8(3)):
        assert [str(p) for p in sg.paths(t)] == want


@pytest.mark.parametrize("target", [True, False, np.bool_(True), 3.0, None, b"house"])
def test_paths_refuses_bools_and_other_types(sg, target):
    with pytest.raises(TypeError, match="target: expected a node name"):
        sg.paths(target)


def test_paths_max_paths_zero_gives_none(sg):
    assert sg.paths("knife", max_paths=0) == []
    assert sg.paths("house", max_paths=0) == []
    assert [str(p) for p in sg.paths("knife", max_paths=1)] == ["knife"]


@pytest.mark.parametrize("kw, exc", [({"max_paths": -1}, ValueError), ({"max_len": -1}, ValueError),
                                     ({"max_paths": 1.5}, TypeError), ({"max_len": True}, TypeError)])
def test_paths_refuses_bad_counts(sg, kw, exc):
    with pytest.raises(exc, match=next(iter(kw))):
        sg.paths("house", **kw)


@pytest.mark.parametrize("n, exc", [(-1, ValueError), (-2, ValueError), (1.0, TypeError), (True, TypeError)])
def test_facts_and_verbalize_refuse_negative_or_non_integer_counts(sg, n, exc):
    with pytest.raises(exc, match="max_facts"):
        sg.facts(n)
    with pytest.raises(exc, match="max_facts"):
        sg.verbalize(n)


def test_facts_counts(sg):
    assert [f.relation for f in sg.facts()] == ["AtLocation", "PartOf", "UsedFor"]
    assert [f.relation for f in sg.facts(np.int64(1))] == ["AtLocation"]
    assert sg.facts(0) == [] and sg.verbalize(0) == []
    assert len(sg.verbalize(None)) == 3


def test_index_of_wants_a_name(sg):
    with pytest.raises(TypeError, match="concept: expected a node name"):
        sg.index_of(None)


def test_facts_about_given_names_come_first():
    import numpy as np

    from ravlm_graph.retrieval.subgraph import Subgraph

    sg = Subgraph(edge_index=np.array([[1, 2, 2], [0, 3, 4]]), edge_type=np.array([0, 1, 2]),
                  edge_relevance=np.array([0.9, 0.5, 0.4]), node_names=["use_for", "hill", "knife", "cut", "weapon"],
                  relation_names=["CapableOf", "UsedFor", "IsA"])
    assert [f.head for f in sg.facts()] == ["hill", "knife", "knife"]
    got = sg.facts(about={"knife"})
    assert [(f.head, f.tail) for f in got] == [("knife", "cut"), ("knife", "weapon"), ("hill", "use_for")]
    assert [(f.head, f.tail) for f in sg.facts(max_facts=1, about="cut")] == [("knife", "cut")]
