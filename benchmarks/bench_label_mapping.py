"""Benchmark: how many detector classes land on a ConceptNet concept with edges.

Maps the 80 used COCO classes and the 1,000 ImageNet-1k classes through the shipped label
tables (``ravlm_graph/data/labels/``) onto a KG (default: the bundled CN-100K + FVQA facts)
and prints, per table, the share that lands on a concept with at least ``--min-degree``
edges, how many needed a WordNet hypernym, the classes left without a concept, and a few
example mappings. Target: >= 95 % for each table.

Usage::

    python benchmarks/bench_label_mapping.py [--kg DIR] [--min-degree 1] [--show 10]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _args import nonneg_int, store_dir  # noqa: E402  (benchmarks/ is on the path)

TARGET = 0.95


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kg", type=store_dir, default=None, help="KG store folder (default: bundled CN-100K + FVQA facts)")
    ap.add_argument("--min-degree", type=nonneg_int, default=1, help="edges a concept needs (default 1)")
    ap.add_argument("--show", type=nonneg_int, default=10, help="example mappings to print per table (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from kg_ingest import KnowledgeGraph, load_default
    from ravlm_graph.grounding.label_tables import LabelMapper, coverage, load_label_table

    t0 = time.perf_counter()
    kg = KnowledgeGraph.load(args.kg) if args.kg else load_default(with_fvqa=True)
    kg_name = args.kg or "bundled cn100k+fvqa"
    print(f"KG: {kg_name}: {kg.num_nodes:,} concepts, {kg.num_edges:,} edges ({time.perf_counter() - t0:.1f} s)")
    ok = True
    rng = random.Random(args.seed)
    for name in ("coco", "imagenet"):
        table = load_label_table(name)
        t = time.perf_counter()
        rep = coverage(table, kg, min_degree=args.min_degree)
        dt = time.perf_counter() - t
        flag = "OK" if rep.share >= TARGET else "BELOW TARGET"
        print(f"\n{rep.summary()}  [{flag}, target {100 * TARGET:.0f} %, {dt:.2f} s]")
        if rep.unmatched:
            print(f"  without a concept: {', '.join(rep.unmatched)}")
        mapper = LabelMapper(table, kg, min_degree=args.min_degree)
        used = [c.index for c in table.used]
        for i in sorted(rng.sample(used, min(args.show, len(used)))):
            m = mapper.concept(i)
            how = f"{m.via}" + (f" (level {m.level}: {m.term})" if m.via == "hypernym" else "")
            print(f"  {i:>4} {m.label!r:<32} -> {m.concept!s:<24} degree {m.degree:<5} {how}")
        ok &= rep.share >= TARGET
    print(f"\nsummary: {'both tables reach' if ok else 'a table misses'} the {100 * TARGET:.0f} % target "
          f"(min degree {args.min_degree}, {time.perf_counter() - t0:.1f} s in all)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
