"""Benchmark: the photo detector on the photos shipped in ``ravlm_graph/data/photos/``.

For each photo prints the SSD-MobileNet-v2 COCO boxes, the top-3 EfficientNet-lite0
ImageNet tags of the whole image, the fused entities, and the time per part; then the
median and mean time per photo. Models are loaded (and run once) before timing.

Usage::

    python benchmarks/bench_photo_detector.py [--threads 2] [--repeats 3] [--photos DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _args import existing_dir, positive_int  # noqa: E402  (benchmarks/ is on the path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=positive_int, default=2, help="CPU threads for torch and OpenCV (default 2)")
    ap.add_argument("--repeats", type=positive_int, default=3, help="timed runs per photo; the median is kept (default 3)")
    ap.add_argument("--photos", type=existing_dir, default=str(ROOT / "ravlm_graph" / "data" / "photos"))
    args = ap.parse_args(argv)
    photos = sorted(Path(args.photos).glob("*.jpg"))
    if not photos:
        ap.error(f"--photos {args.photos}: no .jpg photos found")

    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    from kg_ingest import load_default
    from ravlm_graph.grounding.detectors.photo import PhotoDetector, PhotoDetectorConfig

    kg = load_default(with_fvqa=True)
    t = time.perf_counter()
    det = PhotoDetector(PhotoDetectorConfig(), kg=kg).load()
    det.detect(photos[0])  # first run pays for lazy initialisation inside OpenCV / torch
    print(f"models loaded and warmed up in {time.perf_counter() - t:.2f} s; {args.threads} threads\n")

    totals = []
    for p in photos:
        runs = [det.detect_detailed(p) for _ in range(args.repeats)]
        res = runs[0]
        med = {k: statistics.median(r.seconds.get(k, 0.0) for r in runs) for k in ("boxes", "tags", "total")}
        totals.append(med["total"])
        top3 = det.tag_images([__import__("PIL.Image", fromlist=["Image"]).open(p)], top_k=3)[0]
        print(f"{p.name}: {med['total'] * 1000:.0f} ms (boxes {med['boxes'] * 1000:.0f}, "
              f"tags {med['tags'] * 1000:.0f})")
        print("  SSD boxes:    " + (", ".join(f"{b.name} {b.score:.2f} {tuple(round(v) for v in b.box)}"
                                              for b in res.boxes) or "none"))
        print("  ImageNet top3: " + ", ".join(f"{n} {pr:.2f}" for _, n, pr in top3))
        print("  entities:     " + (", ".join(f"{e.concept} {e.score:.2f}{' [box]' if e.box else ''}"
                                              for e in res.entities) or f"none ({res.empty_reason})"))
    print(f"\nsummary: {len(photos)} photos, median {statistics.median(totals) * 1000:.0f} ms, "
          f"mean {statistics.mean(totals) * 1000:.0f} ms, max {max(totals) * 1000:.0f} ms per photo "
          f"({args.threads} threads, both parts, box crops tagged)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
