"""Training the image detectors that learn from scratch, through the one training loop.

:func:`fit_tagger` trains a :class:`~ravlm_graph.grounding.detectors.tagger.TrainableTagger`
and :func:`fit_feature_tagger` the head of a
:class:`~ravlm_graph.grounding.detectors.features.FeatureTagger`, both with
:func:`ravlm_graph.training.train` (seeded, resumable when ``out_dir`` is set, checkpoints
written atomically by the tagger's own ``save_pretrained``);
:func:`train_layout_detector` trains the built-in benchmark's
:class:`~ravlm_graph.grounding.detectors.layout.LayoutCellDetector` on the crops it cuts
from annotated scenes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ravlm_graph.grounding.detectors.features import FEATURE_BACKBONES, FeatureTagger, FeatureTaggerConfig
from ravlm_graph.grounding.detectors.layout import LayoutCellDetector, default_layouts
from ravlm_graph.grounding.detectors.tagger import TaggerConfig, TrainableTagger
from ravlm_graph.training.loop import TrainConfig, TrainResult, train

log = logging.getLogger(__name__)

SHIFT = 2  # px: largest random shift of the training-time augmentation


@dataclass
class TaggerOutput:
    """Output of the tagger's training objective.

    Fields:
        loss () float: the tagger's loss on the batch.
        logits (B, K) float: one score per concept.
    """

    loss: torch.Tensor
    logits: torch.Tensor


class _TaggerObjective(nn.Module):
    """A tagger's trained network (``net``) with the tagger's loss, as the training loop wants a model.

    Its state dict is the network's own, so that the checkpoints the loop writes and
    resumes from are plain tagger folders.
    """

    def __init__(self, tagger, net: nn.Module) -> None:
        super().__init__()
        self.tagger = tagger
        self.net = net

    def forward(self, batch) -> TaggerOutput:
        x, y = batch
        logits = self.net(x)  # (B, K)
        return TaggerOutput(loss=self.tagger.loss(logits, y), logits=logits)

    def state_dict(self, *args, **kwargs):
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)

    def save_pretrained(self, path):
        return self.tagger.save_pretrained(path)


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


def train_layout_detector(scenes: Sequence[tuple[Any, Sequence[tuple[str, Sequence[float]]]]],
                          concepts: Sequence[str], *, epochs: int = 8, negatives_per_scene: int = 2, seed: int = 0,
                          image_size: int = 48, channels: Sequence[int] = (32, 64, 128), progress: bool = True,
                          jitter: bool = True, batch_size: int = 64, lr: float = 2e-3, features: str | None = None,
                          feature_size: int = 128, hidden: int = 256, out_dir: str = "") -> LayoutCellDetector:
    """A :class:`LayoutCellDetector` trained on scenes given as ``(image, [(concept, box), ...])``.

    The crops come from :meth:`LayoutCellDetector.training_crops`; one label per crop: a
    softmax over the concepts and ``__none__`` learns much faster than hundreds of
    independent sigmoids (whose loss is near its minimum by predicting nothing).

    ``features`` names a frozen pretrained backbone (``"efficientnet_lite0"``): the crops
    are then read once through it (at ``feature_size`` pixels) and only a head with
    ``hidden`` units is trained (:class:`FeatureTagger`, cosine-decayed rate), instead of a
    CNN from scratch (constant rate; ``image_size`` and ``channels`` are then unused).
    """
    crops, labels, vocab = LayoutCellDetector.training_crops(scenes, concepts, negatives_per_scene=negatives_per_scene,
                                                             seed=seed, jitter=jitter)
    cfg = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=1e-4,
                      warmup_ratio=0.0, grad_clip=0.0, lr_schedule="constant", seed=seed, progress=progress)
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
    return LayoutCellDetector(tagger, default_layouts())
