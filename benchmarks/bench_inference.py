"""Inference speed: the KG engine vs the same model family without the KG, in one run.

    .venv/bin/python benchmarks/bench_inference.py [--kg ENGINE] [--nokg ENGINE] [--n 64] [--batch 1 16]
        [--split val] [--threads 2] [--rounds 3] [--budgets 48 24] [--graph-tokens 8 4] [--floor]

For each batch size, answers the first ``--n`` questions of a built-in split (``val`` by
default: the options below change accuracy, and settings are never chosen on a test split)
with both engines and prints questions/s, wall and CPU milliseconds per question (the CPU
figure is the one to compare on a shared machine: wall time there measures the other
jobs too) and the per-stage wall time per question. The two engines run in alternation
``--rounds`` times (default 3) and each keeps its median round, so a change of load
reaches both sides of the ratio:

* KG engine: image detection (grounding of the image), retrieval (question grounding,
  subgraph retrieval, node features), model (vision + GNN + graph tokens + trunk);
* no-KG engine: model (vision + trunk) only — the backbone's own latency.

The KG path's overhead = (KG total - no-KG total) / no-KG total, printed for wall and
CPU time next to its target (<= +30 %). Torch runs on ``--threads`` threads (default 2).

``--budgets 96 48 24`` repeats the KG engine's run with smaller subgraph node budgets
(fewer nodes through the GNN; the engine's own budget first) and prints the accuracy on
the same questions next to the speed, so a faster setting is judged with what it costs;
``--graph-tokens 8 4`` likewise with other numbers of graph tokens in the trunk (the engine's
own inference count first; the projector picks the top nodes, so no weight changes).
``--given-entities`` replaces the detector by the scenes' annotated objects (the
detector's share of the overhead, isolated). ``--detectors DIR ...`` also runs the KG engine
with each of these saved layout-cell detector folders instead of its own (same model,
retrieval and questions; e.g. a cell network over the model's own frozen EfficientNet-lite0,
which the engine then runs once for both).

``--floor`` also times the KG engine with parts taken out, to show how far the design is from
the target without them: its detector without the fallback network (a setting a user can
choose: ``LayoutCellDetector.fallback = None``), without message passing (the GNN's layers
skipped: a speed probe only, the trained model's answers need them, so its accuracy is shown
to make that plain), both, and both with 64 nodes.

Every question is timed as a new one: its vector for retrieval is encoded in each round
(the engine encodes a batch's questions at once), not read from the disk cache that keeps
the vectors of questions asked before; ``--cached-questions`` measures repeated questions
(vectors read from that cache) instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

from _args import existing_dir, output_file, positive_int

ROOT = Path(__file__).resolve().parents[1]


def run(engine, recs, batch: int, entities=None, images=None) -> dict:
    """Answer ``recs`` in batches; speed (wall and CPU), per-stage ms per question and accuracy.

    ``entities``: None (the engine's detector), a list (the same for every question), or
    a callable record -> entities.
    """
    stages: dict[str, float] = {}
    if images is None:
        images = [r.load_image() for r in recs]  # decoded once: image decoding is not what is measured
    t0, c0 = time.perf_counter(), time.process_time()
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
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"questions_per_s": n / total, "ms_per_question": 1000 * total / n, "cpu_ms_per_question": 1000 * cpu / n,
            "accuracy": hits / n, "stages_ms": {k: round(1000 * v / n, 2) for k, v in stages.items()}}


def _set_budget(engine, budget: int) -> None:
    """The node budget belongs to the retriever's config (a frozen dataclass)."""
    r = engine.features.retriever
    r.config = dataclasses.replace(r.config, budget=budget)
    r.clear_cache()


def _set_tokens(engine, tokens: int) -> None:
    """Graph tokens in the trunk at inference: the projector's top-N nodes per graph."""
    engine.model.fusion.projector.inference_tokens = tokens


PROBES = ("", "no fallback", "no message passing", "no fallback, no message passing")


class _Probe:
    """A ``--floor`` variant of the KG engine for the duration of a ``with`` block: the
    detector's fallback and/or the GNN's message-passing layers taken out, then put back."""

    def __init__(self, engine, probe: str):
        self.engine, self.probe = engine, probe

    def __enter__(self):
        self.det = det = self.engine.detector
        self.gnn = gnn = getattr(self.engine.model, "gnn", None)
        self.saved = (getattr(det, "fallback", None), getattr(gnn, "layers", None))
        if "no fallback" in self.probe and hasattr(det, "fallback"):
            det.fallback = None
        if "no message passing" in self.probe and gnn is not None:
            from torch import nn

            gnn.layers = nn.ModuleList()
        return self

    def __exit__(self, *exc):
        if hasattr(self.det, "fallback"):
            self.det.fallback = self.saved[0]
        if self.saved[1] is not None:
            self.gnn.layers = self.saved[1]
        return False


def _median_round(rounds: list[dict]) -> dict:
    """The round with the median wall time per question, with the median CPU time and every
    round's wall times (``rounds_ms``)."""
    ordered = sorted(rounds, key=lambda r: r["ms_per_question"])
    mid = dict(ordered[(len(ordered) - 1) // 2])
    cpu = sorted(r["cpu_ms_per_question"] for r in rounds)
    mid["cpu_ms_per_question"] = cpu[(len(cpu) - 1) // 2]
    mid["rounds_ms"] = [round(r["ms_per_question"], 2) for r in rounds]
    return mid


def _verdict(overhead: float, target: float = 0.30) -> str:
    return f"{100 * overhead:+.0f} % (target <= +{100 * target:.0f} %: {'met' if overhead <= target else 'missed'})"


def main(argv=None) -> int:
    from ravlm_graph.datasets.builtin import BUILTIN_SPLITS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kg", type=existing_dir, default=str(ROOT / "ravlm_graph/data/engine_builtin"))
    p.add_argument("--nokg", type=existing_dir, default=str(ROOT / "ravlm_graph/data/engine_builtin_nokg"))
    p.add_argument("--n", type=positive_int, default=64)
    p.add_argument("--batch", type=positive_int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="runs of each engine, in alternation; each keeps its median (default 3)")
    p.add_argument("--kg-cache", default=None, help="where the bundled KG is built (default: the user cache)")
    p.add_argument("--budgets", type=positive_int, nargs="+", default=None,
                   help="also run the KG engine with these subgraph node budgets (accuracy shown next to speed)")
    p.add_argument("--graph-tokens", type=positive_int, nargs="+", default=None,
                   help="also run the KG engine with these numbers of graph tokens (accuracy shown next to speed)")
    p.add_argument("--detectors", type=existing_dir, nargs="+", default=None,
                   help="also run the KG engine with these layout-cell detector folders instead of its own")
    p.add_argument("--floor", action="store_true",
                   help="also time the KG engine without its detector's fallback, without message passing "
                        "(a speed probe), both, and both at 64 nodes")
    p.add_argument("--split", default="val", choices=BUILTIN_SPLITS, help="built-in split to answer (default val)")
    p.add_argument("--given-entities", action="store_true", help="the scenes' objects instead of the detector")
    p.add_argument("--cached-questions", action="store_true",
                   help="read question vectors from the disk cache (repeated questions); default: encode each")
    p.add_argument("--json", type=output_file, default=None)
    args = p.parse_args(argv)
    if args.detectors and args.given_entities:
        p.error("--detectors: the detector is not used with --given-entities")
    if args.floor and args.given_entities:
        p.error("--floor: its probes take out the detector's fallback, which --given-entities does not run")
    if args.kg_cache and Path(args.kg_cache).exists() and not Path(args.kg_cache).is_dir():
        p.error(f"--kg-cache {args.kg_cache}: not a folder")
    for name in ("kg", "nokg"):
        if not (Path(getattr(args, name)) / "engine.json").is_file():
            p.error(f"--{name} {getattr(args, name)}: not an engine folder (no engine.json)")
    # The no-KG engine reads no entities: it answers from the image and question alone.
    warnings.filterwarnings("ignore", message="this engine has no image detector")
    warnings.filterwarnings("ignore", message=".*found no object it can name")
    import os

    import torch

    torch.set_num_threads(args.threads)
    from ravlm_graph.datasets import load_builtin
    from ravlm_graph.engine import KnowledgeVQA

    recs = load_builtin(args.split)[: args.n]
    images = [r.load_image() for r in recs]
    kg = KnowledgeVQA.from_pretrained(args.kg, kg_cache=args.kg_cache, detector=not args.given_entities)
    nokg = KnowledgeVQA.from_pretrained(args.nokg, detector=False)
    from ravlm_graph.evaluation.bench import _entity_fn

    given = _entity_fn("builtin", False) if args.given_entities else None
    if kg.features.retriever is not None:  # every round's questions are new ones unless --cached-questions
        kg.features.retriever.embeddings.cache_texts = args.cached_questions
    own = kg.features.retriever.config.budget
    kg.model.eval()
    own_tokens = kg.model.fusion.projector.active_tokens  # the engine's own count at inference
    # (budget, graph tokens, engine): the engine's own setting first
    engines = [kg]
    if args.detectors:
        from ravlm_graph.grounding.detectors.layout import LayoutCellDetector

        for folder in args.detectors:
            det = LayoutCellDetector.from_pretrained(folder)
            det.prepare_for_inference()
            engines.append(KnowledgeVQA(kg.model, kg.config, kg=kg.kg, retriever=kg.retriever, detector=det))
    settings = [(own, own_tokens, 0, "")] + [(b, own_tokens, 0, "") for b in (args.budgets or []) if b != own] \
        + [(own, t, 0, "") for t in (args.graph_tokens or []) if t != own_tokens] \
        + [(own, own_tokens, i, "") for i in range(1, len(engines))]
    if args.floor:
        settings += [(own, own_tokens, 0, pr) for pr in PROBES[1:]] + [(min(own, 64), own_tokens, 0, PROBES[-1])]
    for b in sorted({b for b, _, _, _ in settings}):  # warm-up: lazy imports, node embeddings of every subgraph cached
        _set_budget(kg, b)
        run(kg, recs, 16, given, images)
    for e in engines[1:]:
        run(e, recs[:16], 16, given, images[:16])
    run(nokg, recs[:4], 4, None, images[:4])
    out = {"split": args.split, "n": len(recs), "threads": args.threads, "load_average": os.getloadavg()[0],
           "cached_questions": args.cached_questions}
    print(f"{args.split}: {len(recs)} questions; torch threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; question vectors "
          f"{'read from the disk cache' if args.cached_questions else 'encoded for every question'}")
    for i, folder in enumerate(args.detectors or [], 1):
        print(f"detector {i}: {folder}" + (" (reads the model's own image network)" if engines[i]._shared_vision else ""))
    print(f"{'batch':>5} {'engine':<29} {'q/s':>7} {'ms/q':>8} {'cpu ms/q':>9} {'acc':>6}  stages (wall ms per question)")
    for b in args.batch:
        # The engines run in alternation, --rounds times, and each keeps its median round: a
        # change of load on a shared machine then reaches both sides of the ratio alike.
        nokg_rounds, kg_rounds = [], {s: [] for s in settings}
        for _ in range(args.rounds):
            nokg_rounds.append(run(nokg, recs, b, None, images))
            for budget, tokens, e, probe in settings:
                _set_budget(kg, budget)  # the engines share the model and the retriever
                _set_tokens(kg, tokens)
                with _Probe(engines[e], probe):
                    kg_rounds[(budget, tokens, e, probe)].append(run(engines[e], recs, b, given, images))
        c = _median_round(nokg_rounds)
        out[str(b)] = {"nokg": c}
        print(f"{b:>5} {'no KG':<29} {c['questions_per_s']:>7.1f} {c['ms_per_question']:>8.1f} "
              f"{c['cpu_ms_per_question']:>9.1f} {100 * c['accuracy']:>5.1f}%  {c['stages_ms']}")
        for budget, tokens, e, probe in settings:
            a = _median_round(kg_rounds[(budget, tokens, e, probe)])
            overhead = (a["ms_per_question"] - c["ms_per_question"]) / c["ms_per_question"]
            cpu_overhead = (a["cpu_ms_per_question"] - c["cpu_ms_per_question"]) / c["cpu_ms_per_question"]
            key = f"kg_budget{budget}_tokens{tokens}" + (f"_detector{e}" if e else "") \
                + (f"_probe_{probe.replace(', ', '_').replace(' ', '_')}" if probe else "")
            out[str(b)][key] = {**a, "kg_overhead": overhead, "kg_cpu_overhead": cpu_overhead}
            name = f"KG, {budget} nodes, {tokens} tok" + (f", det {e}" if e else "")
            if probe:
                print(f"{b:>5} {'':<29} probe: {probe}" + (" (speed only: the trained model's answers need "
                                                             "message passing)" if "passing" in probe else ""))
            print(f"{b:>5} {name:<29} {a['questions_per_s']:>7.1f} {a['ms_per_question']:>8.1f} "
                  f"{a['cpu_ms_per_question']:>9.1f} {100 * a['accuracy']:>5.1f}%  {a['stages_ms']}")
            print(f"{b:>5} {'':<29} KG path overhead: wall {_verdict(overhead)}; CPU {_verdict(cpu_overhead)}")
        _set_budget(kg, own)
        _set_tokens(kg, own_tokens)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
