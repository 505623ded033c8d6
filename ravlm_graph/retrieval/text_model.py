"""A BERT encoder and its WordPiece tokenizer without ``transformers``: the packaged
all-MiniLM-L6-v2 loads in milliseconds instead of the seconds ``from transformers import
BertModel`` costs at start-up (it pulls in ``torch.distributed``, ``torch._dynamo`` and
``scipy.optimize``).

:class:`BertEncoder` has the parameter names of ``transformers.BertModel`` (without the
pooler), so the same ``model.safetensors`` loads with strict key checks, and computes the
same ``last_hidden_state`` (``tests/retrieval/test_text_model.py`` compares both).
:class:`WordPieceTokenizer` (in :mod:`ravlm_graph.retrieval.wordpiece`, with
:class:`BertConfig`, so that the numpy encoder reads them without torch) wraps the
``tokenizers`` library's reading of the folder's ``tokenizer.json`` (what
``BertTokenizerFast`` uses) with the few calls the project makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ravlm_graph.retrieval.wordpiece import BertConfig, WordPieceTokenizer, bert_state_key
from ravlm_graph.utils.checkpoint import skip_init

__all__ = ["BertConfig", "BertEncoder", "WordPieceTokenizer", "load_bert"]


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

    state = {}
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            k = bert_state_key(key, config.num_hidden_layers)
            if k is not None:
                state[k] = f.get_tensor(key)
    with skip_init():
        model = BertEncoder(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path / 'model.safetensors'}: weights do not fit {path / 'config.json'}: {e}") from e
    return WordPieceTokenizer(path), model.eval()
