"""Hostile, malformed and unusual inputs: each gives a one-line error or the right store, never a
hang, unbounded memory, silent data loss or a store of garbage."""

import pytest

from kg_ingest import ingest_rdf


def edge_set(kg):
    return {(kg.concept_name(s), kg.relations[r], kg.concept_name(d))
            for s, r, d in zip(kg.edge_src.tolist(), kg.edge_rel.tolist(), kg.edge_dst.tolist())}


ALL3 = {("dog", "IsA", "animal"), ("cat", "IsA", "animal"), ("fox", "IsA", "animal")}

NAMED_GRAPHS = {
    "nquads": ("a.nq", "<http://ex.org/Dog> <http://ex.org/IsA> <http://ex.org/Animal> <http://ex.org/g1> .\n"
                       "<http://ex.org/Cat> <http://ex.org/IsA> <http://ex.org/Animal> <http://ex.org/g2> .\n"
                       "<http://ex.org/Fox> <http://ex.org/IsA> <http://ex.org/Animal> .\n"),
    "trig": ("a.trig", "@prefix ex: <http://ex.org/> .\nex:g1 { ex:Dog ex:IsA ex:Animal . }\n"
                       "ex:g2 { ex:Cat ex:IsA ex:Animal . }\nex:Fox ex:IsA ex:Animal .\n"),
    "trix": ("a.trix", '<?xml version="1.0"?>\n<TriX xmlns="http://www.w3.org/2004/03/trix/trix-1/">\n'
                       "<graph><uri>http://ex.org/g1</uri><triple><uri>http://ex.org/Dog</uri>"
                       "<uri>http://ex.org/IsA</uri><uri>http://ex.org/Animal</uri></triple></graph>\n"
                       "<graph><triple><uri>http://ex.org/Cat</uri><uri>http://ex.org/IsA</uri>"
                       "<uri>http://ex.org/Animal</uri></triple>"
                       "<triple><uri>http://ex.org/Fox</uri><uri>http://ex.org/IsA</uri>"
                       "<uri>http://ex.org/Animal</uri></triple></graph>\n</TriX>\n"),
    "json-ld": ("a.jsonld", '[{"@id": "http://ex.org/g1", "@graph": [{"@id": "http://ex.org/Dog", '
                            '"http://ex.org/IsA": {"@id": "http://ex.org/Animal"}}]},'
                            ' {"@id": "http://ex.org/Cat", "http://ex.org/IsA": {"@id": "http://ex.org/Animal"}},'
                            ' {"@id": "http://ex.org/Fox", "http://ex.org/IsA": {"@id": "http://ex.org/Animal"}}]'),
}


@pytest.mark.parametrize("fmt", sorted(NAMED_GRAPHS))
def test_triples_of_named_graphs_are_kept(tmp_path, fmt):
    name, text = NAMED_GRAPHS[fmt]
    p = tmp_path / name
    p.write_text(text)
    kg, stats = ingest_rdf(p, fmt=fmt)
    assert edge_set(kg) == ALL3
    assert stats.records == 3
