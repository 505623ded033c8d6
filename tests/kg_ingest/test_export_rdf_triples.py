import gzip

import pytest

from kg_ingest import InputError, KnowledgeGraph, ingest_rdf, ingest_triples, iri_to_concept, iter_records, \
    iter_triples


def edge_set(kg):
    return {kg.edge(e)[:3] for e in range(kg.num_edges)}


def test_to_networkx(tiny_kg):
    g = tiny_kg.to_networkx()
    assert g.number_of_nodes() == 6 and g.number_of_edges() == 6
    assert g["apple"]["kitchen"]["AtLocation"] == {"relation": "AtLocation", "weight": 2.0}
    sub = tiny_kg.to_networkx(nodes=["apple", "fruit"])
    assert sorted(sub.edges(keys=True)) == [("apple", "fruit", "IsA")]


def test_to_pyg(tiny_kg):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch_geometric")
    d = tiny_kg.to_pyg()
    assert d.num_nodes == 6 and d.edge_index.shape == (2, 6) and d.edge_index.dtype == torch.long
    triples = {(d.node_names[s], d.relation_names[r], d.node_names[t])
               for (s, t), r in zip(d.edge_index.t().tolist(), d.edge_type.tolist())}
    assert triples == edge_set(tiny_kg)
    assert d.edge_weight.dtype == torch.float32 and sorted(d.edge_weight.tolist()) == [0.5, 1, 1, 1, 1, 2]
    sub = tiny_kg.subgraph(["banana", "fruit", "market"]).to_pyg()
    assert sub.num_nodes == 3 and sub.edge_index.tolist() == [[0, 1], [1, 2]]
    assert [tiny_kg.concept_name(i) for i in sub.node_id.tolist()] == ["banana", "fruit", "market"]


def test_to_rdflib_uses_conceptnet_iris_and_turtle_round_trips(tiny_kg, tmp_path):
    rdflib = pytest.importorskip("rdflib")
    g = tiny_kg.to_rdflib()
    assert (rdflib.URIRef("http://conceptnet.io/c/en/apple"), rdflib.URIRef("http://conceptnet.io/r/UsedFor"),
            rdflib.URIRef("http://conceptnet.io/c/en/eating")) in g
    ttl = tmp_path / "g.ttl"
    g.serialize(ttl, format="turtle")
    back, _ = ingest_rdf(ttl)
    assert edge_set(back) == edge_set(tiny_kg)
    nt = tmp_path / "g.nt"
    g.serialize(nt, format="nt", encoding="utf-8")
    back_nt, stats = ingest_rdf(nt)  # the streaming N-Triples path
    assert edge_set(back_nt) == edge_set(tiny_kg) and stats.lines_read >= 6


def test_rdf_non_ascii_and_foreign_iris(tmp_path):
    p = tmp_path / "x.nt"
    p.write_text(
        '<http://conceptnet.io/c/en/caf%C3%A9> <http://conceptnet.io/r/AtLocation> <http://conceptnet.io/c/en/paris> .\n'
        '<http://example.org/Ice_Cream> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <http://example.org/Dessert> .\n'
        '<http://example.org/Ice_Cream> <http://www.w3.org/2000/01/rdf-schema#label> "ice cream"@en .\n'
        '_:b1 <http://example.org/p> <http://example.org/x> .\n'
        'this is not a triple\n', encoding="utf-8")
    kg, stats = ingest_rdf(p)
    assert edge_set(kg) == {("café", "AtLocation", "paris"), ("ice_cream", "IsA", "dessert")}
    assert stats.skipped["literal object"] == 1 and stats.skipped["blank node"] == 1
    assert stats.malformed_samples == [f"{p}:5: expected an N-Triples statement '<s> <p> <o> .', "
                                       "found 'this is not a triple'"]
    with pytest.raises(InputError, match=r"x\.nt:5"):
        ingest_rdf(p, strict=True)
    assert iri_to_concept("http://conceptnet.io/c/en/ice_cream/n") == "ice_cream"


def test_rdf_formats_and_errors(tmp_path):
    pytest.importorskip("rdflib")
    xml = tmp_path / "g.rdf"
    xml.write_text("""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:r="http://conceptnet.io/r/">
  <rdf:Description rdf:about="http://conceptnet.io/c/en/dog"><r:CapableOf rdf:resource="http://conceptnet.io/c/en/bark"/></rdf:Description>
</rdf:RDF>""")
    kg, _ = ingest_rdf(xml)
    assert edge_set(kg) == {("dog", "CapableOf", "bark")}
    bad = tmp_path / "bad.ttl"
    bad.write_text("@prefix : <http://x/> .\n:a :b")
    with pytest.raises(InputError, match=r"bad\.ttl: cannot parse as turtle RDF"):
        ingest_rdf(bad)
    with pytest.raises(InputError, match="cannot tell the RDF format"):
        ingest_rdf(tmp_path / "g.unknown")


def test_cn100k_triples_and_weights(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("ReceivesAction\thockey\tplay on ice\nAtLocation\trestroom\trest area\t2.5\n"
                 "isa\tIce Cream\tdessert\n")
    recs = list(iter_records(iter_triples(p)))
    assert [(r.relation, r.head, r.tail, r.weight) for r in recs] == [
        ("ReceivesAction", "hockey", "play_on_ice", 1.0), ("AtLocation", "restroom", "rest_area", 2.5),
        ("isa", "ice_cream", "dessert", 1.0)]
    kg, _ = ingest_triples(p)
    assert ("IsA", "dessert", 1.0) in kg.neighbors("ice cream")  # lower-case names restored to CamelCase
    hrt = tmp_path / "hrt.tsv"
    hrt.write_text("head\trelation\ttail\ndog\tCapableOf\tbark\n")
    kg2, _ = ingest_triples(hrt, order="hrt")
    assert edge_set(kg2) == {("dog", "CapableOf", "bark")}


def test_triples_bad_lines(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("IsA\tdog\tanimal\nIsA\tcat\nIsA\tfox\tanimal\tmany\nIsA\t-\tanimal\n")
    kg, stats = ingest_triples(p)
    assert kg.num_edges == 1
    assert stats.malformed_samples == [
        f"{p}:2: expected 3 or 4 tab-separated columns (relation, head, tail[, weight]), found 2",
        f"{p}:3: expected a number in the weight column, found 'many'",
        f"{p}:4: the head column '-' is empty after normalisation"]
    with pytest.raises(InputError, match=r"t\.txt:2: expected 3 or 4"):
        ingest_triples(p, strict=True)
    c = tmp_path / "c.csv"
    c.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="expected tab-separated columns"):
        ingest_triples(c)
    g = tmp_path / "g.txt.gz"
    g.write_bytes(gzip.compress(b"IsA\tdog\tanimal\n"))
    assert edge_set(ingest_triples(g)[0]) == {("dog", "IsA", "animal")}
    with pytest.raises(ValueError, match="permutation of 'rht'"):
        list(iter_triples(p, order="rrt"))


def test_save_via_ingest_returns_loaded_store(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("IsA\tdog\tanimal\n")
    kg, _ = ingest_triples(p, tmp_path / "out")
    assert kg.path == tmp_path / "out" and KnowledgeGraph.load(tmp_path / "out").num_edges == 1
