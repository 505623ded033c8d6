"""Copying answers from the graph (pointer-generator, See et al. 2017,
https://arxiv.org/abs/1704.04368): :class:`PointerHead` scores nodes against a query,
:class:`CopyGate` mixes the vocabulary and pointer distributions. Every kind that uses
the graph shares this answer head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from ravlm_graph.nn.fusion.base import _shape



class PointerHead(nn.Module):
    r"""Scores graph tokens / nodes against a query: ``(W_q q) · (W_k k_t) / sqrt(h)``.

    The resulting distribution over nodes lets the model answer with a concept it never
    saw as a training answer, by copying it from the graph (See et al. 2017,
    https://arxiv.org/abs/1704.04368).

    Args:
        query_dim (int): query width.
        key_dim (int): node/token width.
        hidden_dim (int | None): width of the scoring space (default None: ``query_dim``).

    Shapes:
        input: query (B, query_dim), keys (B, T, key_dim), mask (B, T) bool.
        output: logits (B, T), ``-inf`` on padding.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.query_dim, self.key_dim, self.hidden_dim = query_dim, key_dim, hidden_dim or query_dim
        self.q = nn.Linear(query_dim, self.hidden_dim)
        self.k = nn.Linear(key_dim, self.hidden_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.q.reset_parameters()
        self.k.reset_parameters()

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if query.dim() != 2 or query.shape[1] != self.query_dim:
            raise ValueError(f"PointerHead: expected query of shape (B, {self.query_dim}), found {_shape(query)}")
        if keys.dim() != 3 or keys.shape[0] != query.shape[0] or keys.shape[2] != self.key_dim:
            raise ValueError(f"PointerHead: expected keys of shape ({query.shape[0]}, T, {self.key_dim}), "
                             f"found {_shape(keys)}")
        logits = (self.k(keys) @ self.q(query).unsqueeze(-1)).squeeze(-1) / math.sqrt(self.hidden_dim)  # (B, T)
        if mask is not None:
            if tuple(mask.shape) != tuple(logits.shape):
                raise ValueError(f"PointerHead: expected mask of shape {tuple(logits.shape)}, found {_shape(mask)}")
            logits = logits.masked_fill(~mask.bool(), float("-inf"))
        return logits

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.query_dim}, {self.key_dim}, hidden_dim={self.hidden_dim})"


@dataclass
class CopyGateOutput:
    """Output of :meth:`CopyGate.forward`.

    Fields:
        probs (B, V + T) float: the mixed distribution over the vocabulary followed by the
            pointer slots; each row sums to 1. With ``pointer_vocab_index``, a slot whose node
            is in the vocabulary gives its mass to that entry and keeps 0.
        copy_prob (B,) float: probability of copying (``1 - p_gen`` of See et al.); 0 for a
            row without any real pointer slot.
        vocab_probs (B, V) float: softmax of the vocabulary logits.
        pointer_probs (B, T) float: softmax of the pointer logits (zeros on padding and on
            rows without real slots).
    """

    probs: torch.Tensor
    copy_prob: torch.Tensor
    vocab_probs: torch.Tensor
    pointer_probs: torch.Tensor


class CopyGate(nn.Module):
    r"""Pointer-generator mixing: ``P = (1 - c) P_vocab + c P_pointer`` with
    ``c = sigmoid(w · q + b)`` (See et al. 2017, https://arxiv.org/abs/1704.04368).

    Args:
        query_dim (int): width of the query (the decoder state the gate reads).

    Shapes:
        input: query (B, query_dim), vocab_logits (B, V), pointer_logits (B, T) (``-inf``
        on padding), pointer_vocab_index (B, T) long or None (-1: not in the vocabulary).
        output: :class:`CopyGateOutput`.
    """

    def __init__(self, query_dim: int) -> None:
        super().__init__()
        self.query_dim = query_dim
        self.gate = nn.Linear(query_dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.gate.reset_parameters()

    def forward(self, query: torch.Tensor, vocab_logits: torch.Tensor, pointer_logits: torch.Tensor,
                pointer_vocab_index: torch.Tensor | None = None) -> CopyGateOutput:
        b = query.shape[0]
        if query.dim() != 2 or query.shape[1] != self.query_dim:
            raise ValueError(f"CopyGate: expected query of shape (B, {self.query_dim}), found {_shape(query)}")
        if vocab_logits.dim() != 2 or vocab_logits.shape[0] != b:
            raise ValueError(f"CopyGate: expected vocab_logits of shape ({b}, V), found {_shape(vocab_logits)}")
        if pointer_logits.dim() != 2 or pointer_logits.shape[0] != b:
            raise ValueError(f"CopyGate: expected pointer_logits of shape ({b}, T), found {_shape(pointer_logits)}")
        real = torch.isfinite(pointer_logits)  # (B, T)
        has_slots = real.any(dim=1)  # (B,)
        copy = torch.sigmoid(self.gate(query)).squeeze(-1) * has_slots  # (B,)
        vocab = torch.softmax(vocab_logits, dim=-1)  # (B, V)
        safe = pointer_logits.masked_fill(~real, torch.finfo(pointer_logits.dtype).min)
        pointer = torch.softmax(safe, dim=-1) * real  # (B, T); all-padding rows -> zeros
        vocab_part = (1 - copy).unsqueeze(-1) * vocab  # (B, V)
        pointer_part = copy.unsqueeze(-1) * pointer  # (B, T)
        if pointer_vocab_index is not None:
            if tuple(pointer_vocab_index.shape) != tuple(pointer_logits.shape):
                raise ValueError(f"CopyGate: expected pointer_vocab_index of shape {tuple(pointer_logits.shape)}, "
                                 f"found {_shape(pointer_vocab_index)}")
            v = vocab_logits.shape[1]
            idx = pointer_vocab_index.long()
            if bool((idx >= v).any()):
                raise ValueError(f"CopyGate: expected pointer_vocab_index values < V={v} (or -1), found {int(idx.max())}")
            in_vocab = idx >= 0  # (B, T)
            vocab_part = vocab_part.scatter_add(1, idx.clamp(min=0), pointer_part * in_vocab)
            pointer_part = pointer_part * ~in_vocab
        probs = torch.cat([vocab_part, pointer_part], dim=-1)  # (B, V + T)
        return CopyGateOutput(probs=probs, copy_prob=copy, vocab_probs=vocab, pointer_probs=pointer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.query_dim})"
