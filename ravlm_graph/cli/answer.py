"""``ravlm answer`` and ``ravlm export``: use and copy an engine."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

from ravlm_graph.grounding.detectors import DETECTORS, build_detector
from ravlm_graph.grounding.detectors.given import parse_entities, read_entity_file
from ravlm_graph.grounding.images import load_image
from ravlm_graph.grounding.language import InputWarning, check_question, non_english_message
from ravlm_graph.utils.threads import set_threads


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
    a.add_argument("--kg-cache", default=None,
                   help="folder to build a bundled KG in (default: the user cache folder, or $RAVLM_CACHE)")
    a.add_argument("--detector", default=None, metavar="KIND",
                   help=f"detector kind to use instead of the engine's ({', '.join(DETECTORS.names())})")
    a.add_argument("--draw", default=None, metavar="OUT.png", help="draw the image's entities with their boxes here")
    a.add_argument("--json", action="store_true", help="print one JSON object (answer, entities, facts, "
                   "subgraph_size, answer_nodes, ...)")
    a.add_argument("--max-new-tokens", type=int, default=None, help="generative engines: longest answer")
    a.add_argument("--beams", type=int, default=None, help="generative engines: 1 greedy, more beam search")
    a.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: one question is too small to gain from more, and a "
                        "thread pool's waiting costs CPU time on a busy machine)")
    a.set_defaults(func=_answer)

    e = sub.add_parser("export", help="copy an engine folder, optionally with float16 weights (half the size)")
    e.add_argument("engine")
    e.add_argument("--out", required=True,
                   help="the new engine folder: a new path, an empty folder, or an existing engine folder "
                        "(one with engine.json), which is replaced whole; a file, another non-empty folder, "
                        "the source engine or a folder inside it is refused")
    e.add_argument("--fp16", action="store_true")
    e.add_argument("--detector", default=None, metavar="KIND",
                   help=f"give the copy this detector kind ({', '.join(DETECTORS.names())}) instead of the engine's")
    e.add_argument("--detector-path", default=None, metavar="FOLDER",
                   help="with --detector: a trained detector folder to copy into the engine")
    e.add_argument("--detector-settings", default=None, metavar="JSON",
                   help="with --detector: its settings as a JSON object (e.g. '{\"box_threshold\": 0.4}')")
    e.add_argument("--no-detector", action="store_true",
                   help="a copy without an image detector (for a model that reads no entities, e.g. fusion 'none')")
    e.set_defaults(func=_export)


def _read_entities(value: str) -> list:
    """--entities: a JSON file when it names one (or ends in .json), else a list."""
    p = Path(value)
    if value.strip().lower().endswith(".json") or p.is_file() or ("/" in value and p.is_dir()):
        return read_entity_file(value)
    return parse_entities(value, "--entities")


def _answer(args) -> int:
    # Every input is checked before the engine (seconds) is loaded.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        image = load_image(args.image)
    for w in caught:  # e.g. only the first frame of an animated image is read
        print(f"ravlm: warning: {w.message}", file=sys.stderr)
    question = check_question(args.question, "--question")
    msg = non_english_message(question)
    if msg and not args.any_language:
        raise ValueError(f"--question: {msg} (pass --any-language to answer anyway)")
    if args.threads < 1:
        raise ValueError(f"--threads: expected an integer >= 1, found {args.threads}")
    for opt in ("max_new_tokens", "beams"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise ValueError(f"--{opt.replace('_', '-')}: expected an integer >= 1, found {v}")
    if args.detector is not None and args.detector not in DETECTORS:
        raise ValueError(f"--detector: expected one of {DETECTORS.names()}, found {args.detector!r}")
    if args.detector == "given":
        raise ValueError("--detector given: the objects are given with --entities (e.g. --entities knife,bread), "
                         "not as a detector kind")
    if args.detector is not None and args.entities is not None:
        raise ValueError("--detector and --entities exclude each other (given entities replace detection)")
    if args.draw:
        _check_draw(args.draw, args.image)
    _check_question_length(question, args.model)
    ents = _read_entities(args.entities) if args.entities is not None else None
    engine_module = _engine_module()
    set_threads(args.threads)
    engine = engine_module.KnowledgeVQA.from_pretrained(args.model, kg=args.kg,
                                                           detector=ents is None and (args.detector or True),
                                                           kg_cache=args.kg_cache)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        ans = engine.answer(image, question, entities=ents, max_new_tokens=args.max_new_tokens,
                            num_beams=args.beams)
    for w in caught:
        if issubclass(w.category, InputWarning):
            if not args.json and str(w.message) in ans.notes:
                continue  # printed with the answer as a "note:" line
            print(f"ravlm: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if args.draw:
        _draw(image, ans, args.draw)
    if args.json:
        print(json.dumps(ans.to_dict(), ensure_ascii=False))
    else:
        print(ans)
        if args.draw:
            print(f"drawn: {args.draw}")
    return 0


def _check_draw(out: str, image: str) -> None:
    """--draw: a new or replaceable image file in an existing folder, in a format matplotlib
    writes, and never the input image itself."""
    p = Path(out)
    if p.exists() and p.is_dir():
        raise ValueError(f"--draw: expected an image file to write, found a folder: {out}")
    if p.exists() and Path(image).exists() and p.resolve() == Path(image).resolve():
        raise ValueError(f"--draw: {out} is the input image; give another file name (it would be overwritten)")
    if not p.parent.is_dir():
        raise ValueError(f"--draw: the folder {str(p.parent)!r} does not exist")
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    ext = p.suffix.lower().lstrip(".")
    if ext not in kinds:
        raise ValueError(f"--draw: expected a file name ending in one of {', '.join('.' + k for k in sorted(kinds))}, "
                         f"found {out!r}")


def _check_question_length(question: str, model: str) -> None:
    """A question longer than the model's context, refused before the engine loads: every
    word and punctuation mark is at least one token of the model's tokenizer."""
    cfg = Path(model) / "config.json"
    try:
        limit = json.loads(cfg.read_text(encoding="utf-8")).get("max_question_tokens")
    except (OSError, ValueError, AttributeError):
        return  # the engine's own loading reports a bad folder
    if not isinstance(limit, int) or limit < 1:
        return
    pieces = len(re.findall(r"\w+|[^\w\s]", question))
    if pieces > limit:
        raise ValueError(f"--question: {pieces} words and marks, more than the {limit} tokens this model reads; "
                         f"shorten it: {question[:60]!r}")


def _draw(image, ans, out: str) -> None:
    """The image with its entities' boxes, the question and the answer as the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    draw_entities = importlib.import_module("ravlm_graph.explore").draw_entities
    ents = [e for e in ans.entities if e.origin == "image"]
    ax = draw_entities(image, ents)
    title = ax.get_title()
    # A LLaVA engine generates without scoring its answer (score None).
    p = "" if ans.score is None else f" (p={ans.score:.2f})"
    head = f"{ans.question}\n-> {str(ans.answer).replace('_', ' ')}{p}"
    if not ents:
        head += "\nno object found in the image"
    ax.set_title(head + ("\n" + title if title else ""), fontsize=8)
    ax.figure.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(ax.figure)


def _check_export_out(out: str, engine: str) -> None:
    """--out: refused before the engine loads when writing there would destroy something
    that is not an engine folder, or the source engine itself."""
    if not out.strip():
        raise ValueError("--out: expected a folder path, found an empty string")
    given = Path(out)
    if given.is_symlink() and not given.exists():
        raise ValueError(f"--out: {out} is a symbolic link to a path that does not exist; give another --out")
    target = Path(os.path.realpath(given))
    source = Path(os.path.realpath(engine))
    if target == source or source in target.parents:
        raise ValueError(f"--out: {out} is the source engine {engine} or a folder inside it; "
                         f"write the copy to another folder")
    if target in source.parents:
        raise ValueError(f"--out: {out} contains the source engine {engine}; write the copy to another folder")
    if target.parent == target:
        raise ValueError(f"--out: {out}: cannot write an engine over the file system root")
    cwd = Path(os.path.realpath(os.getcwd()))
    if cwd == target or target in cwd.parents:
        raise ValueError(f"--out: {out} is the current folder (or contains it); an engine folder is replaced as "
                         f"a whole, so run from its parent folder")
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"--out: {out} exists and is not a folder; refusing to replace it with an engine")
        try:
            non_empty = any(True for _ in os.scandir(target))
        except OSError as e:
            raise ValueError(f"--out: {out}: cannot read the folder: {e.strerror or e}") from e
        if non_empty and not (target / "engine.json").is_file():
            raise ValueError(f"--out: {out} is a non-empty folder that is not an engine folder (no engine.json); "
                             f"refusing to replace it (choose a new --out folder)")
    else:
        above = next(p for p in target.parents if p.exists())  # the folders below it are created
        if not above.is_dir():
            raise ValueError(f"--out: {above} is a file, not a folder; give another --out")


def _export_settings(args) -> dict:
    """--detector-settings as a dict, checked before the engine loads."""
    if not args.detector_settings:
        return {}
    try:
        settings = json.loads(args.detector_settings)
    except json.JSONDecodeError as err:
        raise ValueError(f"--detector-settings: expected a JSON object, found {args.detector_settings!r} "
                         f"({err})") from err
    if not isinstance(settings, dict):
        raise ValueError(f"--detector-settings: expected a JSON object, found {args.detector_settings!r}")
    return settings


def _export(args) -> int:
    if (args.detector_path or args.detector_settings) and not args.detector:
        raise ValueError("export: --detector-path and --detector-settings need --detector KIND")
    if args.no_detector and args.detector:
        raise ValueError("export: --no-detector and --detector KIND exclude each other")
    if args.detector is not None and args.detector not in DETECTORS:
        raise ValueError(f"--detector: expected one of {DETECTORS.names()}, found {args.detector!r}")
    if args.detector_path is not None and not Path(args.detector_path).is_dir():
        what = "a file" if Path(args.detector_path).exists() else "no such folder"
        raise ValueError(f"--detector-path: expected a detector folder, found {what}: {args.detector_path}")
    settings = _export_settings(args)
    _check_export_out(args.out, args.engine)
    import torch

    engine = _engine_module().KnowledgeVQA.from_pretrained(args.engine, kg=None,
                                                           detector=args.detector is None and not args.no_detector)
    if args.no_detector:
        engine.detector = None
        engine.config.detector = None
    if args.detector:
        engine.detector = build_detector(args.detector, path=args.detector_path, settings=settings, kg=engine.kg)
        engine.config.detector = {"kind": args.detector}
    out = engine.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else None)
    recipe = Path(args.engine) / "recipe.json"
    if recipe.exists():
        shutil.copyfile(recipe, out / "recipe.json")
    print(f"wrote {out}")
    return 0
