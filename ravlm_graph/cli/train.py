"""``ravlm train``: train an engine from a recipe."""

from __future__ import annotations

import json

from ravlm_graph.recipes import DATASET_FILES, load_recipe, train_recipe

#: The data-file flags and the recipe fields they override.
DATA_FLAGS = ("questions", "facts", "images", "annotations")


def register(sub) -> None:
    t = sub.add_parser("train", help="train an engine from a recipe (JSON)")
    t.add_argument("recipe", help="recipe file (see ravlm_graph.recipes)")
    t.add_argument("--out", default=None, help="override the recipe's out_dir")
    t.add_argument("--epochs", type=int, default=None, help="override train.epochs (1 or more)")
    t.add_argument("--questions", default=None, help="fvqa / okvqa / aokvqa recipes: the questions JSON "
                   "(fvqa: all_qs_dict_release format)")
    t.add_argument("--facts", default=None, help="fvqa recipes: the question-id -> fact triple JSON")
    t.add_argument("--images", default=None, help="fvqa / okvqa / aokvqa recipes: the images folder")
    t.add_argument("--annotations", default=None, help="okvqa recipes: the annotations JSON")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_train)


def _train(args) -> int:
    # Every option and every path the recipe reads is checked before the KG, the data and
    # the model load (minutes of features and training would otherwise come first).
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs: expected an integer >= 1, found {args.epochs}")
    if args.out is not None and not args.out.strip():
        raise ValueError("--out: expected a folder path, found an empty string")
    for key in DATA_FLAGS:
        if getattr(args, key) is not None and not getattr(args, key).strip():
            raise ValueError(f"--{key}: expected a path, found an empty string")
    rec = load_recipe(args.recipe)
    changes = {key: getattr(args, key) for key in DATA_FLAGS if getattr(args, key) is not None}
    for key in changes:
        if key not in DATASET_FILES[rec.dataset]:
            users = [d for d, files in DATASET_FILES.items() if key in files]
            raise ValueError(f"--{key}: the recipe {args.recipe} trains on the {rec.dataset!r} dataset, which does "
                             f"not read it (only {', '.join(users)} recipes do)")
    if args.out is not None:
        changes["out_dir"] = args.out
    if args.epochs is not None:
        changes["train"] = {**rec.train, "epochs": args.epochs}
    rec = rec.replace(**changes)
    names = {key: f"--{key}" for key in changes if key in DATA_FLAGS}
    if args.out is not None:
        names["out_dir"] = "--out"
    rec.check_inputs(args.recipe, names)
    summary = train_recipe(rec, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "holdout_qids"}, indent=1))
    return 0
