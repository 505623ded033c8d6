"""The benchmark scripts refuse bad arguments up front: argparse's one-line ``error:``, exit 2.

Each case runs a script as a user would (``python benchmarks/X.py ...``) with an argument
that is wrong, and checks that it stops before any real work (embedding, training, model
loading, reading a dump): exit status 2, one ``error:`` line naming the problem, no
traceback, and within a few seconds (the work these arguments used to start takes minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "ravlm_graph" / "data" / "engine_builtin"
FAST_S = 20.0  # generous on a loaded machine; the refused runs take minutes


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A scratch folder with one small file in it, and a path that does not exist."""
    d = tmp_path_factory.mktemp("benchargs")
    (d / "q.json").write_text("{}", encoding="utf-8")
    return {"dir": str(d), "file": str(d / "q.json"), "missing": str(d / "missing"),
            "missing_dir_file": str(d / "missing" / "x.csv")}


# (script, argv with {dir}/{file}/{missing}/{missing_dir_file} placeholders, a word the error names)
CASES = [
    ("bench_cli", ["--repeat", "0"], "--repeat"),
    ("bench_cli", ["--json", "{missing_dir_file}"], "--json"),
    ("bench_detector", ["--detector", str(ENGINE / "detector"), "--limit", "-1"], "--limit"),
    ("bench_detector", ["--detector", "{missing}"], "no such folder"),
    ("bench_detector", ["--train-config", "notjson", "--out", "{dir}"], "--train-config"),
    ("bench_detector", ["--train-config", '{"epochs": 1}'], "--out"),
    ("bench_detector", ["--detector", str(ENGINE / "detector"), "--splits", "nosuch"], "--splits"),
    ("bench_detector", ["--detector", str(ENGINE / "detector"), "--batch", "0"], "--batch"),
    ("bench_detector_features", ["--work", "{missing}", "--heads", "notjson"], "--heads"),
    ("bench_detector_features", ["--work", "{missing}", "--heads", "[[0, 0, 0.2]]"], "--heads"),
    ("bench_detector_features", ["--work", "{missing}", "--splits", "nosuch"], "--splits"),
    ("bench_embeddings_scale", ["--scale", "-1"], "--scale"),
    ("bench_embeddings_scale", ["--store", "{dir}"], "not a KG store"),
    ("bench_embeddings_scale", ["--threads", "0"], "--threads"),
    ("bench_fvqa_coverage", ["--questions", "{missing}", "--facts", "{file}"], "no such file"),
    ("bench_fvqa_coverage", ["--questions", "{file}", "--facts", "{file}", "--limit", "-3"], "--limit"),
    ("bench_fvqa_coverage", ["--questions", "{file}", "--facts", "{file}", "--budgets", "-5"], "--budgets"),
    ("bench_fvqa_coverage", ["--questions", "{file}", "--facts", "{file}", "--split", "nosuch"], "--split"),
    ("bench_fvqa_coverage", ["--questions", "{file}", "--facts", "{file}", "--relation-temperature", "1e-9"],
     "relation_temperature"),
    ("bench_grounding", ["--data", "{missing}"], "no such"),
    ("bench_grounding", ["--data", "{dir}", "--limit", "-5"], "--limit"),
    ("bench_grounding", ["--data", "{dir}"], "csqa"),
    ("make_selection_split", ["--out", "{dir}", "--n", "0"], "--n"),
    ("make_selection_split", ["--out", "{dir}", "--seed", "0"], "shipped build's own seed"),
    ("make_selection_split", ["--out", "{dir}", "--shipped", "{dir}"], "not a built-in benchmark folder"),
    ("bench_inference", ["--n", "0"], "--n"),
    ("bench_inference", ["--batch", "0"], "--batch"),
    ("bench_inference", ["--threads", "0"], "--threads"),
    ("bench_inference", ["--split", "nosuch"], "--split"),
    ("bench_inference", ["--kg", "{dir}"], "engine"),
    ("bench_inference", ["--detectors", "{missing}"], "--detectors"),
    ("bench_inference", ["--detectors", str(ENGINE / "detector"), "--given-entities"], "--given-entities"),
    ("bench_inference", ["--floor", "--given-entities"], "--floor"),
    ("bench_ingest", ["--scales", "-1"], "--scales"),
    ("bench_ingest", ["--json", "{missing_dir_file}"], "--json"),
    ("bench_label_mapping", ["--min-degree", "-1"], "--min-degree"),
    ("bench_label_mapping", ["--kg", "{missing}"], "--kg"),
    ("bench_photo_detector", ["--photos", "{dir}"], "no .jpg"),
    ("bench_photo_detector", ["--repeats", "0"], "--repeats"),
    ("bench_retrieval", ["--coverage", "--data", "{missing}"], "--data"),
    ("bench_retrieval", ["--coverage", "--data", "{dir}"], "no such file"),
    ("bench_retrieval", ["--methods", "nosuch"], "--methods"),
    ("bench_retrieval", ["--budgets", "0"], "--budgets"),
    ("bench_retrieval", ["--latency", "--scale", "-1"], "--scale"),
    ("make_imagenet_labels", ["--synsets", "{missing}", "--wordnet", "{dir}", "--out", "{missing_dir_file}"],
     "--synsets"),
    ("make_imagenet_labels", ["--synsets", "{file}", "--wordnet", "{dir}", "--out", "{missing_dir_file}"],
     "data.noun"),
    ("qagnn_style_baseline", ["{missing}", "--tsv", "{missing_dir_file}"], "no such file"),
    ("qagnn_style_baseline", ["{file}", "--tsv", "{missing_dir_file}"], "--tsv"),
    ("synth_conceptnet", ["--lines", "10", "--out", "{missing_dir_file}"], "--out"),
    ("synth_conceptnet", ["--scale", "-1", "--out", "{missing_dir_file}"], "--scale"),
]


def _run(script: str, argv: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *argv], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    return r, time.perf_counter() - t0


@pytest.mark.parametrize("script,argv,word", CASES, ids=[f"{s}:{' '.join(a)}" for s, a, _ in CASES])
def test_bad_argument_is_refused_up_front(files, script, argv, word):
    r, seconds = _run(script, [files.get(a.strip("{}"), a) for a in argv])
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and r.stderr.rstrip().splitlines()[-1] == errors[0], r.stderr
    assert word in errors[0], errors[0]
    assert r.stdout == "", r.stdout  # nothing was started
    assert seconds < FAST_S, f"{script} took {seconds:.1f} s to refuse {argv}"


def test_every_script_is_covered():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")}
    assert scripts == {s for s, _, _ in CASES}


def test_help_still_works():
    r, seconds = _run("bench_retrieval", ["--help"])
    assert r.returncode == 0 and "--methods" in r.stdout, r.stderr
