"""Fusion: graph-token selection and injection, gated adapters, classic fusions, copying."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from torch import nn  # noqa: E402

from ravlm_graph.nn.fusion import FUSIONS, Fusion, FusionConfig, GraphInputs, TrunkInputs, build_fusion
from ravlm_graph.nn.fusion.base import GraphTokens
from ravlm_graph.nn.fusion.classic import ClassicFusion
from ravlm_graph.nn.fusion.graph_tokens import GraphTokenFusion, GraphTokenProjector, InjectedGraphTokens, inject_graph_tokens
from ravlm_graph.nn.fusion.pointer import CopyGate, CopyGateOutput, FactScorer, FactScores, PointerHead
from ravlm_graph.nn.fusion.xattn import CrossAttentionFusion, GatedCrossAttentionAdapter

H, D = 16, 32
KG = 99



# --------------------------------------------------------------------------- projector


def _nodes():
    """Two graphs: 6 nodes (two seeds) and 3 nodes (no seeds)."""
    torch.manual_seed(0)
    states = torch.randn(9, H)
    batch = torch.tensor([0] * 6 + [1] * 3)
    relevance = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.8, 0.3, 0.4, 0.7, 0.4])
    origin = torch.tensor([0, 0, 1, 0, 0, 2, 0, 0, 0])
    return states, batch, relevance, origin


def test_projector_selects_seeds_then_relevance():
    states, batch, rel, origin = _nodes()
    torch.manual_seed(0)
    proj = GraphTokenProjector(H, D, num_tokens=4)
    out = proj(states, batch, rel, origin)
    assert isinstance(out, GraphTokens)
    assert out.tokens.shape == (2, 4, D) and out.mask.dtype == torch.bool and out.node_index.dtype == torch.long
    # graph 0: seeds first by relevance, 2 (0.5) and 5 (0.3); then 1 (0.9), 4 (0.8)
    assert out.node_index.tolist() == [[2, 5, 1, 4], [7, 6, 8, -1]]  # ties (6, 8) by node order
    assert out.mask.tolist() == [[True] * 4, [True, True, True, False]]
    torch.testing.assert_close(out.tokens[0, 0], proj.mlp(states[2]))
    torch.testing.assert_close(out.tokens[1, 2], proj.mlp(states[8]))
    assert torch.equal(out.tokens[1, 3], torch.zeros(D))


def test_projector_reads_fewer_tokens_in_eval_mode():
    """``inference_tokens``: the first tokens of the training-mode choice, in eval mode only."""
    states, batch, rel, origin = _nodes()
    torch.manual_seed(0)
    proj = GraphTokenProjector(H, D, num_tokens=4, inference_tokens=2)
    assert proj.training and proj.active_tokens == 4
    full = proj(states, batch, rel, origin)
    assert full.node_index.tolist() == [[2, 5, 1, 4], [7, 6, 8, -1]]
    proj.eval()
    assert proj.active_tokens == 2
    few = proj(states, batch, rel, origin)
    assert few.tokens.shape == (2, 2, D)
    assert few.node_index.tolist() == [[2, 5], [7, 6]] and few.mask.all()
    torch.testing.assert_close(few.tokens, full.tokens[:, :2])
    proj.inference_tokens = None  # unset: the training count in both modes
    assert proj.active_tokens == 4 and proj(states, batch, rel, origin).tokens.shape == (2, 4, D)
    assert "inference_tokens" not in repr(proj)
    with pytest.raises(ValueError, match="inference_graph_tokens"):
        FusionConfig(inference_graph_tokens=0).validate()
    with pytest.raises(ValueError, match="inference_graph_tokens"):
        FusionConfig(inference_graph_tokens=True).validate()
    fusion = build_fusion(FusionConfig(graph_dim=H, model_dim=D, num_graph_tokens=4, inference_graph_tokens=3))
    assert fusion.projector.num_tokens == 4 and fusion.projector.inference_tokens == 3


def test_projector_small_graphs_empty_graphs_and_pooled():
    states, batch, rel, origin = _nodes()
    proj = GraphTokenProjector(H, D, num_tokens=32)
    out = proj(states, batch, rel, origin, num_graphs=3)  # a third, empty graph
    assert out.tokens.shape == (3, 6, D)  # T = the largest graph
    assert out.mask.sum(1).tolist() == [6, 3, 0] and out.node_index[2].tolist() == [-1] * 6
    assert torch.equal(out.tokens[2], torch.zeros(6, D))
    empty = proj(torch.empty(0, H), torch.empty(0, dtype=torch.long), num_graphs=2)
    assert empty.tokens.shape == (2, 1, D) and not empty.mask.any()
    pooled = GraphTokenProjector(H, D, pooled=True)(states, batch, num_graphs=3)
    assert pooled.tokens.shape == (3, 1, D) and pooled.mask.tolist() == [[True], [True], [False]]
    assert pooled.node_index.tolist() == [[-1]] * 3
    assert torch.equal(pooled.tokens[2, 0], torch.zeros(D))


def test_projector_pooled_uses_mean_of_nodes():
    states, batch, _, _ = _nodes()
    proj = GraphTokenProjector(H, D, pooled=True)
    out = proj(states, batch)
    torch.testing.assert_close(out.tokens[1, 0], proj.mlp(states[6:].mean(0)))
    gs = torch.randn(2, H)
    torch.testing.assert_close(proj(states, batch, graph_state=gs).tokens[:, 0], proj.mlp(gs))


# --------------------------------------------------------------------------- injection


def _prompt():
    """Two prompts of length 6, <kg> at positions 2 and 4."""
    ids = torch.tensor([[1, 2, KG, 3, 4, 5], [1, 6, 7, 8, KG, 9]])
    embeds = torch.randn(2, 6, D)
    return ids, embeds


def test_injection_exact_positions_and_values():
    ids, embeds = _prompt()
    tokens = torch.randn(2, 3, D)
    out = inject_graph_tokens(embeds, ids, KG, GraphTokens(tokens, torch.ones(2, 3, dtype=torch.bool),
                                                           torch.zeros(2, 3, dtype=torch.long)))
    assert isinstance(out, InjectedGraphTokens)
    e, m, pos = out  # unpacks like a tuple
    assert e.shape == (2, 8, D) and m.shape == (2, 8) and pos.tolist() == [[2, 3, 4], [4, 5, 6]]
    assert torch.equal(e[0, 2:5], tokens[0]) and torch.equal(e[1, 4:7], tokens[1])
    assert torch.equal(e[0, :2], embeds[0, :2]) and torch.equal(e[0, 5:], embeds[0, 3:])
    assert torch.equal(e[1, :4], embeds[1, :4]) and torch.equal(e[1, 7:], embeds[1, 5:])
    assert m.tolist() == [[1] * 8, [1] * 8]


def test_injection_padding_goes_right_and_is_masked():
    ids, embeds = _prompt()
    tokens = torch.randn(2, 3, D)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    attn = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])  # row 0: one text pad at the end
    e, m, pos = inject_graph_tokens(embeds, ids, KG, GraphTokens(tokens, mask, torch.zeros(2, 3, dtype=torch.long)),
                                    attention_mask=attn)
    # row 0: [1 2 | g0 g2 | 3 4 5(pad) | g1(pad)]; row 1: [1 6 7 8 | 9 | g0 g1 g2 (pad)]
    assert pos.tolist() == [[2, 7, 3], [5, 6, 7]]
    assert torch.equal(e[0, 2], tokens[0, 0]) and torch.equal(e[0, 3], tokens[0, 2])
    assert torch.equal(e[0, 4:7], embeds[0, 3:]) and torch.equal(e[0, :2], embeds[0, :2])
    assert torch.equal(e[1, :4], embeds[1, :4]) and torch.equal(e[1, 4], embeds[1, 5])
    for b in range(2):
        assert torch.equal(e[b, pos[b]], tokens[b])  # every token sits at its position
    assert m.tolist() == [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]]
    assert m.dtype == torch.long


def test_injection_from_projector_keeps_gradients():
    states, batch, rel, origin = _nodes()
    states.requires_grad_(True)
    g = GraphTokenProjector(H, D, num_tokens=4)(states, batch, rel, origin)
    ids, embeds = _prompt()
    e, m, pos = inject_graph_tokens(embeds, ids, KG, g)
    assert e.shape == (2, 9, D) and m[1].tolist() == [1] * 8 + [0]
    e.sum().backward()
    assert states.grad[[1, 2, 4, 5, 6, 7, 8]].abs().sum(1).gt(0).all() and states.grad[[0, 3]].eq(0).all()


@pytest.mark.parametrize("row, match", [
    (torch.tensor([1, 2, 3, 4, 5, 6]), r"input_ids row 1: expected exactly one <kg> placeholder \(id 99\), found 0"),
    (torch.tensor([1, KG, 3, KG, 5, 6]), r"input_ids row 1: expected exactly one <kg> placeholder \(id 99\), found 2"),
])
def test_injection_placeholder_errors(row, match):
    ids, embeds = _prompt()
    ids[1] = row
    g = GraphTokens(torch.randn(2, 3, D), torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=match):
        inject_graph_tokens(embeds, ids, KG, g)


def test_injection_count_and_width_errors():
    ids, embeds = _prompt()
    g3 = GraphTokens(torch.randn(3, 2, D), torch.ones(3, 2, dtype=torch.bool), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected graph tokens for 2 sequences \(one graph each\), found 3"):
        inject_graph_tokens(embeds, ids, KG, g3)
    gw = GraphTokens(torch.randn(2, 2, D + 1), torch.ones(2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected graph tokens of width D=32 \(the embedding size\), found 33"):
        inject_graph_tokens(embeds, ids, KG, gw)
    gm = GraphTokens(torch.randn(2, 2, D), torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected graph_tokens.mask of shape \(2, 2\), found \(2, 3\)"):
        inject_graph_tokens(embeds, ids, KG, gm)


# --------------------------------------------------------------------------- gated adapter


class _TinyDecoder(nn.Module):
    """Two causal transformer layers, with optional adapters before each."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(D, 4, 64, dropout=0.0, batch_first=True)
                                    for _ in range(2))
        self.adapters = None

    def forward(self, x, graph=None, graph_mask=None):
        causal = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        for i, layer in enumerate(self.layers):
            if self.adapters is not None:
                x = self.adapters[i](x, graph, graph_mask)
            x = layer(x, src_mask=causal, is_causal=True)
        return x


@torch.no_grad()
def test_gated_adapter_is_identity_at_init():
    torch.manual_seed(0)
    dec = _TinyDecoder().eval()
    x, graph = torch.randn(2, 7, D), torch.randn(2, 3, D)
    mask = torch.tensor([[True, True, False], [False, False, False]])  # row 1: no graph at all
    before = dec(x)
    dec.adapters = nn.ModuleList(GatedCrossAttentionAdapter(D, heads=4) for _ in range(2)).eval()
    assert torch.equal(dec(x, graph, mask), before)
    adapter = dec.adapters[0]
    assert torch.equal(adapter(x, graph, mask), x)
    # opened gates: the graph is read, padded tokens are not, a row without graph is untouched
    adapter.attn_gate.fill_(0.5)
    y = adapter(x, graph, mask)
    assert not torch.allclose(y[0], x[0])
    assert torch.isfinite(y).all()
    moved = graph.clone()
    moved[0, 2] += 100.0
    moved[1] += 100.0
    y2 = adapter(x, moved, mask)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(y[1], x[1])


def test_gated_adapter_gate_gets_gradient_and_resets():
    torch.manual_seed(0)
    adapter = GatedCrossAttentionAdapter(D, kv_dim=H, heads=4)
    x, graph = torch.randn(2, 5, D), torch.randn(2, 3, H)
    adapter(x, graph).pow(2).sum().backward()
    assert adapter.attn_gate.grad.abs().item() > 0  # the gate can open
    with torch.no_grad():
        adapter.attn_gate.fill_(1.0)
    adapter.reset_parameters()
    assert adapter.attn_gate.item() == 0.0 and adapter.ff_gate.item() == 0.0
    with pytest.raises(ValueError, match=r"expected graph_tokens of shape \(2, T, 16\), found \(2, 3, 32\)"):
        adapter(x, torch.randn(2, 3, D))
    assert repr(adapter) == "GatedCrossAttentionAdapter(32, kv_dim=16, heads=4)"


# --------------------------------------------------------------------------- classic fusions


@pytest.mark.parametrize("kind", ["concat", "product", "attention"])
def test_classic_fusion_shapes_and_graph_use(kind):
    torch.manual_seed(0)
    f = ClassicFusion(kind, image_dim=8, text_dim=12, graph_dim=H, out_dim=D).eval()
    img, txt, g = torch.randn(3, 8), torch.randn(3, 12), torch.randn(3, H)
    out = f(img, txt, g)
    assert out.shape == (3, D) and torch.isfinite(out).all()
    assert not torch.allclose(f(img, txt, g + 1.0), out)
    torch.testing.assert_close(f(img, txt, None), f(img, txt, torch.zeros(3, H)))


def test_attention_fusion_weights():
    f = ClassicFusion("attention", 8, 8, 8, D)
    w = f.modality_weights(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8))
    assert w.shape == (4, 3) and torch.allclose(w.sum(1), torch.ones(4))
    with pytest.raises(ValueError, match=r"expected kind 'attention', found 'concat'"):
        ClassicFusion("concat", 8, 8, 8, D).modality_weights(torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match=r"expected graph of shape \(4, 8\), found \(4, 9\)"):
        f(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 9))
    with pytest.raises(ValueError, match=r"expected kind in"):
        ClassicFusion("sum", 8, 8, 8, D)


def _graph(states, batch, rel, origin, graph_state=None):
    return GraphInputs(node_states=states, batch=batch, relevance=rel, origin=origin, num_graphs=2,
                       graph_state=graph_state)


def test_registry_builds_every_kind_from_one_config():
    base = dict(model_dim=D, graph_dim=H, num_graph_tokens=4, heads=4, num_layers=2)
    assert set(FUSIONS) == {"none", "graph_tokens", "verbalized", "both", "xattn", "concat", "product", "attention"}
    for kind in FUSIONS:
        f = build_fusion(FusionConfig(kind=kind, **base))
        assert isinstance(f, Fusion) and isinstance(f, FUSIONS.get(kind)) and f.config.kind == kind
    with pytest.raises(ValueError, match=r"unknown fusion 'sum'; expected one of \('attention', 'both'"):
        build_fusion(FusionConfig(kind="sum", **base))
    with pytest.raises(TypeError, match="expected a FusionConfig, found dict"):
        build_fusion({"kind": "none"})
    # "none" means one thing: no graph at all
    assert [k for k in FUSIONS if not FUSIONS.get(k).uses_graph] == ["none"]


def test_graph_token_kinds_put_tokens_at_kg():
    states, batch, rel, origin = _nodes()
    f = build_fusion(FusionConfig(kind="graph_tokens", model_dim=D, graph_dim=H, num_graph_tokens=4))
    assert f.graph_placeholder and f.image_in_trunk and not f.verbalizes_facts
    ids = torch.tensor([[1, KG, 2], [KG, 3, 4]])
    embeds = torch.randn(2, 3, D)
    out = f.into_trunk(TrunkInputs(embeds, ids, torch.ones(2, 3), KG), _graph(states, batch, rel, origin))
    assert out.embeds.shape == (2, 3 - 1 + 4, D) and out.token_positions.shape == (2, 4)
    gt = f.tokens(_graph(states, batch, rel, origin))
    torch.testing.assert_close(out.embeds[0, out.token_positions[0]], gt.tokens[0])
    assert torch.equal(out.token_nodes, gt.node_index)
    both = build_fusion(FusionConfig(kind="both", model_dim=D, graph_dim=H))
    assert both.graph_placeholder and both.verbalizes_facts
    pooled = build_fusion(FusionConfig(kind="graph_tokens", model_dim=D, graph_dim=H, pooled=True))
    assert pooled.tokens(_graph(states, batch, rel, origin)).tokens.shape == (2, 1, D)


def test_xattn_kind_hooks_adapters_only_while_reading():
    torch.manual_seed(0)
    layers = nn.ModuleList(nn.Linear(D, D) for _ in range(2))
    f = build_fusion(FusionConfig(kind="xattn", model_dim=D, graph_dim=H, num_graph_tokens=4, num_layers=2))
    assert isinstance(f, CrossAttentionFusion) and len(f.adapters) == 2 and not f.graph_placeholder
    f.attach(layers)
    x = torch.randn(2, 5, D)
    plain = layers[1](layers[0](x))
    for a in f.adapters:
        a.attn_gate.data.fill_(0.5)
    g = _graph(*_nodes())
    with f.reading(g):
        read = layers[1](layers[0](x))
    assert not torch.allclose(read, plain)
    torch.testing.assert_close(layers[1](layers[0](x)), plain)  # memory cleared after the context
    with pytest.raises(ValueError, match=r"expected 2 trunk layers \(FusionConfig.num_layers\), found 3"):
        f.attach(nn.ModuleList(nn.Linear(D, D) for _ in range(3)))


def test_pooled_kinds_fuse_image_text_and_graph_state():
    torch.manual_seed(0)
    for kind in ("concat", "product", "attention"):
        f = build_fusion(FusionConfig(kind=kind, model_dim=D, graph_dim=H))
        assert not f.image_in_trunk and not f.graph_placeholder and f.uses_gnn
        g = _graph(*_nodes(), graph_state=torch.randn(2, H))
        q, img = torch.randn(2, D), torch.randn(2, D)
        out = f.pool(q, img, g)
        assert out.shape == (2, D)
        g2 = _graph(*_nodes(), graph_state=g.graph_state + 1.0)
        assert not torch.allclose(f.pool(q, img, g2), out)
    none = build_fusion(FusionConfig(kind="none"))
    q = torch.randn(2, D)
    assert none.pool(q, torch.randn(2, D), None) is q and not none.uses_graph


@pytest.mark.parametrize("kw, match", [
    ({"model_dim": 0}, r"FusionConfig.model_dim: expected an integer >= 1, found 0"),
    ({"model_dim": 10 ** 6}, r"FusionConfig.model_dim: expected an integer <= 65536, found 1000000"),
    ({"num_graph_tokens": 2.0}, r"FusionConfig.num_graph_tokens: expected an integer, found 2.0"),
    ({"pooled": "yes"}, r"FusionConfig.pooled: expected a bool, found 'yes'"),
    ({"dropout": -0.1}, r"FusionConfig.dropout: expected a number in \[0, 1\), found -0.1"),
])
def test_fusion_config_validation(kw, match):
    base = dict(model_dim=D, graph_dim=H)
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        FusionConfig(**base)


def test_fusion_config_round_trip():
    c = FusionConfig(kind="attention", model_dim=D, graph_dim=H, hidden_dim=8)
    assert FusionConfig.from_dict(c.to_dict()) == c
    assert c.replace(kind="concat").kind == "concat"
    with pytest.raises(ValueError, match=r"FusionConfig: unknown fields \['tokens'\]"):
        FusionConfig.from_dict({"tokens": 3})
    with pytest.raises(ValueError, match=r"expected heads dividing model_dim=32, found heads=5"):
        build_fusion(FusionConfig(kind="xattn", model_dim=D, graph_dim=H, heads=5))


# --------------------------------------------------------------------------- pointer / copy


def test_pointer_head_masks_padding():
    torch.manual_seed(0)
    head = PointerHead(D, H)
    q, keys = torch.randn(2, D), torch.randn(2, 4, H)
    mask = torch.tensor([[True, True, False, True], [True, False, False, False]])
    logits = head(q, keys, mask)
    assert logits.shape == (2, 4)
    assert torch.isinf(logits[~mask]).all() and (logits[~mask] < 0).all() and torch.isfinite(logits[mask]).all()
    torch.testing.assert_close(logits[0, 1], head.k(keys[0, 1]) @ head.q(q[0]) / D ** 0.5)
    keys2 = keys.clone()
    keys2[0, 2] += 50.0
    assert torch.equal(head(q, keys2, mask), logits)
    p = torch.softmax(logits, -1)
    assert p[1, 0] == 1.0 and torch.equal(p[~mask], torch.zeros(int((~mask).sum())))


def test_copy_gate_is_a_distribution():
    torch.manual_seed(0)
    gate = CopyGate(D)
    q, vocab = torch.randn(3, D), torch.randn(3, 5)
    ptr = torch.randn(3, 4)
    ptr[0, 3] = float("-inf")
    ptr[2] = float("-inf")  # no graph for this example: nothing to copy
    out = gate(q, vocab, ptr)
    assert isinstance(out, CopyGateOutput) and out.probs.shape == (3, 9)
    torch.testing.assert_close(out.probs.sum(-1), torch.ones(3))
    assert (out.probs >= 0).all() and out.probs[0, 5 + 3] == 0
    assert out.copy_prob[2] == 0 and 0 < out.copy_prob[0] < 1
    torch.testing.assert_close(out.probs[2, :5], torch.softmax(vocab[2], -1))
    c = out.copy_prob[0]
    torch.testing.assert_close(out.probs[0, 5:8], c * torch.softmax(ptr[0, :3], -1))
    # a node whose name is in the vocabulary gives its mass to that entry
    index = torch.tensor([[1, -1, -1, -1], [-1, -1, 4, -1], [-1, -1, -1, -1]])
    merged = gate(q, vocab, ptr, pointer_vocab_index=index)
    torch.testing.assert_close(merged.probs.sum(-1), torch.ones(3))
    assert merged.probs[0, 5] == 0 and merged.probs[1, 5 + 2] == 0
    torch.testing.assert_close(merged.probs[0, 1], out.probs[0, 1] + out.probs[0, 5])
    torch.testing.assert_close(merged.probs[1, 4], out.probs[1, 4] + out.probs[1, 7])
    # gradients flow, with -inf padding, into the gate and the logits
    v, pl = vocab.clone().requires_grad_(True), ptr.clone().requires_grad_(True)
    out = gate(q, v, pl)
    out.probs[:, 0].log().sum().backward()
    assert torch.isfinite(v.grad).all() and torch.isfinite(pl.grad).all() and gate.gate.weight.grad is not None


def test_fact_scorer_scores_facts_at_seeds_and_gives_each_node_its_best():
    """Two graphs: 0-1-2 (seed 0; edge 2->0 walked backwards) and 3-4 (seed 4), plus a self loop."""
    torch.manual_seed(0)
    R = 3
    fs = FactScorer(D, R, hidden_dim=H)
    q, keys = torch.randn(2, D), torch.randn(5, D)
    edge_index = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 0, 4, 4]])
    edge_type = torch.tensor([0, 1, 2, 1, 0])
    seed = torch.tensor([True, False, False, False, True])
    batch = torch.tensor([0, 0, 0, 1, 1])
    out = fs(q, keys, edge_index, edge_type, seed, batch)
    assert isinstance(out, FactScores)
    # facts: 0->1 (rel 0), 4<-3 (rel 1 walked backwards), 0<-2 (rel 2 backwards); 1->2 has no seed, 4->4 is a loop
    facts = sorted(zip(out.fact_seed.tolist(), out.fact_other.tolist(), out.fact_relation.tolist(),
                       out.fact_graph.tolist()))
    assert facts == [(0, 1, 0, 0), (0, 2, 5, 0), (4, 3, 4, 1)]
    i = [j for j, (a, b) in enumerate(zip(out.fact_seed.tolist(), out.fact_other.tolist())) if (a, b) == (0, 1)][0]
    h = torch.tanh(fs.seed_key(keys[0]) + fs.rel.weight[0] + fs.other_key(keys[1]))
    want = (fs.q(q[0]) * h).sum() / H ** 0.5 + torch.log_softmax(out.relation_logits[0], -1)[0]
    torch.testing.assert_close(out.edge_logits[i], want)
    # node 1 is the other end of one fact; seed 0 keeps its best fact on the seed side
    torch.testing.assert_close(out.node_logits[1], out.edge_logits[i] + out.side_logits[0, 1])
    best0 = out.edge_logits[out.fact_seed == 0].max() + out.side_logits[0, 0]
    torch.testing.assert_close(out.node_logits[0], best0)
    # changing the question's side logits moves the ends apart
    with torch.no_grad():
        fs.side.bias.copy_(torch.tensor([5.0, -5.0]))
    out2 = fs(q, keys, edge_index, edge_type, seed, batch)
    moved = (out2.node_logits - out.node_logits).detach()
    assert moved[0] > moved[1]
    # a graph without seeds: every node gets the no-fact score
    none = fs(q, keys, edge_index, edge_type, torch.zeros(5, dtype=torch.bool), batch)
    assert none.edge_logits.numel() == 0 and torch.equal(none.node_logits, fs.no_fact.expand(5))
    out.node_logits.sum().backward()
    assert fs.rel.weight.grad[0].abs().sum() > 0 and fs.relation.weight.grad is not None
    with pytest.raises(ValueError, match=r"expected edge types in \[0, 3\), found 3"):
        fs(q, keys, edge_index, torch.tensor([0, 1, 3, 1, 0]), seed, batch)
    with pytest.raises(ValueError, match=r"expected keys of shape \(N, 32\)"):
        fs(q, keys[:, :4], edge_index, edge_type, seed, batch)


def test_fact_scorer_node_features_enter_each_fact_from_both_ends():
    torch.manual_seed(0)
    fs = FactScorer(D, 2, hidden_dim=H, feature_dim=2)
    q, keys = torch.randn(1, D), torch.randn(3, D)
    edge_index, edge_type = torch.tensor([[0, 0], [1, 2]]), torch.tensor([0, 1])
    seed, batch = torch.tensor([True, False, False]), torch.zeros(3, dtype=torch.long)
    feats = torch.tensor([[0.1, 0.0], [0.9, 1.0], [0.2, 0.0]])
    out = fs(q, keys, edge_index, edge_type, seed, batch, feats)
    i = out.fact_other.tolist().index(1)
    pair = torch.cat([feats[0], feats[1]])
    h = torch.tanh(fs.seed_key(keys[0]) + fs.rel.weight[0] + fs.other_key(keys[1]) + fs.feat(pair))
    want = (fs.q(q[0]) * h).sum() / H ** 0.5 + torch.log_softmax(out.relation_logits[0], -1)[0]
    torch.testing.assert_close(out.edge_logits[i], want)  # the direct term starts at 0
    with torch.no_grad():
        fs.feat_direct.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 5.0]]))  # "the question names the other end"
    out2 = fs(q, keys, edge_index, edge_type, seed, batch, feats)
    torch.testing.assert_close(out2.edge_logits[i], out.edge_logits[i] + 5.0)
    torch.testing.assert_close(out2.edge_logits[1 - i], out.edge_logits[1 - i])
    with pytest.raises(ValueError, match=r"expected node_features of shape \(3, 2\), found None"):
        fs(q, keys, edge_index, edge_type, seed, batch)
    with pytest.raises(ValueError, match=r"expected node_features of shape \(3, 0\) or None"):
        FactScorer(D, 2)(q, keys, edge_index, edge_type, seed, batch, feats)


def test_reprs():
    assert repr(GraphTokenProjector(H, D)) == "GraphTokenProjector(16, 32, num_tokens=32, pooled=False)"
    assert repr(PointerHead(D, H)) == "PointerHead(32, 16, hidden_dim=32)"
    assert repr(CopyGate(D)) == "CopyGate(32)"
    assert repr(FactScorer(D, 3)) == "FactScorer(32, num_relations=3, hidden_dim=32)"
    assert repr(FactScorer(D, 3, feature_dim=2)) == "FactScorer(32, num_relations=3, hidden_dim=32, feature_dim=2)"
    assert repr(ClassicFusion("product", 8, 8, H, D)) == "ClassicFusion('product', dims=(8, 8, 16), out_dim=32)"
