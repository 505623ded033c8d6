"""KnowledgeGraph API arguments: a lone string is one concept, never its characters; wrong types,
negative counts and out-of-range ids are refused with errors naming the argument."""

import numpy as np
import pytest

from kg_ingest import GraphBuilder, KnowledgeGraph, RelationConfig, ingest_rdf, ingest_triples


# ------------------------------------------------------- a lone string or bytes
def test_subgraph_of_a_lone_name_is_that_concept(tiny_kg):
    assert tiny_kg.subgraph("apple").node_names() == ["apple"]
    assert tiny_kg.subgraph(tiny_kg.lookup("fruit")).node_names() == ["fruit"]
    assert tiny_kg.subgraph(np.int64(tiny_kg.lookup("fruit"))).node_names() == ["fruit"]


@pytest.mark.parametrize("export", ["to_networkx", "to_rdflib"])
def test_exports_of_a_lone_name_are_that_concept(tiny_kg, export):
    if export == "to_networkx":
        assert list(tiny_kg.to_networkx(nodes="apple").nodes) == ["apple"]
        g = tiny_kg.to_networkx(nodes=["apple", "fruit"])
        assert sorted(g.nodes) == ["apple", "fruit"] and g.number_of_edges() == 1
    else:
        assert len(tiny_kg.to_rdflib(nodes="apple")) == 0  # one node, no edge


@pytest.mark.parametrize("call", [
    lambda kg: kg.k_hop(b"apple", k=0),
    lambda kg: kg.k_hop(bytearray(b"apple"), k=0),
    lambda kg: kg.subgraph(b"apple"),
    lambda kg: kg.to_networkx(nodes=b"apple"),
    lambda kg: kg.k_hop([b"apple"], k=0),
])
def test_bytes_are_refused_not_split_into_byte_values(tiny_kg, call):
    with pytest.raises(TypeError, match=r"(seeds|nodes): expected a concept name \(str\) or id \(int\), found byte"):
        call(tiny_kg)


@pytest.mark.parametrize("ids", ["12", b"\x01\x02", [True, False], [1.0], ["apple"], [[0, 1]]])
def test_concept_names_wants_integer_ids(tiny_kg, ids):
    with pytest.raises(TypeError, match="ids: expected"):
        tiny_kg.concept_names(ids)


def test_concept_names_in_order_and_range_checked(tiny_kg):
    assert tiny_kg.concept_names([2, 0, 2]) == [tiny_kg.concept_name(2), tiny_kg.concept_name(0)] * 1 + \
        [tiny_kg.concept_name(2)]
    assert tiny_kg.concept_names(np.array([1], dtype=np.int32)) == [tiny_kg.concept_name(1)]
    assert tiny_kg.concept_names(iter([])) == []
    with pytest.raises(IndexError, match="out of range"):
        tiny_kg.concept_names([0, -1])
    with pytest.raises(IndexError, match="out of range"):
        tiny_kg.concept_names([tiny_kg.num_nodes])


@pytest.mark.parametrize("nodes", [None, 3.5])
def test_subgraph_of_no_iterable_names_the_argument(tiny_kg, nodes):
    with pytest.raises(TypeError, match="nodes: expected"):
        tiny_kg.subgraph(nodes)


# ------------------------------------------------------------ numbers and types
@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)])
def test_k_hop_max_degree_must_be_a_count(tiny_kg, bad, exc):
    with pytest.raises(exc, match="max_degree"):
        tiny_kg.k_hop("apple", k=1, max_degree=bad)
    assert tiny_kg.concept_names(tiny_kg.k_hop("apple", k=1, max_degree=0)) == ["apple"]


@pytest.mark.parametrize("bad, exc", [(-3, ValueError), (2.0, TypeError), (None, TypeError)])
def test_degree_stats_top_must_be_a_count(tiny_kg, bad, exc):
    with pytest.raises(exc, match="top"):
        tiny_kg.degree_stats(top=bad)
    assert tiny_kg.degree_stats(top=0)["top"] == []


def test_degree_stats_of_an_empty_store_has_the_same_keys():
    empty = KnowledgeGraph.from_arrays([], [], [], [], [], [])
    full = KnowledgeGraph.from_arrays(["a", "b"], ["IsA"], [0], [1], [0], [1.0])
    assert list(empty.degree_stats()) == list(full.degree_stats())
    assert empty.degree_stats()["p99"] == 0.0


@pytest.mark.parametrize("eid, exc", [(-1, IndexError), (6, IndexError), (True, TypeError), (1.0, TypeError),
                                      ("0", TypeError)])
def test_edge_ids_are_checked(tiny_kg, eid, exc):
    assert tiny_kg.num_edges == 6
    with pytest.raises(exc, match="edge id"):
        tiny_kg.edge(eid)
    with pytest.raises(exc, match="edge id"):
        tiny_kg.surface_text(eid)


def test_edge_accepts_numpy_integers(tiny_kg):
    assert tiny_kg.edge(np.int32(0)) == tiny_kg.edge(0)


@pytest.mark.parametrize("call", [lambda kg: kg.concept_id(True), lambda kg: kg.neighbors(True),
                                  lambda kg: kg.concept_id(np.bool_(True)), lambda kg: kg.concept_id(None),
                                  lambda kg: kg.edges_between(False, 1), lambda kg: kg.incident_edges(b"apple")])
def test_a_bool_or_other_type_is_no_concept(tiny_kg, call):
    with pytest.raises(TypeError, match="concept: expected a concept name"):
        call(tiny_kg)


@pytest.mark.parametrize("node, exc", [(-1, IndexError), (6, IndexError), (True, TypeError), ("0", TypeError)])
def test_out_and_in_edges_check_the_node(tiny_kg, node, exc):
    for f in (tiny_kg.out_edges, tiny_kg.in_edges):
        with pytest.raises(exc, match="concept id"):
            f(node)


def test_concept_name_refuses_strings_and_bools(tiny_kg):
    for bad in ("1", True, 1.0):
        with pytest.raises(TypeError, match="i: expected an integer concept id"):
            tiny_kg.concept_name(bad)
    with pytest.raises(IndexError, match="out of range"):
        tiny_kg.concept_name(-1)


def test_a_lone_surrogate_is_no_concept_name(tiny_kg):
    for call in (tiny_kg.lookup, tiny_kg.resolve, tiny_kg.find_id, tiny_kg.concept_id, tiny_kg.search):
        with pytest.raises(ValueError, match="not valid Unicode"):
            call("\ud800")
    assert "\ud800" not in tiny_kg
    with pytest.raises(ValueError, match="seeds: .*not valid Unicode"):
        tiny_kg.k_hop("ap\udcffple")


def test_search_checks_its_arguments(tiny_kg):
    with pytest.raises(TypeError, match="prefix: expected"):
        tiny_kg.search(None)
    with pytest.raises(ValueError, match="limit"):
        tiny_kg.search("a", limit=-1)
    with pytest.raises(TypeError, match="limit"):
        tiny_kg.search("a", limit=None)
    assert tiny_kg.search("a", limit=0) == [] and tiny_kg.search("a") == ["apple"]


def test_relation_must_be_a_name(tiny_kg):
    with pytest.raises(TypeError, match="relation: expected a relation name"):
        tiny_kg.neighbors("apple", relation=5)


@pytest.mark.parametrize("bad", [None, 5])
def test_load_and_save_want_a_path(tiny_kg, bad):
    with pytest.raises(TypeError, match="path: expected a folder path"):
        KnowledgeGraph.load(bad)
    with pytest.raises(TypeError, match="path: expected a folder path"):
        tiny_kg.save(bad)


# ------------------------------------------------------------------ RDF round trip
def test_rdf_export_then_import_keeps_concept_and_relation_names(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("RelatedTo\tA/B\tc:d\nmy weird rel!\tdog\tcat\nIsA\t50% off\tcafé #1\n"
                   "dbpedia/genre\tx?y\tz&w\n", encoding="utf-8")
    kg, _ = ingest_triples(src, relations=RelationConfig(keep=None, drop=[]))
    names = kg.concept_names(range(kg.num_nodes))
    assert {"a/b", "c:d", "my weird rel!", "50%_off"} <= set(names) | set(kg.relations)
    nt = tmp_path / "out.nt"
    nt.write_bytes(kg.to_rdflib().serialize(format="nt", encoding="utf-8"))
    back, _ = ingest_rdf(nt, relations=RelationConfig(keep=None, drop=[]))
    assert back.concept_names(range(back.num_nodes)) == names
    assert sorted(back.relations) == sorted(kg.relations)
    assert sorted(map(tuple, (back.edge(e) for e in range(back.num_edges)))) == \
        sorted(map(tuple, (kg.edge(e) for e in range(kg.num_edges))))


def test_multilingual_names_keep_their_language_segment():
    from kg_ingest.export import concept_iri

    kg = KnowledgeGraph.from_arrays(["fr/a/b", "fr/pomme"], ["IsA"], [0], [1], [0], [1.0],
                                    meta={"language": None})
    assert concept_iri(kg, "fr/a/b") == "http://conceptnet.io/c/fr/a%2Fb"
    assert concept_iri(kg, "fr/pomme") == "http://conceptnet.io/c/fr/pomme"
