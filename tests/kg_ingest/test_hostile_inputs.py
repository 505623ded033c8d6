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


# ------------------------------------------------- input that is not line-oriented UTF-8 text
TRIPLES = b"IsA\tdog\tanimal\nUsedFor\tumbrella\train\n"


def _compressed(kind):
    import bz2
    import io
    import lzma
    import zipfile

    if kind == "bz2":
        return bz2.compress(TRIPLES)
    if kind == "xz":
        return lzma.compress(TRIPLES)
    if kind == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("t.txt", TRIPLES)
        return buf.getvalue()
    return TRIPLES.decode().encode("utf-16")


@pytest.mark.parametrize("kind, what", [("bz2", "bzip2-compressed"), ("xz", "xz-compressed"),
                                        ("zip", "a zip archive"), ("utf16", "UTF-16 text")])
@pytest.mark.parametrize("cmd", ["triples", "conceptnet", "rdf"])
def test_other_compressions_and_encodings_are_refused_by_name(tmp_path, capsys, kind, what, cmd):
    from kg_ingest.cli import main

    p = tmp_path / f"in.{kind}"
    p.write_bytes(_compressed(kind))
    extra = ["--format", "nt"] if cmd == "rdf" else []
    assert main([cmd, str(p), "--out", str(tmp_path / "s"), "--no-progress", "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the file is {what}" in err
    assert not (tmp_path / "s").exists()


def test_text_that_starts_like_bzip2_is_read(tmp_path):
    from kg_ingest import ingest_triples

    p = tmp_path / "t.txt"
    p.write_bytes(b"BZh\tdog\tanimal\n")
    kg, _ = ingest_triples(p)
    assert edge_set(kg) == {("dog", "BZh", "animal")}


def test_a_device_is_refused_not_read_forever(tmp_path, capsys):
    import os

    from kg_ingest.cli import main

    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    for cmd in (["triples", "/dev/zero"], ["conceptnet", "/dev/zero"], ["rdf", "/dev/zero", "--format", "turtle"]):
        assert main([*cmd, "--out", str(tmp_path / "s"), "--no-progress", "--quiet"]) == 2
        assert "/dev/zero: is a device" in capsys.readouterr().err


def test_a_line_longer_than_the_limit_is_an_error_not_gathered_whole(tmp_path):
    from kg_ingest import InputError
    from kg_ingest._io import iter_blocks

    p = tmp_path / "no_newline.txt"
    p.write_bytes(b"x" * 5000)
    with pytest.raises(InputError, match=r"no_newline.txt: a line of more than 1,000 bytes"):
        list(iter_blocks(p, block_size=256, max_line=1000, threaded=False))
    p.write_bytes((b"y" * 900 + b"\n") * 10)  # long lines under the limit are fine
    assert b"".join(iter_blocks(p, block_size=256, max_line=1000, threaded=False)) == p.read_bytes()


def test_a_symlink_loop_is_named_as_such(tmp_path, capsys):
    from kg_ingest.cli import main

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert main(["triples", str(tmp_path / "a"), "--out", str(tmp_path / "s"), "--no-progress", "--quiet"]) == 2
    assert "symbolic links" in capsys.readouterr().err


class _Pipe:
    """A binary stream that cannot seek, as a pipe (``zcat x | kg-ingest ... /dev/stdin``)."""

    def __init__(self, data: bytes):
        import io

        self._b = io.BytesIO(data)
        self.name = "<pipe>"

    def read(self, n=-1):
        return self._b.read(n)

    def seekable(self):
        return False


def test_gzip_from_a_pipe_is_read(tmp_path):
    import gzip

    from kg_ingest import ingest_triples

    kg, _ = ingest_triples(_Pipe(gzip.compress(TRIPLES)))
    assert edge_set(kg) == {("dog", "IsA", "animal"), ("umbrella", "UsedFor", "rain")}


def test_truncated_gzip_from_a_pipe_is_a_one_line_error():
    import gzip

    from kg_ingest import InputError, ingest_triples

    data = gzip.compress(TRIPLES * 50)
    with pytest.raises(InputError, match="<pipe>: truncated gzip"):
        ingest_triples(_Pipe(data[: len(data) // 2]))


# ------------------------------------------------- the output folder
def test_a_store_holding_other_files_is_not_replaced(tmp_path, capsys):
    """The input kept inside the store folder (or a store nested in it) would be deleted with the old store."""
    from kg_ingest.cli import main

    out = tmp_path / "s"
    src = tmp_path / "t.txt"
    src.write_bytes(TRIPLES)
    assert main(["triples", str(src), "--out", str(out), "--no-progress", "--quiet"]) == 0
    mine = out / "mine.txt"
    mine.write_bytes(TRIPLES)
    assert main(["triples", str(mine), "--out", str(out), "--no-progress", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "also holds mine.txt" in err
    assert mine.read_bytes() == TRIPLES
    mine.unlink()
    assert main(["triples", str(src), "--out", str(out / "nested"), "--no-progress", "--quiet"]) == 0
    assert main(["triples", str(src), "--out", str(out), "--no-progress", "--quiet"]) == 2
    assert "also holds nested" in capsys.readouterr().err
    assert (out / "nested" / "meta.json").is_file()


# ------------------------------------------------- JSON nested past the recursion limit, odd metadata
DEEP = "[" * 100_000 + "]" * 100_000


def _store(tmp_path):
    from kg_ingest import ingest_triples

    src = tmp_path / "t.txt"
    src.write_bytes(TRIPLES)
    ingest_triples(src, tmp_path / "s")
    return tmp_path / "s"


def test_deeply_nested_json_inputs_are_one_line_errors(tmp_path, capsys):
    from kg_ingest.cli import main

    (tmp_path / "deep.jsonld").write_text(DEEP)
    (tmp_path / "rel.json").write_text(DEEP)
    (tmp_path / "t.txt").write_bytes(TRIPLES)
    assert main(["rdf", str(tmp_path / "deep.jsonld"), "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    assert "nests too deeply" in capsys.readouterr().err
    assert main(["triples", str(tmp_path / "t.txt"), "--relations", str(tmp_path / "rel.json"),
                 "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "nests too deeply" in capsys.readouterr().err


@pytest.mark.parametrize("fname", ["meta.json", "relations.json"])
def test_a_store_file_of_deeply_nested_json_is_a_store_error(tmp_path, capsys, fname):
    from kg_ingest import KnowledgeGraph, StoreError
    from kg_ingest.cli import main

    from .conftest import rehash

    s = _store(tmp_path)
    (s / fname).write_text(DEEP)
    if fname != "meta.json":
        rehash(s)
    with pytest.raises(StoreError, match="nested too deeply"):
        KnowledgeGraph.load(s, verify=False)
    assert main(["info", str(s)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("field, value, match", [("format_version", True, "format version True"),
                                                 ("language", ["x"], "'language'")])
def test_metadata_of_the_wrong_type_is_refused(tmp_path, field, value, match):
    import json

    from kg_ingest import KnowledgeGraph, StoreError

    s = _store(tmp_path)
    meta = json.loads((s / "meta.json").read_text())
    meta[field] = value
    (s / "meta.json").write_text(json.dumps(meta))
    for verify in (True, "quick", False):
        with pytest.raises(StoreError, match=match):
            KnowledgeGraph.load(s, verify=verify)
