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

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("ravlm_graph.backbones needs torch: pip install 'ravlm-graph[model]'") from exc

from ravlm_graph.nn.fusion.base import GraphTokens
from ravlm_graph.nn.fusion.graph_tokens import inject_graph_tokens
from ravlm_graph.utils.config import Config

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

BACKBONE_KINDS: tuple[str, ...] = ("llava", "vision_encoder_decoder")
IGNORE_INDEX = -100


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BackboneConfig(Config):
    """Which Hugging Face backbone to load and how to use it.

    Args:
        kind (str): ``"llava"`` (vision tower + projector + causal LM) or
            ``"vision_encoder_decoder"`` (ViT + GPT-2/BERT decoder) (default ``"llava"``).
        path (str): local folder holding the model's ``config.json``, weights, tokenizer
            and image processor (required; never a hub id).
        kg_token (str): the placeholder the graph tokens replace (default ``"<kg>"``);
            added to the tokenizer as a special token when absent.
        freeze (bool): frozen-backbone mode: every backbone parameter gets
            ``requires_grad=False``, so only the graph projector/adapters train (default True).
        max_length (int): longest prompt (+ answer) in text tokens, not counting the image
            placeholder expansion nor the graph tokens (default 512).
    """

    kind: str = "llava"
    path: str = ""
    kg_token: str = "<kg>"
    freeze: bool = True
    max_length: int = 512

    def __post_init__(self) -> None:
        o = "BackboneConfig"
        if self.kind not in BACKBONE_KINDS:
            raise ValueError(f"{o}.kind: expected one of {list(BACKBONE_KINDS)}, found {self.kind!r}")
        if isinstance(self.path, os.PathLike):
            object.__setattr__(self, "path", os.fspath(self.path))
        if not isinstance(self.path, str) or not self.path.strip():
            raise ValueError(f"{o}.path: expected a local model folder, found {self.path!r}")
        if not isinstance(self.kg_token, str) or not self.kg_token or any(c.isspace() for c in self.kg_token):
            raise ValueError(f"{o}.kg_token: expected a non-empty string without whitespace, found {self.kg_token!r}")
        if not isinstance(self.freeze, bool):
            raise ValueError(f"{o}.freeze: expected a bool, found {self.freeze!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1:
            raise ValueError(f"{o}.max_length: expected an int >= 1, found {self.max_length!r}")



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
        if config.freeze:
            for p in self.model.parameters():
                p.requires_grad_(False)

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

    def _check_length(self, n: int, index: int, what: str) -> None:
        if n > self.config.max_length:
            raise ValueError(f"{what} {index}: expected at most max_length={self.config.max_length} tokens, found {n}")

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
            model = tf.AutoModelForImageTextToText.from_pretrained(str(folder), local_files_only=True)
        except ValueError as exc:
            raise ValueError(f"{folder}: expected a model AutoModelForImageTextToText can load, "
                             f"found model_type {model_type!r}: {exc}") from exc
        for method in ("get_image_features", "get_input_embeddings"):
            if not hasattr(model, method):
                raise ValueError(f"{folder}: expected a LLaVA-style model with {method}(), "
                                 f"found {type(model).__name__}")
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
                 max_new_tokens: int = 16, attention_mask: torch.Tensor | None = None) -> list[str]:
        """Greedy answers, one string per question (prompt not included)."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected an int >= 1, found {max_new_tokens!r}")
        inj = self.build_inputs_embeds(input_ids, pixel_values, graph_tokens, attention_mask)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        # With inputs_embeds only, a decoder-only generate returns just the new tokens.
        # The placeholders are input-only tokens: never emit them.
        new = self.model.generate(inputs_embeds=inj.inputs_embeds, attention_mask=inj.attention_mask,
                                  position_ids=inj.position_ids, max_new_tokens=max_new_tokens, do_sample=False,
                                  num_beams=1, pad_token_id=_pad_id(self.tokenizer), eos_token_id=eos,
                                  suppress_tokens=[self.kg_token_id, self.image_token_id])
        return self._decode(new)

    def forward_batch(self, batch: BackboneInputs, graph_tokens: GraphTokens) -> BackboneOutput:
        return self.forward(batch.input_ids, batch.pixel_values, graph_tokens, labels=batch.labels,
                            attention_mask=batch.attention_mask)

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
        model = tf.VisionEncoderDecoderModel.from_pretrained(str(folder), local_files_only=True)
        if not getattr(model.decoder.config, "add_cross_attention", False):
            raise ValueError(f"{folder}: expected a decoder with cross-attention (add_cross_attention=True), "
                             f"found {type(model.decoder).__name__} without it")
        processor, tokenizer, image_processor = _load_processor_parts(folder)
        model.eval()
        return cls(model, tokenizer, image_processor, processor, config)

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


# --------------------------------------------------------------------------- factory


def load_backbone(config: BackboneConfig) -> LlavaKGBackbone | VisionEncoderDecoderKGBackbone:
    """Load the backbone ``config.kind`` names from ``config.path``."""
    if not isinstance(config, BackboneConfig):
        raise TypeError(f"load_backbone: expected a BackboneConfig, found {type(config).__name__}")
    cls = LlavaKGBackbone if config.kind == "llava" else VisionEncoderDecoderKGBackbone
    return cls.from_pretrained(config.path, config)
