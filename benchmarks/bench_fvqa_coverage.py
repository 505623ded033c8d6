"""Answer coverage of FVQA's held-out questions by retrieval alone, per node budget.

The held-out questions are the ones ``ravlm train configs/fvqa.json`` holds out (same
seed and share), the seeds are what the model sees (the visual concept among 4
distractors, plus the question's concepts), and coverage is the share of questions whose
answer concept is a node of the retrieved subgraph. Run once with the recipe's
retrieval settings and once with ``--relation-weight 0`` to see what ranking the asked
relation's edges first brings::

    .venv/bin/python benchmarks/bench_fvqa_coverage.py --questions Q.json --facts F.json
    .venv/bin/python benchmarks/bench_fvqa_coverage.py --questions Q.json --facts F.json --relation-weight 0

``--split train`` measures the questions the recipe trains on instead (a check that a
retrieval setting chosen on the held-out questions generalises); ``--relation-temperature``
overrides the relation prior's temperature.

Prints one line per budget and the misses per (knowledge source, answer source).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

from _args import existing_file, nonneg_float, nonneg_int, one_line, output_file, positive_float, positive_int


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=existing_file, default="configs/fvqa.json")
    ap.add_argument("--questions", type=existing_file, required=True, help="FVQA train questions (train_split0_questions.json)")
    ap.add_argument("--facts", type=existing_file, required=True, help="FVQA train facts (train_split0_fact_triples.json)")
    ap.add_argument("--budgets", nargs="+", type=positive_int, default=[32, 64, 96, 192])
    ap.add_argument("--relation-weight", type=nonneg_float, default=None, help="override the recipe's relation_weight")
    ap.add_argument("--relation-temperature", type=positive_float, default=None,
                    help="override the recipe's relation_temperature")
    ap.add_argument("--kg-cache", default=None,
                    help="where the bundled KG and node embeddings are cached (default: the user cache folder)")
    ap.add_argument("--split", choices=("held-out", "train"), default="held-out",
                    help="the questions the recipe holds out (default) or those it trains on")
    ap.add_argument("--limit", type=nonneg_int, default=0, help="first N held-out questions (0: all)")
    ap.add_argument("--json", type=output_file, default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.kg_cache and Path(args.kg_cache).exists() and not Path(args.kg_cache).is_dir():
        ap.error(f"--kg-cache {args.kg_cache}: not a folder")

    from ravlm_graph.kg import open_kg
    from ravlm_graph.recipes import _dataset, fvqa_entities, load_recipe
    from ravlm_graph.retrieval.retriever import SubgraphRetriever

    try:
        recipe = load_recipe(args.recipe).replace(questions=args.questions, facts=args.facts)
        if args.relation_weight is not None:
            recipe = recipe.replace(retrieval=recipe.retrieval.replace(relation_weight=args.relation_weight))
        if args.relation_temperature is not None:
            recipe = recipe.replace(retrieval=recipe.retrieval.replace(relation_temperature=args.relation_temperature))
    except (ValueError, TypeError, KeyError, OSError) as e:
        ap.error(one_line(e))  # load_recipe names the file, the configs their field
    if recipe.dataset != "fvqa":
        ap.error(f"--recipe {args.recipe}: an FVQA recipe is needed, found dataset {recipe.dataset!r}")

    import torch

    torch.set_num_threads(1)
    retrieval = recipe.retrieval.to_dict()
    kg = open_kg(recipe.kg, cache_root=args.kg_cache)
    retriever = SubgraphRetriever(kg, recipe.retrieval)
    try:
        train_part, held_out, _, _ = _dataset(recipe, kg)
    except (ValueError, OSError) as e:  # a malformed questions or facts file
        ap.error(one_line(e))
    if args.split == "train":
        held_out = train_part
    if args.limit:
        held_out = held_out[:args.limit]
    out = {"questions": len(held_out), "retrieval": retrieval, "coverage": {}, "misses": {}}
    t0 = time.perf_counter()
    for budget in args.budgets:
        hits = 0
        misses: collections.Counter = collections.Counter()
        for r in held_out:
            sg = retriever.retrieve(fvqa_entities(r), r.question, budget=budget)
            ok = any(n in r.answer_concepts for n in sg.node_names)
            hits += ok
            if not ok:
                misses[f"{r.extra['kb_source']}/{r.extra['ans_source']}"] += 1
        out["coverage"][str(budget)] = round(hits / max(1, len(held_out)), 4)
        out["misses"][str(budget)] = dict(misses)
        sys.stdout.write(f"budget {budget}: coverage {100 * hits / max(1, len(held_out)):.1f} % "
                         f"({len(held_out)} {args.split} questions); misses {dict(misses)}\n")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
