import gzip
import io

import pytest

from kg_ingest import (ConceptNetOptions, InputError, IngestStats, ingest_conceptnet, iter_assertions,
                       iter_records)
from kg_ingest.conceptnet import _LineParser

from .conftest import line


def records(src, **opts):
    stats = IngestStats()
    recs = list(iter_records(iter_assertions(src, ConceptNetOptions(**opts), stats)))
    return recs, stats


def test_real_official_lines_yield_expected_records(sample_path):
    recs, stats = records(sample_path, keep_surface=True)
    assert stats.lines_read == 33
    first = recs[0]
    assert (first.relation, first.head, first.tail, first.weight, first.line) == (
        "AtLocation", "hard_questions", "test", 1.0, 1)
    assert first.surface == "*Something you find on [[a test]] is [[hard questions]]"
    by_line = {r.line: r for r in recs}
    # /r/IsA /c/en/assay/n/wn -> /c/en/test/n/wn/act: sense suffixes stripped by default
    isa = [r for r in recs if r.relation == "IsA" and r.head == "assay"]
    assert len(isa) == 1 and isa[0].tail == "test" and isa[0].weight == 2.0
    # English-only: the ja / fr / ar lines and the ExternalURL lines are filtered
    assert all("/" not in r.head and "/" not in r.tail for r in recs)
    assert stats.skipped["language"] == 7 and stats.skipped["non-concept end"] == 4  # ExternalURL: http ends
    assert stats.n_malformed == 0 and sum(stats.skipped.values()) == 33 - len(recs)
    assert {r.relation for r in recs} == {"AtLocation", "HasProperty", "IsA", "RelatedTo", "Antonym",
                                          "HasContext"}
    assert by_line[7].relation == "Antonym" and by_line[7].head == "test" and by_line[7].tail == "breeze"


def test_pos_and_sense_suffixes_on_request(sample_path):
    recs, _ = records(sample_path, keep_pos=True)
    assert ("Antonym", "test/n", "breeze") in {(r.relation, r.head, r.tail) for r in recs}
    recs, _ = records(sample_path, keep_sense=True)
    assert ("IsA", "assay/n/wn", "test/n/wn/act") in {(r.relation, r.head, r.tail) for r in recs}


def test_language_sets_and_all_languages(sample_path):
    fr, _ = records(sample_path, languages=("fr",))
    assert {(r.relation, r.head, r.tail) for r in fr} == {
        ("DerivedFrom", "tester", "test"), ("HasContext", "test", "technique"), ("HasContext", "test", "argot")}
    enfr, _ = records(sample_path, languages=("en", "fr"))
    heads = {(r.head, r.tail) for r in enfr}
    assert ("fr/test", "en/test") in heads  # names carry their language when several are kept
    allr, stats = records(sample_path, languages=None)
    assert ("ja/科学者", "ja/テスト") in {(r.head, r.tail) for r in allr}
    assert stats.skipped["non-concept end"] == 4  # the ar, az, bn and ja ExternalURL lines
    # every line is accounted for: kept records + skipped (no malformed lines in real data)
    assert stats.n_malformed == 0


def test_fast_path_agrees_with_line_by_line_parser(sample_path):
    data = sample_path.read_bytes()
    fast, _ = records(io.BytesIO(data))
    lp = _LineParser("x", ConceptNetOptions(), IngestStats())
    slow = [r for i, l in enumerate(data.split(b"\n")[:-1]) if (r := lp.parse(l, i + 1)) is not None]
    assert fast == slow and len(fast) > 20


def test_gzip_and_file_object_give_same_records(sample_path, tmp_path):
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(sample_path.read_bytes()))
    plain, _ = records(sample_path)
    assert records(gz)[0] == plain
    with open(gz, "rb") as f:
        assert records(f)[0] == plain
    # a non-seekable stream of gzip bytes
    assert records(io.BufferedReader(io.BytesIO(gz.read_bytes())))[0] == plain


def test_malformed_lines_counted_with_file_and_line(tmp_path):
    p = tmp_path / "dump.csv"
    good = line("IsA", "/c/en/apple", "/c/en/fruit")
    p.write_text(good + "only\ttwo\n" + line("IsA", "/c/en/pear", "/c/en/fruit").replace('"weight": 1.0}', '"weight": 1.0')
                 + line("IsA", "/c/en/", "/c/en/fruit") + line("UsedFor", "/c/en/fig", "/c/en/eating", weight='"x"')
                 + good)
    recs, stats = records(p)
    assert [(r.head, r.line) for r in recs] == [("apple", 1), ("apple", 6)]
    assert stats.skipped["malformed: column count"] == 1
    assert stats.skipped["malformed: bad JSON"] == 1
    assert stats.skipped["malformed: bad URI"] == 1
    assert stats.skipped["malformed: bad weight"] == 1
    assert f"{p}:2: expected 5 tab-separated columns, found 2" in stats.malformed_samples
    assert any(s.startswith(f"{p}:3: column 5 is not valid JSON") for s in stats.malformed_samples)


def test_invalid_utf8_is_reported(tmp_path):
    p = tmp_path / "dump.csv"
    p.write_bytes(line("IsA", "/c/en/apple", "/c/en/fruit").encode() +
                  line("IsA", "/c/en/caf", "/c/en/drink").encode().replace(b"/c/en/caf\t", b"/c/en/caf\xff\t"))
    recs, stats = records(p)
    assert len(recs) == 1
    assert stats.skipped["malformed: invalid UTF-8"] == 1
    assert stats.malformed_samples[0].startswith(f"{p}:2: invalid UTF-8 in the start URI")


def test_strict_stops_at_first_malformed_line(tmp_path):
    p = tmp_path / "dump.csv"
    p.write_text(line("IsA", "/c/en/apple", "/c/en/fruit") * 3 + "a\tb\tc\n")
    with pytest.raises(InputError, match=r"dump\.csv:4: expected 5 tab-separated columns, found 3"):
        records(p, strict=True)


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (gzip.compress(b""), "the file is empty"),
    (b"name,age\nalice,3\nbob,4\n", "does not look like a ConceptNet assertions dump"),
])
def test_bad_files(tmp_path, content, message):
    p = tmp_path / "x.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        records(p)


def test_truncated_and_corrupt_gzip(sample_path, tmp_path):
    data = gzip.compress(sample_path.read_bytes() * 20)
    t = tmp_path / "t.csv.gz"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"t\.csv\.gz: truncated gzip"):
        records(t)
    c = tmp_path / "c.csv.gz"
    c.write_bytes(data[:20] + bytes(200) + data[220:])
    with pytest.raises(InputError, match=r"c\.csv\.gz: (corrupt gzip|truncated gzip)"):
        records(c)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="is a directory, expected a file"):
        records(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        records(tmp_path / "nope.csv.gz")


def test_ingest_builds_store_with_merge_rule(tmp_path):
    p = tmp_path / "dump.csv"
    p.write_text(
        line("IsA", "/c/en/apple/n", "/c/en/fruit", weight=1.0)
        + line("IsA", "/c/en/apple/n/wn/food", "/c/en/fruit", weight=3.5)  # same edge once suffixes go
        + line("IsA", "/c/en/apple", "/c/en/apple/n")  # a self-loop once normalised
        + line("ExternalURL", "/c/en/apple", "/c/en/x")
        + line("dbpedia/genre", "/c/en/apple", "/c/en/y")
        + line("UsedFor", "/c/en/apple", "/c/en/eating", weight=0.1))
    kg, stats = ingest_conceptnet(p, tmp_path / "store", min_weight=0.5)
    assert kg.num_edges == 1 and kg.num_nodes == 2
    assert kg.neighbors("apple") == [("IsA", "fruit", 3.5)]
    assert stats.merged_parallel == 1
    assert stats.skipped["self-loop"] == 1
    assert stats.skipped["relation dropped"] == 2
    assert stats.skipped["below min weight"] == 1
    assert kg.meta["source"]["sha256"] and kg.meta["ingest_config"]["languages"] == ["en"]


def test_surface_text_kept_in_store(sample_path, tmp_path):
    kg, _ = ingest_conceptnet(sample_path, tmp_path / "s", options=ConceptNetOptions(keep_surface=True))
    e = [i for i in range(kg.num_edges) if kg.edge(i)[:3] == ("hard_questions", "AtLocation", "test")][0]
    assert kg.surface_text(e) == "*Something you find on [[a test]] is [[hard questions]]"


def test_bad_language_option():
    with pytest.raises(ValueError, match="is not a language code"):
        ConceptNetOptions(languages=("english!",))


def test_a_space_in_the_relation_is_malformed_only_on_lines_that_are_read(tmp_path):
    """A line whose end is a URL, or in another language, is skipped whatever its relation holds
    (the block reader skips it without the line parser); a read line with a space in its
    relation URI is malformed. Both readers give the same answer: the skipped lines come
    in well-formed and in odd shapes (a start URI the block reader leaves to the parser)."""
    skipped = (line("Extern alURL", "/c/en/apple", "http://x.org/apple")
               + line("Related To", "/c/fr/pomme", "/c/fr/fruit")
               + line("Extern alURL", "/c/en/app%20le", "http://x.org/apple"))
    p = tmp_path / "dump.csv"
    p.write_text(line("IsA", "/c/en/apple", "/c/en/fruit") + skipped)
    recs, stats = records(p, strict=True)
    assert len(recs) == 1 and stats.skipped["language"] == 1
    p.write_text(line("IsA", "/c/en/apple", "/c/en/fruit") + skipped + line("Is A", "/c/en/pear", "/c/en/fruit"))
    with pytest.raises(InputError, match=r"dump\.csv:5: a space in the relation URI '/r/Is A'"):
        records(p, strict=True)
    # a line of three columns sends the whole block to the line parser: the same lines skipped
    p.write_text(line("IsA", "/c/en/apple", "/c/en/fruit") + skipped + "a\tb\tc\n")
    with pytest.raises(InputError, match=r"dump\.csv:5: expected 5 tab-separated columns, found 3"):
        records(p, strict=True)
