""":class:`OwlDetector`: zero-shot open-vocabulary detection with an OWL-ViT / OWLv2
checkpoint from a local folder; the text queries are the concept names, boxes in pixels.
transformers is imported only when a detector is loaded."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ravlm_graph.types import Entity
from ravlm_graph.grounding.detectors.base import ImageEntityDetector, _ORIGIN, _import_transformers, _load_all, _load_vocabulary_model, _make_config
from ravlm_graph.grounding.images import DEFAULT_MAX_SIDE
from ravlm_graph.grounding.labels import _query_text
from ravlm_graph.utils.config import Config

if TYPE_CHECKING:  # pragma: no cover
    import torch


# --------------------------------------------------------------------------------------
# OWL-ViT / OWLv2
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OwlDetectorConfig(Config):
    """Settings of :class:`OwlDetector`.

    Args:
        threshold: minimum sigmoid score of a kept box (default 0.1).
        nms_iou: IoU above which a lower-scored box of the same concept is dropped (0.3).
        max_detections: most boxes returned per image (50).
        prompt: query template, ``{}`` = the concept with spaces (``"{}"``; e.g.
            ``"a photo of a {}"``).
        batch_size: images per forward pass (8).
        text_batch_size: queries per text-encoder pass when the vocabulary is embedded (256).
        max_side: largest accepted image side in pixels (8192).
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
        from transformers import Owlv2ForObjectDetection, OwlViTForObjectDetection

        cfg = _make_config(OwlDetectorConfig, config, overrides)
        parts = _load_vocabulary_model(path, "an OWL-ViT or OWLv2",
                                       {"owlvit": OwlViTForObjectDetection, "owlv2": Owlv2ForObjectDetection},
                                       dtype, device, concepts, kg)
        return cls(*parts, cfg)

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
