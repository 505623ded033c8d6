"""Relational graph convolutions in plain PyTorch: GATv2, R-GCN and graph-transformer layers.

Each layer computes what the ``torch_geometric.nn`` layer of the same name computes (on
CPU without ``pyg-lib``/``torch-scatter``) and has the same parameters, parameter names,
shapes and initialisation (the same random draws in the same order), so state dicts move
between the two with strict key checks and a seeded model starts from the same weights.
``tests/nn/test_conv.py`` checks the outputs against torch_geometric's layers. Importing
this module does not import ``torch_geometric`` (which costs seconds at start-up).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ravlm_graph.utils.graph import scatter, segment_softmax

__all__ = ["GATv2Conv", "RGCNConv", "TransformerConv"]


def _glorot(t: torch.Tensor | None) -> None:
    if t is not None:
        bound = math.sqrt(6.0 / (t.size(-2) + t.size(-1)))
        t.data.uniform_(-bound, bound)


def _uniform(fan_in: int, t: torch.Tensor | None) -> None:
    if t is not None:
        bound = 1.0 / math.sqrt(fan_in)
        t.data.uniform_(-bound, bound)


class _Linear(nn.Linear):
    """``nn.Linear`` initialised like ``torch_geometric.nn.Linear`` (glorot or kaiming-uniform
    weight; uniform bias)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, glorot: bool = False) -> None:
        self._glorot = glorot
        super().__init__(in_features, out_features, bias=bias)

    def reset_parameters(self) -> None:
        if self._glorot:
            _glorot(self.weight)
        else:  # kaiming_uniform(fan=in, a=sqrt(5)): bound sqrt(6 / ((1 + 5) fan))
            _uniform(self.in_features, self.weight)
        _uniform(self.in_features, self.bias)  # PyG's default bias initialiser, glorot weight or not


def _check_edges(name: str, x: torch.Tensor, edge_index: torch.Tensor, per_edge: torch.Tensor | None,
                 what: str) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name}: expected x of shape (N, in_channels), found {tuple(x.shape)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{name}: expected edge_index of shape (2, E), found {tuple(edge_index.shape)}")
    if per_edge is not None and per_edge.shape[0] != edge_index.shape[1]:
        raise ValueError(f"{name}: expected {what} with {edge_index.shape[1]} rows (one per edge), "
                         f"found {tuple(per_edge.shape)}")


def _edge_features(lin_edge: nn.Module, edge_attr: torch.Tensor, edge_type: torch.Tensor | None,
                   name: str, heads: int, channels: int) -> torch.Tensor:
    """``lin_edge`` of each edge's feature, (E, H, C).

    With ``edge_type``, ``edge_attr`` is a table of per-type features (T, edge_dim) and
    edge ``i`` has row ``edge_type[i]``: the table is projected once and the rows gathered
    (the same values as projecting the gathered rows, with T instead of E products).
    """
    if edge_type is None:
        if edge_attr.dim() == 1:
            edge_attr = edge_attr.view(-1, 1)
        return lin_edge(edge_attr).view(-1, heads, channels)
    _check_relation_table(edge_attr, edge_type, name)
    return lin_edge(edge_attr).view(-1, heads, channels).index_select(0, edge_type)


def _check_relation_table(edge_attr: torch.Tensor, edge_type: torch.Tensor, name: str) -> None:
    """``edge_attr`` is a (T, edge_dim) table and every ``edge_type`` one of its rows."""
    if edge_attr.dim() != 2:
        raise ValueError(f"{name}: with edge_type, expected edge_attr as a (T, edge_dim) table, "
                         f"found {tuple(edge_attr.shape)}")
    if edge_type.numel():
        lo, hi = (int(v) for v in torch.aminmax(edge_type))
        if lo < 0 or hi >= edge_attr.shape[0]:
            raise ValueError(f"{name}: edge_type indexes a table of {edge_attr.shape[0]} rows, "
                             f"found values in [{lo}, {hi}]")


class GATv2Conv(nn.Module):
    r"""GATv2 attention (Brody et al. 2022, https://arxiv.org/abs/2105.14491) with edge
    features, self-loops and concatenated heads:
    ``alpha_ij = softmax_j(a · LeakyReLU(W_r x_i + W_l x_j + W_e e_ij))``,
    ``out_i = concat_h(sum_j alpha_ij W_l x_j) + b``.

    Existing self-loops are removed and one self-loop per node added, its edge feature the
    mean of the node's incoming edge features (PyG's ``fill_value="mean"``; 0 without any).

    Args:
        in_channels (int): input width F.
        out_channels (int): width C per head.
        heads (int): attention heads H (default 1); the output is (N, H * C).
        negative_slope (float): LeakyReLU slope (default 0.2).
        dropout (float): dropout on the attention weights while training (default 0).
        edge_dim (int | None): edge-feature width (default None: no edge features).
        add_self_loops (bool): add self-loops as above (default True).
        bias (bool): learn an output bias (default True).

    Shapes:
        x (N, F), edge_index (2, E) long (row 0 source, row 1 target), edge_attr (E, edge_dim)
        -> (N, H * C).
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1, negative_slope: float = 0.2,
                 dropout: float = 0.0, edge_dim: int | None = None, add_self_loops: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.negative_slope, self.dropout = negative_slope, dropout
        self.edge_dim, self.add_self_loops = edge_dim, add_self_loops
        self.lin_l = _Linear(in_channels, heads * out_channels, bias=bias, glorot=True)
        self.lin_r = _Linear(in_channels, heads * out_channels, bias=bias, glorot=True)
        self.att = nn.Parameter(torch.empty(1, heads, out_channels))
        self.lin_edge = (_Linear(edge_dim, heads * out_channels, bias=False, glorot=True)
                         if edge_dim is not None else None)
        self.bias = nn.Parameter(torch.empty(heads * out_channels)) if bias else None
        self._table_cache: tuple | None = None  # see _projected_table
        self._att_cache: tuple | None = None  # see _att_matrix
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin_l.reset_parameters()
        self.lin_r.reset_parameters()
        if self.lin_edge is not None:
            self.lin_edge.reset_parameters()
        self._table_cache = self._att_cache = None
        _glorot(self.att)
        if self.bias is not None:
            self.bias.data.zero_()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                edge_attr: torch.Tensor | None = None, edge_type: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_type`` (E,) long, optional: ``edge_attr`` is then a (T, edge_dim) table of
        per-type features and edge ``i`` reads row ``edge_type[i]`` (same output as passing
        the gathered rows, cheaper when T is much smaller than E)."""
        _check_edges("GATv2Conv", x, edge_index, edge_attr if edge_type is None else edge_type,
                     "edge_attr" if edge_type is None else "edge_type")
        H, C = self.heads, self.out_channels
        n = x.shape[0]
        x_l = self.lin_l(x).view(-1, H, C)  # (N, H, C) sources
        x_r = self.lin_r(x).view(-1, H, C)  # (N, H, C) targets
        if edge_attr is not None and self.lin_edge is None:
            raise ValueError("GATv2Conv: edge_attr given but the layer was built without edge_dim")
        if (self.add_self_loops and edge_type is not None and edge_attr is not None and not torch.is_grad_enabled()
                and x.device.type == "cpu" and not (self.training and self.dropout > 0)):
            return self._forward_inference(x_l, x_r, edge_index, edge_attr, edge_type)
        e = None
        if edge_attr is not None:
            e = _edge_features(self.lin_edge, edge_attr, edge_type, "GATv2Conv", H, C)  # (E, H, C)
        if self.add_self_loops:
            keep = (edge_index[0] != edge_index[1]).nonzero().view(-1)
            edge_index = edge_index.index_select(1, keep)
            loops = torch.arange(n, device=x.device).view(1, -1).repeat(2, 1)  # (2, N)
            if e is not None:
                e = e.index_select(0, keep)
                # lin_edge has no bias, so the projected mean is the mean of the projections.
                loop_e = scatter(e, edge_index[1], 0, dim_size=n, reduce="mean")  # (N, H, C)
                e = torch.cat([e, loop_e], dim=0)
            edge_index = torch.cat([edge_index, loops], dim=1)  # (2, E' + N)
        src, dst = edge_index[0], edge_index[1]
        x_j = x_l.index_select(0, src)  # (E', H, C)
        z = x_r.index_select(0, dst) + x_j  # (E', H, C)
        if e is not None:
            z = z + e
        z = F.leaky_relu(z, self.negative_slope)
        alpha = (z * self.att).sum(dim=-1)  # (E', H)
        alpha = segment_softmax(alpha, dst, n)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        out = scatter(x_j * alpha.unsqueeze(-1), dst, 0, dim_size=n, reduce="sum")  # (N, H, C)
        out = out.view(-1, H * C)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _forward_inference(self, x_l: torch.Tensor, x_r: torch.Tensor, edge_index: torch.Tensor,
                           edge_attr: torch.Tensor, edge_type: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without gradients, on CPU, with a relation table and self-loops: the
        same values (up to float rounding; ``tests/nn/test_conv.py`` compares them) in fewer
        passes over the per-edge tensors, which dominate the layer's time.

        The self-loops are not appended to the edge list: each node's loop score and message
        join the softmax and the sum as node-sized terms, and the loop's edge feature (the
        mean of the node's incoming relation features) comes from a node-by-relation count
        matrix times the projected table. The attention logits are one matrix product of the
        per-edge activations with the block-diagonal matrix of ``att``.
        """
        H, C = self.heads, self.out_channels
        n, hc = x_l.shape[0], H * C
        _check_relation_table(edge_attr, edge_type, "GATv2Conv")
        table = self._projected_table(edge_attr)  # (T, H*C)
        t = table.shape[0]
        src, dst, typ = edge_index[0], edge_index[1], edge_type
        keep = (src != dst).nonzero().view(-1)
        if keep.numel() != src.numel():  # drop the graph's own self-loops
            src, dst, typ = src.index_select(0, keep), dst.index_select(0, keep), typ.index_select(0, keep)
        xl, xr = x_l.reshape(n, hc), x_r.reshape(n, hc)
        # attention vector as a block-diagonal (H*C, H) matrix: logits = act @ att_mat
        att_mat = self._att_matrix(xl.dtype)  # (H*C, H)
        # loop edge features: mean of each node's incoming projected relation features
        counts = xl.new_zeros(n * t).index_add_(0, dst * t + typ, xl.new_ones(dst.shape[0])).view(n, t)
        loop_e = (counts @ table) / counts.sum(1, keepdim=True).clamp(min=1)  # (N, H*C)
        x_j = xl.index_select(0, src)  # (E, H*C) the sources' features, also the messages below
        z = xr.index_select(0, dst).add_(x_j)  # (E, H*C) x_l[src] + x_r[dst] (a sum of two: the same either way)
        z += table.index_select(0, typ)
        logit_e = F.leaky_relu_(z, self.negative_slope) @ att_mat  # (E, H)
        del z
        logit_l = F.leaky_relu_(xl + xr + loop_e, self.negative_slope) @ att_mat  # (N, H)
        # softmax over each node's incoming edges and its loop
        m = logit_l.scatter_reduce(0, dst.view(-1, 1).expand(-1, H), logit_e, reduce="amax", include_self=True)
        ex_e = (logit_e - m.index_select(0, dst)).exp_()  # (E, H)
        ex_l = (logit_l - m).exp_()  # (N, H)
        denom = ex_l.index_add(0, dst, ex_e).add_(1e-16)  # (N, H)
        a_e = ex_e.div_(denom.index_select(0, dst))
        a_l = ex_l.div_(denom)
        msg = x_j.view(-1, H, C).mul_(a_e.unsqueeze(-1)).view(-1, hc)  # (E, H*C)
        out = (x_l * a_l.unsqueeze(-1)).reshape(n, hc).index_add_(0, dst, msg)  # (N, H*C)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _att_matrix(self, dtype: torch.dtype) -> torch.Tensor:
        """``att`` as the block-diagonal (H*C, H) matrix of the inference path, kept between
        calls while ``att`` is the same tensor, unchanged (as :meth:`_projected_table`)."""
        a = self.att
        c = self._att_cache
        if c is not None and c[0] is a and c[1] == a._version and c[2] == dtype:
            return c[3]
        H, C = self.heads, self.out_channels
        out = torch.block_diag(*a.view(H, C, 1).unbind(0)).to(dtype)  # (H*C, H)
        if not a.is_inference():
            self._att_cache = (a, a._version, dtype, out)
        return out

    def _projected_table(self, table: torch.Tensor) -> torch.Tensor:
        """``lin_edge(table)`` for the inference path, kept between calls while the table and
        the projection's weight are the same tensors, unchanged (their version counters; the
        cache holds them, so another tensor cannot take their place unnoticed)."""
        w = self.lin_edge.weight
        c = self._table_cache
        if (c is not None and c[0] is table and c[1] == table._version and c[2] is w and c[3] == w._version
                and c[4] == (table.dtype, w.dtype)):
            return c[5]
        out = self.lin_edge(table)
        if not table.is_inference() and not w.is_inference():  # inference tensors keep no version
            self._table_cache = (table, table._version, w, w._version, (table.dtype, w.dtype), out)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, heads={self.heads})"


class TransformerConv(nn.Module):
    r"""Graph transformer attention (Shi et al. 2021, https://arxiv.org/abs/2009.03509) with
    edge features, concatenated heads and a root (skip) weight:
    ``alpha_ij = softmax_j((W_q x_i) · (W_k x_j + W_e e_ij) / sqrt(C))``,
    ``out_i = concat_h(sum_j alpha_ij (W_v x_j + W_e e_ij)) + W_s x_i``. No self-loops.

    Args:
        in_channels (int): input width F.
        out_channels (int): width C per head.
        heads (int): attention heads H (default 1); the output is (N, H * C).
        dropout (float): dropout on the attention weights while training (default 0).
        edge_dim (int | None): edge-feature width (default None: no edge features).
        bias (bool): biases of the query/key/value/skip projections (default True).
        root_weight (bool): add ``W_s x_i`` (default True).

    Shapes:
        x (N, F), edge_index (2, E) long, edge_attr (E, edge_dim) -> (N, H * C).
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1, dropout: float = 0.0,
                 edge_dim: int | None = None, bias: bool = True, root_weight: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.dropout, self.edge_dim, self.root_weight = dropout, edge_dim, root_weight
        hc = heads * out_channels
        self.lin_key = _Linear(in_channels, hc, bias=bias)
        self.lin_query = _Linear(in_channels, hc, bias=bias)
        self.lin_value = _Linear(in_channels, hc, bias=bias)
        self.lin_edge = _Linear(edge_dim, hc, bias=False) if edge_dim is not None else None
        # PyG builds the skip projection even without root_weight (it then goes unused).
        self.lin_skip = _Linear(in_channels, hc, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin_key.reset_parameters()
        self.lin_query.reset_parameters()
        self.lin_value.reset_parameters()
        if self.lin_edge is not None:
            self.lin_edge.reset_parameters()
        self.lin_skip.reset_parameters()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                edge_attr: torch.Tensor | None = None, edge_type: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_type``: as in :meth:`GATv2Conv.forward` (``edge_attr`` a per-type table)."""
        _check_edges("TransformerConv", x, edge_index, edge_attr if edge_type is None else edge_type,
                     "edge_attr" if edge_type is None else "edge_type")
        H, C = self.heads, self.out_channels
        n = x.shape[0]
        src, dst = edge_index[0], edge_index[1]
        query = self.lin_query(x).view(-1, H, C)  # (N, H, C)
        key = self.lin_key(x).view(-1, H, C)  # (N, H, C)
        value = self.lin_value(x).view(-1, H, C)  # (N, H, C)
        key_j, value_j = key.index_select(0, src), value.index_select(0, src)  # (E, H, C)
        if self.lin_edge is not None:
            if edge_attr is None:
                raise ValueError("TransformerConv: the layer was built with edge_dim, expected edge_attr, found None")
            e = _edge_features(self.lin_edge, edge_attr, edge_type, "TransformerConv", H, C)  # (E, H, C)
            key_j = key_j + e
            value_j = value_j + e
        alpha = (query.index_select(0, dst) * key_j).sum(dim=-1) / math.sqrt(C)  # (E, H)
        alpha = segment_softmax(alpha, dst, n)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        out = scatter(value_j * alpha.unsqueeze(-1), dst, 0, dim_size=n, reduce="sum").view(-1, H * C)
        if self.root_weight:
            out = out + self.lin_skip(x)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, heads={self.heads})"


class RGCNConv(nn.Module):
    r"""Relational GCN (Schlichtkrull et al. 2018, https://arxiv.org/abs/1703.06103) with mean
    aggregation per relation: ``out_i = W_0 x_i + sum_r mean_{j in N_r(i)} W_r x_j + b``,
    with optional basis (``W_r = sum_b c_rb V_b``) or block-diagonal decomposition.

    Only the relations present in ``edge_type`` are visited (the same sum as PyG's loop over
    all relations, without the empty ones).

    Args:
        in_channels (int): input width F.
        out_channels (int): output width F'.
        num_relations (int): relation types; ``edge_type`` values lie in ``[0, num_relations)``.
        num_bases (int | None): basis decomposition (default None).
        num_blocks (int | None): block-diagonal decomposition; must divide both widths
            (default None). At most one of the two.
        root_weight (bool): add ``W_0 x_i`` (default True).
        bias (bool): learn an output bias (default True).

    Shapes:
        x (N, F), edge_index (2, E) long, edge_type (E,) long -> (N, F').
    """

    def __init__(self, in_channels: int, out_channels: int, num_relations: int, num_bases: int | None = None,
                 num_blocks: int | None = None, root_weight: bool = True, bias: bool = True) -> None:
        super().__init__()
        if num_bases is not None and num_blocks is not None:
            raise ValueError(f"RGCNConv: expected at most one of num_bases / num_blocks, found "
                             f"num_bases={num_bases} and num_blocks={num_blocks}")
        self.in_channels, self.out_channels, self.num_relations = in_channels, out_channels, num_relations
        self.num_bases, self.num_blocks = num_bases, num_blocks
        if num_bases is not None:
            self.weight = nn.Parameter(torch.empty(num_bases, in_channels, out_channels))
            self.comp = nn.Parameter(torch.empty(num_relations, num_bases))
        elif num_blocks is not None:
            if in_channels % num_blocks or out_channels % num_blocks:
                raise ValueError(f"RGCNConv: expected num_blocks to divide in_channels={in_channels} and "
                                 f"out_channels={out_channels}, found {num_blocks}")
            self.weight = nn.Parameter(torch.empty(num_relations, num_blocks, in_channels // num_blocks,
                                                   out_channels // num_blocks))
            self.comp = None
        else:
            self.weight = nn.Parameter(torch.empty(num_relations, in_channels, out_channels))
            self.comp = None
        self.root = nn.Parameter(torch.empty(in_channels, out_channels)) if root_weight else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _glorot(self.weight)
        _glorot(self.comp)
        _glorot(self.root)
        if self.bias is not None:
            self.bias.data.zero_()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_type: torch.Tensor) -> torch.Tensor:
        _check_edges("RGCNConv", x, edge_index, edge_type, "edge_type")
        n = x.shape[0]
        out = x.new_zeros(n, self.out_channels)
        weight = self.weight
        if self.num_bases is not None:
            weight = (self.comp @ weight.view(self.num_bases, -1)).view(
                self.num_relations, self.in_channels, self.out_channels)
        src, dst = edge_index[0], edge_index[1]
        for r in torch.unique(edge_type).tolist():
            keep = edge_type == r
            h = scatter(x[src[keep]], dst[keep], 0, dim_size=n, reduce="mean")  # (N, F)
            if self.num_blocks is not None:
                h = torch.einsum("abc,bcd->abd", h.view(-1, weight.size(1), weight.size(2)), weight[r])
                out = out + h.contiguous().view(-1, self.out_channels)
            else:
                out = out + h @ weight[r]
        if self.root is not None:
            out = out + x @ self.root
        if self.bias is not None:
            out = out + self.bias
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, num_relations={self.num_relations})"
