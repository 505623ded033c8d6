"""Fusions that write the graph into the trunk's text: the subgraph's most relevant facts,
verbalised ("knife is used for cut ;"), after the question.

* ``verbalized`` — facts as text only; no message passing (node states are node-name
  features), no graph tokens.
* ``both`` — facts as text and graph tokens at ``<kg>`` (see :mod:`.graph_tokens`).
"""

from __future__ import annotations

from ravlm_graph.nn.fusion.base import Fusion
from ravlm_graph.nn.fusion.graph_tokens import GraphTokenFusion


class VerbalizedFacts(Fusion):
    """The ``verbalized`` kind: the trunk reads the facts as words; the graph's nodes still
    give the pointer head its keys (from their names, origins and relevance)."""

    uses_gnn = False
    verbalizes_facts = True


class GraphTokensAndFacts(GraphTokenFusion):
    """The ``both`` kind: graph tokens at ``<kg>`` and the facts as text."""

    verbalizes_facts = True
