"""Fusion of graph states into a vision-language decoder, and the simpler fusions it is compared with.

* **Graph tokens** (LLaVA-style, Liu et al. 2023, https://arxiv.org/abs/2304.08485):
  :class:`GraphTokenProjector` maps the top-N nodes of each graph into the decoder's
  embedding space; :func:`inject_graph_tokens` puts them where the prompt's ``<kg>``
  placeholder was. Each token remembers its node (``node_index``) so that answers can
  point back to the graph.
* **Gated cross-attention** (Flamingo-style, Alayrac et al. 2022,
  https://arxiv.org/abs/2204.14198): :class:`GatedCrossAttentionAdapter` lets decoder
  states read the graph tokens through tanh gates initialised at 0 (identity at init).
* **Classic fusions** of pooled vectors: :class:`ClassicFusion` ``concat`` / ``product`` /
  ``attention``, and ``none`` (no knowledge graph, for the no-KG ablation).
* **Copying from the graph** (pointer-generator, See et al. 2017,
  https://arxiv.org/abs/1704.04368): :class:`PointerHead` scores nodes against a query,
  :class:`CopyGate` mixes the vocabulary and pointer distributions.

:func:`build_fusion` turns a :class:`FusionConfig` into the module of its ``kind``, so that
every ablation is one config change.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from ravlm_graph.nn.fusion.base import _mlp, _reset, _shape


# --------------------------------------------------------------------------- gated cross-attention


class GatedCrossAttentionAdapter(nn.Module):
    r"""Flamingo's gated cross-attention block, reading graph tokens.

    .. math::
        x &\leftarrow x + \tanh(\alpha_{attn})\,\mathrm{XAttn}(\mathrm{LN}(x), y) \\
        x &\leftarrow x + \tanh(\alpha_{ff})\,\mathrm{FFW}(\mathrm{LN}(x))

    Both gates start at 0, so inserting the adapter between two frozen decoder layers
    leaves the decoder's output unchanged at initialisation (Alayrac et al. 2022,
    https://arxiv.org/abs/2204.14198). Padded graph tokens are never attended; a row
    without any real graph token gets no update.

    Args:
        model_dim (int): decoder hidden width D.
        kv_dim (int | None): graph-token width (default None: ``model_dim``).
        heads (int): attention heads; must divide ``model_dim`` (default 4).
        ff_mult (int): feed-forward expansion (default 4).
        dropout (float): dropout on attention weights and the feed-forward (default 0.0).

    Shapes:
        input: hidden (B, L, D), graph_tokens (B, T, kv_dim), graph_mask (B, T) bool.
        output: (B, L, D).
    """

    def __init__(self, model_dim: int, kv_dim: int | None = None, heads: int = 4, ff_mult: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if model_dim % heads:
            raise ValueError(f"GatedCrossAttentionAdapter: expected heads dividing model_dim={model_dim}, "
                             f"found heads={heads}")
        self.model_dim, self.kv_dim, self.heads = model_dim, kv_dim or model_dim, heads
        self.norm_q = nn.LayerNorm(model_dim)
        self.norm_kv = nn.LayerNorm(self.kv_dim)
        self.q = nn.Linear(model_dim, model_dim, bias=False)
        self.kv = nn.Linear(self.kv_dim, 2 * model_dim, bias=False)
        self.out = nn.Linear(model_dim, model_dim, bias=False)
        self.norm_ff = nn.LayerNorm(model_dim)
        self.ff = _mlp(model_dim, ff_mult * model_dim, model_dim, dropout)
        self.attn_dropout = nn.Dropout(dropout)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff_gate = nn.Parameter(torch.zeros(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset(self)
        nn.init.zeros_(self.attn_gate)
        nn.init.zeros_(self.ff_gate)

    def forward(self, hidden: torch.Tensor, graph_tokens: torch.Tensor,
                graph_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, length, d = hidden.shape
        if graph_tokens.dim() != 3 or graph_tokens.shape[0] != b or graph_tokens.shape[2] != self.kv_dim:
            raise ValueError(f"GatedCrossAttentionAdapter: expected graph_tokens of shape ({b}, T, {self.kv_dim}), "
                             f"found {_shape(graph_tokens)}")
        t = graph_tokens.shape[1]
        if graph_mask is None:
            graph_mask = torch.ones(b, t, dtype=torch.bool, device=hidden.device)
        graph_mask = graph_mask.bool()
        h, dh = self.heads, d // self.heads
        q = self.q(self.norm_q(hidden)).view(b, length, h, dh).transpose(1, 2)  # (B, h, L, dh)
        k, v = self.kv(self.norm_kv(graph_tokens.to(hidden.dtype))).chunk(2, dim=-1)  # (B, T, D) each
        k = k.view(b, t, h, dh).transpose(1, 2)  # (B, h, T, dh)
        v = v.view(b, t, h, dh).transpose(1, 2)  # (B, h, T, dh)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (B, h, L, T)
        allowed = graph_mask[:, None, None, :]  # (B, 1, 1, T)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        # Rows with no real graph token would get a uniform softmax over padding: zero them.
        attn = torch.softmax(scores, dim=-1) * allowed  # (B, h, L, T)
        attn = self.attn_dropout(attn)
        ctx = (attn @ v).transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        hidden = hidden + torch.tanh(self.attn_gate) * self.out(ctx)  # (B, L, D)
        return hidden + torch.tanh(self.ff_gate) * self.ff(self.norm_ff(hidden))  # (B, L, D)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_dim}, kv_dim={self.kv_dim}, heads={self.heads})"
