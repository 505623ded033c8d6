"""Retrieval methods: how the candidate nodes around the seeds are scored before pruning.

:data:`METHODS` maps a method's name to a :class:`RetrievalMethod` subclass; the
retriever asks the method what it needs (a question embedding, personalised PageRank)
and whether pruning is prize-collecting, never its name. Adding a method is one new file
with a ``RetrievalMethod`` and one ``METHODS.register`` line below.

* ``khop`` — closer to the seeds first.
* ``relevance`` — cosine similarity of the node name's embedding with the question's.
* ``ppr`` — personalised PageRank from the seeds (Haveliwala, WWW 2002).
* ``hybrid`` — relevance and PPR mixed by ``relevance_weight``.
* ``pcst`` — hybrid prizes, then a greedy prize-collecting tree (He et al., "G-Retriever",
  2024, https://arxiv.org/abs/2402.07630).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from ravlm_graph.retrieval.scoring import _minmax
from ravlm_graph.utils.registry import Registry

__all__ = ["METHODS", "RetrievalMethod", "ScoringInputs"]


@dataclass
class ScoringInputs:
    """What a method may read about the candidates (C of them, seeds first).

    Fields:
        closeness (C,) float: ``hop_decay ** hops`` (1 for the seeds).
        relevance (C,) float or None: similarity with the question (methods that need a question).
        ppr: () -> (C,) float, personalised PageRank from the seeds on the candidate graph
            (computed on first call).
        relevance_weight (float): the config's mix of relevance and PPR.
    """

    closeness: np.ndarray
    relevance: np.ndarray | None
    ppr: Callable[[], np.ndarray]
    relevance_weight: float


class RetrievalMethod:
    """Base of the retrieval methods.

    Attributes:
        needs_question (bool): the question's embedding is computed and passed as ``relevance``.
        prize_collecting (bool): pruning keeps a node's path only when its prizes pay for the
            edges (``pcst_edge_cost``).
    """

    needs_question: ClassVar[bool] = False
    prize_collecting: ClassVar[bool] = False

    @staticmethod
    def score(x: ScoringInputs) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(C,) scores and the named parts they were made from."""
        raise NotImplementedError


class KHop(RetrievalMethod):
    @staticmethod
    def score(x: ScoringInputs):
        return x.closeness, {}


class Relevance(RetrievalMethod):
    needs_question = True

    @staticmethod
    def score(x: ScoringInputs):
        return _minmax(x.relevance) * (0.5 + 0.5 * x.closeness), {"relevance": x.relevance}


def _log_ppr(ppr: np.ndarray) -> np.ndarray:
    return _minmax(np.log(ppr + 1e-12))


class PPR(RetrievalMethod):
    @staticmethod
    def score(x: ScoringInputs):
        ppr = x.ppr()
        return _log_ppr(ppr), {"ppr": ppr}


class Hybrid(RetrievalMethod):
    needs_question = True

    @staticmethod
    def score(x: ScoringInputs):
        ppr = x.ppr()
        w = x.relevance_weight
        return w * _minmax(x.relevance) + (1 - w) * _log_ppr(ppr), {"relevance": x.relevance, "ppr": ppr}


class PCST(Hybrid):
    prize_collecting = True


METHODS = Registry("retrieval method")
METHODS.register("khop", KHop)
METHODS.register("relevance", Relevance)
METHODS.register("ppr", PPR)
METHODS.register("hybrid", Hybrid)
METHODS.register("pcst", PCST)
