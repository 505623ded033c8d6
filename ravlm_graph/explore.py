"""Helpers for exploring a knowledge graph by eye: tables, subgraph drawings, statistics plots.

The explorer notebooks call these; they are also usable from a plain Python session.
Everything here reads a :class:`kg_ingest.KnowledgeGraph` (or a subgraph of one) and
returns a value to look at — a :class:`Table`, a matplotlib ``Axes`` or a list of
:class:`~ravlm_graph.retrieval.ReasoningPath` — and never changes the graph.

>>> from kg_ingest import load_default
>>> from ravlm_graph.explore import neighbours_table, draw_subgraph
>>> kg = load_default()
>>> neighbours_table(kg, "umbrella", relation="UsedFor")       # doctest: +SKIP
>>> draw_subgraph(kg.subgraph(kg.k_hop("umbrella", k=1)))       # doctest: +SKIP

matplotlib (the ``notebooks`` extra) and networkx (the ``networkx`` extra) are imported by
the drawing functions only; pandas is used when installed and never required.
"""

from __future__ import annotations

import textwrap
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from html import escape
from ravlm_graph.types import Fact
from kg_ingest import normalize_concept
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.grounding.images import load_image

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

    from ravlm_graph.retrieval.subgraph import ReasoningPath
    from ravlm_graph.retrieval.retriever import SubgraphRetriever

__all__ = ["Table", "draw_entities", "neighbours_table", "draw_subgraph", "relation_colors", "degree_histogram",
           "relation_bar", "explain_paths", "display_name"]

#: Above this many nodes :func:`draw_subgraph` warns: the drawing gets slow and unreadable.
_MANY_NODES = 300


def display_name(name: str, width: int | None = 14) -> str:
    """A concept name as a readable label: underscores as spaces, wrapped at ``width``
    characters per line (no wrapping when ``width`` is None)."""
    text = " ".join(name.replace("_", " ").split())
    if width is None or len(text) <= width:
        return text
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False)) or text


# --------------------------------------------------------------------------- tables

@dataclass
class Table:
    """A small table that prints as aligned text and renders as HTML in a notebook.

    Args:
        columns: column names.
        rows: one tuple per row, aligned with ``columns``.
        title: a line printed above the table (default ``""``).
        total: number of rows before any limit (default: ``len(rows)``).
    """

    columns: tuple[str, ...]
    rows: list[tuple]
    title: str = ""
    total: int | None = None

    def __post_init__(self) -> None:
        self.columns = tuple(self.columns)
        self.rows = [tuple(r) for r in self.rows]
        for i, r in enumerate(self.rows):
            if len(r) != len(self.columns):
                raise ValueError(f"Table row {i}: expected {len(self.columns)} values, found {len(r)}")
        if self.total is None:
            self.total = len(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list:
        """The values of one column."""
        try:
            j = self.columns.index(name)
        except ValueError:
            raise KeyError(f"Table: no column {name!r}; columns: {', '.join(self.columns)}") from None
        return [r[j] for r in self.rows]

    def to_pandas(self):
        """The rows as a ``pandas.DataFrame`` (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("Table.to_pandas needs pandas: pip install pandas") from e
        return pd.DataFrame(self.rows, columns=list(self.columns))

    @staticmethod
    def _cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    def _footer(self) -> str:
        return f"({len(self.rows)} of {self.total} rows)" if self.total != len(self.rows) else f"({self.total} rows)"

    def __str__(self) -> str:
        cells = [list(self.columns)] + [[self._cell(v) for v in r] for r in self.rows]
        widths = [max(len(row[j]) for row in cells) for j in range(len(self.columns))]
        numeric = [bool(self.rows) and all(isinstance(r[j], (int, float)) for r in self.rows)
                   for j in range(len(self.columns))]

        def fmt(row):
            return "  ".join(c.rjust(w) if num else c.ljust(w)
                             for c, w, num in zip(row, widths, numeric)).rstrip()

        lines = [self.title] if self.title else []
        lines.append(fmt(cells[0]))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(fmt(r) for r in cells[1:])
        lines.append(self._footer())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:

        head = "".join(f"<th>{escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{escape(self._cell(v))}</td>" for v in r) + "</tr>"
                       for r in self.rows)
        cap = f"<caption>{escape(self.title)}</caption>" if self.title else ""
        return (f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                f"<p>{escape(self._footer())}</p>")


def _pandas_available() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def neighbours_table(kg: "KnowledgeGraph", concept: str | int, relation: str | None = None,
                     direction: str = "both", limit: int | None = 30, as_frame: bool | None = None):
    """The neighbours of a concept, one row per edge, heaviest first.

    Columns: ``direction`` (``"out"``: the concept is the head; ``"in"``: the tail),
    ``relation``, ``neighbour`` (the other end's name), ``weight``, ``fact`` (the edge
    as a short sentence). Rows are sorted by weight (descending), then direction
    (out first), relation and neighbour, so the order does not depend on the store.

    Args:
        kg: the store.
        concept: a concept name (exact or normalisable, e.g. ``"Ice Cream"``) or id.
        relation: only this relation (default: all).
        direction: ``"out"``, ``"in"`` or ``"both"`` (default ``"both"``).
        limit: at most this many rows (default 30); None: all.
        as_frame: return a ``pandas.DataFrame`` (True), a :class:`Table` (False), or a
            DataFrame when pandas is installed and a Table otherwise (None, the default).

    Raises:
        KeyError: the concept or the relation is not in the graph.
        ValueError: an unknown direction or a negative limit.
        ImportError: ``as_frame=True`` without pandas.
    """

    if direction not in ("out", "in", "both"):
        raise ValueError(f"neighbours_table: expected direction 'out', 'in' or 'both', found {direction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0):
        raise ValueError(f"neighbours_table: expected a limit >= 0 or None, found {limit!r}")
    node = kg.concept_id(concept)
    name = kg.concept_name(node)
    rows = []
    for d in ("out", "in"):
        if direction not in (d, "both"):
            continue
        for rel, other, w in kg.neighbors(node, relation=relation, direction=d):
            fact = Fact(name, rel, other) if d == "out" else Fact(other, rel, name)
            rows.append((d, rel, other, round(float(w), 4), fact.verbalize()))
    rows.sort(key=lambda r: (-r[3], r[0] != "out", r[1], r[2]))
    total = len(rows)
    if limit is not None:
        rows = rows[:limit]
    what = f"{relation} " if relation else ""
    arrows = {"out": "outgoing", "in": "incoming", "both": "all"}[direction]
    table = Table(("direction", "relation", "neighbour", "weight", "fact"), rows,
                  title=f"{name}: {arrows} {what}edges", total=total)
    if as_frame is None:
        as_frame = _pandas_available()
    return table.to_pandas() if as_frame else table


# --------------------------------------------------------------------------- drawing

def relation_colors(relations: Iterable[str]) -> dict[str, Any]:
    """A fixed colour per relation, in the given order: matplotlib's ``tab10`` (ten well
    separated colours) first, then the light half of ``tab20``, then ``tab20b``, cycling
    after that. The same relation list always gets the same colours."""
    import matplotlib

    palette = (list(matplotlib.colormaps["tab10"].colors) + list(matplotlib.colormaps["tab20"].colors[1::2])
               + list(matplotlib.colormaps["tab20b"].colors))
    rels = list(dict.fromkeys(relations))
    return {r: palette[i % len(palette)] for i, r in enumerate(rels)}


def _to_multidigraph(graph: Any, seeds: Iterable[str] | None):
    """(networkx MultiDiGraph, seed names) from a Subgraph, a SubgraphView or a networkx graph."""
    import networkx as nx

    if isinstance(graph, nx.Graph):
        if graph.is_multigraph() and graph.is_directed():
            g = graph
        else:  # one arrow per edge, also for an undirected graph
            g = nx.MultiDiGraph()
            g.add_nodes_from(graph.nodes(data=True))
            g.add_edges_from(graph.edges(data=True))
    elif hasattr(graph, "to_networkx"):
        g = graph.to_networkx()
    else:
        raise TypeError("draw_subgraph: expected a retrieval Subgraph, a kg_ingest SubgraphView or a networkx "
                        f"graph, found {type(graph).__name__}")
    if seeds is None:
        seed_set = {n for n, s in g.nodes(data="seed") if s}
    else:

        seed_set = set()
        for s in seeds:
            for cand in (s, normalize_concept(s)):
                if cand in g:
                    seed_set.add(cand)
                    break
            else:
                raise KeyError(f"draw_subgraph: seed {s!r} is not a node of the graph ({g.number_of_nodes()} nodes)")
    return g, seed_set


def _layout(g, layout: str, seed: int) -> dict:
    """Node positions; with ``spring`` each connected component is laid out alone and the
    components are placed side by side (one spring layout pushes them to the corners)."""
    import networkx as nx

    if layout not in ("spring", "kamada_kawai", "circular", "shell"):
        raise ValueError(f"draw_subgraph: expected layout 'spring', 'kamada_kawai', 'circular' or 'shell', "
                         f"found {layout!r}")
    if layout == "kamada_kawai":
        return nx.kamada_kawai_layout(g)
    if layout == "circular":
        return nx.circular_layout(g)
    if layout == "shell":
        return nx.shell_layout(g)
    comps = sorted((sorted(c, key=str) for c in nx.connected_components(g)), key=lambda c: (-len(c), str(c[0])))
    largest = len(comps[0])
    pos: dict = {}
    x = 0.0
    for comp in comps:
        sub = g.subgraph(comp)
        scale = float(np.sqrt(len(comp) / largest))  # area proportional to the node count
        if len(comp) == 1:
            p = {comp[0]: np.zeros(2)}
        else:
            p = nx.spring_layout(sub, seed=seed, k=1.8 / np.sqrt(len(comp)), iterations=100, center=(0, 0))
        width = 2.0 * scale
        for node, xy in p.items():
            pos[node] = np.asarray(xy) * scale + np.array([x + width / 2, 0.0])
        x += width + 0.4 * scale
    return pos


def draw_subgraph(graph: Any, ax=None, *, seeds: Iterable[str] | None = None, layout: str = "spring",
                  layout_seed: int = 0, label_width: int | None = 14, font_size: float = 8,
                  node_size: float = 500, seed_color: Any = "#f4a261", node_color: Any = "#d9e6f2",
                  legend: bool = True, title: str | None = None, colors: dict[str, Any] | None = None):
    """Draw a subgraph: edges coloured by relation (with a legend), seeds highlighted.

    Args:
        graph: a retrieval :class:`~ravlm_graph.retrieval.Subgraph` (its seeds are
            highlighted), a :class:`kg_ingest.SubgraphView` (``kg.subgraph(...)``) or a
            networkx graph whose edges carry a ``relation`` attribute.
        ax: matplotlib Axes to draw on (default: a new 10x8-inch figure).
        seeds: names of the nodes to highlight (default: the graph's own seeds, if any).
        layout: ``"spring"`` (default), ``"kamada_kawai"`` (needs scipy), ``"circular"``
            or ``"shell"``.
        layout_seed: random seed of the spring layout, for a reproducible picture (default 0).
        label_width: wrap labels at this many characters (default 14); None: no wrapping.
        font_size: label font size (default 8).
        node_size: marker area of a node; seeds are drawn 1.6 times larger (default 500).
        seed_color, node_color: fill colours of seed and other nodes.
        legend: draw the relation legend (default True).
        title: axes title (default: node and edge counts).
        colors: relation -> colour (default: :func:`relation_colors` of the relations
            present, most frequent first).

    Returns:
        The Axes. Its legend's labels are the relations drawn (most frequent first),
        each edge is one ``FancyArrowPatch`` in ``ax.patches``, and each node one point
        of the scatter collections.

    Parallel edges (same pair of nodes, either direction) are drawn as separate arcs.
    """
    import matplotlib.pyplot as plt
    import networkx as nx
    from matplotlib.lines import Line2D

    g, seed_set = _to_multidigraph(graph, seeds)
    n = g.number_of_nodes()
    if n > _MANY_NODES:
        warnings.warn(f"draw_subgraph: drawing {n} nodes will be slow and hard to read; "
                      f"a retriever budget or k_hop(..., max_degree=...) keeps it small", stacklevel=2)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 8))
    nodes = sorted(g.nodes, key=str)
    if n == 0:
        ax.set_axis_off()
        ax.set_title(title if title is not None else "empty subgraph")
        return ax
    simple = nx.Graph()
    simple.add_nodes_from(nodes)
    simple.add_edges_from((u, v) for u, v in g.edges())
    pos = _layout(simple, layout, layout_seed)

    edges = [(u, v, d.get("relation", k if isinstance(k, str) else "edge"))
             for u, v, k, d in g.edges(keys=True, data=True)]
    counts = Counter(r for _, _, r in edges)
    rel_order = sorted(counts, key=lambda r: (-counts[r], str(r)))
    colors = dict(colors) if colors is not None else relation_colors(rel_order)
    missing = [r for r in rel_order if r not in colors]
    if missing:
        raise KeyError(f"draw_subgraph: no colour for relation(s) {', '.join(map(str, missing))}")

    # Parallel edges between a pair get increasing curvature; a lone edge stays straight.
    per_pair = Counter(frozenset((u, v)) for u, v, _ in edges)
    seen: Counter = Counter()
    groups: dict[tuple[str, float], list[tuple[str, str]]] = {}
    for u, v, r in edges:
        pair = frozenset((u, v))
        rad = 0.0
        if per_pair[pair] > 1:
            i = seen[pair]
            seen[pair] += 1
            rad = 0.15 * (i // 2 + 1) * (1 if i % 2 == 0 else -1)
            if (u, v) != tuple(sorted((u, v), key=str)):
                rad = -rad  # arc3 bends relative to the edge direction: keep both directions apart
        groups.setdefault((r, rad), []).append((u, v))

    sizes = {x: node_size * (1.6 if x in seed_set else 1.0) for x in nodes}
    others = [x for x in nodes if x not in seed_set]
    seeds_l = [x for x in nodes if x in seed_set]
    if others:
        nx.draw_networkx_nodes(simple, pos, nodelist=others, node_size=[sizes[x] for x in others],
                               node_color=node_color, edgecolors="#5b7083", linewidths=0.8, ax=ax)
    if seeds_l:
        nx.draw_networkx_nodes(simple, pos, nodelist=seeds_l, node_size=[sizes[x] for x in seeds_l],
                               node_color=seed_color, edgecolors="#9c4a1a", linewidths=1.6, ax=ax)
    draw_graph = nx.MultiDiGraph()
    draw_graph.add_nodes_from(nodes)
    for (r, rad), elist in groups.items():
        nx.draw_networkx_edges(draw_graph, pos, edgelist=elist, edge_color=[colors[r]] * len(elist),
                               node_size=[sizes[x] for x in nodes], nodelist=nodes, arrows=True,
                               arrowstyle="-|>", arrowsize=12, width=1.4, alpha=0.9,
                               connectionstyle=f"arc3,rad={rad}", ax=ax)
    labels = {x: display_name(str(x), label_width) for x in nodes}
    nx.draw_networkx_labels(simple, pos, labels=labels, font_size=font_size, ax=ax)
    for x in seeds_l:  # seeds' labels in bold
        for t in ax.texts:
            if t.get_text() == labels[x]:
                t.set_fontweight("bold")
    if legend and rel_order:
        handles = [Line2D([0], [0], color=colors[r], lw=2.5, label=str(r)) for r in rel_order]
        ax.legend(handles=handles, title="relation", loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  fontsize=8, title_fontsize=9, frameon=False)
    ax.set_title(title if title is not None else
                 f"{n} concepts, {len(edges)} edges" + (f" (seeds: {', '.join(display_name(s, None) for s in seeds_l)})"
                                                        if seeds_l else ""))
    ax.set_axis_off()
    ax.margins(0.08)
    return ax


# --------------------------------------------------------------------------- statistics

def degree_histogram(kg: "KnowledgeGraph", ax=None, *, direction: str = "both", bins: int = 30):
    """Log-log histogram of node degrees, with logarithmically spaced bins.

    Nodes of degree 0 cannot sit on a log axis; their count is given in the title.

    Args:
        kg: the store.
        ax: matplotlib Axes (default: a new figure).
        direction: ``"out"``, ``"in"`` or ``"both"`` (default).
        bins: number of bins (default 30).

    Returns:
        The Axes; its bar heights sum to the number of nodes with degree >= 1.
    """
    import matplotlib.pyplot as plt

    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"degree_histogram: expected bins >= 1, found {bins!r}")
    d = np.asarray(kg.degree(direction))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    pos = d[d > 0]
    zero = int(len(d) - len(pos))
    if len(pos):
        top = float(pos.max())
        # Integer edges (degrees are integers): no empty slivers between 1 and 2, 2 and 3, ...
        edges = np.unique(np.round(np.logspace(0, np.log10(top + 1), bins + 1)))
        if len(edges) < 2:
            edges = np.array([1.0, 2.0])
        ax.hist(pos, bins=edges, color="#457b9d", edgecolor="white", linewidth=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(f"degree ({direction})")
    ax.set_ylabel("number of concepts")
    extra = f"; {zero} with degree 0 not shown" if zero else ""
    ax.set_title(f"Degree distribution: {len(d)} concepts, max {int(d.max()) if len(d) else 0}{extra}")
    return ax


def relation_bar(kg: "KnowledgeGraph", ax=None, *, top: int | None = 20, log: bool = False):
    """Horizontal bar chart of edges per relation, the most frequent at the top.

    Args:
        kg: the store.
        ax: matplotlib Axes (default: a new figure sized to the number of bars).
        top: show the ``top`` most frequent relations (default 20); None: all.
        log: logarithmic count axis (default False).

    Returns:
        The Axes; one bar per relation shown, labelled by the y tick labels.
    """
    import matplotlib.pyplot as plt

    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1):
        raise ValueError(f"relation_bar: expected top >= 1 or None, found {top!r}")
    counts = sorted(kg.relation_counts().items(), key=lambda t: (-t[1], t[0]))
    shown = counts if top is None else counts[:top]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, max(2.0, 0.28 * len(shown) + 1)))
    names = [r for r, _ in shown][::-1]
    values = [c for _, c in shown][::-1]
    colors = relation_colors([r for r, _ in counts])
    ax.barh(range(len(names)), values, color=[colors[r] for r in names])
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("edges")
    rest = f" (top {len(shown)} of {len(counts)})" if len(shown) < len(counts) else ""
    ax.set_title(f"Edges per relation{rest}: {kg.num_edges} edges")
    return ax


# --------------------------------------------------------------------------- paths

def explain_paths(kg: "KnowledgeGraph", source: str, target: str, *, max_len: int = 3, max_paths: int = 5,
                  budget: int | None = None, retriever: "SubgraphRetriever | None" = None) -> list["ReasoningPath"]:
    """Readable paths of facts from ``source`` to ``target``, shortest first.

    Retrieves a subgraph seeded with both concepts (personalised PageRank, so the nodes
    between them rank high) and reads the paths in it with
    :meth:`~ravlm_graph.retrieval.Subgraph.paths`. Paths through nodes that fall outside
    the budget are not found: raise ``budget`` to look further.

    Args:
        kg: the store.
        source, target: concept names (exact or normalisable).
        max_len: longest path in edges (default 3).
        max_paths: at most this many paths (default 5).
        budget: node budget of the retrieved subgraph (default None: the retriever's
            ``RetrievalConfig.budget``).
        retriever: a :class:`~ravlm_graph.retrieval.SubgraphRetriever` to reuse (its
            method should need no question: ``"ppr"`` or ``"khop"``); default: a new one
            with ``method="ppr"``.

    Returns:
        A list of :class:`~ravlm_graph.retrieval.ReasoningPath` from ``source`` to
        ``target``; empty when none is found within ``max_len`` edges.

    Raises:
        KeyError: either concept is not in the graph.
        ValueError: ``source`` and ``target`` are the same concept.
    """

    a, b = kg.concept_id(source), kg.concept_id(target)
    if a == b:
        raise ValueError(f"explain_paths: expected two different concepts, found {source!r} twice")
    if retriever is None:
        # Every node of a path of L edges lies within ceil(L / 2) hops of one of its ends.
        hops = max(1, min((max_len + 1) // 2, 6))
        retriever = SubgraphRetriever(kg, RetrievalConfig(method="ppr", k=hops).replace(
            **({"budget": budget} if budget is not None else {})))
    a_name, b_name = kg.concept_name(a), kg.concept_name(b)
    method = retriever.config.method if retriever.config.method in ("ppr", "khop") else "ppr"
    sg = retriever.retrieve([a_name, b_name], question=None, budget=budget, method=method)
    if sg.is_empty:  # pragma: no cover - both seeds exist, so this is a bug upstream
        raise RuntimeError(f"explain_paths: empty subgraph: {sg.reason}")
    paths = sg.paths(b_name, max_len=max_len, max_paths=max_paths + 1)
    return [p for p in paths if p.nodes and p.nodes[0] == a_name][:max_paths]


_DRAW_MAX_SIDE = 1600  # px: more than a figure of a few inches at 150 dpi shows


def draw_entities(image: Any, entities: Iterable[Any], ax=None, *, color: str = "#e63946", font_size: float = 8):
    """Draw an image with its detected entities: boxes and ``concept (score)`` labels.

    Args:
        image: a PIL image (or anything :func:`ravlm_graph.grounding.images.load_image` takes).
        entities: :class:`~ravlm_graph.types.Entity` objects; those without a box
            are listed in the title instead.
        ax: matplotlib Axes (default: a new 4x4-inch figure).

    Returns:
        The Axes, with one rectangle patch per boxed entity.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle


    im = load_image(image)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    w, h = im.size
    if max(w, h) > _DRAW_MAX_SIDE:
        # A large photo is drawn from a copy of at most _DRAW_MAX_SIDE px a side, stretched over
        # the full image's pixel coordinates, so the boxes stay in those: matplotlib would
        # otherwise hold the whole image as floats (gigabytes for a 48-megapixel photo).
        im = im.copy()
        im.thumbnail((_DRAW_MAX_SIDE, _DRAW_MAX_SIDE))
    ax.imshow(im, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    unboxed = []
    labels_at: Counter = Counter()  # labels already drawn at a box corner: the next one goes below them
    for e in entities:
        if e.box is None:
            unboxed.append(e.concept)
            continue
        x0, y0, x1, y1 = e.box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.5))
        k = labels_at[(round(x0), round(y0))]
        labels_at[(round(x0), round(y0))] += 1
        ax.annotate(f"{display_name(e.concept, None)} ({e.score:.2f})", (x0, y0), xytext=(2, -2 - k * 1.8 * font_size),
                    textcoords="offset points", color="white", fontsize=font_size, va="top",
                    bbox={"facecolor": color, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    ax.set_axis_off()
    if unboxed:
        ax.set_title("also: " + ", ".join(display_name(c, None) for c in unboxed), fontsize=font_size)
    return ax
