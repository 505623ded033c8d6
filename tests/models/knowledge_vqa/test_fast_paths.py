"""The model's and the engine's faster inference paths against the plain implementations they
replaced (kept here as references): the same values, the same order, the same answers."""

import random

import numpy as np
import pytest
import torch

from ravlm_graph.engine import _reasoning_facts, _top
from ravlm_graph.models.knowledge_vqa.modeling import (DenseLayout, KnowledgeVQAOutput, answer_distribution,
                                                      ranked_answers)
from ravlm_graph.models.knowledge_vqa.processing import collate
from ravlm_graph.nn.fusion.graph_tokens import GraphTokenProjector, inject_graph_tokens
from ravlm_graph.nn.fusion.base import GraphTokens
from ravlm_graph.nn.fusion.pointer import CopyGate
from ravlm_graph.nn.gnn import GNNConfig, GraphEncoder
from ravlm_graph.retrieval.subgraph import ReasoningPath, Subgraph
from ravlm_graph.utils.graph import GraphBatch, GraphData, scatter, to_dense_batch
from tests.models.knowledge_vqa.test_modeling import examples, make_model, tiny  # noqa: F401 (tiny: fixture)


# ----------------------------------------------------------------------------- references

def ref_seed_links(m, data, B, M):
    src, dst = data.edge_index
    seed = data.origin > 0
    R = m.config.num_relations
    parts_idx, parts_msg = [], []
    for node, other, rel in ((dst, src, data.edge_type), (src, dst, data.edge_type + R)):
        keep = seed[other] & (node != other)
        if keep.any():
            o = other[keep]
            if m.config.seed_link_mlp:
                msg = m.seed_link(torch.cat([m.seed_rel_emb(rel[keep]), m.seed_pos(data.box[o]),
                                             m.seed_origin(data.origin[o])], dim=-1))
            else:
                msg = m.seed_rel_emb(rel[keep]) + m.seed_box(data.box[o]) + m.seed_origin(data.origin[o])
            parts_idx.append(node[keep])
            parts_msg.append(msg)
    n = data.origin.shape[0]
    if parts_idx:
        agg = scatter(torch.cat(parts_msg), torch.cat(parts_idx), dim=0, dim_size=n, reduce="mean")
    else:
        agg = data.box.new_zeros(n, m.dim)
    dense, _ = to_dense_batch(agg, data.batch, batch_size=B)
    if dense.shape[1] < M:
        dense = torch.nn.functional.pad(dense, (0, 0, 0, M - dense.shape[1]))
    return dense[:, :M]


def ref_verify(m, vocab_logits, pointer_logits, node_mask, data, B):
    origin, _ = to_dense_batch(data.origin, data.batch, batch_size=B)
    named = node_mask & ((origin & 1) != 0)
    best = pointer_logits.masked_fill(~named, float("-inf")).max(1).values
    best = torch.where(torch.isfinite(best), best, torch.zeros_like(best))
    bonus = torch.zeros_like(vocab_logits)
    bonus[:, m._vocab_index["yes"]] = m.verify_scale * best
    return vocab_logits + bonus


def ref_node_index(n, batch, relevance, origin, b, t):
    order = torch.arange(n)
    if relevance is not None:
        order = order[torch.argsort(-relevance.float(), stable=True)]
    if origin is not None:
        order = order[torch.argsort((origin[order] <= 0).long(), stable=True)]
    order = order[torch.argsort(batch[order], stable=True)]
    counts = torch.bincount(batch, minlength=b)
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - start[batch[order]]
    keep = rank < t
    node_index = torch.full((b, t), -1, dtype=torch.long)
    node_index[batch[order][keep], rank[keep]] = order[keep]
    return node_index


def ref_inject(input_embeds, input_ids, kg_token_id, tokens, mask, attention_mask=None):
    b, length, d = input_embeds.shape
    t = tokens.shape[1]
    is_kg = input_ids == kg_token_id
    p = is_kg.long().argmax(1, keepdim=True)
    n_real = mask.sum(1, keepdim=True)
    ar = torch.arange(length).unsqueeze(0)
    text_dest = torch.where(ar < p, ar, ar - 1 + n_real)
    real_rank = mask.long().cumsum(1) - 1
    pad_rank = (~mask).long().cumsum(1) - 1
    positions = torch.where(mask, p + real_rank, length - 1 + n_real + pad_rank)
    new_len = length - 1 + t
    keep = ~is_kg
    rows_l = torch.arange(b).unsqueeze(1).expand(b, length)
    rows_t = torch.arange(b).unsqueeze(1).expand(b, t)
    embeds = input_embeds.new_zeros(b, new_len, d)
    embeds = embeds.index_put((rows_l[keep], text_dest[keep]), input_embeds[keep])
    embeds = embeds.index_put((rows_t.reshape(-1), positions.reshape(-1)), tokens.reshape(-1, d))
    text_mask = torch.ones(b, length, dtype=torch.long) if attention_mask is None else attention_mask.long()
    out_mask = torch.zeros(b, new_len, dtype=torch.long)
    out_mask[rows_l[keep], text_dest[keep]] = text_mask[keep]
    out_mask[rows_t.reshape(-1), positions.reshape(-1)] = mask.long().reshape(-1)
    return embeds, out_mask, positions


def ref_collate_graph(examples, node_dim):
    datas = []
    for e in examples:
        n = len(e.node_names)
        datas.append(GraphData(x=torch.from_numpy(e.node_x.astype(np.float32)).reshape(n, node_dim),
                               edge_index=torch.from_numpy(np.asarray(e.edge_index, dtype=np.int64)).reshape(2, -1),
                               edge_type=torch.from_numpy(np.asarray(e.edge_type, dtype=np.int64)),
                               origin=torch.from_numpy(np.asarray(e.origin, dtype=np.int64)),
                               node_relevance=torch.from_numpy(np.asarray(e.relevance, dtype=np.float32)),
                               box=torch.from_numpy(e.box).reshape(n, 5), num_nodes=n))
    return GraphBatch.from_data_list(datas)


def ref_paths(sg, t, max_len, max_paths):
    from collections import deque

    adj = [[] for _ in range(sg.num_nodes)]
    src, dst = sg.array("edge_index").tolist() if sg.num_edges else ([], [])
    for e, (s, d) in enumerate(zip(src, dst)):
        adj[s].append((d, e))
        adj[d].append((s, e))
    seeds = [i for i, s in enumerate(sg.array("seed_mask").tolist()) if s]
    out = []
    if t in seeds:
        out.append(ReasoningPath((sg.node_names[t],), ()))
    queue = deque([(t, (t,), ())])
    while queue and len(out) < max_paths:
        node, nodes, edges = queue.popleft()
        if len(edges) >= max_len:
            continue
        for nb, e in adj[node]:
            if nb in nodes:
                continue
            n2, e2 = nodes + (nb,), edges + (e,)
            if nb in set(seeds):
                out.append(ReasoningPath(tuple(sg.node_names[i] for i in reversed(n2)),
                                         tuple(sg._fact(x) for x in reversed(e2))))
                if len(out) >= max_paths:
                    break
            else:
                queue.append((nb, n2, e2))
    return out


# ----------------------------------------------------------------------------- random batches

def random_batch(gen, sizes, node_dim, num_relations, edges_per_node=3, self_loops=True):
    """A GraphBatch of random graphs with ``sizes`` nodes (0 allowed), ties in relevance."""
    datas = []
    for n in sizes:
        e = n * edges_per_node if n else 0
        ei = torch.randint(0, max(n, 1), (2, e), generator=gen)
        if not self_loops and e:
            ei = ei[:, ei[0] != ei[1]]
        datas.append(GraphData(x=torch.randn(n, node_dim, generator=gen), edge_index=ei,
                               edge_type=torch.randint(0, num_relations, (ei.shape[1],), generator=gen),
                               origin=torch.randint(0, 4, (n,), generator=gen),
                               node_relevance=torch.randint(0, 4, (n,), generator=gen).float() / 4,
                               box=torch.rand(n, 5, generator=gen), num_nodes=n))
    return GraphBatch.from_data_list(datas)


SIZES = [[7], [5, 9, 1], [4, 4, 4], [3, 0, 6], [0, 5], [1]]


@pytest.mark.parametrize("sizes", SIZES)
def test_dense_layout_is_to_dense_batch(sizes):
    g = random_batch(torch.Generator().manual_seed(1), sizes, 6, 5)
    B = len(sizes)
    layout = DenseLayout(g.batch, B)
    for x in (g.x, g.origin, g.box, g.node_relevance):
        ref, ref_mask = to_dense_batch(x, g.batch, batch_size=B)
        out = layout.dense(x)
        assert out.dtype == ref.dtype and out.shape == ref.shape and torch.equal(out, ref)
        assert torch.equal(layout.mask, ref_mask)
    assert torch.equal(layout.start, g.ptr[:-1])
    assert layout.full == (len(set(sizes)) == 1)


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("mlp", [False, True])
def test_seed_links_and_verify_match_the_references(tiny, sizes, mlp):  # noqa: F811
    m = make_model(tiny, seed_relation_keys=True, verify_head=True, seed_link_mlp=mlp)
    m.eval()
    m.verify_scale.data.fill_(1.5)
    g = random_batch(torch.Generator().manual_seed(len(sizes)), sizes, 16, m.config.num_relations)
    B = len(sizes)
    M = max(sizes)
    layout = DenseLayout(g.batch, B)
    with torch.no_grad():
        for lay in (layout, None):
            for mm in (M, M + 2):
                out, ref = m._seed_links(g, B, mm, lay), ref_seed_links(m, g, B, mm)
                assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-6, rtol=0)
        vocab = torch.randn(B, len(m.config.answer_vocab))
        pointer = torch.randn(B, M).masked_fill(~layout.mask, float("-inf"))
        for lay in (layout, None):
            assert torch.equal(m._verify(vocab, pointer, layout.mask, g, B, lay),
                               ref_verify(m, vocab, pointer, layout.mask, g, B))


def test_seed_links_without_any_seed_edge(tiny):  # noqa: F811
    m = make_model(tiny, seed_relation_keys=True)
    g = random_batch(torch.Generator().manual_seed(3), [4, 2], 16, m.config.num_relations)
    g.origin = torch.zeros_like(g.origin)
    with torch.no_grad():
        out = m._seed_links(g, 2, 4)
    assert torch.equal(out, ref_seed_links(m, g, 2, 4)) and not out.any()


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("with_relevance,with_origin", [(True, True), (True, False), (False, True), (False, False)])
def test_graph_token_choice_matches_three_sorts(sizes, with_relevance, with_origin):
    g = random_batch(torch.Generator().manual_seed(7), sizes, 8, 5)
    B, n = len(sizes), g.x.shape[0]
    rel = g.node_relevance if with_relevance else None
    origin = g.origin if with_origin else None
    for num_tokens in (1, 3, 32):
        proj = GraphTokenProjector(8, 12, num_tokens=num_tokens)
        out = proj(g.x, g.batch, rel, origin, num_graphs=B)
        t = max(1, min(num_tokens, max(sizes)))
        ref = ref_node_index(n, g.batch, rel, origin, B, t)
        assert torch.equal(out.node_index, ref)
        picked = g.x[ref.clamp(min=0)] if n else g.x.new_zeros(B, t, 8)
        assert torch.equal(out.tokens, proj.mlp(picked) * (ref >= 0).unsqueeze(-1))


def _assert_inject_matches_reference(embeds, ids, tokens, mask, att):
    """inject_graph_tokens (placeholder id 1) equals ref_inject, with ``att`` and without a mask."""
    for a in (att, None):
        out = inject_graph_tokens(embeds, ids, 1, GraphTokens(tokens=tokens, mask=mask, node_index=mask.long()),
                                  attention_mask=a)
        ref = ref_inject(embeds, ids, 1, tokens, mask, a)
        assert torch.equal(out.embeds, ref[0]) and torch.equal(out.attention_mask, ref[1])
        assert torch.equal(out.positions, ref[2])


@pytest.mark.parametrize("seed", range(6))
def test_inject_graph_tokens_matches_the_masked_index_puts(seed):
    gen = torch.Generator().manual_seed(seed)
    b, length, t, d = 3, 9, 4, 5
    ids = torch.randint(10, 20, (b, length), generator=gen)
    where = torch.randint(0, length, (b,), generator=gen)
    ids[torch.arange(b), where] = 1
    embeds = torch.randn(b, length, d, generator=gen)
    tokens = torch.randn(b, t, d, generator=gen)
    mask = torch.rand(b, t, generator=gen) > 0.4  # real tokens anywhere in the row, not only first
    att = (torch.rand(b, length, generator=gen) > 0.2).long()
    _assert_inject_matches_reference(embeds, ids, tokens, mask, att)
    bad = ids.clone()
    bad[1, :] = 11
    with pytest.raises(ValueError, match="row 1"):
        inject_graph_tokens(embeds, bad, 1, GraphTokens(tokens=tokens, mask=mask, node_index=mask.long()))


def test_gnn_without_pooling_and_copy_probability():
    enc = GraphEncoder(GNNConfig(in_dim=6, hidden_dim=8, heads=2, num_relations=5, dropout=0.0)).eval()
    g = random_batch(torch.Generator().manual_seed(5), [4, 0, 6], 6, 5)
    with torch.no_grad():
        full, lean = enc(g, num_graphs=3), enc(g, num_graphs=3, pool=False)
    assert torch.equal(full.node_states, lean.node_states)
    assert lean.graph_state is None and lean.pool_weights is None and full.graph_state.shape == (3, 8)
    gate = CopyGate(8)
    q, vocab = torch.randn(3, 8), torch.randn(3, 4)
    ptr = torch.randn(3, 5)
    ptr[1] = float("-inf")  # a row without any node: no copying
    ptr[2, 3:] = float("-inf")
    assert torch.equal(gate.copy_probability(q, ptr), gate(q, vocab, ptr).copy_prob)


def test_collate_builds_the_same_graph_batch(tiny):  # noqa: F811
    m = make_model(tiny)
    exs = examples(tiny, m)
    exs.append(exs[0].__class__(**{**exs[0].__dict__, "node_names": [], "node_x": np.zeros((0, 16), np.float16),
                                   "edge_index": np.zeros((2, 0), np.int64), "edge_type": np.zeros(0, np.int64),
                                   "origin": np.zeros(0, np.int64), "relevance": np.zeros(0, np.float32),
                                   "box": np.zeros((0, 5), np.float32), "node_targets": []}))
    for subset in (exs[:1], exs, exs[::-1]):
        b = collate(subset, m.config)
        ref = ref_collate_graph(subset, m.config.node_dim)
        assert list(b.graph._store) == list(ref._store) and b.graph.num_graphs == ref.num_graphs
        for k, v in ref._store.items():
            w = b.graph._store[k]
            if isinstance(v, torch.Tensor):
                assert w.dtype == v.dtype and torch.equal(w, v), k
            else:
                assert w == v, k
        L = max(len(e.input_ids) for e in subset)
        for i, e in enumerate(subset):
            assert b.input_ids[i, : len(e.input_ids)].tolist() == e.input_ids
            assert b.attention_mask[i].tolist() == [True] * len(e.input_ids) + [False] * (L - len(e.input_ids))
        assert b.attention_mask.dtype == torch.bool and b.input_ids.dtype == torch.long


def _output(gen, B, V, M, names_per_row, ties=False):
    vocab_logits = torch.randn(B, V, generator=gen)
    if ties:
        vocab_logits = vocab_logits.round()
    ptr = torch.randn(B, M, generator=gen)
    for b, n in enumerate(names_per_row):
        ptr[b, n:] = float("-inf")
    return KnowledgeVQAOutput(loss=None, vocab_logits=vocab_logits, pointer_logits=ptr,
                              copy_prob=torch.rand(B, generator=gen), node_mask=None)


@pytest.mark.parametrize("seed", range(8))
def test_ranked_answers_are_the_top_of_the_distribution(seed):
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    V = 60
    vocab = [f"w{i}" for i in range(V)]
    pool = vocab[:10] + [f"new{i}" for i in range(8)]
    rows = [[rng.choice(pool) for _ in range(rng.randint(0, 7))] for _ in range(4)]  # names repeat, in and out
    out = _output(gen, 4, V, 7, [len(r) for r in rows], ties=seed % 2 == 0)
    if seed == 3:
        out.pointer_logits = None
    for k in (1, 3, 5, 100):
        ref_pp, pp = [], []
        ref = [_top(d, k) for d in answer_distribution(out, vocab, rows, ref_pp)]
        for index in (None, {a: i for i, a in enumerate(vocab)}):
            assert ranked_answers(out, vocab, rows, k, pp, vocab_index=index) == ref
        for a, b in zip(ref_pp, pp):
            assert (a is None and b is None) or torch.equal(a, b)
    dup = vocab[:5] + ["w1"] + vocab[5:]  # a repeated answer: merged as the dict merges it
    assert ranked_answers(out, dup, rows, 4) == [_top(d, 4) for d in answer_distribution(out, dup, rows)]


def _subgraph(gen, n, e, seeds, surface=False):
    ei = torch.randint(0, n, (2, e), generator=gen).numpy()
    sg = Subgraph(edge_index=ei, edge_type=torch.randint(0, 3, (e,), generator=gen).numpy(),
                  edge_relevance=(torch.randint(0, 3, (e,), generator=gen).float() / 3).numpy(),
                  seed_mask=np.isin(np.arange(n), seeds), node_id=np.arange(n))
    sg.num_nodes = n
    sg.node_names = [f"c{i}" for i in range(n)]
    sg.relation_names = ["IsA", "UsedFor", "AtLocation"]
    if surface:
        sg.edge_surface = ["[[x]] is [[y]]" if i % 2 else "" for i in range(e)]
    return sg


@pytest.mark.parametrize("seed", range(6))
def test_paths_and_facts_match_the_references(seed):
    gen = torch.Generator().manual_seed(seed)
    sg = _subgraph(gen, 9, 16, [0, 3], surface=seed % 2 == 1)  # self-loops and repeated edges included
    for t in range(9):
        for max_len in (0, 1, 2, 3):
            for max_paths in (1, 3, 10):
                assert sg.paths(t, max_len, max_paths) == ref_paths(sg, t, max_len, max_paths)
    for about in ((), {"c1", "c4"}):
        facts = sg.facts(max_facts=None, about=about)
        assert [f.surface for f in facts] == [sg._fact(e).surface for e in _fact_order(sg, about)]
        assert facts == [sg._fact(e) for e in _fact_order(sg, about)]
    empty = _subgraph(gen, 3, 0, [1])
    assert empty.paths(1) == [ReasoningPath(("c1",), ())] and empty.paths(0) == []


def _fact_order(sg, about):
    order = np.argsort(-sg.array("edge_relevance"), kind="stable")
    if about:
        hit = np.array([n in about for n in sg.node_names])
        ei = sg.array("edge_index")
        touches = hit[ei[0]] | hit[ei[1]]
        order = np.concatenate([order[touches[order]], order[~touches[order]]])
    return order.tolist()


def test_reasoning_facts_with_kept_sentences_are_the_same():
    gen = torch.Generator().manual_seed(0)
    sentences: dict = {}
    for i in range(4):
        sg = _subgraph(gen, 8, 12, [0, 2], surface=i % 2 == 0)
        for answer in ("c5", "c0", "c7", "nothing"):
            plain = _reasoning_facts(sg, answer, focus=["c1"])
            assert _reasoning_facts(sg, answer, focus=["c1"], sentences=sentences) == plain
            assert _reasoning_facts(sg, answer, focus=["c1"], sentences=sentences) == plain  # read back
    assert sentences


def test_gatv2_attention_matrix_follows_att_changes():
    from ravlm_graph.nn.conv import GATv2Conv

    torch.manual_seed(0)
    conv = GATv2Conv(6, 4, heads=2, edge_dim=5).eval()
    x, table = torch.randn(7, 6), torch.randn(3, 5)
    ei = torch.tensor([[0, 1, 2, 3, 3, 5], [1, 2, 0, 3, 4, 4]])  # one self-loop
    et = torch.tensor([0, 1, 2, 1, 0, 2])
    for step in range(3):
        with torch.no_grad():
            fast = conv(x, ei, table, edge_type=et)  # the inference path (its cached matrices)
        ref = conv(x, ei, table, edge_type=et).detach()  # with gradients: the plain path
        assert torch.allclose(fast, ref, atol=1e-6)
        with torch.no_grad():
            conv.att.add_(0.5)  # changed in place: the kept attention matrix must follow



@pytest.mark.parametrize("fusion", ["graph_tokens", "both", "xattn", "concat", "attention"])
@pytest.mark.parametrize("seed_keys", [True, False])
def test_folded_pointer_logits_match_the_explicit_keys(tiny, fusion, seed_keys):  # noqa: F811
    """At inference the pointer's key maps are folded into the query: the same logits (float
    rounding aside), the same -inf padding, the same answers as the explicit keys."""
    m = make_model(tiny, fusion, seed_relation_keys=seed_keys, verify_head=True)
    m.eval()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in m.parameters():  # every bias non-zero, the seed tables and the verify scale too
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    exs = examples(tiny, m)
    assert len(exs[0].node_names) != len(exs[1].node_names), "the batch should need padding"
    from ravlm_graph.models.knowledge_vqa.processing import FeatureBuilder
    from tests.models.knowledge_vqa.test_modeling import image

    empty = FeatureBuilder(m.config, m.tokenizer, tiny[3]).build(image(), "zzz qqq?", [], ())
    assert not empty.node_names  # a question without any subgraph, between the two
    b = collate([exs[0], empty, exs[1]], m.config, with_targets=False)
    with torch.no_grad():
        m.fold_pointer = False
        assert not m._folds_pointer()
        ref = m(b)
        m.fold_pointer = True
        assert m._folds_pointer()
        out = m(b)
    with torch.enable_grad():  # training reads the explicit keys
        assert not m._folds_pointer()
    assert torch.equal(torch.isinf(out.pointer_logits), torch.isinf(ref.pointer_logits))
    fin = torch.isfinite(ref.pointer_logits)
    assert fin.any() and not fin.all() and not fin[1].any()
    # reassociated float32 sums: the error scales with the size of the terms summed
    tol = 2e-5 * float(ref.pointer_logits[fin].abs().max())
    assert torch.allclose(out.pointer_logits[fin], ref.pointer_logits[fin], rtol=0, atol=tol)
    assert not torch.allclose(out.pointer_logits[fin], ref.pointer_logits[fin] + 10 * tol, rtol=0, atol=tol)
    assert torch.allclose(out.vocab_logits, ref.vocab_logits, rtol=1e-5, atol=1e-5)
    assert torch.allclose(out.copy_prob, ref.copy_prob, rtol=1e-5, atol=1e-6)
    for a, r in zip(ranked_answers(out, m.config.answer_vocab, b.node_names, 3),
                    ranked_answers(ref, m.config.answer_vocab, b.node_names, 3)):
        assert [n for n, _ in a] == [n for n, _ in r]
    # a batch whose graphs are all empty has no pointer at all, either way
    with torch.no_grad():
        solo = m(collate([empty], m.config, with_targets=False))
    assert solo.pointer_logits is None and not solo.copy_prob.any()


@pytest.mark.parametrize("size", [1, 2, 5, 40])
@pytest.mark.parametrize("with_relevance,with_origin", [(True, True), (True, False), (False, True), (False, False)])
def test_graph_token_choice_of_one_graph_matches_three_sorts(size, with_relevance, with_origin):
    """One question (a batch of one graph) takes the projector's short path: the same nodes
    in the same order and the same tokens as the reference sorts."""
    g = random_batch(torch.Generator().manual_seed(size), [size], 8, 5)
    g.node_relevance = torch.round(g.node_relevance * 3) / 3  # ties, broken by node order
    rel = g.node_relevance if with_relevance else None
    origin = g.origin if with_origin else None
    for num_tokens in (1, 2, 3, 32):
        proj = GraphTokenProjector(8, 12, num_tokens=num_tokens)
        out = proj(g.x, g.batch, rel, origin, num_graphs=1)
        t = max(1, min(num_tokens, size))
        ref = ref_node_index(size, g.batch, rel, origin, 1, t)
        assert torch.equal(out.node_index, ref) and out.mask.all() and out.mask.shape == (1, t)
        assert torch.equal(out.tokens, proj.mlp(g.x[ref]) * (ref >= 0).unsqueeze(-1))


@pytest.mark.parametrize("seed", range(8))
def test_inject_graph_tokens_into_one_row_matches_the_masked_index_puts(seed):
    """A batch of one row takes inject_graph_tokens' short path when all its tokens are real;
    a row with padded tokens, or without exactly one placeholder, takes the general one."""
    gen = torch.Generator().manual_seed(seed)
    length, t, d = 9, 3, 5
    ids = torch.randint(10, 20, (1, length), generator=gen)
    ids[0, seed % length] = 1
    embeds = torch.randn(1, length, d, generator=gen)
    tokens = torch.randn(1, t, d, generator=gen)
    att = (torch.rand(1, length, generator=gen) > 0.2).long()
    for mask in (torch.ones(1, t, dtype=torch.bool), torch.tensor([[True, False, True]])):
        _assert_inject_matches_reference(embeds, ids, tokens, mask, att)
    for bad in (torch.full_like(ids, 11), torch.ones_like(ids)):
        with pytest.raises(ValueError, match="row 0"):
            inject_graph_tokens(embeds, bad, 1, GraphTokens(tokens=tokens, mask=torch.ones(1, t, dtype=torch.bool),
                                                             node_index=torch.zeros(1, t, dtype=torch.long)))
