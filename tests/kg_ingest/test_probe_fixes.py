"""Defects found by probing the kg-ingest CLI with odd inputs; each test fails without its fix."""

import gzip
import json

import pytest

from kg_ingest import KnowledgeGraph
from kg_ingest._io import InputError
from kg_ingest.cli import main
from kg_ingest.ingest import ingest_rdf, ingest_triples


def _err(capsys):
    return capsys.readouterr().err.strip()


# ---------------------------------------------------------------- RDF
def test_turtle_parse_error_keeps_rdflib_reason_on_one_line(tmp_path, capsys):
    p = tmp_path / "bad.ttl"
    p.write_text("@prefix ex: <http://example.org/> .\nex:Dog ex:isA ex:Animal .\nex:Cat ex:isA \n"
                 "undeclared:Thing ex:p ex:q .\n")
    assert main(["rdf", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = _err(capsys)
    assert len(err.splitlines()) == 1
    assert "cannot parse as turtle RDF: at line 4" in err and 'Prefix "undeclared:" not bound' in err


def test_unknown_rdf_format_lists_the_accepted_ones(tmp_path, capsys):
    p = tmp_path / "g.ttl"
    p.write_text("<http://e.org/a> <http://e.org/p> <http://e.org/b> .\n")
    assert main(["rdf", str(p), "--format", "bogus", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = _err(capsys)
    assert "unknown RDF format 'bogus'" in err and "turtle" in err and "json-ld" in err
    assert "No plugin registered" not in err


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_rdflib_formats_count_lines_exactly(tmp_path, trailing_newline):
    p = tmp_path / "g.ttl"
    text = "@prefix ex: <http://example.org/> .\nex:dog ex:isA ex:animal .\nex:cat ex:isA ex:animal ."
    p.write_text(text + ("\n" if trailing_newline else ""))
    _, stats = ingest_rdf(p)
    assert stats.lines_read == 3


def test_missing_jsonld_context_file_is_an_error(tmp_path, capsys):
    p = tmp_path / "ok.jsonld"
    p.write_text(json.dumps({"@id": "http://e.org/dog", "http://e.org/isA": {"@id": "http://e.org/animal"}}))
    assert main(["rdf", str(p), "--out", str(tmp_path / "o"), "--no-progress", "--quiet"]) == 0
    assert main(["rdf", str(p), "--jsonld-context", str(tmp_path / "nonexist"), "--out", str(tmp_path / "o2"),
                 "--no-progress", "--quiet"]) == 2
    assert "nonexist: the --jsonld-context file: no such file" in _err(capsys)


# ---------------------------------------------------------------- gzip
def test_trailing_bytes_after_gzip_are_ignored_with_a_warning(tmp_path, capsys):
    p = tmp_path / "t.txt.gz"
    body = "".join(f"IsA\tthing{i}\tanimal\n" for i in range(2000))
    p.write_bytes(gzip.compress(body.encode()) + b"garbage!!")
    assert main(["triples", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "trailing data after the end of the gzip stream" in out + err and "truncated" not in out + err
    kg = KnowledgeGraph.load(tmp_path / "o")
    assert kg.num_edges == 2000
    assert "9 bytes of trailing data" in kg.meta["ingest_stats"]["warnings"][0]


def test_gzip_members_after_trailing_check_and_truncation_still_reported(tmp_path):
    two = tmp_path / "two.gz"
    two.write_bytes(gzip.compress(b"IsA\tdog\tanimal\n") + gzip.compress(b"IsA\tcat\tanimal\n") + b"x")
    kg, stats = ingest_triples(two)
    assert kg.num_edges == 2 and len(stats.warnings) == 1
    whole = gzip.compress(b"IsA\tdog\tanimal\n" * 100)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole[:-6])
    with pytest.raises(InputError, match="truncated gzip"):
        ingest_triples(cut)
