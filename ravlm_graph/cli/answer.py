"""``ravlm answer`` and ``ravlm export``: use and copy an engine."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import warnings
from pathlib import Path

from ravlm_graph.grounding.detectors.given import parse_entities, read_entity_file
from ravlm_graph.grounding.images import load_image
from ravlm_graph.grounding.language import InputWarning, check_question, non_english_message


def _engine_module():
    """The engine (torch, the model code: seconds to import), imported once the inputs
    have been checked, so that a wrong path or question is reported at once."""
    return importlib.import_module("ravlm_graph.engine")


def register(sub) -> None:
    a = sub.add_parser("answer", help="answer a question about an image")
    a.add_argument("--model", required=True, help="engine folder")
    a.add_argument("--image", required=True, help="image file")
    a.add_argument("--question", required=True)
    a.add_argument("--entities", default=None,
                   help="the image's objects instead of the detector: 'knife,bread', with positions "
                        "'knife@left,bread@top right' or boxes 'knife@10,20,60,80' (pixels, or fractions <= 1), "
                        "or a JSON file [{\"concept\": \"knife\", \"box\": [x0, y0, x1, y1]}, ...]")
    a.add_argument("--any-language", action="store_true",
                   help="answer a question that does not look English (the engine reads English only)")
    a.add_argument("--kg", default=None, help="store folder to use instead of the engine's KG")
    a.add_argument("--kg-cache", default=None, help="folder to build/cache a bundled KG and its node embeddings")
    a.add_argument("--json", action="store_true", help="print one JSON object (answer, entities, facts, "
                   "subgraph_size, answer_nodes, ...)")
    a.add_argument("--max-new-tokens", type=int, default=None, help="generative engines: longest answer")
    a.add_argument("--beams", type=int, default=None, help="generative engines: 1 greedy, more beam search")
    a.set_defaults(func=_answer)

    e = sub.add_parser("export", help="copy an engine folder, optionally with float16 weights (half the size)")
    e.add_argument("engine")
    e.add_argument("--out", required=True)
    e.add_argument("--fp16", action="store_true")
    e.set_defaults(func=_export)


def _read_entities(value: str) -> list:
    """--entities: a JSON file when it names one (or ends in .json), else a list."""
    if value.strip().lower().endswith(".json") or Path(value).is_file():
        return read_entity_file(value)
    return parse_entities(value, "--entities")


def _answer(args) -> int:
    # Every input is checked before the engine (seconds) is loaded.
    image = load_image(args.image)
    question = check_question(args.question, "--question")
    msg = non_english_message(question)
    if msg and not args.any_language:
        raise ValueError(f"--question: {msg} (pass --any-language to answer anyway)")
    for opt in ("max_new_tokens", "beams"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise SystemExit(f"--{opt.replace('_', '-')}: expected an integer >= 1, found {v}")
    ents = _read_entities(args.entities) if args.entities is not None else None
    engine = _engine_module().KnowledgeVQA.from_pretrained(args.model, kg=args.kg, detector=ents is None,
                                                           kg_cache=args.kg_cache)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        ans = engine.answer(image, question, entities=ents, max_new_tokens=args.max_new_tokens,
                            num_beams=args.beams)
    for w in caught:
        if issubclass(w.category, InputWarning):
            print(f"ravlm: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if args.json:
        print(json.dumps(ans.to_dict(), ensure_ascii=False))
    else:
        print(ans)
    return 0


def _export(args) -> int:
    import torch

    engine = _engine_module().KnowledgeVQA.from_pretrained(args.engine, kg=None)
    out = engine.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else None)
    recipe = Path(args.engine) / "recipe.json"
    if recipe.exists():
        shutil.copyfile(recipe, out / "recipe.json")
    print(f"wrote {out}")
    return 0
