"""benchmarks/make_selection_split.py: the selection split keeps the questions that ask what
the shipped build trains on, and drops held-out pairs and repeats of training questions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from make_selection_split import select  # noqa: E402


def _write(folder: Path, split: str, rows: list[tuple[str, str, str, list[tuple[str, str]]]]) -> None:
    """rows: (question, target, relation, [(concept, slot), ...])."""
    qs, scenes = [], []
    for i, (question, target, relation, objects) in enumerate(rows):
        sid = f"{split}-{i:05d}"
        qs.append({"qid": sid, "question": question, "target": target, "relation": relation, "answers": ["x"],
                   "scene": sid})
        scenes.append({"id": sid, "objects": [{"concept": c, "slot": s} for c, s in objects]})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    (folder / f"{split}.scenes.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scenes))


def test_selection_keeps_trained_pairs_and_drops_repeats(tmp_path):
    shipped, fresh = tmp_path / "shipped", tmp_path / "fresh"
    (shipped).mkdir()
    (shipped / "manifest.json").write_text(json.dumps({"seed": 0, "held_out_pairs": [["cat", "Desires"]]}))
    _write(shipped, "train", [("What does the cat like?", "cat", "IsA", [("cat", "only")])])
    _write(fresh, "val", [("What does the cat like?", "cat", "IsA", [("cat", "only")]),  # a repeat
                          ("What does the cat like?", "cat", "IsA", [("cat", "left"), ("dog", "right")]),
                          ("What does the cat want?", "cat", "Desires", [("cat", "only")])])  # held out
    _write(fresh, "test_iid", [("Is the dog an animal?", "dog", "IsA", [("dog", "only")])])
    _write(fresh, "test_other_style", [("What does the cat want?", "cat", "Desires", [("cat", "top")]),
                                       ("Is the dog an animal?", "dog", "IsA", [("dog", "top")])])
    for split in ("train", "test_unseen_facts"):
        _write(fresh, split, [])
    (fresh / "manifest.json").write_text("{}")
    counts = select(shipped, fresh, tmp_path / "out")
    assert counts["val"] == {"drawn": 4, "held_out_pair": 1, "repeats_training": 1, "kept": 2}
    assert counts["test_other_style"] == {"drawn": 2, "held_out_pair": 1, "repeats_training": 0, "kept": 1}
    val = [json.loads(line) for line in (tmp_path / "out" / "val.jsonl").read_text().splitlines()]
    assert [q["qid"] for q in val] == ["val-00001", "test_iid-00000"]
    scenes = [json.loads(line) for line in (tmp_path / "out" / "val.scenes.jsonl").read_text().splitlines()]
    assert [s["id"] for s in scenes] == ["val-00001", "test_iid-00000"]
    assert (tmp_path / "out" / "train.jsonl").exists() and (tmp_path / "out" / "manifest.json").exists()
