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

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn

#: Kinds of :class:`FusionConfig`.
FUSION_KINDS: tuple[str, ...] = ("graph_tokens", "concat", "product", "attention", "none")


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


