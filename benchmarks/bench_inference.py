"""Inference speed: the KG engine vs the same model family without the KG, in one run.

    .venv/bin/python benchmarks/bench_inference.py [--kg ENGINE] [--nokg ENGINE] [--n 64] [--batch 1 16]

For each batch size, answers the first ``--n`` questions of the built-in test_iid split
with both engines and prints questions/s and the per-stage time per question:

* KG engine: image detection (grounding of the image), retrieval (question grounding,
  subgraph retrieval, node features), model (vision + GNN + graph tokens + trunk);
* no-KG engine: model (vision + trunk) only — the backbone's own latency.

The KG path's overhead = (KG total - no-KG total) / no-KG total; our target is
<= 30 %. Torch runs on the machine's cores (``--threads``, default 2).

``--budgets 96 48 24`` repeats the KG engine's run with smaller subgraph node budgets
(fewer nodes through the GNN; the engine's own budget first) and prints the accuracy on
the same questions next to the speed, so a faster setting is judged with what it costs.
``--given-entities`` replaces the detector by the scenes' annotated objects (the
detector's share of the overhead, isolated).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(engine, recs, batch: int, entities=None) -> dict:
    """Answer ``recs`` in batches; speed, per-stage ms per question and accuracy.

    ``entities``: None (the engine's detector), a list (the same for every question), or
    a callable record -> entities.
    """
    stages: dict[str, float] = {}
    images = [r.load_image() for r in recs]  # decoded once: image decoding is not what is measured
    t0 = time.perf_counter()
    n = hits = 0
    for s in range(0, len(recs), batch):
        chunk = recs[s:s + batch]
        if entities is None:
            ents = None
        elif callable(entities):
            ents = [entities(r) for r in chunk]
        else:
            ents = [entities for _ in chunk]
        answers = engine.answer_batch(images[s:s + batch], [r.question for r in chunk], ents)
        for k, v in answers[0].timings.items():
            stages[k] = stages.get(k, 0.0) + v * len(chunk)
        hits += sum(a.answer in r.answers for a, r in zip(answers, chunk))
        n += len(chunk)
    total = time.perf_counter() - t0
    return {"questions_per_s": n / total, "ms_per_question": 1000 * total / n, "accuracy": hits / n,
            "stages_ms": {k: round(1000 * v / n, 2) for k, v in stages.items()}}


def _set_budget(engine, budget: int) -> None:
    """The node budget belongs to the retriever's config (a frozen dataclass)."""
    r = engine.features.retriever
    r.config = dataclasses.replace(r.config, budget=budget)
    r.clear_cache()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kg", default=str(ROOT / "ravlm_graph/data/engine_builtin"))
    p.add_argument("--nokg", default=str(ROOT / "ravlm_graph/data/engine_builtin_nokg"))
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kg-cache", default=None, help="where the bundled KG is built (default: the user cache)")
    p.add_argument("--budgets", type=int, nargs="+", default=None,
                   help="also run the KG engine with these subgraph node budgets (accuracy shown next to speed)")
    p.add_argument("--given-entities", action="store_true", help="the scenes' objects instead of the detector")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    # The no-KG engine reads no entities: it answers from the image and question alone.
    warnings.filterwarnings("ignore", message="this engine has no image detector")
    import torch

    torch.set_num_threads(args.threads)
    from ravlm_graph.datasets import load_builtin
    from ravlm_graph.engine import KnowledgeVQA

    recs = load_builtin("test_iid")[: args.n]
    kg = KnowledgeVQA.from_pretrained(args.kg, kg_cache=args.kg_cache, detector=not args.given_entities)
    nokg = KnowledgeVQA.from_pretrained(args.nokg, detector=False)
    from ravlm_graph.evaluation.bench import _entity_fn

    given = _entity_fn("builtin", False) if args.given_entities else None
    own = kg.features.retriever.config.budget
    budgets = [own] + [b for b in (args.budgets or []) if b != own]
    for b in budgets:  # warm-up: lazy imports, and the node embeddings of every subgraph into the cache
        _set_budget(kg, b)
        run(kg, recs, 16, given)
    run(nokg, recs[:4], 4)
    out = {}
    print(f"{'batch':>5} {'engine':<14} {'q/s':>7} {'ms/q':>8} {'acc':>6}  stages (ms per question)")
    for b in args.batch:
        c = run(nokg, recs, b)
        out[str(b)] = {"nokg": c}
        print(f"{b:>5} {'no KG':<14} {c['questions_per_s']:>7.1f} {c['ms_per_question']:>8.1f} "
              f"{100 * c['accuracy']:>5.1f}%  {c['stages_ms']}")
        for budget in budgets:
            _set_budget(kg, budget)
            a = run(kg, recs, b, given)
            overhead = (a["ms_per_question"] - c["ms_per_question"]) / c["ms_per_question"]
            out[str(b)][f"kg_budget{budget}"] = {**a, "kg_overhead": overhead}
            name = f"KG, {budget} nodes"
            print(f"{b:>5} {name:<14} {a['questions_per_s']:>7.1f} {a['ms_per_question']:>8.1f} "
                  f"{100 * a['accuracy']:>5.1f}%  {a['stages_ms']}")
            print(f"{b:>5} {'':<14} KG path overhead: {100 * overhead:+.0f} % (target <= +30 %)")
        _set_budget(kg, budgets[0])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
