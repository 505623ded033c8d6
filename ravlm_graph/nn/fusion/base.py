"""What every fusion kind shares: its config, the inputs it reads and the interface a model calls.

A fusion kind is one way the retrieved graph reaches a text trunk (a transformer reading
the question). A model never asks a kind's name: it asks the kind's class what it needs
(:attr:`Fusion.uses_graph`, :attr:`Fusion.uses_gnn`, :attr:`Fusion.verbalizes_facts`,
:attr:`Fusion.graph_placeholder`, :attr:`Fusion.image_in_trunk`) and calls its four
steps, each a no-op by default:

1. :meth:`Fusion.attach` — once, at construction: hooks on the trunk's layers.
2. :meth:`Fusion.into_trunk` — graph tokens into the trunk's input sequence.
3. :meth:`Fusion.reading` — a context around the trunk's forward pass (cross-attention memory).
4. :meth:`Fusion.pool` — the trunk's pooled output fused with pooled image and graph vectors.

Kinds are registered by name in :data:`ravlm_graph.nn.fusion.FUSIONS`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar, ContextManager, Sequence

import torch
from torch import nn

from ravlm_graph.utils.config import Config, check_bool, check_fraction, check_int

__all__ = ["Fusion", "FusionConfig", "GraphInputs", "GraphTokens", "TrunkInputs"]


@dataclass(frozen=True)
class FusionConfig(Config):
    """Settings of a fusion kind (built by the model from its own config and its trunk).

    Args:
        kind (str): the registered name (see ``FUSIONS``). Default ``"graph_tokens"``.
        model_dim (int): the trunk's hidden size D (default 384).
        graph_dim (int): width H of the node states the fusion reads (default 256).
        num_graph_tokens (int): graph tokens per question, the top-N nodes (default 32).
        inference_graph_tokens (int | None): graph tokens per question in eval mode (default
            None: ``num_graph_tokens``).
        pooled (bool): one pooled graph token per question instead of one per node
            (default False).
        heads (int): attention heads of cross-attention adapters; must divide ``model_dim``
            (default 4).
        num_layers (int): trunk layers, one adapter after each for cross-attention (default 1).
        hidden_dim (int | None): hidden width of projector / pooled-fusion MLPs (default None:
            ``model_dim``).
        dropout (float): dropout inside the cross-attention adapters (default 0.0).

    Settings a kind does not use are ignored, so switching ``kind`` alone is always a valid
    ablation.
    """

    kind: str = "graph_tokens"
    model_dim: int = 384
    graph_dim: int = 256
    num_graph_tokens: int = 32
    inference_graph_tokens: int | None = None
    pooled: bool = False
    heads: int = 4
    num_layers: int = 1
    hidden_dim: int | None = None
    dropout: float = 0.0

    def validate(self) -> None:
        o = "FusionConfig"
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError(f"{o}.kind: expected a registered fusion name, found {self.kind!r}")
        check_int(o, "model_dim", self.model_dim, 1, 65536)
        check_int(o, "graph_dim", self.graph_dim, 1, 65536)
        check_int(o, "num_graph_tokens", self.num_graph_tokens, 1, 4096)
        if self.inference_graph_tokens is not None:
            check_int(o, "inference_graph_tokens", self.inference_graph_tokens, 1, 4096)
        check_int(o, "heads", self.heads, 1, 1024)
        check_int(o, "num_layers", self.num_layers, 1, 1024)
        if self.hidden_dim is not None:
            check_int(o, "hidden_dim", self.hidden_dim, 1, 65536)
        check_bool(o, "pooled", self.pooled)
        check_fraction(o, "dropout", self.dropout)


@dataclass
class GraphTokens:
    """Graph tokens of a batch, in the trunk's embedding space.

    Fields:
        tokens (B, T, D) float: one token per selected node (zeros on padding).
        mask (B, T) bool: real tokens.
        node_index (B, T) long: index of each token's node in the batch's node axis (the
            rows of ``node_states``); -1 for padding and for a pooled token.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    node_index: torch.Tensor


@dataclass
class GraphInputs:
    """The graph side of a batch, as a fusion reads it.

    Fields:
        node_states (N, H) float: per-node states (a GNN's output, or node-name features).
        batch (N,) long: graph (question) of each node.
        relevance (N,) float: retrieval relevance, ranks the nodes for graph tokens.
        origin (N,) long: 0 other, 1 question, 2 image, 3 both (> 0: a seed).
        num_graphs (int): B.
        graph_state (B, H) float or None: one pooled vector per graph (None without a GNN).
    """

    node_states: torch.Tensor
    batch: torch.Tensor
    relevance: torch.Tensor
    origin: torch.Tensor
    num_graphs: int
    graph_state: torch.Tensor | None = None


@dataclass
class TrunkInputs:
    """The trunk's input sequence, as fusions change it.

    Fields:
        embeds (B, L, D) float: input embeddings.
        input_ids (B, L) long: their token ids (-1 where a token has no id).
        attention_mask (B, L): 1 for real positions.
        kg_token_id (int): id of the ``<kg>`` placeholder.
        token_positions (B, T) long or None: where graph tokens sit in ``embeds``.
        token_nodes (B, T) long or None: node of each graph token in the batch's node axis (-1: padding).
    """

    embeds: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    kg_token_id: int
    token_positions: torch.Tensor | None = None
    token_nodes: torch.Tensor | None = None


class Fusion(nn.Module):
    """Base of the fusion kinds. Subclasses set the class attributes and override the steps they need.

    Class attributes (read by models and feature builders instead of a kind's name):
        uses_graph (bool): the batch carries a retrieved subgraph (False: no knowledge graph).
        uses_gnn (bool): node states come from message passing (False: node-name features).
        verbalizes_facts (bool): the subgraph's top facts are written into the trunk's text.
        graph_placeholder (bool): the text holds one ``<kg>`` placeholder for graph tokens.
        image_in_trunk (bool): image tokens go into the trunk's input (at ``<img>``); False:
            the pooled image vector reaches :meth:`pool` only.
        variant (str | None): name of its ablation variant (default: the registered name).

    Args:
        config (FusionConfig): the settings.
    """

    uses_graph: ClassVar[bool] = True
    uses_gnn: ClassVar[bool] = True
    verbalizes_facts: ClassVar[bool] = False
    graph_placeholder: ClassVar[bool] = False
    image_in_trunk: ClassVar[bool] = True
    variant: ClassVar[str | None] = None

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        if not isinstance(config, FusionConfig):
            raise TypeError(f"{type(self).__name__}: expected a FusionConfig, found {type(config).__name__}")
        self.config = config

    def reset_parameters(self) -> None:
        for m in self.children():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    @property
    def reads_graph_state(self) -> bool:
        """Whether this kind reads ``GraphInputs.graph_state`` (default True); a model may
        skip the GNN's pooling for a kind that does not."""
        return True

    def attach(self, layers: Sequence[nn.Module]) -> None:
        """Called once with the trunk's layers (e.g. to hook adapters after them)."""

    def into_trunk(self, inputs: TrunkInputs, graph: GraphInputs | None) -> TrunkInputs:
        """The trunk's input with this kind's graph tokens in it (default: unchanged)."""
        return inputs

    def reading(self, graph: GraphInputs | None) -> ContextManager[Any]:
        """A context held around the trunk's forward pass (default: none)."""
        return contextlib.nullcontext()

    def pool(self, query: torch.Tensor, image: torch.Tensor, graph: GraphInputs | None) -> torch.Tensor:
        """Fuse the trunk's pooled state (B, D) with the pooled image (B, D) (default: the query)."""
        return query

    def extra_repr(self) -> str:
        return f"kind={self.config.kind!r}"


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim))


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.LayerNorm)):
            m.reset_parameters()


def _shape(t: Any) -> Any:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
