"""``ravlm train``: train an engine from a recipe."""

from __future__ import annotations

import json

from ravlm_graph.recipes import load_recipe, train_recipe


def register(sub) -> None:
    t = sub.add_parser("train", help="train an engine from a recipe (JSON)")
    t.add_argument("recipe", help="recipe file (see ravlm_graph.recipes)")
    t.add_argument("--out", default=None, help="override the recipe's out_dir")
    t.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    t.add_argument("--questions", default=None, help="fvqa recipes: the questions JSON (all_qs_dict_release format)")
    t.add_argument("--facts", default=None, help="fvqa recipes: the question-id -> fact triple JSON")
    t.add_argument("--images", default=None, help="fvqa / okvqa / aokvqa recipes: the images folder")
    t.add_argument("--annotations", default=None, help="okvqa recipes: the annotations JSON")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_train)


def _train(args) -> int:
    rec = load_recipe(args.recipe)
    changes = {key: getattr(args, key) for key in ("questions", "facts", "images", "annotations")
               if getattr(args, key)}
    if args.out:
        changes["out_dir"] = args.out
    if args.epochs:
        changes["train"] = {**rec.train, "epochs": args.epochs}
    summary = train_recipe(rec.replace(**changes), progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "holdout_qids"}, indent=1))
    return 0
