"""The ``none`` fusion: no knowledge graph at all (the no-KG baseline).

Nothing is retrieved, the trunk reads the question and the image tokens, and answers come
from the answer vocabulary only (nothing to copy from).
"""

from __future__ import annotations

from ravlm_graph.nn.fusion.base import Fusion


class NoGraph(Fusion):
    """The ``none`` kind: the model is built and run without a graph."""

    uses_graph = False
    uses_gnn = False
    variant = "no_kg"
