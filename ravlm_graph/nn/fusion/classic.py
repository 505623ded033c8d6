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

#: Kinds handled by :class:`ClassicFusion`.
CLASSIC_KINDS: tuple[str, ...] = ("concat", "product", "attention", "none")


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
