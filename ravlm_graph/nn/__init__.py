"""Neural layers: graph encoders (:mod:`.gnn`) and fusion layers (:mod:`.fusion`)."""

from ravlm_graph.nn.fusion import FusionConfig
from ravlm_graph.nn.gnn import GNN_KINDS, GNNConfig, GraphEncoder, GraphEncoderOutput

__all__ = ["FusionConfig", "GNN_KINDS", "GNNConfig", "GraphEncoder", "GraphEncoderOutput"]
