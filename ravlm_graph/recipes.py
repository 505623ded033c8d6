"""Training recipes behind ``ravlm train CONFIG.json``.

A recipe file is JSON::

    {
      "dataset": "builtin",            # or "fvqa"
      "out_dir": "runs/builtin",
      "kg": "bundled:cn100k+fvqa",    # or a store folder
      "kg_cache": null,               # where a bundled KG is built (null: the user cache folder)
      "budget": 64,
      "retrieval": {"method": "ppr"},  # RetrievalConfig fields
      "model": {"fusion": "graph_tokens", "gnn_kind": "gatv2", ...},   # KnowledgeVQAConfig fields
      "train": {"epochs": 8, "batch_size": 32, "lr": 3e-4, "seed": 0},  # TrainConfig fields
      "detector": {"epochs": 6, "image_size": 32},                      # or {"from": "path/to/detector"}
      "limit": null                                                     # use only the first N train questions
    }

The engine is written to ``out_dir/final`` (model, ``engine.json``, ``detector/``);
``out_dir/last`` is the resumable checkpoint.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from ravlm_graph.grounding.layouts import layout_cells
from ravlm_graph.types import Entity
from ravlm_graph.grounding.detectors.layout import LayoutCellDetector
from ravlm_graph.training.detectors import train_layout_detector
from ravlm_graph.datasets.builtin import default_emoji_root
from ravlm_graph.datasets.scenes import synthetic_scenes
from ravlm_graph.datasets import BuiltinRecord
from ravlm_graph.models.knowledge_vqa.modeling import answer_distribution
from ravlm_graph.models.knowledge_vqa.processing import collate
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.models.knowledge_vqa.configuration import KnowledgeVQAConfig
from ravlm_graph.models.knowledge_vqa.modeling import KnowledgeVQAModel
from ravlm_graph.engine import EngineConfig, KnowledgeVQA
from ravlm_graph.kg import open_kg
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.training.loop import TrainConfig, seed_everything, train
from ravlm_graph.models.knowledge_vqa.processing import FeatureBuilder
from ravlm_graph.datasets import load_builtin
from ravlm_graph.datasets import load_fvqa
from ravlm_graph.datasets.loaders import load_aokvqa, load_vqa
from ravlm_graph.models.hf_backbones import (GenerativeFeatureBuilder, GenerativeVQAConfig, KnowledgeGenerator,
                                             answer_text, backbone_kind, collate_generative)
from ravlm_graph.datasets.answers import normalize_answer

log = logging.getLogger(__name__)

RECIPE_KEYS = {"kg_cache", "dataset", "out_dir", "kg", "budget", "model", "train", "detector", "limit", "data", "retrieval",
               "questions", "facts", "holdout", "threads", "images", "annotations"}
#: Datasets a recipe trains on; okvqa / aokvqa need a generative backbone (free-text answers).
RECIPE_DATASETS = ("builtin", "fvqa", "okvqa", "aokvqa")


def load_recipe(path: str | Path) -> dict:
    p = Path(path)
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such recipe file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}:{e.lineno}: recipe is not valid JSON: {e.msg}") from e
    if not isinstance(rec, dict):
        raise ValueError(f"{p}: expected a JSON object")
    unknown = sorted(set(rec) - RECIPE_KEYS)
    if unknown:
        raise ValueError(f"{p}: unknown recipe keys {unknown}; expected some of {sorted(RECIPE_KEYS)}")
    if rec.get("dataset", "builtin") not in RECIPE_DATASETS:
        raise ValueError(f"{p}: dataset must be one of {list(RECIPE_DATASETS)}, found {rec.get('dataset')!r}")
    return rec


def builtin_entities(record) -> list:
    """Gold image entities of a built-in benchmark record.

    Each object's box is its layout cell, as the layout-cell detector reports it, so
    that training and inference see the same kind of boxes.
    """

    objs = record.extra["objects"]
    w, h = record.extra["scene"]["size"]
    cells = layout_cells(tuple(o["slot"] for o in objs), w, h)
    return [Entity(o["concept"], 1.0, "image", box=tuple(float(v) for v in c), label=o.get("slot"))
            for o, c in zip(objs, cells)]


def train_detector(records, cfg: dict, seed: int):
    """Train the layout-cell detector on the scenes of ``records`` (the training split).

    ``cfg["extra_scenes"]`` (default 0) adds that many freshly drawn scenes of the same
    sprites (:func:`~ravlm_graph.datasets.scenes.synthetic_scenes`): objects of the training
    split only, in Twemoji style, placed the way the benchmark places them.
    """

    seen, scenes = set(), []
    pool = set()
    emoji_root = None
    for r in records:
        sid = r.extra["scene"]["id"]
        if sid in seen:
            continue
        seen.add(sid)
        scenes.append((r.load_image(), [(o["concept"], o["box"]) for o in r.extra["objects"]]))
        pool.update((o["image"], o["concept"]) for o in r.extra["scene"]["objects"]
                    if r.extra["scene"]["style"] == "twemoji")
        emoji_root = emoji_root or r.extra.get("emoji_root")
    extra = int(cfg.get("extra_scenes", 0))
    if extra:

        scenes += list(synthetic_scenes(sorted(pool), extra, emoji_root or default_emoji_root(), seed=seed + 1))
    concepts = sorted({c for _, objs in scenes for c, _ in objs})
    kw = {k: cfg[k] for k in ("epochs", "image_size", "negatives_per_scene", "batch_size", "lr", "features",
                              "feature_size", "hidden") if k in cfg}
    if "channels" in cfg:
        kw["channels"] = tuple(cfg["channels"])
    kw.setdefault("image_size", 32)
    kw.setdefault("channels", (32, 64, 96))
    kw.setdefault("negatives_per_scene", 1)
    return train_layout_detector(scenes, concepts, seed=seed, **kw)


def record_image(record):
    """The record's image; a plain grey square for records without one (given-entities mode).

    Built-in benchmark records draw their scene on demand, so they always have one.
    """

    if getattr(record, "image_path", None) is None and not isinstance(record, BuiltinRecord):
        from PIL import Image

        return Image.new("RGB", (64, 64), (128, 128, 128))
    return record.load_image()


def record_answers(record) -> tuple:
    """Valid answers as KG concepts when the dataset gives them, else the raw answers."""
    return tuple(getattr(record, "answer_concepts", None) or record.answers)


def build_examples(fb, records, entity_fn, desc: str, progress: bool = True):
    from tqdm import tqdm

    out = []
    for r in tqdm(records, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
        ex = fb.build(record_image(r), r.question, entity_fn(r), record_answers(r),
                      meta={"qid": r.qid, "split": r.split, **_meta(r)})
        out.append(ex)
    return out


def _meta(r) -> dict:
    return {k: r.extra[k] for k in ("question_type", "relation") if k in r.extra}


def evaluate_examples(model, examples, batch_size: int = 64) -> dict:
    """Accuracy (top-1 in the valid answers), top-3 and subgraph coverage over examples."""
    import torch


    model.eval()
    hits = top3 = cov = 0
    preds = []
    with torch.inference_mode():
        for s in range(0, len(examples), batch_size):
            chunk = examples[s:s + batch_size]
            b = collate(chunk, model.config, with_targets=False)
            out = model(b)
            for ex, d in zip(chunk, answer_distribution(out, model.config.answer_vocab, b.node_names)):
                ranked = sorted(d, key=d.get, reverse=True)
                ok = ranked[0] in ex.answers
                hits += ok
                top3 += any(a in ex.answers for a in ranked[:3])
                cov += any(a in ex.answers for a in ex.node_names) or (set(ex.answers) <= {"yes", "no"})
                preds.append((ranked[0], ok))
    n = max(1, len(examples))
    return {"accuracy": hits / n, "top3": top3 / n, "coverage": cov / n, "n": len(examples), "predictions": preds}


def train_recipe(recipe: dict, progress: bool = True) -> dict:
    """Run a recipe; returns a summary (paths, times, validation figures)."""
    import torch


    t_start = time.perf_counter()
    if recipe.get("threads"):
        torch.set_num_threads(int(recipe["threads"]))
    if backbone_kind(recipe.get("model")) != "builtin":
        return train_generative_recipe(recipe, progress=progress)
    if recipe.get("dataset", "builtin") not in ("builtin", "fvqa"):
        raise ValueError(f"dataset {recipe.get('dataset')!r}: free-text answers need a generative backbone "
                         f"(model.backbone); the built-in pointer model trains on 'builtin' and 'fvqa'")
    dataset = recipe.get("dataset", "builtin")
    out_dir = Path(recipe.get("out_dir", f"runs/{dataset}"))
    tcfg = TrainConfig(out_dir=str(out_dir), **{k: v for k, v in recipe.get("train", {}).items() if k != "out_dir"})
    seed_everything(tcfg.seed)
    kg_spec = recipe.get("kg", "bundled:cn100k+fvqa")
    # Bundled KGs are built once under kg_cache (default: the user cache folder).
    kg = open_kg(kg_spec, cache_root=recipe.get("kg_cache"))
    rcfg = RetrievalConfig.from_dict(recipe.get("retrieval", {})) if recipe.get("retrieval") else RetrievalConfig()
    retriever = SubgraphRetriever(kg, rcfg)
    budget = int(recipe.get("budget", 64))

    train_recs, val_recs, entity_fn, data_info = _dataset(recipe, dataset, kg)
    if recipe.get("limit"):
        train_recs = train_recs[: int(recipe["limit"])]
    vocab = sorted({a for r in train_recs for a in record_answers(r)} | {"yes", "no"})
    mcfg = KnowledgeVQAConfig(answer_vocab=vocab, num_relations=max(64, kg.num_relations),
                              **recipe.get("model", {}))
    model = KnowledgeVQAModel(mcfg)

    fb = FeatureBuilder(mcfg, model.tokenizer, retriever if mcfg.uses_graph else None, budget=budget)
    t0 = time.perf_counter()
    train_ex = build_examples(fb, train_recs, entity_fn, "features (train)", progress)
    val_ex = build_examples(fb, val_recs, entity_fn, "features (val)", progress)
    if mcfg.uses_graph and retriever.embeddings.cache_dir is not None:
        retriever.embeddings.save()
    t_feat = time.perf_counter() - t0
    log.info("features: %d train, %d val examples in %.0f s", len(train_ex), len(val_ex), t_feat)

    def on_epoch_end(epoch, m):
        r = evaluate_examples(m, val_ex)
        return {"val_accuracy": round(r["accuracy"], 4), "val_coverage": round(r["coverage"], 4)}

    pad = model.tokenizer.pad_token_id or 0
    t0 = time.perf_counter()
    res = train(model, train_ex, lambda items: collate(items, mcfg, pad_id=pad), tcfg, on_epoch_end=on_epoch_end)
    t_train = time.perf_counter() - t0

    det = None
    t_det = 0.0
    dcfg = recipe.get("detector")
    if dataset == "builtin" and dcfg is not None:
        t0 = time.perf_counter()
        if "from" in dcfg:

            det = LayoutCellDetector.from_pretrained(dcfg["from"])
        else:
            det = train_detector(train_recs, dcfg, tcfg.seed)
        t_det = time.perf_counter() - t0
    ecfg = EngineConfig(kg=kg_spec, retrieval=rcfg.to_dict(), budget=budget,
                        detector="detector" if det is not None else None, dataset=dataset)
    engine = KnowledgeVQA(model, ecfg, kg=kg, retriever=retriever, detector=det)
    final = engine.save_pretrained(out_dir / "final")
    # The recipe travels with the engine (``ravlm bench builtin --ablate --model`` varies it).
    (Path(final) / "recipe.json").write_text(json.dumps(recipe, indent=1))
    val = evaluate_examples(model, val_ex)
    summary = {"engine": str(final), "train_questions": len(train_ex), "val_questions": len(val_ex),
               "answer_vocab": len(vocab), "val_accuracy": round(val["accuracy"], 4),
               "val_coverage": round(val["coverage"], 4), "epochs": res.epochs_run, "losses": res.losses,
               "seconds": {"features": round(t_feat, 1), "train": round(t_train, 1), "detector": round(t_det, 1),
                           "total": round(time.perf_counter() - t_start, 1)}, **data_info}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _dataset(recipe: dict, dataset: str, kg):
    """(train records, val records, entity function, info) for a recipe."""
    if dataset == "builtin":

        root = recipe.get("data")
        tr = load_builtin("train", root=root)
        va = load_builtin("val", root=root)
        return tr, va, builtin_entities, {"dataset": "builtin"}

    if dataset == "fvqa":
        if not recipe.get("questions") or not recipe.get("facts"):
            raise ValueError("an fvqa recipe needs 'questions' and 'facts' (FVQA train files)")
        recs = [r for r in load_fvqa(recipe["questions"], recipe["facts"], images_root=recipe.get("images"))
                if r.answer_concepts]
    elif dataset == "okvqa":
        if not recipe.get("questions") or not recipe.get("annotations"):
            raise ValueError("an okvqa recipe needs 'questions' and 'annotations' (OK-VQA train files)")
        recs = load_vqa(recipe["questions"], recipe["annotations"], recipe.get("images"), dataset="okvqa")
    elif dataset == "aokvqa":
        if not recipe.get("questions"):
            raise ValueError("an aokvqa recipe needs 'questions' (the A-OKVQA train JSON)")
        recs = load_aokvqa(recipe["questions"], recipe.get("images"))
    else:
        raise ValueError(f"dataset: expected one of {list(RECIPE_DATASETS)}, found {dataset!r}")
    recs = [r for r in recs if r.answers]
    rng = random.Random(int(recipe.get("train", {}).get("seed", 0)))
    order = list(range(len(recs)))
    rng.shuffle(order)
    k = int(len(recs) * float(recipe.get("holdout", 0.15)))
    held = {recs[i].qid for i in order[:k]}
    tr = [r for r in recs if r.qid not in held]
    va = [r for r in recs if r.qid in held]
    return tr, va, fvqa_entities, {"dataset": dataset, "holdout_qids": sorted(held)}


def fvqa_entities(record) -> list:
    """Given-entities mode: the record's image entities (visual concept + distractors)."""

    return [Entity(e.concept, 1.0, "image") for e in record.entities if e.origin == "image"]


# --------------------------------------------------------------------------- generative backbones


def generative_accuracy(model, examples, batch_size: int = 32, max_new_tokens: int | None = None,
                        num_beams: int | None = None) -> dict:
    """Exact match of generated answers (any valid answer, as text) over examples."""
    import torch

    model.eval()
    hits, preds = 0, []
    with torch.inference_mode():
        for s in range(0, len(examples), batch_size):
            chunk = examples[s:s + batch_size]
            texts = model.generate(collate_generative(chunk, model, with_answers=False), max_new_tokens, num_beams)
            for ex, t in zip(chunk, texts):
                ok = normalize_answer(t) in {normalize_answer(answer_text(a)) for a in ex.answers}
                hits += ok
                preds.append((t, bool(ok)))
    return {"exact_match": hits / max(1, len(examples)), "n": len(examples), "predictions": preds}


def build_generative_examples(fb, records, entity_fn, desc: str, progress: bool = True, chunk: int = 32):
    """:class:`GenExample` s of records, images encoded ``chunk`` at a time."""
    from tqdm import tqdm

    out = []
    with tqdm(total=len(records), desc=desc, disable=not progress, dynamic_ncols=True, leave=False) as bar:
        for s in range(0, len(records), chunk):
            part = records[s:s + chunk]
            images = [record_image(r) for r in part]
            states = fb.encode_images(images) or [None] * len(part)
            for r, im, st in zip(part, images, states):
                out.append(fb.build(im, r.question, entity_fn(r), record_answers(r),
                                    meta={"qid": r.qid, "split": r.split, **_meta(r)}, image_states=st))
            bar.update(len(part))
    return out


def train_generative_recipe(recipe: dict, progress: bool = True) -> dict:
    """A recipe whose ``model.backbone`` names a Hugging Face kind: the GNN, graph-token
    projector (and copy head, LoRA, named backbone weights) train with token cross-entropy
    on the answer text, through the same loop (seeded, resumable, DDP)."""
    import torch

    t_start = time.perf_counter()
    dataset = recipe.get("dataset", "builtin")
    out_dir = Path(recipe.get("out_dir", f"runs/{dataset}_generative"))
    tcfg = TrainConfig(out_dir=str(out_dir), **{k: v for k, v in recipe.get("train", {}).items() if k != "out_dir"})
    seed_everything(tcfg.seed)
    kg_spec = recipe.get("kg", "bundled:cn100k+fvqa")
    kg = open_kg(kg_spec, cache_root=recipe.get("kg_cache"))
    rcfg = RetrievalConfig.from_dict(recipe.get("retrieval", {})) if recipe.get("retrieval") else RetrievalConfig()
    retriever = SubgraphRetriever(kg, rcfg)
    budget = int(recipe.get("budget", 96))
    train_recs, val_recs, entity_fn, data_info = _dataset(recipe, dataset, kg)
    if recipe.get("limit"):
        train_recs = train_recs[: int(recipe["limit"])]
    section = dict(recipe.get("model", {}))
    val_limit = int(section.pop("val_limit", 200))
    mcfg = GenerativeVQAConfig(num_relations=max(64, kg.num_relations), **section)
    model = KnowledgeGenerator(mcfg)
    fb = GenerativeFeatureBuilder(model, retriever if mcfg.use_graph else None, budget=budget)
    t0 = time.perf_counter()
    train_ex = build_generative_examples(fb, train_recs, entity_fn, "features (train)", progress)
    val_ex = build_generative_examples(fb, val_recs[:val_limit], entity_fn, "features (val)", progress)
    t_feat = time.perf_counter() - t0
    log.info("features: %d train, %d val examples in %.0f s", len(train_ex), len(val_ex), t_feat)

    def on_epoch_end(epoch, m):
        return {"val_exact_match": round(generative_accuracy(m, val_ex)["exact_match"], 4)}

    t0 = time.perf_counter()
    res = train(model, train_ex, lambda items: collate_generative(items, model), tcfg, on_epoch_end=on_epoch_end)
    t_train = time.perf_counter() - t0
    ecfg = EngineConfig(kg=kg_spec, retrieval=rcfg.to_dict(), budget=budget, detector=None, dataset=dataset)
    engine = KnowledgeVQA(model, ecfg, kg=kg if mcfg.use_graph else None,
                          retriever=retriever if mcfg.use_graph else None)
    final = engine.save_pretrained(out_dir / "final")
    (Path(final) / "recipe.json").write_text(json.dumps(recipe, indent=1))
    val = generative_accuracy(model, val_ex)
    summary = {"engine": str(final), "backbone": mcfg.backbone.kind, "use_graph": mcfg.use_graph,
               "train_questions": len(train_ex), "val_questions": len(val_ex),
               "val_exact_match": round(val["exact_match"], 4), "epochs": res.epochs_run, "losses": res.losses,
               "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "seconds": {"features": round(t_feat, 1), "train": round(t_train, 1),
                           "total": round(time.perf_counter() - t_start, 1)}, **data_info}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
