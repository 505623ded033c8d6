"""CommonsenseQA scorer and runner: a tiny trunk, a hash stand-in encoder and a tiny graph (no MiniLM,
no shared data).

The synthetic task: "where would you find a qconI?" with choices ansJ. The right choice is
linked to the question concept in the graph (qconI -AtLocation-> ansI); the dev questions
use concepts never seen in training (their token embeddings stay at their random start), so
only the graph can tell the right choice.
"""

import json

import numpy as np
import pytest
import torch

from kg_ingest import GraphBuilder, RelationConfig
from ravlm_graph.cli import csqa as csqa_cli
from ravlm_graph.evaluation.csqa import load_questions, predict, run_csqa
from ravlm_graph.models.csqa import CSQAConfig, CSQAModel
from ravlm_graph.models.csqa import processing
from ravlm_graph.training import TrainConfig
from ravlm_graph.utils.checkpoint import CheckpointError
from tests.fakes import HashEncoder

FIXTURES = "tests/fixtures/vqa"
N_TRAIN, N_DEV = 40, 20


@pytest.fixture(scope="module")
def trunk_dir(tmp_path_factory):
    """A 2-layer, 32-wide BERT with a word-level vocabulary of the synthetic task, saved as a folder."""
    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("trunk")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "where", "would", "you", "find", "a", "?", "the"]
    words += [f"{p}{i}" for p in ("qcon", "ans") for i in range(N_TRAIN + N_DEV)]
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(d)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(d)
    return str(d)


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


def model_cfg(trunk_dir, **kw):
    base = dict(text_backbone=trunk_dir, trunk_layers=0, train_layers=0, hidden=32, dropout=0.0, gnn_hidden=16, gnn_heads=2,
                budget=8, max_length=16)
    return CSQAConfig(**{**base, **kw})


TRAIN = TrainConfig(epochs=20, batch_size=8, lr=1e-2, backbone_lr=1e-3, warmup_ratio=0.1, progress=False)


@pytest.fixture(scope="module")
def run(files, kg, trunk_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    res = run_csqa(*files, out, kg=kg, config=model_cfg(trunk_dir), train_config=TRAIN, val_fraction=0.0,
                   encoder=HashEncoder(), keep_checkpoints=True, progress=False)
    return res, out


@pytest.mark.slow
def test_kg_variant_learns_what_text_cannot(run):
    res, _ = run
    kg_acc = res["variants"]["kg"]["accuracy"]
    text_acc = res["variants"]["no_kg"]["accuracy"]
    assert kg_acc >= 0.9, res["variants"]["kg"]["history"][-3:]
    assert text_acc <= 0.5  # chance is 0.2: the dev concepts' tokens were never trained
    assert res["n_dev"] == N_DEV and res["n_train"] == N_TRAIN
    g = res["graph_stats"]["dev"]
    assert g["pairs"] == 5 * N_DEV and g["empty_subgraphs"] == 0 and g["pairs_without_choice_concept"] == 0


@pytest.mark.slow
def test_outputs_written_and_checkpoint_round_trip(run, files, trunk_dir):
    res, out = run
    saved = json.loads((out / "results.json").read_text())
    assert saved["variants"].keys() == {"no_kg", "kg"}
    for v in saved["variants"].values():
        assert {"accuracy", "n", "train_seconds", "best_epoch", "history", "steps"} <= v.keys()
        assert v["n"] == N_DEV and len(v["history"]) == TRAIN.epochs and v["best_epoch"] == TRAIN.epochs
    assert saved["model"]["budget"] == 8 and saved["train"]["backbone_lr"] == 1e-3
    md = (out / "results.md").read_text()
    assert "| no_kg |" in md and "| kg |" in md and "fine-tuned" in md
    rows = [json.loads(x) for x in (out / "predictions_kg.jsonl").read_text().splitlines()]
    assert len(rows) == N_DEV
    r = rows[0]
    assert {"qid", "choices", "scores", "predicted", "correct", "subgraph_nodes", "facts", "choice_concepts"} <= r.keys()
    assert len(r["scores"]) == 5 and all(1 <= n <= 8 for n in r["subgraph_nodes"])
    right = r["correct"]
    assert r["choice_concepts"][right] == [r["choices"][right]]
    # The right choice's first fact links it to the question concept.
    assert r["facts"][right][0].startswith(r["qid"].replace("q", "qcon")) and r["choices"][right] in r["facts"][right][0]
    assert np.mean([x["is_correct"] for x in rows]) == pytest.approx(res["variants"]["kg"]["accuracy"])
    plain = json.loads((out / "predictions_no_kg.jsonl").read_text().splitlines()[0])
    assert "facts" not in plain and len(plain["scores"]) == 5
    # The final checkpoint reloads to the same dev scores as the run's predictions.
    loaded = CSQAModel.from_pretrained(out / "checkpoints" / "no_kg" / "final")
    recs = load_questions(files[1])
    tok = processing.tokenize_pairs(recs, _tokenizer(trunk_dir), max_length=16)
    ex = processing.CSQAExamples(tok, np.ones((N_DEV, 5), bool), np.array([x.correct_choice for x in recs]))
    scores = predict(loaded, ex)
    assert np.allclose(np.round(scores, 4), [json.loads(x)["scores"] for x in
                                              (out / "predictions_no_kg.jsonl").read_text().splitlines()], atol=2e-4)


def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def test_same_seed_same_scores_and_held_out_epoch_choice(files, kg, trunk_dir, tmp_path):
    tc = TrainConfig(epochs=2, batch_size=8, lr=1e-2, backbone_lr=1e-3, progress=False)
    outs = []
    for k in range(2):
        run_csqa(*files, tmp_path / str(k), kg=kg, variants=["kg"], config=model_cfg(trunk_dir, dropout=0.2),
                 train_config=tc, val_fraction=0.2, encoder=HashEncoder(), progress=False)
        outs.append([json.loads(x)["scores"] for x in (tmp_path / str(k) / "predictions_kg.jsonl").read_text().splitlines()])
    assert outs[0] == outs[1]
    res = json.loads((tmp_path / "0" / "results.json").read_text())
    v = res["variants"]["kg"]
    assert res["n_val"] == 8 and v["val_accuracy"] == max(h["val_accuracy"] for h in v["history"])
    assert v["history"][v["best_epoch"] - 1]["val_accuracy"] == v["val_accuracy"]


def test_fixture_files_and_empty_subgraphs(kg, trunk_dir, tmp_path):
    # Real CommonsenseQA lines: none of their concepts is in the tiny graph (nor their words in the vocabulary).
    res = run_csqa(f"{FIXTURES}/csqa_train.jsonl", f"{FIXTURES}/csqa_valid.jsonl", tmp_path, kg=kg,
                   config=model_cfg(trunk_dir), train_config=TrainConfig(epochs=1, progress=False),
                   val_fraction=0.0, encoder=HashEncoder(), progress=False)
    assert res["n_train"] == 3 and res["n_dev"] == 2
    assert res["graph_stats"]["dev"]["empty_subgraphs"] == 10
    rows = [json.loads(x) for x in (tmp_path / "predictions_kg.jsonl").read_text().splitlines()]
    assert [r["subgraph_nodes"] for r in rows] == [[0] * 5, [0] * 5]
    assert all(np.isfinite(r["scores"]).all() for r in rows)


def test_collate_adds_a_context_node_linked_to_the_seeds():
    g = processing.GraphFeatures(
        num_choices=2, node_ptr=np.array([0, 3, 3]), node_store_id=np.array([5, 6, 7]),
        node_origin=np.array([1, 2, 0]), node_relevance=np.array([1.0, 1.0, 0.5], np.float32),
        edge_ptr=np.array([0, 2, 2]), edge_index=np.array([[0, 1], [2, 2]]), edge_type=np.array([3, 4]),
        num_relations=10)
    table = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    b = processing.collate_graphs(g, table, np.array([2, 1, 0]), [1, 0])
    # Graph 0 (pair 1) is empty: only its context node; graph 1 starts at position 1.
    assert b.ctx_pos.tolist() == [0, 1]
    assert b.origin.tolist() == [4, 4, 1, 2, 0]
    assert b.x.tolist() == [[0, 0], [0, 0], [5, 6], [3, 4], [1, 2]]
    assert b.batch.tolist() == [0, 1, 1, 1, 1]
    edges = sorted(zip(b.edge_index[0].tolist(), b.edge_index[1].tolist(), b.edge_type.tolist()))
    assert edges == [(1, 2, 10), (1, 3, 11), (2, 4, 3), (3, 4, 4)]


def test_pairs_are_tokenised_once_and_padded_per_batch(files, trunk_dir):
    recs = load_questions(files[0])[:3]
    tok = processing.tokenize_pairs(recs, _tokenizer(trunk_dir), max_length=16)
    assert len(tok.input_ids) == 15
    # [CLS] where would you find a qcon0 ? [SEP] ansJ [SEP]
    assert len(tok.input_ids[0]) == 11 and tok.token_type_ids[0] == [0] * 9 + [1] * 2
    batch = tok.pad([0, 1])
    assert batch["input_ids"].shape == (2, 11) and batch["attention_mask"].sum().item() == 22


def test_model_checks(trunk_dir, tmp_path):
    with pytest.raises(ValueError, match="needs the store's relation count"):
        CSQAModel(model_cfg(trunk_dir, use_kg=True))
    with pytest.raises(ValueError, match="trunk_layers: expected at most the trunk's 2 layers, found 3"):
        CSQAModel(model_cfg(trunk_dir, trunk_layers=3))
    with pytest.raises(ValueError, match="train_layers: expected at most the trunk's 1 layers, found 2"):
        CSQAModel(model_cfg(trunk_dir, trunk_layers=1, train_layers=2))
    top = CSQAModel(model_cfg(trunk_dir, train_layers=1))
    assert [any(p.requires_grad for p in layer.parameters()) for layer in top.trunk.encoder.layer] == [False, True]
    with pytest.raises(ValueError, match="pooling: expected one of"):
        model_cfg(trunk_dir, pooling="max")
    with pytest.raises(CheckpointError, match="neither 'minilm' nor a local model folder"):
        CSQAModel(model_cfg(trunk_dir, text_backbone=str(tmp_path / "nope")))
    m = CSQAModel(model_cfg(trunk_dir, trunk_layers=1, pooling="cls"))
    assert len(m.trunk.encoder.layer) == 1 and "pooling='cls'" in repr(m)
    assert not any(p.requires_grad for p in m.trunk.embeddings.parameters())
    m.save_pretrained(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    (tmp_path / "ck" / "config.json").write_text(json.dumps({**cfg, "trunk_layers": 2}))
    with pytest.raises(CheckpointError, match="weights do not match config.json"):
        CSQAModel.from_pretrained(tmp_path / "ck")


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
    (tmp_path / "bad.json").write_text('{"model": {}, "optim": {}}')
    assert csqa_cli.main(["--train", str(train), "--dev", str(dev), "--out", str(tmp_path),
                          "--config", str(tmp_path / "bad.json")]) == 2


def test_settings_from_config_file_and_options(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"model": {"trunk_layers": 2, "budget": 16},
                                                 "train": {"epochs": 3, "lr": 0.01}}))
    args = csqa_cli.add_arguments(__import__("argparse").ArgumentParser()).parse_args(
        ["--train", "t", "--dev", "d", "--out", "o", "--config", str(tmp_path / "c.json"), "--budget", "8",
         "--link-features"])
    cfg, tc = csqa_cli.settings_from_args(args)
    assert (cfg.trunk_layers, cfg.budget, tc.epochs, tc.lr, tc.backbone_lr) == (2, 8, 3, 0.01, 1e-4)
    assert cfg.link_features is True
    # the shipped settings file holds the defaults
    args.config, args.budget, args.link_features = "configs/csqa.json", None, None
    shipped, shipped_tc = csqa_cli.settings_from_args(args)
    assert shipped == CSQAConfig() and shipped_tc.backbone_lr == 1e-4 and shipped_tc.epochs == 2


def test_text_only_needs_no_graph(files, trunk_dir, tmp_path):
    res = run_csqa(*files, tmp_path, kg="no-such-store", variants=["no_kg"], config=model_cfg(trunk_dir),
                   train_config=TrainConfig(epochs=1, progress=False), val_fraction=0.0, progress=False)
    assert res["kg"] is None and res["graph_stats"] == {} and res["node_encoder"] is None
    assert list(res["variants"]) == ["no_kg"]


def test_ravlm_bench_csqa_is_dispatched_to_the_csqa_runner(tmp_path):
    import subprocess
    import sys as _sys

    r = subprocess.run([_sys.executable, "-m", "ravlm_graph", "-v", "bench", "csqa", "--train", str(tmp_path / "no.jsonl"),
                        "--dev", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr
    r = subprocess.run([_sys.executable, "-m", "ravlm_graph", "bench", "csqa", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: ravlm bench csqa" in r.stdout and "--backbone-lr" in r.stdout


def test_link_features_count_question_choice_edges_and_paths():
    # nodes: 0 question, 1 choice, 2 other, 3 both; relations 0..2
    origin = np.array([1, 2, 0, 3])
    ei = np.array([[0, 1, 0, 2, 3, 2], [1, 0, 2, 1, 2, 2]])
    et = np.array([2, 1, 0, 0, 1, 1])
    f = processing.link_features(ei, et, origin, 3)
    assert f.shape == (processing.num_link_features(3),) == (9,)
    # q->c: 0->1 (rel 2); c->q: 1->0 (rel 1); node 3 is both but only links to node 2
    assert f[:3].tolist() == [0, 0, 1] and f[3:6].tolist() == [0, 1, 0]
    # two-step paths through node 2: question side {0, 3} (the self-loop 2->2 is not a seed), choice side {1, 3}
    assert f[6] == 4 and f[7] == 1 and f[8] == 1
    empty = processing.link_features(np.zeros((2, 0), np.int64), np.zeros(0, np.int64), np.array([1]), 3)
    assert empty.tolist() == [0] * 7 + [0, 0]


def test_link_features_reach_the_model_and_change_its_scores(files, kg, trunk_dir, tmp_path):
    tc = TrainConfig(epochs=1, batch_size=8, lr=1e-2, backbone_lr=1e-3, progress=False)
    scores = {}
    for flag in (False, True):
        res = run_csqa(*files, tmp_path / str(flag), kg=kg, variants=["kg"], config=model_cfg(trunk_dir, link_features=flag),
                       train_config=tc, val_fraction=0.0, encoder=HashEncoder(), progress=False)
        assert res["model"]["link_features"] is flag
        scores[flag] = [json.loads(x)["scores"] for x in (tmp_path / str(flag) / "predictions_kg.jsonl").read_text().splitlines()]
    assert scores[False] != scores[True]
    cfg = model_cfg(trunk_dir, use_kg=True, num_relations=kg.num_relations, node_dim=HashEncoder().dim, link_features=True)
    model = CSQAModel(cfg)
    assert model.link[0].in_features == processing.num_link_features(kg.num_relations)


def test_text_facts_are_read_after_the_choice_and_never_cut_the_question(files, kg, trunk_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trunk_dir, local_files_only=True)
    recs = load_questions(files[0], limit=2)
    c = processing.max_choices(recs)
    facts = [[f"fact {k} about choice {p}" for k in range(40)] for p in range(len(recs) * c)]
    plain = processing.tokenize_pairs(recs, tok, max_length=32, num_choices=c)
    read = processing.tokenize_pairs(recs, tok, max_length=32, num_choices=c, facts=facts)
    for p in range(len(recs) * c):
        q_ids = tok(recs[p // c].question.strip())["input_ids"]
        assert read.input_ids[p][:len(q_ids)] == q_ids  # the whole question first
        assert len(read.input_ids[p]) == 32  # the facts were cut to fit
        assert len(read.input_ids[p]) > len(plain.input_ids[p])
        if len(plain.input_ids[p]) < 32:  # question and choice, then the facts
            assert read.input_ids[p][:len(plain.input_ids[p]) - 1] == plain.input_ids[p][:-1]
    with pytest.raises(ValueError, match="one per pair"):
        processing.tokenize_pairs(recs, tok, max_length=32, num_choices=c, facts=facts[:-1])


def test_text_facts_reach_only_the_kg_variant(files, kg, trunk_dir, tmp_path):
    tc = TrainConfig(epochs=1, batch_size=8, lr=1e-2, backbone_lr=1e-3, progress=False)
    scores = {}
    for n in (0, 4):
        res = run_csqa(*files, tmp_path / str(n), kg=kg, variants=["no_kg", "kg"],
                       config=model_cfg(trunk_dir, text_facts=n, max_length=96), train_config=tc, val_fraction=0.0,
                       encoder=HashEncoder(), progress=False)
        assert res["model"]["text_facts"] == n
        scores[n] = {v: [json.loads(x)["scores"] for x in (tmp_path / str(n) / f"predictions_{v}.jsonl").read_text().splitlines()]
                     for v in ("no_kg", "kg")}
    assert scores[0]["no_kg"] == scores[4]["no_kg"]  # the text-only variant never reads the graph
    assert scores[0]["kg"] != scores[4]["kg"]
    with pytest.raises(ValueError, match="text_facts"):
        CSQAConfig(text_facts=-1)


def test_pair_facts_put_question_choice_links_first():
    from ravlm_graph.types import Fact

    class SG:
        num_edges = 3

        def facts(self):
            return [Fact("dog", "IsA", "animal"), Fact("bone", "RelatedTo", "dog"), Fact("cat", "IsA", "pet")]

    out = processing._pair_facts(SG(), {"dog"}, 3, {"bone"})
    assert out[0] == Fact("bone", "RelatedTo", "dog").verbalize()
    assert out[1] == Fact("dog", "IsA", "animal").verbalize()
    assert processing._pair_facts(SG(), {"dog"}, 0, {"bone"}) == []
