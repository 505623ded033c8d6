"""CommonsenseQA runner: a hash stand-in encoder and a tiny graph, no MiniLM, no shared data.

The synthetic task: "where would you find a qconI?" with choices ansJ. The right
choice is linked to the question concept in the graph (qconI -AtLocation-> ansI); the
texts embed to unrelated hash vectors and the dev questions use concepts never seen in
training, so only the graph can tell the right choice.
"""

import json

import numpy as np
import pytest
import torch

from kg_ingest import GraphBuilder, RelationConfig
from ravlm_graph.cli import csqa as csqa_cli
from ravlm_graph.models.csqa import processing as csqa
from ravlm_graph.models.csqa.configuration import CSQAConfig
from ravlm_graph.evaluation.csqa import run_csqa

FIXTURES = "tests/fixtures/vqa"


from tests.fakes import HashEncoder


N_TRAIN, N_DEV = 40, 20


@pytest.fixture(scope="module")
def kg():
    b = GraphBuilder(RelationConfig())
    for i in range(N_TRAIN + N_DEV):
        b.add("AtLocation", f"qcon{i}", f"ans{i}")
        b.add("RelatedTo", f"qcon{i}", f"filler{i % 7}")
        b.add("IsA", f"ans{i}", f"kind{i % 3}")
    return b.build()


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _questions(ids, seed):
    rng = np.random.default_rng(seed)
    pool = list(ids)
    rows = []
    for i in ids:
        others = rng.choice([j for j in pool if j != i], size=4, replace=False).tolist()
        pos = int(rng.integers(5))
        answers = others[:pos] + [i] + others[pos:]
        rows.append({"id": f"q{i}", "answerKey": "ABCDE"[pos],
                     "question": {"stem": f"Where would you find a qcon{i}?", "question_concept": f"qcon{i}",
                                  "choices": [{"label": "ABCDE"[k], "text": f"ans{a}"} for k, a in enumerate(answers)]}})
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("csqa")
    train = _write(d / "train.jsonl", _questions(range(N_TRAIN), 1))
    dev = _write(d / "valid.jsonl", _questions(range(N_TRAIN, N_TRAIN + N_DEV), 2))
    return train, dev


CFG = CSQAConfig(epochs=25, batch_size=8, lr=1e-2, hidden=32, dropout=0.0, val_fraction=0.0, gnn_hidden=16,
                 gnn_heads=2, budget=8)


@pytest.fixture(scope="module")
def run(files, kg, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    res = run_csqa(*files, out, kg=kg, config=CFG, encoder=HashEncoder(), progress=False)
    return res, out


def test_kg_variant_learns_what_text_cannot(run):
    res, _ = run
    kg_acc = res["variants"]["kg"]["accuracy"]
    text_acc = res["variants"]["no_kg"]["accuracy"]
    assert kg_acc >= 0.9, res["variants"]["kg"]["history"][-3:]
    assert text_acc <= 0.5  # chance is 0.2: hash texts of unseen concepts carry nothing
    assert res["n_dev"] == N_DEV and res["n_train"] == N_TRAIN
    g = res["graph_stats"]["dev"]
    assert g["pairs"] == 5 * N_DEV and g["empty_subgraphs"] == 0 and g["pairs_without_choice_concept"] == 0


def test_outputs_written(run):
    res, out = run
    saved = json.loads((out / "results.json").read_text())
    assert saved["variants"].keys() == {"no_kg", "kg"}
    for v in saved["variants"].values():
        assert {"accuracy", "n", "train_seconds", "settings", "best_epoch", "history"} <= v.keys()
        assert v["n"] == N_DEV and len(v["history"]) == CFG.epochs
    assert saved["variants"]["kg"]["settings"]["budget"] == 8
    md = (out / "results.md").read_text()
    assert "| no_kg |" in md and "| kg |" in md and "frozen" in md
    rows = [json.loads(x) for x in (out / "predictions_kg.jsonl").read_text().splitlines()]
    assert len(rows) == N_DEV
    r = rows[0]
    assert {"qid", "choices", "scores", "predicted", "correct", "subgraph_nodes", "facts", "choice_concepts"} <= r.keys()
    assert len(r["scores"]) == 5 and all(1 <= n <= 8 for n in r["subgraph_nodes"])
    right = r["correct"]
    assert r["choice_concepts"][right] == [r["choices"][right]]
    # The right choice's first fact links it to the question concept.
    assert r["facts"][right][0] == f"{r['qid'].replace('q', 'qcon')} can be found in {r['choices'][right]}"
    acc = np.mean([x["is_correct"] for x in rows])
    assert acc == pytest.approx(res["variants"]["kg"]["accuracy"])
    plain = json.loads((out / "predictions_no_kg.jsonl").read_text().splitlines()[0])
    assert "facts" not in plain and len(plain["scores"]) == 5


def test_same_seed_same_scores(files, kg, tmp_path):
    cfg = CSQAConfig(**{**CFG.__dict__, "epochs": 2, "val_fraction": 0.2, "dropout": 0.2})
    outs = []
    for k in range(2):
        run_csqa(*files, tmp_path / str(k), kg=kg, variants=["kg"], config=cfg, encoder=HashEncoder(), progress=False)
        outs.append([json.loads(x)["scores"] for x in (tmp_path / str(k) / "predictions_kg.jsonl").read_text().splitlines()])
    assert outs[0] == outs[1]
    res = json.loads((tmp_path / "0" / "results.json").read_text())
    assert res["n_val"] == 8 and res["variants"]["kg"]["val_accuracy"] is not None


def test_fixture_files_and_empty_subgraphs(kg, tmp_path):
    # Real CommonsenseQA lines: none of their concepts is in the tiny graph.
    res = run_csqa(f"{FIXTURES}/csqa_train.jsonl", f"{FIXTURES}/csqa_valid.jsonl", tmp_path, kg=kg,
                   config=CSQAConfig(epochs=1, hidden=8, gnn_hidden=8, gnn_heads=2, val_fraction=0.0),
                   encoder=HashEncoder(), progress=False)
    assert res["n_train"] == 3 and res["n_dev"] == 2
    assert res["graph_stats"]["dev"]["empty_subgraphs"] == 10
    rows = [json.loads(x) for x in (tmp_path / "predictions_kg.jsonl").read_text().splitlines()]
    assert [r["subgraph_nodes"] for r in rows] == [[0] * 5, [0] * 5]
    assert all(np.isfinite(r["scores"]).all() for r in rows)


def test_collate_adds_a_context_node_linked_to_the_seeds():
    g = csqa.GraphFeatures(
        num_choices=2, node_ptr=np.array([0, 3, 3]), node_store_id=np.array([5, 6, 7]),
        node_origin=np.array([1, 2, 0]), node_relevance=np.array([1.0, 1.0, 0.5], np.float32),
        edge_ptr=np.array([0, 2, 2]), edge_index=np.array([[0, 1], [2, 2]]), edge_type=np.array([3, 4]),
        num_relations=10)
    b = csqa._collate_graphs(g, np.array([0, 1, 2]), np.array([1, 0]))
    # Graph 0 (pair 1) is empty: only its context node; graph 1 starts at position 1.
    assert b.ctx_pos.tolist() == [0, 1]
    assert b.origin.tolist() == [4, 4, 1, 2, 0]
    assert b.x_rows.tolist() == [-1, -1, 0, 1, 2]
    assert b.batch.tolist() == [0, 1, 1, 1, 1]
    edges = sorted(zip(b.edge_index[0].tolist(), b.edge_index[1].tolist(), b.edge_type.tolist()))
    assert edges == [(1, 2, 10), (1, 3, 11), (2, 4, 3), (3, 4, 4)]


def test_bad_input(files, kg, tmp_path):
    train, dev = files
    with pytest.raises(FileNotFoundError, match="no such file"):
        run_csqa(tmp_path / "missing.jsonl", dev, tmp_path, kg=kg, encoder=HashEncoder(), progress=False)
    unlabelled = tmp_path / "test.jsonl"
    rows = _questions(range(5), 3)
    for r in rows:
        del r["answerKey"]
    _write(unlabelled, rows)
    with pytest.raises(ValueError, match="labelled"):
        run_csqa(train, unlabelled, tmp_path, kg=kg, encoder=HashEncoder(), progress=False)
    with pytest.raises(ValueError, match="unknown variant"):
        run_csqa(train, dev, tmp_path, kg=kg, variants=["kg", "gpt"], encoder=HashEncoder(), progress=False)
    with pytest.raises(ValueError, match="budget"):
        CSQAConfig(budget=0)
    assert csqa_cli.main(["--train", str(tmp_path / "missing.jsonl"), "--dev", str(dev), "--out", str(tmp_path),
                      "--no-progress"]) == 2


def test_text_only_needs_no_graph(files, tmp_path):
    res = run_csqa(*files, tmp_path, kg="no-such-store", variants=["no_kg"],
                   config=CSQAConfig(epochs=1, val_fraction=0.0), encoder=HashEncoder(), progress=False)
    assert res["kg"] is None and res["graph_stats"] == {}
    assert list(res["variants"]) == ["no_kg"] and torch.get_num_threads() >= 1


def test_ravlm_bench_csqa_is_dispatched_to_the_csqa_runner(tmp_path):
    import subprocess
    import sys as _sys

    r = subprocess.run([_sys.executable, "-m", "ravlm_graph", "-v", "bench", "csqa", "--train", str(tmp_path / "no.jsonl"),
                        "--dev", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr
    r = subprocess.run([_sys.executable, "-m", "ravlm_graph", "bench", "csqa", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: ravlm bench csqa" in r.stdout and "--dev" in r.stdout
