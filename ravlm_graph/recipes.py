"""Training recipes behind ``ravlm train CONFIG.json``.

A recipe file is JSON, read into a typed :class:`Recipe`::

    {
      "dataset": "builtin",            # or "fvqa"
      "out_dir": "runs/builtin",
      "kg": "bundled:cn100k+fvqa",    # or a store folder
      "kg_cache": null,               # where a bundled KG is built (null: the user cache folder)
      "retrieval": {"method": "ppr", "budget": 96},                     # RetrievalConfig fields
      "model": {"fusion": "graph_tokens", "gnn_kind": "gatv2", ...},   # KnowledgeVQAConfig fields
      "train": {"epochs": 8, "batch_size": 32, "lr": 3e-4, "seed": 0},  # TrainConfig fields
      "detector": {"epochs": 6, "image_size": 32},                      # or {"from": "path/to/detector"}
                                      # or {"scorer": "cell_net", "extra_scenes": 24000, "extra_pool": "twemoji", ...}
      "limit": null                                                     # use only the first N train questions
    }

Each setting has one owner: the node budget is ``retrieval.budget`` (a top-level
``budget`` of older recipes is moved there on load). :func:`load_recipe` checks every key
and value and names the file and the key in its errors.

The engine is written to ``out_dir/final`` (model, ``engine.json``, ``detector/``);
``out_dir/last`` is the resumable checkpoint.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from ravlm_graph.grounding.layouts import layout_cells
from ravlm_graph.types import Entity
from ravlm_graph.grounding.detectors.layout import DETECTOR_FILE, LayoutCellDetector
from ravlm_graph.grounding.detectors.cellnet import BACKBONES as CELL_NET_BACKBONES
from ravlm_graph.retrieval.embeddings import minilm_path
from ravlm_graph.training.detectors import train_layout_detector
from ravlm_graph.datasets.builtin import default_emoji_root
from ravlm_graph.datasets.scenes import STYLE_DIRS, TRAINING_STYLE_DIRS, synthetic_scenes
from ravlm_graph.datasets import BuiltinRecord
from ravlm_graph.models.knowledge_vqa.modeling import answer_distribution
from ravlm_graph.models.knowledge_vqa.processing import collate
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.models.knowledge_vqa.configuration import KnowledgeVQAConfig
from ravlm_graph.models.knowledge_vqa.modeling import KnowledgeVQAModel
from ravlm_graph.engine import EngineConfig, KnowledgeVQA, refer_focus
from ravlm_graph.kg import open_kg
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.training.loop import TrainConfig, check_trainable_dtypes, seed_everything, train
from ravlm_graph.models.knowledge_vqa.processing import FeatureBuilder
from ravlm_graph.datasets import load_builtin
from ravlm_graph.datasets import load_fvqa
from ravlm_graph.datasets.loaders import load_aokvqa, load_vqa
from ravlm_graph.models.hf_backbones import (GenerativeFeatureBuilder, GenerativeVQAConfig, KnowledgeGenerator,
                                             answer_text, backbone_kind, collate_generative)
from ravlm_graph.datasets.answers import normalize_answer
from ravlm_graph.utils.config import Config, check_choice, check_int, check_range

log = logging.getLogger(__name__)

#: Datasets a recipe trains on; okvqa / aokvqa need a generative backbone (free-text answers).
RECIPE_DATASETS = ("builtin", "fvqa", "okvqa", "aokvqa")
#: Settings of the layout-cell detector a recipe may train (or ``{"from": folder}``).
DETECTOR_KEYS = ("epochs", "image_size", "channels", "negatives_per_scene", "batch_size", "lr", "extra_scenes",
                 "extra_pool", "extra_styles", "init_from", "scorer", "blocks", "hidden", "layout_choice", "weight_decay",
                 "min_score", "backbone", "augment")
#: Model settings a recipe may not give: they come from the data and the KG.
DERIVED_MODEL_KEYS = ("answer_vocab",)
#: The data files each dataset reads (``ravlm train --questions ...`` overrides them).
DATASET_FILES = {"builtin": (), "fvqa": ("questions", "facts", "images"),
                 "okvqa": ("questions", "annotations", "images"), "aokvqa": ("questions", "images")}


@dataclass
class Recipe(Config):
    """A training recipe (see the module docstring for the file format).

    Args:
        dataset (str): one of :data:`RECIPE_DATASETS` (default ``"builtin"``).
        out_dir (str | None): output folder (default None: ``runs/<dataset>``).
        kg (str): ``bundled:cn100k``, ``bundled:cn100k+fvqa`` or a store folder.
        kg_cache (str | None): where a bundled KG and its node embeddings are cached (default None:
            the user cache folder).
        retrieval (RetrievalConfig): subgraph retrieval, node budget included (a dict of its fields is accepted).
        model (dict): :class:`KnowledgeVQAConfig` fields (``answer_vocab`` comes from the data), or
            with a ``backbone`` entry :class:`GenerativeVQAConfig` fields (and ``val_limit``).
        train (dict): :class:`TrainConfig` fields (``out_dir`` comes from the recipe).
        detector (dict | None): layout-detector training settings (:data:`DETECTOR_KEYS`) or
            ``{"from": folder}``; None: no detector (given entities).
        limit (int | None): use only the first N training questions.
        data (str | None): the built-in benchmark's folder (default: the packaged one).
        questions, facts (str | None): FVQA training files (``fvqa`` recipes); ``questions`` and
            ``annotations`` for ``okvqa``, ``questions`` for ``aokvqa``.
        images (str | None): the dataset's image folder.
        annotations (str | None): OK-VQA annotations.
        holdout (float): share of FVQA questions held out for validation (default 0.15).
        threads (int | None): torch threads.
    """

    dataset: str = "builtin"
    out_dir: str | None = None
    kg: str = "bundled:cn100k+fvqa"
    kg_cache: str | None = None
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    detector: dict | None = None
    limit: int | None = None
    data: str | None = None
    questions: str | None = None
    facts: str | None = None
    images: str | None = None
    annotations: str | None = None
    holdout: float = 0.15
    threads: int | None = None

    def validate(self) -> None:
        o = "Recipe"
        check_choice(o, "dataset", self.dataset, RECIPE_DATASETS)
        for name in ("kg",):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{o}.{name}: expected a non-empty string, found {getattr(self, name)!r}")
        for name in ("out_dir", "kg_cache", "data", "questions", "facts", "images", "annotations"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{o}.{name}: expected a path (string) or null, found {v!r}")
        if isinstance(self.retrieval, Mapping):
            self.retrieval = RetrievalConfig.from_dict(self.retrieval, f"{o}.retrieval")
        if not isinstance(self.retrieval, RetrievalConfig):
            raise ValueError(f"{o}.retrieval: expected RetrievalConfig fields, found {self.retrieval!r}")
        if not isinstance(self.model, dict):
            raise ValueError(f"{o}.model: expected KnowledgeVQAConfig fields, found {self.model!r}")
        if self.generative:
            self.generative_config(1)
        else:
            derived = sorted(set(self.model) & set(DERIVED_MODEL_KEYS))
            if derived:
                raise ValueError(f"{o}.model: {derived} come from the training data, not the recipe")
            self.model_config(["yes", "no"], 1)  # every value checked now, not after hours of features
        if not isinstance(self.train, dict) or "out_dir" in self.train:
            raise ValueError(f"{o}.train: expected TrainConfig fields other than out_dir (the recipe's "
                             f"out_dir owns it), found {self.train!r}")
        self.train_config()
        if self.detector is not None:
            if not isinstance(self.detector, dict):
                raise ValueError(f"{o}.detector: expected an object or null, found {self.detector!r}")
            allowed = ("from",) if "from" in self.detector else DETECTOR_KEYS
            unknown = sorted(set(self.detector) - set(allowed))
            if unknown:
                raise ValueError(f"{o}.detector: unknown fields {unknown}; expected some of {sorted(allowed)}")
            for key, choices in (("scorer", ("crops", "cell_net")), ("extra_pool", ("train", "twemoji")),
                                 ("layout_choice", ("cells", "head", "joint")), ("backbone", CELL_NET_BACKBONES)):
                if key in self.detector:
                    check_choice(f"{o}.detector", key, self.detector[key], choices)
            if "extra_styles" in self.detector:
                _check_extra_styles(f"{o}.detector", self.detector["extra_styles"])
            if "augment" in self.detector and not isinstance(self.detector["augment"], bool):
                raise ValueError(f"{o}.detector.augment: expected true or false, found {self.detector['augment']!r}")
            if "init_from" in self.detector and not (isinstance(self.detector["init_from"], str)
                                                     and self.detector["init_from"]):
                raise ValueError(f"{o}.detector.init_from: expected a detector folder path, "
                                 f"found {self.detector['init_from']!r}")
        for name in ("questions", "facts", "images", "annotations"):
            if getattr(self, name) is not None and name not in DATASET_FILES[self.dataset]:
                users = [d for d, files in DATASET_FILES.items() if name in files]
                raise ValueError(f"{o}.{name}: a {self.dataset!r} recipe does not read it (only "
                                 f"{', '.join(users)} recipes do); remove it")
        if self.limit is not None:
            check_int(o, "limit", self.limit, 1)
        check_range(o, "holdout", self.holdout, 0.0, 0.9)
        if self.threads is not None:
            check_int(o, "threads", self.threads, 1, 1024)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str | None = None) -> "Recipe":
        """As :meth:`Config.from_dict`; a top-level ``budget`` (older recipes) moves into ``retrieval``."""
        if isinstance(data, Mapping) and "budget" in data:
            data = dict(data)
            budget = data.pop("budget")
            retrieval = data.get("retrieval")
            retrieval = retrieval.to_dict() if isinstance(retrieval, RetrievalConfig) else dict(retrieval or {})
            if "budget" in retrieval and retrieval["budget"] != budget:
                raise ValueError(f"{where or cls.__name__}: 'budget' ({budget}) and 'retrieval.budget' "
                                 f"({retrieval['budget']}) disagree; the budget belongs in retrieval only")
            retrieval["budget"] = budget
            data["retrieval"] = retrieval
        return super().from_dict(data, where)

    @property
    def generative(self) -> bool:
        """Whether ``model`` names a Hugging Face backbone (answers generated as text)."""
        try:
            return backbone_kind(self.model) != "builtin"
        except ValueError as e:
            raise ValueError(f"Recipe.{e}") from e

    @property
    def output_dir(self) -> Path:
        return Path(self.out_dir or f"runs/{self.dataset}" + ("_generative" if self.generative else ""))

    def generative_config(self, num_relations: int) -> GenerativeVQAConfig:
        """The generative model's config (``model`` without ``val_limit``), for the KG's relations."""
        section = {k: v for k, v in self.model.items() if k != "val_limit"}
        try:
            base = GenerativeVQAConfig.from_dict(section, "Recipe.model")
        except TypeError as e:
            raise ValueError(f"Recipe.model: {e}") from e
        return base.replace(num_relations=max(base.num_relations, num_relations))

    def model_config(self, answer_vocab, num_relations: int) -> KnowledgeVQAConfig:
        """The model's config: the recipe's settings, the answers seen in training, the KG's relations."""
        try:
            base = KnowledgeVQAConfig.from_dict(self.model, "Recipe.model")
        except TypeError as e:
            raise ValueError(f"Recipe.model: {e}") from e
        return base.replace(answer_vocab=list(answer_vocab), num_relations=max(base.num_relations, num_relations))

    def train_config(self, progress: bool = True) -> TrainConfig:
        """The training loop's config; ``progress=False`` turns its epoch bars off (``--no-progress``)."""
        tcfg = TrainConfig.from_dict({**self.train, "out_dir": str(self.output_dir)}, "Recipe.train")
        return tcfg if progress else tcfg.replace(progress=False)

    def check_inputs(self, source: str | None = None, names: Mapping[str, str] | None = None) -> None:
        """Check what the recipe reads from disk before any training starts: the KG store,
        the detector folders (``detector.from``, ``detector.init_from``), the data files, the
        text backbone and its ``model.trunk_layers``, and that ``out_dir`` is not a file.

        Args:
            source: the recipe file, named first in the errors.
            names: field -> how the user gave it (``{"questions": "--questions"}``) for the
                fields that did not come from the file.

        Raises:
            FileNotFoundError: a path that does not exist.
            ValueError: a path of the wrong kind, or ``trunk_layers`` beyond the backbone's layers.
        """
        names = dict(names or {})

        def where(key: str) -> str:
            if key.split(".")[0] in names:
                return names[key.split(".")[0]]
            return f"{source}: Recipe.{key}" if source else f"Recipe.{key}"

        def folder(key: str, path: str, what: str) -> Path:
            p = Path(path)
            if not p.exists():
                raise FileNotFoundError(f"{where(key)}: {path}: no such folder (expected {what})")
            if not p.is_dir():
                raise ValueError(f"{where(key)}: {path}: expected {what}, found a file")
            return p

        if not self.kg.startswith("bundled:"):
            p = folder("kg", self.kg, "a kg store folder")
            if not (p / "meta.json").is_file():
                raise ValueError(f"{where('kg')}: {self.kg}: not a kg store folder (no meta.json)")
        if self.detector:
            for key in ("from", "init_from"):
                if key in self.detector:
                    p = folder(f"detector.{key}", self.detector[key], "a layout detector folder")
                    if not (p / DETECTOR_FILE).is_file():
                        raise ValueError(f"{where('detector.' + key)}: {self.detector[key]}: not a layout "
                                         f"detector folder (no {DETECTOR_FILE})")
        if self.data is not None:
            folder("data", self.data, "the built-in benchmark's folder")
        for key in DATASET_FILES[self.dataset]:
            v = getattr(self, key)
            if v is None:
                continue
            if key == "images":
                folder(key, v, "the images folder")
            elif not Path(v).exists():
                raise FileNotFoundError(f"{where(key)}: {v}: no such file")
            elif not Path(v).is_file():
                raise ValueError(f"{where(key)}: {v}: expected a JSON file, found a folder")
        out = self.output_dir
        if out.exists() and not out.is_dir():
            raise ValueError(f"{where('out_dir')}: {out}: exists and is not a folder")
        if not self.generative:
            self._check_trunk(where)

    def _check_trunk(self, where) -> None:
        """``model.text_backbone`` exists and has at least ``model.trunk_layers`` layers
        (read from its config.json: the model is not loaded)."""
        spec = self.model.get("text_backbone", "minilm")
        if spec == "minilm":
            try:
                path = minilm_path()
            except (ImportError, FileNotFoundError):
                return  # the model's own loading names the missing package
        else:
            path = Path(spec)
            if not path.is_dir():
                raise FileNotFoundError(f"{where('model.text_backbone')}: {spec}: no such model folder")
        layers = self.model.get("trunk_layers")
        if layers is None:
            return
        try:
            n = json.loads((path / "config.json").read_text(encoding="utf-8")).get("num_hidden_layers")
        except (OSError, ValueError, AttributeError):
            return
        if isinstance(n, int) and layers > n:
            raise ValueError(f"{where('model.trunk_layers')}: expected 1..{n} (the layers of the text backbone "
                             f"{spec!r}), found {layers}")


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file; errors name the file and the key."""
    p = Path(path)
    try:
        rec = json.loads(p.read_text(encoding="utf-8-sig"))  # a byte-order mark is accepted
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such recipe file") from None
    except IsADirectoryError:
        raise ValueError(f"{p}: expected a recipe file (JSON), found a folder") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: recipe is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}:{e.lineno}: recipe is not valid JSON: {e.msg}") from e
    if not isinstance(rec, dict):
        raise ValueError(f"{p}: expected a JSON object")
    return Recipe.from_dict(rec, str(p))


def as_recipe(recipe: Recipe | Mapping[str, Any]) -> Recipe:
    """A :class:`Recipe` from a recipe or a dict of its fields."""
    return recipe if isinstance(recipe, Recipe) else Recipe.from_dict(recipe)


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


def _check_extra_styles(where: str, styles) -> list[str]:
    known = ("twemoji", *TRAINING_STYLE_DIRS)
    if not isinstance(styles, list) or not styles or not all(isinstance(s, str) for s in styles):
        raise ValueError(f"{where}.extra_styles: expected a non-empty list of style names, found {styles!r}")
    for s in styles:
        if s in STYLE_DIRS and s != "twemoji":
            raise ValueError(f"{where}.extra_styles: {s!r} is the built-in benchmark's other (test) style; "
                             f"a detector never trains on it")
        if s not in known:
            raise ValueError(f"{where}.extra_styles: unknown style {s!r}; expected some of {list(known)}")
    return list(styles)


def train_detector(records, cfg: dict, seed: int, out_dir: str = ""):
    """Train the layout-cell detector on the scenes of ``records`` (the training split).

    ``cfg["extra_scenes"]`` (default 0) adds that many freshly drawn scenes
    (:func:`~ravlm_graph.datasets.scenes.synthetic_scenes`, Twemoji style, placed the way the
    benchmark places them) of the sprites named by ``cfg["extra_pool"]``: ``"train"``
    (default: the objects of the training split) or ``"twemoji"`` (every Twemoji sprite of the
    emoji folder's ``index.json``; the sprites ship with the package, so drawing them is
    training on the training style, not on test scenes). ``cfg["extra_styles"]`` (default
    ``["twemoji"]``) draws each object of those scenes in one of these styles, picked at random
    among those that have its sprite (``"twemoji"`` and the training-only styles of
    :data:`~ravlm_graph.datasets.scenes.TRAINING_STYLE_DIRS`; the benchmark's other style is
    refused). ``cfg["scorer"]`` ``"cell_net"``
    trains a whole-scene :class:`~ravlm_graph.grounding.detectors.cellnet.CellNet` (settings
    ``image_size``, ``channels``, ``blocks``, ``hidden``, ``layout_choice``, ``min_score``) instead of the
    crop tagger (default ``"crops"``); see :func:`train_layout_detector`.
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
    emoji_root = emoji_root or default_emoji_root()
    extra = int(cfg.get("extra_scenes", 0))
    extra_pool = cfg.get("extra_pool", "train")
    if extra_pool not in ("train", "twemoji"):
        raise ValueError(f"detector.extra_pool: expected 'train' or 'twemoji', found {extra_pool!r}")
    if extra_pool == "twemoji":
        index = json.loads((Path(emoji_root) / "index.json").read_text(encoding="utf-8"))
        pool = {(e["image"], e["concept"]) for e in index if e.get("concept")}
    styles = _check_extra_styles("detector", cfg["extra_styles"]) if "extra_styles" in cfg else None
    if styles is not None and any(r.extra["scene"]["style"] != "twemoji" for r in records):
        raise ValueError("detector.extra_styles: the training scenes are not in the twemoji style; "
                         "extra styles are for a detector trained on the twemoji split")
    if extra:
        scenes += list(synthetic_scenes(sorted(pool), extra, emoji_root, seed=seed + 1, styles=styles))
    concepts = sorted({c for _, objs in scenes for c, _ in objs} | ({c for _, c in pool} if extra else set()))
    cell_net = cfg.get("scorer", "crops") == "cell_net"
    kw = {k: cfg[k] for k in ("epochs", "image_size", "negatives_per_scene", "batch_size", "lr", "features",
                              "feature_size", "hidden", "scorer", "layout_choice", "weight_decay", "min_score",
                              "init_from", "backbone") if k in cfg}
    for k in ("channels", "blocks"):
        if k in cfg:
            kw[k] = tuple(cfg[k])
    if "augment" in cfg:
        kw["jitter"] = bool(cfg["augment"])
    kw.setdefault("image_size", 128 if cell_net else 32)
    kw.setdefault("channels", (24, 32, 64, 128) if cell_net else (32, 64, 96))
    kw.setdefault("negatives_per_scene", 1)
    return train_layout_detector(scenes, concepts, seed=seed, out_dir=out_dir, **kw)


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
                      meta={"qid": r.qid, "split": r.split, **_meta(r)}, fact=record_fact(r))
        out.append(ex)
    return out


def record_fact(record) -> tuple[str, str, str] | None:
    """A record's supporting fact as ``(visual end, relation, other end)`` (FVQA), else None."""
    facts = getattr(record, "facts", None)
    extra = getattr(record, "extra", None) or {}
    visual = extra.get("visual_concept") if isinstance(extra, Mapping) else None
    if not facts or not visual:
        return None
    f = facts[0]
    if visual not in (f.head, f.tail):
        return None
    return visual, f.relation, f.tail if visual == f.head else f.head


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


def train_recipe(recipe: Recipe | Mapping[str, Any], progress: bool = True) -> dict:
    """Run a recipe; returns a summary (paths, times, validation figures)."""
    import torch

    recipe = as_recipe(recipe)
    recipe.check_inputs()
    t_start = time.perf_counter()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    dataset = recipe.dataset
    out_dir = recipe.output_dir
    if recipe.generative:
        return train_generative_recipe(recipe, progress=progress)
    if recipe.dataset not in ("builtin", "fvqa"):
        raise ValueError(f"dataset {recipe.dataset!r}: free-text answers need a generative backbone "
                         f"(model.backbone); the built-in pointer model trains on 'builtin' and 'fvqa'")
    tcfg = recipe.train_config(progress)
    seed_everything(tcfg.seed)
    # Bundled KGs are built once under kg_cache (default: the user cache folder) with their embedding cache.
    kg = open_kg(recipe.kg, cache_root=recipe.kg_cache)
    rcfg = recipe.retrieval
    retriever = SubgraphRetriever(kg, rcfg)

    train_recs, val_recs, entity_fn, data_info = _dataset(recipe, kg)
    if recipe.limit:
        train_recs = train_recs[: recipe.limit]
    vocab = sorted({a for r in train_recs for a in record_answers(r)} | {"yes", "no"})
    mcfg = recipe.model_config(vocab, kg.num_relations)
    model = KnowledgeVQAModel(mcfg)

    fb = FeatureBuilder(mcfg, model.tokenizer, retriever if mcfg.uses_graph else None)
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
    dcfg = recipe.detector
    if dataset == "builtin" and dcfg is not None:
        t0 = time.perf_counter()
        if "from" in dcfg:
            det = LayoutCellDetector.from_pretrained(dcfg["from"])
        else:
            det = train_detector(train_recs, dcfg, tcfg.seed)
        t_det = time.perf_counter() - t0
    ecfg = EngineConfig(kg=recipe.kg, retrieval=rcfg, detector="detector" if det is not None else None,
                        dataset=dataset)
    engine = KnowledgeVQA(model, ecfg, kg=kg, retriever=retriever, detector=det)
    final = engine.save_pretrained(out_dir / "final")
    # The recipe travels with the engine (``ravlm bench builtin --ablate --model`` varies it).
    (Path(final) / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=1))
    val = evaluate_examples(model, val_ex)
    summary = {"engine": str(final), "train_questions": len(train_ex), "val_questions": len(val_ex),
               "answer_vocab": len(vocab), "val_accuracy": round(val["accuracy"], 4),
               "val_coverage": round(val["coverage"], 4), "epochs": res.epochs_run, "losses": res.losses,
               "seconds": {"features": round(t_feat, 1), "train": round(t_train, 1), "detector": round(t_det, 1),
                           "total": round(time.perf_counter() - t_start, 1)}, **data_info}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _dataset(recipe: Recipe, kg):
    """(train records, val records, entity function, info) for a recipe."""
    dataset = recipe.dataset
    if dataset == "builtin":
        tr = load_builtin("train", root=recipe.data)
        va = load_builtin("val", root=recipe.data)
        return tr, va, builtin_entities, {"dataset": "builtin"}

    if dataset == "fvqa":
        if not recipe.questions or not recipe.facts:
            raise ValueError("an fvqa recipe needs 'questions' and 'facts' (FVQA train files)")
        recs = [r for r in load_fvqa(recipe.questions, recipe.facts, images_root=recipe.images)
                if r.answer_concepts]
    elif dataset == "okvqa":
        if not recipe.questions or not recipe.annotations:
            raise ValueError("an okvqa recipe needs 'questions' and 'annotations' (OK-VQA train files)")
        recs = load_vqa(recipe.questions, recipe.annotations, recipe.images, dataset="okvqa")
    elif dataset == "aokvqa":
        if not recipe.questions:
            raise ValueError("an aokvqa recipe needs 'questions' (the A-OKVQA train JSON)")
        recs = load_aokvqa(recipe.questions, recipe.images)
    else:
        raise ValueError(f"dataset: expected one of {list(RECIPE_DATASETS)}, found {dataset!r}")
    recs = [r for r in recs if r.answers]
    rng = random.Random(int(recipe.train.get("seed", 0)))
    order = list(range(len(recs)))
    rng.shuffle(order)
    k = int(len(recs) * float(recipe.holdout))
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


def build_generative_examples(fb, records, entity_fn, desc: str, progress: bool = True, chunk: int = 32,
                              refer=None):
    """:class:`GenExample` s of records, images encoded ``chunk`` at a time; ``refer`` (a
    :class:`~ravlm_graph.grounding.config.GroundingConfig` and the dataset name) narrows each
    question's entities to those its spatial references select, as the engine does."""
    from tqdm import tqdm

    out = []
    with tqdm(total=len(records), desc=desc, disable=not progress, dynamic_ncols=True, leave=False) as bar:
        for s in range(0, len(records), chunk):
            part = records[s:s + chunk]
            images = [record_image(r) for r in part]
            states = fb.encode_images(images) or [None] * len(part)
            for r, im, st in zip(part, images, states):
                ents = entity_fn(r)
                if refer is not None:
                    ents = refer_focus(r.question, ents, im.size, *refer)
                out.append(fb.build(im, r.question, ents, record_answers(r),
                                    meta={"qid": r.qid, "split": r.split, **_meta(r)}, image_states=st))
            bar.update(len(part))
    return out


def train_generative_recipe(recipe: Recipe | Mapping[str, Any], progress: bool = True) -> dict:
    """A recipe whose ``model.backbone`` names a Hugging Face kind: the GNN, graph-token
    projector (and copy head, LoRA, named backbone weights) train with token cross-entropy
    on the answer text, through the same loop (seeded, resumable, DDP)."""
    recipe = as_recipe(recipe)
    recipe.check_inputs()
    t_start = time.perf_counter()
    dataset = recipe.dataset
    out_dir = recipe.output_dir
    tcfg = recipe.train_config(progress)
    seed_everything(tcfg.seed)
    kg = open_kg(recipe.kg, cache_root=recipe.kg_cache)
    rcfg = recipe.retrieval
    retriever = SubgraphRetriever(kg, rcfg)
    train_recs, val_recs, entity_fn, data_info = _dataset(recipe, kg)
    if recipe.limit:
        train_recs = train_recs[: recipe.limit]
    val_limit = int(recipe.model.get("val_limit", 200))
    mcfg = recipe.generative_config(kg.num_relations)
    model = KnowledgeGenerator(mcfg)
    check_trainable_dtypes(model)  # before minutes of features
    fb = GenerativeFeatureBuilder(model, retriever if mcfg.use_graph else None, budget=rcfg.budget)
    t0 = time.perf_counter()
    # The seeds the engine will retrieve from: the entities the question's spatial references select.
    refer = (retriever.grounder.config, dataset)
    train_ex = build_generative_examples(fb, train_recs, entity_fn, "features (train)", progress, refer=refer)
    val_ex = build_generative_examples(fb, val_recs[:val_limit], entity_fn, "features (val)", progress, refer=refer)
    t_feat = time.perf_counter() - t0
    log.info("features: %d train, %d val examples in %.0f s", len(train_ex), len(val_ex), t_feat)

    def on_epoch_end(epoch, m):
        return {"val_exact_match": round(generative_accuracy(m, val_ex)["exact_match"], 4)}

    t0 = time.perf_counter()
    res = train(model, train_ex, lambda items: collate_generative(items, model), tcfg, on_epoch_end=on_epoch_end)
    t_train = time.perf_counter() - t0
    ecfg = EngineConfig(kg=recipe.kg, retrieval=rcfg, detector=None, dataset=dataset)
    engine = KnowledgeVQA(model, ecfg, kg=kg if mcfg.use_graph else None,
                          retriever=retriever if mcfg.use_graph else None)
    final = engine.save_pretrained(out_dir / "final")
    (Path(final) / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=1))
    val = generative_accuracy(model, val_ex)
    summary = {"engine": str(final), "backbone": mcfg.backbone.kind, "use_graph": mcfg.use_graph,
               "train_questions": len(train_ex), "val_questions": len(val_ex),
               "val_exact_match": round(val["exact_match"], 4), "epochs": res.epochs_run, "losses": res.losses,
               "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "seconds": {"features": round(t_feat, 1), "train": round(t_train, 1),
                           "total": round(time.perf_counter() - t_start, 1)}, **data_info}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
