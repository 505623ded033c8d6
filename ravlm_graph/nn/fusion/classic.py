"""The classic fusions ``concat``, ``product`` and ``attention``: the trunk reads the question
alone; its pooled state is fused with the pooled image and graph vectors.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from ravlm_graph.nn.fusion.base import Fusion, FusionConfig, GraphInputs, _mlp, _reset, _shape

#: Operators of :class:`ClassicFusion`.
CLASSIC_KINDS: tuple[str, ...] = ("concat", "product", "attention")


class ClassicFusion(nn.Module):
    r"""Fusion of pooled image, text and graph vectors into one vector.

    * ``"concat"``: ``MLP([v_img; v_txt; v_graph])``.
    * ``"product"``: ``W_o (tanh(W_i v_img) * tanh(W_t v_txt) * tanh(W_g v_graph))``
      (element-wise product of projected vectors).
    * ``"attention"``: the three projected vectors summed with softmax weights from a
      learned query computed from the text, ``W_o sum_m softmax_m(q(v_txt) · p_m / sqrt(h)) p_m``.

    A missing graph vector (``graph=None``) counts as zeros.

    Args:
        kind (str): ``"concat"``, ``"product"`` or ``"attention"``.
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
        if kind == "concat":
            self.mlp = _mlp(image_dim + text_dim + graph_dim, hid, out_dim, dropout)
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
        if graph.dim() != 2 or tuple(graph.shape) != (b, self.dims[2]):
            raise ValueError(f"ClassicFusion: expected graph of shape ({b}, {self.dims[2]}), found {_shape(graph)}")
        return graph

    def _projected(self, image, text, graph) -> torch.Tensor:
        return torch.stack([p(v) for p, v in zip(self.proj, (image, text, graph))], dim=1)  # (B, 3, h)

    def forward(self, image: torch.Tensor, text: torch.Tensor, graph: torch.Tensor | None = None) -> torch.Tensor:
        graph = self._check(image, text, graph)
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


class PooledFusion(Fusion):
    """Base of the classic kinds: the trunk reads the question alone (no image or graph
    tokens); :meth:`pool` fuses its pooled state with the pooled image and the GNN's graph
    state by the :class:`ClassicFusion` operator ``op``.

    Args:
        config (FusionConfig): ``model_dim`` (image, text and output widths), ``graph_dim``,
            ``hidden_dim`` are read.
    """

    op: str = "concat"
    image_in_trunk = False

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        d = config.model_dim
        self.combine = ClassicFusion(self.op, image_dim=d, text_dim=d, graph_dim=config.graph_dim, out_dim=d,
                                     hidden_dim=config.hidden_dim)

    def pool(self, query: torch.Tensor, image: torch.Tensor, graph: GraphInputs | None) -> torch.Tensor:
        return self.combine(image, query, None if graph is None else graph.graph_state)  # (B, D)


class ConcatFusion(PooledFusion):
    """``concat``: ``MLP([v_img; v_txt; v_graph])``."""

    op = "concat"


class ProductFusion(PooledFusion):
    """``product``: element-wise product of the projected vectors."""

    op = "product"


class AttentionFusion(PooledFusion):
    """``attention``: the projected vectors weighted by a query from the text."""

    op = "attention"
