"""Pure-torch graph helpers against torch_geometric.utils / Data / Batch."""

from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch")
pyg_utils = pytest.importorskip("torch_geometric.utils")

from torch_geometric.data import Batch, Data  # noqa: E402

from ravlm_graph.utils.graph import GraphBatch, GraphData, scatter, segment_softmax, to_dense_batch  # noqa: E402


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("dim_size", [None, 9])
def test_scatter_matches(reduce, dim_size):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(20, 3, 2, generator=g)
    index = torch.randint(0, 6, (20,), generator=g)  # slots 6.. (with dim_size 9) get nothing
    torch.testing.assert_close(scatter(src, index, 0, dim_size, reduce),
                               pyg_utils.scatter(src, index, 0, dim_size, reduce))
    src1 = torch.randn(3, 20, generator=g)
    torch.testing.assert_close(scatter(src1, index, 1, dim_size, reduce),
                               pyg_utils.scatter(src1, index, 1, dim_size, reduce))


def test_scatter_empty_and_errors():
    out = scatter(torch.empty(0, 4), torch.empty(0, dtype=torch.long), 0, 3, "mean")
    assert out.shape == (3, 4) and not out.any()
    with pytest.raises(ValueError, match="expected reduce in"):
        scatter(torch.ones(2), torch.zeros(2, dtype=torch.long), reduce="median")
    with pytest.raises(ValueError, match="one-dimensional index, found 2"):
        scatter(torch.ones(2), torch.zeros(1, 2, dtype=torch.long))


def test_segment_softmax_matches():
    g = torch.Generator().manual_seed(1)
    src = 10 * torch.randn(30, 4, generator=g)
    index = torch.randint(0, 7, (30,), generator=g)
    got = segment_softmax(src, index, 9)
    torch.testing.assert_close(got, pyg_utils.softmax(src, index, num_nodes=9))
    sums = scatter(got, index, 0, 9)
    present = torch.bincount(index, minlength=9) > 0
    torch.testing.assert_close(sums[present], torch.ones_like(sums[present]))


@pytest.mark.parametrize("kw", [{}, {"batch_size": 5}, {"max_num_nodes": 2}, {"fill_value": -1.0}])
def test_to_dense_batch_matches(kw):
    g = torch.Generator().manual_seed(2)
    batch = torch.tensor([0, 0, 0, 2, 2, 3])  # graph 1 is empty
    for x in (torch.randn(6, 3, generator=g), torch.arange(6)):
        a, am = to_dense_batch(x, batch, **kw)
        b, bm = pyg_utils.to_dense_batch(x, batch, **kw)
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b)
        assert torch.equal(am, bm)
    out, mask = to_dense_batch(torch.empty(0, 3), torch.empty(0, dtype=torch.long), batch_size=2)
    assert out.shape == (2, 0, 3) and mask.shape == (2, 0)


def _graphs():
    g = torch.Generator().manual_seed(3)
    out = []
    for n, e in ((4, 5), (1, 0), (3, 2)):
        out.append(dict(x=torch.randn(n, 2, generator=g), edge_index=torch.randint(0, n, (2, e), generator=g),
                        edge_type=torch.randint(0, 4, (e,), generator=g), origin=torch.arange(n) % 4,
                        label=torch.tensor(n), names=[f"c{i}" for i in range(n)], num_nodes=n))
    return out


def test_batch_matches_pyg_batch():
    ours = GraphBatch.from_data_list([GraphData(**d) for d in _graphs()])
    theirs = Batch.from_data_list([Data(**d) for d in _graphs()])
    assert ours.num_graphs == theirs.num_graphs == 3 and ours.num_nodes == theirs.num_nodes == 8
    for key in ("x", "edge_index", "edge_type", "origin", "label", "batch", "ptr"):
        assert torch.equal(getattr(ours, key), getattr(theirs, key)), key
    assert ours.names == theirs.names
    # and the PyG batch built from ours
    back = ours.to_pyg()
    assert back.num_graphs == 3 and torch.equal(back.edge_index, theirs.edge_index)
    # PyG Data objects collate too
    mixed = GraphBatch.from_data_list([Data(**d) for d in _graphs()])
    assert torch.equal(mixed.edge_index, theirs.edge_index) and mixed.num_graphs == 3


def test_graph_data_attributes():
    d = GraphData(x=torch.zeros(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]), skipped=None)
    assert d.num_nodes == 3 and d.num_edges == 2 and "skipped" not in d and sorted(d.keys()) == ["edge_index", "x"]
    assert getattr(d, "missing", None) is None
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        d.missing  # noqa: B018
    d.num_nodes = 5
    assert d.num_nodes == 5
    c = d.clone()
    c.x[0, 0] = 1.0
    assert d.x[0, 0] == 0.0 and c.num_nodes == 5
    # lists are copied, nested values deep-copied: a clone never shares what it can change
    g = GraphData(edge_index=torch.tensor([[0], [1]]), node_names=["a", "b"], paths=[["a", "b"]], meta={"k": [1]})
    h = g.clone()
    h.node_names.append("c")
    h.paths[0].append("x")
    h.meta["k"].append(2)
    assert g.node_names == ["a", "b"] and g.paths == [["a", "b"]] and g.meta == {"k": [1]}
    # replace: a shallow copy that shares what it does not replace
    r = d.replace(x=torch.ones(3, 2), extra=torch.zeros(1))
    assert torch.equal(d.x, torch.zeros(3, 2)) and torch.equal(r.x, torch.ones(3, 2))
    assert r.edge_index is d.edge_index and "extra" in r and "extra" not in d and r.num_nodes == 5
    assert "x" not in d.replace(x=None) and "x" in d
    d.x = None
    assert "x" not in d
    p = pickle.loads(pickle.dumps(d))
    assert p.num_nodes == 5 and torch.equal(p.edge_index, d.edge_index)
    data = d.to_pyg()
    assert isinstance(data, Data) and data.num_nodes == 5 and torch.equal(data.edge_index, d.edge_index)
    assert GraphData(edge_index=torch.tensor([[0], [6]])).num_nodes == 7
    assert "GraphData(" in repr(d)
