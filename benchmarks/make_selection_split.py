"""A fresh selection split for choosing settings of the built-in engine, apart from its val.

    .venv/bin/python benchmarks/make_selection_split.py --out runs/selection [--seed 13] [--n 1500]
    ravlm bench builtin --model ENGINE --data runs/selection --splits val test_other_style --budgets none

The shipped val (400 questions) has been read for many choices, so it now favours what is
shipped, and at 94 % its binomial noise is about ±1.2 points. This script draws a new build
of the benchmark with another seed and keeps the questions that ask what the shipped build
(``--shipped``, default the packaged one) *trains* on:

* ``val``: the new build's ``val`` and ``test_iid`` questions (training style) whose
  (object, relation) pair is not among the shipped build's held-out pairs (those belong to
  ``test_unseen_facts``) and that do not repeat a shipped training question (the same text
  with the same objects in the same slots);
* ``test_other_style``: the new build's other-style questions, filtered the same way.

``train``, ``test_iid`` and ``test_unseen_facts`` are copied from the new build unchanged, so
the folder loads as a benchmark; only the two selection splits are meant to be read. With
the defaults: 2,578 and 1,270 questions (about ±0.5 points of noise at 92 %).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from _args import existing_dir, positive_int


def _rows(folder: Path, split: str) -> tuple[list[dict], dict[str, dict]]:
    qs = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    scenes = {}
    for line in (folder / f"{split}.scenes.jsonl").read_text().splitlines():
        if line.strip():
            s = json.loads(line)
            scenes[s["id"]] = s
    return qs, scenes


def _key(q: dict, scenes: dict) -> tuple:
    """A question as a person would see it: its text and the objects in their slots."""
    return q["question"], tuple(sorted((o["concept"], o["slot"]) for o in scenes[q["scene"]]["objects"]))


def select(shipped: Path, fresh: Path, out: Path) -> dict:
    """Write the selection splits of build ``fresh`` into ``out``; returns the counts."""
    manifest = json.loads((shipped / "manifest.json").read_text())
    held = {tuple(p) for p in manifest.get("held_out_pairs", [])}
    train_q, train_s = _rows(shipped, "train")
    seen = {_key(q, train_s) for q in train_q}
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, sources in (("val", ("val", "test_iid")), ("test_other_style", ("test_other_style",))):
        kept_q, kept_s = [], []
        c = {"drawn": 0, "held_out_pair": 0, "repeats_training": 0}
        for src in sources:
            qs, scenes = _rows(fresh, src)
            for q in qs:
                c["drawn"] += 1
                if (q["target"], q["relation"]) in held:
                    c["held_out_pair"] += 1
                elif _key(q, scenes) in seen:
                    c["repeats_training"] += 1
                else:
                    kept_q.append(q)
                    kept_s.append(scenes[q["scene"]])
        c["kept"] = len(kept_q)
        (out / f"{name}.jsonl").write_text("".join(json.dumps(q) + "\n" for q in kept_q))
        (out / f"{name}.scenes.jsonl").write_text("".join(json.dumps(s) + "\n" for s in kept_s))
        counts[name] = c
    for split in ("train", "test_iid", "test_unseen_facts"):
        for suffix in (".jsonl", ".scenes.jsonl"):
            shutil.copy(fresh / f"{split}{suffix}", out / f"{split}{suffix}")
    for extra in ("manifest.json", "ATTRIBUTION.md"):
        if (fresh / extra).exists():
            shutil.copy(fresh / extra, out / extra)
    return counts


def main(argv=None) -> int:
    from ravlm_graph.datasets.builtin import BuildConfig, build_builtin, default_builtin_root

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (a benchmark folder for `--data`)")
    p.add_argument("--seed", type=int, default=13, help="seed of the new build (default 13; the shipped one is 0)")
    p.add_argument("--n", type=positive_int, default=1500, help="questions drawn per split before filtering")
    p.add_argument("--shipped", type=existing_dir, default=None,
                   help="the build the engine was trained on (default: the packaged built-in benchmark)")
    args = p.parse_args(argv)
    shipped = Path(args.shipped) if args.shipped else default_builtin_root()
    if not (shipped / "manifest.json").is_file():
        p.error(f"--shipped {shipped}: not a built-in benchmark folder (no manifest.json)")
    manifest = json.loads((shipped / "manifest.json").read_text())
    if args.seed == manifest.get("seed"):
        p.error(f"--seed {args.seed}: the shipped build's own seed; choose another")
    with tempfile.TemporaryDirectory() as tmp:
        build_builtin(Path(tmp) / "fresh", config=BuildConfig(seed=args.seed, train=100, val=args.n, test=args.n),
                      progress=False)
        counts = select(shipped, Path(tmp) / "fresh", Path(args.out))
    for name, c in counts.items():
        print(f"{name}: {c['kept']} kept of {c['drawn']} drawn ({c['held_out_pair']} ask a held-out pair, "
              f"{c['repeats_training']} repeat a training question)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
