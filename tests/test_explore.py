"""ravlm_graph.explore: tables, subgraph drawings and statistics plots on a 6-node graph."""

import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from kg_ingest import GraphBuilder, KnowledgeGraph, RelationConfig  # noqa: E402
from ravlm_graph.retrieval.config import RetrievalConfig  # noqa: E402
from ravlm_graph.explore import Table, display_name, draw_subgraph, degree_histogram, explain_paths, neighbours_table, relation_bar, relation_colors
from ravlm_graph.retrieval.retriever import SubgraphRetriever  # noqa: E402

NAMES = {"apple", "banana", "eating", "fruit", "kitchen", "market"}


@pytest.fixture
def kg():
    """apple -UsedFor-> eating, apple -IsA-> fruit, banana -IsA-> fruit, fruit -AtLocation-> market,
    kitchen -RelatedTo-> apple (w 0.5), apple -AtLocation-> kitchen (w 2.0)."""
    b = GraphBuilder(RelationConfig())
    for r, h, t, w in [("UsedFor", "apple", "eating", 1.0), ("IsA", "apple", "fruit", 1.0),
                       ("IsA", "banana", "fruit", 1.0), ("AtLocation", "fruit", "market", 1.0),
                       ("RelatedTo", "kitchen", "apple", 0.5), ("AtLocation", "apple", "kitchen", 2.0)]:
        b.add(r, h, t, w)
    return b.build()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def arrows(ax):
    return [p for p in ax.patches if isinstance(p, FancyArrowPatch)]


def node_points(ax):
    return [len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)]


def legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


# --------------------------------------------------------------------------- tables

def test_neighbours_table_rows_exact(kg):
    t = neighbours_table(kg, "apple", as_frame=False)
    assert isinstance(t, Table)
    assert t.columns == ("direction", "relation", "neighbour", "weight", "fact")
    assert t.rows == [
        ("out", "AtLocation", "kitchen", 2.0, "an apple can be found in a kitchen"),
        ("out", "IsA", "fruit", 1.0, "an apple is a fruit"),
        ("out", "UsedFor", "eating", 1.0, "an apple is used for eating"),
        ("in", "RelatedTo", "kitchen", 0.5, "kitchen is related to apple"),
    ]
    assert t.total == 4 and len(t) == 4
    assert t.title == "apple: all edges"
    assert t.column("neighbour") == ["kitchen", "fruit", "eating", "kitchen"]


def test_neighbours_table_filters_and_limit(kg):
    assert neighbours_table(kg, "fruit", direction="in", as_frame=False).rows == [
        ("in", "IsA", "apple", 1.0, "an apple is a fruit"),
        ("in", "IsA", "banana", 1.0, "a banana is a fruit"),
    ]
    assert neighbours_table(kg, "fruit", direction="out", as_frame=False).rows == [
        ("out", "AtLocation", "market", 1.0, "fruit can be found in market"),
    ]
    t = neighbours_table(kg, "Apple ", relation="AtLocation", as_frame=False)  # normalised lookup
    assert t.rows == [("out", "AtLocation", "kitchen", 2.0, "an apple can be found in a kitchen")]
    assert t.title == "apple: all AtLocation edges"
    t = neighbours_table(kg, "apple", limit=2, as_frame=False)
    assert [r[2] for r in t.rows] == ["kitchen", "fruit"] and t.total == 4
    assert neighbours_table(kg, "apple", limit=0, as_frame=False).rows == []
    assert neighbours_table(kg, "market", relation="IsA", as_frame=False).rows == []


def test_neighbours_table_text_and_html(kg):
    t = neighbours_table(kg, "apple", limit=2, as_frame=False)
    lines = str(t).splitlines()
    assert lines[0] == "apple: all edges"
    assert lines[1].split() == ["direction", "relation", "neighbour", "weight", "fact"]
    assert lines[3].split()[:4] == ["out", "AtLocation", "kitchen", "2"]
    assert lines[-1] == "(2 of 4 rows)"
    assert repr(t) == str(t)
    html = t._repr_html_()
    assert "<th>neighbour</th>" in html and "<td>an apple can be found in a kitchen</td>" in html


def test_neighbours_table_errors(kg):
    with pytest.raises(KeyError, match="'pear' is not in the graph"):
        neighbours_table(kg, "pear", as_frame=False)
    with pytest.raises(KeyError, match="relation 'Causes' is not in the graph"):
        neighbours_table(kg, "apple", relation="Causes", as_frame=False)
    with pytest.raises(ValueError, match="expected direction 'out', 'in' or 'both', found 'up'"):
        neighbours_table(kg, "apple", direction="up")
    with pytest.raises(ValueError, match="expected a limit >= 0 or None, found -1"):
        neighbours_table(kg, "apple", limit=-1)
    with pytest.raises(ValueError, match="Table row 0: expected 2 values, found 1"):
        Table(("a", "b"), [(1,)])


def test_neighbours_table_without_pandas(kg, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    assert isinstance(neighbours_table(kg, "apple"), Table)
    with pytest.raises(ImportError, match="pip install pandas"):
        neighbours_table(kg, "apple", as_frame=True)


def test_neighbours_table_pandas(kg):
    pd = pytest.importorskip("pandas")
    df = neighbours_table(kg, "apple")
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["direction", "relation", "neighbour", "weight", "fact"]
    assert list(df["neighbour"]) == ["kitchen", "fruit", "eating", "kitchen"]


# --------------------------------------------------------------------------- drawing

def test_display_name():
    assert display_name("something_you_find_outside") == "something you\nfind outside"
    assert display_name("ice_cream") == "ice cream"
    assert display_name("something_you_find_outside", None) == "something you find outside"


def test_draw_view_edges_nodes_legend(kg):
    view = kg.subgraph(sorted(NAMES))
    ax = draw_subgraph(view, seeds=["Apple"])
    assert len(arrows(ax)) == 6
    assert sum(node_points(ax)) == 6
    assert sorted(node_points(ax)) == [1, 5]  # the seed is drawn apart
    # Most frequent first, ties by name.
    assert legend_labels(ax) == ["AtLocation", "IsA", "RelatedTo", "UsedFor"]
    colors = relation_colors(["AtLocation", "IsA", "RelatedTo", "UsedFor"])
    drawn = sorted(tuple(np.round(a.get_edgecolor(), 3)) for a in arrows(ax))
    expected = sorted(tuple(np.round(to_rgba(colors[r], 0.9), 3))
                      for r in ["AtLocation", "AtLocation", "IsA", "IsA", "RelatedTo", "UsedFor"])
    assert drawn == expected
    assert {t.get_text() for t in ax.texts} == NAMES
    bold = [t.get_text() for t in ax.texts if t.get_fontweight() == "bold"]
    assert bold == ["apple"]
    assert ax.get_title() == "6 concepts, 6 edges (seeds: apple)"


def test_draw_partial_view_and_labels():
    b = GraphBuilder(RelationConfig())
    b.add("IsA", "ice_cream", "frozen_dairy_dessert")
    b.add("AtLocation", "ice_cream", "freezer")
    kg = b.build()
    ax = draw_subgraph(kg.subgraph(["ice_cream", "frozen_dairy_dessert"]), title="t")
    assert len(arrows(ax)) == 1 and sum(node_points(ax)) == 2
    assert legend_labels(ax) == ["IsA"]
    assert {t.get_text() for t in ax.texts} == {"ice cream", "frozen dairy\ndessert"}
    assert ax.get_title() == "t"


def test_draw_retrieved_subgraph_highlights_its_seeds(kg):
    sg = SubgraphRetriever(kg, RetrievalConfig(k=3, budget=6, method="khop")).retrieve(["banana"])
    fig, ax = plt.subplots()
    assert draw_subgraph(sg, ax=ax, legend=False) is ax
    assert len(arrows(ax)) == sg.num_edges == 6
    assert sorted(node_points(ax)) == [1, 5]
    assert ax.get_legend() is None
    assert [t.get_text() for t in ax.texts if t.get_fontweight() == "bold"] == ["banana"]


def test_draw_parallel_edges_are_separate_arcs():
    b = GraphBuilder(RelationConfig())
    b.add("IsA", "a", "b")
    b.add("RelatedTo", "a", "b")
    b.add("RelatedTo", "b", "a")
    kg = b.build()
    ax = draw_subgraph(kg.subgraph(["a", "b"]))
    arcs = arrows(ax)
    assert len(arcs) == 3
    assert legend_labels(ax) == ["RelatedTo", "IsA"]
    paths = {tuple(np.round(a.get_path().vertices.ravel(), 4)) for a in arcs}
    assert len(paths) == 3  # no two arcs drawn on top of each other


def test_draw_components_side_by_side():
    b = GraphBuilder(RelationConfig())
    b.add("IsA", "a", "b")
    b.add("IsA", "c", "d")
    b.add("IsA", "c", "e")
    kg = b.build()
    ax = draw_subgraph(kg.subgraph(["a", "b", "c", "d", "e"]), seeds=[])
    (points,) = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    x = dict(zip(["a", "b", "c", "d", "e"], np.asarray(points)[:, 0]))  # nodes are drawn in name order
    small, large = (x["a"], x["b"]), (x["c"], x["d"], x["e"])
    assert max(large) < min(small)  # the larger component first, and no overlap
    assert ax.get_title() == "5 concepts, 3 edges"


def test_draw_networkx_input_and_errors(kg):
    g = kg.subgraph(sorted(NAMES)).to_networkx()
    ax = draw_subgraph(g, layout="circular")
    assert len(arrows(ax)) == 6 and sum(node_points(ax)) == 6
    with pytest.raises(KeyError, match="seed 'pear' is not a node of the graph"):
        draw_subgraph(g, seeds=["pear"])
    with pytest.raises(TypeError, match="expected a retrieval Subgraph, a kg_ingest SubgraphView"):
        draw_subgraph([1, 2])
    with pytest.raises(ValueError, match="expected layout 'spring'.*found 'grid'"):
        draw_subgraph(g, layout="grid")
    empty = draw_subgraph(kg.subgraph(np.zeros(0, dtype=np.int64)))
    assert arrows(empty) == [] and node_points(empty) == [] and empty.get_title() == "empty subgraph"


def test_draw_undirected_networkx_and_large_graph_warning(kg, monkeypatch):
    import networkx as nx

    import ravlm_graph.explore as explore

    g = nx.Graph()
    g.add_edge("x", "y", relation="RelatedTo")
    g.add_edge("y", "z")
    ax = draw_subgraph(g)
    assert len(arrows(ax)) == 2  # one arrow per undirected edge
    assert legend_labels(ax) == ["RelatedTo", "edge"]
    monkeypatch.setattr(explore, "_MANY_NODES", 5)
    with pytest.warns(UserWarning, match="drawing 6 nodes will be slow"):
        draw_subgraph(kg.subgraph(sorted(NAMES)))


def test_relation_colors_stable_and_distinct():
    c = relation_colors(["IsA", "UsedFor", "IsA"])
    assert list(c) == ["IsA", "UsedFor"] and c["IsA"] != c["UsedFor"]
    many = relation_colors([f"R{i}" for i in range(30)])
    assert len(set(many.values())) == 30


# --------------------------------------------------------------------------- statistics

def test_degree_histogram_counts(kg):
    ax = degree_histogram(kg)
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == 6
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_title() == "Degree distribution: 6 concepts, max 4"
    # degrees: apple 4, fruit 3, kitchen 2, banana/eating/market 1.
    bars = {(round(p.get_x()), round(p.get_x() + p.get_width())): p.get_height() for p in ax.patches if p.get_height()}
    assert bars == {(1, 2): 3, (2, 3): 1, (3, 4): 1, (4, 5): 1}


def test_degree_histogram_isolated_nodes_and_direction():
    # "zebra" has no edge.
    kg = KnowledgeGraph.from_arrays(["a", "b", "zebra"], ["IsA"], [0], [1], [0], [1.0])
    ax = degree_histogram(kg, direction="out")
    assert sum(p.get_height() for p in ax.patches) == 1
    assert ax.get_title() == "Degree distribution: 3 concepts, max 1; 2 with degree 0 not shown"
    assert ax.get_xlabel() == "degree (out)"
    with pytest.raises(ValueError, match="expected bins >= 1, found 0"):
        degree_histogram(kg, bins=0)


def test_relation_bar(kg):
    ax = relation_bar(kg)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = [p.get_width() for p in ax.patches]
    # Bottom to top, so the most frequent is at the top.
    assert labels == ["UsedFor", "RelatedTo", "IsA", "AtLocation"]
    assert widths == [1, 1, 2, 2]
    assert ax.get_title() == "Edges per relation: 6 edges"
    ax = relation_bar(kg, top=2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["IsA", "AtLocation"]
    assert ax.get_title() == "Edges per relation (top 2 of 4): 6 edges"
    with pytest.raises(ValueError, match="expected top >= 1 or None, found 0"):
        relation_bar(kg, top=0)


# --------------------------------------------------------------------------- paths

def test_explain_paths(kg):
    paths = explain_paths(kg, "banana", "eating")
    assert [str(p) for p in paths] == ["banana --IsA--> fruit <--IsA-- apple --UsedFor--> eating"]
    assert paths[0].text == "a banana is a fruit; an apple is a fruit; an apple is used for eating"
    assert explain_paths(kg, "banana", "eating", max_len=2) == []
    two = explain_paths(kg, "kitchen", "fruit")
    assert {str(p) for p in two} == {"kitchen --RelatedTo--> apple --IsA--> fruit",
                                     "kitchen <--AtLocation-- apple --IsA--> fruit"}
    assert len(explain_paths(kg, "kitchen", "fruit", max_paths=1)) == 1
    direct = explain_paths(kg, "Apple", "eating", max_len=1)
    assert [str(p) for p in direct] == ["apple --UsedFor--> eating"]


def test_explain_paths_errors(kg):
    with pytest.raises(ValueError, match="expected two different concepts"):
        explain_paths(kg, "apple", "Apple")
    with pytest.raises(KeyError, match="'pear' is not in the graph"):
        explain_paths(kg, "apple", "pear")


def test_draw_entities_boxes_and_labels():
    import matplotlib

    matplotlib.use("Agg")
    from PIL import Image

    from ravlm_graph.explore import draw_entities
    from ravlm_graph.types import Entity

    ents = [Entity("ice_cream", 0.9, "image", box=(0, 0, 8, 8)), Entity("spoon", 0.5, "image", box=(8, 8, 16, 16)),
            Entity("cold", 1.0, "question")]
    ax = draw_entities(Image.new("RGB", (16, 16)), ents)
    assert len(ax.patches) == 2
    assert sorted(t.get_text() for t in ax.texts) == ["ice cream (0.90)", "spoon (0.50)"]
    assert ax.get_title() == "also: cold"


def test_draw_entities_large_photo_drawn_from_a_small_copy_in_full_pixel_coordinates():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from ravlm_graph.explore import draw_entities
    from ravlm_graph.types import Entity

    small = draw_entities(Image.new("RGB", (16, 12)), [])
    assert small.images[0].get_array().shape[:2] == (12, 16)
    assert small.get_xlim() == (-0.5, 15.5) and small.get_ylim() == (11.5, -0.5)  # as imshow's default
    ax = draw_entities(Image.new("RGB", (4000, 2000)), [Entity("cat", 0.9, "image", box=(3000, 1000, 3990, 1990))])
    # matplotlib holds a copy of at most 1600 px a side (a 48-megapixel photo held whole took gigabytes) ...
    assert ax.images[0].get_array().shape[:2] == (800, 1600)
    # ... spread over the photo's own pixels, so that the boxes land where they are in the photo.
    assert ax.get_xlim() == (-0.5, 3999.5) and ax.get_ylim() == (1999.5, -0.5)
    assert ax.patches[0].get_xy() == (3000, 1000)
    plt.close("all")
