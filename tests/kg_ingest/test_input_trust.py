"""Ingest reads its input and nothing else; malformed input is reported, never stored quietly."""

import json
import os
import socket
import threading
import time
import urllib.request

import pytest

from kg_ingest import (ConceptNetOptions, InputError, IngestStats, KnowledgeGraph, ingest_conceptnet, ingest_rdf,
                       ingest_triples, iter_assertions, iter_records)
from kg_ingest.cli import main
from kg_ingest.rdf import parse_ntriples_line

from .conftest import line


def edge_set(kg):
    return {(kg.concept_name(s), kg.relations[r], kg.concept_name(d))
            for s, r, d in zip(kg.edge_src.tolist(), kg.edge_rel.tolist(), kg.edge_dst.tolist())}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# ------------------------------------------------------------------ JSON-LD
DOC = {"@id": "http://example.org/Dog", "http://conceptnet.io/r/CapableOf": {"@id": "http://example.org/Bark"}}


@pytest.mark.parametrize("context", ["https://schema.org/", "file:///etc/passwd", "ctx.jsonld",
                                     [{"@vocab": "http://x/"}, "http://example.org/ctx"],
                                     {"@import": "http://example.org/ctx"}])
def test_jsonld_external_context_is_refused_without_fetching(tmp_path, no_network, context, capsys):
    p = tmp_path / "g.jsonld"
    p.write_text(json.dumps({"@context": context, **DOC}))
    with pytest.raises(InputError, match=r"g\.jsonld: the JSON-LD @context refers to .*never fetches or reads "
                                         r"anything but its input.*--jsonld-context FILE"):
        ingest_rdf(p)
    assert main(["rdf", str(p), "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_jsonld_with_a_local_context_given_explicitly(tmp_path, no_network):
    ctx = tmp_path / "ctx.jsonld"
    ctx.write_text(json.dumps({"@context": {"r": "http://conceptnet.io/r/", "ex": "http://example.org/"}}))
    p = tmp_path / "g.jsonld"
    p.write_text(json.dumps({"@context": "https://example.org/remote-context",
                             "@id": "ex:Dog", "r:CapableOf": {"@id": "ex:Bark"}}))
    kg, _ = ingest_rdf(p, jsonld_context=ctx)
    assert edge_set(kg) == {("dog", "CapableOf", "bark")}
    # An inline context needs nothing.
    q = tmp_path / "inline.jsonld"
    q.write_text(json.dumps({"@context": {"ex": "http://example.org/"}, "@id": "ex:Cat",
                             "http://conceptnet.io/r/IsA": {"@id": "ex:Animal"}}))
    assert edge_set(ingest_rdf(q)[0]) == {("cat", "IsA", "animal")}


def test_jsonld_context_given_as_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "ctx.fifo"
    os.mkfifo(fifo)
    p = tmp_path / "g.jsonld"
    p.write_text(json.dumps({"@context": "http://example.org/ctx", **DOC}))
    result = {}

    def run():
        try:
            ingest_rdf(p, jsonld_context=fifo)
        except InputError as e:
            result["err"] = str(e)

    t = threading.Thread(target=run, daemon=True)
    t0 = time.time()
    t.start()
    t.join(30)
    if t.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO context hung")
    assert time.time() - t0 < 30
    assert result["err"] == f"{fifo}: the JSON-LD context must be a regular file"


def test_rdfxml_external_entity_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("http://example.org/Secret")
    p = tmp_path / "g.rdf"
    p.write_text(f"""<?xml version="1.0"?>
<!DOCTYPE rdf:RDF [<!ENTITY x SYSTEM "file://{secret}">]>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:r="http://conceptnet.io/r/">
  <rdf:Description rdf:about="http://example.org/Dog"><r:IsA rdf:resource="&x;"/></rdf:Description>
</rdf:RDF>""")
    with pytest.raises(InputError, match=r"g\.rdf: the XML document type names an external entity"):
        ingest_rdf(p)


def test_info_shows_the_input_hash_of_a_turtle_store(tmp_path, capsys):
    import hashlib

    p = tmp_path / "g.ttl"
    p.write_text("@prefix c: <http://conceptnet.io/c/en/> .\n@prefix r: <http://conceptnet.io/r/> .\n"
                 "c:dog r:CapableOf c:bark .\n")
    assert main(["rdf", str(p), "--out", str(tmp_path / "s"), "--quiet", "--no-progress"]) == 0
    assert main(["info", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "sha256 None" not in out
    assert f"source       {p}  sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}…" in out


# --------------------------------------------------------------- ConceptNet
def cn_records(path, **opts):
    stats = IngestStats()
    return list(iter_records(iter_assertions(path, ConceptNetOptions(**opts), stats))), stats


@pytest.mark.parametrize("start, end", [("apple", "/c/en/fruit"), ("/c/en/apple", "/x/en/foo"),
                                        ("/c/EN/apple", "/c/en/fruit"), ("/c/en/", "/c/en/fruit"),
                                        ("/c/e/apple", "/c/fr/pomme"), ("/c/fr/pomme", "/c/en")])
def test_malformed_uris_are_malformed_not_another_language(tmp_path, start, end):
    good = line("IsA", "/c/en/dog", "/c/en/animal") + line("IsA", "/c/fr/chien", "/c/fr/animal")
    p = tmp_path / "d.csv"
    p.write_text(good * 3 + line("IsA", start, end) + good)
    recs, stats = cn_records(p)
    assert stats.skipped["malformed: bad URI"] == 1 and stats.skipped["language"] == 4
    assert stats.malformed_samples[0].startswith(f"{p}:7: expected a concept URI like /c/en/apple")
    with pytest.raises(InputError, match=r"d\.csv:7: expected a concept URI like /c/en/apple"):
        cn_records(p, strict=True)


@pytest.mark.parametrize("bad, where", [("/c/en/app\x00le", "start"), ("/c/en/fru\x01it", "end")])
def test_control_characters_in_uris_are_rejected(tmp_path, bad, where):
    good = line("IsA", "/c/en/dog", "/c/en/animal")
    p = tmp_path / "d.csv"
    row = line("IsA", bad, "/c/en/fruit") if where == "start" else line("IsA", "/c/en/apple", bad)
    p.write_text(good + row + good)
    recs, stats = cn_records(p)
    assert [(r.head, r.tail) for r in recs] == [("dog", "animal"), ("dog", "animal")]
    assert stats.skipped["malformed: control character"] == 1
    with pytest.raises(InputError, match=rf"d\.csv:2: control character U\+000[01] in the {where} URI"):
        cn_records(p, strict=True)
    kg, _ = ingest_conceptnet(p)
    assert all("\x00" not in n and "\x01" not in n for n in kg.concept_names(range(kg.num_nodes)))


def test_crlf_line_ends_are_fine(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(line("IsA", "/c/en/dog", "/c/en/animal").replace("\n", "\r\n").encode() * 2)
    recs, stats = cn_records(p, strict=True)
    assert [(r.head, r.tail) for r in recs] == [("dog", "animal")] * 2


def test_no_edges_is_an_error_not_an_empty_store(tmp_path, capsys):
    p = tmp_path / "d.csv"
    p.write_text(line("IsA", "/c/fr/chien", "/c/fr/animal") * 3)
    with pytest.raises(InputError, match=r"d\.csv: no edges to store: 3 lines read, 0 records parsed, "
                                         r"skipped by reason: language: 3"):
        ingest_conceptnet(p, tmp_path / "s")
    assert main(["conceptnet", str(p), "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    assert "no edges to store" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------ triples
def test_bom_is_stripped_from_triple_files(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"\xef\xbb\xbfAtLocation\tcup\ttable\n")
    kg, _ = ingest_triples(p)
    assert kg.relations == ["AtLocation"]
    h = tmp_path / "h.txt"
    h.write_bytes(b"\xef\xbb\xbfrelation\thead\ttail\nIsA\tdog\tanimal\n")
    kg, _ = ingest_triples(h)
    assert edge_set(kg) == {("dog", "IsA", "animal")}


def test_header_only_triples_file_is_an_error(tmp_path, capsys):
    p = tmp_path / "t.txt"
    p.write_text("relation\thead\ttail\n")
    assert main(["triples", str(p), "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kg-ingest: error: {p}: no edges to store: 1 lines read, 0 records parsed")
    assert not (tmp_path / "s").exists()


def test_control_characters_in_triples(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("IsA\tdog\tanimal\nIsA\tca\x00t\tanimal\nIsA\tfox\tani\x7fmal\n")
    kg, stats = ingest_triples(p)
    assert edge_set(kg) == {("dog", "IsA", "animal")}
    assert stats.malformed_samples == [f"{p}:2: control character U+0000 in column 2",
                                       f"{p}:3: control character U+007F in column 3"]
    with pytest.raises(InputError, match=r"t\.txt:2: control character U\+0000 in column 2"):
        ingest_triples(p, strict=True)


# -------------------------------------------------------------- N-Triples
# Cases written from the W3C N-Triples 1.1 grammar and its test-suite categories.
NT_GOOD = [
    ("<http://example/s> <http://example/p> <http://example/o> .", ("http://example/s", "http://example/o", "iri")),
    ("<http://example/s> <http://example/p> <http://example/o> . # a comment", ("http://example/s", "http://example/o", "iri")),
    ("<http://example/s><http://example/p><http://example/o>.", ("http://example/s", "http://example/o", "iri")),
    ("\t<http://example/s>\t<http://example/p>\t<http://example/o>\t.\t", ("http://example/s", "http://example/o", "iri")),
    ("<http://example/caf\\u00E9> <http://example/p> <http://example/\\U0001F600> .",
     ("http://example/café", "http://example/\U0001F600", "iri")),
    ("_:s <http://example/p> <http://example/o> .", ("_:s", "http://example/o", "iri")),
    ("<http://example/s> <http://example/p> _:a.b .", ("http://example/s", "_:a.b", "bnode")),
    ("_:s<http://example/p>_:o.", ("_:s", "_:o", "bnode")),
    ('<http://example/s> <http://example/p> "x" .', ("http://example/s", "x", "literal")),
    ('<http://example/s> <http://example/p> "x"@en-US .', ("http://example/s", "x", "literal")),
    ('<http://example/s> <http://example/p> "1"^^<http://www.w3.org/2001/XMLSchema#integer> .',
     ("http://example/s", "1", "literal")),
    ('<http://example/s> <http://example/p> "a\\tb\\u00E9\\"\\\\" .', ("http://example/s", 'a\tbé"\\', "literal")),
    ('<http://example/s> <http://example/p> "# not a comment" .', ("http://example/s", "# not a comment", "literal")),
    ("<urn:isbn:0451450523> <http://example/p> <mailto:a@b.c> .", ("urn:isbn:0451450523", "mailto:a@b.c", "iri")),
]
NT_BAD = [
    ("<http://example/ space> <http://example/p> <http://example/o> .", "statement"),   # space in IRI
    ("<http://example/\\u00ZZ> <http://example/p> <http://example/o> .", "statement"),   # bad \u escape
    ("<http://example/\\U00ZZ00ZZ> <http://example/p> <http://example/o> .", "statement"),
    ("<http://example/\\n> <http://example/p> <http://example/o> .", "statement"),      # string escape in IRI
    ("<s> <http://example/p> <http://example/o> .", "relative IRI"),
    ("<http://example/s> <p> <http://example/o> .", "relative IRI"),
    ("<http://example/s> _:p <http://example/o> .", "statement"),                        # bnode predicate
    ('"s" <http://example/p> <http://example/o> .', "statement"),                       # literal subject
    ("<http://example/s> <http://example/p> <http://example/o>", "statement"),           # no dot
    ("<http://example/s> <http://example/p> <http://example/o> ,<http://example/o2> .", "statement"),
    ("<http://example/s> <http://example/p> <http://example/o> ; <http://example/q> <http://example/o> .", "statement"),
    ('<http://example/s> <http://example/p> "x"@1 .', "statement"),                      # bad language tag
    ('<http://example/s> <http://example/p> "\\a" .', "statement"),                      # bad string escape
    ("<http://example/s> <http://example/p> 1 .", "statement"),                          # bare number
    ("<http://example/s> <http://example/p> true .", "statement"),
    ("@prefix ex: <http://example/> .", "statement"),
    ("@base <http://example/> .", "statement"),
    ('<http://example/s> <http://example/p> "x"^^"y" .', "statement"),
    ('<http://example/s> <http://example/p> "abc .', "statement"),                      # unterminated string
    ("<http://example/s> <http://example/p> <http://example/o> . <http://example/s> <http://example/p> "
     "<http://example/o> .", "statement"),                                               # two triples on a line
    ("<http://example/\\u0000> <http://example/p> <http://example/o> .", "may not hold"),  # escaped NUL in IRI
    ('<http://example/s> <http://example/p> "\\uD800" .', "not a Unicode character"),
    ("_:a.b. <http://example/p> <http://example/o> .", "statement"),
]


@pytest.mark.parametrize("text, want", NT_GOOD)
def test_ntriples_positive(text, want):
    s, p, o, kind = parse_ntriples_line(text)
    assert (s, o, kind) == want


@pytest.mark.parametrize("text, why", NT_BAD)
def test_ntriples_negative(text, why):
    with pytest.raises(ValueError, match=why):
        parse_ntriples_line(text)


def test_ntriples_file_with_comments_escapes_and_bom(tmp_path):
    p = tmp_path / "g.nt"
    p.write_bytes("\ufeff# a graph\n"
                  "<http://example.org/caf\\u00E9> <http://conceptnet.io/r/AtLocation> <http://example.org/Paris> . # the café\n"
                  "<http://example.org/Dog> <http://conceptnet.io/r/IsA> <http://example.org/Animal>.\n".encode())
    kg, stats = ingest_rdf(p, strict=True)
    assert edge_set(kg) == {("café", "AtLocation", "paris"), ("dog", "IsA", "animal")}
    assert stats.n_malformed == 0


def test_weights_beyond_float32_are_malformed_not_infinite(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(line("IsA", "/c/en/dog", "/c/en/animal", weight="1e39") + line("IsA", "/c/en/cat", "/c/en/animal"))
    kg, stats = ingest_conceptnet(p)
    assert edge_set(kg) == {("cat", "IsA", "animal")}
    assert stats.malformed_samples == [f"{p}:1: expected a numeric 'weight' (a finite float32) in the JSON, found 1e+39"]
    t = tmp_path / "t.txt"
    t.write_text("IsA\tdog\tanimal\t1e39\nIsA\tcat\tanimal\t2\n")
    kg, stats = ingest_triples(t)
    assert edge_set(kg) == {("cat", "IsA", "animal")} and stats.skipped["malformed: bad weight"] == 1
