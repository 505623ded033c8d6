"""The ``xattn`` fusion: the trunk reads graph tokens through gated cross-attention adapters
after each of its layers (Flamingo-style, Alayrac et al. 2022, https://arxiv.org/abs/2204.14198),
instead of finding them in its input sequence.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
from torch import nn

from ravlm_graph.nn.fusion.base import FusionConfig, GraphInputs, TrunkInputs, _mlp, _reset, _shape
from ravlm_graph.nn.fusion.graph_tokens import GraphTokenFusion


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


class CrossAttentionFusion(GraphTokenFusion):
    """The ``xattn`` kind: graph tokens (as :class:`GraphTokenFusion` makes them) read by one
    :class:`GatedCrossAttentionAdapter` after each trunk layer. The gates start at 0, so the
    pretrained trunk is unchanged at initialisation; outside a forward pass of the model
    (outside :meth:`reading`) the hooked trunk behaves exactly as before.

    Args:
        config (FusionConfig): ``num_layers`` adapters of ``model_dim`` with ``heads`` heads
            and ``dropout``, plus the projector's settings.
    """

    graph_placeholder = False

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        self.adapters = nn.ModuleList(GatedCrossAttentionAdapter(config.model_dim, config.model_dim,
                                                                 heads=config.heads, dropout=config.dropout)
                                      for _ in range(config.num_layers))
        self._memory: tuple[torch.Tensor, torch.Tensor] | None = None

    def attach(self, layers: Sequence[nn.Module]) -> None:
        if len(layers) != len(self.adapters):
            raise ValueError(f"CrossAttentionFusion: expected {len(self.adapters)} trunk layers "
                             f"(FusionConfig.num_layers), found {len(layers)}")
        for adapter, layer in zip(self.adapters, layers):
            layer.register_forward_hook(self._hook(adapter))

    def _hook(self, adapter: GatedCrossAttentionAdapter):
        def hook(_module, _args, output):
            if self._memory is None:
                return output
            if isinstance(output, tuple):
                return (adapter(output[0], *self._memory),) + tuple(output[1:])
            return adapter(output, *self._memory)

        return hook

    def into_trunk(self, inputs: TrunkInputs, graph: GraphInputs | None) -> TrunkInputs:
        return inputs

    @contextlib.contextmanager
    def reading(self, graph: GraphInputs | None) -> Iterator[None]:
        gt = self.tokens(graph)
        self._memory = (gt.tokens, gt.mask)  # read by the layer hooks
        try:
            yield
        finally:
            self._memory = None
