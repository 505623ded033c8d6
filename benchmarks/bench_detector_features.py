"""Layout-cell detection on frozen EfficientNet-lite0 features: object recall per head setting.

    .venv/bin/python benchmarks/bench_detector_features.py --size 96 --train-scenes 1200 --limit 150 --work runs/featbench

The crops are made by ``LayoutCellDetector.training_crops`` (each cell of the scene's own
layout, one cell of another layout as a negative, colour jitter, seed 0) and read once through
the frozen backbone; the pooled features are cached in ``--work`` (``train.npz``,
``SPLIT.npz``), so further head settings cost seconds. Each head is a
:class:`~ravlm_graph.grounding.detectors.features.FeatureTagger`; each test scene's candidate
cells are decoded as ``LayoutCellDetector.detect_batch`` does (the layout whose weakest cell
is most confidently one object wins). Recall = share of annotated objects whose concept is
reported for their scene (as in ``bench_detector.py``).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from _args import json_value, positive_int


def _scenes(split: str, n: int | None):
    from ravlm_graph.datasets import load_builtin

    seen, out = set(), []
    for r in load_builtin(split):
        sid = r.extra["scene"]["id"]
        if sid not in seen:
            seen.add(sid)
            out.append(r)
    return out[:n] if n else out


def _train_crops(records):
    from ravlm_graph.grounding.detectors.layout import LayoutCellDetector

    scenes = [(r.load_image(), [(o["concept"], o["box"]) for o in r.extra["objects"]]) for r in records]
    concepts = sorted({c for _, objs in scenes for c, _ in objs})
    crops, labels, _ = LayoutCellDetector.training_crops(scenes, concepts, negatives_per_scene=1, seed=0)
    return crops, [lab for (lab,) in labels]


def _recall(probs, meta, vocab, layouts) -> float:
    import numpy as np

    from ravlm_graph.grounding.detectors.layout import NONE

    by_scene: dict[int, list] = {}
    for row, (k, li, _si) in enumerate(meta["cells"]):
        by_scene.setdefault(k, []).append((li, row))
    hits = total = 0
    for k, cells in by_scene.items():
        p = probs[[row for _, row in cells]].copy()
        p[:, vocab.index(NONE)] = 0.0
        best, conf = p.argmax(1), p.max(1)
        weakest: dict[int, float] = {}
        for (li, _), c in zip(cells, conf):
            weakest[li] = min(weakest.get(li, 1.0), float(c))
        lb = max(weakest, key=lambda l: (weakest[l], len(layouts[l])))
        got = {vocab[int(b)] for (li, _), b, c in zip(cells, best, conf) if li == lb and c >= 0.2}
        gold = set(meta["gold"][k])
        hits += len(gold & got)
        total += len(gold)
    return hits / max(1, total)


def _size(text: str) -> int:
    """``--size``: the crop side, at least 32 (``FeatureTaggerConfig.input_size``)."""
    v = positive_int(text)
    if v < 32:
        raise argparse.ArgumentTypeError(f"expected a crop side >= 32, found {text!r}")
    return v


def _heads(text: str) -> list:
    """``--heads``: a JSON list of [hidden >= 0, epochs >= 1, dropout in [0, 1)]."""
    heads = json_value(text)
    ok = isinstance(heads, list) and heads and all(
        isinstance(h, list) and len(h) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in h)
        and isinstance(h[0], int) and h[0] >= 0 and isinstance(h[1], int) and h[1] >= 1 and 0 <= h[2] < 1
        for h in heads)
    if not ok:
        raise argparse.ArgumentTypeError(
            f"expected a non-empty JSON list of [hidden >= 0, epochs >= 1, dropout in [0, 1)], found {text!r}")
    return heads


def main(argv=None) -> int:
    from ravlm_graph.datasets.builtin import BUILTIN_SPLITS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=_size, default=96, help="crop side fed to the backbone")
    ap.add_argument("--train-scenes", type=positive_int, default=1200)
    ap.add_argument("--limit", type=positive_int, default=150, help="test scenes per split")
    ap.add_argument("--splits", nargs="+", choices=[s for s in BUILTIN_SPLITS if s != "train"], default=["test_iid", "test_other_style"])
    ap.add_argument("--heads", type=_heads, default='[[0, 30, 0.2], [256, 30, 0.2], [512, 40, 0.3]]',
                    help="JSON list of [hidden, epochs, dropout]")
    ap.add_argument("--work", required=True, help="folder for the cached features")
    ap.add_argument("--threads", type=positive_int, default=1)
    args = ap.parse_args(argv)
    if Path(args.work).exists() and not Path(args.work).is_dir():
        ap.error(f"--work {args.work}: not a folder")
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from ravlm_graph.grounding.detectors.features import FeatureTagger, FeatureTaggerConfig
    from ravlm_graph.grounding.detectors.layout import NONE, _cells, default_layouts
    from ravlm_graph.training import TrainConfig
    from ravlm_graph.training.detectors import fit_feature_tagger

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    reader = FeatureTagger(FeatureTaggerConfig(("x",), input_size=args.size))
    layouts = default_layouts()
    if not (work / "train.npz").exists():
        t0 = time.perf_counter()
        crops, labels = _train_crops(_scenes("train", args.train_scenes))
        np.savez(work / "train.npz", x=reader.features(crops, desc="train crops").numpy(), y=np.array(labels))
        print(f"train: {len(crops)} crops read in {time.perf_counter() - t0:.0f} s")
    tests = {}
    for split in args.splits:
        f = work / f"{split}.npz"
        if not f.exists():
            t0 = time.perf_counter()
            crops, cells, gold = [], [], []
            for k, r in enumerate(_scenes(split, args.limit)):
                im = r.load_image()
                for li, slots in enumerate(layouts):
                    for si, cell in enumerate(_cells(slots, *im.size)):
                        crops.append(im.crop(cell))
                        cells.append((k, li, si))
                gold.append([o["concept"] for o in r.extra["objects"]])
            np.savez(f, x=reader.features(crops, desc=split).numpy(), meta=json.dumps({"cells": cells, "gold": gold}))
            print(f"{split}: {len(crops)} crops read in {time.perf_counter() - t0:.0f} s")
        z = np.load(f)
        tests[split] = (torch.from_numpy(z["x"]), json.loads(str(z["meta"])))
    tr = np.load(work / "train.npz")
    x, y = torch.from_numpy(tr["x"]), [str(v) for v in tr["y"]]
    vocab = tuple(sorted(set(y) - {NONE})) + (NONE,)
    for hidden, epochs, dropout in args.heads:
        head = FeatureTagger(FeatureTaggerConfig(vocab, input_size=args.size, hidden=hidden, dropout=dropout))
        fit_feature_tagger(head, [None] * len(y), [[v] for v in y], features=x,
                           config=TrainConfig(out_dir="", epochs=epochs, batch_size=128, lr=2e-3, weight_decay=1e-4,
                                              warmup_ratio=0.0, grad_clip=0.0, progress=False))
        rec = {}
        for split, (fx, meta) in tests.items():
            with torch.inference_mode():
                probs = torch.softmax(head.head(fx), -1).numpy()
            rec[split] = round(100 * _recall(probs, meta, vocab, layouts), 1)
        print(f"hidden={hidden} epochs={epochs} dropout={dropout}: object recall % {rec}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
