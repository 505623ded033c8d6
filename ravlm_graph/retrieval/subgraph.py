"""The retrieved subgraph (:class:`Subgraph`, a graph container with node names, origins,
relevance and relations; :meth:`Subgraph.to_pyg` gives a PyG ``Data``) and its reasoning
paths (:class:`ReasoningPath`)."""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from ravlm_graph.utils.graph import GraphData, _copy_value
from ravlm_graph.types import Entity
from ravlm_graph.types import ORIGIN_CODES
from ravlm_graph.types import Fact
from kg_ingest import normalize_concept

if TYPE_CHECKING:  # pragma: no cover
    import torch
_ORIGIN_BIT = {"question": 1, "image": 2}


def _immutable_entity(e: Any) -> bool:
    """An :class:`Entity` (frozen) whose span and box are tuples of numbers or None: sharing
    it is the same as deep-copying it."""
    if type(e) is not Entity:
        return False
    for t in (e.span, e.box):
        if t is not None and not (type(t) is tuple and all(isinstance(x, (int, float, np.number)) for x in t)):
            return False
    return (isinstance(e.label, (str, type(None))) and type(e.referred) is bool
            and isinstance(e.score, (int, float, np.number)))


def _plain_copy(v: Any) -> Any:
    """``copy.deepcopy(v)`` for nested dicts and lists of str, int, float, bool and None (what
    ``Subgraph.info`` holds), without deepcopy's memo; any other value is deep-copied."""
    if v is None or type(v) in (str, int, float, bool):
        return v
    if type(v) is dict:
        return {k: _plain_copy(x) for k, x in v.items()}
    if type(v) is list:
        return [_plain_copy(x) for x in v]
    return copy.deepcopy(v)


def _count(x: Any, what: str, expected: str = "a non-negative integer") -> int:
    """A count argument: TypeError for a non-integer (or a bool), ValueError below 0."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{what}: expected {expected}, found {type(x).__name__} {x!r}"[:300])
    if x < 0:
        raise ValueError(f"{what}: expected {expected}, found {x!r}")
    return int(x)


# --------------------------------------------------------------------------- Subgraph

@dataclass(frozen=True)
class ReasoningPath:
    """A path of facts from a seed to a node (edges may point either way).

    Args:
        nodes: concept names along the path, seed first.
        facts: one :class:`~ravlm_graph.datasets.records.Fact` per step, as stored
            (head -> tail), so a step may run against the edge direction.
    """

    nodes: tuple[str, ...]
    facts: tuple[Any, ...]

    def __len__(self) -> int:
        return len(self.facts)

    @property
    def text(self) -> str:
        """The facts as short sentences joined by ``"; "``."""
        return "; ".join(f.verbalize() for f in self.facts)

    def __str__(self) -> str:
        if not self.facts:
            return self.nodes[0] if self.nodes else ""
        out = [self.nodes[0]]
        for a, f, b in zip(self.nodes, self.facts, self.nodes[1:]):
            out.append(f"--{f.relation}-->" if f.head == a and f.tail == b else f"<--{f.relation}--")
            out.append(b)
        return " ".join(out)


class _Adjacency:
    """Each node's (neighbour, edge) pairs, edges walked both ways: for node ``v``, every edge
    ``e`` at ``v`` in increasing ``e`` (a self-loop twice), the pairs of the list

        for e, (s, d) in enumerate(edges): adj[s].append((d, e)); adj[d].append((s, e))

    builds, sorted once by numpy (a stable sort keeps that order) and read as Python lists
    only for the nodes a search visits."""

    def __init__(self, edge_index: np.ndarray, num_nodes: int) -> None:
        ends = np.ascontiguousarray(edge_index.T).reshape(-1)  # (2E,) e0's source, e0's target, e1's ...
        order = np.argsort(ends, kind="stable")
        self._nbr = np.ascontiguousarray(edge_index[::-1].T).reshape(-1)[order].tolist()  # the other end
        self._edge = (order // 2).tolist()
        self._start = np.searchsorted(ends[order], np.arange(num_nodes + 1)).tolist()
        self._cache: dict[int, list[tuple[int, int]]] = {}

    def __getitem__(self, v: int) -> list[tuple[int, int]]:
        pairs = self._cache.get(v)
        if pairs is None:
            a, b = self._start[v], self._start[v + 1]
            pairs = self._cache[v] = list(zip(self._nbr[a:b], self._edge[a:b]))
        return pairs


class Subgraph(GraphData):
    """A retrieved subgraph: a :class:`~ravlm_graph.utils.graph.GraphData` (the attributes of
    a torch_geometric ``Data``, without importing it) plus what a person needs to read it.
    :meth:`to_pyg` returns a real ``torch_geometric.data.Data`` with the same fields;
    :class:`~ravlm_graph.utils.graph.GraphBatch` (or PyG's ``Batch`` on the ``to_pyg()``
    results) collates several.

    Tensor fields (N nodes, E edges):
        edge_index (2, E) long: local node indices.
        edge_type (E,) long: relation ids (into ``relation_names``).
        edge_weight (E,) float: the store's edge weights.
        node_id (N,) long: ids of the nodes in the store.
        node_relevance (N,) float in [0, 1]: the pruning score (seeds: 1).
        edge_relevance (E,) float in [0, 1]: geometric mean of its ends' relevance.
        seed_mask (N,) bool: seeds.
        origin (N,) long: 0 other, 1 question, 2 image, 3 both.

    Python fields:
        node_names (list[str]), relation_names (list[str]) — all relations of the store,
        edge_surface (list[str], optional) — per edge, ConceptNet's surface text or ""
        (only when the store kept surface texts),
        entities (list[Entity]) — the seeds as given, question (str | None),
        reason (str | None) — None, or why the subgraph is empty,
        info (dict) — method, budget, candidate counts, missing seeds, timings.
    """

    #: The tensor fields; given as numpy arrays (as retrieval builds them), they become
    #: torch tensors (sharing memory) the first time one of them is read as an attribute, so
    #: retrieving and reading a subgraph through :meth:`array`, :meth:`facts`, :meth:`paths`
    #: never imports torch.
    TENSOR_FIELDS = ("edge_index", "edge_type", "edge_weight", "node_id", "node_relevance", "edge_relevance",
                     "seed_mask", "origin")

    def __init__(self, edge_index: "torch.Tensor | np.ndarray | None" = None, **kwargs: Any) -> None:
        super().__init__(edge_index=edge_index, **kwargs)

    def __getattr__(self, key: str) -> Any:
        store = self.__dict__.get("_store")
        if store is not None and isinstance(store.get(key), np.ndarray):
            self._to_torch()
        return super().__getattr__(key)

    def _to_torch(self) -> None:
        """Every numpy field as a torch tensor (sharing memory)."""
        import torch

        for k, v in self._store.items():
            if isinstance(v, np.ndarray):
                self._store[k] = torch.from_numpy(v)

    def array(self, key: str) -> np.ndarray:
        """A tensor field as a numpy array (a view, not a copy), without importing torch when
        the subgraph has not been read as tensors yet."""
        v = self._store.get(key)
        if v is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")
        return v if isinstance(v, np.ndarray) else v.numpy()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        self._to_torch()
        return super().__iter__()

    def clone(self) -> "Subgraph":
        """A copy with cloned tensors (other values deep-copied), as :meth:`GraphData.clone`
        makes it, except that the seed entities (frozen, with immutable fields) are shared
        in a new list rather than deep-copied, and ``info`` is copied without deepcopy's
        machinery: equal values at a fraction of the cost (each retrieval through the cache
        returns a copy)."""
        ents = self._store.get("entities")
        if not (isinstance(ents, list) and all(_immutable_entity(e) for e in ents)):
            return super().clone()
        out = copy.copy(self)
        store = {k: list(v) if k == "entities" else _copy_value(v) if k != "info" else v
                 for k, v in self._store.items()}
        if "info" in store:  # plain dicts, lists and numbers copied as deepcopy would, without its memo
            store["info"] = _plain_copy(store["info"])
        object.__setattr__(out, "_store", store)
        return out

    def to(self, device: Any, **kwargs: Any) -> "Subgraph":
        self._to_torch()
        return super().to(device, **kwargs)

    def to_pyg(self):
        """This subgraph as a ``torch_geometric.data.Data``: the same tensors (shared, not
        copied), ``num_nodes``, and the Python fields (``node_names``, ``relation_names``,
        ``entities``, ``info``, and ``question``/``reason`` when set). Needs ``torch_geometric``
        (the ``model`` extra); batch several with ``torch_geometric.data.Batch.from_data_list``.
        """
        self._to_torch()
        return super().to_pyg()

    # -------------------------------------------------------------- build
    @classmethod
    def empty(cls, reason: str, *, entities: Sequence[Entity] = (), relation_names: Sequence[str] = (),
              question: str | None = None, info: dict | None = None) -> "Subgraph":
        """An explicitly empty subgraph that says why it is empty."""
        if not reason:
            raise ValueError("Subgraph.empty: expected a reason, found none")
        sg = cls(edge_index=np.zeros((2, 0), dtype=np.int64),
                 edge_type=np.zeros(0, dtype=np.int64), edge_weight=np.zeros(0, dtype=np.float32),
                 node_id=np.zeros(0, dtype=np.int64), node_relevance=np.zeros(0, dtype=np.float32),
                 edge_relevance=np.zeros(0, dtype=np.float32), seed_mask=np.zeros(0, dtype=bool),
                 origin=np.zeros(0, dtype=np.int64))
        sg.num_nodes = 0
        sg.node_names = []
        sg.relation_names = list(relation_names)
        sg.entities = list(entities)
        sg.question = question
        sg.reason = reason
        sg.info = dict(info or {}, reason=reason)
        return sg

    # Attributes set to None are dropped (as in PyG); these may be None, so they are properties.
    @property
    def reason(self) -> str | None:
        """None, or why the subgraph is empty."""
        return self._store["reason"] if "reason" in self._store else None

    @reason.setter
    def reason(self, value: str | None) -> None:
        self._set_optional("reason", value)

    @property
    def question(self) -> str | None:
        return self._store["question"] if "question" in self._store else None

    @question.setter
    def question(self, value: str | None) -> None:
        self._set_optional("question", value)

    def _set_optional(self, key: str, value: Any) -> None:
        if value is None:
            if key in self._store:
                del self._store[key]
        else:
            self._store[key] = value

    @property
    def is_empty(self) -> bool:
        return self.num_nodes == 0

    def __repr__(self) -> str:
        if self.num_nodes == 0:
            return f"Subgraph(empty, reason={getattr(self, 'reason', None)!r})"
        seeds = [n for n, s in zip(self.node_names, self.array("seed_mask").tolist()) if s]
        return f"Subgraph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, seeds={seeds})"

    # ------------------------------------------------------------- reading
    def _fact(self, e: int):
        s, d = self.array("edge_index")[:, e].tolist()
        surface = self.edge_surface[e] if "edge_surface" in self._store else None
        return Fact(self.node_names[s], self.relation_names[int(self.array("edge_type")[e])], self.node_names[d],
                    surface=surface or None)

    def _facts_of(self, edges: Sequence[int]) -> list:
        """``[self._fact(e) for e in edges]``, the arrays and name lists read once."""
        if not len(edges):
            return []
        edges = list(edges)
        ei, et = self.array("edge_index"), self.array("edge_type")
        src, dst, typ = ei[0, edges].tolist(), ei[1, edges].tolist(), et[edges].tolist()
        names, rels = self.node_names, self.relation_names
        surface = self.edge_surface if "edge_surface" in self._store else None
        return [Fact(names[s], rels[int(r)], names[d], surface=(surface[e] or None) if surface is not None else None)
                for e, s, d, r in zip(edges, src, dst, typ)]

    def facts(self, max_facts: int | None = None, about: Iterable[str] = ()) -> list:
        """The edges as :class:`~ravlm_graph.datasets.records.Fact` s, most relevant first (at most
        ``max_facts``, a non-negative integer; None: all). With ``about`` (node names), the
        edges with an end among them come first, each group most relevant first."""
        if max_facts is not None:
            max_facts = _count(max_facts, "max_facts", "a non-negative integer or None")
        if self.num_edges == 0:
            return []
        order = np.argsort(-self.array("edge_relevance"), kind="stable")  # most relevant first, ties in order
        about = set(about) if not isinstance(about, str) else {about}
        if about:
            hit = np.array([n in about for n in self.node_names], dtype=bool)
            ei = self.array("edge_index")
            touches = hit[ei[0]] | hit[ei[1]]
            order = np.concatenate([order[touches[order]], order[~touches[order]]])
        order = order.tolist()
        if max_facts is not None:
            order = order[:max_facts]
        return self._facts_of(order)

    def verbalize(self, max_facts: int | None = 50, realiser=None) -> list[str]:
        """Sentences for the most relevant edges (``"an apple is used for eating"``), by
        :meth:`Fact.verbalize` (ConceptNet's surface text where the store kept it).

        Args:
            max_facts: at most this many (a non-negative integer), most relevant first (None: all).
            realiser: a :class:`~ravlm_graph.utils.english.Realiser` (default: a plain one).
        """
        return [f.verbalize(realiser) for f in self.facts(max_facts)]

    def index_of(self, concept: str) -> int:
        """Local index of a node by name (KeyError when absent)."""
        if not isinstance(concept, str):
            raise TypeError(f"concept: expected a node name (str), found {type(concept).__name__} {concept!r}"[:300])
        for name in (concept, normalize_concept(concept)):
            try:
                return self.node_names.index(name)
            except ValueError:
                continue
        raise KeyError(f"concept {concept!r} is not a node of this subgraph ({self.num_nodes} nodes)")

    def paths(self, target: str | int, max_len: int = 3, max_paths: int = 5) -> list[ReasoningPath]:
        """Shortest readable paths (up to ``max_len`` edges) from any seed to ``target``.

        Edges are walked in both directions; each step keeps its stored direction.

        Args:
            target: node name or local index (an int or a numpy integer).
            max_len: longest path in edges (default 3; 0: only the target itself when it is a seed).
            max_paths: at most this many paths, shortest first (default 5; 0: none).

        Raises:
            KeyError: ``target`` is not a node of the subgraph.
            TypeError, ValueError: an argument of the wrong type, or a negative count.
        """
        if isinstance(target, (bool, np.bool_)):
            raise TypeError(f"target: expected a node name (str) or local index (int), found {target!r}")
        if isinstance(target, (int, np.integer)):
            t = int(target)
        elif isinstance(target, str):
            t = self.index_of(target)
        else:
            raise TypeError(f"target: expected a node name (str) or local index (int), found "
                            f"{type(target).__name__} {target!r}"[:300])
        max_len = _count(max_len, "max_len")
        max_paths = _count(max_paths, "max_paths")
        if not 0 <= t < self.num_nodes:
            raise KeyError(f"node index {t} out of range [0, {self.num_nodes})")
        if max_paths == 0:
            return []
        adj = _Adjacency(self.array("edge_index") if self.num_edges else np.zeros((2, 0), np.int64), self.num_nodes)
        seedset = set(np.flatnonzero(self.array("seed_mask")).tolist())
        out: list[ReasoningPath] = []
        if t in seedset:
            out.append(ReasoningPath((self.node_names[t],), ()))
        # BFS from the target over simple paths, shortest first; stop at seeds.
        queue = deque([(t, (t,), ())])
        while queue and len(out) < max_paths:
            node, nodes, edges = queue.popleft()
            if len(edges) >= max_len:
                continue
            for nb, e in adj[node]:
                if nb in nodes:
                    continue
                n2, e2 = nodes + (nb,), edges + (e,)
                if nb in seedset:
                    out.append(ReasoningPath(tuple(self.node_names[i] for i in reversed(n2)),
                                             tuple(self._facts_of(e2[::-1]))))
                    if len(out) >= max_paths:
                        break
                else:
                    queue.append((nb, n2, e2))
        return out

    def to_networkx(self):
        """networkx ``MultiDiGraph``: nodes keyed by name, with relevance/seed/origin; edges
        with relation, weight and relevance."""
        try:
            import networkx as nx
        except ImportError as e:  # pragma: no cover
            raise ImportError("Subgraph.to_networkx needs networkx: pip install 'ravlm-graph[networkx]'") from e
        g = nx.MultiDiGraph(question=getattr(self, "question", None), reason=getattr(self, "reason", None))
        codes = {v: k for k, v in ORIGIN_CODES.items()}
        for i, name in enumerate(self.node_names):
            g.add_node(name, id=int(self.node_id[i]), relevance=float(self.node_relevance[i]),
                       seed=bool(self.seed_mask[i]), origin=codes[int(self.origin[i])])
        for e in range(self.num_edges):
            s, d = self.edge_index[:, e].tolist()
            g.add_edge(self.node_names[s], self.node_names[d], key=self.relation_names[int(self.edge_type[e])],
                       relation=self.relation_names[int(self.edge_type[e])], weight=float(self.edge_weight[e]),
                       relevance=float(self.edge_relevance[e]))
        return g
