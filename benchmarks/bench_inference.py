"""Inference speed: the KG engine vs the same model family without the KG, in one run.

    .venv/bin/python benchmarks/bench_inference.py [--kg ENGINE] [--nokg ENGINE] [--n 64] [--batch 1 16]

For each batch size, answers the first ``--n`` questions of the built-in test_iid split
with both engines and prints questions/s and the per-stage time per question:

* KG engine: image detection (grounding of the image), retrieval (question grounding,
  subgraph retrieval, node features), model (vision + GNN + graph tokens + trunk);
* no-KG engine: model (vision + trunk) only — the backbone's own latency.

The KG path's overhead = (KG total - no-KG total) / no-KG total; our target is
<= 30 %. Torch runs on the machine's cores (``--threads``, default 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(engine, recs, batch: int, entities=None) -> dict:
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    n = 0
    for s in range(0, len(recs), batch):
        chunk = recs[s:s + batch]
        ents = None if entities is None else [entities for _ in chunk]
        answers = engine.answer_batch([r.load_image() for r in chunk], [r.question for r in chunk], ents)
        for k, v in answers[0].timings.items():
            stages[k] = stages.get(k, 0.0) + v * len(chunk)
        n += len(chunk)
    total = time.perf_counter() - t0
    return {"questions_per_s": n / total, "ms_per_question": 1000 * total / n,
            "stages_ms": {k: round(1000 * v / n, 2) for k, v in stages.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kg", default=str(ROOT / "ravlm_graph/data/engine_builtin"))
    p.add_argument("--nokg", default=str(ROOT / "ravlm_graph/data/engine_builtin_nokg"))
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kg-cache", default="stores")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from ravlm_graph.datasets import load_builtin
    from ravlm_graph.engine import KnowledgeVQA

    recs = load_builtin("test_iid")[: args.n]
    kg = KnowledgeVQA.from_pretrained(args.kg, kg_cache=args.kg_cache)
    nokg = KnowledgeVQA.from_pretrained(args.nokg, detector=False)
    run(kg, recs[:4], 4)  # warm-up: lazy imports, caches
    run(nokg, recs[:4], 4, entities=[])
    out = {}
    print(f"{'batch':>5} {'engine':<8} {'q/s':>7} {'ms/q':>8}  stages (ms per question)")
    for b in args.batch:
        a = run(kg, recs, b)
        c = run(nokg, recs, b, entities=[])
        overhead = (a["ms_per_question"] - c["ms_per_question"]) / c["ms_per_question"]
        out[str(b)] = {"kg": a, "nokg": c, "kg_overhead": overhead}
        for name, r in (("KG", a), ("no KG", c)):
            print(f"{b:>5} {name:<8} {r['questions_per_s']:>7.1f} {r['ms_per_question']:>8.1f}  {r['stages_ms']}")
        print(f"{b:>5} KG path overhead: {100 * overhead:+.0f} % (target <= +30 %)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
