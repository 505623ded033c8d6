"""``ravlm answer`` and ``ravlm export``: use and copy an engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ravlm_graph.engine import KnowledgeVQA
from ravlm_graph.types import Entity


def register(sub) -> None:
    a = sub.add_parser("answer", help="answer a question about an image")
    a.add_argument("--model", required=True, help="engine folder")
    a.add_argument("--image", required=True, help="image file")
    a.add_argument("--question", required=True)
    a.add_argument("--entities", default=None,
                   help="comma-separated image concepts to use instead of the detector (given-entities mode)")
    a.add_argument("--kg", default=None, help="store folder to use instead of the engine's KG")
    a.add_argument("--kg-cache", default=None,
                   help="folder to build a bundled KG in (default: the user cache folder, or $RAVLM_CACHE)")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(func=_answer)

    e = sub.add_parser("export", help="copy an engine folder, optionally with float16 weights (half the size)")
    e.add_argument("engine")
    e.add_argument("--out", required=True)
    e.add_argument("--fp16", action="store_true")
    e.set_defaults(func=_export)


def _answer(args) -> int:
    engine = KnowledgeVQA.from_pretrained(args.model, kg=args.kg, detector=args.entities is None,
                                          kg_cache=args.kg_cache)
    ents = None
    if args.entities is not None:
        ents = [Entity(c.strip().replace(" ", "_").lower(), 1.0, "image") for c in args.entities.split(",") if c.strip()]
    ans = engine.answer(args.image, args.question, entities=ents)
    if args.json:
        print(json.dumps(ans.to_dict(), ensure_ascii=False))
    else:
        print(ans)
    return 0


def _export(args) -> int:
    engine = KnowledgeVQA.from_pretrained(args.engine, kg=None)
    out = engine.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else None)
    recipe = Path(args.engine) / "recipe.json"
    if recipe.exists():
        shutil.copyfile(recipe, out / "recipe.json")
    print(f"wrote {out}")
    return 0
