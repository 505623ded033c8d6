"""Pure-PyTorch graph helpers: scatter reductions, segment softmax, dense batching, and a
small graph container with batch collation.

These cover what the engine needs from ``torch_geometric`` at run time, so that answering a
question does not import it (``import torch_geometric`` costs about 4 CPU-seconds: it pulls
in ``torch._dynamo``, its dataset and LLM modules). The functions follow
``torch_geometric.utils`` (same signatures for the arguments used here, same results);
:class:`GraphData` / :class:`GraphBatch` follow ``torch_geometric.data.Data`` / ``Batch``
for the attributes the project uses. ``torch_geometric`` remains the library to use for
anything else: :meth:`GraphData.to_pyg` builds a real ``Data``.

Collation (:meth:`GraphBatch.from_data_list`) follows PyG's rule: ``edge_index`` (and any
tensor whose name contains ``"index"``) is offset by the nodes of the graphs before it and
concatenated along its last axis; other tensors are concatenated along axis 0 (0-dim
tensors are stacked); anything else (names, lists, strings) becomes a list with one entry
per graph.
"""

from __future__ import annotations

import copy
import sys
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["scatter", "segment_softmax", "to_dense_batch", "GraphData", "GraphBatch"]

_REDUCES = ("sum", "add", "mean", "max", "min")


def _is_tensor(v: Any) -> bool:
    """Whether ``v`` is a torch tensor (without importing torch: nothing is one before it is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(v, torch.Tensor)


def _is_array(v: Any) -> bool:
    """A torch tensor or a numpy array (a :class:`~ravlm_graph.retrieval.subgraph.Subgraph`
    keeps numpy arrays until a tensor is asked for)."""
    return isinstance(v, np.ndarray) or _is_tensor(v)


def _broadcast(index: torch.Tensor, src: torch.Tensor, dim: int) -> torch.Tensor:
    """``index`` (n,) viewed and expanded to ``src``'s shape along ``dim``."""
    shape = [1] * src.dim()
    shape[dim] = -1
    return index.view(shape).expand_as(src)


def scatter(src: torch.Tensor, index: torch.Tensor, dim: int = 0, dim_size: int | None = None,
            reduce: str = "sum") -> torch.Tensor:
    """Reduce the slices of ``src`` that share an ``index`` (as ``torch_geometric.utils.scatter``).

    Args:
        src (Tensor): the values.
        index (Tensor): (src.shape[dim],) long, the output slot of each slice.
        dim (int): the axis to reduce along (default 0).
        dim_size (int | None): output size along ``dim`` (default ``index.max() + 1``).
        reduce (str): ``"sum"`` (or ``"add"``), ``"mean"``, ``"max"`` or ``"min"`` (default
            ``"sum"``). Slots that receive nothing are 0 for every reduction.

    Shapes:
        src (..., n, ...) -> (..., dim_size, ...).
    """
    if index.dim() != 1:
        raise ValueError(f"scatter: expected a one-dimensional index, found {index.dim()} dimensions")
    if reduce not in _REDUCES:
        raise ValueError(f"scatter: expected reduce in {_REDUCES}, found {reduce!r}")
    dim = src.dim() + dim if dim < 0 else dim
    if not 0 <= dim < src.dim():
        raise ValueError(f"scatter: expected dim in [0, {src.dim()}), found {dim}")
    if dim_size is None:
        dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
    size = src.shape[:dim] + (dim_size,) + src.shape[dim + 1:]
    # index_add_ rather than scatter_add_ with a broadcast index: the same sums, several
    # times faster on CPU for (E, H, C) messages.
    if reduce in ("sum", "add"):
        return src.new_zeros(size).index_add_(dim, index, src)
    if reduce == "mean":
        count = src.new_zeros(dim_size).index_add_(0, index, src.new_ones(src.shape[dim])).clamp(min=1)
        out = src.new_zeros(size).index_add_(dim, index, src)
        shape = [1] * out.dim()
        shape[dim] = -1
        return out / count.view(shape)
    return src.new_zeros(size).scatter_reduce_(dim, _broadcast(index, src, dim), src, reduce=f"a{reduce}",
                                               include_self=False)


def segment_softmax(src: torch.Tensor, index: torch.Tensor, num_segments: int | None = None) -> torch.Tensor:
    """Softmax of ``src`` within each group of equal ``index`` along axis 0 (as
    ``torch_geometric.utils.softmax(src, index, num_nodes=num_segments)``).

    Args:
        src (Tensor): (n, ...) scores.
        index (Tensor): (n,) long, the group of each row.
        num_segments (int | None): number of groups (default ``index.max() + 1``).

    Shapes:
        src (n, ...) -> (n, ...); the rows of each group sum to 1.
    """
    if num_segments is None:
        num_segments = int(index.max()) + 1 if index.numel() > 0 else 0
    src_max = scatter(src.detach(), index, 0, dim_size=num_segments, reduce="max")
    out = (src - src_max.index_select(0, index)).exp()
    out_sum = scatter(out, index, 0, dim_size=num_segments, reduce="sum") + 1e-16
    return out / out_sum.index_select(0, index)


def to_dense_batch(x: torch.Tensor, batch: torch.Tensor | None = None, fill_value: float = 0.0,
                   max_num_nodes: int | None = None,
                   batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the nodes of each graph into one row (as ``torch_geometric.utils.to_dense_batch``).

    Args:
        x (Tensor): (N, ...) node values, grouped by graph (``batch`` sorted).
        batch (Tensor | None): (N,) long graph of each node (default: one graph).
        fill_value (float): the padding value (default 0).
        max_num_nodes (int | None): row length M (default: the largest graph); nodes past it
            are dropped.
        batch_size (int | None): B (default ``batch.max() + 1``).

    Shapes:
        returns ``(out, mask)``: out (B, M, ...), mask (B, M) bool (True at real nodes).
    """
    import torch

    if batch is None:
        batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    if batch_size is None:
        batch_size = int(batch.max()) + 1 if batch.numel() > 0 else 1
    counts = torch.bincount(batch, minlength=batch_size)[:batch_size] if batch.numel() else \
        batch.new_zeros(batch_size)
    start = torch.cumsum(counts, 0) - counts  # (B,) first node of each graph
    if max_num_nodes is None:
        max_num_nodes = int(counts.max()) if batch_size > 0 else 0
    rank = torch.arange(batch.shape[0], device=x.device) - start[batch]  # (N,) position within its graph
    keep = rank < max_num_nodes
    idx = rank[keep] + batch[keep] * max_num_nodes
    out = torch.full((batch_size * max_num_nodes,) + tuple(x.shape[1:]), fill_value, dtype=x.dtype,
                     device=x.device)
    out[idx] = x[keep]
    mask = torch.zeros(batch_size * max_num_nodes, dtype=torch.bool, device=x.device)
    mask[idx] = True
    return (out.view((batch_size, max_num_nodes) + tuple(x.shape[1:])),
            mask.view(batch_size, max_num_nodes))


def _is_index(key: str) -> bool:
    return "index" in key


class GraphData:
    """A graph as named attributes: ``x`` (N, F), ``edge_index`` (2, E) long, ``edge_type``
    (E,) and any other per-node, per-edge or per-graph value (a light stand-in for
    ``torch_geometric.data.Data``).

    Attributes are kept in ``self._store`` (a dict) and read as attributes; a missing one
    raises ``AttributeError`` (``getattr(data, name, None)`` works). ``num_nodes`` is the
    value set, else the first axis of ``x`` (or of another per-node tensor), else one more
    than the largest index in ``edge_index``.

    Args:
        **kwargs: the attributes (values of None are skipped, as in PyG).
    """

    #: Per-node tensors from which ``num_nodes`` may be read when it was not set.
    _NODE_KEYS = ("x", "node_id", "origin", "node_relevance", "seed_mask", "batch", "box")

    def __init__(self, **kwargs: Any) -> None:
        object.__setattr__(self, "_store", {})
        for key, value in kwargs.items():
            if value is not None:
                setattr(self, key, value)

    # ------------------------------------------------------------- attributes
    def __getattr__(self, key: str) -> Any:
        store = self.__dict__.get("_store")
        if store is not None and key in store:
            return store[key]
        raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")

    def __setattr__(self, key: str, value: Any) -> None:
        prop = getattr(type(self), key, None)
        if isinstance(prop, property):
            if prop.fset is None:
                raise AttributeError(f"{type(self).__name__}.{key} is read-only")
            prop.fset(self, value)
        elif key.startswith("__"):
            object.__setattr__(self, key, value)
        elif value is None:
            self._store.pop(key, None)
        else:
            self._store[key] = value

    def __delattr__(self, key: str) -> None:
        if key in self._store:
            del self._store[key]
        else:
            object.__delattr__(self, key)

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def keys(self) -> list[str]:
        return [k for k in self._store if k != "num_nodes"]

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter([(k, v) for k, v in self._store.items() if k != "num_nodes"])

    def __getstate__(self) -> dict:
        return {"_store": self._store}

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "_store", state["_store"])

    # ------------------------------------------------------------- sizes
    @property
    def num_nodes(self) -> int:
        n = self._store.get("num_nodes")
        if n is not None:
            return int(n)
        for key in self._NODE_KEYS:
            v = self._store.get(key)
            if _is_array(v) and v.ndim > 0:
                return int(v.shape[0])
        ei = self._store.get("edge_index")
        if _is_array(ei) and ei.shape[-1]:
            return int(ei.max()) + 1
        return 0

    @num_nodes.setter
    def num_nodes(self, value: int | None) -> None:
        if value is None:
            self._store.pop("num_nodes", None)
        else:
            self._store["num_nodes"] = int(value)

    @property
    def num_edges(self) -> int:
        ei = self._store.get("edge_index")
        return int(ei.shape[-1]) if _is_array(ei) else 0

    # ------------------------------------------------------------- copies
    def clone(self) -> "GraphData":
        """A copy with cloned tensors (other values deep-copied)."""
        out = copy.copy(self)
        object.__setattr__(out, "_store", {k: _copy_value(v) for k, v in self._store.items()})
        return out

    def replace(self, **kwargs: Any) -> "GraphData":
        """A shallow copy with the given attributes replaced (None removes one); every other
        value is shared with this graph, not copied (cheaper than :meth:`clone`)."""
        out = copy.copy(self)
        object.__setattr__(out, "_store", dict(self._store))
        for key, value in kwargs.items():
            setattr(out, key, value)
        return out

    def to(self, device: Any, **kwargs: Any) -> "GraphData":
        """A copy with every tensor moved by ``Tensor.to(device, **kwargs)``."""
        out = copy.copy(self)
        object.__setattr__(out, "_store", {k: v.to(device, **kwargs) if _is_tensor(v) else v
                                           for k, v in self._store.items()})
        return out

    def to_pyg(self):
        """The same graph as a ``torch_geometric.data.Data`` (every attribute copied by
        reference; ``num_nodes`` set explicitly). Needs ``torch_geometric``."""
        return _to_pyg(self, "Data")

    def __repr__(self) -> str:
        parts = []
        for k, v in self._store.items():
            if _is_array(v):
                parts.append(f"{k}={list(v.shape)}")
            elif isinstance(v, (list, tuple)):
                parts.append(f"{k}=[{len(v)}]")
            elif k == "num_nodes" or isinstance(v, (int, float, bool, str)):
                parts.append(f"{k}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class GraphBatch(GraphData):
    """Several graphs as one disconnected graph, with ``batch`` (N,) (graph of each node),
    ``ptr`` (B + 1,) (first node of each graph, then N) and ``num_graphs`` B (a light
    stand-in for ``torch_geometric.data.Batch``); built by :meth:`from_data_list`.
    """

    @classmethod
    def from_data_list(cls, data_list: Sequence[Any]) -> "GraphBatch":
        """Collate graphs (:class:`GraphData`, or anything with ``keys()``/attributes such as a
        PyG ``Data``); see the module docstring for the rule per attribute.

        Raises:
            ValueError: a graph lacks an attribute the first one has.
        """
        import torch

        data_list = list(data_list)
        out = cls()
        counts = [int(d.num_nodes) for d in data_list]
        keys = list(data_list[0].keys()) if data_list else []
        for i, d in enumerate(data_list[1:], 1):
            missing = [k for k in keys if k not in d]
            if missing:
                raise ValueError(f"GraphBatch.from_data_list: graph {i} lacks {missing} (graph 0 has them)")
        for key in keys:
            values = [getattr(d, key) for d in data_list]
            first = values[0]
            if isinstance(first, torch.Tensor):
                if _is_index(key):
                    offsets, total = [], 0
                    for c in counts:
                        offsets.append(total)
                        total += c
                    out._store[key] = torch.cat([v + o for v, o in zip(values, offsets)], dim=-1)
                elif first.dim() == 0:
                    out._store[key] = torch.stack(values)
                else:
                    out._store[key] = torch.cat(values, dim=0)
            else:
                out._store[key] = values
        n = sum(counts)
        count_t = torch.tensor(counts, dtype=torch.long)
        device = next((v.device for v in out._store.values() if isinstance(v, torch.Tensor)), None)
        out._store["batch"] = torch.repeat_interleave(torch.arange(len(counts)), count_t).to(device)
        out._store["ptr"] = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(count_t, 0)]).to(device)
        out._store["num_nodes"] = n
        object.__setattr__(out, "_num_graphs", len(data_list))
        return out

    @classmethod
    def from_concatenated(cls, counts: Sequence[int], **fields: Any) -> "GraphBatch":
        """A batch from per-graph tensors already concatenated as :meth:`from_data_list`
        concatenates them (an ``"index"`` field's values already offset by the nodes of the
        graphs before), with ``counts`` the nodes of each graph: the same batch, ``batch``,
        ``ptr`` and ``num_nodes`` included, without a graph object per example.
        """
        import torch

        out = cls()
        for key, value in fields.items():
            if value is not None:
                out._store[key] = value
        counts_np = np.asarray(counts, dtype=np.int64).reshape(-1)
        device = next((v.device for v in out._store.values() if isinstance(v, torch.Tensor)), None)
        out._store["batch"] = torch.from_numpy(np.repeat(np.arange(len(counts_np), dtype=np.int64),
                                                         counts_np)).to(device)
        out._store["ptr"] = torch.from_numpy(np.concatenate([[0], np.cumsum(counts_np)]).astype(np.int64)).to(device)
        out._store["num_nodes"] = int(counts_np.sum())
        object.__setattr__(out, "_num_graphs", len(counts_np))
        return out

    @property
    def num_graphs(self) -> int:
        return int(self.__dict__.get("_num_graphs", self._store["ptr"].numel() - 1 if "ptr" in self._store else 1))

    def __getstate__(self) -> dict:
        return {"_store": self._store, "_num_graphs": self.num_graphs}

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "_store", state["_store"])
        object.__setattr__(self, "_num_graphs", state.get("_num_graphs", 1))

    def to_pyg(self):
        """The same batch as a ``torch_geometric.data.Batch`` (``batch``, ``ptr`` and the
        attributes copied by reference). Needs ``torch_geometric``."""
        out = _to_pyg(self, "Batch")
        out._num_graphs = self.num_graphs
        return out


def _to_pyg(graph, kind: str):
    """A torch_geometric ``Data`` or ``Batch`` (``kind``) holding ``graph``'s attributes by reference."""
    try:
        import torch_geometric.data as pyg_data
    except ImportError as e:  # pragma: no cover
        raise ImportError("to_pyg needs torch_geometric: pip install 'ravlm-graph[model]'") from e
    out = getattr(pyg_data, kind)()
    for key, value in graph._store.items():
        if key != "num_nodes":
            out[key] = value
    out.num_nodes = graph.num_nodes
    return out


_IMMUTABLE = (str, int, float, bool, type(None))
_IMMUTABLE_TYPES = frozenset(_IMMUTABLE)


def _copy_value(v: Any) -> Any:
    """An independent copy of one stored value: tensors cloned, flat lists of immutable
    values (node names, relation names) copied shallowly, anything else deep-copied."""
    if _is_tensor(v):
        return v.clone()
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, (list, tuple)) and (_IMMUTABLE_TYPES.issuperset(map(type, v))  # the usual case, fast
                                         or all(isinstance(x, _IMMUTABLE) for x in v)):
        return list(v) if isinstance(v, list) else v
    return copy.deepcopy(v)
