"""``ravlm bench``: evaluate an engine on a benchmark (``--ablate``: several variants of a recipe)."""

from __future__ import annotations

import sys
from pathlib import Path

from ravlm_graph.evaluation.ablation import ablation_table, run_ablation
from ravlm_graph.evaluation.bench import (DEFAULT_BUDGETS, bench_builtin, bench_fvqa, check_limit, check_out_dir,
                                         held_out_qids, results_table)
from ravlm_graph.recipes import load_recipe

BUDGETS_HELP = "node budgets of the coverage-vs-budget curve (default 16 32 64 96 128 192; none: skip)"


def register(sub) -> None:
    b = sub.add_parser("bench", help="evaluate an engine on a benchmark")
    bsub = b.add_subparsers(dest="bench", required=True)
    bb = bsub.add_parser("builtin", help="the built-in knowledge-VQA benchmark")
    bb.add_argument("--model", default=None, help="engine folder (with --ablate: its recipe.json and detector are "
                    "reused)")
    bb.add_argument("--kg", default=None, help="store folder to use instead of the engine's KG")
    bb.add_argument("--out", required=True)
    bb.add_argument("--splits", nargs="+", default=None)
    bb.add_argument("--data", default=None, help="a benchmark folder built by `ravlm data build`")
    bb.add_argument("--given-entities", action="store_true", help="use annotated objects instead of the detector")
    bb.add_argument("--limit", type=int, default=None)
    bb.add_argument("--kg-cache", default=None,
                    help="where the bundled KG is built (default: the user cache folder, or $RAVLM_CACHE)")
    bb.add_argument("--budgets", nargs="+", default=None, metavar="N|none",
                    help=BUDGETS_HELP)
    _decoding_args(bb)
    ab = bb.add_argument_group("ablations (--ablate: train and evaluate one recipe with several fusions)")
    ab.add_argument("--ablate", action="store_true", help="run the ablation variants instead of one engine")
    ab.add_argument("--recipe", default=None, help="recipe to vary (default: the --model engine's recipe.json)")
    ab.add_argument("--variants", nargs="+", default=None,
                    help="variants (default: no_kg verbalized graph_tokens both xattn concat product attention; "
                         "also scratch_trunk)")
    ab.add_argument("--epochs", type=int, default=None, help="override the recipe's training epochs")
    ab.add_argument("--train-limit", type=int, default=None, help="train on the first N questions only")
    ab.add_argument("--threads", type=int, default=None, help="override the recipe's torch threads")
    bb.set_defaults(func=_bench_builtin)
    bf = bsub.add_parser("fvqa", help="FVQA questions, given-entities mode")
    bf.add_argument("--questions", required=True)
    bf.add_argument("--facts", required=True)
    bf.add_argument("--model", required=True)
    bf.add_argument("--kg", default=None, help="store folder to use instead of the engine's KG")
    bf.add_argument("--out", required=True)
    bf.add_argument("--limit", type=int, default=None)
    bf.add_argument("--held-out", default=None, metavar="RUN|IDS.json",
                    help="evaluate only the questions a training run held out (its folder, which holds "
                         "summary.json) or those listed in a JSON file of question ids")
    bf.add_argument("--kg-cache", default=None,
                    help="where the bundled KG is built (default: the user cache folder, or $RAVLM_CACHE)")
    bf.add_argument("--budgets", nargs="+", default=None, metavar="N|none",
                    help=BUDGETS_HELP)
    _decoding_args(bf)
    bf.set_defaults(func=_bench_fvqa)
    # `ravlm bench csqa ...` is dispatched to ravlm_graph.cli.csqa before this parser runs
    # (see ravlm_graph.cli.main); listed here so that `ravlm bench --help` shows it.
    bsub.add_parser("csqa", help="CommonsenseQA dev accuracy with and without the KG "
                                 "(--train FILE --dev FILE --out DIR; see `ravlm bench csqa --help`)")


def _decoding_args(p) -> None:
    g = p.add_argument_group("generative engines (Hugging Face backbones)")
    g.add_argument("--max-new-tokens", type=int, default=None, help="longest answer (default: the model's)")
    g.add_argument("--beams", type=int, default=None, help="1: greedy; more: beam search (default: the model's)")


def _decoding(args) -> dict:
    for opt in ("max_new_tokens", "beams"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise ValueError(f"--{opt.replace('_', '-')}: expected an integer >= 1, found {v}")
    return {"max_new_tokens": args.max_new_tokens, "num_beams": args.beams}


def _check_common(args) -> None:
    """Checks made before anything loads: ``--out`` can be a folder, limits are >= 1."""
    check_out_dir(args.out, "--out")
    for opt in ("limit", "train_limit"):
        check_limit(getattr(args, opt, None), f"--{opt.replace('_', '-')}")


def _bench_builtin(args) -> int:
    _check_common(args)
    if args.ablate:
        return _ablate(args)
    if args.model is None:
        raise ValueError("ravlm bench builtin: --model is required (unless --ablate is given with --recipe)")
    for opt in ("recipe", "variants", "epochs", "train_limit", "threads"):
        if getattr(args, opt) is not None:
            raise ValueError(f"ravlm bench builtin: --{opt.replace('_', '-')} only applies with --ablate")
    res = bench_builtin(args.model, args.out, splits=args.splits, data=args.data, kg=args.kg,
                        use_detector=not args.given_entities, limit=args.limit, kg_cache=args.kg_cache,
                        budgets=_budgets(args), **_decoding(args))
    sys.stdout.write(results_table(res, "built-in benchmark"))
    return 0


def _bench_fvqa(args) -> int:
    _check_common(args)
    qids = held_out_qids(args.held_out) if args.held_out else None
    res = bench_fvqa(args.model, args.questions, args.facts, args.out, limit=args.limit, kg=args.kg,
                     kg_cache=args.kg_cache, budgets=_budgets(args), qids=qids, **_decoding(args))
    sys.stdout.write(results_table(res, "FVQA (given-entities mode)"))
    return 0


def _budgets(args) -> tuple[int, ...]:
    """``--budgets``: None -> the default curve; ``none`` -> () (skip the curve); else positive ints."""
    if args.budgets is None:
        return DEFAULT_BUDGETS
    if [b.lower() for b in args.budgets] == ["none"]:
        return ()
    try:
        out = tuple(int(b) for b in args.budgets)
    except ValueError:
        out = ()
    if not out or any(b < 1 for b in out):
        raise ValueError(f"--budgets: expected positive node counts or 'none', found {' '.join(args.budgets)}")
    return out


def _ablate(args) -> int:
    recipe_path = args.recipe
    if recipe_path is None:
        if args.model is None:
            raise ValueError("ravlm bench builtin --ablate: give --recipe FILE or --model ENGINE (with recipe.json)")
        recipe_path = Path(args.model) / "recipe.json"
        if not recipe_path.exists():
            raise ValueError(f"ravlm bench builtin --ablate: {args.model} has no recipe.json; give --recipe FILE")
    if args.kg is not None:
        raise ValueError("ravlm bench builtin --ablate: set the KG in the recipe ('kg'), not with --kg")
    recipe = load_recipe(recipe_path)
    if args.threads:
        recipe = recipe.replace(threads=args.threads)
    detector = None
    if not args.given_entities:
        if args.model is None or not (Path(args.model) / "detector").is_dir():
            raise ValueError("ravlm bench builtin --ablate: detected entities need --model ENGINE with a detector/ "
                             "folder (shared by all variants); or pass --given-entities")
        detector = str(Path(args.model) / "detector")
    res = run_ablation(recipe, args.out, variants=args.variants, splits=args.splits, epochs=args.epochs,
                       limit=args.train_limit, detector_from=detector, eval_limit=args.limit, data=args.data,
                       kg_cache=args.kg_cache)
    sys.stdout.write(ablation_table(res))
    return 0
