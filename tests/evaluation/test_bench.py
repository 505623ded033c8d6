"""Runner helpers: coverage of the answer by subgraph budget."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ravlm_graph.evaluation.bench import coverage_by_budget


class FakeRetriever:
    """Returns the first ``budget`` names of a fixed ranking, and records the seeds it got."""

    def __init__(self, ranking):
        self.ranking = ranking
        self.calls = []

    def retrieve(self, entities, question, budget):
        self.calls.append(([(e.concept, e.origin, e.box) for e in entities], question, budget))
        return SimpleNamespace(node_names=self.ranking[:budget])


def test_coverage_grows_with_budget_and_uses_the_rows_image_entities():
    r = FakeRetriever(["knife", "bread", "cut", "kitchen", "fork"])
    rows = [
        {"question": "q1", "answers": ["cut"], "entities": [
            {"concept": "knife", "origin": "image", "score": 0.9, "box": [0, 0, 4, 4], "label": "left"},
            {"concept": "use", "origin": "question", "score": 1.0, "box": None}]},
        {"question": "q2", "answers": ["fork", "spoon"], "entities": []},
        {"question": "q3", "answers": ["yes"], "entities": []},
        {"question": "q4", "answers": ["sky"], "entities": []},
    ]
    cov = coverage_by_budget(r, rows, budgets=(2, 3, 5), progress=False)
    assert cov == {"2": 0.25, "3": 0.5, "5": 0.75}  # yes/no always covered; "sky" never
    seeds, question, budget = r.calls[0]
    assert seeds == [("knife", "image", (0, 0, 4, 4))] and question == "q1" and budget == 2
    assert len(r.calls) == 3 * 3  # the yes/no question needs no retrieval


def test_results_table_reports_unknown_relations():
    from ravlm_graph.evaluation.bench import results_table

    m = {"n": 10, "accuracy": 0.5, "top3": 0.7, "coverage": 0.9,
         "unknown_relations": {"conservation_status": 2, "capital_of": 1}, "n_unknown_relation": 3}
    table = results_table({"fvqa": m, "_meta": {}}, "FVQA")
    assert "| fvqa | 10 | 50.0 | 70.0 | 90.0 |" in table
    assert ("- fvqa: 3 questions with a relation the loader does not know "
            "(conservation_status x2, capital_of x1); evaluated all the same") in table
    clean = results_table({"fvqa": {**m, "unknown_relations": {}, "n_unknown_relation": 0}}, "FVQA")
    assert "does not know" not in clean


# --------------------------------------------------------------------------- FVQA held-out subset

FVQA_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "vqa"


def test_held_out_qids_reads_a_training_summary_or_a_list(tmp_path):
    from ravlm_graph.evaluation.bench import held_out_qids

    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"val_accuracy": 0.5, "holdout_qids": ["96", "272"]}))
    assert held_out_qids(run) == ["96", "272"]
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps([271, "2039"]))
    assert held_out_qids(ids) == ["271", "2039"]
    (run / "summary.json").write_text(json.dumps({"val_accuracy": 0.5}))
    with pytest.raises(ValueError, match="holdout_qids"):
        held_out_qids(run)
    with pytest.raises(FileNotFoundError, match="training run folder"):
        held_out_qids(tmp_path / "missing")


def test_bench_fvqa_unknown_question_ids_fail_before_loading_a_model(tmp_path):
    from ravlm_graph.evaluation.bench import bench_fvqa

    with pytest.raises(ValueError, match="none of the 2 question ids"):
        bench_fvqa(str(tmp_path / "no-model"), str(FVQA_DIR / "fvqa_train_split0_questions.json"),
                   str(FVQA_DIR / "fvqa_train_split0_fact_triples.json"), str(tmp_path / "out"),
                   qids=["no-such-id", "nor-this"])


@pytest.mark.slow
def test_bench_fvqa_held_out_subset_through_the_cli(tmp_path, capsys):
    from ravlm_graph.cli.main import main

    engine = Path(__file__).resolve().parents[2] / "ravlm_graph" / "data" / "engine_builtin"
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(["272", "96"]))
    rc = main(["bench", "fvqa", "--questions", str(FVQA_DIR / "fvqa_train_split0_questions.json"),
               "--facts", str(FVQA_DIR / "fvqa_train_split0_fact_triples.json"), "--model", str(engine),
               "--out", str(tmp_path / "out"), "--held-out", str(ids), "--budgets", "none"])
    assert rc == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["_meta"]["n_questions"] == 2 and res["_meta"]["subset"] == "given question ids"
    assert res["fvqa"]["n"] == 2


def test_load_results_reads_a_folder_or_a_file_and_names_what_is_wrong(tmp_path):
    from ravlm_graph.evaluation.bench import load_results

    (tmp_path / "results.json").write_text(json.dumps({"fvqa": {"accuracy": 0.5}}))
    assert load_results(tmp_path) == load_results(tmp_path / "results.json") == {"fvqa": {"accuracy": 0.5}}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_results(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="no results file"):
        load_results(tmp_path / "none")


def test_plot_comparison_uses_the_splits_every_run_has():
    import matplotlib

    matplotlib.use("Agg")
    from ravlm_graph.evaluation.bench import plot_comparison

    def run(**acc):
        return {s: {"accuracy": a, "per_relation": {"UsedFor": a}} for s, a in acc.items()} | {"_meta": {}}

    kg = run(val=0.9, test_iid=0.8, test_other_style=0.6)
    nokg = run(test_iid=0.2, test_other_style=0.1)
    ax = plot_comparison({"kg": kg, "no kg": nokg})
    assert [t.get_text() for t in ax.get_xticklabels()] == ["test_iid", "test_other_style"]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [10.0, 20.0, 60.0, 80.0]
    ax = plot_comparison({"kg": kg, "no kg": nokg}, by="relation")
    assert sorted(round(p.get_height(), 6) for p in ax.patches) == [15.0, 70.0]
    with pytest.raises(ValueError, match="share no split"):
        plot_comparison({"kg": run(val=0.9), "no kg": run(test_iid=0.2)})


# --------------------------------------------------------------------------- checks before any work

def _run_cli(argv, capsys):
    from ravlm_graph.cli.main import main

    rc = main(argv)
    return rc, capsys.readouterr().err


def _fvqa_args(tmp_path, out, *extra, questions=None):
    return ["bench", "fvqa", "--questions", str(questions or FVQA_DIR / "fvqa_train_split0_questions.json"),
            "--facts", str(FVQA_DIR / "fvqa_train_split0_fact_triples.json"), "--model", str(tmp_path / "no-model"),
            "--out", str(out), "--budgets", "none", *extra]


def _builtin_args(tmp_path, data, out, *extra):
    return ["bench", "builtin", "--model", str(tmp_path / "no-model"), "--budgets", "none", "--data", str(data),
            "--splits", "val", "--out", str(out), *extra]


def test_bench_builtin_checks_scene_sizes_before_loading_the_engine(tmp_path, capsys):
    from tests.datasets.test_builtin import small_builtin_copy

    data = small_builtin_copy(tmp_path / "d", edit_scene=lambda s: s.update(size=[100000, 100000]))
    rc, err = _run_cli(_builtin_args(tmp_path, data, tmp_path / "o"), capsys)
    assert rc == 2
    assert err.startswith("ravlm: error: ") and "val.scenes.jsonl:1: scene size 100000x100000 px" in err
    assert not (tmp_path / "o").exists()


def test_bench_out_must_not_be_a_file(tmp_path, capsys):
    from tests.datasets.test_builtin import small_builtin_copy

    taken = tmp_path / "q5.json"
    taken.write_text("{}")
    for argv in (_fvqa_args(tmp_path, taken), _fvqa_args(tmp_path, taken / "sub"),
                 _builtin_args(tmp_path, small_builtin_copy(tmp_path / "d"), taken),
                 ["bench", "builtin", "--ablate", "--recipe", str(tmp_path / "r.json"), "--out", str(taken)]):
        rc, err = _run_cli(argv, capsys)
        assert rc == 2 and err.startswith("ravlm: error: --out: expected a folder"), (argv, err)
        assert str(taken) in err
    assert taken.read_text() == "{}"


@pytest.mark.parametrize("option, value", [("--limit", "0"), ("--limit", "-1"), ("--limit", "-398")])
def test_bench_limits_below_one_are_refused(tmp_path, capsys, option, value):
    from tests.datasets.test_builtin import small_builtin_copy

    data = small_builtin_copy(tmp_path / "d")
    for argv in (_fvqa_args(tmp_path, tmp_path / "o", option, value),
                 _builtin_args(tmp_path, data, tmp_path / "o", option, value)):
        rc, err = _run_cli(argv, capsys)
        assert rc == 2 and f"ravlm: error: {option}: expected an integer >= 1, found {value}" in err, err
    rc, err = _run_cli(["bench", "builtin", "--ablate", "--recipe", "r.json", "--out", str(tmp_path / "o"),
                        "--train-limit", "0"], capsys)
    assert rc == 2 and "--train-limit: expected an integer >= 1, found 0" in err


def test_bench_empty_question_sets_are_errors(tmp_path, capsys):
    from tests.datasets.test_builtin import small_builtin_copy

    q = tmp_path / "q.json"
    q.write_text("{}")
    rc, err = _run_cli(_fvqa_args(tmp_path, tmp_path / "o", questions=q), capsys)
    assert rc == 2 and err.strip() == f"ravlm: error: no questions in {q}"
    data = small_builtin_copy(tmp_path / "d")
    (data / "val.jsonl").write_text("")
    rc, err = _run_cli(_builtin_args(tmp_path, data, tmp_path / "o"), capsys)
    assert rc == 2 and err.strip() == f"ravlm: error: no questions in {data / 'val.jsonl'}"
    assert not (tmp_path / "o").exists()


def test_bench_builtin_log_and_table_agree(tmp_path, monkeypatch, caplog):
    import ravlm_graph.evaluation.bench as bench
    from tests.datasets.test_builtin import small_builtin_copy

    engine = SimpleNamespace(detector=None, retriever=None, generative=False,
                             model=SimpleNamespace(config=SimpleNamespace(fusion="graph_tokens", uses_graph=False)))
    monkeypatch.setattr(bench.KnowledgeVQA, "from_pretrained", lambda *a, **k: engine)
    metrics = {"accuracy": 0.9275, "top3": 0.95, "coverage": 0.98125, "n": 400, "per_relation": {}}
    monkeypatch.setattr(bench, "run_split", lambda *a, **k: (dict(metrics), []))
    with caplog.at_level("INFO", logger="ravlm_graph.evaluation.bench"):
        res = bench.bench_builtin("m", str(tmp_path / "o"), splits=["val"], data=str(small_builtin_copy(tmp_path / "d")),
                                  budgets=())
    table = bench.results_table(res, "t")
    assert "| val | 400 | 92.8 | 95.0 | 98.1 |" in table
    assert "val: accuracy 92.8 %, coverage 98.1 % (n=400)" in caplog.text


def test_bench_builtin_argument_errors_are_one_ravlm_error_line(capsys, tmp_path):
    from ravlm_graph.cli.main import main

    for argv, match in ((["bench", "builtin", "--out", str(tmp_path / "o")], "--model is required"),
                        (["bench", "builtin", "--model", str(tmp_path), "--out", str(tmp_path / "o"),
                          "--epochs", "2"], "--epochs only applies with --ablate"),
                        (["bench", "builtin", "--model", str(tmp_path), "--out", str(tmp_path / "o"),
                          "--beams", "0"], "--beams: expected an integer >= 1")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("ravlm: error: ") and match in err, err


def test_generated_answers_get_the_official_vqa_score():
    """A generative engine's VQA accuracy is the official leave-one-out score over the human
    answers, not 1 for any answer some annotator gave (OK-VQA / A-OKVQA records carry
    answer concepts as well)."""
    import io
    import json

    from ravlm_graph.datasets import load_vqa
    from ravlm_graph.evaluation import vqa_accuracy
    from ravlm_graph.evaluation.bench import run_split

    humans = ["racing"] * 9 + ["motocross"]
    q = {"questions": [{"question_id": 1, "image_id": 1, "question": "What sport is this?"}]}
    a = {"annotations": [{"question_id": 1, "answers": [{"answer": x, "answer_id": i + 1}
                                                          for i, x in enumerate(humans)]}]}
    recs = load_vqa(io.StringIO(json.dumps(q)), io.StringIO(json.dumps(a)))

    class _Said:
        def __init__(self, text):
            self.answer, self.candidates, self.subgraph = text, [(text, 1.0)], None

        def to_dict(self):
            return {"answer": self.answer}

    class _Generator:
        generative = True

        def __init__(self, text):
            self.text = text

        def answer_batch(self, images, questions, entities, top_k=3, **kw):
            return [_Said(self.text) for _ in questions]

    import ravlm_graph.evaluation.bench as bench

    orig = bench.record_image
    bench.record_image = lambda r: None  # no image files: the stub reads none
    try:
        for said, expected in (("motocross", 0.3), ("racing", 1.0), ("bmx", 0.0)):
            m, _ = run_split(_Generator(said), recs, None, progress=False)
            assert m["vqa_accuracy"] == pytest.approx(vqa_accuracy(said, humans)) == pytest.approx(expected)
    finally:
        bench.record_image = orig


def test_coverage_of_an_engine_without_the_graph_is_not_reported():
    """Without the graph nothing is retrieved: coverage is None (shown as "–"), not the share
    of yes/no questions."""
    from types import SimpleNamespace

    from ravlm_graph.evaluation.bench import comparison_table, results_table, run_split

    recs = [SimpleNamespace(qid=str(i), question="is it?", answers=("yes",), answer_concepts=("yes",),
                            extra={}, facts=()) for i in range(3)]

    class _Said:
        answer, candidates, subgraph = "yes", [("yes", 1.0)], None

        def to_dict(self):
            return {"answer": "yes"}

    class _NoGraph:
        def answer_batch(self, images, questions, entities, top_k=3, **kw):
            return [_Said() for _ in questions]

    import ravlm_graph.evaluation.bench as bench

    orig = bench.record_image
    bench.record_image = lambda r: None
    try:
        m, _ = run_split(_NoGraph(), recs, None, progress=False)
    finally:
        bench.record_image = orig
    assert m["accuracy"] == 1.0 and m["coverage"] is None
    assert "| s | 3 | 100.0 | 100.0 | – |" in results_table({"s": m}, "t")
    assert "| s | – |" in comparison_table({"run": {"s": m}}, "coverage")
