"""Object recall of a layout-cell detector on the built-in benchmark's scenes.

    .venv/bin/python benchmarks/bench_detector.py --detector ravlm_graph/data/engine_builtin/detector
    .venv/bin/python benchmarks/bench_detector.py --train-config '{"epochs": 8, "extra_scenes": 4000}' --out runs/det
    .venv/bin/python benchmarks/bench_detector.py --detector DET --splits val --layout-choice cells head joint --min-score 0.2 0.05

With ``--train-config`` a detector is first trained from the training split exactly as
``ravlm train`` does (``recipes.train_detector``, seed 0) and saved to ``--out``.
Per split: object recall (share of annotated objects whose concept the detector reports
for that scene), precision (share of reported concepts that are in the scene), the share
of scenes whose object count is right, and detection time per scene (scenes read ``--batch``
at a time, after one warm-up batch). ``--layout-choice`` and ``--min-score`` evaluate a
cell-net detector with each way of choosing the layout and each cell threshold in turn
(pick them on ``val``, never on a test split).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _args import existing_dir, json_object, positive_int, probability


def evaluate(det, split: str, limit: int | None = None, batch: int = 16) -> dict:
    from ravlm_graph.datasets import load_builtin

    seen, scenes = set(), []
    for r in load_builtin(split):
        sid = r.extra["scene"]["id"]
        if sid not in seen:
            seen.add(sid)
            scenes.append(r)
    scenes = scenes[:limit] if limit else scenes
    images = [r.load_image() for r in scenes]
    det.detect_batch(images[:batch])  # warm-up
    t0 = time.perf_counter()
    found = []
    for s in range(0, len(images), batch):
        found += det.detect_batch(images[s:s + batch])
    dt = time.perf_counter() - t0
    hits = total = reported = correct = count_ok = 0
    for r, ents in zip(scenes, found):
        gold = {o["concept"] for o in r.extra["objects"]}
        got = {e.concept for e in ents}
        hits += len(gold & got)
        total += len(gold)
        reported += len(got)
        correct += len(got & gold)
        count_ok += len(ents) == len(r.extra["objects"])
    return {"scenes": len(scenes), "objects": total, "found": hits, "recall": hits / max(1, total),
            "precision": correct / max(1, reported), "count_accuracy": count_ok / max(1, len(scenes)),
            "ms_per_scene": 1000 * dt / max(1, len(scenes))}


def main(argv=None) -> int:
    from ravlm_graph.datasets.builtin import BUILTIN_SPLITS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", type=existing_dir, default=None, help="a detector folder to evaluate")
    p.add_argument("--train-config", type=json_object, default=None, help="JSON detector config to train first")
    p.add_argument("--out", default=None, help="where a trained detector is saved")
    p.add_argument("--seed", type=int, default=0, help="training seed (drawn scenes, initial weights)")
    p.add_argument("--splits", nargs="+", choices=BUILTIN_SPLITS, default=["val", "test_iid", "test_other_style"])
    p.add_argument("--limit", type=positive_int, default=None, help="scenes per split")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--batch", type=positive_int, nargs="+", default=[16], help="scenes per detect_batch call")
    p.add_argument("--layout-choice", nargs="+", choices=("cells", "head", "joint"), default=None,
                   help="cells, head and/or joint (cell-net detectors)")
    p.add_argument("--min-score", type=probability, nargs="+", default=None, help="cell score thresholds to try")
    args = p.parse_args(argv)
    if args.train_config is not None and not args.out:
        p.error("--train-config needs --out")
    if args.train_config is None and not args.detector:
        p.error("give --detector or --train-config")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f"--out {args.out}: not a folder")
    needs_cell_net = [c for c in args.layout_choice or [] if c != "cells"]
    if needs_cell_net and args.train_config is not None and args.train_config.get("scorer") != "cell_net":
        p.error(f"--layout-choice {needs_cell_net[0]} needs a CellNet detector (--train-config with \"scorer\": \"cell_net\")")
    import torch

    torch.set_num_threads(args.threads)
    from ravlm_graph.grounding.detectors.layout import LayoutCellDetector

    if args.train_config is not None:
        from ravlm_graph.datasets import load_builtin
        from ravlm_graph.recipes import train_detector

        t0 = time.perf_counter()
        det = train_detector(load_builtin("train"), args.train_config, args.seed)
        print(f"trained in {time.perf_counter() - t0:.0f} s")
        det.save_pretrained(args.out)
    else:
        det = LayoutCellDetector.from_pretrained(args.detector)
        if needs_cell_net and not det.cell_net:
            p.error(f"--layout-choice {needs_cell_net[0]} needs a CellNet detector; {args.detector} has none")
    torch.set_num_threads(args.threads)
    for choice, min_score in [(c, t) for c in args.layout_choice or [det.layout_choice]
                              for t in args.min_score or [det.min_score]]:
        det.layout_choice, det.min_score = choice, min_score
        for batch in args.batch:
            for sp in args.splits:
                m = evaluate(det, sp, args.limit, batch)
                print(f"{sp:>18} (layout {choice}, min score {min_score}, batch {batch}): recall {100 * m['recall']:.1f} %  "
                      f"precision {100 * m['precision']:.1f} %  object count right {100 * m['count_accuracy']:.1f} %  "
                      f"{m['ms_per_scene']:.1f} ms/scene ({m['scenes']} scenes, {m['found']} of {m['objects']} objects found)",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
