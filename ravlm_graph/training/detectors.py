"""Training the image detectors that learn from scratch, through the one training loop.

:func:`fit_tagger` trains a :class:`~ravlm_graph.grounding.detectors.tagger.TrainableTagger`
and :func:`fit_feature_tagger` the head of a
:class:`~ravlm_graph.grounding.detectors.features.FeatureTagger`, both with
:func:`ravlm_graph.training.train` (seeded, resumable when ``out_dir`` is set, checkpoints
written atomically by the tagger's own ``save_pretrained``);
:func:`train_layout_detector` trains the built-in benchmark's
:class:`~ravlm_graph.grounding.detectors.layout.LayoutCellDetector` on the crops it cuts
from annotated scenes, or (``scorer="cell_net"``) its whole-scene
:class:`~ravlm_graph.grounding.detectors.cellnet.CellNet` with :func:`fit_cell_net`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ravlm_graph.grounding.detectors.cellnet import CellNet, CellNetConfig
from ravlm_graph.grounding.detectors.features import FEATURE_BACKBONES, FeatureTagger, FeatureTaggerConfig
from ravlm_graph.grounding.detectors.layout import NONE, LayoutCellDetector, default_layouts
from ravlm_graph.grounding.detectors.tagger import TaggerConfig, TrainableTagger
from ravlm_graph.training.loop import TrainConfig, TrainResult, train

log = logging.getLogger(__name__)

SHIFT = 2  # px: largest random shift of the training-time augmentation
POSITIVE_WEIGHT = 4.0  # loss weight of a cell holding one object, relative to a __none__ cell


@dataclass
class TaggerOutput:
    """Output of the tagger's training objective.

    Fields:
        loss () float: the tagger's loss on the batch.
        logits (B, K) float: one score per concept.
    """

    loss: torch.Tensor
    logits: torch.Tensor


class _NetObjective(nn.Module):
    """A trained network (``net``) with its loss, as the training loop wants a model.

    Its state dict is the network's own and it saves as its ``owner`` (a tagger or a cell
    network) does, so the checkpoints the loop writes and resumes from are plain detector folders.
    """

    def __init__(self, owner, net: nn.Module) -> None:
        super().__init__()
        self.owner = owner
        self.net = net

    def state_dict(self, *args, **kwargs):
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)

    def save_pretrained(self, path):
        return self.owner.save_pretrained(path)


class _TaggerObjective(_NetObjective):
    """A tagger's trained network with the tagger's loss."""

    def forward(self, batch) -> TaggerOutput:
        x, y = batch
        logits = self.net(x)  # (B, K)
        return TaggerOutput(loss=self.owner.loss(logits, y), logits=logits)


class _AugmentingCollate:
    """Stacks images (uint8 -> [-1, 1]) and targets; with ``augment``, random horizontal flips
    and one random shift of up to :data:`SHIFT` px per batch (edge pixels repeated), drawn
    from torch's RNG, which the training loop seeds, checkpoints and restores."""

    def __init__(self, x_all: torch.Tensor, y_all: torch.Tensor, augment: bool) -> None:
        self.x_all, self.y_all, self.augment = x_all, y_all, augment

    def __call__(self, ids: list[int]):
        idx = torch.as_tensor(ids)
        x = TrainableTagger.normalise(self.x_all[idx])  # (B, 3, S, S)
        if self.augment:
            flip = torch.rand(len(ids)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            dx, dy = (int(v) for v in torch.randint(0, 2 * SHIFT + 1, (2,)))
            s = x.shape[-1]
            x = nn.functional.pad(x, (SHIFT,) * 4, mode="replicate")[..., dy:dy + s, dx:dx + s]
        return x, self.y_all[idx]


def fit_tagger(tagger: TrainableTagger, images: Sequence[Any], label_sets: Sequence[Iterable[str]],
               config: TrainConfig, *, augment: bool = True) -> TrainResult:
    """Train ``tagger`` on ``images`` with their concept sets; reproducible for a given ``config.seed``.

    The global RNG is left as it was (the run uses a forked one). ``config.out_dir`` "" keeps
    everything in memory; a folder gets resumable checkpoints (``last``, ``final``).

    Args:
        tagger: the tagger to train (its weights are updated in place).
        images: images (anything :func:`~ravlm_graph.grounding.images.load_image` accepts).
        label_sets: per image, the concepts it shows (names in the vocabulary).
        config: the training settings (epochs, batch size, learning rate, seed, ...).
        augment: random horizontal flips and shifts of up to 2 px. Default True.

    Raises:
        ValueError: mismatched lengths, no images, a concept outside the vocabulary.
    """
    if len(images) != len(label_sets):
        raise ValueError(f"fit_tagger: {len(images)} images but {len(label_sets)} label sets")
    if len(images) == 0:
        raise ValueError("fit_tagger: expected at least one training image, found none")
    x_all = tagger.images_to_tensor(images, desc="decode")  # (N, 3, S, S) uint8
    y_all = tagger.targets(label_sets)  # (N, K)
    objective = _TaggerObjective(tagger, tagger.model)
    try:
        with torch.random.fork_rng(devices=[]):
            result = train(objective, list(range(len(images))), _AugmentingCollate(x_all, y_all, augment),
                           config)
    finally:
        tagger.model.eval()
    log.info("fit_tagger: %d images, %d concepts, %d epochs in %.1f s; loss %.4f -> %.4f", len(images),
             len(tagger.concepts), result.epochs_run, result.seconds, result.losses[0], result.losses[-1])
    return result


def _stack(x_all: torch.Tensor, y_all: torch.Tensor):
    def collate(ids: list[int]):
        idx = torch.as_tensor(ids)
        return x_all[idx], y_all[idx]

    return collate


def fit_feature_tagger(tagger: FeatureTagger, images: Sequence[Any], label_sets: Sequence[Iterable[str]],
                       config: TrainConfig, *, features: torch.Tensor | None = None) -> TrainResult:
    """Read ``images`` once through the tagger's frozen backbone, then train its head on the features.

    Args:
        tagger: the tagger whose head is trained (in place).
        images: training crops (anything :func:`~ravlm_graph.grounding.images.load_image` accepts).
        label_sets: per crop, its concepts (exactly one when the tagger is exclusive).
        config: the head's training settings; the global RNG is left as it was.
        features: precomputed ``(N, width)`` features of ``images`` (skips the backbone).
    """
    if len(images) != len(label_sets):
        raise ValueError(f"fit_feature_tagger: {len(images)} images but {len(label_sets)} label sets")
    if len(images) == 0:
        raise ValueError("fit_feature_tagger: expected at least one training image, found none")
    width = FEATURE_BACKBONES[tagger.config.backbone][1]
    x_all = features if features is not None else tagger.features(images, desc="features" if config.progress else None)
    if tuple(x_all.shape) != (len(images), width):
        raise ValueError(f"fit_feature_tagger: expected features of shape ({len(images)}, {width}), "
                         f"found {tuple(x_all.shape)}")
    y_all = tagger.targets(label_sets)  # (N, K)
    try:
        with torch.random.fork_rng(devices=[]):
            result = train(_TaggerObjective(tagger, tagger.head), list(range(len(images))), _stack(x_all, y_all),
                           config)
    finally:
        tagger.head.eval()
    return result


@dataclass
class CellNetOutput:
    """Output of the cell network's training objective.

    Fields:
        loss () float: cross-entropy of every cell's label plus that of the scene's layout.
        cell_logits (B, cells, K) float; layout_logits (B, L) float.
    """

    loss: torch.Tensor
    cell_logits: torch.Tensor
    layout_logits: torch.Tensor


class _CellNetObjective(_NetObjective):
    """A :class:`CellNet`'s network with its loss; its state dict is the network's own."""

    def __init__(self, net: CellNet) -> None:
        super().__init__(net, net.model)
        self.none = net.config.concepts.index(NONE)

    def forward(self, batch) -> CellNetOutput:
        x, cells, layout = batch
        if isinstance(x, tuple):  # a backbone network's maps, computed once before training
            cell_logits, layout_logits = self.net.from_maps(x[0].float(), x[1].float())
        else:
            cell_logits, layout_logits = self.net(x)  # (B, cells, K), (B, L)
        # most cells are __none__: an object's cell counts POSITIVE_WEIGHT times as much
        per_cell = nn.functional.cross_entropy(cell_logits.flatten(0, 1), cells.flatten(), reduction="none")
        weight = 1.0 + (POSITIVE_WEIGHT - 1.0) * (cells.flatten() != self.none).float()
        loss = (per_cell * weight).sum() / weight.sum()
        if bool((layout >= 0).any()):
            loss = loss + nn.functional.cross_entropy(layout_logits, layout, ignore_index=-1)
        return CellNetOutput(loss=loss, cell_logits=cell_logits, layout_logits=layout_logits)


def _hue_rotation(theta: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) matrices rotating RGB colours by ``theta`` (B,) radians about the grey axis."""
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1.0 / 3.0
    r = (1.0 / 3.0) ** 0.5
    a = c + (1 - c) * k
    b = k * (1 - c) - r * s
    d = k * (1 - c) + r * s
    return torch.stack([torch.stack([a, b, d], -1), torch.stack([d, a, b], -1), torch.stack([b, d, a], -1)], -2)


class _SceneAugment:
    """Stacks scenes (uint8 -> [-1, 1]) with their cell and layout labels; with ``augment``,
    per scene a random brightness, contrast, saturation and hue rotation, now and then grey,
    blurred or noisy (so that shapes, not only Twemoji's flat colours, tell concepts apart),
    and one shift of up to :data:`SHIFT` px per batch. Draws from torch's RNG (seeded and
    restored by the training loop)."""

    def __init__(self, x_all: torch.Tensor, cells: torch.Tensor, layouts: torch.Tensor, augment: bool) -> None:
        self.x_all, self.cells, self.layouts, self.augment = x_all, cells, layouts, augment

    def __call__(self, ids: list[int]):
        idx = torch.as_tensor(ids)
        x = self.x_all[idx].float().div(255.0)  # (B, 3, S, S) in [0, 1]
        if self.augment:
            b = len(ids)
            u = lambda lo, hi: torch.empty(b, 1, 1, 1).uniform_(lo, hi)  # noqa: E731
            x = x * u(0.7, 1.3)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * u(0.7, 1.3) + mean
            grey = x.mean(1, keepdim=True)
            sat = u(0.4, 1.5)
            sat = torch.where(torch.rand(b, 1, 1, 1) < 0.15, torch.zeros_like(sat), sat)  # 15 % grey
            x = grey + (x - grey) * sat
            theta = torch.empty(b).uniform_(-0.6, 0.6) * (torch.rand(b) < 0.5)
            x = torch.einsum("bij,bjhw->bihw", _hue_rotation(theta), x)
            blur = nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
            x = torch.where(torch.rand(b, 1, 1, 1) < 0.15, blur, x)
            x = x + torch.randn_like(x) * 0.03 * (torch.rand(b, 1, 1, 1) < 0.2)
            x = x.clamp(0.0, 1.0)
            dx, dy = (int(v) for v in torch.randint(0, 2 * SHIFT + 1, (2,)))
            s = x.shape[-1]
            x = nn.functional.pad(x, (SHIFT,) * 4, mode="replicate")[..., dy:dy + s, dx:dx + s]
        return x.mul(2.0).sub(1.0), self.cells[idx], self.layouts[idx]


class _MapBatches:
    """Batches of a backbone cell network's frozen maps (computed once) with the labels."""

    def __init__(self, f16: torch.Tensor, fhead: torch.Tensor, cells: torch.Tensor, layouts: torch.Tensor) -> None:
        self.f16, self.fhead, self.cells, self.layouts = f16, fhead, cells, layouts

    def __call__(self, ids: list[int]):
        idx = torch.as_tensor(ids)
        return (self.f16[idx], self.fhead[idx]), self.cells[idx], self.layouts[idx]


def backbone_maps(net: CellNet, x_all: torch.Tensor, batch_size: int = 64, progress: bool = True):
    """The frozen backbone's maps of uint8 scenes (N, 3, S, S), in float16 to halve the memory:
    (N, C16, S/16, S/16) and (N, C_head, S/32, S/32)."""
    from tqdm.auto import tqdm

    f16s, heads = [], []
    with torch.inference_mode():
        for s in tqdm(range(0, len(x_all), batch_size), desc="backbone maps", unit="batch", disable=not progress,
                      dynamic_ncols=True, leave=False):
            a, h = net.model.backbone_maps(net.normalise(x_all[s:s + batch_size]))
            f16s.append(a.half().contiguous())
            heads.append(h.half().contiguous())
    return torch.cat(f16s), torch.cat(heads)


def fit_cell_net(net: CellNet, images: Sequence[Any], cells: torch.Tensor, layouts: torch.Tensor,
                 config: TrainConfig, *, augment: bool = True) -> TrainResult:
    """Train ``net`` on whole scenes with every cell's label and the scene's layout
    (:meth:`LayoutCellDetector.scene_targets`); reproducible for a given ``config.seed``.

    Args:
        net: the cell network (its weights are updated in place).
        images: the scenes (anything :func:`~ravlm_graph.grounding.images.load_image` accepts).
        cells: (N, cells) label indices into ``net.config.concepts``.
        layouts: (N,) the scene's layout index, or -1 (no layout loss for that scene).
        config: the training settings.
        augment: colour, blur, noise and shift augmentation (default True). A network with a
            frozen ``backbone`` and ``augment=False`` reads each scene through the backbone once,
            before training, and trains its heads on the stored maps (many epochs for the
            price of one backbone pass).
    """
    if not (len(images) == len(cells) == len(layouts)):
        raise ValueError(f"fit_cell_net: {len(images)} images, {len(cells)} cell rows, {len(layouts)} layouts")
    if len(images) == 0:
        raise ValueError("fit_cell_net: expected at least one training scene, found none")
    n_cells = len(net.config.cells)
    if tuple(cells.shape) != (len(images), n_cells):
        raise ValueError(f"fit_cell_net: expected cells of shape ({len(images)}, {n_cells}), found {tuple(cells.shape)}")
    x_all = net.images_to_tensor(images)  # (N, 3, S, S) uint8
    objective = _CellNetObjective(net)
    if net.config.backbone is not None and not augment:
        f16, fhead = backbone_maps(net, x_all, progress=config.progress)
        del x_all
        batches = _MapBatches(f16, fhead, cells, layouts)
    else:
        batches = _SceneAugment(x_all, cells, layouts, augment)
    try:
        with torch.random.fork_rng(devices=[]):
            result = train(objective, list(range(len(images))), batches, config)
    finally:
        net.model.eval()
    log.info("fit_cell_net: %d scenes, %d epochs in %.1f s; loss %.4f -> %.4f", len(images), result.epochs_run,
             result.seconds, result.losses[0], result.losses[-1])
    return result


def train_layout_detector(scenes: Sequence[tuple[Any, Sequence[tuple[str, Sequence[float]]]]],
                          concepts: Sequence[str], *, epochs: int = 8, negatives_per_scene: int = 2, seed: int = 0,
                          image_size: int = 48, channels: Sequence[int] = (32, 64, 128), progress: bool = True,
                          jitter: bool = True, batch_size: int = 64, lr: float = 2e-3, features: str | None = None,
                          feature_size: int = 128, hidden: int = 256, out_dir: str = "", scorer: str = "crops",
                          blocks: Sequence[int] = (0, 1, 1, 2), layout_choice: str = "cells",
                          weight_decay: float = 1e-4, min_score: float = 0.2,
                          init_from: str | None = None, backbone: str | None = None) -> LayoutCellDetector:
    """A :class:`LayoutCellDetector` trained on scenes given as ``(image, [(concept, box), ...])``.

    ``scorer="crops"`` (default): the crops come from :meth:`LayoutCellDetector.training_crops`;
    one label per crop: a softmax over the concepts and ``__none__`` learns much faster than
    hundreds of independent sigmoids (whose loss is near its minimum by predicting nothing).
    ``features`` names a frozen pretrained backbone (``"efficientnet_lite0"``): the crops
    are then read once through it (at ``feature_size`` pixels) and only a head with
    ``hidden`` units is trained (:class:`FeatureTagger`, cosine-decayed rate), instead of a
    CNN from scratch (constant rate; ``image_size`` and ``channels`` are then unused).

    ``scorer="cell_net"``: a :class:`CellNet` reads each whole scene (``image_size``, 4-stage
    ``channels``, residual ``blocks``, head width ``hidden``) and learns every cell's label and
    the layout (:func:`fit_cell_net`; AdamW, short warm-up, cosine-decayed rate, colour
    augmentation with ``jitter``); ``layout_choice`` and ``min_score`` are saved with the detector.
    ``backbone`` (cell networks only; ``"efficientnet_lite0"``) reads the scenes through that
    frozen pretrained network and trains only the cell heads over its maps (``channels[2:]`` are
    then the heads' adapter widths; see :class:`CellNetConfig`). ``init_from`` (cell networks only) starts from the weights of a saved cell-net detector folder
    with the same concepts, layouts and architecture (fine-tuning, e.g. on scenes of more
    drawing styles) instead of random weights; a fallback that detector has (see
    :class:`LayoutCellDetector`) is kept, unchanged, with its threshold.
    """
    if scorer not in ("crops", "cell_net"):
        raise ValueError(f"train_layout_detector: expected scorer 'crops' or 'cell_net', found {scorer!r}")
    if backbone is not None and scorer != "cell_net":
        raise ValueError("train_layout_detector: backbone is for scorer 'cell_net' (the crop tagger takes features=)")
    cfg = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      warmup_ratio=0.0, grad_clip=0.0, lr_schedule="constant", seed=seed, progress=progress)
    if scorer == "cell_net":
        layouts = default_layouts()
        vocab = tuple(sorted(set(concepts))) + (NONE,)
        net = CellNet(CellNetConfig(concepts=vocab, layouts=layouts, image_size=image_size, channels=tuple(channels),
                                    blocks=tuple(blocks), hidden=hidden, backbone=backbone), seed=seed)
        fallback = {}
        if init_from is not None:
            start = LayoutCellDetector.from_pretrained(init_from)
            if start.fallback is not None:  # only the first network is fine-tuned
                fallback = {"fallback": start.fallback, "fallback_below": start.fallback_below}
            if not start.cell_net:
                raise ValueError(f"train_layout_detector: init_from {init_from!r} holds a crop tagger, not a cell network")
            theirs, ours = start.tagger.config, net.config

            def norm(v):
                return tuple(norm(x) for x in v) if isinstance(v, (list, tuple)) else v

            for key in ("concepts", "layouts", "image_size", "channels", "blocks", "hidden", "backbone"):
                a, b = norm(getattr(theirs, key)), norm(getattr(ours, key))
                if a != b:
                    shown = (len(a), len(b)) if key in ("concepts", "layouts") else (a, b)
                    raise ValueError(f"train_layout_detector: init_from {init_from!r} differs in {key} "
                                     f"({shown[0]} there, {shown[1]} here)")
            net.model.load_state_dict(start.tagger.model.state_dict())
        cells, own = LayoutCellDetector.scene_targets(scenes, layouts, vocab)
        res = fit_cell_net(net, [im for im, _ in scenes], cells, own,
                           replace(cfg, lr_schedule="cosine", warmup_ratio=0.02, grad_clip=5.0), augment=jitter)
        log.info("train_layout_detector: %d scenes, %d concepts, loss %.4f -> %.4f in %.0f s", len(scenes),
                 len(vocab) - 1, res.losses[0], res.losses[-1], res.seconds)
        return LayoutCellDetector(net, layouts, min_score=min_score, layout_choice=layout_choice, **fallback)
    crops, labels, vocab = LayoutCellDetector.training_crops(scenes, concepts, negatives_per_scene=negatives_per_scene,
                                                             seed=seed, jitter=jitter)
    if features is not None:
        tagger = FeatureTagger(FeatureTaggerConfig(concepts=vocab, backbone=features, input_size=feature_size,
                                                   hidden=hidden, threshold=0.3, exclusive=True), seed=seed)
        res = fit_feature_tagger(tagger, crops, labels, replace(cfg, lr_schedule="cosine"))
    else:
        tagger = TrainableTagger(TaggerConfig(concepts=vocab, image_size=image_size, channels=tuple(channels),
                                              threshold=0.3, exclusive=True), seed=seed)
        res = fit_tagger(tagger, crops, labels, cfg)
    log.info("train_layout_detector: %d crops, %d concepts, loss %.4f -> %.4f in %.0f s", len(crops),
             len(vocab) - 1, res.losses[0], res.losses[-1], res.seconds)
    return LayoutCellDetector(tagger, default_layouts(), min_score=min_score)
