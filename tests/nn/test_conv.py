"""The pure-torch convolutions against torch_geometric's: same parameters, same initial
weights for a seed, same outputs (with edge features, no edges, isolated nodes, self-loops,
heads, decompositions, gradients)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")

from ravlm_graph.nn import conv as ours  # noqa: E402

F_IN, EDGE_DIM, R = 12, 6, 5



def _graph(seed: int, n: int, e: int, self_loops: bool = True):
    """Random edges (repeats and, optionally, self-loops kept); node ``n - 1`` is isolated."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, F_IN, generator=g)
    if e == 0 or n < 2:
        ei = torch.empty(2, 0, dtype=torch.long)
    else:
        ei = torch.randint(0, n - 1, (2, e), generator=g)
        if not self_loops:
            ei = ei[:, ei[0] != ei[1]]
    et = torch.randint(0, R, (ei.shape[1],), generator=g)
    ea = torch.randn(ei.shape[1], EDGE_DIM, generator=g)
    return x, ei, et, ea


# name -> (ours, theirs, kwargs, what the third argument is)
LAYERS = {
    "gatv2": (ours.GATv2Conv, pyg_nn.GATv2Conv, dict(out_channels=4, heads=3, edge_dim=EDGE_DIM, dropout=0.0),
              "attr"),
    "gatv2_noedge": (ours.GATv2Conv, pyg_nn.GATv2Conv, dict(out_channels=8, heads=1), None),
    "gatv2_noloops": (ours.GATv2Conv, pyg_nn.GATv2Conv,
                      dict(out_channels=4, heads=2, edge_dim=EDGE_DIM, add_self_loops=False), "attr"),
    "transformer": (ours.TransformerConv, pyg_nn.TransformerConv,
                    dict(out_channels=4, heads=3, edge_dim=EDGE_DIM, root_weight=True), "attr"),
    "transformer_noroot": (ours.TransformerConv, pyg_nn.TransformerConv,
                           dict(out_channels=5, heads=2, root_weight=False), None),
    "rgcn": (ours.RGCNConv, pyg_nn.RGCNConv, dict(out_channels=10, num_relations=R), "type"),
    "rgcn_bases": (ours.RGCNConv, pyg_nn.RGCNConv, dict(out_channels=10, num_relations=R, num_bases=2), "type"),
    "rgcn_blocks": (ours.RGCNConv, pyg_nn.RGCNConv, dict(out_channels=8, num_relations=R, num_blocks=4), "type"),
}


def _pair(name: str, seed: int = 0):
    mine_cls, theirs_cls, kw, edges = LAYERS[name]
    torch.manual_seed(seed)
    theirs = theirs_cls(F_IN, **kw)
    torch.manual_seed(seed)
    mine = mine_cls(F_IN, **kw)
    return mine, theirs, edges


def _args(edges, ei, et, ea):
    return (ei,) if edges is None else (ei, et if edges == "type" else ea)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_same_keys_shapes_and_seeded_initial_weights(name):
    mine, theirs, _ = _pair(name, seed=3)
    a, b = mine.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("case", ["random", "no_edges", "one_node", "no_self_loops", "dense"])
def test_outputs_match_torch_geometric(name, case):
    mine, theirs, edges = _pair(name, seed=1)
    # Perturb the weights away from the initialisation (zero biases would hide a missing bias).
    torch.manual_seed(5)
    for p in theirs.parameters():
        p.data.add_(0.3 * torch.randn_like(p))
    mine.load_state_dict(theirs.state_dict(), strict=True)
    n, e = {"random": (9, 20), "no_edges": (7, 0), "one_node": (1, 0), "no_self_loops": (8, 15),
            "dense": (5, 60)}[case]
    x, ei, et, ea = _graph(seed=len(case), n=n, e=e, self_loops=case != "no_self_loops")
    mine.eval(), theirs.eval()
    with torch.no_grad():
        want = theirs(x, *_args(edges, ei, et, ea))
        got = mine(x, *_args(edges, ei, et, ea))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if n > 1:
        # The isolated last node still gets its own part (self-loop / root weight / bias).
        assert torch.isfinite(got[-1]).all()


@pytest.mark.parametrize("name", ["gatv2", "transformer", "rgcn_bases"])
def test_gradients_match(name):
    mine, theirs, edges = _pair(name, seed=2)
    x, ei, et, ea = _graph(seed=4, n=8, e=18)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    theirs(x1, *_args(edges, ei, et, ea)).square().sum().backward()
    mine(x2, *_args(edges, ei, et, ea)).square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-5)
    for (k, p), (k2, q) in zip(mine.named_parameters(), theirs.named_parameters()):
        assert k == k2
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)


def test_errors_name_what_was_expected():
    layer = ours.GATv2Conv(F_IN, 4, heads=2, edge_dim=EDGE_DIM)
    x = torch.randn(3, F_IN)
    with pytest.raises(ValueError, match=r"expected edge_index of shape \(2, E\), found \(3, 2\)"):
        layer(x, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="expected edge_attr with 2 rows"):
        layer(x, torch.tensor([[0, 1], [1, 2]]), torch.randn(3, EDGE_DIM))
    with pytest.raises(ValueError, match="at most one of num_bases / num_blocks"):
        ours.RGCNConv(F_IN, 8, R, num_bases=2, num_blocks=2)


def test_repr_matches_torch_geometric():
    for name in ("gatv2", "transformer", "rgcn"):
        mine, theirs, _ = _pair(name)
        assert repr(mine) == repr(theirs)


@pytest.mark.parametrize("name", ["gatv2", "gatv2_noloops", "transformer"])
@pytest.mark.parametrize("case", [(0, 7, 20), (1, 5, 0), (2, 1, 0)])
def test_relation_table_equals_per_edge_features(name, case):
    """A (T, edge_dim) table read through ``edge_type`` gives what the gathered rows give,
    including the self-loops' mean feature, and the same gradients to the table."""
    cls, _theirs, kwargs, _ = LAYERS[name]
    torch.manual_seed(0)
    layer = cls(F_IN, **kwargs)
    layer.eval()
    x, ei, et, _ = _graph(*case)
    table = torch.randn(R, EDGE_DIM, requires_grad=True)
    per_edge = layer(x, ei, table[et])
    via_table = layer(x, ei, table, edge_type=et)
    assert via_table.shape == per_edge.shape
    torch.testing.assert_close(via_table, per_edge, rtol=1e-5, atol=1e-6)
    g1, = torch.autograd.grad(per_edge.square().sum(), table)
    g2, = torch.autograd.grad(via_table.square().sum(), table)
    torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("case", [(0, 7, 20), (3, 30, 200), (1, 5, 0), (2, 1, 0)])
def test_gatv2_inference_path_matches(heads, case):
    """Without gradients GATv2 takes its inference path (self-loops as node terms, logits as
    one product): the same outputs as the training path and as torch_geometric's layer fed
    the gathered edge features, with self-loops in the input, repeated edges and an
    isolated node."""
    torch.manual_seed(0)
    theirs = pyg_nn.GATv2Conv(F_IN, 4, heads=heads, edge_dim=EDGE_DIM)
    torch.manual_seed(0)
    mine = ours.GATv2Conv(F_IN, 4, heads=heads, edge_dim=EDGE_DIM)
    mine.eval(), theirs.eval()
    x, ei, et, _ = _graph(*case)
    table = torch.randn(R, EDGE_DIM)
    train_path = mine(x, ei, table, edge_type=et)
    with torch.no_grad():
        fast = mine(x, ei, table, edge_type=et)
        ref = theirs(x, ei, table[et])
        mine.lin_edge = None  # the inference path is taken only with a relation table and edge_dim
        with pytest.raises(ValueError, match="without edge_dim"):
            mine(x, ei, table, edge_type=et)
    torch.testing.assert_close(fast, train_path.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_gatv2_inference_path_reuses_the_projected_table_until_it_changes():
    """The inference path projects the relation table once and reuses it while the table and
    the projection are the same, unchanged tensors; an in-place update of either, or another
    table, is projected again (the outputs always equal the training path's)."""
    torch.manual_seed(0)
    layer = ours.GATv2Conv(F_IN, 4, heads=2, edge_dim=EDGE_DIM).eval()
    x, ei, et, _ = _graph(3, 30, 200)
    table = torch.nn.Parameter(torch.randn(R, EDGE_DIM))
    calls = []
    orig = layer.lin_edge.forward
    layer.lin_edge.forward = lambda t: calls.append(1) or orig(t)

    def check():
        with torch.no_grad():
            fast = layer(x, ei, table, edge_type=et)
        torch.testing.assert_close(fast, layer(x, ei, table, edge_type=et).detach(), rtol=1e-5, atol=1e-5)

    check()
    n = len(calls)
    with torch.no_grad():
        layer(x, ei, table, edge_type=et)
    assert len(calls) == n  # reused
    with torch.no_grad():
        table.mul_(2.0)  # an optimizer step on the relation table
    check()
    with torch.no_grad():
        layer.lin_edge.weight.add_(0.5)  # ... or on the projection
    check()
    table = torch.nn.Parameter(torch.randn(R, EDGE_DIM))  # another table
    check()


def test_relation_table_errors():
    layer = ours.GATv2Conv(F_IN, 4, heads=2, edge_dim=EDGE_DIM)
    x, ei, et, _ = _graph(0, 7, 20)
    table = torch.randn(R, EDGE_DIM)
    with pytest.raises(ValueError, match="table of 5 rows"):
        layer(x, ei, table, edge_type=et + R)
    with pytest.raises(ValueError, match="one per edge"):
        layer(x, ei, table, edge_type=et[:-1])
    with pytest.raises(ValueError, match="table"):
        layer(x, ei, table[0], edge_type=et)
    with torch.no_grad():  # the inference path checks the same
        with pytest.raises(ValueError, match="table of 5 rows"):
            layer(x, ei, table, edge_type=et + R)
        with pytest.raises(ValueError, match="table"):
            layer(x, ei, table[0], edge_type=et)
