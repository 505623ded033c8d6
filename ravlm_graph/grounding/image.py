"""Image grounding: detectors that turn an image into ConceptNet entities.

Every detector implements :class:`ImageEntityDetector`: ``detect(image) -> list[Entity]``
with ``origin="image"``, plus ``detect_batch``. Implementations:

* :class:`OwlDetector` — zero-shot open-vocabulary detection with an OWL-ViT / OWLv2
  checkpoint (local folder); text queries are the concept names, boxes in pixels.
* :class:`ClipTagger` — CLIP image–text matching over a concept vocabulary (top-k,
  softmax scores), without boxes.
* :class:`TrainableTagger` — a small CNN trained from scratch, multi-label over a concept
  vocabulary, for image domains without pretrained vision weights.
* :class:`GivenEntities` — the objects annotated with a dataset record.

:func:`load_image` is the one gate images pass through: path / bytes / file object /
PIL image / numpy array in, a decoded RGB ``PIL.Image`` out, or an
:class:`InvalidImageError` (a ``ValueError``) that names the file and the problem.

Heavy imports (torch, transformers, PIL) happen inside the functions that need them, so
importing this module is cheap.
"""

from __future__ import annotations

import abc
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .types import Entity

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "ClipTagger",
    "ClipTaggerConfig",
    "GivenEntities",
    "ImageEntityDetector",
    "InvalidImageError",
    "OwlDetector",
    "OwlDetectorConfig",
    "TaggerConfig",
    "TaggerFitResult",
    "TrainableTagger",
    "load_image",
    "map_label_to_concept",
]

DEFAULT_MAX_SIDE = 4096
DEFAULT_MIN_SIDE = 8
_ORIGIN = "image"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_TAGGER_FORMAT = "ravlm-image-tagger"
_TAGGER_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------
# Loading images
# --------------------------------------------------------------------------------------


class InvalidImageError(ValueError):
    """An input that cannot be used as an image.

    Attributes:
        source: where the input came from (file path, ``"<bytes>"``, ``"<numpy array>"``, ...).
        reason: what is wrong with it, e.g. ``"cannot decode image"`` or ``"too small"``.
    """

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def _describe(x: Any) -> str:
    if isinstance(x, (str, os.PathLike)):
        return os.fspath(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return "<bytes>"
    name = getattr(x, "name", None)  # open file objects
    if isinstance(name, str):
        return name
    return f"<{type(x).__module__}.{type(x).__name__}>"


def _check_size(source: str, width: int, height: int, min_side: int, max_side: int) -> None:
    if width < min_side or height < min_side:
        raise InvalidImageError(
            source, f"image too small: expected at least {min_side}x{min_side} pixels, found {width}x{height}")
    if width > max_side or height > max_side:
        raise InvalidImageError(
            source, f"image too large: expected at most {max_side} pixels per side, found {width}x{height} "
                    f"(raise max_side to accept it)")


def _array_to_pil(arr: Any, source: str, min_side: int, max_side: int):
    """A numpy array (H, W), (H, W, C) or (C, H, W) with C in 1/3/4 -> PIL image."""
    import numpy as np
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InvalidImageError(
            source, f"expected an array of shape (H, W), (H, W, 3|4) or (3|4, H, W), found {tuple(a.shape)}")
    if a.size == 0:
        raise InvalidImageError(source, f"empty array of shape {tuple(a.shape)}")
    _check_size(source, a.shape[1], a.shape[0], min_side, max_side)  # before any converted copy
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a.astype(np.uint32) // 257).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InvalidImageError(source, "float array contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidImageError(
                source, f"expected float pixel values in [0, 1], found range [{lo:g}, {hi:g}]")
        a = np.round(a * 255.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise InvalidImageError(
                source, f"expected integer pixel values in [0, 255] (or a uint16 array), found range [{lo}, {hi}]")
        a = a.astype(np.uint8)
    else:
        raise InvalidImageError(source, f"unsupported array dtype {a.dtype}")
    if a.ndim == 2:
        mode = "L"
    else:
        mode = "RGB" if a.shape[-1] == 3 else "RGBA"
    return Image.fromarray(np.ascontiguousarray(a), mode=mode)


def _to_rgb(im, source: str):
    """Any PIL mode -> RGB; transparent pixels are composited onto white, high bit depths scaled."""
    import numpy as np
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.min() >= 0 and a.max() <= 65535 and a.max() > 255):
            a = a / 257.0  # 16-bit range -> 8 bit
        elif mode == "F" and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        elif a.min() < 0 or a.max() > 255:
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    try:
        if has_alpha:
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise InvalidImageError(source, f"cannot convert image mode {mode!r} to RGB: {e}") from e


def load_image(x: Any, *, max_side: int = DEFAULT_MAX_SIDE, min_side: int = DEFAULT_MIN_SIDE):
    """Decode and check an image; return it as RGB.

    The size is checked from the file header before any pixel is decoded, so a
    decompression bomb (a tiny file that claims 100,000 x 100,000 pixels) is refused
    without allocating it; PIL's own ``MAX_IMAGE_PIXELS`` limit stays in force as well.
    EXIF orientation is applied; transparent pixels are composited onto white; 16-bit
    and float modes are scaled to 8 bits; palette, LA, CMYK, YCbCr, 1-bit, ... are converted.

    Args:
        x: a path (``str`` / ``os.PathLike``), encoded bytes, a binary file object, a
            ``PIL.Image.Image``, or an array-like (numpy, torch on CPU) of shape (H, W),
            (H, W, 3|4) or (3|4, H, W), dtype uint8 / uint16 / bool or float in [0, 1].
        max_side: largest accepted width or height in pixels (default 4096).
        min_side: smallest accepted width or height in pixels (default 8).

    Returns:
        PIL.Image.Image: an RGB image, fully loaded (no open file handle).

    Raises:
        FileNotFoundError: a path that does not exist.
        InvalidImageError: (a ``ValueError``) undecodable or truncated data, a size outside
            ``[min_side, max_side]``, an unsupported array; the message names the source.
        TypeError: an input of another type.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if min_side < 1 or max_side < min_side:
        raise ValueError(f"load_image: expected 1 <= min_side <= max_side, found min_side={min_side}, "
                         f"max_side={max_side}")
    source = _describe(x)

    if isinstance(x, Image.Image):
        _check_size(source, x.width, x.height, min_side, max_side)
        try:
            x.load()
        except (OSError, ValueError, SyntaxError) as e:
            raise InvalidImageError(source, f"cannot decode image: {e}") from e
        return _to_rgb(x, source)

    fp: Any
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if not p.exists():
            raise FileNotFoundError(f"{source}: image file not found")
        if not p.is_file():
            raise InvalidImageError(source, "expected an image file, found a directory or special file")
        fp = p
    elif isinstance(x, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(x))
    elif hasattr(x, "read"):
        fp = x
    elif hasattr(x, "__array__") or hasattr(x, "__array_interface__"):
        if hasattr(x, "detach"):  # torch tensor
            x = x.detach().cpu().numpy()
        return _to_rgb(_array_to_pil(x, source, min_side, max_side), source)
    else:
        raise TypeError(f"load_image: expected a path, bytes, a file object, a PIL image or an array, "
                        f"found {type(x).__name__}")

    try:
        # Image.open reads the header only; the size is checked before pixels are decoded.
        with Image.open(fp) as im:
            _check_size(source, im.width, im.height, min_side, max_side)
            im.load()
            im = ImageOps.exif_transpose(im) or im
            out = _to_rgb(im, source)
            out.load()
            return out
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as e:
        raise InvalidImageError(source, f"image too large (decompression bomb guard): {e}") from e
    except UnidentifiedImageError as e:
        raise InvalidImageError(source, "cannot decode image: not a recognised image format") from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise InvalidImageError(source, f"cannot decode image: {e}") from e


# --------------------------------------------------------------------------------------
# Label -> concept
# --------------------------------------------------------------------------------------

_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s_\-]+")
_EDGE_PUNCT = " \t\n.,;:!?\"'()[]{}"


def _normalise_label(label: str) -> str:
    import unicodedata

    t = unicodedata.normalize("NFC", label).strip().strip(_EDGE_PUNCT)
    t = _SEPARATORS.sub(" ", t).strip().lower()
    while True:
        stripped = _ARTICLE.sub("", t)
        if stripped == t or not stripped:
            break
        t = stripped
    return t.replace(" ", "_")


def _singular(concept: str) -> str:
    """Singularise the head (last) word of an underscore concept with lemminflect, if installed."""
    words = concept.split("_")
    last = words[-1]
    if not last.isalpha() or len(last) < 3:
        return concept
    try:
        from lemminflect import getLemma
    except ImportError:
        return concept
    lemmas = getLemma(last, upos="NOUN", lemmatize_oov=False)
    if not lemmas:
        return concept
    # lemminflect may give several lemmas ("glasses" -> glass, glasses): keep the word
    # itself when it is among them, else the first.
    lemma = last if last in lemmas else lemmas[0]
    return "_".join([*words[:-1], lemma])


def map_label_to_concept(label: str, kg: Any = None) -> str:
    """Map a detector label or annotation name to a ConceptNet-style concept.

    Steps: lower case, whitespace / hyphens / underscores as one underscore, leading
    articles ("a", "an", "the") stripped. With a ``kg`` (anything with ``lookup(text)
    -> id | None`` and ``concept_name(id)``), the label and then its singular form are
    looked up and the first hit is returned under the graph's own name. Otherwise (or
    when neither is in the graph) the singular form of the head word is returned
    (lemminflect; the label is kept when lemminflect is not installed).

    Args:
        label: e.g. ``"Traffic Lights"``, ``"a dog"``, ``"ice-cream"``.
        kg: optional :class:`kg_ingest.KnowledgeGraph` (or a look-alike).

    Returns:
        The concept, e.g. ``"traffic_light"``, ``"dog"``, ``"ice_cream"``.

    Raises:
        ValueError: a blank label, or one that is only an article.
        TypeError: a label that is not a string.
    """
    if not isinstance(label, str):
        raise TypeError(f"map_label_to_concept: expected a str label, found {type(label).__name__}")
    norm = _normalise_label(label)
    if not norm:
        raise ValueError(f"map_label_to_concept: expected a non-blank label, found {label!r}")
    singular = _singular(norm)
    if kg is not None:
        for cand in dict.fromkeys((norm, singular)):
            i = kg.lookup(cand)
            if i is not None:
                return kg.concept_name(i)
    return singular


def _concept_table(concepts: Sequence[str] | Mapping[str, str], kg: Any) -> tuple[list[str], list[str]]:
    """Labels (the texts shown to a model) and the concepts they stand for."""
    if isinstance(concepts, Mapping):
        labels = [str(k) for k in concepts]
        mapped = [map_label_to_concept(str(v), kg) for v in concepts.values()]
    else:
        if isinstance(concepts, str):
            raise TypeError("expected a sequence of concept names, found a single str")
        labels = [str(c) for c in concepts]
        mapped = [map_label_to_concept(c, kg) for c in labels]
    if not labels:
        raise ValueError("expected at least one concept in the vocabulary, found none")
    seen: set[str] = set()
    for lab in labels:
        if lab in seen:
            raise ValueError(f"concept vocabulary: label {lab!r} appears more than once")
        seen.add(lab)
    return labels, mapped


def _query_text(label: str) -> str:
    return " ".join(label.replace("_", " ").split())


# --------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------


class ImageEntityDetector(abc.ABC):
    """Image -> entities (``origin="image"``), each a concept with a score and maybe a box.

    Subclasses implement :meth:`detect`; :meth:`detect_batch` loops over it unless a
    subclass batches for real. ``detector(image)`` is ``detector.detect(image)``.
    """

    origin: str = _ORIGIN

    @abc.abstractmethod
    def detect(self, image: Any) -> list[Entity]:
        """Entities of one image (anything :func:`load_image` accepts), best first."""

    def detect_batch(self, images: Sequence[Any], *, on_error: str = "raise") -> list[list[Entity]]:
        """Entities of each image, in input order.

        Args:
            images: a sequence of images.
            on_error: ``"raise"`` (default): the first bad image raises, its index in the
                message; ``"empty"``: a bad image gets ``[]`` and a logged warning.
        """
        _check_on_error(on_error)
        out: list[list[Entity]] = []
        for i, im in enumerate(images):
            try:
                out.append(self.detect(im))
            except InvalidImageError as e:
                if on_error == "raise":
                    raise InvalidImageError(f"image {i}: {e.source}", e.reason) from e
                logger.warning("image %d skipped: %s", i, e)
                out.append([])
            except FileNotFoundError as e:
                if on_error == "raise":
                    raise FileNotFoundError(f"image {i}: {e}") from e
                logger.warning("image %d skipped: %s", i, e)
                out.append([])
        return out

    def __call__(self, image: Any) -> list[Entity]:
        return self.detect(image)


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "empty"):
        raise ValueError(f"on_error: expected 'raise' or 'empty', found {on_error!r}")


def _load_all(images: Sequence[Any], max_side: int, on_error: str) -> tuple[list[Any], list[int]]:
    """Load a batch; returns the decoded images and the indices they came from."""
    _check_on_error(on_error)
    loaded, idx = [], []
    for i, x in enumerate(images):
        try:
            loaded.append(load_image(x, max_side=max_side))
            idx.append(i)
        except InvalidImageError as e:
            if on_error == "raise":
                raise InvalidImageError(f"image {i}: {e.source}", e.reason) from e
            logger.warning("image %d skipped: %s", i, e)
        except FileNotFoundError as e:
            if on_error == "raise":
                raise FileNotFoundError(f"image {i}: {e}") from e
            logger.warning("image %d skipped: %s", i, e)
    return loaded, idx


def _resolve_device(device: Any) -> Any:
    import torch

    if device is None:
        return torch.device("cpu")
    return torch.device(device)


def _check_local_checkpoint(path: Any, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"{p}: {what} checkpoint folder not found (models are loaded from a local folder only, "
            f"never downloaded at run time)")
    if not p.is_dir():
        raise ValueError(f"{p}: expected a {what} checkpoint folder (config.json + model.safetensors), found a file")
    if not (p / "config.json").is_file():
        raise ValueError(f"{p}: missing config.json; not a Hugging Face checkpoint folder")
    return p


def _load_local(model_cls, processor_cls, path, dtype, device):
    """A model (safetensors only) and its processor from a local folder, on ``device``."""
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = model_cls.from_pretrained(path, local_files_only=True, use_safetensors=True, **kwargs)
    processor = processor_cls.from_pretrained(path, local_files_only=True)
    return model.to(_resolve_device(device)), processor


def _import_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("image detectors need transformers: pip install 'ravlm-graph[model]'") from e
    return transformers


# --------------------------------------------------------------------------------------
# OWL-ViT / OWLv2
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OwlDetectorConfig:
    """Settings of :class:`OwlDetector`.

    Args:
        threshold: minimum sigmoid score of a kept box (default 0.1).
        nms_iou: IoU above which a lower-scored box of the same concept is dropped (0.3).
        max_detections: most boxes returned per image (50).
        prompt: query template, ``{}`` = the concept with spaces (``"{}"``; e.g.
            ``"a photo of a {}"``).
        batch_size: images per forward pass (8).
        text_batch_size: queries per text-encoder pass when the vocabulary is embedded (256).
        max_side: largest accepted image side in pixels (4096).
    """

    threshold: float = 0.1
    nms_iou: float = 0.3
    max_detections: int = 50
    prompt: str = "{}"
    batch_size: int = 8
    text_batch_size: int = 256
    max_side: int = DEFAULT_MAX_SIDE

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"OwlDetectorConfig: expected threshold in [0, 1], found {self.threshold}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"OwlDetectorConfig: expected nms_iou in (0, 1], found {self.nms_iou}")
        for name in ("max_detections", "batch_size", "text_batch_size", "max_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"OwlDetectorConfig: expected {name} >= 1, found {getattr(self, name)}")
        _check_prompt(self.prompt, "OwlDetectorConfig")


def _check_prompt(prompt: str | Sequence[str], owner: str) -> None:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts or any("{}" not in p for p in prompts):
        raise ValueError(f"{owner}: expected prompt template(s) containing '{{}}', found {prompt!r}")


def _make_config(cls, config, overrides: dict):
    if config is None:
        config = cls()
    if not isinstance(config, cls):
        raise TypeError(f"expected a {cls.__name__}, found {type(config).__name__}")
    if overrides:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise TypeError(f"unknown {cls.__name__} option(s) {bad}; known: {sorted(known)}")
        config = replace(config, **overrides)
    return config


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy non-maximum suppression; indices of kept boxes, best first."""
    import torch

    order = torch.argsort(scores, descending=True)
    boxes = boxes[order]  # (N, 4) x0 y0 x1 y1
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)  # (N,)
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])  # (N, N, 2)
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])  # (N, N, 2)
    inter = (rb - lt).clamp(min=0).prod(-1)  # (N, N)
    union = area[:, None] + area[None, :] - inter
    ious = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
    alive = torch.ones(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        alive &= ious[i] <= iou
    return order[torch.tensor(keep, dtype=torch.long)]


class OwlDetector(ImageEntityDetector):
    """Zero-shot object detection with OWL-ViT or OWLv2 over a concept vocabulary.

    The text queries (one per concept, underscores as spaces, through ``prompt``) are
    embedded once and cached; each image then costs one vision pass. Per image patch the
    best-matching query gives a label and a sigmoid score; boxes above ``threshold`` go
    through per-concept NMS and come back in pixel coordinates of the input image
    ``(x0, y0, x1, y1)``, clipped to it.

    Papers: OWL-ViT https://arxiv.org/abs/2205.06230, OWLv2 https://arxiv.org/abs/2306.09683

    Args:
        model: an ``OwlViTForObjectDetection`` or ``Owlv2ForObjectDetection`` (eval mode).
        processor: its ``OwlViTProcessor`` / ``Owlv2Processor``.
        labels: query labels, one per concept.
        concepts: ConceptNet concepts the labels stand for.
        config: :class:`OwlDetectorConfig`.

    Use :meth:`from_pretrained` to load from a local checkpoint folder.
    """

    def __init__(self, model: Any, processor: Any, labels: Sequence[str], concepts: Sequence[str],
                 config: OwlDetectorConfig | None = None):
        if len(labels) != len(concepts):
            raise ValueError(f"OwlDetector: {len(labels)} labels but {len(concepts)} concepts")
        model_type = getattr(model.config, "model_type", None)
        if model_type not in ("owlvit", "owlv2"):
            raise ValueError(f"OwlDetector: expected an OWL-ViT or OWLv2 model, found model_type {model_type!r}")
        self.model = model.eval()
        self.processor = processor
        self.labels = list(labels)
        self.concepts = list(concepts)
        self.config = config or OwlDetectorConfig()
        self._pad_to_square = model_type == "owlv2"  # OWLv2 pads bottom/right to a square
        self._query_embeds: torch.Tensor | None = None  # (Q, D) once computed

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.model.config.model_type}, concepts={len(self.concepts)}, "
                f"threshold={self.config.threshold})")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, concepts: Sequence[str] | Mapping[str, str], *,
                        kg: Any = None, config: OwlDetectorConfig | None = None, device: Any = None,
                        dtype: Any = None, **overrides: Any) -> OwlDetector:
        """Load an OWL-ViT / OWLv2 checkpoint folder (model + processor files, safetensors).

        Args:
            path: local checkpoint folder; nothing is downloaded.
            concepts: the vocabulary: concept names (``"ice_cream"``, ``"traffic light"``) or a
                mapping query label -> concept. Each concept goes through
                :func:`map_label_to_concept` (with ``kg`` when given).
            kg: optional knowledge graph used to map labels onto its concept names.
            config: :class:`OwlDetectorConfig`; ``**overrides`` replace single fields
                (``threshold=0.2``).
            device: torch device (default CPU).
            dtype: torch dtype of the weights (default: as stored).
        """
        _import_transformers()
        from transformers import (AutoConfig, AutoProcessor, Owlv2ForObjectDetection,
                                  OwlViTForObjectDetection)

        p = _check_local_checkpoint(path, "OWL-ViT/OWLv2")
        cfg = _make_config(OwlDetectorConfig, config, overrides)
        model_type = AutoConfig.from_pretrained(p, local_files_only=True).model_type
        model_cls = {"owlvit": OwlViTForObjectDetection, "owlv2": Owlv2ForObjectDetection}.get(model_type)
        if model_cls is None:
            raise ValueError(f"{p}: expected an OWL-ViT or OWLv2 checkpoint (model_type 'owlvit' or 'owlv2'), "
                             f"found model_type {model_type!r}")
        model, processor = _load_local(model_cls, AutoProcessor, p, dtype, device)
        labels, mapped = _concept_table(concepts, kg)
        return cls(model, processor, labels, mapped, cfg)

    @property
    def _device(self):
        return next(self.model.parameters()).device

    def _embed_queries(self) -> torch.Tensor:
        import torch

        if self._query_embeds is not None:
            return self._query_embeds
        texts = [self.config.prompt.format(_query_text(lab)) for lab in self.labels]
        max_len = self.model.config.text_config.max_position_embeddings
        tok = self.processor.tokenizer
        backbone = getattr(self.model, self.model.config.model_type)  # .owlvit / .owlv2
        chunks = []
        with torch.inference_mode():
            for s in range(0, len(texts), self.config.text_batch_size):
                enc = tok(texts[s:s + self.config.text_batch_size], padding="max_length", truncation=True,
                          max_length=max_len, return_tensors="pt").to(self._device)
                out = backbone.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
                chunks.append(out.pooler_output if hasattr(out, "pooler_output") else out)  # (q, D)
        self._query_embeds = torch.cat(chunks, 0)  # (Q, D)
        return self._query_embeds

    def detect(self, image: Any) -> list[Entity]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Any], *, on_error: str = "raise") -> list[list[Entity]]:
        import torch

        loaded, idx = _load_all(images, self.config.max_side, on_error)
        out: list[list[Entity]] = [[] for _ in images]
        if not loaded:
            return out
        queries = self._embed_queries()  # (Q, D)
        dtype = next(self.model.parameters()).dtype
        bs = self.config.batch_size
        with torch.inference_mode():
            for s in range(0, len(loaded), bs):
                batch = loaded[s:s + bs]
                pixels = self.processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
                pixels = pixels.to(self._device, dtype)  # (B, 3, S, S)
                feature_map, _ = self.model.image_embedder(pixel_values=pixels)  # (B, h, w, D)
                b, h, w, d = feature_map.shape
                feats = feature_map.reshape(b, h * w, d)  # (B, P, D)
                best_score = torch.full((b, h * w), -math.inf, device=feats.device)
                best_label = torch.zeros((b, h * w), dtype=torch.long, device=feats.device)
                # Queries in chunks so a large vocabulary never materialises (B, P, Q) at once.
                for q0 in range(0, queries.shape[0], self.config.text_batch_size):
                    q = queries[q0:q0 + self.config.text_batch_size].to(dtype)
                    logits, _ = self.model.class_predictor(feats, q.unsqueeze(0).expand(b, -1, -1), None)  # (B, P, q)
                    m, arg = logits.float().max(-1)  # (B, P)
                    better = m > best_score
                    best_score = torch.where(better, m, best_score)
                    best_label = torch.where(better, arg + q0, best_label)
                boxes = self.model.box_predictor(feats, feature_map).float()  # (B, P, 4) cx cy w h in [0, 1]
                scores = torch.sigmoid(best_score)  # (B, P)
                for j, im in enumerate(batch):
                    out[idx[s + j]] = self._postprocess(scores[j], best_label[j], boxes[j], im.width, im.height)
        return out

    def _postprocess(self, scores, labels, boxes, width: int, height: int) -> list[Entity]:
        import torch

        keep = scores >= self.config.threshold
        if not bool(keep.any()):
            return []
        scores, labels, boxes = scores[keep], labels[keep], boxes[keep]
        cx, cy, bw, bh = boxes.unbind(-1)
        xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)  # (N, 4) relative
        if self._pad_to_square:
            side = float(max(width, height))
            xyxy = xyxy * side
        else:
            xyxy = xyxy * torch.tensor([width, height, width, height], dtype=xyxy.dtype)
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
        # A box wholly outside the image is empty once clipped: drop it.
        inside = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        if not bool(inside.all()):
            scores, labels, xyxy = scores[inside], labels[inside], xyxy[inside]
            if len(scores) == 0:
                return []
        # Per-concept NMS: shift each label's boxes far apart so they never overlap.
        offset = labels.to(xyxy.dtype)[:, None] * (max(width, height) + 1) * 2
        kept = _nms(xyxy + offset, scores, self.config.nms_iou)[: self.config.max_detections]
        result = []
        for k in kept.tolist():
            lab = int(labels[k])
            box = tuple(float(v) for v in xyxy[k].tolist())
            result.append(Entity(concept=self.concepts[lab], score=float(scores[k]), origin=_ORIGIN,
                                 box=box, label=self.labels[lab]))
        return result


# --------------------------------------------------------------------------------------
# CLIP
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipTaggerConfig:
    """Settings of :class:`ClipTagger`.

    Args:
        prompt: template or list of templates (their embeddings are averaged), ``{}`` = the
            concept with spaces (default ``"a photo of a {}."``).
        top_k: most concepts returned per image (5).
        min_score: smallest softmax score returned (0.0).
        batch_size: images per forward pass (16).
        text_batch_size: prompts per text-encoder pass (256).
        max_side: largest accepted image side in pixels (4096).
    """

    prompt: str | tuple[str, ...] = "a photo of a {}."
    top_k: int = 5
    min_score: float = 0.0
    batch_size: int = 16
    text_batch_size: int = 256
    max_side: int = DEFAULT_MAX_SIDE

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            object.__setattr__(self, "prompt", tuple(self.prompt))
        _check_prompt(self.prompt, "ClipTaggerConfig")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"ClipTaggerConfig: expected min_score in [0, 1], found {self.min_score}")
        for name in ("top_k", "batch_size", "text_batch_size", "max_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClipTaggerConfig: expected {name} >= 1, found {getattr(self, name)}")


class ClipTagger(ImageEntityDetector):
    """CLIP image–text matching over a concept vocabulary (no boxes).

    Scores are the softmax over the whole vocabulary of CLIP's scaled cosine
    similarities, so they lie in [0, 1] and sum to 1 over the vocabulary; the top-k are
    returned. The vocabulary's text embeddings are computed once and cached.

    Paper: https://arxiv.org/abs/2103.00020

    Args:
        model: a ``CLIPModel`` (eval mode).
        processor: its ``CLIPProcessor``.
        labels: labels shown to the text encoder, one per concept.
        concepts: ConceptNet concepts the labels stand for.
        config: :class:`ClipTaggerConfig`.
    """

    def __init__(self, model: Any, processor: Any, labels: Sequence[str], concepts: Sequence[str],
                 config: ClipTaggerConfig | None = None):
        if len(labels) != len(concepts):
            raise ValueError(f"ClipTagger: {len(labels)} labels but {len(concepts)} concepts")
        self.model = model.eval()
        self.processor = processor
        self.labels = list(labels)
        self.concepts = list(concepts)
        self.config = config or ClipTaggerConfig()
        self._text_embeds: torch.Tensor | None = None  # (Q, E), L2-normalised

    def __repr__(self) -> str:
        return f"{type(self).__name__}(concepts={len(self.concepts)}, top_k={self.config.top_k})"

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, concepts: Sequence[str] | Mapping[str, str], *,
                        kg: Any = None, config: ClipTaggerConfig | None = None, device: Any = None,
                        dtype: Any = None, **overrides: Any) -> ClipTagger:
        """Load a CLIP checkpoint folder (model + processor files, safetensors).

        Args: as :meth:`OwlDetector.from_pretrained`, with a :class:`ClipTaggerConfig`.
        """
        _import_transformers()
        from transformers import AutoConfig, AutoProcessor, CLIPModel

        p = _check_local_checkpoint(path, "CLIP")
        cfg = _make_config(ClipTaggerConfig, config, overrides)
        model_type = AutoConfig.from_pretrained(p, local_files_only=True).model_type
        if model_type != "clip":
            raise ValueError(f"{p}: expected a CLIP checkpoint (model_type 'clip'), found model_type {model_type!r}")
        model, processor = _load_local(CLIPModel, AutoProcessor, p, dtype, device)
        labels, mapped = _concept_table(concepts, kg)
        return cls(model, processor, labels, mapped, cfg)

    @property
    def _device(self):
        return next(self.model.parameters()).device

    def text_embeddings(self) -> torch.Tensor:
        """The vocabulary's L2-normalised text embeddings, shape (Q, E); computed once."""
        import torch

        if self._text_embeds is not None:
            return self._text_embeds
        prompts = [self.config.prompt] if isinstance(self.config.prompt, str) else list(self.config.prompt)
        tok = self.processor.tokenizer
        max_len = self.model.config.text_config.max_position_embeddings
        total = None
        with torch.inference_mode():
            for prompt in prompts:
                texts = [prompt.format(_query_text(lab)) for lab in self.labels]
                chunks = []
                for s in range(0, len(texts), self.config.text_batch_size):
                    enc = tok(texts[s:s + self.config.text_batch_size], padding=True, truncation=True,
                              max_length=max_len, return_tensors="pt").to(self._device)
                    out = self.model.get_text_features(input_ids=enc["input_ids"],
                                                       attention_mask=enc["attention_mask"])
                    chunks.append(out.pooler_output if hasattr(out, "pooler_output") else out)  # (q, E)
                e = torch.nn.functional.normalize(torch.cat(chunks, 0).float(), dim=-1)  # (Q, E)
                total = e if total is None else total + e
        self._text_embeds = torch.nn.functional.normalize(total, dim=-1)
        return self._text_embeds

    def scores(self, images: Sequence[Any]) -> torch.Tensor:
        """Softmax scores over the vocabulary, shape (N, Q); rows sum to 1."""
        import torch

        loaded, _ = _load_all(images, self.config.max_side, "raise")
        return self._scores(loaded) if loaded else torch.zeros(0, len(self.concepts))

    def _scores(self, loaded: list) -> torch.Tensor:
        import torch

        text = self.text_embeddings()  # (Q, E)
        dtype = next(self.model.parameters()).dtype
        scale = self.model.logit_scale.exp().float()
        rows = []
        with torch.inference_mode():
            for s in range(0, len(loaded), self.config.batch_size):
                pixels = self.processor.image_processor(images=loaded[s:s + self.config.batch_size],
                                                        return_tensors="pt")["pixel_values"]
                out = self.model.get_image_features(pixel_values=pixels.to(self._device, dtype))
                img = out.pooler_output if hasattr(out, "pooler_output") else out
                img = torch.nn.functional.normalize(img.float(), dim=-1)  # (B, E)
                rows.append(torch.softmax(scale * img @ text.T, dim=-1).cpu())  # (B, Q)
        return torch.cat(rows, 0)

    def detect(self, image: Any) -> list[Entity]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Any], *, on_error: str = "raise") -> list[list[Entity]]:
        import torch

        loaded, idx = _load_all(images, self.config.max_side, on_error)
        out: list[list[Entity]] = [[] for _ in images]
        if not loaded:
            return out
        probs = self._scores(loaded)  # (N, Q)
        k = min(self.config.top_k, probs.shape[1])
        top, arg = torch.topk(probs, k, dim=-1)
        for row, i in enumerate(idx):
            out[i] = [Entity(concept=self.concepts[a], score=float(sc), origin=_ORIGIN, label=self.labels[a])
                      for sc, a in zip(top[row].tolist(), arg[row].tolist()) if sc >= self.config.min_score]
        return out


# --------------------------------------------------------------------------------------
# Trainable tagger
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaggerConfig:
    """Settings of :class:`TrainableTagger`; saved as ``config.json`` with the weights.

    Args:
        concepts: the concept vocabulary (ConceptNet-style names), one output each.
        image_size: images are resized to ``image_size`` x ``image_size`` (default 64).
        channels: output channels of the conv stages; each stage halves the resolution
            (default ``(32, 64, 128)``).
        dropout: dropout before the classifier (0.1).
        threshold: sigmoid score a concept needs to be returned by :meth:`TrainableTagger.detect` (0.5).
        top_k: most concepts returned per image, or None for all above threshold (None).
        max_side: largest accepted input image side in pixels (4096).
        exclusive: one concept per image (softmax over the vocabulary, cross-entropy
            training) instead of independent sigmoid scores (False).
    """

    concepts: tuple[str, ...]
    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.1
    threshold: float = 0.5
    top_k: int | None = None
    max_side: int = DEFAULT_MAX_SIDE
    exclusive: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.concepts, str):
            raise TypeError("TaggerConfig: expected a sequence of concepts, found a single str")
        object.__setattr__(self, "concepts", tuple(self.concepts))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.concepts:
            raise ValueError("TaggerConfig: expected at least one concept, found none")
        if any(not isinstance(c, str) or not c for c in self.concepts):
            raise ValueError("TaggerConfig: expected non-empty str concepts")
        if len(set(self.concepts)) != len(self.concepts):
            raise ValueError("TaggerConfig: concepts must be unique")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"TaggerConfig: expected positive channels, found {self.channels}")
        if self.image_size < 2 ** len(self.channels):
            raise ValueError(f"TaggerConfig: image_size {self.image_size} is too small for "
                             f"{len(self.channels)} stages (need >= {2 ** len(self.channels)})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TaggerConfig: expected dropout in [0, 1), found {self.dropout}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"TaggerConfig: expected threshold in [0, 1], found {self.threshold}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"TaggerConfig: expected top_k >= 1 or None, found {self.top_k}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["concepts"] = list(self.concepts)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "config") -> TaggerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{where}: unknown TaggerConfig fields {unknown}")
        if "concepts" not in d:
            raise ValueError(f"{where}: missing 'concepts'")
        return cls(**dict(d))


@dataclass
class TaggerFitResult:
    """What :meth:`TrainableTagger.fit` did.

    Args:
        losses: mean training loss of each epoch.
        epochs: epochs run.
        num_images: training images.
        seconds: wall time.
    """

    losses: list[float] = field(default_factory=list)
    epochs: int = 0
    num_images: int = 0
    seconds: float = 0.0


_SHIFT = 2  # px, training-time shift augmentation of TrainableTagger


def _build_tagger_net(config: TaggerConfig):
    """A small CNN: per stage two 3x3 conv + GroupNorm + ReLU, then 2x2 max-pool; global
    average pool; dropout; linear to one logit per concept. GroupNorm (not BatchNorm)
    makes an image's output independent of its batch."""
    import torch
    from torch import nn

    class _TaggerNet(nn.Module):
        def __init__(self, cfg: TaggerConfig):
            super().__init__()
            layers: list[nn.Module] = []
            c_in = 3
            for c in cfg.channels:
                groups = math.gcd(c, 8)
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.GroupNorm(groups, c), nn.ReLU(inplace=True),
                           nn.Conv2d(c, c, 3, padding=1, bias=False), nn.GroupNorm(groups, c), nn.ReLU(inplace=True),
                           nn.MaxPool2d(2)]
                c_in = c
            self.features = nn.Sequential(*layers)
            self.dropout = nn.Dropout(cfg.dropout)
            self.head = nn.Linear(c_in, len(cfg.concepts))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.features(x)  # (B, C, S / 2^L, S / 2^L)
            h = h.mean(dim=(2, 3))  # (B, C)
            return self.head(self.dropout(h))  # (B, K)

    return _TaggerNet(config)


class TrainableTagger(ImageEntityDetector):
    """A multi-label image tagger trained from scratch (sigmoid per concept).

    For image domains where no pretrained vision weights exist (such as the built-in
    benchmark's rendered images). A small CNN (see :class:`TaggerConfig`) with GroupNorm,
    trained with binary cross-entropy; inputs are resized to ``image_size`` squares and
    scaled to [-1, 1].

    Args:
        config: :class:`TaggerConfig` (or a sequence of concepts, taken as ``TaggerConfig(concepts)``).
        seed: seed of the weight initialisation (default 0); the global RNG is untouched.

    Example::

        tagger = TrainableTagger(TaggerConfig(("dog", "cat"), image_size=32))
        tagger.fit(images, [{"dog"}, {"cat", "dog"}], epochs=5)
        tagger.save_pretrained("ckpt/tagger")
        TrainableTagger.from_pretrained("ckpt/tagger").detect("photo.png")
    """

    def __init__(self, config: TaggerConfig | Sequence[str], *, seed: int = 0):
        import torch

        if not isinstance(config, TaggerConfig):
            config = TaggerConfig(tuple(config))
        self.config = config
        self._index = {c: i for i, c in enumerate(config.concepts)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = _build_tagger_net(config)
        self.model.eval()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(concepts={len(self.config.concepts)}, image_size={self.config.image_size}, "
                f"channels={list(self.config.channels)})")

    @property
    def concepts(self) -> tuple[str, ...]:
        return self.config.concepts

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _to_tensor(self, images: Sequence[Any], desc: str | None = None):
        """Decoded, resized images as a uint8 tensor (N, 3, S, S)."""
        import numpy as np
        import torch
        from PIL import Image

        s = self.config.image_size
        out = torch.empty((len(images), 3, s, s), dtype=torch.uint8)
        it: Iterable = enumerate(images)
        if desc is not None and len(images) > 256:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(images), desc=desc, unit="img")
        for i, x in it:
            try:
                im = load_image(x, max_side=self.config.max_side)
            except InvalidImageError as e:
                raise InvalidImageError(f"image {i}: {e.source}", e.reason) from e
            im = im.resize((s, s), Image.BILINEAR)
            out[i] = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, S, S)
        return out

    @staticmethod
    def _normalise(x_uint8):
        return x_uint8.float().div(127.5).sub(1.0)  # [0, 255] -> [-1, 1]

    def _targets(self, label_sets: Sequence[Iterable[str]]):
        import torch

        y = torch.zeros((len(label_sets), len(self.config.concepts)), dtype=torch.float32)
        for i, labels in enumerate(label_sets):
            if isinstance(labels, str):
                labels = [labels]
            for c in labels:
                j = self._index.get(c)
                if j is None:
                    j = self._index.get(map_label_to_concept(c)) if isinstance(c, str) and c.strip() else None
                if j is None:
                    raise ValueError(f"label set {i}: concept {c!r} is not in the tagger's vocabulary "
                                     f"({len(self.config.concepts)} concepts)")
                y[i, j] = 1.0
        return y

    def fit(self, images: Sequence[Any], label_sets: Sequence[Iterable[str]], *, epochs: int = 10,
            batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0,
            augment: bool = True, progress: bool = True) -> TaggerFitResult:
        """Train on ``images`` with multi-label targets; reproducible for a given seed.

        Args:
            images: images (anything :func:`load_image` accepts).
            label_sets: per image, the concepts it shows (names in the vocabulary).
            epochs: passes over the data (10).
            batch_size: images per step (32).
            lr: AdamW learning rate (1e-3).
            weight_decay: AdamW weight decay (1e-4).
            seed: seeds shuffling, flips and dropout (0); the global RNG is untouched.
            augment: random horizontal flips and shifts of up to 2 px (True).
            progress: show a tqdm bar per epoch (True).

        Returns:
            :class:`TaggerFitResult` with the mean loss per epoch.
        """
        import torch
        from tqdm.auto import tqdm

        if len(images) != len(label_sets):
            raise ValueError(f"fit: {len(images)} images but {len(label_sets)} label sets")
        if len(images) == 0:
            raise ValueError("fit: expected at least one training image, found none")
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"fit: expected epochs >= 1 and batch_size >= 1, found {epochs} and {batch_size}")
        t0 = time.perf_counter()
        x_all = self._to_tensor(images, desc="decode")  # (N, 3, S, S) uint8
        y_all = self._targets(label_sets)  # (N, K)
        n = len(images)
        result = TaggerFitResult(num_images=n)
        if self.config.exclusive:
            if bool((y_all.sum(1) != 1).any()):
                bad = int((y_all.sum(1) != 1).nonzero()[0, 0])
                raise ValueError(f"fit: an exclusive tagger needs exactly one concept per image; image {bad} has "
                                 f"{int(y_all[bad].sum())}")
            ce = torch.nn.CrossEntropyLoss()

            def loss_fn(logits, y):
                return ce(logits, y.argmax(1))
        else:
            loss_fn = torch.nn.BCEWithLogitsLoss()
        opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(seed)
        device = self.device
        self.model.train()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # dropout
                for epoch in range(epochs):
                    perm = torch.randperm(n, generator=gen)
                    total = 0.0
                    bar = tqdm(range(0, n, batch_size), desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                               disable=not progress, leave=False)
                    for s in bar:
                        ids = perm[s:s + batch_size]
                        x = self._normalise(x_all[ids])  # (B, 3, S, S)
                        if augment:
                            flip = torch.rand(len(ids), generator=gen) < 0.5
                            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                            # a small random shift of the batch (edge pixels repeated)
                            dx, dy = (int(v) for v in torch.randint(0, 2 * _SHIFT + 1, (2,), generator=gen))
                            s_ = x.shape[-1]
                            x = torch.nn.functional.pad(x, (_SHIFT,) * 4, mode="replicate")[..., dy:dy + s_,
                                                                                            dx:dx + s_]
                        loss = loss_fn(self.model(x.to(device)), y_all[ids].to(device))
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        total += loss.item() * len(ids)
                        bar.set_postfix(loss=f"{loss.item():.4f}")
                    result.losses.append(total / n)
                    result.epochs = epoch + 1
        finally:
            self.model.eval()
        result.seconds = time.perf_counter() - t0
        logger.info("TrainableTagger.fit: %d images, %d concepts, %d epochs in %.1f s; loss %.4f -> %.4f",
                    n, len(self.config.concepts), result.epochs, result.seconds, result.losses[0],
                    result.losses[-1])
        return result

    def predict_proba(self, images: Sequence[Any], *, batch_size: int = 64):
        """Sigmoid score of every concept for each image: a float32 numpy array (N, K)."""
        import numpy as np
        import torch

        if len(images) == 0:
            return np.zeros((0, len(self.config.concepts)), dtype=np.float32)
        x_all = self._to_tensor(images)
        rows = []
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                x = self._normalise(x_all[s:s + batch_size]).to(self.device)  # (B, 3, S, S)
                logits = self.model(x)  # (B, K)
                probs = torch.softmax(logits, -1) if self.config.exclusive else torch.sigmoid(logits)
                rows.append(probs.float().cpu())
        return torch.cat(rows, 0).numpy()

    def _entities(self, probs) -> list[Entity]:
        import numpy as np

        order = np.argsort(-probs, kind="stable")
        if self.config.top_k is not None:
            order = order[: self.config.top_k]
        return [Entity(concept=self.config.concepts[j], score=float(probs[j]), origin=_ORIGIN,
                       label=self.config.concepts[j])
                for j in order if probs[j] >= self.config.threshold]

    def detect(self, image: Any) -> list[Entity]:
        return self._entities(self.predict_proba([image])[0])

    def detect_batch(self, images: Sequence[Any], *, on_error: str = "raise") -> list[list[Entity]]:
        loaded, idx = _load_all(images, self.config.max_side, on_error)
        out: list[list[Entity]] = [[] for _ in images]
        if loaded:
            probs = self.predict_proba(loaded)
            for row, i in enumerate(idx):
                out[i] = self._entities(probs[row])
        return out

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into the folder ``path``."""
        from safetensors.torch import save_file

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        cfg = {"format": _TAGGER_FORMAT, "format_version": _TAGGER_FORMAT_VERSION, **self.config.to_dict()}
        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        save_file(state, str(p / "model.safetensors"), metadata={"format": _TAGGER_FORMAT})
        tmp = p / "config.json.tmp"
        tmp.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, p / "config.json")
        return p

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: Any = None) -> TrainableTagger:
        """Load a folder written by :meth:`save_pretrained`. Pickled weights are refused."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"{p}: tagger checkpoint folder not found")
        if not p.is_dir():
            raise ValueError(f"{p}: expected a checkpoint folder (config.json + model.safetensors), found a file")
        pickles = sorted(f.name for f in p.iterdir() if f.suffix in _PICKLE_SUFFIXES)
        weights = p / "model.safetensors"
        if not weights.is_file():
            extra = f"; found pickled weights {pickles}, which are refused (unpickling runs code)" if pickles else ""
            raise ValueError(f"{p}: missing model.safetensors{extra}")
        if pickles:
            raise ValueError(f"{p}: refusing a folder with pickled weights {pickles}: only safetensors are loaded")
        cp = p / "config.json"
        if not cp.is_file():
            raise ValueError(f"{p}: missing config.json")
        try:
            raw = json.loads(cp.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{cp}: not valid JSON ({e})") from e
        if not isinstance(raw, dict) or raw.get("format") != _TAGGER_FORMAT:
            found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"{cp}: expected a {_TAGGER_FORMAT!r} checkpoint, found format {found!r}")
        if raw.get("format_version") != _TAGGER_FORMAT_VERSION:
            raise ValueError(f"{cp}: expected format_version {_TAGGER_FORMAT_VERSION}, "
                             f"found {raw.get('format_version')!r}")
        body = {k: v for k, v in raw.items() if k not in ("format", "format_version")}
        tagger = cls(TaggerConfig.from_dict(body, where=str(cp)))
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{weights}: cannot read weights: {e}") from e
        own = tagger.model.state_dict()
        bad = sorted(set(own) ^ set(state)) or [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
        if bad:
            raise ValueError(f"{weights}: weights do not match config.json (first mismatch: {bad[0]!r})")
        tagger.model.load_state_dict(state, strict=True)
        tagger.model.to(_resolve_device(device)).eval()
        return tagger


# --------------------------------------------------------------------------------------
# Given entities
# --------------------------------------------------------------------------------------


def _coerce_box(value: Any, where: str, xywh: bool = False) -> tuple[float, float, float, float]:
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: expected a box of 4 numbers, found {value!r}") from e
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{where}: expected a box of 4 finite numbers, found {value!r}")
    x0, y0, a, b = vals
    x1, y1 = (x0 + a, y0 + b) if xywh else (a, b)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"{where}: expected x0 <= x1 and y0 <= y1, found {value!r}")
    return (x0, y0, x1, y1)


class GivenEntities(ImageEntityDetector):
    """The image entities that come with a record (dataset object annotations).

    :meth:`detect` accepts:

    * a :class:`~ravlm_graph.datasets.VQARecord` (or anything with ``.entities`` whose items
      have ``name`` and ``origin``): its ``origin="image"`` entities; boxes are read from
      ``record.extra[box_key]`` when it is a mapping name -> box;
    * an iterable of annotations, each a name (``"dog"``), a ``(name, box)`` pair, or a
      mapping with ``name`` / ``label`` / ``category`` / ``names`` (Visual Genome) and
      optionally ``box`` (x0, y0, x1, y1), ``bbox`` (COCO: x, y, w, h),
      ``x``/``y``/``w``/``h`` (Visual Genome) and ``score``.

    Names map to concepts with :func:`map_label_to_concept` (through ``kg`` when given);
    scores default to 1.0. Exact duplicates (same concept and box) are dropped.

    Args:
        kg: optional knowledge graph for the name -> concept mapping.
        box_key: key of ``record.extra`` that holds name -> box (default ``"boxes"``).
    """

    def __init__(self, kg: Any = None, *, box_key: str = "boxes"):
        self.kg = kg
        self.box_key = box_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kg={'yes' if self.kg is not None else 'no'}, box_key={self.box_key!r})"

    def detect(self, image: Any) -> list[Entity]:
        items: list[tuple[str, Any, bool, float]] = []  # (name, box, box_is_xywh, score)
        if hasattr(image, "entities") and not isinstance(image, Mapping):
            boxes = {}
            extra = getattr(image, "extra", None)
            if isinstance(extra, Mapping) and isinstance(extra.get(self.box_key), Mapping):
                boxes = extra[self.box_key]
            for e in image.entities:
                if getattr(e, "origin", _ORIGIN) != _ORIGIN:
                    continue
                name = getattr(e, "name", None) or getattr(e, "concept", None)
                items.append((name, boxes.get(name), False, 1.0))
            where_root = f"record {getattr(image, 'qid', '?')!r}"
        elif isinstance(image, (str, bytes)) or not isinstance(image, Iterable):
            raise TypeError(f"GivenEntities.detect: expected a record with .entities or an iterable of "
                            f"annotations, found {type(image).__name__}")
        else:
            where_root = "annotations"
            for i, a in enumerate(image):
                items.append(self._parse(a, f"{where_root}[{i}]"))
        out: list[Entity] = []
        seen: set[tuple] = set()
        for i, (name, box, xywh, score) in enumerate(items):
            where = f"{where_root}[{i}]"
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{where}: expected a non-empty object name, found {name!r}")
            concept = map_label_to_concept(name, self.kg)
            b = _coerce_box(box, where, xywh) if box is not None else None
            try:
                score = float(score)
            except (TypeError, ValueError):
                score = math.nan
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"{where}: expected a score in [0, 1], found {score!r}")
            key = (concept, b)
            if key in seen:
                continue
            seen.add(key)
            out.append(Entity(concept=concept, score=score, origin=_ORIGIN, box=b, label=name))
        return out

    @staticmethod
    def _parse(a: Any, where: str) -> tuple[Any, Any, bool, float]:
        if isinstance(a, str):
            return (a, None, False, 1.0)
        if isinstance(a, Mapping):
            name = next((a[k] for k in ("name", "label", "category", "concept") if k in a), None)
            if name is None and isinstance(a.get("names"), Sequence) and a["names"]:
                name = a["names"][0]
            score = a.get("score", 1.0)
            if "box" in a:
                return (name, a["box"], False, score)
            if "bbox" in a:
                return (name, a["bbox"], True, score)
            if all(k in a for k in ("x", "y", "w", "h")):
                return (name, (a["x"], a["y"], a["w"], a["h"]), True, score)
            return (name, None, False, score)
        if isinstance(a, Sequence) and len(a) == 2:
            return (a[0], a[1], False, 1.0)
        raise ValueError(f"{where}: expected a name, a (name, box) pair or a mapping, found {a!r}")
