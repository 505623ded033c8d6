"""Fusion kinds: how the retrieved graph reaches a text trunk, one file per kind.

:data:`FUSIONS` maps a kind's name to its :class:`~ravlm_graph.nn.fusion.base.Fusion`
subclass. Adding a kind is one new file (a ``Fusion`` subclass) and one line here;
models, feature builders and ablations read the registry, never a kind's name.
"""

from ravlm_graph.nn.fusion.base import Fusion, FusionConfig, GraphInputs, GraphTokens, TrunkInputs
from ravlm_graph.nn.fusion.classic import AttentionFusion, ConcatFusion, ProductFusion
from ravlm_graph.nn.fusion.graph_tokens import GraphTokenFusion
from ravlm_graph.nn.fusion.none import NoGraph
from ravlm_graph.nn.fusion.verbalized import GraphTokensAndFacts, VerbalizedFacts
from ravlm_graph.nn.fusion.xattn import CrossAttentionFusion
from ravlm_graph.utils.registry import Registry

__all__ = ["FUSIONS", "Fusion", "FusionConfig", "GraphInputs", "GraphTokens", "TrunkInputs", "build_fusion"]

FUSIONS = Registry("fusion")
FUSIONS.register("none", NoGraph)
FUSIONS.register("graph_tokens", GraphTokenFusion)
FUSIONS.register("verbalized", VerbalizedFacts)
FUSIONS.register("both", GraphTokensAndFacts)
FUSIONS.register("xattn", CrossAttentionFusion)
FUSIONS.register("concat", ConcatFusion)
FUSIONS.register("product", ProductFusion)
FUSIONS.register("attention", AttentionFusion)


def build_fusion(config: FusionConfig) -> Fusion:
    """The fusion module of ``config.kind``, from :data:`FUSIONS`."""
    if not isinstance(config, FusionConfig):
        raise TypeError(f"build_fusion: expected a FusionConfig, found {type(config).__name__}")
    return FUSIONS.get(config.kind)(config)
