""":class:`TrainableTagger`: a small CNN, multi-label over a concept vocabulary, trained
from scratch — for image domains without pretrained vision weights (the built-in
benchmark's drawn emoji). Saved as ``config.json`` + ``model.safetensors``.

The tagger holds the network, inference, its loss and its checkpoint folder; it is trained
by :func:`ravlm_graph.training.detectors.fit_tagger` (the project's one training loop),
which reads :meth:`TrainableTagger.images_to_tensor`, :meth:`TrainableTagger.targets` and
:meth:`TrainableTagger.loss`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ravlm_graph.grounding.detectors.base import _ORIGIN, ImageEntityDetector, _load_all, load_net_folder
from ravlm_graph.grounding.images import DEFAULT_MAX_SIDE, images_to_uint8
from ravlm_graph.grounding.labels import map_label_to_concept
from ravlm_graph.types import Entity
from ravlm_graph.utils.checkpoint import write_checkpoint
from ravlm_graph.utils.config import Config

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "ravlm-image-tagger"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------
# Trainable tagger
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaggerConfig(Config):
    """Settings of :class:`TrainableTagger`; saved as ``config.json`` with the weights.

    Args:
        concepts: the concept vocabulary (ConceptNet-style names), one output each.
        image_size: images are resized to ``image_size`` x ``image_size`` (default 64).
        channels: output channels of the conv stages; each stage halves the resolution
            (default ``(32, 64, 128)``).
        dropout: dropout before the classifier (0.1).
        threshold: sigmoid score a concept needs to be returned by :meth:`TrainableTagger.detect` (0.5).
        top_k: most concepts returned per image, or None for all above threshold (None).
        max_side: largest accepted input image side in pixels (8192).
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


def _build_tagger_net(config: TaggerConfig):
    """A small CNN: per stage two 3x3 conv + GroupNorm + ReLU, then 2x2 max-pool; global
    average pool; dropout; linear to one logit per concept. GroupNorm (not BatchNorm)
    makes an image's output independent of its batch."""
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


class VocabularyTagger(ImageEntityDetector):
    """What every crop/image tagger over a concept vocabulary shares: targets, loss, entities, saving.

    A subclass sets ``config`` (with ``concepts``, ``threshold``, ``exclusive``, ``max_side``
    and ``to_dict()``), the class attributes ``FORMAT`` / ``FORMAT_VERSION``, and implements
    :meth:`predict_proba` and :meth:`trained_module` (the network whose weights are saved).
    """

    FORMAT = ""
    FORMAT_VERSION = 1

    @property
    def concepts(self) -> tuple[str, ...]:
        return self.config.concepts

    def trained_module(self):
        """The network trained and saved (the whole CNN, or a head on frozen features)."""
        raise NotImplementedError

    def predict_proba(self, images: Sequence[Any], *, batch_size: int = 64):
        raise NotImplementedError

    def targets(self, label_sets: Sequence[Iterable[str]]):
        """Multi-hot targets (N, K) of the images' concept sets (names in the vocabulary or labels mapped
        to them); an exclusive tagger needs exactly one concept per image."""
        import torch

        index = {c: i for i, c in enumerate(self.config.concepts)}
        y = torch.zeros((len(label_sets), len(self.config.concepts)), dtype=torch.float32)
        for i, labels in enumerate(label_sets):
            if isinstance(labels, str):
                labels = [labels]
            for c in labels:
                j = index.get(c)
                if j is None:
                    j = index.get(map_label_to_concept(c)) if isinstance(c, str) and c.strip() else None
                if j is None:
                    raise ValueError(f"label set {i}: concept {c!r} is not in the tagger's vocabulary "
                                     f"({len(self.config.concepts)} concepts)")
                y[i, j] = 1.0
        if self.config.exclusive and bool((y.sum(1) != 1).any()):
            bad = int((y.sum(1) != 1).nonzero()[0, 0])
            raise ValueError(f"label set {bad}: an exclusive tagger needs exactly one concept per image, "
                             f"found {int(y[bad].sum())}")
        return y

    def loss(self, logits, targets):
        """Training loss of ``logits`` (N, K) against :meth:`targets` (N, K): cross-entropy over the
        vocabulary for an exclusive tagger, else binary cross-entropy per concept."""
        import torch

        if self.config.exclusive:
            return torch.nn.functional.cross_entropy(logits, targets.argmax(1))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)

    def _entities(self, probs) -> list[Entity]:
        import numpy as np

        order = np.argsort(-probs, kind="stable")
        top_k = getattr(self.config, "top_k", None)
        if top_k is not None:
            order = order[:top_k]
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

    def save_pretrained(self, path: str | os.PathLike, extra_json: Mapping[str, Any] | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (the trained network; and ``extra_json``
        files) atomically into the folder ``path``."""
        return write_checkpoint(path, self.config.to_dict(), self.trained_module().state_dict(),
                                extra_json=dict(extra_json or {}), format_name=self.FORMAT,
                                format_version=self.FORMAT_VERSION)


class TrainableTagger(VocabularyTagger):
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
        fit_tagger(tagger, images, [{"dog"}, {"cat", "dog"}], TrainConfig(epochs=5, out_dir=""))
        tagger.save_pretrained("ckpt/tagger")
        TrainableTagger.from_pretrained("ckpt/tagger").detect("photo.png")
    """

    FORMAT = FORMAT
    FORMAT_VERSION = FORMAT_VERSION

    def __init__(self, config: TaggerConfig | Sequence[str], *, seed: int = 0):
        import torch

        if not isinstance(config, TaggerConfig):
            config = TaggerConfig(tuple(config))
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = _build_tagger_net(config)
        self.model.eval()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(concepts={len(self.config.concepts)}, image_size={self.config.image_size}, "
                f"channels={list(self.config.channels)})")

    @property
    def device(self):
        return next(self.model.parameters()).device

    def images_to_tensor(self, images: Sequence[Any], desc: str | None = None):
        """Decoded, resized images as a uint8 tensor (N, 3, S, S)."""
        return images_to_uint8(images, self.config.image_size, max_side=self.config.max_side, desc=desc)

    @staticmethod
    def normalise(x_uint8):
        return x_uint8.float().div(127.5).sub(1.0)  # [0, 255] -> [-1, 1]

    def predict_proba(self, images: Sequence[Any], *, batch_size: int = 64):
        """Sigmoid score of every concept for each image: a float32 numpy array (N, K)."""
        import numpy as np
        import torch

        if len(images) == 0:
            return np.zeros((0, len(self.config.concepts)), dtype=np.float32)
        x_all = self.images_to_tensor(images)
        rows = []
        if any(m.training for m in self.model.modules()):  # eval() walks every module: only when needed
            self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                x = self.normalise(x_all[s:s + batch_size]).to(self.device)  # (B, 3, S, S)
                logits = self.model(x)  # (B, K)
                probs = torch.softmax(logits, -1) if self.config.exclusive else torch.sigmoid(logits)
                rows.append(probs.float().cpu())
        return torch.cat(rows, 0).numpy()

    def trained_module(self):
        return self.model

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: Any = None) -> TrainableTagger:
        """Load a folder written by :meth:`save_pretrained`. Pickled weights are refused."""
        return load_net_folder(cls, TaggerConfig, path, FORMAT, FORMAT_VERSION, device, "tagger")
