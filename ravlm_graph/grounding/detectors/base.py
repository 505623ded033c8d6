"""The detector interface: ``detect(image) -> list[Entity]`` (``origin="image"``) and
``detect_batch``, with the helpers the detectors share (batch loading with ``on_error``,
device choice, local-checkpoint checks for Hugging Face models)."""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ravlm_graph.types import Entity
from ravlm_graph.grounding.labels import _concept_table
from ravlm_graph.grounding.images import InvalidImageError, load_image
from ravlm_graph.utils.checkpoint import CheckpointError, read_config, read_weights, skip_init

if TYPE_CHECKING:  # pragma: no cover
    pass

logger = logging.getLogger(__name__)
_ORIGIN = "image"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


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

    def prepare_for_inference(self) -> None:
        """Speed up later calls where the detector can (an engine calls this once after
        loading); the results stay the same up to float rounding. Nothing by default."""

    def detect_explained(self, images: Sequence[Any], **kwargs) -> list[tuple[list[Entity], str | None]]:
        """Entities of each image with, when none were found, a sentence saying so.

        Detectors that know why nothing was found (thresholds, parts run) override this;
        the engine passes the sentence on to the answer instead of an unexplained empty result.
        ``kwargs`` go to :meth:`detect_batch` (a detector's own options, e.g. ``features``).
        """
        return [(ents, None if ents else f"the {type(self).__name__} found no object it can name")
                for ents in self.detect_batch(images, **kwargs)]

    # -- engines name a detector by its kind, a saved folder and/or settings ----------------

    @classmethod
    def from_engine(cls, path: Any = None, settings: dict | None = None, kg: Any = None) -> "ImageEntityDetector":
        """The detector an engine names: its saved folder ``path`` (read by ``from_pretrained``)
        or its ``settings`` (read by ``from_config`` with the engine's KG, else the constructor).

        Raises:
            ValueError: a folder for a detector built from settings, or none for one that is trained.
        """
        settings = dict(settings or {})
        if path is not None:
            loader = getattr(cls, "from_pretrained", None)
            if loader is None:
                raise ValueError(f"{cls.__name__}: expected settings only (it has no saved folder), found folder {path}")
            return loader(path, **settings)
        if getattr(cls, "from_config", None) is not None:
            return cls.from_config(settings, kg=kg)
        if getattr(cls, "from_pretrained", None) is not None:
            raise ValueError(f"{cls.__name__}: expected a saved (trained) detector folder, found none")
        return cls(**settings)

    def engine_settings(self) -> dict:
        """The settings written to ``engine.json`` for a detector built from settings ({} by default)."""
        return {}


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


def load_net_folder(cls, config_cls, path: Any, fmt: str, version: int, device: Any, what: str):
    """``cls(config)`` with its ``model`` weights read strictly from a folder written by
    ``write_checkpoint`` (``config.json`` of format ``fmt`` + safetensors), on ``device``, in
    eval mode. Pickled weights are refused.

    Raises:
        FileNotFoundError: no such folder. CheckpointError: a bad config or weights.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: {what} checkpoint folder not found")
    raw = read_config(p, fmt, version)
    body = {k: v for k, v in raw.items() if k not in ("format", "format_version")}
    try:
        with skip_init():  # every weight is read (strictly) right after
            obj = cls(config_cls.from_dict(body, where=str(p / "config.json")))
    except TypeError as e:
        raise CheckpointError(f"{p / 'config.json'}: {e}") from e
    read_weights(p, obj.model)
    obj.model.to(_resolve_device(device)).eval()
    return obj


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


def _load_vocabulary_model(path: Any, what: str, model_classes: dict, dtype: Any, device: Any,
                           concepts: Any, kg: Any) -> tuple[Any, Any, list[str], list[str]]:
    """``(model, processor, labels, concepts)`` of an open-vocabulary model in a local folder.

    Args:
        what: the kind named in errors (``"a CLIP"``, ``"an OWL-ViT or OWLv2"``).
        model_classes: the accepted ``model_type`` values -> transformers model class.
    """
    from transformers import AutoConfig, AutoProcessor  # optional heavy dependency (the model extra)

    p = _check_local_checkpoint(path, what.split(" ", 1)[1])
    model_type = AutoConfig.from_pretrained(p, local_files_only=True).model_type
    model_cls = model_classes.get(model_type)
    if model_cls is None:
        types = " or ".join(repr(t) for t in model_classes)
        raise ValueError(f"{p}: expected {what} checkpoint (model_type {types}), found model_type {model_type!r}")
    model, processor = _load_local(model_cls, AutoProcessor, p, dtype, device)
    labels, mapped = _concept_table(concepts, kg)
    return model, processor, labels, mapped


def _import_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("image detectors need transformers: pip install 'ravlm-graph[model]'") from e
    return transformers


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
