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
from ravlm_graph.utils.registry import Registry
from ravlm_graph.utils.inference import for_cpu_inference

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "ravlm-cell-net"
FORMAT_VERSION = 1
#: Frozen pretrained networks a cell network can read scenes through: name -> loader of the
#: packaged network (resolved on first use: torch is not imported with this module).
BACKBONE_LOADERS = Registry("cell-net backbone")
BACKBONE_LOADERS.register("efficientnet_lite0", "ravlm_graph.grounding.vision.efficientnet_lite:load_efficientnet_lite0")
BACKBONES = BACKBONE_LOADERS.names()
#: Stride of the inner map a backbone cell network pools (and of the head's map: 32).
BACKBONE_STRIDE = 16


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
        max_side: largest accepted input image side in pixels (8192).
        backbone: None (default: the four stages above, trained from scratch) or
            ``"efficientnet_lite0"``: the packaged ImageNet EfficientNet-lite0, frozen, reads the
            scene; its stride-16 map (through a trained 3x3 convolution of ``channels[2]`` widths)
            and its head's stride-32 map (through a trained 1x1 convolution of ``channels[3]``)
            are pooled per cell. The frozen network is never saved with the detector (it comes
            from its package), and an engine whose model reads the image through the same
            network runs it once for both (:meth:`CellNet.predict` ``features=``).
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
    backbone: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.concepts, str):
            raise TypeError("CellNetConfig: expected a sequence of concepts, found a single str")
        if self.backbone is not None and self.backbone not in BACKBONES:
            raise ValueError(f"CellNetConfig.backbone: expected None or one of {list(BACKBONES)}, found {self.backbone!r}")
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
        if self.backbone is not None and (self.image_size < 64 or self.image_size % 32):
            raise ValueError(f"CellNetConfig: a backbone cell network expects image_size a multiple of 32 and >= 64, "
                             f"found {self.image_size}")
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
            if not m.any():  # a cell narrower than a position holds no centre: its largest overlap
                m.view(-1)[int(w.view(-1).argmax())] = True
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


def _pooled_cells(h8, h16, owner, summary_side: int = 4):
    """Per-cell pooled features of two maps and the layout summary (shared by both networks)."""
    import torch
    from torch import nn

    pooled = torch.cat([_pool(h8, owner.mean_w8, owner.max_m8, owner.rects8),
                        _pool(h16, owner.mean_w16, owner.max_m16, owner.rects16)], -1)  # (B, cells, W)
    cell_logits = owner.cell_head(pooled + owner.cell_bias)  # (B, cells, K)
    summary = nn.functional.adaptive_avg_pool2d(h16, summary_side).flatten(1)  # (B, C * side²)
    return cell_logits, owner.layout_head(summary)


def _pool(h, mean_w, max_m, rects=None):
    """(B, C, s, s) -> (B, cells, 2C): each cell's weighted mean and its maximum."""
    import torch

    flat = h.flatten(2)  # (B, C, P)
    mean = torch.einsum("bcp,kp->bkc", flat, mean_w)  # (B, cells, C)
    if rects is not None:  # each cell's maximum over its rectangle of positions
        peak = torch.stack([h[:, :, r0:r1, c0:c1].amax((2, 3)) for r0, r1, c0, c1 in rects], 1)
    else:
        peak = flat[:, None].masked_fill(~max_m[None, :, None], float("-inf")).amax(-1)  # (B, cells, C)
    return torch.cat([mean, peak], -1)  # (B, cells, 2C)


def _max_indices(rects: Sequence[tuple[int, int, int, int]], side: int):
    """Index tensors for :func:`_cell_maxima`: every cell's rectangle is a union of the blocks
    that all rectangles' edges cut the map into; the blocks' maxima are taken along columns,
    then rows, and each cell's maximum over its blocks (lists padded by repeating an index:
    a repeated value does not change a maximum). Returns ``(cols, rows, cells)``: long tensors
    (column blocks, width), (row blocks, height) and (cells, blocks per cell)."""
    import torch

    def cuts(lo_hi):
        edges = sorted({e for a, b in lo_hi for e in (a, b)})
        return list(zip(edges[:-1], edges[1:]))

    rows, cols = cuts([(r0, r1) for r0, r1, _, _ in rects]), cuts([(c0, c1) for _, _, c0, c1 in rects])

    def padded(lists):
        n = max(len(l) for l in lists)
        return torch.tensor([l + [l[0]] * (n - len(l)) for l in lists], dtype=torch.long)

    cells = [[i * len(cols) + j for i, (a, b) in enumerate(rows) if r0 <= a and b <= r1
              for j, (c, d) in enumerate(cols) if c0 <= c and d <= c1] for r0, r1, c0, c1 in rects]
    return (padded([list(range(a, b)) for a, b in cols]), padded([list(range(a, b)) for a, b in rows]),
            padded(cells))


def _cell_maxima(h, cols, rows, cells):
    """(B, C, s, s) -> (B, cells, C): each cell's maximum over its rectangle (:func:`_max_indices`)
    in six tensor operations instead of a slice and a maximum per cell; the maxima are the
    same values. For inference only (a value repeated by the padding would take a larger share
    of a tied maximum's gradient)."""
    x = h.permute(0, 2, 3, 1)  # (B, s, s, C): a view of a channels-last map
    b, c = x.shape[0], x.shape[3]
    x = x.index_select(2, cols.view(-1)).view(b, x.shape[1], cols.shape[0], cols.shape[1], c).amax(3)
    x = x.index_select(1, rows.view(-1)).view(b, rows.shape[0], rows.shape[1], cols.shape[0], c).amax(2)
    x = x.reshape(b, -1, c).index_select(1, cells.view(-1)).view(b, cells.shape[0], cells.shape[1], c)
    return x.amax(2)


class _PreparedHeads:
    """The per-cell pooling and the two heads of a cell network as plain tensor calls, shared by
    both prepared networks below: each cell's weighted mean and maximum (by :func:`_cell_maxima`)
    over a finer and a coarser map, the cell classifier and the layout head over the coarser map.
    The same operations on the same weights as :func:`_pooled_cells`, so the same values."""

    def __init__(self, net):
        from torch import nn

        head = [m for m in net.cell_head if isinstance(m, nn.Linear)]
        self.head = [(m.weight, m.bias) for m in head]
        self.cell_bias = net.cell_bias
        self.layout = (net.layout_head.weight, net.layout_head.bias)
        self.means = (net.mean_w8, net.mean_w16)
        self.maxima = tuple(_max_indices(r, int(m.shape[1] ** 0.5)) if r is not None else None
                            for r, m in ((net.rects8, net.max_m8), (net.rects16, net.max_m16)))
        self.net = net

    def cells(self, fine, coarse):
        """(B, C8, s, s), (B, C16, s', s') -> cell logits (B, cells, K), layout logits (B, L)."""
        import torch
        from torch.nn import functional as F

        parts = []
        for m, mean_w, idx, name in zip((fine, coarse), self.means, self.maxima, ("8", "16")):
            parts.append(torch.einsum("bcp,kp->bkc", m.flatten(2), mean_w))
            if idx is None:  # a cell mask that is not a rectangle
                parts.append(_pool(m, mean_w, getattr(self.net, f"max_m{name}"))[..., m.shape[1]:])
            else:
                parts.append(_cell_maxima(m, *idx))
        (w1, b1), (w2, b2) = self.head
        cell_logits = F.linear(torch.relu_(F.linear(torch.cat(parts, -1) + self.cell_bias, w1, b1)), w2, b2)
        summary = F.adaptive_avg_pool2d(coarse, 4).flatten(1)
        return cell_logits, F.linear(summary, *self.layout)


class _PreparedCellNet(_PreparedHeads):
    """The forward pass of a from-scratch cell network with its batch norms folded
    (:func:`~ravlm_graph.utils.inference.for_cpu_inference`), as plain tensor calls: the same
    operations on the same weights as the module's forward (so the same values), without the
    module calls (identity layers where the batch norms were, dropout) and with each cell's
    maximum taken by :func:`_cell_maxima`. Inference only."""

    def __init__(self, net):
        from torch import nn

        super().__init__(net)
        self.stages = []
        for st in net.stages:
            convs = [m for m in st if isinstance(m, nn.Conv2d)]
            blocks = [m for m in st if hasattr(m, "body")]
            if len(convs) != 1 or len(st) != 3 + len(blocks) or not isinstance(st[2], nn.ReLU):
                raise ValueError("_PreparedCellNet: unexpected stage layout")
            steps = []
            for blk in blocks:
                cs = [m for m in blk.body if isinstance(m, nn.Conv2d)]
                if len(cs) != 2 or any(not isinstance(m, (nn.Conv2d, nn.Identity, nn.ReLU)) for m in blk.body):
                    raise ValueError("_PreparedCellNet: unexpected block layout (batch norms not folded?)")
                steps.append((_conv_args(cs[0]), _conv_args(cs[1])))
            self.stages.append((_conv_args(convs[0]), steps))

    def __call__(self, x):
        import torch
        from torch.nn import functional as F

        h, maps = x, []
        for (w, b, stride, pad), blocks in self.stages:
            h = torch.relu_(F.conv2d(h, w, b, stride, pad))
            for (w1, b1, s1, p1), (w2, b2, s2, p2) in blocks:
                y = F.conv2d(torch.relu_(F.conv2d(h, w1, b1, s1, p1)), w2, b2, s2, p2)
                h = torch.relu_(y.add_(h))  # the block's relu(x + body(x))
            maps.append(h)
        return self.cells(maps[2], maps[3])


class _PreparedBackboneCells(_PreparedHeads):
    """The trained part of a backbone cell network (its two map adapters, the per-cell pooling
    and the heads) with its batch norms folded, as plain tensor calls over the frozen
    network's maps: the same operations on the same weights as ``from_maps`` (so the same
    values), without the module calls and with each cell's maximum taken by
    :func:`_cell_maxima` instead of one slice per cell. Inference only."""

    def __init__(self, net):
        from torch import nn

        super().__init__(net)
        self.convs = []
        for seq in (net.adapt16, net.adapt32):
            cs = [m for m in seq if isinstance(m, nn.Conv2d)]
            if len(cs) != 1 or any(not isinstance(m, (nn.Conv2d, nn.Identity, nn.ReLU)) for m in seq):
                raise ValueError("_PreparedBackboneCells: unexpected adapter layout (batch norms not folded?)")
            self.convs.append(_conv_args(cs[0]))

    def __call__(self, f16, fhead):
        import torch
        from torch.nn import functional as F

        fine, coarse = (torch.relu_(F.conv2d(x, w, b, stride, pad)) for x, (w, b, stride, pad) in zip((f16, fhead), self.convs))
        return self.cells(fine, coarse)


def _conv_args(conv):
    if conv.padding_mode != "zeros" or conv.groups != 1 or conv.dilation != (1, 1) or isinstance(conv.padding, str):
        raise ValueError("_PreparedCellNet: unexpected convolution settings")
    return conv.weight, conv.bias, conv.stride, conv.padding


def _register_pooling(module, cfg: CellNetConfig, sides: dict) -> int:
    """Pooling buffers (``mean_w8``/``max_m8``/``rects8`` for the finer map, ``...16`` for the
    coarser) at the given map sides; returns the number of cells."""
    for name, side in sides.items():
        mw, mm = _pool_weights(cfg, side)
        module.register_buffer(f"mean_w{name}", mw, persistent=False)  # (cells, side*side)
        module.register_buffer(f"max_m{name}", mm, persistent=False)  # (cells, side*side)
        setattr(module, f"rects{name}", _rectangles(mm, side))
    return mw.shape[0]


def _build_backbone_cell_net(config: CellNetConfig, backbone=None):
    """The cell heads over a frozen pretrained network's maps (``config.backbone``)."""
    import torch
    from torch import nn

    class _BackboneCellNet(nn.Module):
        def __init__(self, cfg: CellNetConfig, bb):
            super().__init__()
            if bb is None:
                bb = for_cpu_inference(BACKBONE_LOADERS.get(cfg.backbone)(classifier=False))
            # held outside the module tree: frozen, loaded from its package, never saved or trained
            self._backbone = [bb]
            bcfg = bb.config
            self.register_buffer("mean", torch.tensor(bcfg.mean).view(1, 3, 1, 1) / 255.0, persistent=False)
            self.register_buffer("std", torch.tensor(bcfg.std).view(1, 3, 1, 1) / 255.0, persistent=False)
            a16, a32 = cfg.channels[2], cfg.channels[3]
            self.adapt16 = nn.Sequential(nn.Conv2d(bb.map_channels(BACKBONE_STRIDE), a16, 3, padding=1, bias=False),
                                         nn.BatchNorm2d(a16), nn.ReLU(inplace=True))
            self.adapt32 = nn.Sequential(nn.Conv2d(bcfg.head_channels, a32, 1, bias=False), nn.BatchNorm2d(a32),
                                         nn.ReLU(inplace=True))
            s = cfg.image_size
            n_cells = _register_pooling(self, cfg, {"8": s // BACKBONE_STRIDE, "16": s // 32})
            width = 2 * (a16 + a32)
            self.cell_bias = nn.Parameter(torch.zeros(n_cells, width))
            self.cell_head = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                           nn.Linear(cfg.hidden, len(cfg.concepts)))
            self.layout_head = nn.Linear(a32 * 16, len(cfg.layouts))

        @property
        def backbone(self):
            return self._backbone[0]

        def share_backbone(self, bb) -> None:
            self._backbone[0] = bb

        def _apply(self, fn, *args, **kwargs):
            self._backbone[0]._apply(fn, *args, **kwargs)
            return super()._apply(fn, *args, **kwargs)

        def __deepcopy__(self, memo):  # a copy shares the frozen network
            new = type(self).__new__(type(self))
            memo[id(self)] = new
            new.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items() if k != "_backbone"})
            new.__dict__["_backbone"] = [self._backbone[0]]
            return new

        def backbone_maps(self, x):
            """Scenes in [-1, 1] (B, 3, S, S) -> the frozen network's (stride-16, head) maps."""
            return self.maps01((x + 1.0) * 0.5)

        def maps01(self, x01):
            """Scenes in [0, 1], normalised as the network was trained (and as a VQA model's
            image encoder over the same network normalises them) -> its two maps."""
            with torch.no_grad():
                z = ((x01 - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
                return self.backbone.forward_maps(z, BACKBONE_STRIDE)

        def from_maps(self, f16, fhead):
            return _pooled_cells(self.adapt16(f16), self.adapt32(fhead), self)

        def forward(self, x):
            return self.from_maps(*self.backbone_maps(x))

    return _BackboneCellNet(config, backbone)


def _build_cell_net(config: CellNetConfig, backbone=None):
    import torch
    from torch import nn

    if config.backbone is not None:
        return _build_backbone_cell_net(config, backbone)

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
            n_cells = _register_pooling(self, cfg, {"8": s // 8, "16": s // 16})
            width = 2 * (cfg.channels[2] + cfg.channels[3])
            self.cell_bias = nn.Parameter(torch.zeros(n_cells, width))
            self.cell_head = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                           nn.Linear(cfg.hidden, len(cfg.concepts)))
            self.layout_head = nn.Linear(cfg.channels[3] * 16, len(cfg.layouts))

        def forward(self, x):
            h = x
            maps = []
            for st in self.stages:
                h = st(h)
                maps.append(h)
            # (B, C2, S/8, S/8), (B, C3, S/16, S/16) -> (B, cells, K), (B, L)
            return _pooled_cells(maps[2], maps[3], self)

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

    def __init__(self, config: CellNetConfig, *, seed: int = 0, backbone=None):
        import torch

        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = _build_cell_net(config, backbone)
        self.model.eval()
        self._inference_model = None  # see prepare_for_inference
        self._prepared = self._prepared_maps = None

    def prepare_for_inference(self) -> None:
        """Make :meth:`predict` faster: it then runs a copy of the network with its batch norms
        folded into the convolutions, in channels-last layout (the same probabilities up to float
        rounding). The copy is a snapshot of today's weights; :meth:`trained_module` drops it."""
        self._inference_model = for_cpu_inference(copy.deepcopy(self.model))
        # a from-scratch network also runs as plain tensor calls (the same values, fewer calls);
        # a backbone network's trained part likewise, over the frozen network's maps
        self._prepared = _PreparedCellNet(self._inference_model) if self.config.backbone is None else None
        self._prepared_maps = (_PreparedBackboneCells(self._inference_model) if self.config.backbone is not None
                               else None)

    def __repr__(self) -> str:
        return (f"CellNet(concepts={len(self.config.concepts)}, layouts={len(self.config.layouts)}, "
                f"image_size={self.config.image_size}, channels={list(self.config.channels)})")

    @property
    def concepts(self) -> tuple[str, ...]:
        return self.config.concepts

    @property
    def device(self):
        return next(self.model.parameters()).device

    def images_to_tensor(self, images: Sequence[Any], *, channels_last: bool = False):
        """Decoded scenes resized to ``image_size`` squares: a uint8 tensor (N, 3, S, S)
        (``channels_last``: laid out so in memory, see :func:`images_to_uint8`)."""
        return images_to_uint8(images, self.config.image_size, max_side=self.config.max_side,
                               channels_last=channels_last)

    @staticmethod
    def normalise(x_uint8):
        return x_uint8.float().div(127.5).sub(1.0)  # [0, 255] -> [-1, 1]

    @property
    def backbone(self):
        """The frozen pretrained network the scenes are read through (``config.backbone``), or None."""
        return self.model.backbone if self.config.backbone is not None else None

    def share_backbone(self, network) -> None:
        """Read scenes through ``network`` (the same frozen network, e.g. the one a VQA model
        already holds) instead of this detector's own copy."""
        if self.config.backbone is None:
            raise ValueError("CellNet.share_backbone: this cell network has no pretrained backbone")
        self.model.share_backbone(network)
        if self._inference_model is not None:
            self._inference_model.share_backbone(network)

    def backbone_features(self, pixels):
        """The frozen network's maps of scenes given as floats in [0, 1] (B, 3, S, S) at
        ``image_size``: what :meth:`predict` takes as ``features``. The second map is the
        network's head output (:meth:`EfficientNetLite.forward_features`)."""
        if self.config.backbone is None:
            raise ValueError("CellNet.backbone_features: this cell network has no pretrained backbone")
        return self.model.maps01(pixels)

    def predict(self, images: Sequence[Any], *, batch_size: int = 32, features=None, pixels=None):
        """Cell and layout probabilities of each scene: numpy arrays (N, cells, K) and (N, L).

        ``features``: the scenes' backbone maps, already computed (:meth:`backbone_features`
        of the same images), so that the frozen network does not run again. ``pixels``: the
        same images already converted by :meth:`images_to_tensor` (uint8 (N, 3, S, S)).
        """
        import numpy as np
        import torch

        n_cells, k, n_l = len(self.config.cells), len(self.config.concepts), len(self.config.layouts)
        if len(images) == 0:
            return np.zeros((0, n_cells, k), np.float32), np.zeros((0, n_l), np.float32)
        net, layout = self._inference_model, torch.channels_last
        if net is None:
            net, layout = self.model, torch.contiguous_format
            if any(m.training for m in net.modules()):
                net.eval()
        if features is not None:
            if self.config.backbone is None:
                raise ValueError("CellNet.predict: features= is for a cell network with a pretrained backbone")
            f16, fhead = features
            if f16.shape[0] != len(images) or fhead.shape[0] != len(images):
                raise ValueError(f"CellNet.predict: {len(images)} images but features of {f16.shape[0]} scenes")
            with torch.inference_mode():
                prepared = self._prepared_maps if net is self._inference_model else None
                c, l = prepared(f16, fhead) if prepared is not None else net.from_maps(f16, fhead)
                return torch.softmax(c, -1).float().cpu().numpy(), torch.softmax(l, -1).float().cpu().numpy()
        if pixels is not None:
            side = self.config.image_size
            if tuple(pixels.shape) != (len(images), 3, side, side) or pixels.dtype != torch.uint8:
                raise ValueError(f"CellNet.predict: expected pixels of {len(images)} scenes as uint8 (N, 3, {side}, {side}), "
                                 f"found {pixels.dtype} {tuple(pixels.shape)}")
            x_all = pixels
        else:  # laid out channels-last from the start when the network reads them so
            x_all = self.images_to_tensor(images, channels_last=layout is torch.channels_last)
        if self._prepared is not None and self._inference_model is net:
            net = self._prepared
        cells, layouts = [], []
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                x = self.normalise(x_all[s:s + batch_size]).to(self.device).contiguous(memory_format=layout)
                c, l = net(x)
                cells.append(torch.softmax(c, -1).float().cpu())
                layouts.append(torch.softmax(l, -1).float().cpu())
        return torch.cat(cells).numpy(), torch.cat(layouts).numpy()

    def trained_module(self):
        self._inference_model = self._prepared = self._prepared_maps = None  # the caller may change the weights
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
