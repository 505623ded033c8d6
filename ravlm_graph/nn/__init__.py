"""Neural layers: graph encoders (:mod:`.gnn`, registry :data:`GNNS`) and fusion kinds
(:mod:`.fusion`, registry :data:`FUSIONS`)."""

from ravlm_graph.nn.fusion import FUSIONS, Fusion, FusionConfig
from ravlm_graph.nn.gnn import GNN_KINDS, GNNS, GNNConfig, GraphEncoder, GraphEncoderOutput

__all__ = ["FUSIONS", "Fusion", "FusionConfig", "GNNS", "GNN_KINDS", "GNNConfig", "GraphEncoder", "GraphEncoderOutput"]
