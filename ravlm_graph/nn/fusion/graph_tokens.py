"""The ``graph_tokens`` fusion: graph tokens in the trunk's input sequence (LLaVA-style,
Liu et al. 2023, https://arxiv.org/abs/2304.08485).

:class:`GraphTokenProjector` maps the top-N nodes of each graph into the trunk's embedding
space; :func:`inject_graph_tokens` puts them where the prompt's ``<kg>`` placeholder was.
Each token remembers its node (``node_index``) so that answers can point back to the graph.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ravlm_graph.utils.graph import scatter
from ravlm_graph.nn.fusion.base import Fusion, FusionConfig, GraphInputs, GraphTokens, TrunkInputs, _mlp, _reset, _shape


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
        inference_tokens (int | None): top-N nodes per graph in eval mode (default None:
            ``num_tokens``). The MLP is shared by every token, so a model trained with N
            tokens can read fewer at inference (cheaper: fewer positions in the trunk).
        hidden_dim (int | None): MLP hidden width (default None: ``model_dim``).
        dropout (float): dropout in the MLP (default 0.0).

    Shapes:
        input: node_states (N, H), batch (N,) long, relevance (N,), origin (N,) long.
        output: :class:`GraphTokens` with T = min(num_tokens, largest graph), at least 1
        (T = 1 with ``pooled``).
    """

    def __init__(self, graph_dim: int, model_dim: int, num_tokens: int = 32, pooled: bool = False,
                 hidden_dim: int | None = None, dropout: float = 0.0, inference_tokens: int | None = None) -> None:
        super().__init__()
        self.graph_dim, self.model_dim, self.num_tokens, self.pooled = graph_dim, model_dim, num_tokens, pooled
        self.inference_tokens = inference_tokens
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
        t = max(1, min(self.active_tokens, int(counts.max()) if b else 0))
        # Order: by graph, seeds first, then by decreasing relevance, ties by node order. Two
        # stable sorts (relevance, then graph and seed together) give the same order as three.
        order = torch.argsort(-relevance.float(), stable=True) if relevance is not None \
            else torch.arange(n, device=dev)  # best first
        if b == 1 and n:  # one graph (one question): the same choice with fewer operations
            return self._one_graph(node_states, order, origin, t)
        group = batch.index_select(0, order)
        if origin is not None:
            group = group * 2 + (origin.index_select(0, order) <= 0).long()  # seeds first within a graph
        order = order.index_select(0, torch.argsort(group, stable=True))  # grouped by graph, ranks kept
        graph_of = batch.index_select(0, order)  # (N,) sorted
        start = torch.cumsum(counts, 0) - counts  # (B,) first row of each graph in ``order``
        rank = torch.arange(n, device=dev) - start.index_select(0, graph_of)  # (N,) rank within its graph
        # the first t of each graph go to their slot; the others to a spare slot past the end
        slot = torch.where(rank < t, graph_of * t + rank, b * t)
        node_index = torch.full((b * t + 1,), -1, dtype=torch.long, device=dev).index_put_(
            (slot,), order)[: b * t].view(b, t)  # (B, T)
        mask = node_index >= 0  # (B, T)
        picked = (node_states.index_select(0, node_index.view(-1).clamp(min=0)).view(b, t, -1) if n
                  else node_states.new_zeros(b, t, self.graph_dim))
        tokens = self.mlp(picked) * mask.unsqueeze(-1)  # (B, T, D)
        return GraphTokens(tokens=tokens, mask=mask, node_index=node_index)

    def _one_graph(self, node_states, order, origin, t: int) -> GraphTokens:
        """:meth:`forward` for a batch of one non-empty graph (``t`` <= its node count), its
        nodes in ``order`` (best first): every token is real, so no slot bookkeeping; the same
        nodes in the same order, the same tokens."""
        dev = node_states.device
        if origin is not None:  # seeds first, ranks kept
            order = order.index_select(0, torch.argsort((origin.index_select(0, order) <= 0).long(), stable=True))
        top = order[:t]
        tokens = self.mlp(node_states.index_select(0, top)).unsqueeze(0)  # (1, T, D)
        return GraphTokens(tokens=tokens, mask=torch.ones(1, t, dtype=torch.bool, device=dev),
                           node_index=top.view(1, t))

    @property
    def active_tokens(self) -> int:
        """Top-N nodes per graph in the current mode: ``inference_tokens`` in eval mode when
        set, else ``num_tokens``."""
        if not self.training and self.inference_tokens is not None:
            return self.inference_tokens
        return self.num_tokens

    def _pooled(self, node_states, batch, counts, graph_state) -> GraphTokens:
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
        extra = f", inference_tokens={self.inference_tokens}" if self.inference_tokens is not None else ""
        return (f"{type(self).__name__}({self.graph_dim}, {self.model_dim}, num_tokens={self.num_tokens}, "
                f"pooled={self.pooled}{extra})")


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
    if b == 1:  # one row: slices and a concatenation (the same values)
        row = input_ids[0].tolist()
        if row.count(kg_token_id) == 1 and bool(mask.all()):
            p = row.index(kg_token_id)
            dev = input_embeds.device
            embeds = torch.cat([input_embeds[:, :p], tokens.to(input_embeds.dtype), input_embeds[:, p + 1:]], 1)
            am = (attention_mask.long() if attention_mask is not None
                  else torch.ones(1, length, dtype=torch.long, device=dev))
            out_mask = torch.cat([am[:, :p], am.new_ones(1, t), am[:, p + 1:]], 1)
            return InjectedGraphTokens(embeds=embeds, attention_mask=out_mask,
                                       positions=torch.arange(p, p + t, device=dev).unsqueeze(0))
    is_kg = input_ids == kg_token_id  # (B, L)
    counts = is_kg.sum(1)  # (B,)
    if not bool((counts == 1).all()):
        row = int((counts != 1).nonzero()[0, 0])
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
    # Flat row-major positions: the text entries kept (all but the placeholder) and the tokens.
    rows = torch.arange(b, device=dev).unsqueeze(1) * new_len  # (B, 1)
    kept = (~is_kg).view(-1).nonzero().view(-1)  # (B * (L - 1),) flat text entries kept
    text_at = (rows + text_dest).view(-1).index_select(0, kept)
    token_at = (rows + positions).view(-1)  # (B * T,)
    embeds = input_embeds.new_zeros(b * new_len, d)
    embeds.index_copy_(0, text_at, input_embeds.reshape(-1, d).index_select(0, kept))
    embeds.index_copy_(0, token_at, tokens.to(input_embeds.dtype).reshape(-1, d))
    out_mask = torch.zeros(b * new_len, dtype=torch.long, device=dev)
    if attention_mask is None:
        out_mask.index_fill_(0, text_at, 1)
    else:
        out_mask.index_copy_(0, text_at, attention_mask.long().reshape(-1).index_select(0, kept))
    out_mask.index_copy_(0, token_at, mask.long().reshape(-1))
    return InjectedGraphTokens(embeds=embeds.view(b, new_len, d), attention_mask=out_mask.view(b, new_len),
                               positions=positions)


class GraphTokenFusion(Fusion):
    """The ``graph_tokens`` kind: a :class:`GraphTokenProjector` whose tokens replace the
    prompt's ``<kg>`` placeholder; the trunk attends to them like to words.

    Args:
        config (FusionConfig): ``graph_dim``, ``model_dim``, ``num_graph_tokens``,
            ``inference_graph_tokens``, ``pooled``, ``hidden_dim`` are read.
    """

    graph_placeholder = True

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        self.projector = GraphTokenProjector(config.graph_dim, config.model_dim, config.num_graph_tokens,
                                             pooled=config.pooled, hidden_dim=config.hidden_dim,
                                             inference_tokens=config.inference_graph_tokens)

    @property
    def reads_graph_state(self) -> bool:
        return self.projector.pooled  # one node per token reads node states only

    def tokens(self, graph: GraphInputs) -> GraphTokens:
        """The graph tokens of a batch."""
        return self.projector(graph.node_states, graph.batch, graph.relevance, graph.origin,
                              num_graphs=graph.num_graphs, graph_state=graph.graph_state)

    def into_trunk(self, inputs: TrunkInputs, graph: GraphInputs | None) -> TrunkInputs:
        gt = self.tokens(graph)
        embeds, mask, positions = inject_graph_tokens(inputs.embeds, inputs.input_ids, inputs.kg_token_id, gt,
                                                      attention_mask=inputs.attention_mask)
        return TrunkInputs(embeds=embeds, input_ids=inputs.input_ids, attention_mask=mask,
                           kg_token_id=inputs.kg_token_id, token_positions=positions, token_nodes=gt.node_index)
