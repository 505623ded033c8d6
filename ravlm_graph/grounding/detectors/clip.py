""":class:`ClipTagger`: CLIP image–text matching over a concept vocabulary (top-k,
softmax scores, no boxes), from a local checkpoint folder. transformers is imported only
when a tagger is loaded."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ravlm_graph.types import Entity
from ravlm_graph.grounding.detectors.base import ImageEntityDetector, _ORIGIN, _import_transformers, _load_all, _load_vocabulary_model, _make_config
from ravlm_graph.grounding.detectors.owl import _check_prompt
from ravlm_graph.grounding.images import DEFAULT_MAX_SIDE
from ravlm_graph.grounding.labels import _query_text
from ravlm_graph.utils.config import Config

if TYPE_CHECKING:  # pragma: no cover
    import torch


# --------------------------------------------------------------------------------------
# CLIP
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipTaggerConfig(Config):
    """Settings of :class:`ClipTagger`.

    Args:
        prompt: template or list of templates (their embeddings are averaged), ``{}`` = the
            concept with spaces (default ``"a photo of a {}."``).
        top_k: most concepts returned per image (5).
        min_score: smallest softmax score returned (0.0).
        batch_size: images per forward pass (16).
        text_batch_size: prompts per text-encoder pass (256).
        max_side: largest accepted image side in pixels (8192).
    """

    prompt: str | tuple[str, ...] = "a photo of a {}."
    top_k: int = 5
    min_score: float = 0.0
    batch_size: int = 16
    text_batch_size: int = 256
    max_side: int = DEFAULT_MAX_SIDE

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            object.__setattr__(self, "prompt", tuple(self.prompt))
        _check_prompt(self.prompt, "ClipTaggerConfig")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"ClipTaggerConfig: expected min_score in [0, 1], found {self.min_score}")
        for name in ("top_k", "batch_size", "text_batch_size", "max_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClipTaggerConfig: expected {name} >= 1, found {getattr(self, name)}")


class ClipTagger(ImageEntityDetector):
    """CLIP image–text matching over a concept vocabulary (no boxes).

    Scores are the softmax over the whole vocabulary of CLIP's scaled cosine
    similarities, so they lie in [0, 1] and sum to 1 over the vocabulary; the top-k are
    returned. The vocabulary's text embeddings are computed once and cached.

    Paper: https://arxiv.org/abs/2103.00020

    Args:
        model: a ``CLIPModel`` (eval mode).
        processor: its ``CLIPProcessor``.
        labels: labels shown to the text encoder, one per concept.
        concepts: ConceptNet concepts the labels stand for.
        config: :class:`ClipTaggerConfig`.
    """

    def __init__(self, model: Any, processor: Any, labels: Sequence[str], concepts: Sequence[str],
                 config: ClipTaggerConfig | None = None):
        if len(labels) != len(concepts):
            raise ValueError(f"ClipTagger: {len(labels)} labels but {len(concepts)} concepts")
        self.model = model.eval()
        self.processor = processor
        self.labels = list(labels)
        self.concepts = list(concepts)
        self.config = config or ClipTaggerConfig()
        self._text_embeds: torch.Tensor | None = None  # (Q, E), L2-normalised

    def __repr__(self) -> str:
        return f"{type(self).__name__}(concepts={len(self.concepts)}, top_k={self.config.top_k})"

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, concepts: Sequence[str] | Mapping[str, str], *,
                        kg: Any = None, config: ClipTaggerConfig | None = None, device: Any = None,
                        dtype: Any = None, **overrides: Any) -> ClipTagger:
        """Load a CLIP checkpoint folder (model + processor files, safetensors).

        Args: as :meth:`OwlDetector.from_pretrained`, with a :class:`ClipTaggerConfig`.
        """
        _import_transformers()
        from transformers import CLIPModel

        cfg = _make_config(ClipTaggerConfig, config, overrides)
        parts = _load_vocabulary_model(path, "a CLIP", {"clip": CLIPModel}, dtype, device, concepts, kg)
        return cls(*parts, cfg)

    @property
    def _device(self):
        return next(self.model.parameters()).device

    def text_embeddings(self) -> torch.Tensor:
        """The vocabulary's L2-normalised text embeddings, shape (Q, E); computed once."""
        import torch

        if self._text_embeds is not None:
            return self._text_embeds
        prompts = [self.config.prompt] if isinstance(self.config.prompt, str) else list(self.config.prompt)
        tok = self.processor.tokenizer
        max_len = self.model.config.text_config.max_position_embeddings
        total = None
        with torch.inference_mode():
            for prompt in prompts:
                texts = [prompt.format(_query_text(lab)) for lab in self.labels]
                chunks = []
                for s in range(0, len(texts), self.config.text_batch_size):
                    enc = tok(texts[s:s + self.config.text_batch_size], padding=True, truncation=True,
                              max_length=max_len, return_tensors="pt").to(self._device)
                    out = self.model.get_text_features(input_ids=enc["input_ids"],
                                                       attention_mask=enc["attention_mask"])
                    chunks.append(out.pooler_output if hasattr(out, "pooler_output") else out)  # (q, E)
                e = torch.nn.functional.normalize(torch.cat(chunks, 0).float(), dim=-1)  # (Q, E)
                total = e if total is None else total + e
        self._text_embeds = torch.nn.functional.normalize(total, dim=-1)
        return self._text_embeds

    def scores(self, images: Sequence[Any]) -> torch.Tensor:
        """Softmax scores over the vocabulary, shape (N, Q); rows sum to 1."""
        import torch

        loaded, _ = _load_all(images, self.config.max_side, "raise")
        return self._scores(loaded) if loaded else torch.zeros(0, len(self.concepts))

    def _scores(self, loaded: list) -> torch.Tensor:
        import torch

        text = self.text_embeddings()  # (Q, E)
        dtype = next(self.model.parameters()).dtype
        scale = self.model.logit_scale.exp().float()
        rows = []
        with torch.inference_mode():
            for s in range(0, len(loaded), self.config.batch_size):
                pixels = self.processor.image_processor(images=loaded[s:s + self.config.batch_size],
                                                        return_tensors="pt")["pixel_values"]
                out = self.model.get_image_features(pixel_values=pixels.to(self._device, dtype))
                img = out.pooler_output if hasattr(out, "pooler_output") else out
                img = torch.nn.functional.normalize(img.float(), dim=-1)  # (B, E)
                rows.append(torch.softmax(scale * img @ text.T, dim=-1).cpu())  # (B, Q)
        return torch.cat(rows, 0)

    def detect(self, image: Any) -> list[Entity]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Any], *, on_error: str = "raise") -> list[list[Entity]]:
        import torch

        loaded, idx = _load_all(images, self.config.max_side, on_error)
        out: list[list[Entity]] = [[] for _ in images]
        if not loaded:
            return out
        probs = self._scores(loaded)  # (N, Q)
        k = min(self.config.top_k, probs.shape[1])
        top, arg = torch.topk(probs, k, dim=-1)
        for row, i in enumerate(idx):
            out[i] = [Entity(concept=self.concepts[a], score=float(sc), origin=_ORIGIN, label=self.labels[a])
                      for sc, a in zip(top[row].tolist(), arg[row].tolist()) if sc >= self.config.min_score]
        return out
