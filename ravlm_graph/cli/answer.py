"""``ravlm answer`` and ``ravlm export``: use and copy an engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ravlm_graph.engine import KnowledgeVQA
from ravlm_graph.explore import draw_entities
from ravlm_graph.grounding.detectors import DETECTORS, build_detector
from ravlm_graph.types import Entity


def register(sub) -> None:
    a = sub.add_parser("answer", help="answer a question about an image")
    a.add_argument("--model", required=True, help="engine folder")
    a.add_argument("--image", required=True, help="image file")
    a.add_argument("--question", required=True)
    a.add_argument("--entities", default=None,
                   help="comma-separated image concepts to use instead of the detector (given-entities mode)")
    a.add_argument("--kg", default=None, help="store folder to use instead of the engine's KG")
    a.add_argument("--kg-cache", default=None, help="folder to build/cache a bundled KG and its node embeddings")
    a.add_argument("--detector", default=None, metavar="KIND",
                   help=f"detector kind to use instead of the engine's ({', '.join(DETECTORS.names())})")
    a.add_argument("--draw", default=None, metavar="OUT.png", help="draw the image's entities with their boxes here")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(func=_answer)

    e = sub.add_parser("export", help="copy an engine folder, optionally with float16 weights (half the size)")
    e.add_argument("engine")
    e.add_argument("--out", required=True)
    e.add_argument("--fp16", action="store_true")
    e.add_argument("--detector", default=None, metavar="KIND",
                   help=f"give the copy this detector kind ({', '.join(DETECTORS.names())}) instead of the engine's")
    e.add_argument("--detector-path", default=None, metavar="FOLDER",
                   help="with --detector: a trained detector folder to copy into the engine")
    e.add_argument("--detector-settings", default=None, metavar="JSON",
                   help="with --detector: its settings as a JSON object (e.g. '{\"box_threshold\": 0.4}')")
    e.set_defaults(func=_export)


def _answer(args) -> int:
    use_detector = args.entities is None and (args.detector or True)
    engine = KnowledgeVQA.from_pretrained(args.model, kg=args.kg, detector=use_detector, kg_cache=args.kg_cache)
    ents = None
    if args.entities is not None:
        ents = [Entity(c.strip().replace(" ", "_").lower(), 1.0, "image") for c in args.entities.split(",") if c.strip()]
    ans = engine.answer(args.image, args.question, entities=ents)
    if args.draw:
        _draw(args.image, ans, args.draw)
    if args.json:
        print(json.dumps(ans.to_dict(), ensure_ascii=False))
    else:
        print(ans)
        if args.draw:
            print(f"drawn: {args.draw}")
    return 0


def _draw(image, ans, out: str) -> None:
    """The image with its entities' boxes, the question and the answer as the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ents = [e for e in ans.entities if e.origin == "image"]
    ax = draw_entities(image, ents)
    title = ax.get_title()
    head = f"{ans.question}\n-> {ans.answer.replace('_', ' ')} (p={ans.score:.2f})"
    if not ents:
        head += "\nno object found in the image"
    ax.set_title(head + ("\n" + title if title else ""), fontsize=8)
    ax.figure.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(ax.figure)


def _export(args) -> int:
    if (args.detector_path or args.detector_settings) and not args.detector:
        raise ValueError("export: --detector-path and --detector-settings need --detector KIND")
    engine = KnowledgeVQA.from_pretrained(args.engine, kg=None, detector=args.detector is None)
    if args.detector:
        try:
            settings = json.loads(args.detector_settings) if args.detector_settings else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"--detector-settings: expected a JSON object, found {args.detector_settings!r} "
                             f"({err})") from err
        engine.detector = build_detector(args.detector, path=args.detector_path, settings=settings, kg=engine.kg)
        engine.config.detector = {"kind": args.detector}
    out = engine.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else None)
    recipe = Path(args.engine) / "recipe.json"
    if recipe.exists():
        shutil.copyfile(recipe, out / "recipe.json")
    print(f"wrote {out}")
    return 0
