"""Object detection for scenes laid out in cells (the built-in benchmark's scenes).

No pretrained vision weights exist for drawn emoji, so detection is learnt from
scratch: a :class:`~ravlm_graph.grounding.detectors.tagger.TrainableTagger` classifies crops
into one concept or ``__none__`` (empty, partial or several objects). A scene is
read by trying each candidate layout (one cell; two side by side or stacked; three;
a 2×2 grid), classifying its cells, and keeping the layout whose weakest cell is
most confidently a single object. Each cell gives one :class:`Entity` with its
box, so questions about "the thing on the left" can be grounded.

Instead of a crop tagger the detector can hold a
:class:`~ravlm_graph.grounding.detectors.cellnet.CellNet`, which reads the whole scene
once at full resolution and scores all cells (and the layout) in one pass: more accurate
and cheaper than 15 squeezed crops. ``layout_detector.json`` then has ``format_version`` 2
and ``"scorer": "cell_net"``; folders without a version hold a crop tagger.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

from ravlm_graph.grounding.detectors.base import ImageEntityDetector
from ravlm_graph.grounding.detectors.cellnet import CellNet, is_cell_net_folder
from ravlm_graph.grounding.detectors.features import FeatureTagger, is_feature_tagger_folder
from ravlm_graph.grounding.detectors.tagger import TrainableTagger
from ravlm_graph.grounding.images import load_image
from ravlm_graph.types import Entity
from ravlm_graph.grounding.layouts import LAYOUTS
from ravlm_graph.grounding.layouts import layout_cells


NONE = "__none__"
DETECTOR_FILE = "layout_detector.json"
DETECTOR_FORMAT_VERSION = 3  # 3: adds "fallback"; 2: "scorer" and "layout_choice"; 1 (no version): a crop tagger
#: Where a detector's fallback detector is saved, inside its folder.
FALLBACK_FOLDER = "fallback"
LAYOUT_CHOICES = ("cells", "head", "joint")


def default_layouts() -> list[tuple[str, ...]]:

    return [slots for n in sorted(LAYOUTS) for slots in LAYOUTS[n]]


def _cells(slots: Sequence[str], w: int, h: int):

    return layout_cells(tuple(slots), w, h)


def _overlap(box, cell) -> float:
    """Share of ``box``'s area inside ``cell``."""
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = cell
    iw = max(0.0, min(x1, cx1) - max(x0, cx0))
    ih = max(0.0, min(y1, cy1) - max(y0, cy0))
    area = max(1e-6, (x1 - x0) * (y1 - y0))
    return iw * ih / area


def cell_label(cell, objects: Sequence[tuple[str, Sequence[float]]]) -> str:
    """The concept a crop shows: one object at least 85 % inside and no other over 10 %; else ``__none__``."""
    inside = [c for c, b in objects if _overlap(b, cell) >= 0.85]
    touching = [c for c, b in objects if _overlap(b, cell) > 0.10]
    if len(inside) == 1 and len(touching) == 1:
        return inside[0]
    return NONE


class LayoutCellDetector(ImageEntityDetector):
    """Detect objects by classifying the cells of candidate layouts.

    Args:
        tagger (TrainableTagger, FeatureTagger or CellNet): a crop classifier whose vocabulary
            includes ``__none__`` (trained from scratch, or a head on frozen pretrained
            features), or a :class:`CellNet` that scores every cell of a whole scene at once.
        layouts (list[tuple[str, ...]]): candidate layouts (slot names); default: the built-in
            ones (a CellNet's own layouts, which must then agree).
        min_score (float): cells whose best concept scores below this are dropped (default 0.2).
        layout_choice (str): how the layout is chosen: ``"cells"`` (the layout whose weakest cell
            is most confidently one object), ``"head"`` (a CellNet's layout head) or ``"joint"``
            (the head's probability times the weakest cell's score). Default ``"cells"``.
        fallback (LayoutCellDetector | None): a second detector for the scenes this one is
            unsure of: those where it finds nothing or where its weakest object scores below
            ``fallback_below`` are detected again by ``fallback``, whose result replaces its
            own. A cheap first detector (a cell network over a frozen network the VQA model
            runs anyway) with a stronger, costlier fallback spends the cost on the uncertain
            scenes only. Default None. The fallback has no fallback of its own.
        fallback_below (float): the weakest-object score under which a scene goes to the
            fallback, in [0, 1] (default 0.7).
    """

    def __init__(self, tagger: TrainableTagger | CellNet, layouts: Sequence[Sequence[str]] | None = None,
                 min_score: float = 0.2, layout_choice: str = "cells",
                 fallback: "LayoutCellDetector | None" = None, fallback_below: float = 0.7):
        if NONE not in tagger.config.concepts:
            raise ValueError(f"LayoutCellDetector: the tagger's vocabulary must include {NONE!r}")
        if layout_choice not in LAYOUT_CHOICES:
            raise ValueError(f"LayoutCellDetector: expected layout_choice in {LAYOUT_CHOICES}, found {layout_choice!r}")
        self.cell_net = isinstance(tagger, CellNet)
        if layout_choice != "cells" and not self.cell_net:
            raise ValueError(f"LayoutCellDetector: layout_choice {layout_choice!r} needs a CellNet scorer")
        if fallback is not None and not isinstance(fallback, LayoutCellDetector):
            raise TypeError(f"LayoutCellDetector: expected the fallback as a LayoutCellDetector, found "
                            f"{type(fallback).__name__}")
        if fallback is not None and fallback.fallback is not None:
            raise ValueError("LayoutCellDetector: the fallback detector has a fallback of its own (one level only)")
        if isinstance(fallback_below, bool) or not isinstance(fallback_below, (int, float)) \
                or not 0.0 <= float(fallback_below) <= 1.0:
            raise ValueError(f"LayoutCellDetector: expected fallback_below in [0, 1], found {fallback_below!r}")
        self.fallback = fallback
        self.fallback_below = float(fallback_below)
        self.tagger = tagger
        if self.cell_net:
            own = [tuple(l) for l in tagger.config.layouts]
            if layouts is not None and [tuple(l) for l in layouts] != own:
                raise ValueError(f"LayoutCellDetector: layouts {list(layouts)} differ from the CellNet's {own}")
            layouts = own
        self.layouts = [tuple(l) for l in (layouts or default_layouts())]
        self.min_score = min_score
        self.layout_choice = layout_choice
        self._none = tagger.config.concepts.index(NONE)
        self._box_cache: dict = {}  # scene size -> per layout, its cells' (box, slot name)

    def __repr__(self) -> str:
        kind = "cell_net" if self.cell_net else "crops"
        extra = f", fallback below {self.fallback_below}: {self.fallback!r}" if self.fallback is not None else ""
        return (f"LayoutCellDetector(concepts={len(self.tagger.config.concepts) - 1}, layouts={len(self.layouts)}, "
                f"scorer={kind}{extra})")

    def _candidates(self, im):
        w, h = im.size
        crops, where = [], []
        for li, slots in enumerate(self.layouts):
            for si, cell in enumerate(_cells(slots, w, h)):
                crops.append(im.crop(cell))
                where.append((li, si, cell))
        return crops, where

    def detect(self, image: Any) -> list[Entity]:
        return self.detect_batch([image])[0]

    def prepare_for_inference(self) -> None:
        if self.cell_net:
            self.tagger.prepare_for_inference()
        if self.fallback is not None:
            self.fallback.prepare_for_inference()

    @property
    def backbone(self):
        """The frozen pretrained network a cell network reads scenes through, or None."""
        return self.tagger.backbone if self.cell_net else None

    @property
    def backbone_name(self) -> str | None:
        """Its name (``CellNetConfig.backbone``, e.g. ``"efficientnet_lite0"``), or None."""
        return self.tagger.config.backbone if self.cell_net else None

    def share_backbone(self, network) -> None:
        """Read scenes through ``network`` (see :meth:`CellNet.share_backbone`)."""
        if self.backbone is None:
            raise ValueError("LayoutCellDetector.share_backbone: this detector has no pretrained backbone")
        self.tagger.share_backbone(network)

    def backbone_features(self, pixels):
        """The backbone's maps of scenes given as floats in [0, 1] at the network's input size
        (see :meth:`CellNet.backbone_features`); :meth:`detect_batch` takes them as ``features``."""
        if self.backbone is None:
            raise ValueError("LayoutCellDetector.backbone_features: this detector has no pretrained backbone")
        return self.tagger.backbone_features(pixels)

    @property
    def image_size(self) -> int | None:
        """Side of the square a cell network reads scenes at (None for the crop tagger)."""
        return self.tagger.config.image_size if self.cell_net else None

    def scene_pixels(self, images: Sequence[Any]):
        """The scenes as a cell network reads them (decoded, checked, resized to
        :attr:`image_size`): a uint8 tensor (N, 3, S, S) laid out channels-last, which
        :meth:`detect_batch` takes as ``pixels`` (a caller that needs the same pixels converts
        them once). Raises ``ValueError`` for the crop tagger."""
        if not self.cell_net:
            raise ValueError("LayoutCellDetector.scene_pixels: only a cell network reads whole scenes")
        return self.tagger.images_to_tensor(images, channels_last=True)

    def detect_batch(self, images: Sequence[Any], *, on_error: str = "raise", features=None,
                     pixels=None) -> list[list[Entity]]:
        """Entities of each scene. ``features``: the scenes' backbone maps, already computed
        (:meth:`backbone_features`), for a cell network with a pretrained backbone; ``pixels``:
        the scenes already converted by :meth:`scene_pixels`."""
        loaded = [load_image(x) for x in images]
        if features is not None and self.backbone is None:
            raise ValueError("LayoutCellDetector.detect_batch: features= is for a cell network with a pretrained backbone")
        if pixels is not None and not self.cell_net:
            raise ValueError("LayoutCellDetector.detect_batch: pixels= is for a cell network")
        if not loaded:
            return []
        if self.cell_net:  # (N, cells, K), (N, L)
            probs, layout_probs = self.tagger.predict(loaded, features=features, pixels=pixels)
        else:  # the crops of every cell of every layout, scene after scene
            probs = self.tagger.predict_proba([c for im in loaded for c in self._candidates(im)[0]])
            layout_probs = None
        n_cells = sum(len(l) for l in self.layouts)
        out = self._decode(probs.reshape(len(loaded), n_cells, -1), layout_probs, [im.size for im in loaded])
        if self.fallback is not None:
            self._refine(out, loaded, pixels, on_error)
        return out

    def unsure(self, entities: Sequence[Entity]) -> bool:
        """Whether a scene's detection goes to the fallback: nothing found, or its weakest
        object under ``fallback_below``."""
        return not entities or min(e.score for e in entities) < self.fallback_below

    def _refine(self, out: list[list[Entity]], loaded: list, pixels, on_error: str) -> None:
        """Replace, in place, the detections of the scenes this detector is unsure of by the
        fallback's (one batch for all of them)."""
        redo = [i for i, ents in enumerate(out) if self.unsure(ents)]
        if not redo:
            return
        fb = self.fallback
        same = pixels is not None and fb.cell_net and fb.image_size == self.image_size
        again = fb.detect_batch([loaded[i] for i in redo], on_error=on_error,
                                pixels=pixels[redo] if same else None)  # the same conversion of the same scenes
        for i, ents in zip(redo, again):
            out[i] = ents

    def _boxes(self, size: tuple[int, int]) -> list[list[tuple[tuple[float, ...], str]]]:
        """Per layout, the (box, slot name) of each cell in a ``size`` scene (kept per size)."""
        cache = self._box_cache
        boxes = cache.get(size)
        if boxes is None:
            if len(cache) >= 64:
                cache.clear()
            boxes = cache[size] = [[(tuple(float(v) for v in cell), slots[si])
                                    for si, cell in enumerate(_cells(slots, *size))] for slots in self.layouts]
        return boxes

    def _decode(self, probs, layout_probs, sizes) -> list[list[Entity]]:
        """Entities from cell probabilities (N, cells, K) (cells of every layout, in order) and a
        cell network's layout probabilities (N, L): the chosen layout's cells whose best concept
        (``__none__`` aside) scores at least ``min_score``, the layout chosen by ``layout_choice``
        (ties: the layout of more cells, then the first). Array operations over the batch."""
        import numpy as np

        p = probs.copy()
        p[..., self._none] = 0.0
        best = p.argmax(-1)  # (N, cells)
        conf = np.take_along_axis(p, best[..., None], -1)[..., 0]  # (N, cells) float32
        low = (conf < self.min_score).tolist()
        lens = [len(l) for l in self.layouts]
        starts = np.cumsum([0] + lens[:-1])
        if self.layout_choice == "head":
            scores = layout_probs.astype(np.float64)
        else:  # the weakest cell of each layout (at most 1.0)
            scores = np.minimum(np.minimum.reduceat(conf, starts, axis=1).astype(np.float64), 1.0)
            if self.layout_choice == "joint":
                scores = scores * layout_probs.astype(np.float64)
        concepts = self.tagger.config.concepts
        scores, best, conf = scores.tolist(), best.tolist(), conf.tolist()
        out = []
        for n, size in enumerate(sizes):
            s = scores[n]
            li = max(range(len(lens)), key=lambda l: (s[l], lens[l]))
            k0 = int(starts[li])
            out.append([Entity(concept=concepts[best[n][k]], score=conf[n][k], origin="image", box=box, label=label)
                        for k, (box, label) in enumerate(self._boxes(size)[li], k0) if not low[n][k]])
        return out

    # -------------------------------------------------------------- training data
    @staticmethod
    def training_crops(scenes: Sequence[tuple[Any, Sequence[tuple[str, Sequence[float]]]]], concepts: Sequence[str],
                       *, negatives_per_scene: int = 2, seed: int = 0,
                       jitter: bool = True) -> tuple[list, list[list[str]], tuple[str, ...]]:
        """The crops a layout detector learns from, their labels and the vocabulary.

        Scenes are given as ``(image, [(concept, box), ...])``. Every cell of the scene's own
        layout is a positive crop; ``negatives_per_scene`` cells of other layouts are added
        with the label :func:`cell_label` gives them. With ``jitter``, each crop gets a random
        colour change (brightness, contrast, saturation, hue rotation), for robustness to
        other drawing styles. The vocabulary is ``concepts`` (sorted) plus ``__none__``.
        :func:`ravlm_graph.training.detectors.train_layout_detector` trains on them.
        """
        rng = random.Random(seed)
        layouts = default_layouts()
        vocab = tuple(sorted(set(concepts))) + (NONE,)
        crops, labels = [], []
        for image, objects in scenes:
            im = load_image(image)
            w, h = im.size
            objs = [(c, tuple(b)) for c, b in objects]
            own = None
            for slots in layouts:
                if len(slots) == len(objs):
                    cells = _cells(slots, w, h)
                    if all(cell_label(c, objs) != NONE for c in cells):
                        own = slots
                        break
            pool = []
            for slots in layouts:
                for cell in _cells(slots, w, h):
                    lab = cell_label(cell, objs)
                    if slots == own:
                        crops.append(_jitter(im.crop(cell), rng) if jitter else im.crop(cell))
                        labels.append([lab])
                    else:
                        pool.append((cell, lab))
            for cell, lab in rng.sample(pool, min(negatives_per_scene, len(pool))):
                crops.append(_jitter(im.crop(cell), rng) if jitter else im.crop(cell))
                labels.append([lab])
        labels = [[l if l in vocab else NONE for l in ls] for ls in labels]
        return crops, labels, vocab

    @staticmethod
    def scene_targets(scenes: Sequence[tuple[Any, Sequence[tuple[str, Sequence[float]]]]],
                      layouts: Sequence[Sequence[str]], vocab: Sequence[str]):
        """What a :class:`CellNet` learns from each scene: the label index of every cell of every
        layout (:func:`cell_label`; concepts outside ``vocab`` count as ``__none__``), a long
        tensor (N, cells), and the index of the scene's own layout (-1 when none fits), (N,)."""
        import torch

        index = {c: i for i, c in enumerate(vocab)}
        none = index[NONE]
        cells = torch.full((len(scenes), sum(len(l) for l in layouts)), none, dtype=torch.long)
        own = torch.full((len(scenes),), -1, dtype=torch.long)
        for n, (image, objects) in enumerate(scenes):
            w, h = load_image(image).size
            objs = [(c, tuple(b)) for c, b in objects]
            k = 0
            for li, slots in enumerate(layouts):
                labels = [cell_label(cell, objs) for cell in _cells(slots, w, h)]
                for lab in labels:
                    cells[n, k] = index.get(lab, none)
                    k += 1
                if own[n] < 0 and len(slots) == len(objs) and all(lab != NONE for lab in labels):
                    own[n] = li
        return cells, own

    # ----------------------------------------------------------- save / load
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the detector folder (its fallback, if any, in the ``fallback/`` subfolder)."""
        meta = {"format_version": DETECTOR_FORMAT_VERSION if self.fallback is not None else 2,
                "scorer": "cell_net" if self.cell_net else "crops",
                "layouts": [list(l) for l in self.layouts], "min_score": self.min_score,
                "layout_choice": self.layout_choice}
        if self.fallback is None:
            return self.tagger.save_pretrained(path, extra_json={DETECTOR_FILE: meta})
        # older code refuses format 3 instead of detecting without the fallback
        meta["fallback"] = {"path": FALLBACK_FOLDER, "below": self.fallback_below}
        out = self.tagger.save_pretrained(path, extra_json={DETECTOR_FILE: meta})
        self.fallback.save_pretrained(Path(out) / FALLBACK_FOLDER)
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, *, _as_fallback: bool = False) -> "LayoutCellDetector":
        """Load a folder written by :meth:`save_pretrained` (any format version up to the current one)."""
        path = Path(path)
        p = path / DETECTOR_FILE
        if not p.exists():
            raise FileNotFoundError(f"{path}: missing {DETECTOR_FILE} (not a layout detector folder)")
        try:
            meta = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON ({e})") from e
        version = int(meta.get("format_version", 1))
        if version > DETECTOR_FORMAT_VERSION:
            raise ValueError(f"{p}: format_version {version} is newer than this code reads "
                             f"(<= {DETECTOR_FORMAT_VERSION}); upgrade ravlm-graph")
        scorer = meta.get("scorer", "crops")
        if scorer not in ("crops", "cell_net"):
            raise ValueError(f"{p}: expected scorer 'crops' or 'cell_net', found {scorer!r}")
        if scorer == "cell_net":
            if not is_cell_net_folder(path):
                raise ValueError(f"{p}: scorer 'cell_net' but {path / 'config.json'} is not a cell-net checkpoint")
            tagger = CellNet.from_pretrained(path)
        else:
            tagger = FeatureTagger.from_pretrained(path) if is_feature_tagger_folder(path) else \
                TrainableTagger.from_pretrained(path)
        extra = {}  # the fallback and its threshold (the constructor's default when unsaid)
        fb = meta.get("fallback")
        if fb is not None:
            if _as_fallback:  # checked before reading further: a folder cannot loop back into itself
                raise ValueError(f"{p}: a fallback detector with a fallback of its own (one level only)")
            if not isinstance(fb, dict) or not isinstance(fb.get("path"), str):
                raise ValueError(f"{p}: expected \"fallback\" as {{\"path\": folder, \"below\": score}}, found {fb!r}")
            name = fb["path"]
            if not name or name in (".", "..") or "/" in name or "\\" in name:
                raise ValueError(f"{p}: the fallback folder must be a subfolder name, found {name!r}")
            if not (path / name).is_dir():
                raise FileNotFoundError(f"{p}: names the fallback folder {name!r}, which is missing")
            extra["fallback"] = cls.from_pretrained(path / name, _as_fallback=True)
            if "below" in fb:
                extra["fallback_below"] = fb["below"]
        return cls(tagger, meta.get("layouts"), float(meta.get("min_score", 0.2)),
                   meta.get("layout_choice", "cells"), **extra)


def _jitter(im, rng: random.Random):
    """Random brightness / contrast / saturation / hue change of an RGB crop; now and then
    grey (so that shapes, not only colours, tell concepts apart) or slightly blurred."""
    from PIL import ImageEnhance, ImageFilter

    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.75, 1.25))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.75, 1.25))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.5, 1.4))
    if rng.random() < 0.5:
        hsv = im.convert("HSV")
        h, s, v = hsv.split()
        shift = rng.randint(-20, 20)
        h = h.point(lambda x: (x + shift) % 256)
        from PIL import Image

        im = Image.merge("HSV", (h, s, v)).convert("RGB")
    u = rng.random()
    if u < 0.15:
        im = im.convert("L").convert("RGB")
    elif u < 0.25:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    return im
