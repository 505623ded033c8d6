"""Hugging Face backbones that read graph tokens.

Two families of vision-language models are adapted, both loaded from a local folder only
(``local_files_only=True``; no model hub at run time):

* **LLaVA-style** models (vision tower + multimodal projector + causal LM, anything that
  ``AutoModelForImageTextToText`` loads and whose config has ``vision_config``,
  ``text_config`` and ``image_token_id``): the prompt holds one image placeholder and one
  ``<kg>`` placeholder; the image features replace the image placeholders and the graph
  tokens ``(B, T, D)`` replace the ``<kg>`` placeholder, so the language model reads
  ``[text | image | text | graph | text]`` as one embedding sequence. Masked slots (left
  text padding, padded graph tokens) are gathered on the left, so ``[:, -1]`` is every
  row's last real token and ``generate`` continues from it.
* **VisionEncoderDecoder** models (ViT encoder + GPT-2/BERT decoder with cross-attention):
  the graph tokens, projected to the encoder's hidden size by the caller, are appended to
  the encoder's output sequence, so that the decoder's cross-attention reads image patches
  and graph nodes together (padded graph tokens are masked out of the cross-attention).

Conventions of the two families are kept: LLaVA ``labels`` are aligned with ``input_ids``
(the loss shifts them, as in a causal LM); VisionEncoderDecoder ``labels`` are the targets
of each decoder position (``decoder_input_ids`` = ``labels`` shifted right).

Graph tokens are a :class:`ravlm_graph.fusion.GraphTokens` (``tokens (B, T, D)``,
``mask (B, T)`` bool, ``node_index (B, T)`` long); any object with ``tokens`` and ``mask``
attributes is accepted.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("ravlm_graph.models.hf_backbones needs torch: pip install 'ravlm-graph[model]'") from exc

from ravlm_graph.utils.checkpoint import CheckpointError, read_config, read_weights, write_checkpoint
from ravlm_graph.nn.fusion.base import GraphTokens
from ravlm_graph.nn.fusion.graph_tokens import GraphTokenProjector, inject_graph_tokens
from ravlm_graph.nn.gnn import GNNConfig, GraphEncoder
from ravlm_graph.types import ORIGIN_CODES
from ravlm_graph.grounding.vision.efficientnet_lite import (EfficientNetLiteConfig, load_efficientnet_lite0,
                                                            preprocess_images)
from ravlm_graph.models.hf_backbones.configuration import (BACKBONE_KINDS, BACKBONES, PACKAGED_DECODERS,
                                                           BackboneConfig, GenerativeVQAConfig, backbone_fingerprint)

__all__ = [
    "BACKBONE_KINDS",
    "BackboneConfig",
    "BackboneInputs",
    "BackboneOutput",
    "InjectedEmbeddings",
    "LlavaKGBackbone",
    "VisionEncoderDecoderKGBackbone",
    "load_backbone",
]

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


# --------------------------------------------------------------------------- outputs


@dataclass
class BackboneInputs:
    """A tokenised batch, ready for :meth:`forward_batch` / :meth:`generate_batch`.

    Shapes:
        input_ids: (B, L) long, left-padded. For a VisionEncoderDecoder backbone these are
            the decoder input ids (start token + question (+ answer)).
        attention_mask: (B, L) long, 0 on padding.
        pixel_values: (B, 3, H, W) float.
        labels: (B, L) long or None, ``-100`` on prompt, placeholder and padding positions.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor
    labels: torch.Tensor | None = None


@dataclass
class InjectedEmbeddings:
    """The embedding sequence a LLaVA language model reads.

    Shapes:
        inputs_embeds: (B, L', D) text + image features + graph tokens, L' = L - 1 + T.
            Masked slots (text padding, padded graph tokens) are all on the left, so
            ``[:, -1]`` is every row's last real token.
        attention_mask: (B, L') long; 0 on text padding and on padded graph tokens.
        position_ids: (B, L') long; ``cumsum(attention_mask) - 1`` (as ``generate`` builds them).
        graph_positions: (B, T) long; where the graph tokens sit in the L' sequence.
        text_positions: (B, L) long; where each input token sits in the L' sequence,
            ``-1`` for the ``<kg>`` placeholder that the graph tokens replaced.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    graph_positions: torch.Tensor
    text_positions: torch.Tensor


@dataclass
class BackboneOutput:
    """Output of a backbone's ``forward``.

    Shapes:
        loss: () scalar, or None without labels; mean token cross-entropy over labelled positions.
        logits: (B, L', V) for LLaVA (over the injected sequence), (B, L, V) for
            VisionEncoderDecoder (over the decoder sequence).
        hidden_states_last: (B, L', D) / (B, L, D): the language model's last hidden states.
        graph_positions: (B, T) long: for LLaVA the graph tokens' positions in the L'
            sequence; for VisionEncoderDecoder their positions in the encoder sequence
            (the cross-attention memory, image patches first).
        attention_mask: (B, L') (LLaVA) or the encoder memory mask (B, P + T) (VisionEncoderDecoder).
    """

    loss: torch.Tensor | None
    logits: torch.Tensor
    hidden_states_last: torch.Tensor
    graph_positions: torch.Tensor
    attention_mask: torch.Tensor | None = None


# --------------------------------------------------------------------------- helpers


def _transformers():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Hugging Face backbones need transformers: pip install 'ravlm-graph[model]'") from exc
    return transformers


def _desc(t: Any) -> Any:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def _check_folder(path: str | os.PathLike) -> Path:
    """The folder must exist locally and hold a ``config.json``; we never reach the hub."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such model folder (expected a local folder holding config.json)")
    if not p.is_dir():
        raise NotADirectoryError(f"{p}: expected a model folder, found a file")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p}: expected a Hugging Face model folder with config.json, found none")
    return p


def _read_model_type(folder: Path) -> str:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder / 'config.json'}: expected a JSON model config, could not read it: {exc}") from exc
    return str(data.get("model_type", "")) if isinstance(data, dict) else ""


def _resolve_config(path, config: BackboneConfig | None, kind: str) -> BackboneConfig:
    if config is None:
        return BackboneConfig(kind=kind, path=os.fspath(path))
    if not isinstance(config, BackboneConfig):
        raise TypeError(f"expected a BackboneConfig, found {type(config).__name__}")
    if config.kind != kind:
        raise ValueError(f"BackboneConfig.kind: expected {kind!r} for this backbone, found {config.kind!r}")
    if os.fspath(path) != config.path:
        config = BackboneConfig(**{**config.to_dict(), "path": os.fspath(path)})
    return config


def _load_processor_parts(folder: Path):
    """(processor or None, tokenizer, image_processor) from a local folder."""
    tf = _transformers()
    processor = None
    try:
        processor = tf.AutoProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.debug("%s: no usable processor (%s); loading tokenizer and image processor apart", folder, exc)
    tokenizer = getattr(processor, "tokenizer", None)
    image_processor = getattr(processor, "image_processor", None)
    if tokenizer is None:
        try:
            tokenizer = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FileNotFoundError(f"{folder}: expected a tokenizer (tokenizer.json / tokenizer_config.json), "
                                    f"could not load one: {exc}") from exc
    if image_processor is None:
        try:
            image_processor = tf.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FileNotFoundError(f"{folder}: expected an image processor (preprocessor_config.json / "
                                    f"processor_config.json), could not load one: {exc}") from exc
    if processor is not None and getattr(processor, "tokenizer", None) is not tokenizer:
        processor = None
    return processor, tokenizer, image_processor


def _graph_parts(graph_tokens, batch: int, width: int, what: str):
    """Validate a GraphTokens-like object; return (tokens (B,T,D), mask (B,T) bool)."""
    if not (hasattr(graph_tokens, "tokens") and hasattr(graph_tokens, "mask")):
        raise TypeError(f"graph_tokens: expected a ravlm_graph.fusion.GraphTokens (tokens, mask, node_index), "
                        f"found {type(graph_tokens).__name__}")
    tokens, mask = graph_tokens.tokens, graph_tokens.mask
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        raise ValueError(f"graph_tokens.tokens: expected a (B, T, D) tensor, found "
                         f"{_desc(tokens)}")
    if tokens.shape[0] != batch:
        raise ValueError(f"graph_tokens: expected a batch of {batch} (one graph per question), found {tokens.shape[0]}")
    if tokens.shape[-1] != width:
        raise ValueError(f"graph_tokens.tokens: expected width {what}={width} (project the graph tokens to it), "
                         f"found {tokens.shape[-1]}")
    if tokens.shape[1] < 1:
        raise ValueError("graph_tokens.tokens: expected at least one graph token per question, found T=0")
    if mask is None:
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(tokens.shape[:2]):
        raise ValueError(f"graph_tokens.mask: expected shape {tuple(tokens.shape[:2])}, found "
                         f"{_desc(mask)}")
    return tokens, mask.bool()


def _check_image_size(pixel_values: torch.Tensor, vision_config, what: str) -> None:
    size = getattr(vision_config, "image_size", None)
    if isinstance(size, int):
        size = (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and tuple(pixel_values.shape[-2:]) != tuple(size):
        raise ValueError(f"pixel_values: expected {size[0]}x{size[1]} images ({what}.image_size), "
                         f"found {pixel_values.shape[-2]}x{pixel_values.shape[-1]}")


def _check_batch(images, questions, what_images="images", what_questions="questions") -> None:
    if len(images) != len(questions):
        raise ValueError(f"expected as many {what_images} as {what_questions} (one image per question), "
                         f"found {len(images)} {what_images} and {len(questions)} {what_questions}")


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # Same rule as transformers' generate, so forward and generate see the same positions.
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 0)


def _token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if not bool((targets != IGNORE_INDEX).any()):
        raise ValueError("labels: expected at least one supervised token (a label != -100), found none")
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                       ignore_index=IGNORE_INDEX)


def _pad_id(tokenizer) -> int:
    for name in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def _pixel_values(image_processor, images) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images: expected a (B, 3, H, W) tensor or a list of images, "
                             f"found shape {tuple(images.shape)}")
        return images
    out = image_processor(images=list(images), return_tensors="pt")
    return out["pixel_values"]


class _KGBackbone(nn.Module):
    """Shared parts: freezing, saving, batch helpers."""

    config: BackboneConfig

    def __init__(self, model, tokenizer, image_processor, processor, config: BackboneConfig) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.processor = processor
        self.config = config
        self.apply_training_mode()

    @classmethod
    def from_config(cls, config: BackboneConfig) -> "_KGBackbone":
        """Load the backbone ``config`` names (its ``path``, or its encoder + decoder)."""
        if config.kind == "vision_encoder_decoder" and config.composed:
            return ComposedEncoderDecoderKGBackbone.from_config(config)
        return cls.from_pretrained(config.path, config)

    def apply_training_mode(self) -> None:
        """Freeze per the config: all frozen but the ``train`` patterns (or all trainable)."""
        for name, p in self.model.named_parameters():
            p.requires_grad_((not self.config.freeze) or any(t in name for t in self.config.train))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the (possibly resized) model, tokenizer and image processor to a folder.

        ``from_pretrained`` on that folder gives back the same backbone (same logits)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out))
        if self.processor is not None:
            self.processor.save_pretrained(str(out))
        else:
            self.tokenizer.save_pretrained(str(out))
            self.image_processor.save_pretrained(str(out))
        return out

    @property
    def max_positions(self) -> int | None:
        """Positions of the decoder's position table (None: no table, e.g. rotary LLaVA models)."""
        return None

    def _check_length(self, n: int, index: int, what: str) -> None:
        if n > self.config.max_length:
            raise ValueError(f"{what} {index}: expected at most max_length={self.config.max_length} tokens, found {n}")
        limit = self.max_positions
        if limit is not None and n > limit:
            raise ValueError(f"{what} {index}: expected at most {limit} tokens (the decoder's position table, "
                             f"max_position_embeddings), found {n}")

    def _decode(self, ids: torch.Tensor) -> list[str]:
        return [s.strip() for s in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={type(self.model).__name__}, path={self.config.path!r}, "
                f"freeze={self.config.freeze})")


# --------------------------------------------------------------------------- LLaVA


class LlavaKGBackbone(_KGBackbone):
    """A LLaVA-style VLM whose language model reads graph tokens at a ``<kg>`` placeholder.

    Load it with :meth:`from_pretrained`; the constructor only wires loaded parts together.

    Args:
        model: an ``AutoModelForImageTextToText`` LLaVA-style model.
        tokenizer: its tokenizer, already holding the ``<kg>`` token.
        image_processor: its image processor.
        processor: its processor (or None).
        config (BackboneConfig): the backbone config (``kind="llava"``).

    Shapes:
        input_ids: (B, L) with ``num_image_tokens`` image placeholders and one ``<kg>`` per row.
        pixel_values: (B, 3, H, W).
        graph_tokens.tokens: (B, T, hidden_size); graph_tokens.mask: (B, T).
        output logits: (B, L - 1 + T, V).
    """

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, config: BackboneConfig | None = None) -> "LlavaKGBackbone":
        """Load model, tokenizer and image processor from the local folder ``path``.

        Args:
            path (str | PathLike): the folder (``config.json``, weights, tokenizer, processor).
            config (BackboneConfig | None): ``kind="llava"``; its ``path`` is replaced by
                ``path`` (default: ``BackboneConfig(kind="llava", path=path)``).

        Adds ``config.kg_token`` to the tokenizer when absent and grows the embeddings (and
        LM head) to fit; :meth:`save_pretrained` keeps the adapted pair together.
        """
        config = _resolve_config(path, config, "llava")
        folder = _check_folder(path)
        tf = _transformers()
        model_type = _read_model_type(folder)
        hf_config = tf.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        image_token_id = getattr(hf_config, "image_token_id", None)
        if image_token_id is None:
            image_token_id = getattr(hf_config, "image_token_index", None)
        if (getattr(hf_config, "vision_config", None) is None or getattr(hf_config, "text_config", None) is None
                or image_token_id is None):
            hint = " (use kind='vision_encoder_decoder')" if model_type == "vision-encoder-decoder" else ""
            raise ValueError(f"{folder / 'config.json'}: expected a LLaVA-style model (vision_config, text_config "
                             f"and image_token_id), found model_type {model_type!r}{hint}")
        try:
            model = tf.AutoModelForImageTextToText.from_pretrained(str(folder), local_files_only=True,
                                                                  dtype=resolve_dtype(config.dtype))
        except ValueError as exc:
            raise ValueError(f"{folder}: expected a model AutoModelForImageTextToText can load, "
                             f"found model_type {model_type!r}: {exc}") from exc
        for method in ("get_image_features", "get_input_embeddings"):
            if not hasattr(model, method):
                raise ValueError(f"{folder}: expected a LLaVA-style model with {method}(), "
                                 f"found {type(model).__name__}")
        # The language model reads one embedding sequence (text, image features, graph tokens):
        # a model whose forward insists on its own inputs (BLIP-2's Q-Former needs pixel_values
        # and input_ids) would fail at the first training step.
        required = [n for n, prm in inspect.signature(model.forward).parameters.items()
                    if prm.default is inspect.Parameter.empty
                    and prm.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
        if required:
            raise ValueError(f"{folder}: expected a LLaVA-style model whose forward reads inputs_embeds alone, "
                             f"found {type(model).__name__} (model_type {model_type!r}) requiring "
                             f"{', '.join(required)}; this backbone kind does not support it")
        processor, tokenizer, image_processor = _load_processor_parts(folder)

        kg_id = tokenizer.convert_tokens_to_ids(config.kg_token)
        unk = getattr(tokenizer, "unk_token_id", None)
        if kg_id is None or (unk is not None and kg_id == unk and config.kg_token != tokenizer.unk_token):
            tokenizer.add_tokens([config.kg_token], special_tokens=True)
            kg_id = tokenizer.convert_tokens_to_ids(config.kg_token)
        rows = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows:
            # Only grow: many checkpoints pad their embedding matrix past the tokenizer.
            model.resize_token_embeddings(len(tokenizer))
        model.eval()
        return cls(model, tokenizer, image_processor, processor, config, image_token_id=int(image_token_id),
                   kg_token_id=int(kg_id))

    def __init__(self, model, tokenizer, image_processor, processor, config: BackboneConfig, *,
                 image_token_id: int, kg_token_id: int) -> None:
        super().__init__(model, tokenizer, image_processor, processor, config)
        self.image_token_id = image_token_id
        self.kg_token_id = kg_token_id

    @property
    def max_positions(self) -> int | None:
        """The language model's context (``text_config.max_position_embeddings``), or None."""
        value = getattr(self.model.config.text_config, "max_position_embeddings", None)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    @property
    def hidden_size(self) -> int:
        """Width D of the language model's embeddings: the graph tokens' width."""
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def num_image_tokens(self) -> int:
        """Image placeholders per image the model expects (features per image)."""
        cfg = self.model.config
        vc = cfg.vision_config
        image_size, patch_size = getattr(vc, "image_size", None), getattr(vc, "patch_size", None)
        if isinstance(image_size, int) and isinstance(patch_size, int) and patch_size > 0:
            n = (image_size // patch_size) ** 2
            if getattr(cfg, "vision_feature_select_strategy", "default") == "full":
                n += 1  # the CLS feature is kept
            return n
        n = getattr(cfg, "image_seq_length", None)
        if not isinstance(n, int):
            raise ValueError(f"{self.config.path}: cannot tell how many image tokens the model expects "
                             f"(no vision_config.image_size/patch_size nor image_seq_length)")
        return n

    @property
    def image_token(self) -> str:
        token = getattr(self.processor, "image_token", None)
        return token if isinstance(token, str) else self.tokenizer.convert_ids_to_tokens(self.image_token_id)

    # ----------------------------------------------------------------- text side

    def prepare_inputs(self, prompts: Sequence[str], images, answers: Sequence[str] | None = None) -> BackboneInputs:
        """Tokenise prompts (each with one image placeholder and one ``<kg>``), left-pad, and
        process the images; with ``answers``, append them (+ EOS) and label only them.

        Args:
            prompts (list[str]): e.g. ``"<image> What is it used for? <kg> Answer:"``.
            images (list of PIL images / arrays, or a (B, 3, H, W) tensor): one per prompt.
            answers (list[str], optional): training targets, one per prompt.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts: expected a list of strings, found a single string")
        _check_batch(images, prompts, "images", "prompts")
        if answers is not None:
            _check_batch(answers, prompts, "answers", "prompts")
        n_img = self.num_image_tokens
        eos = getattr(self.tokenizer, "eos_token_id", None)
        rows, label_rows = [], []
        for i, prompt in enumerate(prompts):
            ids = list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
            n_kg = ids.count(self.kg_token_id)
            if n_kg != 1:
                raise ValueError(f"prompt {i}: expected exactly one {self.config.kg_token!r} placeholder, found {n_kg}")
            n_im = ids.count(self.image_token_id)
            if n_im != 1:
                raise ValueError(f"prompt {i}: expected exactly one {self.image_token!r} image placeholder, "
                                 f"found {n_im}")
            text_len = len(ids) - n_im  # the image placeholder is not text
            labels = [IGNORE_INDEX] * len(ids)
            if answers is not None:
                ans = list(self.tokenizer(" " + answers[i].strip(), add_special_tokens=False)["input_ids"])
                if eos is not None:
                    ans.append(int(eos))
                ids += ans
                labels += ans
                text_len += len(ans)
            self._check_length(text_len, i, "prompt")
            at = ids.index(self.image_token_id)
            ids = ids[:at] + [self.image_token_id] * n_img + ids[at + 1:]
            labels = labels[:at] + [IGNORE_INDEX] * n_img + labels[at + 1:]
            rows.append(ids)
            label_rows.append(labels)
        input_ids, attention_mask = _left_pad(rows, _pad_id(self.tokenizer))
        labels = None
        if answers is not None:
            labels, _ = _left_pad(label_rows, IGNORE_INDEX)
        return BackboneInputs(input_ids, attention_mask, _pixel_values(self.image_processor, images), labels)

    # ----------------------------------------------------------------- embeddings

    def _check_ids(self, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                   attention_mask: torch.Tensor | None) -> torch.Tensor:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(f"input_ids: expected a (B, L) tensor, found "
                             f"{_desc(input_ids)}")
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            raise ValueError(f"pixel_values: expected a (B, 3, H, W) tensor, found "
                             f"{_desc(pixel_values)}")
        if pixel_values.shape[0] != input_ids.shape[0]:
            raise ValueError(f"expected as many images as questions (one image per question), found "
                             f"{pixel_values.shape[0]} images and {input_ids.shape[0]} questions")
        _check_image_size(pixel_values, self.model.config.vision_config, "vision_config")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask: expected shape {tuple(input_ids.shape)}, "
                             f"found {_desc(attention_mask)}")
        kg_counts = (input_ids == self.kg_token_id).sum(1)
        for row, n in enumerate(kg_counts.tolist()):
            if n != 1:
                raise ValueError(f"input_ids row {row}: expected exactly one {self.config.kg_token!r} placeholder "
                                 f"(id {self.kg_token_id}), found {n}")
        text_len = ((input_ids != self.image_token_id) & (attention_mask != 0)).sum(1)
        for row, n in enumerate(text_len.tolist()):
            self._check_length(n, row, "question")
        return attention_mask

    def build_inputs_embeds(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, graph_tokens: GraphTokens,
                            attention_mask: torch.Tensor | None = None) -> InjectedEmbeddings:
        """Text embeddings, with image features at the image placeholders and graph tokens
        at the ``<kg>`` placeholder.

        Shapes:
            input_ids: (B, L); pixel_values: (B, 3, H, W); graph_tokens.tokens: (B, T, D);
            attention_mask: (B, L) or None. Returns (B, L - 1 + T, D) embeddings.
        """
        attention_mask = self._check_ids(input_ids, pixel_values, attention_mask)
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        b = input_ids.shape[0]
        _graph_parts(graph_tokens, b, self.hidden_size, "hidden_size")
        embed = self.model.get_input_embeddings()
        text = embed(input_ids)  # (B, L, D)

        image_out = self.model.get_image_features(pixel_values=pixel_values.to(self.device, self.dtype))
        # transformers v5: an output object; the projected features are in pooler_output,
        # a list of (N_i, D) tensors (one per image); last_hidden_state is the raw vision tower.
        feats = getattr(image_out, "pooler_output", image_out)
        if isinstance(feats, (list, tuple)):
            sizes = sorted({f.numel() // f.shape[-1] for f in feats})
            if len(sizes) != 1:
                raise ValueError(f"image features: expected the same number of features for every image "
                                 f"(fixed-resolution LLaVA), found {sizes}")
            feats = torch.stack([f.reshape(-1, f.shape[-1]) for f in feats])  # (B, N, D)
        if feats.dim() != 3 or feats.shape[0] != b:
            raise ValueError(f"image features: expected (B={b}, N, D), found {tuple(feats.shape)}")
        is_img = input_ids == self.image_token_id  # (B, L)
        per_row = is_img.sum(1)
        for row, n in enumerate(per_row.tolist()):
            if n != feats.shape[1]:
                raise ValueError(f"input_ids row {row}: expected {feats.shape[1]} image placeholder tokens "
                                 f"(id {self.image_token_id}) for one image, found {n}")
        text = text.masked_scatter(is_img.unsqueeze(-1), feats.to(text.dtype))

        embeds, mask, graph_positions = inject_graph_tokens(text, input_ids, self.kg_token_id, graph_tokens,
                                                            attention_mask=attention_mask)
        text_positions = self._text_positions(input_ids, graph_positions, embeds.shape[1])
        # inject_graph_tokens right-pads a row whose graph has fewer than T real tokens. Move
        # every masked slot (text padding, padded graph tokens) to the left instead, order
        # kept: the model sees the same tokens at the same position ids, and the last slot
        # of every row is its last real token, which is what generate continues from.
        order = torch.sort(mask, dim=1, stable=True).indices  # (B, L'), masked slots first
        inverse = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device)
                                                   .expand_as(order).contiguous())
        embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))  # (B, L', D)
        mask = mask.gather(1, order)  # (B, L')
        graph_positions = inverse.gather(1, graph_positions)  # (B, T)
        text_positions = torch.where(text_positions >= 0, inverse.gather(1, text_positions.clamp(min=0)),
                                     text_positions)  # (B, L)
        return InjectedEmbeddings(embeds, mask, _position_ids(mask), graph_positions, text_positions)

    def _text_positions(self, input_ids: torch.Tensor, graph_positions: torch.Tensor, new_len: int) -> torch.Tensor:
        """Where each input token landed: the free slots of the new sequence, in order."""
        b, length = input_ids.shape
        t = graph_positions.shape[1]
        taken = torch.zeros(b, new_len, dtype=torch.bool, device=input_ids.device)
        taken.scatter_(1, graph_positions.long(), True)
        free = (~taken).nonzero()[:, 1].reshape(b, -1)  # (B, L' - T), row-major order
        src = input_ids != self.kg_token_id  # the placeholder itself is replaced
        assert free.shape[1] == length - 1, (
            f"inject_graph_tokens returned {new_len} positions for {length} tokens and {t} graph tokens")
        out = torch.full((b, length), -1, dtype=torch.long, device=input_ids.device)
        out[src] = free.reshape(-1)
        return out

    # ----------------------------------------------------------------- forward / generate

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, graph_tokens: GraphTokens,
                labels: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None) -> BackboneOutput:
        """Run the VLM on text + image + graph tokens.

        Args:
            labels ((B, L) long, optional): aligned with ``input_ids`` (causal-LM convention,
                shifted inside); ``-100`` where no loss is wanted. Image, ``<kg>``, padding and
                graph-token positions never get a loss.
        """
        if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != input_ids.shape):
            raise ValueError(f"labels: expected shape {tuple(input_ids.shape)} (aligned with input_ids), found "
                             f"{_desc(labels)}")
        inj = self.build_inputs_embeds(input_ids, pixel_values, graph_tokens, attention_mask)
        out = self.model(inputs_embeds=inj.inputs_embeds, attention_mask=inj.attention_mask,
                         position_ids=inj.position_ids, output_hidden_states=True, use_cache=False)
        logits = out.logits  # (B, L', V)
        loss = None
        if labels is not None:
            dev = logits.device
            labels, ids = labels.to(dev).long(), input_ids.to(dev)
            text_mask = inj.attention_mask.gather(1, inj.text_positions.clamp(min=0))  # (B, L)
            labels = labels.masked_fill((ids == self.image_token_id) | (ids == self.kg_token_id) | (text_mask == 0),
                                        IGNORE_INDEX)
            # Move each label to its token's new place; graph-token slots keep -100.
            new_labels = torch.full(inj.attention_mask.shape, IGNORE_INDEX, dtype=torch.long, device=dev)  # (B, L')
            keep = inj.text_positions >= 0
            rows = torch.arange(labels.shape[0], device=dev)[:, None].expand_as(labels)
            new_labels[rows[keep], inj.text_positions[keep]] = labels[keep]
            loss = _token_cross_entropy(logits[:, :-1], new_labels[:, 1:])
        return BackboneOutput(loss=loss, logits=logits, hidden_states_last=out.hidden_states[-1],
                              graph_positions=inj.graph_positions, attention_mask=inj.attention_mask)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, graph_tokens: GraphTokens,
                 max_new_tokens: int = 16, attention_mask: torch.Tensor | None = None,
                 num_beams: int = 1) -> list[str]:
        """Greedy (``num_beams=1``) or beam-search answers, one string per question (prompt not included)."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected an int >= 1, found {max_new_tokens!r}")
        inj = self.build_inputs_embeds(input_ids, pixel_values, graph_tokens, attention_mask)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        # With inputs_embeds only, a decoder-only generate returns just the new tokens.
        # The placeholders are input-only tokens: never emit them.
        new = self.model.generate(inputs_embeds=inj.inputs_embeds, attention_mask=inj.attention_mask,
                                  position_ids=inj.position_ids, max_new_tokens=max_new_tokens, do_sample=False,
                                  num_beams=num_beams, pad_token_id=_pad_id(self.tokenizer), eos_token_id=eos,
                                  suppress_tokens=[self.kg_token_id, self.image_token_id])
        return self._decode(new)

    def forward_batch(self, batch: BackboneInputs, graph_tokens: GraphTokens) -> BackboneOutput:
        return self.forward(batch.input_ids, batch.pixel_values, graph_tokens, labels=batch.labels,
                            attention_mask=batch.attention_mask)

    # ----------------------------------------------------------------- pieces for KnowledgeGenerator

    @property
    def eos_token_id(self) -> int | None:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return None if eos is None else int(eos)

    def pixel_values(self, images) -> torch.Tensor:
        return _pixel_values(self.image_processor, images)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def prompt_ids(self, question: str, template: str = "<image>\n{question} <kg> Answer:") -> list[int]:
        """The template filled with ``question``, tokenised, its image placeholder expanded to
        :attr:`num_image_tokens` slots; exactly one ``<kg>``."""
        question = " ".join(question.replace(self.config.kg_token, " ").split())
        text = template.replace("<image>", self.image_token).format(question=question)
        ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        for tid, what in ((self.kg_token_id, self.config.kg_token), (self.image_token_id, self.image_token)):
            if ids.count(tid) != 1:
                raise ValueError(f"prompt template {template!r}: expected exactly one {what!r}, found {ids.count(tid)}")
        at = ids.index(self.image_token_id)
        ids = ids[:at] + [self.image_token_id] * self.num_image_tokens + ids[at + 1:]
        self._check_length(len(ids) - self.num_image_tokens, 0, "prompt")
        return ids

    def answer_ids(self, answer: str, max_tokens: int) -> list[int]:
        ids = list(self.tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"])[:max_tokens]
        eos = self.eos_token_id
        return ids + ([eos] if eos is not None else [])

    def generate_batch(self, batch: BackboneInputs, graph_tokens: GraphTokens,
                       max_new_tokens: int = 16) -> list[str]:
        return self.generate(batch.input_ids, batch.pixel_values, graph_tokens, max_new_tokens=max_new_tokens,
                             attention_mask=batch.attention_mask)


# --------------------------------------------------------------------------- VisionEncoderDecoder


class VisionEncoderDecoderKGBackbone(_KGBackbone):
    """A ``VisionEncoderDecoderModel`` whose decoder cross-attends to image patches + graph nodes.

    The graph tokens must already have the encoder's width (:attr:`encoder_hidden_size`);
    they go through the model's own ``enc_to_dec_proj`` together with the patches.

    Shapes:
        pixel_values: (B, 3, H, W) -> encoder memory (B, P, E).
        graph_tokens.tokens: (B, T, E); memory read by the decoder: (B, P + T, E),
            its mask (B, P + T) is 0 on padded graph tokens.
        decoder_input_ids / labels: (B, L); logits (B, L, V).
    """

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike,
                        config: BackboneConfig | None = None) -> "VisionEncoderDecoderKGBackbone":
        """Load a ``VisionEncoderDecoderModel`` with its tokenizer and image processor from the
        local folder ``path`` (``config``: ``kind="vision_encoder_decoder"``, default built from ``path``)."""
        config = _resolve_config(path, config, "vision_encoder_decoder")
        folder = _check_folder(path)
        tf = _transformers()
        model_type = _read_model_type(folder)
        if model_type != "vision-encoder-decoder":
            hint = " (use kind='llava')" if model_type == "llava" else ""
            raise ValueError(f"{folder / 'config.json'}: expected model_type 'vision-encoder-decoder', "
                             f"found {model_type!r}{hint}")
        model = tf.VisionEncoderDecoderModel.from_pretrained(str(folder), local_files_only=True,
                                                             dtype=resolve_dtype(config.dtype))
        if not getattr(model.decoder.config, "add_cross_attention", False):
            raise ValueError(f"{folder}: expected a decoder with cross-attention (add_cross_attention=True), "
                             f"found {type(model.decoder).__name__} without it")
        processor, tokenizer, image_processor = _load_processor_parts(folder)
        model.eval()
        return cls(model, tokenizer, image_processor, processor, config)

    @property
    def max_positions(self) -> int | None:
        """Positions of the decoder's learned position table (BERT ``max_position_embeddings``,
        GPT-2 ``n_positions``): a longer decoder sequence fails inside the model."""
        cfg = self.model.decoder.config
        for name in ("max_position_embeddings", "n_positions"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    @property
    def encoder_hidden_size(self) -> int:
        """Width E of the encoder's output: the graph tokens' width."""
        return int(self.model.encoder.config.hidden_size)

    @property
    def hidden_size(self) -> int:
        """Width of the decoder's hidden states."""
        return int(self.model.decoder.get_input_embeddings().weight.shape[1])

    @property
    def decoder_start_token_id(self) -> int:
        for value in (self.model.config.decoder_start_token_id, getattr(self.tokenizer, "bos_token_id", None),
                      getattr(self.tokenizer, "cls_token_id", None)):
            if value is not None:
                return int(value)
        raise ValueError(f"{self.config.path}: expected a decoder_start_token_id in config.json "
                         f"(or a BOS/CLS token in the tokenizer), found none")

    def prepare_inputs(self, questions: Sequence[str], images, answers: Sequence[str] | None = None) -> BackboneInputs:
        """Decoder prompts ``[start] + question (+ answer + EOS)``, left-padded, and images.

        A ``<kg>`` placeholder in a question is removed: here the graph enters through the
        cross-attention. With ``answers``, ``labels`` are the next-token targets (HF
        VisionEncoderDecoder convention) with ``-100`` on the question.
        """
        if isinstance(questions, str):
            raise TypeError("questions: expected a list of strings, found a single string")
        _check_batch(images, questions)
        if answers is not None:
            _check_batch(answers, questions, "answers", "questions")
        start = self.decoder_start_token_id
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is None:
            eos = self.model.config.eos_token_id
        rows, label_rows = [], []
        for i, q in enumerate(questions):
            q = " ".join(q.replace(self.config.kg_token, " ").split())
            q_ids = list(self.tokenizer(q, add_special_tokens=False)["input_ids"])
            ids, labels = [start] + q_ids, None
            if answers is not None:
                ans = list(self.tokenizer(" " + answers[i].strip(), add_special_tokens=False)["input_ids"])
                target = ans + ([int(eos)] if eos is not None else [])
                labels = [IGNORE_INDEX] * len(q_ids) + target
                ids = ids + target[:-1]
            self._check_length(len(ids), i, "question")
            rows.append(ids)
            label_rows.append(labels)
        input_ids, attention_mask = _left_pad(rows, _pad_id(self.tokenizer))
        labels = None
        if answers is not None:
            labels, _ = _left_pad(label_rows, IGNORE_INDEX)
        return BackboneInputs(input_ids, attention_mask, _pixel_values(self.image_processor, images), labels)

    def build_encoder_memory(self, pixel_values: torch.Tensor, graph_tokens: GraphTokens):
        """Encoder output with the graph tokens appended, projected to the decoder's width.

        Returns (memory (B, P + T, D_dec), memory_mask (B, P + T) long, graph_positions (B, T)).
        """
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            raise ValueError(f"pixel_values: expected a (B, 3, H, W) tensor, found "
                             f"{_desc(pixel_values)}")
        _check_image_size(pixel_values, self.model.encoder.config, "encoder config")
        b = pixel_values.shape[0]
        tokens, mask = _graph_parts(graph_tokens, b, self.encoder_hidden_size, "encoder_hidden_size")
        patches = self.model.encoder(pixel_values=pixel_values.to(self.device, self.dtype)).last_hidden_state
        p = patches.shape[1]
        memory = torch.cat([patches, tokens.to(patches.dtype)], dim=1)  # (B, P + T, E)
        memory_mask = torch.cat([torch.ones(b, p, dtype=torch.long, device=patches.device),
                                 mask.long().to(patches.device)], dim=1)  # (B, P + T)
        if getattr(self.model, "enc_to_dec_proj", None) is not None and (
                self.model.encoder.config.hidden_size != self.model.decoder.config.hidden_size
                and getattr(self.model.decoder.config, "cross_attention_hidden_size", None) is None):
            memory = self.model.enc_to_dec_proj(memory)
        graph_positions = (p + torch.arange(tokens.shape[1], device=patches.device)).expand(b, -1)
        return memory, memory_mask, graph_positions

    def _decoder_inputs(self, pixel_values, decoder_input_ids, labels, decoder_attention_mask):
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("expected decoder_input_ids or labels, found neither")
            from transformers.models.encoder_decoder.modeling_encoder_decoder import shift_tokens_right
            decoder_input_ids = shift_tokens_right(labels, _pad_id(self.tokenizer), self.decoder_start_token_id)
        if not isinstance(decoder_input_ids, torch.Tensor) or decoder_input_ids.dim() != 2:
            raise ValueError("decoder_input_ids: expected a (B, L) tensor")
        if isinstance(pixel_values, torch.Tensor) and pixel_values.shape[0] != decoder_input_ids.shape[0]:
            raise ValueError(f"expected as many images as questions (one image per question), found "
                             f"{pixel_values.shape[0]} images and {decoder_input_ids.shape[0]} questions")
        if decoder_attention_mask is not None and decoder_attention_mask.shape != decoder_input_ids.shape:
            raise ValueError(f"decoder_attention_mask: expected shape {tuple(decoder_input_ids.shape)}, "
                             f"found {tuple(decoder_attention_mask.shape)}")
        lengths = (decoder_attention_mask != 0).sum(1) if decoder_attention_mask is not None else \
            torch.full((decoder_input_ids.shape[0],), decoder_input_ids.shape[1])
        for row, n in enumerate(lengths.tolist()):
            self._check_length(n, row, "question")
        return decoder_input_ids

    def forward(self, pixel_values: torch.Tensor, graph_tokens: GraphTokens,
                decoder_input_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None) -> BackboneOutput:
        """Decoder logits over ``decoder_input_ids`` while cross-attending to patches + graph.

        Args:
            labels ((B, L) long, optional): next-token targets per decoder position
                (``-100`` for none); without ``decoder_input_ids`` these are ``labels``
                shifted right behind the start token.
        """
        decoder_input_ids = self._decoder_inputs(pixel_values, decoder_input_ids, labels, decoder_attention_mask)
        if labels is not None and labels.shape != decoder_input_ids.shape:
            raise ValueError(f"labels: expected shape {tuple(decoder_input_ids.shape)}, found {tuple(labels.shape)}")
        memory, memory_mask, graph_positions = self.build_encoder_memory(pixel_values, graph_tokens)
        kwargs = {}
        if decoder_attention_mask is not None:
            kwargs = {"attention_mask": decoder_attention_mask, "position_ids": _position_ids(decoder_attention_mask)}
        out = self.model.decoder(input_ids=decoder_input_ids, encoder_hidden_states=memory,
                                 encoder_attention_mask=memory_mask, output_hidden_states=True, use_cache=False,
                                 **kwargs)
        loss = None
        if labels is not None:
            if decoder_attention_mask is not None:
                labels = labels.masked_fill(decoder_attention_mask == 0, IGNORE_INDEX)
            loss = _token_cross_entropy(out.logits, labels.long())
        return BackboneOutput(loss=loss, logits=out.logits, hidden_states_last=out.hidden_states[-1],
                              graph_positions=graph_positions, attention_mask=memory_mask)

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, graph_tokens: GraphTokens,
                 decoder_input_ids: torch.Tensor | None = None, max_new_tokens: int = 16,
                 decoder_attention_mask: torch.Tensor | None = None) -> list[str]:
        """Greedy answers, one string per image (the decoder prompt not included)."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected an int >= 1, found {max_new_tokens!r}")
        if decoder_input_ids is None:
            decoder_input_ids = torch.full((pixel_values.shape[0], 1), self.decoder_start_token_id,
                                           dtype=torch.long, device=pixel_values.device)
        decoder_input_ids = self._decoder_inputs(pixel_values, decoder_input_ids, None, decoder_attention_mask)
        if decoder_attention_mask is None:
            decoder_attention_mask = torch.ones_like(decoder_input_ids)
        memory, memory_mask, _ = self.build_encoder_memory(pixel_values, graph_tokens)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is None:
            eos = self.model.config.eos_token_id
        from transformers import DynamicCache, EncoderDecoderCache

        # A stand-alone decoder's generate starts a self-attention-only cache; decoders with
        # cross-attention (BERT) need the two-part cache, so hand one in.
        dec_cfg = self.model.decoder.config
        cache = EncoderDecoderCache(DynamicCache(config=dec_cfg), DynamicCache(config=dec_cfg))
        seq = self.model.decoder.generate(input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                                          cache=cache,
                                          encoder_hidden_states=memory, encoder_attention_mask=memory_mask,
                                          max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                          pad_token_id=_pad_id(self.tokenizer), eos_token_id=eos)
        return self._decode(seq[:, decoder_input_ids.shape[1]:])

    def forward_batch(self, batch: BackboneInputs, graph_tokens: GraphTokens) -> BackboneOutput:
        return self.forward(batch.pixel_values, graph_tokens, decoder_input_ids=batch.input_ids, labels=batch.labels,
                            decoder_attention_mask=batch.attention_mask)

    def generate_batch(self, batch: BackboneInputs, graph_tokens: GraphTokens,
                       max_new_tokens: int = 16) -> list[str]:
        return self.generate(batch.pixel_values, graph_tokens, decoder_input_ids=batch.input_ids,
                             max_new_tokens=max_new_tokens, decoder_attention_mask=batch.attention_mask)


    # ----------------------------------------------------------------- pieces for KnowledgeGenerator

    @property
    def eos_token_id(self) -> int | None:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is None:
            eos = getattr(self.tokenizer, "sep_token_id", None)
        if eos is None:
            eos = self.model.config.eos_token_id
        return None if eos is None else int(eos)

    @property
    def memory_width(self) -> int:
        """Width E of :meth:`encode_pixels`' output."""
        return self.encoder_hidden_size

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.model.decoder.get_input_embeddings()

    def pixel_values(self, images) -> torch.Tensor:
        """Images -> the (B, 3, H, W) batch the encoder reads."""
        return _pixel_values(self.image_processor, images)

    def prompt_ids(self, question: str) -> list[int]:
        """``[start] + question`` token ids (a ``<kg>`` placeholder is dropped: the graph enters
        through the cross-attention)."""
        q = " ".join(question.replace(self.config.kg_token, " ").split())
        ids = [self.decoder_start_token_id] + list(self.tokenizer(q, add_special_tokens=False)["input_ids"])
        self._check_length(len(ids), 0, "question")
        return ids

    def answer_ids(self, answer: str, max_tokens: int) -> list[int]:
        """Answer token ids + EOS (at most ``max_tokens`` before the EOS)."""
        ids = list(self.tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"])[:max_tokens]
        eos = self.eos_token_id
        return ids + ([eos] if eos is not None else [])

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> encoder states (B, P, E); no gradient when the encoder is frozen."""
        _check_image_size(pixel_values, self.model.encoder.config, "encoder config")
        trainable = any(p.requires_grad for p in self.model.encoder.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            return self.model.encoder(pixel_values=pixel_values.to(self.device, self.dtype)).last_hidden_state

    def project_memory(self, states: torch.Tensor) -> torch.Tensor:
        """Encoder states (B, P, E) -> the decoder's cross-attention width (B, P, D)."""
        proj = getattr(self.model, "enc_to_dec_proj", None)
        if proj is not None and (self.model.encoder.config.hidden_size != self.model.decoder.config.hidden_size
                                 and getattr(self.model.decoder.config, "cross_attention_hidden_size", None) is None):
            return proj(states.to(self.dtype))
        return states

    def decoder_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, memory: torch.Tensor,
                        memory_mask: torch.Tensor, keep: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, K, V), last hidden states (B, K, D)) of the decoder reading ``memory``
        (B, M, D), for the last K = ``keep`` positions (0: all L) — the LM head over the
        vocabulary is the costly part, and only the answer's positions need it."""
        limit = self.max_positions
        if limit is not None and input_ids.shape[1] > limit:
            raise ValueError(f"decoder input: expected at most {limit} tokens (the decoder's position table, "
                             f"max_position_embeddings), found {input_ids.shape[1]}")
        out = self.model.decoder(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                                 position_ids=_position_ids(attention_mask).to(self.device),
                                 encoder_hidden_states=memory.to(self.dtype),
                                 encoder_attention_mask=memory_mask.long().to(self.device),
                                 output_hidden_states=True, use_cache=False, logits_to_keep=keep)
        hidden = out.hidden_states[-1]
        return out.logits, (hidden[:, -keep:] if keep else hidden)


class _ComposedModel(nn.Module):
    """A packaged image encoder + a Hugging Face decoder with cross-attention."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.config = decoder.config

    def save_pretrained(self, path: str) -> None:
        raise NotImplementedError("a composed encoder-decoder is rebuilt from its parts; save the decoder folder")


class _EfficientNetImages:
    """Image processor of the packaged encoder: whole image resized, ImageNet-normalised."""

    def __init__(self, size: int) -> None:
        self.config = EfficientNetLiteConfig(num_classes=0, image_size=size)

    def __call__(self, images, return_tensors: str = "pt"):
        return {"pixel_values": preprocess_images(list(images), self.config, center_crop=False)}


class ComposedEncoderDecoderKGBackbone(VisionEncoderDecoderKGBackbone):
    """The VisionEncoderDecoder architecture from parts: a packaged pretrained image encoder
    (EfficientNet-lite0, ImageNet weights) and a BERT/GPT-2 folder loaded as a decoder with
    cross-attention (``is_decoder=True, add_cross_attention=True``).

    The encoder's feature map ``(B, 1280, S/32, S/32)`` becomes ``S/32 * S/32`` memory slots
    of width 1280; :class:`KnowledgeGenerator` projects them to the decoder's width (a new,
    trained layer), appends the graph tokens and lets the decoder cross-attend to both.
    A BERT checkpoint has no cross-attention nor LM-head transform: name them in
    ``BackboneConfig.train`` (``["crossattention", "cls.predictions"]``) so that they train.
    """

    @classmethod
    def from_config(cls, config: BackboneConfig) -> "ComposedEncoderDecoderKGBackbone":
        if not config.composed:
            raise ValueError("ComposedEncoderDecoderKGBackbone: expected a config with encoder and decoder")
        folder = _check_folder(config.decoder_folder)
        tf = _transformers()
        encoder = load_efficientnet_lite0(classifier=False)
        dec_cfg = tf.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        dec_cfg.is_decoder = True
        dec_cfg.add_cross_attention = True
        try:
            decoder = tf.AutoModelForCausalLM.from_pretrained(str(folder), config=dec_cfg, local_files_only=True,
                                                              dtype=resolve_dtype(config.dtype))
        except ValueError as exc:
            raise ValueError(f"{folder}: expected a decoder AutoModelForCausalLM can load (BERT, GPT-2, ...), "
                             f"found model_type {dec_cfg.model_type!r}: {exc}") from exc
        try:
            tokenizer = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"{folder}: expected a tokenizer, could not load one: {exc}") from exc
        model = _ComposedModel(encoder.to(resolve_dtype(config.dtype) or torch.float32), decoder)
        model.eval()
        return cls(model, tokenizer, _EfficientNetImages(config.image_size), None, config)

    @property
    def encoder_hidden_size(self) -> int:
        return int(self.model.encoder.config.head_channels)

    @property
    def hidden_size(self) -> int:
        return int(self.model.decoder.get_input_embeddings().weight.shape[1])

    @property
    def decoder_start_token_id(self) -> int:
        for value in (getattr(self.tokenizer, "cls_token_id", None), getattr(self.tokenizer, "bos_token_id", None),
                      self.model.decoder.config.bos_token_id):
            if value is not None:
                return int(value)
        raise ValueError(f"{self.config.decoder}: expected a CLS or BOS token in the tokenizer, found neither")

    @property
    def eos_token_id(self) -> int | None:
        for value in (getattr(self.tokenizer, "sep_token_id", None), getattr(self.tokenizer, "eos_token_id", None)):
            if value is not None:
                return int(value)
        return None

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.model.decoder.get_input_embeddings()

    def pixel_values(self, images) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            return images
        return self.image_processor(images)["pixel_values"]

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, S/32 * S/32, 1280) feature-map cells, row-major."""
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            raise ValueError(f"pixel_values: expected a (B, 3, H, W) tensor, found {_desc(pixel_values)}")
        trainable = any(p.requires_grad for p in self.model.encoder.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            fmap = self.model.encoder.forward_features(pixel_values.to(self.device, self.dtype))  # (B, C, h, w)
        return fmap.flatten(2).transpose(1, 2)  # (B, h * w, C)

    def project_memory(self, states: torch.Tensor) -> torch.Tensor:
        raise ValueError("a composed encoder-decoder has no projection of its own; KnowledgeGenerator adds one")

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        raise ValueError("a composed encoder-decoder is rebuilt from its packaged encoder and decoder folder")


# --------------------------------------------------------------------------- factory


def load_backbone(config: BackboneConfig) -> LlavaKGBackbone | VisionEncoderDecoderKGBackbone:
    """Load the backbone ``config.kind`` names (registry :data:`BACKBONES`)."""
    if not isinstance(config, BackboneConfig):
        raise TypeError(f"load_backbone: expected a BackboneConfig, found {type(config).__name__}")
    return BACKBONES.get(config.kind).from_config(config)


def resolve_dtype(name: str) -> torch.dtype | None:
    """``"float32"`` / ``"bfloat16"`` / ``"float16"`` / ``"auto"`` -> a torch dtype.

    ``"auto"``: bfloat16 on a GPU that supports it, float16 on another GPU, float32 on a CPU.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"dtype: expected one of {sorted(table) + ['auto']}, found {name!r}")
    return table[name]


# --------------------------------------------------------------------------- the generative model

FORMAT = "ravlm-generative"
FORMAT_VERSION = 1


@dataclass
class GenBatch:
    """A collated batch for :class:`KnowledgeGenerator` (see ``processing.collate_generative``).

    Shapes:
        input_ids: (B, L) long, left-padded prompt (+ answer + EOS when training).
        attention_mask: (B, L) long.
        labels: (B, L) long aligned with ``input_ids`` (``-100`` on the prompt and padding), or None.
        pixel_values: (B, 3, H, W) or None when ``image_states`` are given.
        image_states: (B, P, E) precomputed frozen-encoder states, or None.
        graph: a PyG ``Batch`` of subgraphs (``x``, ``edge_index``, ``edge_type``, ``origin``,
            ``node_relevance``, ``box``), or None without the KG.
        name_ids: (N, K) long: the first K word pieces of each node's name, -1 padded.
        node_names: per question, its subgraph's node names.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None
    pixel_values: torch.Tensor | None = None
    image_states: torch.Tensor | None = None
    graph: Any = None
    name_ids: torch.Tensor | None = None
    node_names: list = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class GenerativeOutput:
    """Output of :meth:`KnowledgeGenerator.forward`.

    Shapes:
        loss: () mean token negative log-likelihood of the answer tokens, or None without labels.
        log_probs: (B, K, V) log-probabilities of the next token at the last K positions: from
            the one before the first answer token (with labels; encoder-decoders), the last one
            (without labels; encoder-decoders), every position (LLaVA, over its injected sequence).
        copy_prob: (B, K) probability that each next token is copied from a node name (0 without copying).
        graph_tokens: the :class:`GraphTokens` read by the decoder (None without the KG).
    """

    loss: torch.Tensor | None
    log_probs: torch.Tensor
    copy_prob: torch.Tensor
    graph_tokens: GraphTokens | None = None


class KnowledgeGenerator(nn.Module):
    """A vision-language backbone answering in free text, reading the retrieved subgraph.

    Parts (the trained ones first):

    * a GNN (:class:`~ravlm_graph.nn.gnn.GraphEncoder`) over the subgraph, plus the entity
      boxes of the image's objects;
    * a graph-token projector (:class:`~ravlm_graph.nn.fusion.graph_tokens.GraphTokenProjector`)
      to the backbone's width: LLaVA reads the tokens at ``<kg>``; an encoder-decoder reads
      them appended to its encoder memory;
    * for encoder-decoders, a copy head (pointer-generator at the word-piece level, See et al.
      2017, https://arxiv.org/abs/1704.04368): the word pieces of the top ``copy_nodes`` node
      names join the memory, and each next token mixes the LM's distribution with attention
      over those pieces — so the decoder can spell a concept it never produced in training;
    * the backbone, frozen except the ``train`` patterns of its config (and LoRA when set).

    Shapes:
        see :class:`GenBatch` and :class:`GenerativeOutput`.
    """

    def __init__(self, config: GenerativeVQAConfig, backbone: _KGBackbone | None = None) -> None:
        super().__init__()
        if not isinstance(config, GenerativeVQAConfig):
            raise TypeError(f"KnowledgeGenerator: expected a GenerativeVQAConfig, found {type(config).__name__}")
        self.config = config
        self.backbone = backbone if backbone is not None else load_backbone(config.backbone)
        if not config.backbone_hash:
            # A new model: its checkpoint names the backbone folder absolutely, so that the engine
            # loads from any working folder (a recipe's relative path is read from the current one).
            key = "decoder" if config.backbone.composed else "path"
            folder = getattr(config.backbone, key)
            if folder and folder not in PACKAGED_DECODERS and not os.path.isabs(folder):
                config.backbone = BackboneConfig.from_dict({**config.backbone.to_dict(), key: os.path.abspath(folder)})
            config.backbone_hash = backbone_fingerprint(config.backbone)
        d = self.backbone.hidden_size
        self.is_llava = config.backbone.kind == "llava"
        if config.node_features == "word_embeddings":
            config.node_dim = int(self.backbone.word_embeddings.weight.shape[1])
        self.gnn = self.box_proj = self.token_proj = None
        if config.use_graph:
            gcfg = GNNConfig.from_dict({"in_dim": config.node_dim, "num_relations": config.num_relations,
                                        **config.gnn})
            self.gnn = GraphEncoder(gcfg)
            h = gcfg.hidden_dim
            self.box_proj = nn.Linear(5, h)
            self.token_proj = GraphTokenProjector(h, d, num_tokens=config.num_graph_tokens)
        self.seed_rel = self.seed_box = self.seed_origin = None
        if config.use_graph and config.seed_links:
            self.seed_rel = nn.Embedding(2 * config.num_relations, h)  # relations, then walked backwards
            self.seed_box = nn.Linear(5, h)
            self.seed_origin = nn.Embedding(len(ORIGIN_CODES), h)
        self.name_proj = self.piece_pos = self.copy_query = self.copy_key = self.copy_gate = None
        if config.copies:
            self.name_proj = GraphTokenProjector(h, d, num_tokens=config.copy_nodes)
            self.piece_pos = nn.Embedding(config.name_pieces, d)
            self.copy_query = nn.Linear(d, d)
            self.copy_key = nn.Linear(d, d)
            self.copy_gate = nn.Linear(d, 1)
        self.image_proj = self.image_pos = None
        if isinstance(self.backbone, ComposedEncoderDecoderKGBackbone):
            self.image_proj = nn.Sequential(nn.LayerNorm(self.backbone.memory_width),
                                            nn.Linear(self.backbone.memory_width, d))
            self.image_pos = nn.Parameter(torch.zeros(64, d))
        if config.backbone.lora:
            self._add_lora(config.backbone.lora)

    # ----------------------------------------------------------------- parts

    def _add_lora(self, spec: Mapping[str, Any]) -> None:
        try:
            import peft
        except ImportError as exc:
            raise ImportError("LoRA needs the 'peft' package: pip install 'ravlm-graph[lora]'") from exc
        targets = spec.get("target_modules") or ["q_proj", "v_proj", "query", "value", "c_attn"]
        names = {n.rsplit(".", 1)[-1] for n, _ in self.backbone.model.named_modules()}
        targets = [t for t in targets if t in names]
        if not targets:
            raise ValueError(f"backbone.lora.target_modules: none of {spec.get('target_modules')} names a module of "
                             f"{type(self.backbone.model).__name__}")
        lcfg = peft.LoraConfig(r=int(spec.get("r", 8)), lora_alpha=int(spec.get("alpha", 16)),
                               lora_dropout=float(spec.get("dropout", 0.05)), target_modules=targets)
        # inject_adapter_in_model keeps the module tree (and its parameter names) as it is.
        self.backbone.model = peft.inject_adapter_in_model(lcfg, self.backbone.model)
        for name, p in self.backbone.model.named_parameters():
            if "lora_" in name:
                # Adapters on a half-precision backbone are kept in float32 (as peft's
                # get_peft_model does; its layers cast their input): AdamW's updates of float16
                # weights overflow to NaN within a step or two.
                if p.dtype in (torch.float16, torch.bfloat16):
                    p.data = p.data.float()
                p.requires_grad_(True)

    def freeze_backbone(self) -> None:
        """Frozen-backbone mode (the default of every HF backbone config): nothing more to do."""
        self.backbone.apply_training_mode()
        for name, p in self.backbone.model.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)

    def _trained_keys(self) -> list[str]:
        trained = {f"backbone.model.{n}" for n, p in self.backbone.model.named_parameters() if p.requires_grad}
        return [k for k in super().state_dict() if not k.startswith("backbone.") or k in trained]

    def state_dict(self, *args, **kwargs):  # noqa: D401 - the trained parts only
        """The trained parts only (the backbone's frozen weights stay in its folder)."""
        full = super().state_dict(*args, **kwargs)
        keep = set(self._trained_keys())
        prefix = kwargs.get("prefix", "")
        return type(full)((k, v) for k, v in full.items() if k[len(prefix):] in keep)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        keep = set(self._trained_keys())
        if strict:
            missing, unexpected = sorted(keep - set(state_dict)), sorted(set(state_dict) - keep)
            if missing or unexpected:
                raise CheckpointError(f"trained parts do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    @property
    def tokenizer(self):
        return self.backbone.tokenizer

    @property
    def device(self) -> torch.device:
        return next(p for p in self.parameters()).device

    # ----------------------------------------------------------------- save / load

    def save_pretrained(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """``config.json`` (with the backbone's path and config hash) + ``model.safetensors``
        holding only the trained parts."""
        state = self.state_dict()
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        return write_checkpoint(path, self.config.to_dict(), state, format_name=FORMAT, format_version=FORMAT_VERSION)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, backbone_path: str | None = None) -> "KnowledgeGenerator":
        """Load a checkpoint; the backbone is read from the folder its config names (or
        ``backbone_path``), and must have the same ``config.json`` hash as at training time."""
        cfg = read_config(path, FORMAT, FORMAT_VERSION)
        where = Path(path) / "config.json"
        try:
            config = GenerativeVQAConfig.from_dict({k: v for k, v in cfg.items()
                                                    if k not in ("format", "format_version")})
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: {e}") from e
        if backbone_path is not None:
            key = "decoder" if config.backbone.composed else "path"
            config.backbone = BackboneConfig.from_dict({**config.backbone.to_dict(), key: str(backbone_path)})
        try:
            found = backbone_fingerprint(config.backbone)
        except FileNotFoundError as e:
            key = "decoder" if config.backbone.composed else "path"
            raise CheckpointError(f"{where}: backbone.{key} names the model folder this engine was trained on, "
                                  f"{getattr(config.backbone, key)!r}, and it is not there ({e}); put the model "
                                  f"back there, or point backbone.{key} in that config.json to its new folder "
                                  f"(its config.json must be the same)") from e
        if found != config.backbone_hash:
            raise CheckpointError(f"{where}: trained on a backbone whose config.json hashed to "
                                  f"{config.backbone_hash[:12]}..., found {found[:12]}... in "
                                  f"{config.backbone.config_file} (another model in that folder?)")
        model = cls(config)
        read_weights(path, model)
        model.eval()
        return model

    @classmethod
    def is_checkpoint(cls, path: str | os.PathLike) -> bool:
        """Whether ``path`` holds a checkpoint of this class (by its config's ``format``)."""
        cp = Path(path) / "config.json"
        try:
            return json.loads(cp.read_text(encoding="utf-8")).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            return False

    # ----------------------------------------------------------------- forward

    def _graph(self, batch: GenBatch):
        """(GraphTokens for the decoder, name memory (B, T*K, D), its mask, its token ids) or Nones."""
        b = len(batch)
        if not self.config.use_graph:
            return None, None, None, None
        g = batch.graph
        dev = self.device
        g = g.to(dev)
        enc = self.gnn(g, num_graphs=b)
        states = enc.node_states + self.box_proj(g.box.float())  # (N, H)
        if self.seed_rel is not None:
            states = states + self._seed_links(g)
        tokens = self.token_proj(states, g.batch, g.node_relevance, g.origin, num_graphs=b)
        if not self.config.copies:
            return tokens, None, None, None
        names = self.name_proj(states, g.batch, g.node_relevance, g.origin, num_graphs=b)  # T' nodes
        k = self.config.name_pieces
        t2 = names.node_index.shape[1]
        nid = batch.name_ids.to(dev)  # (N, K)
        if nid.shape[0] == 0:
            nid = torch.full((1, k), -1, dtype=torch.long, device=dev)
        pieces = nid[names.node_index.clamp(min=0)]  # (B, T', K)
        pieces = pieces.masked_fill(~names.mask.unsqueeze(-1), -1)
        piece_mask = pieces >= 0  # (B, T', K)
        emb = self.backbone.word_embeddings(pieces.clamp(min=0)).float()  # (B, T', K, D)
        mem = emb + self.piece_pos.weight[None, None] + names.tokens.unsqueeze(2)  # (B, T', K, D)
        mem = mem * piece_mask.unsqueeze(-1)
        return tokens, mem.reshape(b, t2 * k, -1), piece_mask.reshape(b, t2 * k), pieces.reshape(b, t2 * k)

    def _seed_links(self, g) -> torch.Tensor:
        """(N, H): for each node, the mean over its edges to a seed (``origin > 0``) of the
        relation's embedding (reverse direction: its own ids) + the seed's box and origin."""
        src, dst = g.edge_index  # (E,), (E,)
        seed = g.origin > 0  # (N,)
        r = self.config.num_relations
        n, h = g.origin.shape[0], self.seed_rel.embedding_dim
        out = torch.zeros(n, h, device=g.origin.device)
        count = torch.zeros(n, device=g.origin.device)
        for node, other, rel in ((dst, src, g.edge_type), (src, dst, g.edge_type + r)):
            keep = seed[other] & (node != other)  # edges whose other end is a seed
            if bool(keep.any()):
                o = other[keep]
                msg = self.seed_rel(rel[keep]) + self.seed_box(g.box[o].float()) + self.seed_origin(g.origin[o])
                out.index_add_(0, node[keep], msg)  # (N, H)
                count.index_add_(0, node[keep], torch.ones_like(o, dtype=count.dtype))
        return out / count.clamp(min=1).unsqueeze(-1)

    def _image_memory(self, batch: GenBatch) -> torch.Tensor:
        states = batch.image_states
        if states is None:
            if batch.pixel_values is None:
                raise ValueError("GenBatch: expected pixel_values or image_states, found neither")
            states = self.backbone.encode_pixels(batch.pixel_values)
        states = states.to(self.device)
        if self.image_proj is not None:
            mem = self.image_proj(states.float())  # (B, P, D)
            p = mem.shape[1]
            if p > self.image_pos.shape[0]:
                raise ValueError(f"image memory: expected at most {self.image_pos.shape[0]} cells, found {p}")
            return mem + self.image_pos[:p]
        return self.backbone.project_memory(states.to(self.backbone.dtype)).float()

    def forward(self, batch: GenBatch, memory: tuple | None = None) -> GenerativeOutput:
        """Next-token log-probabilities over ``batch.input_ids``; the loss on ``batch.labels``.

        ``memory``: the encoder-decoder memory from :meth:`encoder_memory` when already
        computed (decoding steps reuse it)."""
        if self.is_llava:
            return self._forward_llava(batch, self._graph(batch)[0])
        if memory is None:
            memory = self.encoder_memory(batch)
        memory, memory_mask, names, names_mask, names_ids, tokens = memory
        return self._decode(batch, memory, memory_mask, names, names_mask, names_ids, tokens)

    def encoder_memory(self, batch: GenBatch) -> tuple:
        """(memory (B, P + T + T'K, D), its mask, name pieces (B, T'K, D) or None, their mask,
        their token ids, graph tokens) of an encoder-decoder backbone (memory (B, P + T, D)
        when ``config.names_in_memory`` is False: the name pieces feed the copy head only)."""
        tokens, names, names_mask, names_ids = self._graph(batch)
        img = self._image_memory(batch)  # (B, P, D)
        b, p = img.shape[:2]
        parts, masks = [img], [torch.ones(b, p, dtype=torch.bool, device=img.device)]
        if tokens is not None:
            parts.append(tokens.tokens)
            masks.append(tokens.mask)
        if names is not None and self.config.names_in_memory:
            parts.append(names)
            masks.append(names_mask)
        memory = torch.cat(parts, 1)  # (B, P + T + T'K, D)
        memory_mask = torch.cat(masks, 1)
        return memory, memory_mask, names, names_mask, names_ids, tokens

    def _decode(self, batch, memory, memory_mask, names, names_mask, names_ids, tokens) -> GenerativeOutput:
        length = batch.input_ids.shape[1]
        keep = 1  # generation: the next token only
        if batch.labels is not None:
            labelled = (batch.labels != IGNORE_INDEX).any(0).nonzero()
            if not len(labelled):
                raise ValueError("labels: expected at least one answer token (a label != -100), found none")
            keep = length - int(labelled[0]) + 1  # from the position before the first answer token
        logits, hidden = self.backbone.decoder_forward(batch.input_ids, batch.attention_mask, memory, memory_mask,
                                                       keep=keep)
        logits, hidden = logits.float(), hidden.float()
        log_probs = torch.log_softmax(logits, -1)  # (B, L, V)
        copy_prob = torch.zeros(log_probs.shape[:2], device=log_probs.device)
        if names is not None:
            q = self.copy_query(hidden)  # (B, L, D)
            k = self.copy_key(names)  # (B, M, D)
            scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, L, M)
            scores = scores.masked_fill(~names_mask.unsqueeze(1), float("-inf"))
            has = names_mask.any(1)  # (B,)
            attn = torch.softmax(scores.masked_fill(~has[:, None, None], 0.0), -1)  # (B, L, M)
            gate = torch.sigmoid(self.copy_gate(hidden)).squeeze(-1) * has[:, None]  # (B, L)
            copy = torch.zeros_like(log_probs).scatter_add_(
                2, names_ids.clamp(min=0).unsqueeze(1).expand(-1, attn.shape[1], -1),
                attn * names_mask.unsqueeze(1))  # (B, L, V)
            probs = (1 - gate).unsqueeze(-1) * log_probs.exp() + gate.unsqueeze(-1) * copy
            log_probs = torch.log(probs.clamp_min(1e-12))
            copy_prob = gate
        loss = None
        if batch.labels is not None:
            labels = batch.labels.to(log_probs.device)[:, length - keep + 1:]  # (B, K - 1) next tokens
            lp = log_probs[:, :-1]
            keep = labels != IGNORE_INDEX
            if not bool(keep.any()):
                raise ValueError("labels: expected at least one answer token (a label != -100), found none")
            nll = -lp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, L - 1)
            loss = nll[keep].mean()
        return GenerativeOutput(loss=loss, log_probs=log_probs, copy_prob=copy_prob, graph_tokens=tokens)

    def _llava_tokens(self, tokens: GraphTokens | None, b: int) -> GraphTokens:
        if tokens is not None:
            return GraphTokens(tokens.tokens.to(self.backbone.dtype), tokens.mask, tokens.node_index)
        dev = self.backbone.device
        return GraphTokens(torch.zeros(b, 1, self.backbone.hidden_size, device=dev, dtype=self.backbone.dtype),
                           torch.zeros(b, 1, dtype=torch.bool, device=dev),
                           torch.full((b, 1), -1, dtype=torch.long, device=dev))

    def _forward_llava(self, batch: GenBatch, tokens: GraphTokens | None) -> GenerativeOutput:
        b = len(batch)
        out = self.backbone.forward(batch.input_ids, batch.pixel_values, self._llava_tokens(tokens, b),
                                    labels=batch.labels, attention_mask=batch.attention_mask)
        log_probs = torch.log_softmax(out.logits.float(), -1)
        return GenerativeOutput(loss=out.loss, log_probs=log_probs,
                                copy_prob=torch.zeros(log_probs.shape[:2], device=log_probs.device),
                                graph_tokens=tokens)

    # ----------------------------------------------------------------- generation

    @torch.no_grad()
    def generate(self, batch: GenBatch, max_new_tokens: int | None = None,
                 num_beams: int | None = None, details: bool = False) -> list:
        """Answers for a batch of prompts (no labels): greedy or beam search.

        Args:
            max_new_tokens (int | None): default ``config.max_new_tokens``.
            num_beams (int | None): 1 greedy; default ``config.num_beams``.
            details (bool): return dicts ``{"text", "score", "copy_prob"}`` (``score``: the
                answer's probability; ``copy_prob``: mean probability that its tokens were
                copied from node names) instead of strings. LLaVA gives no score (None).
        """
        n_new = self.config.max_new_tokens if max_new_tokens is None else max_new_tokens
        beams = self.config.num_beams if num_beams is None else num_beams
        for name, v in (("max_new_tokens", n_new), ("num_beams", beams)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, found {v!r}")
        # The last step reads the prompt and all but the last new token: it must fit the model's
        # positions (an encoder-decoder's position table fails beyond them; a LLaVA language model
        # would run past its context, or for a very long time).
        limit = self.backbone.max_positions
        prompt = int(batch.input_ids.shape[1])
        if self.is_llava:  # the <kg> placeholder becomes the graph tokens
            prompt += (self.config.num_graph_tokens if self.config.use_graph else 1) - 1
        if limit is not None and prompt + n_new - 1 > limit:
            what = "language model's context" if self.is_llava else "decoder's position table"
            raise ValueError(f"max_new_tokens: expected at most {max(0, limit - prompt + 1)} for this question "
                             f"({prompt} tokens; the {what} has {limit}), found {n_new}")
        if self.is_llava:
            tokens, *_ = self._graph(batch)
            texts = self.backbone.generate(batch.input_ids, batch.pixel_values, self._llava_tokens(tokens, len(batch)),
                                           max_new_tokens=n_new, attention_mask=batch.attention_mask,
                                           num_beams=beams)
            return [{"text": t, "score": None, "copy_prob": 0.0} for t in texts] if details else texts
        out = self._beam_search(batch, n_new, beams)
        return out if details else [o["text"] for o in out]

    def _beam_search(self, batch: GenBatch, n_new: int, beams: int) -> list[dict]:
        """Beam search over the (copy-mixed) next-token distribution; beams=1 is greedy.

        Every step reruns the decoder over the whole prefix (answers are a few tokens).
        """
        b = len(batch)
        eos = self.backbone.eos_token_id
        rep = lambda t: None if t is None else t.repeat_interleave(beams, 0)  # noqa: E731
        # The memory (image, GNN, graph tokens, name pieces) is computed once, then repeated per beam.
        mem = self.encoder_memory(batch)
        mem = tuple(rep(t) if isinstance(t, torch.Tensor) else t for t in mem)
        ids, mask = rep(batch.input_ids.to(self.device)), rep(batch.attention_mask.to(self.device))
        score = torch.zeros(b, beams, device=self.device)
        score[:, 1:] = float("-inf")  # all beams start identical: keep one
        done = torch.zeros(b * beams, dtype=torch.bool, device=self.device)
        new = torch.zeros(b * beams, 0, dtype=torch.long, device=self.device)
        copied = torch.zeros(b * beams, 0, device=self.device)
        pad = _pad_id(self.backbone.tokenizer)
        for _ in range(n_new):
            fo = self.forward(GenBatch(input_ids=ids, attention_mask=mask), memory=mem)
            lp, gate = fo.log_probs[:, -1], fo.copy_prob[:, -1]  # (B * beams, V), (B * beams,)
            v = lp.shape[-1]
            lp = torch.where(done[:, None], torch.full_like(lp, float("-inf")), lp)
            if eos is not None:
                lp[done, eos] = 0.0  # a finished beam only extends with EOS, at no cost
            total = (score.reshape(-1, 1) + lp).reshape(b, beams * v)
            top, idx = total.topk(beams, dim=-1)  # (B, beams)
            src = (idx // v) + torch.arange(b, device=self.device)[:, None] * beams  # (B, beams)
            tok = (idx % v).reshape(-1)
            src = src.reshape(-1)
            ids, mask, new, done, gate = ids[src], mask[src], new[src], done[src], gate[src]
            copied = torch.cat([copied[src], gate.masked_fill(done, float("nan"))[:, None]], 1)
            tok = torch.where(done, torch.full_like(tok, pad), tok)
            ids = torch.cat([ids, tok[:, None]], 1)
            mask = torch.cat([mask, (~done).long()[:, None]], 1)
            new = torch.cat([new, tok[:, None]], 1)
            score = top
            if eos is not None:
                done = done | (tok == eos)
            if bool(done.all()):
                break
        best = new.reshape(b, beams, -1)[:, 0]  # beams are sorted by score
        gates = copied.reshape(b, beams, -1)[:, 0]
        out = []
        for i, row in enumerate(best.tolist()):
            n = row.index(eos) if eos is not None and eos in row else len(row)
            g = gates[i, :n]
            text = self.backbone.tokenizer.decode([t for t in row[:n] if t != pad], skip_special_tokens=True).strip()
            out.append({"text": text, "score": float(score[i, 0].exp()),
                        "copy_prob": float(g.mean()) if n else 0.0})
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(backbone={self.backbone!r}, use_graph={self.config.use_graph}, "
                f"copies={self.config.copies})")
