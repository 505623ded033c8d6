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


# ---------------------------------------------------------------- ConceptNet dump names
def _dump(tmp_path, starts, rel="IsA", name="d.csv"):
    p = tmp_path / name
    with open(p, "w", encoding="utf-8", newline="\n") as f:
        for s in starts:
            r = rel if isinstance(s, str) else s[1]
            s = s if isinstance(s, str) else s[0]
            f.write(f"/a/x\t/r/{r}\t/c/en/{s}\t/c/en/pet\t{{\"weight\":1.0}}\n")
    return p


def _names(kg):
    return set(kg.concept_names(range(kg.num_nodes)))


def test_dump_concepts_are_cleaned_like_conceptnet(tmp_path):
    from kg_ingest import ingest_conceptnet

    p = _dump(tmp_path, ["d\u0085og", "ca\u2028t", "nai\u0308ve", "Cat", "ice cream", "caf%C3%A9", "x%0Ay"])
    kg, stats = ingest_conceptnet(p)
    assert _names(kg) == {"naïve", "cat", "ice_cream", "café", "pet"}
    assert stats.skipped["malformed: control character"] == 3
    assert any("U+0085" in m for m in stats.malformed_samples)
    assert any("U+2028" in m for m in stats.malformed_samples)


def test_dump_cleaning_same_on_the_fast_path(tmp_path):
    """Enough lines for the block indexer's fast path; the odd ones are mixed in."""
    from kg_ingest import ingest_conceptnet

    starts = [f"plain{i}" for i in range(3000)] + ["Cat", "ice cream", "caf%C3%A9", "nai\u0308ve"]
    kg, _ = ingest_conceptnet(_dump(tmp_path, starts))
    assert {"cat", "ice_cream", "café", "naïve"} <= _names(kg)
    assert not {"Cat", "ice cream", "caf%C3%A9"} & _names(kg)


def test_keep_pos_and_keep_sense_drop_empty_segments_and_non_pos(tmp_path):
    from kg_ingest import ConceptNetOptions, ingest_conceptnet

    p = _dump(tmp_path, ["cat/n/", "dog//n", "hen/x", "owl/n/wn/bird", "emu/v"])
    kg, _ = ingest_conceptnet(p, options=ConceptNetOptions(keep_pos=True))
    assert _names(kg) == {"cat/n", "dog/n", "hen", "owl/n", "emu/v", "pet"}
    kg, _ = ingest_conceptnet(p, options=ConceptNetOptions(keep_sense=True))
    assert _names(kg) == {"cat/n", "dog/n", "hen/x", "owl/n/wn/bird", "emu/v", "pet"}


def test_neighbors_finds_cleaned_concepts_from_what_is_typed(tmp_path, capsys):
    p = _dump(tmp_path, ["Cat", "ice cream", "nai\u0308ve"])
    assert main(["conceptnet", str(p), "--out", str(tmp_path / "s"), "--no-progress", "--quiet"]) == 0
    for typed in ("cat", "Cat", "ice cream", "Ice Cream", "nai\u0308ve", "NAÏVE"):
        assert main(["neighbors", str(tmp_path / "s"), typed]) == 0
        assert capsys.readouterr().out.strip() == "IsA\tpet\t1", typed


def test_triples_accept_conceptnet_uris(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("IsA\t/c/en/apple\t/c/en/ice_cream/n\nIsA\t/c/en/Big%20Dog\tanimal\n")
    kg, _ = ingest_triples(p)
    assert _names(kg) == {"apple", "ice_cream", "big_dog", "animal"}


# ---------------------------------------------------------------- relations
def test_dump_relations_case_insensitive_and_spaces_malformed(tmp_path):
    from kg_ingest import ingest_conceptnet

    p = _dump(tmp_path, [("a", "Is A"), ("b", "somethingnew"), ("c", "SomethingNew"), ("d", "isa"),
                         ("e", "ISA")])
    kg, stats = ingest_conceptnet(p)
    assert kg.relation_counts() == {"IsA": 2, "somethingnew": 2}
    assert stats.skipped["malformed: bad URI"] == 1


def test_triples_relation_names_ignore_case_and_separators(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("IS_A\tdog\tanimal\nused for\tumbrella\train\nAt-Location\tcup\ttable\nbrand_new\ta\tb\n")
    kg, _ = ingest_triples(p)
    assert kg.relation_counts() == {"IsA": 1, "UsedFor": 1, "AtLocation": 1, "brand_new": 1}


def test_triples_in_head_relation_tail_order_without_order_flag(tmp_path, capsys):
    p = tmp_path / "hrt.txt"
    p.write_text("dog\tIsA\tanimal\n")
    assert main(["triples", str(p), "--out", str(tmp_path / "o"), "--no-progress", "--quiet"]) == 2
    err = _err(capsys)
    assert "--order hrt" in err and "'dog'" in err
    assert main(["triples", str(p), "--order", "hrt", "--out", str(tmp_path / "o"), "--no-progress",
                 "--quiet"]) == 0


def test_dump_header_row_is_skipped_and_reported(tmp_path):
    from kg_ingest import ingest_conceptnet

    p = tmp_path / "h.csv"
    p.write_text("uri\trelation\tstart\tend\tinfo\n/a/x\t/r/IsA\t/c/en/dog\t/c/en/pet\t{\"weight\":1.0}\n")
    _, stats = ingest_conceptnet(p)
    assert stats.skipped == {"header row": 1} and stats.n_malformed == 0


def test_triples_header_row_reported_and_empty_relation_named(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("relation\thead\ttail\nIsA\tdog\tanimal\n\tcat\tanimal\n")
    _, stats = ingest_triples(p)
    assert stats.skipped["header row"] == 1
    assert stats.skipped["malformed: empty relation"] == 1 and "malformed: empty concept" not in stats.skipped


def test_relation_with_no_stored_edge_is_not_listed(tmp_path, capsys):
    p = tmp_path / "c4w.txt"
    p.write_text("UsedFor\tumbrella\tkeep dry\t-3\nIsA\tdog\tanimal\n")
    assert main(["triples", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "UsedFor" not in out.split("edges per relation")[1]
    kg = KnowledgeGraph.load(tmp_path / "o")
    assert kg.relation_counts() == {"IsA": 1} and kg.num_relations == 1
    assert "UsedFor" not in (tmp_path / "o" / "relations.json").read_text()


# ---------------------------------------------------------------- messages
def test_bad_weight_is_shown_as_json_spells_it(tmp_path):
    from kg_ingest import ingest_conceptnet

    p = tmp_path / "w.csv"
    p.write_text("".join(f"/a/x\t/r/IsA\t/c/en/a\t/c/en/b\t{{\"weight\":{w}}}\n" for w in ('"2.0"', "true", "null"))
                 + "/a/x\t/r/IsA\t/c/en/a\t/c/en/c\t{\"weight\":1.0}\n")
    _, stats = ingest_conceptnet(p)
    found = [m.rsplit("found ", 1)[1] for m in stats.malformed_samples]
    assert found == ['"2.0"', "true", "null"]


def test_non_string_surface_text_is_counted(tmp_path):
    from kg_ingest import ConceptNetOptions, ingest_conceptnet
    from kg_ingest.conceptnet import BAD_SURFACE

    rows = [f"/a/x\t/r/IsA\t/c/en/t{i}\t/c/en/b\t{{\"weight\":1.0,\"surfaceText\":\"[[t{i}]] is a [[b]]\"}}\n"
            for i in range(3000)]
    rows.insert(5, "/a/x\t/r/IsA\t/c/en/a\t/c/en/b\t{\"weight\":1.0,\"surfaceText\":5}\n")
    rows.append("/a/x\t/r/IsA\t/c/en/z\t/c/en/b\t{\"weight\":1,\"surfaceText\":[1]}\n")  # the line parser
    p = tmp_path / "s.csv"
    p.write_text("".join(rows))
    kg, stats = ingest_conceptnet(p, options=ConceptNetOptions(keep_surface=True))
    assert stats.skipped[BAD_SURFACE] == 2 and kg.num_edges == 3002


def test_unknown_relation_preset_lists_the_presets(tmp_path, capsys):
    p = tmp_path / "t.txt"
    p.write_text("IsA\tdog\tanimal\n")
    assert main(["triples", str(p), "--relations", "Qagnn17", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "not a preset (conceptnet, qagnn17)" in _err(capsys)


def test_unknown_checksum_algorithm_names_meta_json(tmp_path):
    from kg_ingest._files import StoreError

    p = tmp_path / "t.txt"
    p.write_text("IsA\tdog\tanimal\n")
    ingest_triples(p, tmp_path / "s")
    mp = tmp_path / "s" / "meta.json"
    meta = json.loads(mp.read_text())
    meta["checksums"]["algorithm"] = "md5"
    mp.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"meta\.json: unknown checksum algorithm 'md5'"):
        KnowledgeGraph.load(tmp_path / "s")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_min_weight_must_be_finite(tmp_path, capsys, value):
    p = tmp_path / "t.txt"
    p.write_text("IsA\tdog\tanimal\n")
    for cmd in ("conceptnet", "triples"):
        with pytest.raises(SystemExit) as e:
            main([cmd, str(p), f"--min-weight={value}", "--out", str(tmp_path / "o")])
        assert e.value.code == 2
        assert "--min-weight: expected a finite number" in _err(capsys)
    with pytest.raises(ValueError, match="min_weight"):
        ingest_triples(p, min_weight=float(value))


def test_neighbors_rejects_a_negative_limit(tmp_path, capsys):
    p = tmp_path / "t.txt"
    p.write_text("IsA\tdog\tanimal\nIsA\tdog\tpet\n")
    assert main(["triples", str(p), "--out", str(tmp_path / "s"), "--no-progress", "--quiet"]) == 0
    with pytest.raises(SystemExit) as e:
        main(["neighbors", str(tmp_path / "s"), "dog", "--limit", "-5"])
    assert e.value.code == 2 and "--limit: expected 0 or more" in _err(capsys)
    assert main(["neighbors", str(tmp_path / "s"), "dog", "--limit", "1"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and "... 1 more" in err
