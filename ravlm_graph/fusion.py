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
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, NamedTuple

import torch
from torch import nn

__all__ = [
    "FUSION_KINDS",
    "ClassicFusion",
    "CopyGate",
    "CopyGateOutput",
    "FusionConfig",
    "GatedCrossAttentionAdapter",
    "GraphTokenFusion",
    "GraphTokenProjector",
    "GraphTokens",
    "InjectedGraphTokens",
    "PointerHead",
    "build_fusion",
    "inject_graph_tokens",
]

#: Kinds of :class:`FusionConfig`.
FUSION_KINDS: tuple[str, ...] = ("graph_tokens", "concat", "product", "attention", "none")
#: Kinds handled by :class:`ClassicFusion`.
CLASSIC_KINDS: tuple[str, ...] = ("concat", "product", "attention", "none")


def _check_int(owner: str, name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{name}: expected an integer, found {value!r}")
    if value < lo:
        raise ValueError(f"{owner}.{name}: expected an integer >= {lo}, found {value!r}")


def _shape(t: Any) -> Any:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class FusionConfig:
    """Fusion of the graph with the decoder.

    Args:
        kind (str): ``"graph_tokens"`` (projected node tokens in the decoder's input),
            ``"concat"``, ``"product"``, ``"attention"`` (classic fusions of pooled vectors)
            or ``"none"`` (no graph; the no-KG ablation). Default ``"graph_tokens"``.
        model_dim (int): the decoder's embedding size D; also the output width of the
            classic fusions (default 384).
        graph_dim (int): width H of the GNN node/graph states (default 256).
        num_graph_tokens (int): graph tokens per question, the top-N nodes (default 32).
        pooled (bool): ``graph_tokens`` only: one pooled token per graph instead of one per
            node (default False).
        gated_xattn (bool): ``graph_tokens`` only: the decoder reads the graph tokens through
            gated cross-attention adapters instead of in its input sequence (default False).
        num_xattn_layers (int): adapters built with ``gated_xattn`` (default 1).
        heads (int): attention heads of the adapters; must divide ``model_dim`` when
            ``gated_xattn`` (default 4).
        image_dim (int | None): pooled image width of the classic fusions (default None:
            ``model_dim``).
        text_dim (int | None): pooled text width of the classic fusions (default None:
            ``model_dim``).
        hidden_dim (int | None): hidden width of the projector / fusion MLPs (default None:
            ``model_dim``).
        dropout (float): dropout inside the fusion modules (default 0.0).

    Flags that do not apply to ``kind`` are ignored, so that switching ``kind`` alone is
    always a valid ablation.
    """

    kind: str = "graph_tokens"
    model_dim: int = 384
    graph_dim: int = 256
    num_graph_tokens: int = 32
    pooled: bool = False
    gated_xattn: bool = False
    num_xattn_layers: int = 1
    heads: int = 4
    image_dim: int | None = None
    text_dim: int | None = None
    hidden_dim: int | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        o = "FusionConfig"
        if self.kind not in FUSION_KINDS:
            raise ValueError(f"{o}.kind: expected one of {FUSION_KINDS}, found {self.kind!r}")
        for name in ("model_dim", "graph_dim", "num_graph_tokens", "num_xattn_layers", "heads"):
            _check_int(o, name, getattr(self, name), 1)
        for name in ("image_dim", "text_dim", "hidden_dim"):
            if getattr(self, name) is not None:
                _check_int(o, name, getattr(self, name), 1)
        for name in ("pooled", "gated_xattn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{o}.{name}: expected a bool, found {getattr(self, name)!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{o}.dropout: expected a number in [0, 1), found {self.dropout!r}")
        if self.kind == "graph_tokens" and self.gated_xattn and self.model_dim % self.heads:
            raise ValueError(f"{o}.heads: expected a divisor of model_dim={self.model_dim} for the gated "
                             f"cross-attention adapters, found {self.heads}")

    @property
    def injects_tokens(self) -> bool:
        """Whether graph tokens go into the decoder's input sequence (at ``<kg>``)."""
        return self.kind == "graph_tokens" and not self.gated_xattn

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FusionConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"FusionConfig: unknown fields {unknown}; expected some of {sorted(names)}")
        return cls(**data)


# --------------------------------------------------------------------------- graph tokens


@dataclass
class GraphTokens:
    """Graph tokens of a batch, in the decoder's embedding space.

    Fields:
        tokens (B, T, D) float: one token per selected node (zeros on padding).
        mask (B, T) bool: real tokens.
        node_index (B, T) long: index of each token's node in the batch's node axis (the
            rows of ``node_states``); -1 for padding and for a pooled token.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    node_index: torch.Tensor


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim))


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.LayerNorm)):
            m.reset_parameters()


class GraphTokenProjector(nn.Module):
    r"""Node states -> graph tokens in the decoder's embedding space (LLaVA's projector).

    A two-layer MLP (Linear, GELU, Linear) as in LLaVA-1.5's multimodal projector
    (https://arxiv.org/abs/2304.08485), applied to the ``num_tokens`` best nodes of each
    graph: seeds first (``origin > 0``: found in the question or the image), then by
    decreasing relevance, ties by node order. With ``pooled=True`` each graph gives a
    single token, the projected mean of its node states (or the ``graph_state`` given).

    Args:
        graph_dim (int): node-state width H.
        model_dim (int): decoder embedding width D.
        num_tokens (int): top-N nodes per graph (default 32).
        pooled (bool): one pooled token per graph (default False).
        hidden_dim (int | None): MLP hidden width (default None: ``model_dim``).
        dropout (float): dropout in the MLP (default 0.0).

    Shapes:
        input: node_states (N, H), batch (N,) long, relevance (N,), origin (N,) long.
        output: :class:`GraphTokens` with T = min(num_tokens, largest graph), at least 1
        (T = 1 with ``pooled``).
    """

    def __init__(self, graph_dim: int, model_dim: int, num_tokens: int = 32, pooled: bool = False,
                 hidden_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.graph_dim, self.model_dim, self.num_tokens, self.pooled = graph_dim, model_dim, num_tokens, pooled
        self.mlp = _mlp(graph_dim, hidden_dim or model_dim, model_dim, dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset(self.mlp)

    def forward(self, node_states: torch.Tensor, batch: torch.Tensor | None = None,
                relevance: torch.Tensor | None = None, origin: torch.Tensor | None = None,
                num_graphs: int | None = None, graph_state: torch.Tensor | None = None) -> GraphTokens:
        """Select and project.

        Args:
            node_states (Tensor): (N, H) node states (e.g. ``GraphEncoderOutput.node_states``).
            batch (Tensor | None): (N,) graph of each node (default: one graph).
            relevance (Tensor | None): (N,) ranking score (default: node order).
            origin (Tensor | None): (N,) origin; > 0 marks a seed (default: no seeds).
            num_graphs (int | None): B (default ``batch.max() + 1``; give it when trailing
                graphs may be empty).
            graph_state (Tensor | None): (B, H) pooled states used by ``pooled=True``.
        """
        if node_states.dim() != 2 or node_states.shape[1] != self.graph_dim:
            raise ValueError(f"GraphTokenProjector: expected node_states of shape (N, {self.graph_dim}), "
                             f"found {_shape(node_states)}")
        n, dev = node_states.shape[0], node_states.device
        batch = torch.zeros(n, dtype=torch.long, device=dev) if batch is None else batch.long()
        for name, t in (("batch", batch), ("relevance", relevance), ("origin", origin)):
            if t is not None and tuple(t.shape) != (n,):
                raise ValueError(f"GraphTokenProjector: expected {name} of shape ({n},), found {_shape(t)}")
        b = num_graphs if num_graphs is not None else (int(batch.max()) + 1 if n else 1)
        counts = torch.bincount(batch, minlength=b)  # (B,)
        if counts.numel() != b:
            raise ValueError(f"GraphTokenProjector: expected batch values in [0, {b}), found {int(batch.max())}")
        if self.pooled:
            return self._pooled(node_states, batch, counts, graph_state)
        t = max(1, min(self.num_tokens, int(counts.max()) if b else 0))
        order = torch.arange(n, device=dev)
        if relevance is not None:
            order = order[torch.argsort(-relevance.float(), stable=True)]  # best first
        if origin is not None:
            order = order[torch.argsort((origin[order] <= 0).long(), stable=True)]  # seeds first
        order = order[torch.argsort(batch[order], stable=True)]  # grouped by graph, ranks kept
        start = torch.cumsum(counts, 0) - counts  # (B,) first row of each graph in ``order``
        rank = torch.arange(n, device=dev) - start[batch[order]]  # (N,) rank within its graph
        keep = rank < t
        node_index = torch.full((b, t), -1, dtype=torch.long, device=dev)  # (B, T)
        node_index[batch[order][keep], rank[keep]] = order[keep]
        mask = node_index >= 0  # (B, T)
        picked = node_states[node_index.clamp(min=0)] if n else node_states.new_zeros(b, t, self.graph_dim)
        tokens = self.mlp(picked) * mask.unsqueeze(-1)  # (B, T, D)
        return GraphTokens(tokens=tokens, mask=mask, node_index=node_index)

    def _pooled(self, node_states, batch, counts, graph_state) -> GraphTokens:
        from torch_geometric.utils import scatter

        b = counts.numel()
        if graph_state is None:
            graph_state = scatter(node_states, batch, dim=0, dim_size=b, reduce="mean")  # (B, H)
        elif tuple(graph_state.shape) != (b, self.graph_dim):
            raise ValueError(f"GraphTokenProjector: expected graph_state of shape ({b}, {self.graph_dim}), "
                             f"found {_shape(graph_state)}")
        mask = (counts > 0).unsqueeze(1)  # (B, 1)
        tokens = self.mlp(graph_state).unsqueeze(1) * mask.unsqueeze(-1)  # (B, 1, D)
        node_index = torch.full((b, 1), -1, dtype=torch.long, device=node_states.device)
        return GraphTokens(tokens=tokens, mask=mask, node_index=node_index)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.graph_dim}, {self.model_dim}, num_tokens={self.num_tokens}, "
                f"pooled={self.pooled})")


class InjectedGraphTokens(NamedTuple):
    """Result of :func:`inject_graph_tokens` (unpacks as ``embeds, attention_mask, positions``).

    Fields:
        embeds (B, L - 1 + T, D): the sequences with graph tokens in place of ``<kg>``.
        attention_mask (B, L - 1 + T) long: 1 for text and real graph tokens, 0 for padding.
        positions (B, T) long: where each graph token sits in ``embeds`` (padded tokens
            included: they sit at the end of their row, masked).
    """

    embeds: torch.Tensor
    attention_mask: torch.Tensor
    positions: torch.Tensor


def inject_graph_tokens(input_embeds: torch.Tensor, input_ids: torch.Tensor, kg_token_id: int,
                        graph_tokens: GraphTokens, attention_mask: torch.Tensor | None = None) -> InjectedGraphTokens:
    """Replace each sequence's single ``<kg>`` placeholder by its graph tokens (as LLaVA does with
    ``<image>``, https://arxiv.org/abs/2304.08485).

    Row ``b`` becomes ``[text before <kg> | its real graph tokens | text after <kg> | padding]``:
    the real tokens (``graph_tokens.mask``) are contiguous and the text follows them
    directly; a row with fewer real tokens than T is right-padded, its padded graph tokens
    placed (masked) in that padding. Every row is ``L - 1 + T`` long, so
    ``embeds[b, positions[b, t]] == tokens[b, t]`` for every token.

    Args:
        input_embeds (Tensor): (B, L, D) token embeddings of the prompt.
        input_ids (Tensor): (B, L) token ids; exactly one ``kg_token_id`` per row.
        kg_token_id (int): id of the ``<kg>`` placeholder.
        graph_tokens (GraphTokens): ``tokens`` (B, T, D) and ``mask`` (B, T) (None: all real).
        attention_mask (Tensor | None): (B, L) the prompt's own mask (default: all ones);
            carried to the text's new positions.

    Shapes:
        output: :class:`InjectedGraphTokens` ``embeds`` (B, L - 1 + T, D),
        ``attention_mask`` (B, L - 1 + T), ``positions`` (B, T).
    """
    if input_embeds.dim() != 3:
        raise ValueError(f"inject_graph_tokens: expected input_embeds of shape (B, L, D), found {_shape(input_embeds)}")
    b, length, d = input_embeds.shape
    if tuple(input_ids.shape) != (b, length):
        raise ValueError(f"inject_graph_tokens: expected input_ids of shape ({b}, {length}) like input_embeds, "
                         f"found {_shape(input_ids)}")
    tokens, mask = graph_tokens.tokens, getattr(graph_tokens, "mask", None)
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        raise ValueError(f"inject_graph_tokens: expected graph_tokens.tokens of shape (B, T, D), found {_shape(tokens)}")
    if tokens.shape[0] != b:
        raise ValueError(f"inject_graph_tokens: expected graph tokens for {b} sequences (one graph each), "
                         f"found {tokens.shape[0]}")
    if tokens.shape[2] != d:
        raise ValueError(f"inject_graph_tokens: expected graph tokens of width D={d} (the embedding size), "
                         f"found {tokens.shape[2]}")
    t = tokens.shape[1]
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.bool, device=tokens.device)
    if tuple(mask.shape) != (b, t):
        raise ValueError(f"inject_graph_tokens: expected graph_tokens.mask of shape ({b}, {t}), found {_shape(mask)}")
    if attention_mask is not None and tuple(attention_mask.shape) != (b, length):
        raise ValueError(f"inject_graph_tokens: expected attention_mask of shape ({b}, {length}), "
                         f"found {_shape(attention_mask)}")
    mask = mask.bool()
    is_kg = input_ids == kg_token_id  # (B, L)
    counts = is_kg.sum(1)  # (B,)
    bad = (counts != 1).nonzero()
    if bad.numel():
        row = int(bad[0, 0])
        raise ValueError(f"inject_graph_tokens: input_ids row {row}: expected exactly one <kg> placeholder "
                         f"(id {kg_token_id}), found {int(counts[row])}")
    dev = input_embeds.device
    p = is_kg.long().argmax(1, keepdim=True)  # (B, 1) placeholder position
    n_real = mask.sum(1, keepdim=True)  # (B, 1)
    ar = torch.arange(length, device=dev).unsqueeze(0)  # (1, L)
    text_dest = torch.where(ar < p, ar, ar - 1 + n_real)  # (B, L); the placeholder's own entry is unused
    real_rank = mask.long().cumsum(1) - 1  # (B, T)
    pad_rank = (~mask).long().cumsum(1) - 1  # (B, T)
    positions = torch.where(mask, p + real_rank, length - 1 + n_real + pad_rank)  # (B, T)

    new_len = length - 1 + t
    keep = ~is_kg  # (B, L)
    rows_l = torch.arange(b, device=dev).unsqueeze(1).expand(b, length)  # (B, L)
    rows_t = torch.arange(b, device=dev).unsqueeze(1).expand(b, t)  # (B, T)
    embeds = input_embeds.new_zeros(b, new_len, d)
    embeds = embeds.index_put((rows_l[keep], text_dest[keep]), input_embeds[keep])
    embeds = embeds.index_put((rows_t.reshape(-1), positions.reshape(-1)),
                              tokens.to(input_embeds.dtype).reshape(-1, d))  # (B, L', D)
    text_mask = torch.ones(b, length, dtype=torch.long, device=dev) if attention_mask is None \
        else attention_mask.long()
    out_mask = torch.zeros(b, new_len, dtype=torch.long, device=dev)
    out_mask[rows_l[keep], text_dest[keep]] = text_mask[keep]
    out_mask[rows_t.reshape(-1), positions.reshape(-1)] = mask.long().reshape(-1)  # (B, L')
    return InjectedGraphTokens(embeds=embeds, attention_mask=out_mask, positions=positions)


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


class GraphTokenFusion(nn.Module):
    """The ``graph_tokens`` fusion: a :class:`GraphTokenProjector` plus, with
    ``gated_xattn``, the :class:`GatedCrossAttentionAdapter` s that the decoder inserts
    between its layers (``adapters[i]`` before the i-th chosen layer).

    Args:
        config (FusionConfig): a config of kind ``"graph_tokens"``.

    Shapes:
        see :class:`GraphTokenProjector`; forward returns its :class:`GraphTokens`.
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        if config.kind != "graph_tokens":
            raise ValueError(f"GraphTokenFusion: expected a FusionConfig of kind 'graph_tokens', found {config.kind!r}")
        self.config = config
        self.projector = GraphTokenProjector(config.graph_dim, config.model_dim, config.num_graph_tokens,
                                             pooled=config.pooled, hidden_dim=config.hidden_dim,
                                             dropout=config.dropout)
        n = config.num_xattn_layers if config.gated_xattn else 0
        self.adapters = nn.ModuleList(GatedCrossAttentionAdapter(config.model_dim, heads=config.heads,
                                                                 dropout=config.dropout) for _ in range(n))

    def reset_parameters(self) -> None:
        self.projector.reset_parameters()
        for a in self.adapters:
            a.reset_parameters()

    def forward(self, node_states: torch.Tensor, batch: torch.Tensor | None = None,
                relevance: torch.Tensor | None = None, origin: torch.Tensor | None = None,
                num_graphs: int | None = None, graph_state: torch.Tensor | None = None) -> GraphTokens:
        return self.projector(node_states, batch, relevance, origin, num_graphs, graph_state)

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}({c.graph_dim}, {c.model_dim}, num_tokens={c.num_graph_tokens}, "
                f"pooled={c.pooled}, adapters={len(self.adapters)})")


# --------------------------------------------------------------------------- classic fusions


class ClassicFusion(nn.Module):
    r"""Fusion of pooled image, text and graph vectors into one vector.

    * ``"concat"``: ``MLP([v_img; v_txt; v_graph])``.
    * ``"product"``: ``W_o (tanh(W_i v_img) * tanh(W_t v_txt) * tanh(W_g v_graph))``
      (element-wise product of projected vectors).
    * ``"attention"``: the three projected vectors summed with softmax weights from a
      learned query computed from the text, ``W_o sum_m softmax_m(q(v_txt) · p_m / sqrt(h)) p_m``.
    * ``"none"``: ``MLP([v_img; v_txt])``; the graph is ignored (the no-KG ablation).

    A missing graph vector (``graph=None``) counts as zeros.

    Args:
        kind (str): ``"concat"``, ``"product"``, ``"attention"`` or ``"none"``.
        image_dim (int): pooled image width.
        text_dim (int): pooled text width.
        graph_dim (int): graph-state width.
        out_dim (int): output width D.
        hidden_dim (int | None): hidden width (default None: ``out_dim``).
        dropout (float): dropout before the output layer (default 0.0).

    Shapes:
        input: image (B, image_dim), text (B, text_dim), graph (B, graph_dim) or None.
        output: (B, out_dim).
    """

    def __init__(self, kind: str, image_dim: int, text_dim: int, graph_dim: int, out_dim: int,
                 hidden_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if kind not in CLASSIC_KINDS:
            raise ValueError(f"ClassicFusion: expected kind in {CLASSIC_KINDS}, found {kind!r}")
        self.kind = kind
        self.dims = (image_dim, text_dim, graph_dim)
        self.out_dim = out_dim
        hid = hidden_dim or out_dim
        self.hidden_dim = hid
        if kind in ("concat", "none"):
            in_dim = image_dim + text_dim + (graph_dim if kind == "concat" else 0)
            self.mlp = _mlp(in_dim, hid, out_dim, dropout)
        else:
            self.proj = nn.ModuleList(nn.Linear(dim, hid) for dim in self.dims)  # image, text, graph
            self.dropout = nn.Dropout(dropout)
            self.out = nn.Linear(hid, out_dim)
            if kind == "attention":
                self.query = nn.Linear(text_dim, hid)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset(self)

    def _check(self, image, text, graph) -> torch.Tensor:
        b = image.shape[0] if isinstance(image, torch.Tensor) and image.dim() == 2 else None
        for name, v, dim in (("image", image, self.dims[0]), ("text", text, self.dims[1])):
            if not isinstance(v, torch.Tensor) or v.dim() != 2 or v.shape[1] != dim or v.shape[0] != b:
                raise ValueError(f"ClassicFusion: expected {name} of shape (B, {dim}) with B={b}, found {_shape(v)}")
        if graph is None:
            return image.new_zeros(b, self.dims[2])
        if self.kind != "none" and (graph.dim() != 2 or tuple(graph.shape) != (b, self.dims[2])):
            raise ValueError(f"ClassicFusion: expected graph of shape ({b}, {self.dims[2]}), found {_shape(graph)}")
        return graph

    def _projected(self, image, text, graph) -> torch.Tensor:
        return torch.stack([p(v) for p, v in zip(self.proj, (image, text, graph))], dim=1)  # (B, 3, h)

    def forward(self, image: torch.Tensor, text: torch.Tensor, graph: torch.Tensor | None = None) -> torch.Tensor:
        graph = self._check(image, text, graph)
        if self.kind == "none":
            return self.mlp(torch.cat([image, text], dim=-1))  # (B, D)
        if self.kind == "concat":
            return self.mlp(torch.cat([image, text, graph], dim=-1))  # (B, D)
        if self.kind == "product":
            fused = torch.tanh(self._projected(image, text, graph)).prod(dim=1)  # (B, h)
            return self.out(self.dropout(fused))  # (B, D)
        p = self._projected(image, text, graph)  # (B, 3, h)
        w = self._weights(text, p)  # (B, 3)
        return self.out(self.dropout((w.unsqueeze(-1) * p).sum(dim=1)))  # (B, D)

    def _weights(self, text: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        q = self.query(text)  # (B, h)
        return torch.softmax((p @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.hidden_dim), dim=-1)  # (B, 3)

    def modality_weights(self, image: torch.Tensor, text: torch.Tensor,
                         graph: torch.Tensor | None = None) -> torch.Tensor:
        """``"attention"`` only: the (B, 3) weights of image, text and graph."""
        if self.kind != "attention":
            raise ValueError(f"ClassicFusion.modality_weights: expected kind 'attention', found {self.kind!r}")
        graph = self._check(image, text, graph)
        return self._weights(text, self._projected(image, text, graph))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r}, dims={self.dims}, out_dim={self.out_dim})"


def build_fusion(config: FusionConfig) -> nn.Module:
    """The fusion module of ``config.kind``: a :class:`GraphTokenFusion` for ``"graph_tokens"``,
    a :class:`ClassicFusion` otherwise (image/text widths default to ``model_dim``)."""
    if not isinstance(config, FusionConfig):
        raise TypeError(f"build_fusion: expected a FusionConfig, found {type(config).__name__}")
    if config.kind == "graph_tokens":
        return GraphTokenFusion(config)
    d = config.model_dim
    return ClassicFusion(config.kind, config.image_dim or d, config.text_dim or d, config.graph_dim, d,
                         hidden_dim=config.hidden_dim, dropout=config.dropout)


# --------------------------------------------------------------------------- copying from the graph


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
