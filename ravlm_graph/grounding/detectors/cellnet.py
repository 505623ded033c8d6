""":class:`CellNet`: one fully-convolutional pass over a whole scene that scores every cell of
every candidate layout (a concept or ``__none__``) and the layout itself.

The crop tagger of :class:`~ravlm_graph.grounding.detectors.layout.LayoutCellDetector` cuts
15 crops per scene and squeezes each into a small square, so that a third of the scene
(42 x 128 px) loses two thirds of its height and a single object is seen at a quarter of
its size. The cell network reads the scene once at full resolution (aspect kept), pools
each cell's region from two feature maps (stride 8 and 16; mean and max), and classifies
the pooled vector with a head shared by all cells (plus a learnt per-cell bias). A second
head reads a 4x4 summary of the last map and names the layout. Saved as ``config.json``
+ ``model.safetensors`` (format ``ravlm-cell-net``).

Trained by :func:`ravlm_graph.training.detectors.fit_cell_net`.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ravlm_graph.grounding.detectors.base import load_net_folder
from ravlm_graph.grounding.images import DEFAULT_MAX_SIDE, images_to_uint8
from ravlm_graph.grounding.layouts import layout_cells
from ravlm_graph.utils.checkpoint import write_checkpoint
from ravlm_graph.utils.config import Config
from ravlm_graph.utils.inference import for_cpu_inference

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "ravlm-cell-net"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CellNetConfig(Config):
    """Settings of :class:`CellNet`; saved as ``config.json`` with the weights.

    Args:
        concepts: the cell vocabulary, ``__none__`` included (empty, partial or several objects).
        layouts: the candidate layouts (slot-name tuples); their cells are scored in this order.
        image_size: scenes are resized to ``image_size`` squares (default 128, the benchmark's size).
        channels: widths of the four stride-2 stages (strides 2, 4, 8, 16); default ``(24, 32, 64, 128)``.
        blocks: residual blocks (two 3x3 convolutions with BatchNorm) after each stage; default ``(0, 1, 1, 2)``.
        hidden: width of the cell head's hidden layer (256).
        dropout: dropout in the cell head (0.1).
        threshold: kept for the tagger interface: the score a detector's caller may ask for (0.3).
        max_side: largest accepted input image side in pixels (4096).
    """

    concepts: tuple[str, ...]
    layouts: tuple[tuple[str, ...], ...]
    image_size: int = 128
    channels: tuple[int, ...] = (24, 32, 64, 128)
    blocks: tuple[int, ...] = (0, 1, 1, 2)
    hidden: int = 256
    dropout: float = 0.1
    threshold: float = 0.3
    max_side: int = DEFAULT_MAX_SIDE

    def __post_init__(self) -> None:
        if isinstance(self.concepts, str):
            raise TypeError("CellNetConfig: expected a sequence of concepts, found a single str")
        object.__setattr__(self, "concepts", tuple(self.concepts))
        object.__setattr__(self, "layouts", tuple(tuple(str(s) for s in l) for l in self.layouts))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.concepts) < 2 or len(set(self.concepts)) != len(self.concepts):
            raise ValueError(f"CellNetConfig: expected at least two unique concepts, found {len(self.concepts)}")
        if not self.layouts or any(not l for l in self.layouts):
            raise ValueError("CellNetConfig: expected at least one non-empty layout")
        if len(self.channels) != 4 or any(c < 1 for c in self.channels):
            raise ValueError(f"CellNetConfig: expected 4 positive stage widths, found {self.channels}")
        if len(self.blocks) != 4 or any(b < 0 for b in self.blocks):
            raise ValueError(f"CellNetConfig: expected 4 block counts >= 0, found {self.blocks}")
        if self.image_size < 32 or self.image_size % 16:
            raise ValueError(f"CellNetConfig: expected image_size a multiple of 16 and >= 32, found {self.image_size}")
        if self.hidden < 1:
            raise ValueError(f"CellNetConfig: expected hidden >= 1, found {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"CellNetConfig: expected dropout in [0, 1), found {self.dropout}")

    @property
    def cells(self) -> list[tuple[int, int]]:
        """``(layout index, slot index)`` of every scored cell, in output order."""
        return [(li, si) for li, slots in enumerate(self.layouts) for si in range(len(slots))]


def _pool_weights(config: CellNetConfig, side: int):
    """Per cell, the share of each feature-map position inside the cell (for the mean) and
    whether the position's centre is inside it (for the max): two (cells, side*side) tensors."""
    import torch

    s = config.image_size
    mean_w, max_m = [], []
    step = s / side
    for slots in config.layouts:
        for x0, y0, x1, y1 in layout_cells(tuple(slots), s, s):
            w = torch.zeros(side, side)
            m = torch.zeros(side, side, dtype=torch.bool)
            for i in range(side):
                cy0, cy1 = i * step, (i + 1) * step
                oy = max(0.0, min(cy1, y1) - max(cy0, y0)) / step
                for j in range(side):
                    cx0, cx1 = j * step, (j + 1) * step
                    ox = max(0.0, min(cx1, x1) - max(cx0, x0)) / step
                    w[i, j] = ox * oy
                    m[i, j] = x0 <= (cx0 + cx1) / 2 < x1 and y0 <= (cy0 + cy1) / 2 < y1
            mean_w.append((w / w.sum()).flatten())
            max_m.append(m.flatten())
    return torch.stack(mean_w), torch.stack(max_m)


def _rectangles(max_m, side: int) -> list[tuple[int, int, int, int]] | None:
    """Each cell's max-pooling mask as a rectangle of positions ``(row0, row1, col0, col1)``
    (slicing a rectangle is cheaper than masking a copy of the map per cell), or None when a
    mask is empty or not a rectangle (the pooling then masks)."""
    rects = []
    for m in max_m.view(-1, side, side):
        rows, cols = m.any(1).nonzero().view(-1), m.any(0).nonzero().view(-1)
        if rows.numel() == 0:
            return None
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        if int(m.sum()) != (r1 - r0) * (c1 - c0):
            return None
        rects.append((r0, r1, c0, c1))
    return rects


def _build_cell_net(config: CellNetConfig):
    import torch
    from torch import nn

    def conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out)]

    class _Block(nn.Module):
        """Residual block: x + BN(conv(ReLU(BN(conv(x)))))."""

        def __init__(self, c: int):
            super().__init__()
            self.body = nn.Sequential(*conv_bn(c, c), nn.ReLU(inplace=True), *conv_bn(c, c))

        def forward(self, x):
            return torch.relu(x + self.body(x))

    class _CellNet(nn.Module):
        def __init__(self, cfg: CellNetConfig):
            super().__init__()
            stages, c_in = [], 3
            for c, b in zip(cfg.channels, cfg.blocks):
                stages.append(nn.Sequential(*conv_bn(c_in, c, 2), nn.ReLU(inplace=True), *[_Block(c) for _ in range(b)]))
                c_in = c
            self.stages = nn.ModuleList(stages)
            s = cfg.image_size
            for name, side in (("8", s // 8), ("16", s // 16)):
                mw, mm = _pool_weights(cfg, side)
                self.register_buffer(f"mean_w{name}", mw, persistent=False)  # (cells, side*side)
                self.register_buffer(f"max_m{name}", mm, persistent=False)  # (cells, side*side)
                setattr(self, f"rects{name}", _rectangles(mm, side))
            n_cells = mw.shape[0]
            width = 2 * (cfg.channels[2] + cfg.channels[3])
            self.cell_bias = nn.Parameter(torch.zeros(n_cells, width))
            self.cell_head = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                           nn.Linear(cfg.hidden, len(cfg.concepts)))
            self.layout_head = nn.Linear(cfg.channels[3] * 16, len(cfg.layouts))

        @staticmethod
        def _pool(h, mean_w, max_m, rects=None):
            flat = h.flatten(2)  # (B, C, P)
            mean = torch.einsum("bcp,kp->bkc", flat, mean_w)  # (B, cells, C)
            if rects is not None:  # each cell's maximum over its rectangle of positions
                peak = torch.stack([h[:, :, r0:r1, c0:c1].amax((2, 3)) for r0, r1, c0, c1 in rects], 1)
            else:
                peak = flat[:, None].masked_fill(~max_m[None, :, None], float("-inf")).amax(-1)  # (B, cells, C)
            return torch.cat([mean, peak], -1)  # (B, cells, 2C)

        def forward(self, x):
            h = x
            maps = []
            for st in self.stages:
                h = st(h)
                maps.append(h)
            f8, f16 = maps[2], maps[3]  # (B, C2, S/8, S/8), (B, C3, S/16, S/16)
            pooled = torch.cat([self._pool(f8, self.mean_w8, self.max_m8, self.rects8),
                                self._pool(f16, self.mean_w16, self.max_m16, self.rects16)], -1)  # (B, cells, W)
            cell_logits = self.cell_head(pooled + self.cell_bias)  # (B, cells, K)
            summary = nn.functional.adaptive_avg_pool2d(f16, 4).flatten(1)  # (B, C3 * 16)
            return cell_logits, self.layout_head(summary)  # (B, cells, K), (B, L)

    return _CellNet(config)


class CellNet:
    """Scores every cell of every candidate layout of a scene, and the layout, in one pass.

    Args:
        config: :class:`CellNetConfig`.
        seed: seed of the weight initialisation (default 0); the global RNG is untouched.

    Shapes:
        :meth:`predict` returns cell probabilities (N, cells, K) (softmax over the
        vocabulary, cells in :attr:`CellNetConfig.cells` order) and layout probabilities (N, L).
    """

    FORMAT = FORMAT
    FORMAT_VERSION = FORMAT_VERSION

    def __init__(self, config: CellNetConfig, *, seed: int = 0):
        import torch

        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = _build_cell_net(config)
        self.model.eval()
        self._inference_model = None  # see prepare_for_inference

    def prepare_for_inference(self) -> None:
        """Make :meth:`predict` faster: it then runs a copy of the network with its batch norms
        folded into the convolutions, in channels-last layout (the same probabilities up to float
        rounding). The copy is a snapshot of today's weights; :meth:`trained_module` drops it."""
        self._inference_model = for_cpu_inference(copy.deepcopy(self.model))

    def __repr__(self) -> str:
        return (f"CellNet(concepts={len(self.config.concepts)}, layouts={len(self.config.layouts)}, "
                f"image_size={self.config.image_size}, channels={list(self.config.channels)})")

    @property
    def concepts(self) -> tuple[str, ...]:
        return self.config.concepts

    @property
    def device(self):
        return next(self.model.parameters()).device

    def images_to_tensor(self, images: Sequence[Any]):
        """Decoded scenes resized to ``image_size`` squares: a uint8 tensor (N, 3, S, S)."""
        return images_to_uint8(images, self.config.image_size, max_side=self.config.max_side)

    @staticmethod
    def normalise(x_uint8):
        return x_uint8.float().div(127.5).sub(1.0)  # [0, 255] -> [-1, 1]

    def predict(self, images: Sequence[Any], *, batch_size: int = 32):
        """Cell and layout probabilities of each scene: numpy arrays (N, cells, K) and (N, L)."""
        import numpy as np
        import torch

        n_cells, k, n_l = len(self.config.cells), len(self.config.concepts), len(self.config.layouts)
        if len(images) == 0:
            return np.zeros((0, n_cells, k), np.float32), np.zeros((0, n_l), np.float32)
        x_all = self.images_to_tensor(images)
        net, layout = self._inference_model, torch.channels_last
        if net is None:
            net, layout = self.model, torch.contiguous_format
            if any(m.training for m in net.modules()):
                net.eval()
        cells, layouts = [], []
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                x = self.normalise(x_all[s:s + batch_size]).to(self.device).contiguous(memory_format=layout)
                c, l = net(x)
                cells.append(torch.softmax(c, -1).float().cpu())
                layouts.append(torch.softmax(l, -1).float().cpu())
        return torch.cat(cells).numpy(), torch.cat(layouts).numpy()

    def trained_module(self):
        self._inference_model = None  # the caller may change the weights
        return self.model

    def save_pretrained(self, path: str | os.PathLike, extra_json=None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (and ``extra_json`` files) atomically into ``path``."""
        return write_checkpoint(path, self.config.to_dict(), self.model.state_dict(), extra_json=dict(extra_json or {}),
                                format_name=FORMAT, format_version=FORMAT_VERSION)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: Any = None) -> CellNet:
        return load_net_folder(cls, CellNetConfig, path, FORMAT, FORMAT_VERSION, device, "cell-net")


def is_cell_net_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a :class:`CellNet` checkpoint (by its ``config.json`` format)."""
    p = Path(path) / "config.json"
    try:
        return json.loads(p.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False
