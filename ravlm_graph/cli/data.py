"""``ravlm data ...``: build, inspect and package the built-in benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path
from kg_ingest import load_default
from kg_ingest import KnowledgeGraph
from ravlm_graph.datasets.builtin import MAX_SCENE_SIDE, BuildConfig, build_builtin
from ravlm_graph.datasets.builtin import read_manifest
from ravlm_graph.datasets.builtin import package_emoji_assets

__all__ = ["register"]


def _load_kg(path):
    if path is None:

        return load_default(with_fvqa=True)

    return KnowledgeGraph.load(path)


def _check_build_args(args: argparse.Namespace) -> None:
    """The options of ``data build``, named as the user typed them, before the KG loads."""
    for name in ("train", "val", "test"):
        v = getattr(args, name)
        if v is not None and v < 0:
            raise ValueError(f"--{name}: expected a count >= 0, found {v}")
    if not 32 <= args.image_size <= MAX_SCENE_SIDE:
        raise ValueError(f"--image-size: expected 32..{MAX_SCENE_SIDE} px (the largest scene the built-in engines read), "
                         f"found {args.image_size}")
    if not str(args.out).strip():
        raise ValueError("--out: expected a folder path, found an empty string")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out: {args.out} exists and is not a folder")
    for opt, path in (("--kg", args.kg), ("--emoji-root", args.emoji_root)):
        if path is None:
            continue
        if not path.exists():
            raise FileNotFoundError(f"{opt}: {path}: no such folder")
        if not path.is_dir():
            raise ValueError(f"{opt}: expected a folder, found a file: {path}")


def _build(args: argparse.Namespace) -> int:
    _check_build_args(args)
    cfg = BuildConfig(seed=args.seed, train=args.train, val=args.val if args.val is not None else args.test,
                      test=args.test, image_size=args.image_size, train_style=args.train_style)
    summary = build_builtin(args.out, kg=_load_kg(args.kg), emoji_root=args.emoji_root, config=cfg,
                            progress=not args.no_progress)
    print(summary.format())
    return 0


def _info(args: argparse.Namespace) -> int:

    m = read_manifest(args.dir)
    print(f"{args.dir}: {m.get('name')} (builder {m.get('builder_version')}, seed {m.get('seed')})")
    objs = m.get("objects", {})
    print(f"objects: {objs.get('emoji')} emoji, {objs.get('concepts')} concepts; skipped: "
          + (", ".join(f"{k} {v}" for k, v in objs.get("skipped", {}).items()) or "none"))
    print(f"pairs: {m.get('pairs', {}).get('total')} (held out {m.get('pairs', {}).get('held_out')}); "
          f"KG: {m.get('kg', {}).get('name')} ({m.get('kg', {}).get('num_edges')} edges)")
    for split, info in m.get("splits", {}).items():
        types = ", ".join(f"{k} {v}" for k, v in info.get("question_types", {}).items())
        rels = ", ".join(f"{k} {v}" for k, v in info.get("relations", {}).items())
        yn = info.get("yes_no", {})
        print(f"  {split:<18} {info.get('questions'):>6} q  style={info.get('style'):<8} {types}; "
              f"yes/no {yn.get('yes', 0)}/{yn.get('no', 0)}")
        print(f"  {'':<18} {rels}")
    return 0


def _pack(args: argparse.Namespace) -> int:

    entries, skipped = package_emoji_assets(args.src, args.out, kg=_load_kg(args.kg), config=BuildConfig(),
                                            progress=not args.no_progress)
    concepts = {e["concept"] for e in entries}
    print(f"{args.out}: {len(entries)} emoji, {len(concepts)} concepts; skipped: "
          + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    return 0


def register(subparsers) -> None:
    """Add the ``data`` command group."""
    p = subparsers.add_parser("data", help="the built-in benchmark: build, info, pack-emoji")
    sub = p.add_subparsers(dest="data_cmd", required=True)

    b = sub.add_parser("build", help="build the built-in benchmark")
    b.add_argument("--out", required=True, type=Path,
                   help="output folder (created; its split files are replaced when the build succeeds)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--train", type=int, default=4000, help="train questions (default 4000)")
    b.add_argument("--test", type=int, default=400, help="questions per test split (default 400)")
    b.add_argument("--val", type=int, default=None, help="val questions (default: as --test)")
    b.add_argument("--image-size", type=int, default=128, help=f"scene side in px, 32..{MAX_SCENE_SIDE} (default 128)")
    b.add_argument("--train-style", choices=("twemoji", "noto"), default="twemoji")
    b.add_argument("--emoji-root", type=Path, default=None,
                   help="folder with index.json, twemoji64/, noto64/ (default: the packaged sprites)")
    b.add_argument("--kg", type=Path, default=None,
                   help="a saved KG store folder (default: bundled CN-100K + FVQA ConceptNet facts)")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_build)

    i = sub.add_parser("info", help="describe a built benchmark folder")
    i.add_argument("dir", type=Path)
    i.set_defaults(func=_info)

    k = sub.add_parser("pack-emoji", help="copy the emoji that link to a concept into a sprite folder")
    k.add_argument("--src", required=True, type=Path, help="emoji folder (index.json, twemoji64/, noto64/)")
    k.add_argument("--out", required=True, type=Path)
    k.add_argument("--kg", type=Path, default=None)
    k.add_argument("--no-progress", action="store_true")
    k.set_defaults(func=_pack)
