"""GraphEncoder: shapes, equivariance, relations, empty graphs, batching, reproducibility."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from torch_geometric.data import Batch, Data  # noqa: E402

from ravlm_graph.nn.gnn import GNN_KINDS, GNNConfig, GraphEncoder, GraphEncoderOutput  # noqa: E402

IN, H, R = 16, 32, 5



def _config(kind: str, **kw) -> GNNConfig:
    base = dict(kind=kind, in_dim=IN, hidden_dim=H, num_layers=2, num_relations=R, heads=4, dropout=0.0)
    base.update(kw)
    return GNNConfig(**base)


def _encoder(kind: str, seed: int = 0, **kw) -> GraphEncoder:
    torch.manual_seed(seed)
    return GraphEncoder(_config(kind, **kw)).eval()


def _graph(seed: int = 0, n: int = 6) -> Data:
    """A 6-node graph: a ring plus two chords, three relation types."""
    g = torch.Generator().manual_seed(seed)
    src = list(range(n)) + [0, 2]
    dst = [(i + 1) % n for i in range(n)] + [3 % n, 5 % n]
    return Data(x=torch.randn(n, IN, generator=g),
                edge_index=torch.tensor([src, dst]),
                edge_type=torch.tensor([i % 3 for i in range(len(src))]),
                origin=torch.tensor([1, 2, 3, 0, 0, 0][:n]),
                node_relevance=torch.rand(n, generator=g))


def _empty() -> Data:
    return Data(x=torch.empty(0, IN), edge_index=torch.empty(2, 0, dtype=torch.long),
                edge_type=torch.empty(0, dtype=torch.long), origin=torch.empty(0, dtype=torch.long),
                node_relevance=torch.empty(0))


@pytest.fixture(params=GNN_KINDS)
def kind(request):
    return request.param


@torch.no_grad()
def test_output_shapes_and_dtypes(kind):
    out = _encoder(kind)(_graph())
    assert isinstance(out, GraphEncoderOutput)
    assert out.node_states.shape == (6, H) and out.node_states.dtype == torch.float32
    assert out.graph_state.shape == (1, H) and out.graph_state.dtype == torch.float32
    assert out.batch.shape == (6,) and out.batch.dtype == torch.long and int(out.batch.max()) == 0
    torch.testing.assert_close(out.pool_weights.sum(), torch.tensor(1.0))
    assert torch.isfinite(out.node_states).all()


@torch.no_grad()
def test_permutation_equivariance(kind):
    enc, g = _encoder(kind), _graph()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])  # new node i is old node perm[i]
    inv = torch.argsort(perm)
    h = Data(x=g.x[perm], edge_index=inv[g.edge_index], edge_type=g.edge_type,
             origin=g.origin[perm], node_relevance=g.node_relevance[perm])
    a, b = enc(g), enc(h)
    torch.testing.assert_close(b.node_states, a.node_states[perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.graph_state, a.graph_state, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_relation_types_matter(kind):
    enc, g = _encoder(kind), _graph()
    h = g.clone()
    h.edge_type = (g.edge_type + 1) % R
    assert not torch.allclose(enc(g).node_states, enc(h).node_states, atol=1e-4)


@torch.no_grad()
def test_origin_and_relevance_are_read(kind):
    enc, g = _encoder(kind), _graph()
    h = g.clone()
    h.origin = torch.zeros(6, dtype=torch.long)
    assert not torch.allclose(enc(g).node_states, enc(h).node_states, atol=1e-4)
    h = g.clone()
    h.node_relevance = g.node_relevance.flip(0)
    assert not torch.allclose(enc(g).node_states, enc(h).node_states, atol=1e-4)
    # without use_relevance the feature is ignored, and it may be missing
    enc2 = _encoder(kind, use_relevance=False)
    del h.node_relevance
    torch.testing.assert_close(enc2(g).node_states, enc2(h).node_states)


@torch.no_grad()
def test_zero_edge_and_empty_graphs(kind):
    enc = _encoder(kind)
    g = _graph()
    lone = Data(x=g.x, edge_index=torch.empty(2, 0, dtype=torch.long),
                edge_type=torch.empty(0, dtype=torch.long), origin=g.origin)
    out = enc(lone)
    assert out.node_states.shape == (6, H) and torch.isfinite(out.node_states).all()
    out = enc(_empty())
    assert out.node_states.shape == (0, H) and out.graph_state.shape == (1, H)
    assert torch.equal(out.graph_state, torch.zeros(1, H))
    # an empty graph between, and one at the end of, a batch
    batch = Batch.from_data_list([_graph(1), _empty(), _graph(2, n=4), _empty()])
    out = enc(batch)
    assert out.node_states.shape == (10, H) and out.graph_state.shape == (4, H)
    assert torch.equal(out.graph_state[1], torch.zeros(H)) and torch.equal(out.graph_state[3], torch.zeros(H))
    assert out.graph_state[0].abs().sum() > 0 and out.graph_state[2].abs().sum() > 0


@torch.no_grad()
def test_batch_equals_separate(kind):
    enc = _encoder(kind)
    g1, g2 = _graph(1), _graph(2, n=4)
    out = enc(Batch.from_data_list([g1, g2]))
    a, b = enc(g1), enc(g2)
    torch.testing.assert_close(out.node_states, torch.cat([a.node_states, b.node_states]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.graph_state, torch.cat([a.graph_state, b.graph_state]), rtol=1e-5, atol=1e-5)
    assert out.batch.tolist() == [0] * 6 + [1] * 4


@torch.no_grad()
def test_reset_parameters_is_reproducible(kind):
    enc, g = _encoder(kind), _graph()
    torch.manual_seed(7)
    enc.reset_parameters()
    a = enc(g).node_states
    torch.manual_seed(8)
    enc.reset_parameters()
    b = enc(g).node_states
    torch.manual_seed(7)
    enc.reset_parameters()
    assert torch.equal(enc(g).node_states, a) and not torch.allclose(a, b)
    assert torch.equal(_encoder(kind, seed=3)(g).node_states, _encoder(kind, seed=3)(g).node_states)


def test_rgcn_decompositions_and_backward():
    g = _graph()
    for kw in ({"num_bases": 2}, {"num_blocks": 4}, {"reverse_edges": False}):
        enc = _encoder("rgcn", **kw)
        out = enc(g)
        out.graph_state.sum().backward()
        assert enc.input_proj.weight.grad is not None and out.node_states.shape == (6, H)


def test_dropout_only_in_training():
    enc = GraphEncoder(_config("gatv2", dropout=0.5))
    g = _graph()
    enc.eval()
    with torch.no_grad():
        assert torch.equal(enc(g).node_states, enc(g).node_states)
    enc.train()
    torch.manual_seed(0)
    assert not torch.allclose(enc(g).node_states, enc(g).node_states)


def test_repr():
    assert repr(_encoder("rgcn")) == "GraphEncoder(16, 32, kind='rgcn', num_layers=2, num_relations=5)"


@pytest.mark.parametrize("kw, match", [
    ({"kind": "gcn"}, r"GNNConfig.kind: expected one of \('gatv2', 'rgcn', 'transformer'\), found 'gcn'"),
    ({"hidden_dim": 30, "heads": 4}, r"GNNConfig.heads: expected a divisor of hidden_dim=30"),
    ({"num_layers": -1}, r"GNNConfig.num_layers: expected an integer >= 0, found -1"),
    ({"in_dim": 1.5}, r"GNNConfig.in_dim: expected an integer, found 1.5"),
    ({"dropout": 1.0}, r"GNNConfig.dropout: expected a number in \[0, 1\), found 1.0"),
    ({"use_relevance": 1}, r"GNNConfig.use_relevance: expected a bool, found 1"),
    ({"kind": "rgcn", "num_bases": 2, "num_blocks": 2}, r"expected at most one of num_bases / num_blocks"),
    ({"kind": "rgcn", "num_blocks": 5}, r"GNNConfig.num_blocks: expected a divisor of hidden_dim=32, found 5"),
])
def test_config_validation(kw, match):
    base = dict(in_dim=IN, hidden_dim=H, num_relations=R)
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        GNNConfig(**base)


def test_config_round_trip():
    c = _config("transformer", num_bases=None, relation_dim=8)
    assert GNNConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match=r"GNNConfig: unknown fields \['layers'\]"):
        GNNConfig.from_dict({"layers": 3})


def test_bad_inputs():
    enc = _encoder("gatv2")
    g = _graph()
    bad = g.clone()
    bad.edge_type = torch.full_like(g.edge_type, R)
    with pytest.raises(ValueError, match=r"expected edge_type values in \[0, 5\), found \[5, 5\]"):
        enc(bad)
    bad = g.clone()
    del bad.origin
    with pytest.raises(ValueError, match=r"expected data.origin of shape \(6,\)"):
        enc(bad)
    bad = g.clone()
    bad.x = torch.randn(6, IN + 1)
    with pytest.raises(ValueError, match=r"expected data.x of shape \(N, in_dim=16\), found \(6, 17\)"):
        enc(bad)
    bad = g.clone()
    del bad.edge_type
    with pytest.raises(ValueError, match=r"expected data.edge_type \(E,\) long for the 8 edges"):
        enc(bad)


class _MeanOfNeighbours(torch.nn.Module):
    """A test convolution: the mean of each node's in-neighbours, then a linear map."""

    def __init__(self, h):
        super().__init__()
        self.lin = torch.nn.Linear(h, h)

    def reset_parameters(self):
        self.lin.reset_parameters()

    def forward(self, h, edge_index, edges):
        from torch_geometric.utils import scatter

        agg = scatter(h[edge_index[0]], edge_index[1], dim=0, dim_size=h.shape[0], reduce="mean")
        return self.lin(agg)


def test_a_new_gnn_kind_is_one_registry_line():
    from ravlm_graph.nn.gnn import GNNS, GNNKind

    class MeanKind(GNNKind):
        edge_input = "type"

        @staticmethod
        def build(config):
            return _MeanOfNeighbours(config.hidden_dim)

    GNNS.register("mean", MeanKind)
    try:
        enc = GraphEncoder(GNNConfig(kind="mean", in_dim=IN, hidden_dim=H, num_layers=2, num_relations=R))
        assert enc.relation_emb is None  # the kind reads relation ids, so no relation table
        out = enc.eval()(_graph())
        assert out.node_states.shape == (6, H) and torch.isfinite(out.node_states).all()
        assert repr(enc).startswith("GraphEncoder(16, 32, kind='mean'")
    finally:
        GNNS.unregister("mean")
    with pytest.raises(ValueError, match=r"GNNConfig.kind: expected one of .*found 'mean'"):
        GNNConfig(kind="mean")
