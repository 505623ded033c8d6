"""A BERT encoder and its WordPiece tokenizer without ``transformers``: the packaged
all-MiniLM-L6-v2 loads in milliseconds instead of the seconds ``from transformers import
BertModel`` costs at start-up (it pulls in ``torch.distributed``, ``torch._dynamo`` and
``scipy.optimize``).

:class:`BertEncoder` has the parameter names of ``transformers.BertModel`` (without the
pooler), so the same ``model.safetensors`` loads with strict key checks, and computes the
same ``last_hidden_state`` (``tests/retrieval/test_text_model.py`` compares both).
:class:`WordPieceTokenizer` wraps the ``tokenizers`` library's reading of the folder's
``tokenizer.json`` (what ``BertTokenizerFast`` uses) with the few calls the project makes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ravlm_graph.utils.checkpoint import skip_init

__all__ = ["BertConfig", "BertEncoder", "WordPieceTokenizer", "load_bert"]


@dataclass
class BertConfig:
    """The fields of a BERT ``config.json`` the encoder reads (others are ignored)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0
    initializer_range: float = 0.02
    hidden_act: str = "gelu"
    position_embedding_type: str = "absolute"
    model_type: str = "bert"

    @classmethod
    def from_file(cls, path: str | Path) -> "BertConfig":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        config = cls(**known)
        if config.model_type != "bert" or config.hidden_act != "gelu" or config.position_embedding_type != "absolute":
            raise ValueError(f"{path}: expected a BERT model (model_type 'bert', gelu, absolute positions), found "
                             f"{config.model_type!r}, {config.hidden_act!r}, {config.position_embedding_type!r}")
        return config


@dataclass
class BertOutput:
    """``last_hidden_state`` (B, L, D)."""

    last_hidden_state: torch.Tensor


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, inputs_embeds: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        L = inputs_embeds.shape[1]
        pos = torch.arange(L, device=inputs_embeds.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        h = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(pos)  # (B, L, D)
        return self.dropout(self.LayerNorm(h))


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout_p = c.attention_probs_dropout_prob

    def forward(self, h: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        B, L, D = h.shape
        split = lambda t: t.view(B, L, self.heads, D // self.heads).transpose(1, 2)  # noqa: E731  (B, h, L, d)
        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=self.dropout_p if self.training else 0.0)  # (B, h, L, d)
        return out.transpose(1, 2).reshape(B, L, D)


class _DenseNorm(nn.Module):
    """``LayerNorm(dropout(dense(x)) + residual)`` (BERT's ``*Output`` blocks)."""

    def __init__(self, c: BertConfig, in_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c, c.hidden_size)

    def forward(self, h: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(h, bias), h)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(h))


class BertLayer(nn.Module):
    """One transformer layer; returns the hidden states (B, L, D) (forward hooks see them)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseNorm(c, c.intermediate_size)

    def forward(self, h: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        a = self.attention(h, bias)
        return self.output(self.intermediate(a), a)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c.num_hidden_layers)])


class BertEncoder(nn.Module):
    """BERT without the pooler (``transformers.BertModel(add_pooling_layer=False)``'s names).

    Args:
        config (BertConfig): the sizes.

    Shapes:
        ``forward(input_ids=(B, L) | inputs_embeds=(B, L, D), attention_mask=(B, L),
        token_type_ids=(B, L))`` -> :class:`BertOutput` with ``last_hidden_state`` (B, L, D).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> BertOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("BertEncoder: expected exactly one of input_ids / inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embeddings.word_embeddings(input_ids)  # (B, L, D)
        h = self.embeddings(inputs_embeds, token_type_ids)
        bias = None
        if attention_mask is not None:
            keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L)
            bias = torch.zeros(keep.shape, dtype=h.dtype, device=h.device).masked_fill(~keep, torch.finfo(h.dtype).min)
        for layer in self.encoder.layer:
            h = layer(h, bias)
        return BertOutput(last_hidden_state=h)

    def __repr__(self) -> str:
        c = self.config
        return (f"BertEncoder(layers={len(self.encoder.layer)}, hidden={c.hidden_size}, "
                f"heads={c.num_attention_heads}, vocab={c.vocab_size})")


class _Encoding(dict):
    """The tokenizer's output: a dict of tensors (or lists) with ``.to(device)``."""

    def to(self, device: Any) -> "_Encoding":
        return _Encoding({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.items()})


class WordPieceTokenizer:
    """A folder's ``tokenizer.json`` through the ``tokenizers`` library, with the calls of a
    ``transformers`` tokenizer the project uses: ``tok(text_or_texts, add_special_tokens=,
    padding=, truncation=, max_length=, return_tensors="pt")``, ``convert_tokens_to_ids``,
    and the ``*_token_id`` attributes.
    """

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        self.path = Path(path)
        self._tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()
        special = {}
        cfg = self.path / "special_tokens_map.json"
        if cfg.is_file():
            special = {k: (v["content"] if isinstance(v, dict) else v)
                       for k, v in json.loads(cfg.read_text(encoding="utf-8")).items()}
        for name, default in (("unk", "[UNK]"), ("sep", "[SEP]"), ("pad", "[PAD]"), ("cls", "[CLS]"),
                              ("mask", "[MASK]")):
            token = special.get(f"{name}_token", default)
            setattr(self, f"{name}_token", token)
            setattr(self, f"{name}_token_id", self._tok.token_to_id(token))

    def convert_tokens_to_ids(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        return self.unk_token_id if i is None else i

    def __len__(self) -> int:
        return self._tok.get_vocab_size()

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = True, padding: bool = False,
                 truncation: bool = False, max_length: int | None = None, return_tensors: str | None = None):
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        encs = self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)
        ids = [e.ids for e in encs]
        if truncation and max_length is not None:
            # keep [SEP] last, as transformers' truncation does for one sequence
            ids = [x if len(x) <= max_length else
                   (x[: max_length - 1] + [x[-1]] if add_special_tokens and x and x[-1] == self.sep_token_id
                    else x[:max_length]) for x in ids]
        masks = [[1] * len(x) for x in ids]
        if padding:
            L = max((len(x) for x in ids), default=0)
            ids = [x + [self.pad_token_id] * (L - len(x)) for x in ids]
            masks = [m + [0] * (L - len(m)) for m in masks]
        types = [[0] * len(x) for x in ids]
        if return_tensors == "pt":
            return _Encoding(input_ids=torch.tensor(ids, dtype=torch.long),
                             token_type_ids=torch.tensor(types, dtype=torch.long),
                             attention_mask=torch.tensor(masks, dtype=torch.long))
        if return_tensors is not None:
            raise ValueError(f"WordPieceTokenizer: expected return_tensors None or 'pt', found {return_tensors!r}")
        if single:
            return _Encoding(input_ids=ids[0], token_type_ids=types[0], attention_mask=masks[0])
        return _Encoding(input_ids=ids, token_type_ids=types, attention_mask=masks)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer({self.path.name!r}, vocab={len(self)})"


def load_bert(path: str | Path, num_layers: int | None = None) -> tuple[WordPieceTokenizer, BertEncoder]:
    """(tokenizer, encoder in eval mode) from a BERT folder (``config.json``,
    ``model.safetensors``, ``tokenizer.json``). The weights are read with safetensors and
    loaded with strict key checks (a ``pooler.*`` in the file is ignored); the modules are
    built without their random initialisation, since every weight is then loaded.

    Args:
        num_layers: keep only the first ``num_layers`` transformer layers (the others are
            neither built nor read); None, or more than the folder has: all of them.

    Raises:
        ValueError: not a BERT folder, or the weights do not fit the config.
    """
    from safetensors import safe_open

    path = Path(path)
    config = BertConfig.from_file(path / "config.json")
    if num_layers is not None and 1 <= num_layers < config.num_hidden_layers:
        config.num_hidden_layers = num_layers

    def wanted(key: str) -> str | None:
        # Older checkpoints name their keys "bert.embeddings..."; drop the pooler, unused here.
        k = key[5:] if key.startswith("bert.") else key
        if k.startswith(("pooler.", "cls.")) or k == "embeddings.position_ids":
            return None
        if k.startswith("encoder.layer."):
            i = k.split(".")[2]
            if i.isdigit() and int(i) >= config.num_hidden_layers:
                return None
        return k

    state = {}
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            k = wanted(key)
            if k is not None:
                state[k] = f.get_tensor(key)
    with skip_init():
        model = BertEncoder(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path / 'model.safetensors'}: weights do not fit {path / 'config.json'}: {e}") from e
    return WordPieceTokenizer(path), model.eval()
