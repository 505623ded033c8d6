"""Fusion layers."""
from torch import nn

from ravlm_graph.nn.fusion.base import FusionConfig
from ravlm_graph.nn.fusion.classic import ClassicFusion
from ravlm_graph.nn.fusion.graph_tokens import GraphTokenFusion


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
