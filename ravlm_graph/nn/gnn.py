"""Graph encoders: ConceptNet subgraph -> node states and one vector per graph.

A :class:`GraphEncoder` reads a graph or a batch of graphs (a
:class:`~ravlm_graph.utils.graph.GraphData`/``GraphBatch``, or a PyG ``Data``/``Batch``) whose nodes carry the text embedding
of their concept name (``x``), where they came from (``origin``: 0 other, 1 question,
2 image, 3 both) and how relevant retrieval found them (``node_relevance``). It stacks
``num_layers`` relational message-passing layers of one kind, chosen by
:attr:`GNNConfig.kind`:

* ``"rgcn"`` — :class:`~ravlm_graph.nn.conv.RGCNConv`, one weight per relation (with basis or
  block-diagonal decomposition), Schlichtkrull et al. 2018, https://arxiv.org/abs/1703.06103
* ``"gatv2"`` — :class:`~ravlm_graph.nn.conv.GATv2Conv` with relation embeddings as edge
  features, Brody et al. 2022, https://arxiv.org/abs/2105.14491
* ``"transformer"`` — :class:`~ravlm_graph.nn.conv.TransformerConv` with relation embeddings
  as edge features, Shi et al. 2021, https://arxiv.org/abs/2009.03509

Each layer is ``h <- LayerNorm(h + Dropout(GELU(conv(h))))``. Graphs are pooled with
attention (a learned score per node, softmax within each graph). The three convolutions
(:mod:`ravlm_graph.nn.conv`) are plain PyTorch and compute what ``torch_geometric.nn``'s
layers of the same names compute, with the same parameter names, so checkpoints written
with either load into the other; the encoder does not import ``torch_geometric``.

Kinds are registered in :data:`GNNS` as :class:`GNNKind` subclasses (how to build one
convolution, what it reads per edge). Adding a kind is one new file with its ``GNNKind``
and one ``GNNS.register`` line below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ravlm_graph.utils.config import Config, check_bool, check_choice, check_fraction, check_int
from ravlm_graph.utils.graph import scatter, segment_softmax
from ravlm_graph.utils.registry import Registry
from ravlm_graph.nn.conv import GATv2Conv, RGCNConv, TransformerConv

__all__ = ["GNNS", "GNN_KINDS", "GNNConfig", "GraphEncoder", "GraphEncoderOutput"]

#: GNN kind -> its :class:`GNNKind` (entries may be ``"module:attr"`` strings).
GNNS = Registry("GNN")

#: Upper bounds of the sizes a config may ask for (far above any use; they stop a typo from
#: asking for terabytes).
MAX_WIDTH = 16384
MAX_LAYERS = 64
MAX_RELATIONS = 100_000


@dataclass(frozen=True)
class GNNConfig(Config):
    """Graph encoder (subgraph -> node states).

    Args:
        kind (str): ``"rgcn"``, ``"gatv2"`` or ``"transformer"`` (default ``"gatv2"``).
        in_dim (int): width of the node-name text embeddings ``x`` (default 384, MiniLM).
        hidden_dim (int): node-state width H (default 256).
        num_layers (int): message-passing layers (default 2; 0 keeps the input projection only).
        num_relations (int): relation types; ``edge_type`` values lie in ``[0, num_relations)``
            (default 64).
        num_origins (int): node origins: 0 other, 1 question, 2 image, 3 both (default 4).
        heads (int): attention heads of ``gatv2``/``transformer``; must divide ``hidden_dim``
            (default 4; unused by ``rgcn``).
        dropout (float): dropout on features and attention weights (default 0.1).
        use_relevance (bool): add a learned feature of ``node_relevance`` to the input
            (default True).
        reverse_edges (bool): also pass messages against each edge, as a separate relation
            type ``r + num_relations`` (the inverse relations of R-GCN; default True).
        num_bases (int | None): ``rgcn`` basis decomposition (default None).
        num_blocks (int | None): ``rgcn`` block-diagonal decomposition; must divide
            ``hidden_dim`` (default None). At most one of ``num_bases``/``num_blocks``.
        relation_dim (int | None): width of the relation embeddings used as edge features
            by ``gatv2``/``transformer`` (default None: ``hidden_dim``).
    """

    kind: str = "gatv2"
    in_dim: int = 384
    hidden_dim: int = 256
    num_layers: int = 2
    num_relations: int = 64
    num_origins: int = 4
    heads: int = 4
    dropout: float = 0.1
    use_relevance: bool = True
    reverse_edges: bool = True
    num_bases: int | None = None
    num_blocks: int | None = None
    relation_dim: int | None = None

    def validate(self) -> None:
        o = "GNNConfig"
        check_choice(o, "kind", self.kind, GNNS)
        check_int(o, "in_dim", self.in_dim, 1, MAX_WIDTH)
        check_int(o, "hidden_dim", self.hidden_dim, 1, MAX_WIDTH)
        check_int(o, "num_layers", self.num_layers, 0, MAX_LAYERS)
        check_int(o, "num_relations", self.num_relations, 1, MAX_RELATIONS)
        check_int(o, "num_origins", self.num_origins, 1, 64)
        check_int(o, "heads", self.heads, 1, 256)
        check_fraction(o, "dropout", self.dropout)
        for name in ("use_relevance", "reverse_edges"):
            check_bool(o, name, getattr(self, name))
        if GNNS.get(self.kind).splits_heads and self.hidden_dim % self.heads:
            raise ValueError(f"{o}.heads: expected a divisor of hidden_dim={self.hidden_dim} "
                             f"(each head gets hidden_dim // heads channels), found {self.heads}")
        for name in ("num_bases", "num_blocks", "relation_dim"):
            if getattr(self, name) is not None:
                check_int(o, name, getattr(self, name), 1, MAX_WIDTH)
        if self.num_bases is not None and self.num_blocks is not None:
            raise ValueError(f"{o}: expected at most one of num_bases / num_blocks, found "
                             f"num_bases={self.num_bases} and num_blocks={self.num_blocks}")
        if self.num_blocks is not None and self.hidden_dim % self.num_blocks:
            raise ValueError(f"{o}.num_blocks: expected a divisor of hidden_dim={self.hidden_dim}, "
                             f"found {self.num_blocks}")

    @property
    def total_relations(self) -> int:
        """Relation types seen by the convolutions (doubled with ``reverse_edges``)."""
        return self.num_relations * (2 if self.reverse_edges else 1)


@dataclass
class GraphEncoderOutput:
    """Output of :meth:`GraphEncoder.forward`.

    Fields:
        node_states (N, H) float: the last layer's node states.
        graph_state (B, H) float: attention-pooled state per graph (zeros for an empty graph);
            None when the forward pass was asked not to pool.
        batch (N,) long: graph of each node.
        pool_weights (N,) float: attention-pooling weight of each node (sums to 1 per
            non-empty graph); a per-node attribution of ``graph_state`` (None without pooling).
    """

    node_states: torch.Tensor
    graph_state: torch.Tensor | None
    batch: torch.Tensor
    pool_weights: torch.Tensor | None


# ----------------------------------------------------------------------- layer factory


class GNNKind:
    """A registered GNN kind: how to build one convolution for a config.

    Attributes:
        edge_input (str): what the convolution reads per edge: ``"type"`` (relation ids)
            or ``"attr"`` (relation embeddings, one table shared by the layers).
        splits_heads (bool): ``hidden_dim`` is split across ``heads`` (must divide it).
    """

    edge_input: str = "attr"
    splits_heads: bool = False

    @staticmethod
    def build(config: "GNNConfig") -> nn.Module:
        raise NotImplementedError


class RGCNKind(GNNKind):
    """``rgcn``: one weight per relation (basis or block-diagonal decomposition)."""

    edge_input = "type"

    @staticmethod
    def build(config: "GNNConfig") -> nn.Module:
        h = config.hidden_dim
        return RGCNConv(h, h, config.total_relations, num_bases=config.num_bases, num_blocks=config.num_blocks)


class GATv2Kind(GNNKind):
    """``gatv2``: attention with relation embeddings as edge features."""

    splits_heads = True

    @staticmethod
    def build(config: "GNNConfig") -> nn.Module:
        h = config.hidden_dim
        return GATv2Conv(h, h // config.heads, heads=config.heads, dropout=config.dropout,
                         edge_dim=config.relation_dim or h, add_self_loops=True)


class TransformerKind(GNNKind):
    """``transformer``: graph transformer attention with relation embeddings as edge features."""

    splits_heads = True

    @staticmethod
    def build(config: "GNNConfig") -> nn.Module:
        h = config.hidden_dim
        return TransformerConv(h, h // config.heads, heads=config.heads, dropout=config.dropout,
                               edge_dim=config.relation_dim or h, root_weight=True)


GNNS.register("rgcn", RGCNKind)
GNNS.register("gatv2", GATv2Kind)
GNNS.register("transformer", TransformerKind)

#: The registered kinds at import time (``GNNS.names()`` is always current).
GNN_KINDS: tuple[str, ...] = GNNS.names()


class _ConvBlock(nn.Module):
    """One layer: ``h <- LayerNorm(h + Dropout(GELU(conv(h, edges))))``."""

    def __init__(self, conv: nn.Module, edge_input: str, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.conv = conv
        self.edge_input = edge_input
        self.norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        self.norm.reset_parameters()

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_type: torch.Tensor,
                edge_attr: torch.Tensor | None) -> torch.Tensor:
        if self.edge_input == "type":
            m = self.conv(h, edge_index, edge_type)  # (N, H)
        elif isinstance(self.conv, (GATv2Conv, TransformerConv)):
            # edge_attr is the relation table: the conv projects it once, then reads it per edge
            m = self.conv(h, edge_index, edge_attr, edge_type=edge_type)  # (N, H)
        else:  # another layer (e.g. torch_geometric's) gets one feature row per edge
            m = self.conv(h, edge_index, edge_attr[edge_type])  # (N, H)
        return self.norm(h + self.dropout(nn.functional.gelu(m)))  # (N, H)

    def __repr__(self) -> str:
        return f"_ConvBlock({self.conv})"


# ----------------------------------------------------------------------- the encoder


class GraphEncoder(nn.Module):
    r"""Relational GNN over a retrieved subgraph, with attention pooling per graph.

    Input features: ``h0 = LayerNorm(W x + E_origin[origin] + w · relevance)``; then
    ``num_layers`` blocks of the chosen convolution (see the module docstring for the
    papers), each with a residual connection and LayerNorm; then attention pooling
    ``graph_state_b = sum_{i in b} softmax_b(a · h_i) h_i``.

    Args:
        config (GNNConfig): the configuration.

    Shapes:
        input: ``data.x`` (N, in_dim) float; ``data.edge_index`` (2, E) long;
        ``data.edge_type`` (E,) long; ``data.origin`` (N,) long; ``data.node_relevance``
        (N,) float, optional; ``data.batch`` (N,) long, optional (one graph without it).
        output: :class:`GraphEncoderOutput` with ``node_states`` (N, H), ``graph_state`` (B, H).
    """

    def __init__(self, config: GNNConfig) -> None:
        super().__init__()
        if not isinstance(config, GNNConfig):
            raise TypeError(f"GraphEncoder: expected a GNNConfig, found {type(config).__name__}")
        self.config = config
        h = config.hidden_dim
        self.input_proj = nn.Linear(config.in_dim, h)
        self.origin_emb = nn.Embedding(config.num_origins, h)
        self.relevance_proj = nn.Linear(1, h) if config.use_relevance else None
        self.input_norm = nn.LayerNorm(h)
        self.dropout = nn.Dropout(config.dropout)
        kind = GNNS.get(config.kind)
        blocks = [_ConvBlock(kind.build(config), kind.edge_input, h, config.dropout) for _ in range(config.num_layers)]
        self.layers = nn.ModuleList(blocks)
        needs_attr = any(b.edge_input == "attr" for b in blocks)
        # One relation table shared by all layers; each conv has its own edge projection.
        self.relation_emb = nn.Embedding(config.total_relations, config.relation_dim or h) if needs_attr else None
        self.pool_gate = nn.Linear(h, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.input_proj.reset_parameters()
        nn.init.normal_(self.origin_emb.weight, std=0.02)
        if self.relevance_proj is not None:
            self.relevance_proj.reset_parameters()
        self.input_norm.reset_parameters()
        for block in self.layers:
            block.reset_parameters()
        if self.relation_emb is not None:
            nn.init.normal_(self.relation_emb.weight, std=1.0 / math.sqrt(self.relation_emb.embedding_dim))
        self.pool_gate.reset_parameters()

    def forward(self, data, num_graphs: int | None = None, pool: bool = True) -> GraphEncoderOutput:
        """Encode a graph or a batch of graphs.

        Args:
            data (GraphData | GraphBatch | torch_geometric Data | Batch): the graph(s); see
                the class docstring.
            num_graphs (int | None): B; default ``data.num_graphs`` for a batch, else
                ``batch.max() + 1`` (give it when trailing graphs may be empty).
            pool (bool): compute ``graph_state`` and ``pool_weights`` (default True); False
                leaves both None, for a caller that reads the node states only.
        """
        x, edge_index, edge_type, origin, relevance, batch, b = self._read(data, num_graphs)
        h = self.input_proj(x) + self.origin_emb(origin)  # (N, H)
        if self.relevance_proj is not None:
            h = h + self.relevance_proj(relevance.unsqueeze(-1).to(h.dtype))  # (N, H)
        h = self.dropout(self.input_norm(h))  # (N, H)
        if self.config.reverse_edges:
            edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)  # (2, 2E)
            edge_type = torch.cat([edge_type, edge_type + self.config.num_relations])  # (2E,)
        # The relation table itself (T, R): the convs project it once and gather per edge.
        edge_attr = self.relation_emb.weight if self.relation_emb is not None else None
        for block in self.layers:
            h = block(h, edge_index, edge_type, edge_attr)  # (N, H)
        graph_state, weights = self._pool(h, batch, b) if pool else (None, None)
        return GraphEncoderOutput(node_states=h, graph_state=graph_state, batch=batch, pool_weights=weights)

    def _pool(self, h: torch.Tensor, batch: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        score = self.pool_gate(h).squeeze(-1)  # (N,)
        weights = segment_softmax(score, batch, b)  # (N,)
        # scatter with dim_size=B leaves zeros for graphs without nodes.
        pooled = scatter(h * weights.unsqueeze(-1), batch, dim=0, dim_size=b, reduce="sum")  # (B, H)
        return pooled, weights

    def _read(self, data, num_graphs: int | None):
        cfg = self.config
        x = getattr(data, "x", None)
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != cfg.in_dim:
            found = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"GraphEncoder: expected data.x of shape (N, in_dim={cfg.in_dim}), found {found}")
        n, dev = x.shape[0], x.device
        edge_index = getattr(data, "edge_index", None)
        if edge_index is None:
            edge_index = torch.empty(2, 0, dtype=torch.long, device=dev)
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"GraphEncoder: expected data.edge_index of shape (2, E), found {tuple(edge_index.shape)}")
        e = edge_index.shape[1]
        edge_type = getattr(data, "edge_type", None)
        if edge_type is None:
            if e:
                raise ValueError(f"GraphEncoder: expected data.edge_type (E,) long for the {e} edges, found none")
            edge_type = torch.empty(0, dtype=torch.long, device=dev)
        if edge_type.shape != (e,):
            raise ValueError(f"GraphEncoder: expected data.edge_type of shape ({e},), found {tuple(edge_type.shape)}")
        if e:  # one pass for both ends of each range
            lo, hi = (int(v) for v in torch.aminmax(edge_type))
            if lo < 0 or hi >= cfg.num_relations:
                raise ValueError(f"GraphEncoder: expected edge_type values in [0, {cfg.num_relations}), found "
                                 f"[{lo}, {hi}]")
            lo, hi = (int(v) for v in torch.aminmax(edge_index))
            if lo < 0 or hi >= n:
                raise ValueError(f"GraphEncoder: expected edge_index values in [0, {n}), found [{lo}, {hi}]")
        origin = getattr(data, "origin", None)
        if origin is None or origin.shape != (n,):
            found = tuple(origin.shape) if isinstance(origin, torch.Tensor) else origin
            raise ValueError(f"GraphEncoder: expected data.origin of shape ({n},) long "
                             f"(0 other, 1 question, 2 image, 3 both), found {found}")
        if n:
            lo, hi = (int(v) for v in torch.aminmax(origin))
            if lo < 0 or hi >= cfg.num_origins:
                raise ValueError(f"GraphEncoder: expected origin values in [0, {cfg.num_origins}), found [{lo}, {hi}]")
        relevance = getattr(data, "node_relevance", None)
        if relevance is None:
            relevance = torch.zeros(n, device=dev)
        elif relevance.shape != (n,):
            raise ValueError(f"GraphEncoder: expected data.node_relevance of shape ({n},), found "
                             f"{tuple(relevance.shape)}")
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(n, dtype=torch.long, device=dev)
        elif batch.shape != (n,):
            raise ValueError(f"GraphEncoder: expected data.batch of shape ({n},), found {tuple(batch.shape)}")
        if num_graphs is None:
            # A batch (ours or PyG's) knows its size; a single graph has none.
            num_graphs = getattr(data, "num_graphs", None) if getattr(data, "ptr", None) is not None else None
        top = int(batch.max()) if n else -1
        if num_graphs is None:
            num_graphs = top + 1 if n else 1
        if n and top >= num_graphs:
            raise ValueError(f"GraphEncoder: expected batch values in [0, {num_graphs}), found {top}")
        return x, edge_index.long(), edge_type.long(), origin.long(), relevance, batch.long(), int(num_graphs)

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}({c.in_dim}, {c.hidden_dim}, kind={c.kind!r}, "
                f"num_layers={c.num_layers}, num_relations={c.num_relations})")
