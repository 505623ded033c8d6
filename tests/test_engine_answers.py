"""The shipped engines with the pure-torch GNN layers: their weights load with strict key
checks, the GNN gives torch_geometric's outputs, and the engines answer as before.

``fixtures/engines/answers.json`` was written by ``fixtures/engines/record_answers.py``
with the code of the commit it names (when the GNN ran on torch_geometric's layers).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")
safetensors_torch = pytest.importorskip("safetensors.torch")

from ravlm_graph.nn.gnn import GNNConfig, GraphEncoder  # noqa: E402
from ravlm_graph.utils.graph import GraphBatch, GraphData  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "ravlm_graph" / "data"
ANSWERS = Path(__file__).resolve().parent / "fixtures" / "engines" / "answers.json"
GNN_ENGINES = ("engine_builtin", "engine_photo", "engine_fvqa")


def _pyg_conv(config: GNNConfig):
    """The convolution the encoder was built with before it had its own layers."""
    h = config.hidden_dim
    if config.kind == "rgcn":
        return pyg_nn.RGCNConv(h, h, config.total_relations, num_bases=config.num_bases, num_blocks=config.num_blocks)
    if config.kind == "gatv2":
        return pyg_nn.GATv2Conv(h, h // config.heads, heads=config.heads, concat=True, dropout=config.dropout,
                                edge_dim=config.relation_dim or h, add_self_loops=True, fill_value="mean")
    return pyg_nn.TransformerConv(h, h // config.heads, heads=config.heads, concat=True, dropout=config.dropout,
                                  edge_dim=config.relation_dim or h, root_weight=True)


def _shipped_gnn(name: str):
    cfg = json.loads((DATA / name / "config.json").read_text())
    config = GNNConfig(kind=cfg["gnn_kind"], in_dim=cfg["node_dim"], hidden_dim=cfg["gnn_hidden"],
                       num_layers=cfg["gnn_layers"], num_relations=cfg["num_relations"], dropout=cfg["dropout"])
    weights = safetensors_torch.load_file(str(DATA / name / "model.safetensors"))
    state = {k[len("gnn."):]: v for k, v in weights.items() if k.startswith("gnn.")}
    return config, state


def _graphs(config: GNNConfig):
    g = torch.Generator().manual_seed(0)
    out = []
    for n, e in ((12, 30), (1, 0), (7, 9)):  # the second graph: one isolated node, no edges
        ei = torch.randint(0, n, (2, e), generator=g)
        out.append(GraphData(x=torch.randn(n, config.in_dim, generator=g), edge_index=ei,
                             edge_type=torch.randint(0, config.num_relations, (e,), generator=g),
                             origin=torch.randint(0, 4, (n,), generator=g), node_relevance=torch.rand(n, generator=g),
                             num_nodes=n))
    return GraphBatch.from_data_list(out)


@pytest.mark.parametrize("name", GNN_ENGINES)
def test_shipped_gnn_loads_strictly_and_matches_torch_geometric(name):
    config, state = _shipped_gnn(name)
    ours = GraphEncoder(config).eval()
    ours.load_state_dict(state, strict=True)
    theirs = GraphEncoder(config)
    for block in theirs.layers:
        block.conv = _pyg_conv(config)
    theirs.load_state_dict(state, strict=True)
    theirs.eval()
    batch = _graphs(config)
    with torch.no_grad():
        a, b = ours(batch), theirs(batch.to_pyg())
    torch.testing.assert_close(a.node_states, b.node_states, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.graph_state, b.graph_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.pool_weights, b.pool_weights, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_shipped_engines_answer_as_before():
    from ravlm_graph.datasets import load_builtin
    from ravlm_graph.engine import KnowledgeVQA

    want = json.loads(ANSWERS.read_text())
    recs = load_builtin(want["split"])[: len(want["questions"])]
    assert [r.question for r in recs] == want["questions"]
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for name, rows in want["engines"].items():
            engine = KnowledgeVQA.from_pretrained(DATA / name, detector=(name == "engine_builtin"))
            for r, row in zip(recs, rows):
                ents = None if name == "engine_builtin" else list(r.entities)
                a = engine.answer(r.load_image(), r.question, entities=ents, top_k=5)
                where = f"{name}: {r.question!r}"
                assert a.answer == row["answer"], where
                assert a.score == pytest.approx(row["score"], abs=1e-4), where
                assert [c for c, _ in a.candidates] == [c for c, _ in row["candidates"]], where
                assert [p for _, p in a.candidates] == pytest.approx([p for _, p in row["candidates"]], abs=1e-4)
                assert a.copy_prob == pytest.approx(row["copy_prob"], abs=1e-4), where
    finally:
        torch.set_num_threads(n)
