"""`ravlm train`: options and every path a recipe reads are checked before any training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import ravlm_graph.cli.train as train_cli
from ravlm_graph.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "configs" / "builtin.json"
FVQA = ROOT / "configs" / "fvqa.json"


@pytest.fixture()
def no_training(monkeypatch):
    def never(*a, **k):
        raise AssertionError("training started before the inputs were checked")

    monkeypatch.setattr(train_cli, "train_recipe", never)


def _recipe(tmp_path, **changes) -> str:
    rec = json.loads(BUILTIN.read_text())
    rec.update(changes)
    p = tmp_path / "r.json"
    p.write_text(json.dumps(rec))
    return str(p)


@pytest.mark.parametrize("changes, args, match", [
    ({"detector": {"from": "/nonexistent/det"}}, [],
     r"r.json: Recipe.detector.from: /nonexistent/det: no such folder"),
    ({"detector": {"init_from": "/nonexistent/det", "scorer": "cell_net"}}, [],
     r"r.json: Recipe.detector.init_from: /nonexistent/det: no such folder"),
    ({"detector": {"from": "TMP"}}, [], r"Recipe.detector.from: .*: not a layout detector folder "
                                         r"\(no layout_detector.json\)"),
    ({"kg": "/nonexistent/store"}, [], r"r.json: Recipe.kg: /nonexistent/store: no such folder"),
    ({"model": {"trunk_layers": 99}}, [], r"r.json: Recipe.model.trunk_layers: expected 1..6 .*found 99"),
    ({}, ["--out", "TMP/afile"], r"--out: .*afile: exists and is not a folder"),
    ({"out_dir": "TMP/afile"}, [], r"r.json: Recipe.out_dir: .*afile: exists and is not a folder"),
    ({}, ["--epochs", "0"], r"--epochs: expected an integer >= 1, found 0"),
    ({}, ["--out", ""], r"--out: expected a folder path, found an empty string"),
    ({}, ["--questions", "x.json", "--images", "/nonexistent"],
     r"--questions: the recipe .*r.json trains on the 'builtin' dataset, which does not read it"),
    ({}, ["--annotations", "a.json"], r"--annotations: .*the 'builtin' dataset"),
])
def test_bad_inputs_fail_before_training(capsys, tmp_path, no_training, changes, args, match):
    (tmp_path / "afile").write_text("x")
    changes = json.loads(json.dumps(changes).replace("TMP", str(tmp_path)))
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    rc = main(["train", _recipe(tmp_path, **changes), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("ravlm: error: ") and err.count("\n") == 1, err
    assert re.search(match, err), err


def test_fvqa_files_given_as_flags_are_checked_and_named(capsys, tmp_path, no_training):
    rc = main(["train", str(FVQA), "--questions", str(tmp_path / "q.json"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(r"^ravlm: error: --questions: .*q.json: no such file$", err.strip()), err


def test_good_overrides_reach_the_recipe(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake(rec, progress=True):
        seen["rec"] = rec
        return {"engine": "x"}

    monkeypatch.setattr(train_cli, "train_recipe", fake)
    assert main(["train", str(BUILTIN), "--epochs", "1", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert seen["rec"].train["epochs"] == 1 and seen["rec"].out_dir == str(tmp_path / "o")
    capsys.readouterr()
