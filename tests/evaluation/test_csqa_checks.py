"""``ravlm bench csqa``: inputs checked before any training, messages in the ``ravlm: error:`` style."""

import json
from pathlib import Path

import pytest

import ravlm_graph.evaluation.csqa as csqa_eval
from ravlm_graph.cli.csqa import main as csqa_main

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "vqa"
TRAIN, DEV = FIX / "csqa_train.jsonl", FIX / "csqa_valid.jsonl"


class Stop(Exception):
    pass


def _args(out, *extra, train=TRAIN, dev=DEV):
    return ["--train", str(train), "--dev", str(dev), "--out", str(out), "--variants", "no_kg", "--no-progress",
            *extra]


def test_out_file_and_bad_limits_are_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(csqa_eval, "load_trunk", lambda cfg: (_ for _ in ()).throw(Stop()))
    taken = tmp_path / "tr.jsonl"
    taken.write_text("x\n")
    for argv, message in (
            (_args(taken), f"--out: expected a folder (created if needed), but {taken} is a file"),
            (_args(tmp_path / "o", "--dev-limit", "0"), "--dev-limit: expected an integer >= 1, found 0"),
            (_args(tmp_path / "o", "--limit", "-2"), "--limit: expected an integer >= 1, found -2"),
            (_args(tmp_path / "o", train=tmp_path / "missing.jsonl"), "missing.jsonl: expected the CommonsenseQA")):
        assert csqa_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ravlm: error: ") and message in err, err
    assert taken.read_text() == "x\n"
    with pytest.raises(ValueError, match="dev_limit: expected an integer >= 1, found 0"):
        csqa_eval.run_csqa(TRAIN, DEV, tmp_path / "o", variants=["no_kg"], dev_limit=0, progress=False)


def test_train_dev_overlap_is_reported_and_loading_bars_are_off(tmp_path, monkeypatch, caplog):
    from transformers.utils import logging as hf_logging

    seen = []

    def fake_load_trunk(cfg):
        seen.append(hf_logging.is_progress_bar_enabled())
        raise Stop()

    monkeypatch.setattr(csqa_eval, "load_trunk", fake_load_trunk)
    with caplog.at_level("WARNING", logger="ravlm_graph.evaluation.csqa"), pytest.raises(Stop):
        csqa_eval.run_csqa(DEV, DEV, tmp_path / "o", variants=["no_kg"], progress=False)
    n = sum(1 for line in DEV.read_text().splitlines() if line.strip())
    first = json.loads(DEV.read_text().splitlines()[0])["id"]
    assert f"{n} of the {n} dev questions are also in the training file (same question ids, e.g. {first!r})" \
        in caplog.text
    assert seen == [False] and hf_logging.is_progress_bar_enabled()
    caplog.clear()
    with caplog.at_level("WARNING", logger="ravlm_graph.evaluation.csqa"), pytest.raises(Stop):
        csqa_eval.run_csqa(TRAIN, DEV, tmp_path / "o", variants=["no_kg"], progress=False)
    assert "also in the training file" not in caplog.text
    assert csqa_eval.train_dev_overlap(csqa_eval.load_questions(TRAIN), csqa_eval.load_questions(DEV)) == []


def test_a_byte_order_mark_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(csqa_eval, "load_trunk", lambda cfg: (_ for _ in ()).throw(Stop()))
    dev = tmp_path / "dev.jsonl"
    dev.write_bytes(b"\xef\xbb\xbf" + DEV.read_bytes())
    with pytest.raises(Stop):  # read, then on to the trunk
        csqa_eval.run_csqa(TRAIN, dev, tmp_path / "o", variants=["no_kg"], progress=False)


def test_results_markdown_repeats_the_overlap_warning():
    res = {"model": {"text_backbone": "minilm", "trunk_layers": 0, "train_layers": 0, "pooling": "mean",
                     "max_length": 64}, "train_file": "t", "dev_file": "d", "n_train": 3, "n_val": 0, "n_dev": 2,
           "kg": None, "torch_threads": 1, "feature_seconds": {}, "variants": {}, "train_dev_overlap": 2}
    assert "2 of the 2 dev questions are also in the training file" in csqa_eval.results_markdown(res)
    assert "training file (same" not in csqa_eval.results_markdown({**res, "train_dev_overlap": 0})
