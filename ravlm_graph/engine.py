"""The engine's public face: ``KnowledgeVQA.from_pretrained(path).answer(image, question)``.

An engine folder holds everything needed to answer::

    config.json, model.safetensors   the model (see :mod:`ravlm_graph.models.knowledge_vqa`)
    engine.json                      which KG, retrieval settings, node budget, detector
    detector/                        a trained image entity detector's folder (optional)

``engine.json``'s ``detector`` names a kind of the detector registry
(:data:`~ravlm_graph.grounding.detectors.DETECTORS`) with its saved folder and/or settings::

    "detector": {"kind": "photo", "settings": {"box_threshold": 0.4}}
    "detector": {"kind": "layout_cells", "path": "detector"}

A plain string (engines saved before kinds were named) is a layout-cell detector's folder.

The KG is named in ``engine.json``: ``"bundled:cn100k"``, ``"bundled:cn100k+fvqa"`` or a
store folder; ``from_pretrained(path, kg=...)`` can point it elsewhere.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ravlm_graph.utils.checkpoint import CheckpointError, atomic_folder
from ravlm_graph.utils.config import Config
from ravlm_graph.utils.english import Realiser, kg_purposes
from ravlm_graph.types import Entity
from ravlm_graph.kg import open_kg
from ravlm_graph.models.knowledge_vqa.processing import FeatureBuilder, image_tensor
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.models.knowledge_vqa.modeling import KnowledgeVQAModel, PretrainedSceneEncoder
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.grounding.detectors import DETECTORS, build_detector, detector_kind
from ravlm_graph.grounding.images import load_image
from ravlm_graph.grounding.config import GroundingConfig
from ravlm_graph.grounding.spatial import refer_entities
from ravlm_graph.grounding.language import InputWarning, check_question, non_english_message
from ravlm_graph.grounding.detectors.given import parse_entities, resolve_entities
from ravlm_graph.models.knowledge_vqa.modeling import _top_pairs, answer_distribution, ranked_answers  # noqa: F401
from ravlm_graph.models.knowledge_vqa.processing import collate
from ravlm_graph.types import Fact
from ravlm_graph.models.hf_backbones import (GenerativeFeatureBuilder, KnowledgeGenerator, answer_text,
                                             collate_generative)

log = logging.getLogger(__name__)

ENGINE_FILE = "engine.json"
#: 2: the node budget lives in ``retrieval.budget`` only (1: a top-level ``budget`` that
#: overrode it); version 1 files still load.
ENGINE_FORMAT_VERSION = 2


@dataclass
class EngineConfig(Config):
    """Everything but the weights (``engine.json``).

    Args:
        kg (str): ``bundled:cn100k``, ``bundled:cn100k+fvqa`` or a store folder.
        retrieval (RetrievalConfig): subgraph retrieval, node budget included (a dict of its
            fields is accepted).
        detector (dict | str | None): the image detector: ``{"kind": K, "path": folder,
            "settings": {...}}`` (kind from the detector registry; ``path``, a subfolder, for
            trained detectors; ``settings`` for detectors built from settings); a plain string
            is a layout-cell detector's subfolder (engines saved before); None: entities must be given.
        dataset (str): what the model was trained on (for the record).
        box_missing (str | None): what the model reads for an image entity given without
            a box or position: ``"whole_image"`` (a box over the whole image) or ``"none"``
            (no box features); None: ``"whole_image"`` for a model trained on the built-in
            scenes (it always saw boxes: plain names without boxes answer 42.7 % of 150
            test_iid questions, with whole-image boxes 98.0 %), else ``"none"``.
    """

    kg: str = "bundled:cn100k+fvqa"
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    detector: dict | str | None = "detector"
    dataset: str = "builtin"
    box_missing: str | None = None
    format_version: int = ENGINE_FORMAT_VERSION

    def validate(self) -> None:
        if not isinstance(self.kg, str) or not self.kg.strip():
            raise ValueError(f"EngineConfig.kg: expected a store folder or 'bundled:...' name, found {self.kg!r}")
        if isinstance(self.retrieval, Mapping):
            self.retrieval = RetrievalConfig.from_dict(self.retrieval, "EngineConfig.retrieval")
        if not isinstance(self.retrieval, RetrievalConfig):
            raise ValueError(f"EngineConfig.retrieval: expected a RetrievalConfig or its fields, "
                             f"found {type(self.retrieval).__name__}")
        if self.box_missing not in (None, "whole_image", "none"):
            raise ValueError(f"EngineConfig.box_missing: expected \"whole_image\", \"none\" or null, "
                             f"found {self.box_missing!r}")
        if self.format_version != ENGINE_FORMAT_VERSION:
            raise ValueError(f"engine format version {self.format_version!r}; this version reads "
                             f"{ENGINE_FORMAT_VERSION} (and converts 1)")
        detector_spec(self.detector, "EngineConfig")  # checked now, not at first use

    @property
    def budget(self) -> int:
        """The node budget (owned by ``retrieval``)."""
        return self.retrieval.budget

    def detector_spec(self) -> dict | None:
        """The detector entry as ``{"kind", "path", "settings"}`` (None: no detector)."""
        return detector_spec(self.detector)


_SPEC_KEYS = ("kind", "path", "settings")


def detector_spec(value: Any, where: str = ENGINE_FILE) -> dict | None:
    """``engine.json``'s detector entry as ``{"kind", "path", "settings"}``.

    A plain string is the folder of a layout-cell detector (engines saved before kinds were
    named); None means no detector.

    Raises:
        CheckpointError: an entry of another shape, an unknown kind, or fields of the wrong type.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return {"kind": "layout_cells", "path": value, "settings": {}}
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: detector: expected null, a folder name or an object with "
                              f"{list(_SPEC_KEYS)}, found {type(value).__name__}")
    unknown = sorted(set(value) - set(_SPEC_KEYS))
    if unknown:
        raise CheckpointError(f"{where}: detector: unknown fields {unknown}; expected some of {list(_SPEC_KEYS)}")
    kind, path, settings = value.get("kind"), value.get("path"), value.get("settings") or {}
    if kind not in DETECTORS:
        raise CheckpointError(f"{where}: detector.kind: expected one of {DETECTORS.names()}, found {kind!r}")
    if path is not None and (not isinstance(path, str) or not path):
        raise CheckpointError(f"{where}: detector.path: expected a subfolder name, found {path!r}")
    if not isinstance(settings, dict):
        raise CheckpointError(f"{where}: detector.settings: expected an object, found {type(settings).__name__}")
    return {"kind": kind, "path": path, "settings": dict(settings)}


def read_engine_config(path: str | os.PathLike) -> EngineConfig:
    """Parse an ``engine.json``; a version-1 file (top-level ``budget``) is converted.

    Raises:
        CheckpointError: not JSON, unknown fields, a format version this code cannot read.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(d, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    if d.get("format_version") == 1:
        # Version 1 kept a top-level budget that overrode retrieval.budget on the VQA path.
        d = dict(d, retrieval=dict(d.get("retrieval") or {}), format_version=ENGINE_FORMAT_VERSION)
        if "budget" in d:
            d["retrieval"]["budget"] = d.pop("budget")
        log.info("%s: engine format 1 read (budget moved into retrieval); `ravlm export` rewrites it "
                 "in format %d", path, ENGINE_FORMAT_VERSION)
    elif d.get("format_version") != ENGINE_FORMAT_VERSION:
        raise CheckpointError(f"{path}: engine format version {d.get('format_version')!r}; this version of "
                              f"ravlm_graph reads {ENGINE_FORMAT_VERSION} (and converts 1); `ravlm export` "
                              f"rewrites an engine this version can read in today's format")
    try:
        return EngineConfig.from_dict(d, str(path))
    except ValueError as e:
        raise CheckpointError(str(e)) from e


@dataclass
class Answer:
    """An answer and its evidence.

    Fields:
        question, answer, score (probability of the answer).
        candidates: the top answers with probabilities.
        entities: detected / given entities with origin ("question" / "image"), scores, boxes.
        subgraph: the retrieved :class:`~ravlm_graph.retrieval.Subgraph` (None without a KG).
        facts: readable reasoning facts: the paths from the entities to the answer, then
            the most relevant facts of the subgraph.
        copy_prob: probability that the answer was copied from the graph.
        graph_attributions: (concept, probability mass copied from it), highest first.
        timings: seconds per stage.
        notes: what was noticed about the input (a question that does not look English,
            an entity name mapped to another concept or unknown to the graph); each was
            also given as an :class:`InputWarning`; and when the detector found no object in
            the image, why (so that the answer is seen to rest on the question alone).
        references: the question's spatial references and what they selected
            (``"the thing on the left -> bank"``); the selected image entities have
            ``referred=True``.
        answer_nodes: the subgraph nodes the answer names (exact name first), so that one
            sees whether the answer came from the graph.
        generated: True when the answer is free text from a generative backbone (``score``
            is then the probability of the whole answer, None when the backbone gives none).
    """

    question: str
    answer: str
    score: float
    candidates: list[tuple[str, float]]
    entities: list[Entity]
    subgraph: Any
    facts: list[str]
    copy_prob: float
    graph_attributions: list[tuple[str, float]]
    timings: dict = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    answer_nodes: list[str] = field(default_factory=list)
    generated: bool = False

    @property
    def subgraph_size(self) -> int:
        return 0 if self.subgraph is None else int(self.subgraph.num_nodes)

    def to_dict(self) -> dict:
        return {
            "question": self.question, "answer": self.answer.replace("_", " "),
            "answer_concept": None if self.generated else self.answer,
            "answer_nodes": list(self.answer_nodes), "generated": self.generated,
            "score": None if self.score is None else round(self.score, 4),
            "candidates": [[a, round(p, 4)] for a, p in self.candidates],
            "entities": [{"concept": e.concept, "origin": e.origin, "score": round(e.score, 4),
                          "box": list(e.box) if e.box else None, "label": e.label, "referred": e.referred}
                         for e in self.entities],
            "references": list(self.references), "notes": list(self.notes),
            "facts": self.facts, "subgraph_size": self.subgraph_size,
            "subgraph_edges": 0 if self.subgraph is None else int(self.subgraph.num_edges),
            "copy_prob": round(self.copy_prob, 4),
            "graph_attributions": [[c, round(w, 4)] for c, w in self.graph_attributions],
            "timings_ms": {k: round(1000 * v, 2) for k, v in self.timings.items()},
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        p = "" if self.score is None else f"p={self.score:.2f}, "
        lines = [f"Q: {self.question}", f"A: {self.answer.replace('_', ' ')}  ({p}"
                 f"copied from the graph with p={self.copy_prob:.2f})"]
        if self.answer_nodes:
            lines.append("answer nodes: " + ", ".join(self.answer_nodes))
        if self.entities:
            lines.append("entities: " + ", ".join(
                f"{e.concept} [{e.origin}{', ' + e.label if e.label else ''}{', referred' if e.referred else ''}]"
                for e in self.entities))
        for r in self.references:
            lines.append(f"reference: {r}")
        for n in self.notes:
            lines.append(f"note: {n}")
        lines.append(f"subgraph: {self.subgraph_size} nodes")
        for f in self.facts[:6]:
            lines.append(f"  - {f}")
        return "\n".join(lines)


def _share_vision(model, detector) -> bool:
    """Whether ``detector`` reads scenes through the same frozen pretrained network, at the same
    input size, as ``model``'s image encoder; then the detector is handed the model's copy and
    the engine runs the network once per batch for both."""
    name = getattr(detector, "backbone_name", None) if detector is not None else None
    vision = getattr(model, "vision", None)
    if name is None or not isinstance(vision, PretrainedSceneEncoder):
        return False
    if name != model.config.vision_encoder or detector.image_size != model.config.image_size:
        return False
    detector.share_backbone(vision.backbone)
    return True


class KnowledgeVQA:
    """Image + question -> answer with evidence.

    Build with :meth:`from_pretrained`; see :class:`Answer` for what comes back.
    """

    def __init__(self, model, engine_config: EngineConfig, kg=None, retriever=None, detector=None):
        self.model = model
        self.config = engine_config
        self.kg = kg
        self.retriever = retriever
        self.detector = detector
        if retriever is not None and retriever.config != engine_config.retrieval:
            raise ValueError("KnowledgeVQA: the retriever's config differs from engine_config.retrieval "
                             "(the engine config owns the retrieval settings, node budget included)")
        # Evidence in English; compound names read with the KG's help ("parking lot").
        self.realiser = Realiser(kg_purposes(kg) if kg is not None else None)
        self._shared_vision = _share_vision(model, detector)

        if isinstance(model, KnowledgeGenerator):
            self.features = GenerativeFeatureBuilder(model, retriever if model.config.uses_graph else None,
                                                     budget=engine_config.budget, cache_images=False)
        else:
            self.features = FeatureBuilder(model.config, model.tokenizer,
                                           retriever if model.config.uses_graph else None)

    @property
    def generative(self) -> bool:
        """Whether answers are generated text (a Hugging Face backbone) rather than graph concepts."""
        return isinstance(self.model, KnowledgeGenerator)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, kg=None, detector: bool | str = True,
                        kg_cache: str | os.PathLike | None = None) -> "KnowledgeVQA":
        """Load an engine folder.

        Args:
            path: the folder (``config.json``, ``model.safetensors``, ``engine.json``, ``detector/``).
            kg: a loaded KnowledgeGraph or a store folder to use instead of ``engine.json``'s.
            detector: load the image detector that ``engine.json`` names (False: entities must be
                passed to :meth:`answer`); a detector kind (``"photo"``) uses that kind instead —
                with the engine's settings or folder when it names the same kind, else its defaults.
            kg_cache: folder where a bundled KG is built once and its node embeddings are
                cached (None: built in memory, about a second, embeddings not kept).

        Raises:
            CheckpointError: missing or mismatched files, another format version, pickled weights.
        """

        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"from_pretrained: expected an engine folder path, found {type(path).__name__}")
        if kg is not None and not isinstance(kg, (str, os.PathLike)) and not hasattr(kg, "num_relations"):
            raise TypeError(f"from_pretrained: kg: expected a KnowledgeGraph or a store folder, found "
                            f"{type(kg).__name__}")
        if kg_cache is not None and Path(kg_cache).exists() and not Path(kg_cache).is_dir():
            raise ValueError(f"from_pretrained: kg_cache: expected a folder, found a file: {kg_cache}")
        path = Path(path)
        ep = path / ENGINE_FILE
        if not path.is_dir():
            raise CheckpointError(f"{path}: no such engine folder")
        if not ep.is_file():
            what = "is a folder, expected a JSON file" if ep.exists() else "missing"
            raise CheckpointError(f"{path}: {ENGINE_FILE} {what} (not an engine folder; a bare model folder "
                                  f"loads with KnowledgeVQAModel.from_pretrained)")
        ecfg = read_engine_config(ep)
        if KnowledgeGenerator.is_checkpoint(path):
            model = KnowledgeGenerator.from_pretrained(path)
        else:
            model = KnowledgeVQAModel.from_pretrained(path)
        retriever = None
        if model.config.uses_graph:
            if kg is None:
                kg = open_kg(ecfg.kg, cache_root=kg_cache)
            elif isinstance(kg, (str, os.PathLike)):
                kg = open_kg(str(kg))
            if kg.num_relations > model.config.num_relations:
                raise CheckpointError(f"the KG has {kg.num_relations} relations; the model was built for at most "
                                      f"{model.config.num_relations}")
            retriever = SubgraphRetriever(kg, ecfg.retrieval)
        det = None
        spec = ecfg.detector_spec()
        if isinstance(detector, str):
            if detector not in DETECTORS:
                raise ValueError(f"detector: expected one of {DETECTORS.names()}, found {detector!r}")
            if spec is None or spec["kind"] != detector:
                spec = {"kind": detector, "path": None, "settings": {}}
                ecfg.detector = {"kind": detector}
        if detector and spec is not None:
            dp = None
            if spec["path"] is not None:
                dp = path / spec["path"]
                if not dp.exists():
                    raise CheckpointError(f"{path}: engine.json names detector folder {spec['path']!r}, which is missing")
            det = build_detector(spec["kind"], path=dp, settings=spec["settings"], kg=kg)
            det.prepare_for_inference()
        return cls(model, ecfg, kg=kg, retriever=retriever, detector=det)

    def save_pretrained(self, path: str | os.PathLike, dtype=None) -> Path:
        """Write the engine folder in today's formats (``dtype=torch.float16`` halves the
        weights file); an existing folder at ``path`` is replaced whole."""
        path = Path(path)
        # One folder written at once: model, detector and engine.json replace the old ones together.
        with atomic_folder(path) as tmp:
            if hasattr(self.model, "write_files"):
                self.model.write_files(tmp, dtype=dtype)
            else:  # a model that writes whole folders only: it replaces the empty temporary one
                self.model.save_pretrained(tmp, dtype=dtype)
            entry = None
            if self.detector is not None:
                kind = detector_kind(self.detector)
                old = self.config.detector_spec()
                if getattr(self.detector, "save_pretrained", None) is not None:  # a trained detector: its folder
                    folder = (old or {}).get("path") or "detector"
                    self.detector.save_pretrained(tmp / folder)
                    entry = {"kind": kind, "path": folder}
                else:  # a detector built from settings: they go into engine.json
                    entry = {"kind": kind, "settings": self.detector.engine_settings()}
            config = self.config.replace(detector=entry)
            (tmp / ENGINE_FILE).write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
        self.config = config
        return path

    # ------------------------------------------------------------- answering
    def detect(self, images: Sequence[Any]) -> list[list[Entity]]:
        if self.detector is None:
            raise ValueError("this engine has no image detector; pass entities= to answer()")
        return self.detector.detect_batch(list(images))

    def answer(self, image, question: str, entities: Sequence[Any] | str | None = None, top_k: int = 5,
               max_new_tokens: int | None = None, num_beams: int | None = None) -> Answer:
        """Answer one question about one image (see :meth:`answer_batch`).

        ``entities`` replaces detection: names (``["knife", "bread"]``), names with a
        position (``"knife@left"``) or a box (``("knife", (10, 20, 60, 80))``), mappings
        (``{"concept": "knife", "box": [...]}``), :class:`Entity` objects, or one string
        ``"knife@left,bread@right"``.
        """
        return self.answer_batch([image], [question], None if entities is None else [entities], top_k=top_k,
                                 max_new_tokens=max_new_tokens, num_beams=num_beams)[0]

    def answer_batch(self, images: Sequence[Any], questions: Sequence[str],
                     entities: Sequence[Sequence[Any] | str] | None = None, top_k: int = 5,
                     max_new_tokens: int | None = None, num_beams: int | None = None) -> list[Answer]:
        """Answer a batch. ``entities`` (per question) replaces image detection when given
        (each list as :meth:`answer` takes it).

        A generative engine (Hugging Face backbone) writes its answer as text: greedy, or beam
        search with ``num_beams`` > 1, at most ``max_new_tokens`` (defaults from its config);
        the pointer model ignores both.

        Names are mapped to the graph's concepts (a lemma with more facts is used:
        ``"scissors"`` -> ``scissor``); a name the graph lacks, a question that does not
        look English and a reference that selects nothing give an :class:`InputWarning`
        and a line in ``Answer.notes``.

        Raises:
            ValueError: batches of different lengths, an empty question, a question longer
                than the model's context, an image that cannot be read, an empty or
                malformed entity list (the message names the item).
            FileNotFoundError: an image path that does not exist.
        """
        import torch

        for name, value in (("images", images), ("questions", questions)):
            one = (isinstance(value, (str, bytes, bytearray, os.PathLike)) or not hasattr(value, "__len__")
                   or hasattr(value, "getpixel")  # a PIL image
                   or (name == "images" and getattr(value, "ndim", None) in (2, 3)))  # one image as an array
            if one:
                raise TypeError(f"answer_batch: expected a list of {name}, found one {type(value).__name__} "
                                f"(answer() takes one image and one question)")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"answer_batch: top_k: expected an integer >= 1, found {top_k!r}")
        if len(images) == 0 and len(questions) == 0:
            return []
        notes: list[list[str]] = [[] for _ in questions]
        if len(images) != len(questions):
            raise ValueError(f"answer_batch: {len(images)} images but {len(questions)} questions")
        if entities is not None and (isinstance(entities, str) or len(entities) != len(questions)):
            found = "a string" if isinstance(entities, str) else f"{len(entities)} entity lists"
            raise ValueError(f"answer_batch: expected one entity list per question ({len(questions)}), found {found}")
        for i, q in enumerate(questions):
            check_question(q, f"answer_batch: question {i}")
            msg = non_english_message(q)
            if msg:
                notes[i].append(msg)
        specs = None
        if entities is not None:  # checked before any image is decoded
            specs = [parse_entities(e, f"answer_batch: entities of question {i}") for i, e in enumerate(entities)]
        t = {}
        t0 = time.perf_counter()
        imgs = [load_image(im) for im in images]
        t["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        vision_features = None
        pixels = [None] * len(imgs)  # (3, S, S) uint8 per image, when the shared image pass made them
        if specs is None and self.detector is not None:
            kw = {}
            shared = self._shared_vision and getattr(self.detector, "backbone", None) is self.model.vision.backbone
            if shared:  # one pass of the frozen image network, for the detector and the model
                pixels = [image_tensor(im, self.model.config.image_size) for im in imgs]
                stacked = torch.stack(pixels)  # (N, 3, S, S) uint8
                with torch.inference_mode():
                    kw["features"] = self.detector.backbone_features(stacked.float() / 255.0)
                vision_features = kw["features"][1]
                if getattr(self.detector, "fallback", None) is not None:
                    kw["pixels"] = stacked  # a fallback cell network at the same size reads the same pixels
            elif (getattr(self.detector, "image_size", None) == self.model.config.image_size
                  and callable(getattr(self.detector, "scene_pixels", None))):
                # a detector that reads the scenes at the model's size: the pixels are converted once
                kw["pixels"] = self.detector.scene_pixels(imgs)  # (N, 3, S, S) uint8, as image_tensor gives them
                pixels = list(kw["pixels"].contiguous().unbind(0))  # the model's batch laid out as before
            found = self.detector.detect_explained(imgs, **kw)
            ents = [list(e) for e, _ in found]
            for i, (_, why) in enumerate(found):
                if why:
                    notes[i].append(why)
        elif specs is None:
            ents = [[] for _ in imgs]
            # (a model without the graph reads no entities: nothing to say)
            for ns in notes if self.model.config.uses_graph else []:
                ns.append("this engine has no image detector and no entities were given: the answer rests on the "
                          "question alone")
        elif not self.model.config.uses_graph:
            ents = [[] for _ in imgs]
            for ns in notes:
                ns.append("this engine's model reads no entities (it has no knowledge graph): the given entities "
                          "are not used")
        else:
            ents = []
            for i, (sp, im) in enumerate(zip(specs, imgs)):
                e, matches = resolve_entities(sp, self.kg, im.size)
                notes[i] += [m.note for m in matches if m.note]
                if self.kg is not None and matches and not any(m.known for m in matches):
                    notes[i].append("none of the given entities is a concept of the knowledge graph; the answer "
                                    "rests on the question alone")
                ents.append(e)
        if self.kg is not None and self.model.config.uses_graph:
            # detected objects, or Entity objects given as they are (names given are checked above)
            for i, es in enumerate(ents):
                img_es = [e for e in es if e.origin == "image"]
                if specs is not None and not all(isinstance(s, Entity) for s in specs[i]):
                    continue
                if img_es and not any(e.concept in self.kg for e in img_es):
                    notes[i].append(f"none of the image's objects ({', '.join(e.concept for e in img_es)}) is a "
                                    f"concept of the knowledge graph; the answer rests on the question alone")
        t["detect"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # Spatial references ("the thing on the left") choose the image entities the
        # model and retrieval read; every entity stays in the evidence.
        refs: list[list[str]] = []
        focus: list[list[Entity]] = []
        for b, (im, q) in enumerate(zip(imgs, questions)):
            ents[b], f, r = self._refer(q, ents[b], im.size)
            focus.append(f)
            refs.append(r)
        for b, ns in enumerate(notes):
            for n in ns:
                warnings.warn(n, InputWarning, stacklevel=3)
        qvecs = [None] * len(questions)
        retriever = getattr(self.features, "retriever", None)
        if not self.generative and retriever is not None and retriever.needs_question_vector:
            qvecs = list(retriever.embed_questions([q.strip() for q in questions]))  # one batch for all
        exs = [self.features.build(im, q, e, question_embedding=v, pixels=px) if not self.generative
               else self.features.build(im, q, e)
               for im, q, e, v, px in zip(imgs, questions, focus, qvecs, pixels)]
        t["retrieve"] = time.perf_counter() - t0
        if self.generative:
            return self._answer_generated(exs, questions, t, max_new_tokens, num_beams, ents, refs, notes)
        t0 = time.perf_counter()
        batch = collate(exs, self.model.config, pad_id=self.model.tokenizer.pad_token_id or 0, with_targets=False)
        batch.vision_features = vision_features
        _eval_mode(self.model)
        with torch.inference_mode():
            out = self.model(batch)
        pointer_probs: list = []  # per example, copy_prob * softmax(pointer logits) over its nodes
        # the top_k of answer_distribution's dicts, ranked without building them
        rankings = ranked_answers(out, self.model.config.answer_vocab, batch.node_names, top_k, pointer_probs,
                                  vocab_index=self.model._vocab_index)
        t["model"] = time.perf_counter() - t0
        per = {k: v / len(exs) for k, v in t.items()}
        answers = []
        copies = out.copy_prob.tolist()
        sentences = self._sentences()
        for b, (ex, ranked) in enumerate(zip(exs, rankings)):
            best, p = ranked[0]
            attributions: list[tuple[str, float]] = []
            pp = pointer_probs[b]
            if pp is not None and ex.node_names:
                order = torch.argsort(pp, descending=True)[:top_k].tolist()
                values = pp.tolist()
                attributions = [(ex.node_names[i], values[i]) for i in order]
            # Entities as grounded: the detector's, plus the question's found by retrieval.
            all_ents = list(ents[b])
            if ex.subgraph is not None:
                known = {(e.concept, e.origin) for e in all_ents}
                all_ents += [e for e in getattr(ex.subgraph, "entities", []) if (e.concept, e.origin) not in known]
            answers.append(Answer(question=questions[b], answer=best, score=float(p), candidates=ranked[:top_k],
                                  entities=all_ents, subgraph=ex.subgraph,
                                  facts=_reasoning_facts(ex.subgraph, best, self.realiser,
                                                         focus=[e.concept for e in all_ents if e.origin == "image"],
                                                         sentences=sentences),
                                  copy_prob=copies[b], graph_attributions=attributions, timings=per,
                                  references=refs[b], notes=notes[b], answer_nodes=answer_nodes(best, ex.subgraph)))
        return answers

    def _sentences(self) -> dict:
        """The evidence sentences written so far by this engine's realiser, by fact (head,
        relation, tail, surface): the same facts come back question after question, and a
        realiser's sentence for a fact never changes. A new dict when ``realiser`` was
        replaced; emptied past 65,536 entries."""
        cache = self.__dict__.get("_sentence_cache")
        if cache is None or cache[0] is not self.realiser or len(cache[1]) > 65536:
            cache = self._sentence_cache = (self.realiser, {})
        return cache[1]

    def _answer_generated(self, exs, questions, t: dict, max_new_tokens, num_beams, ents, refs,
                          notes) -> list[Answer]:
        import torch

        t0 = time.perf_counter()
        _eval_mode(self.model)
        with torch.inference_mode():
            gen = self.model.generate(collate_generative(exs, self.model, with_answers=False),
                                      max_new_tokens=max_new_tokens, num_beams=num_beams, details=True)
        t["model"] = time.perf_counter() - t0
        per = {k: v / len(exs) for k, v in t.items()}
        answers = []
        for b, (q, ex, g) in enumerate(zip(questions, exs, gen)):
            nodes = answer_nodes(g["text"], ex.subgraph)
            all_ents = list(ents[b])
            if ex.subgraph is not None:
                known = {(e.concept, e.origin) for e in all_ents}
                all_ents += [e for e in getattr(ex.subgraph, "entities", []) if (e.concept, e.origin) not in known]
            answers.append(Answer(question=q, answer=g["text"], score=g["score"],
                                  candidates=[(g["text"], g["score"] if g["score"] is not None else 1.0)],
                                  entities=all_ents, subgraph=ex.subgraph,
                                  facts=_reasoning_facts(ex.subgraph, nodes[0] if nodes else g["text"], self.realiser),
                                  copy_prob=float(g["copy_prob"]), graph_attributions=[(n, 1.0) for n in nodes],
                                  timings=per, answer_nodes=nodes, generated=True,
                                  references=refs[b], notes=notes[b]))
        return answers

    def _refer(self, question: str, entities: list[Entity],
               size: tuple[int, int]) -> tuple[list[Entity], list[Entity], list[str]]:
        """Mark the image entities the question points at ("the thing on the left")."""
        cfg = self.retriever.grounder.config if self.retriever is not None else GroundingConfig()
        sel = refer_entities(question, entities, size, cfg)
        focus = focus_boxes(sel.focus, size, _box_mode(self.config.box_missing, self.config.dataset))
        lines = []
        for r in sel.references:
            picked = [sel.entities[i].concept for i in sel.selected]
            if r.has_position or picked:
                lines.append(f"{r.text!r} ({r.describe()}) -> " + (", ".join(picked) if picked else
                                                                      f"nothing selected: {sel.reason}"))
        return sel.entities, focus, lines

    # ------------------------------------------------------------ captioning
    def caption(self, image, max_facts: int = 4) -> dict:
        """A description of what is seen, enriched with facts about it.

        Returns a dict with ``text``, ``entities`` and ``facts``.
        """

        im = load_image(image)
        ents = self.detect([im])[0]
        if not ents:
            return {"text": "I see nothing I can name.", "entities": [], "facts": []}
        names = [self.realiser.name(e.concept) for e in ents]
        text = "I see " + _join([_a(n) for n in names]) + "."
        facts: list[str] = []
        if self.kg is not None:

            for e in ents:
                rows = [r for r in self.kg.neighbors(e.concept) if r.relation in
                        ("UsedFor", "AtLocation", "IsA", "CapableOf", "MadeOf", "HasProperty")] \
                    if e.concept in self.kg else []
                rows.sort(key=lambda r: -r.weight)
                for r in rows[:max(1, max_facts // len(ents))]:
                    facts.append(Fact(e.concept, r.relation, r.concept).verbalize(self.realiser))
        if facts:
            text += " " + " ".join(f[0].upper() + f[1:] + "." for f in facts)
        return {"text": text, "entities": ents, "facts": facts}

    def retrieve_images(self, text: str, gallery: Sequence[Any], top_k: int = 5) -> list[dict]:
        """Rank gallery images for a text through shared concepts.

        The text is grounded to concepts; each image's detected concepts are expanded to
        their 1-hop KG neighbours; an image scores the best-weighted overlap (a direct
        match of a detected object counts 1, a neighbour match 0.5).

        Returns dicts ``{"index", "score", "shared": [concepts]}``, best first.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("retrieve_images: expected a non-empty text")
        if self.retriever is None:
            raise ValueError("retrieve_images needs the knowledge graph")
        if isinstance(gallery, (str, bytes, bytearray, os.PathLike)) or hasattr(gallery, "getpixel"):
            raise TypeError(f"retrieve_images: expected a list of images as the gallery, found one "
                            f"{type(gallery).__name__}")
        q = {c.concept for c in self.retriever.grounder.ground(text)}
        dets = self.detect(list(gallery))
        out = []
        for i, ents in enumerate(dets):
            score, shared = 0.0, []
            for e in ents:
                if e.concept in q:
                    score += 1.0 * e.score
                    shared.append(e.concept)
                    continue
                if e.concept in self.kg:
                    nb = {r.concept for r in self.kg.neighbors(e.concept, direction="both")}
                    hit = sorted(nb & q)
                    if hit:
                        score += 0.5 * e.score
                        shared += [f"{e.concept}~{h}" for h in hit]
            out.append({"index": i, "score": round(score, 4), "shared": shared})
        out.sort(key=lambda d: -d["score"])
        return out[:top_k]


def _top(d: dict[str, float], k: int) -> list[tuple[str, float]]:
    """``sorted(d.items(), key=lambda kv: -kv[1])[:max(k, 1)]`` (ties in insertion order), by a
    stable numpy argsort instead of a Python-keyed sort of the whole vocabulary."""
    return _top_pairs(list(d), list(d.values()), max(k, 1))


@functools.lru_cache(maxsize=65536)
def _norm(text: str) -> str:
    """Lower case, punctuation and articles dropped, spaces collapsed (to match names)."""
    words = "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def focus_boxes(focus: Sequence[Entity], size: tuple[int, int], mode: str) -> list[Entity]:
    """The focus entities of a spatial selection, an image entity without a box given the
    whole image's box when ``mode`` is ``"whole_image"`` (``"none"``: left as they are)."""
    if mode != "whole_image":
        return list(focus)
    whole = (0.0, 0.0, float(size[0]), float(size[1]))
    return [replace(e, box=whole) if e.origin == "image" and e.box is None else e for e in focus]


def refer_focus(question: str, entities: Sequence[Entity], size: tuple[int, int], config: GroundingConfig,
                dataset: str, box_missing: str | None = None) -> list[Entity]:
    """The entities retrieval and the model read for ``question``: those its spatial
    references select (all of them without a reference), as :meth:`KnowledgeVQA.answer_batch`
    chooses them — training uses it too, so that a model learns from the seeds it will see."""
    return focus_boxes(refer_entities(question, entities, size, config).focus, size, _box_mode(box_missing, dataset))


def _box_mode(box_missing: str | None, dataset: str) -> str:
    """How an image entity without a box is placed: the engine's setting, else the whole image
    for built-in scenes and nothing for other datasets."""
    return box_missing or ("whole_image" if dataset == "builtin" else "none")


def _eval_mode(model) -> None:
    """``model.eval()`` when the model is in training mode (checked on the model itself:
    walking every submodule on each call costs more than a small model's forward pass)."""
    if model.training:
        model.eval()


@functools.lru_cache(maxsize=65536)
def _name_key(name: str) -> str:
    """``_norm(answer_text(name))``, kept per name (the same node names come back question
    after question)."""
    return _norm(answer_text(name))


def answer_nodes(answer: str, subgraph) -> list[str]:
    """The subgraph's nodes that an answer names: the node whose name is the answer first,
    then nodes whose name appears in it as whole words (``"leather boots"`` names ``leather``)."""
    if subgraph is None or getattr(subgraph, "is_empty", True) or not answer:
        return []
    target = _name_key(answer)
    if not target:
        return []
    padded = f" {target} "
    exact, inside = [], []
    for n in subgraph.node_names:
        name = _name_key(n)
        if not name:
            continue
        if name == target:
            exact.append(n)
        elif f" {name} " in padded:
            inside.append(n)
    inside.sort(key=lambda n: -len(n))
    return exact + inside


def _reasoning_facts(sg, answer: str, realiser: Realiser | None = None, max_paths: int = 3,
                     extra: int = 3, focus: Sequence[str] = (), sentences: dict | None = None) -> list[str]:
    """Evidence sentences: the paths from the seeds to the answer, then the most relevant
    facts of the subgraph, each once, in English (ConceptNet's surface text where kept).

    The extra facts are those about the answer or a ``focus`` concept (the image's objects)
    first: a fact between two of the question's words ("a hill can be used for", from the
    words "used for") is no evidence for the answer.

    ``sentences``: a dict of the sentences ``realiser`` already wrote, by (head, relation,
    tail, surface), read and filled here (None: every fact verbalised anew).
    """
    if sg is None or sg.is_empty:
        return []

    def say(f) -> str:
        if sentences is None:
            return f.verbalize(realiser)
        key = (f.head, f.relation, f.tail, f.surface)
        s = sentences.get(key)
        if s is None:
            s = sentences[key] = f.verbalize(realiser)
        return s

    facts: list[str] = []
    try:
        for p in sg.paths(answer, max_len=2, max_paths=max_paths):
            for f in p.facts:
                s = say(f)
                if s not in facts:
                    facts.append(s)
    except KeyError:
        pass
    for f in sg.facts(max_facts=len(facts) + 2 * extra, about={answer, *focus}):
        if len(facts) >= max_paths + extra:
            break
        s = say(f)
        if s not in facts:
            facts.append(s)
    return facts


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
