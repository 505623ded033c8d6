"""Damaged, swapped or hostile store files never answer: each case ends in a StoreError naming the file."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kg_ingest import GraphBuilder, KnowledgeGraph, RelationConfig, StoreError
from kg_ingest.cli import main
from kg_ingest.store import verify_store

from .conftest import rehash

EDGES = [("UsedFor", "apple", "eating", 1.0), ("IsA", "apple", "fruit", 1.0), ("IsA", "banana", "fruit", 1.0),
         ("AtLocation", "fruit", "market", 1.0), ("RelatedTo", "kitchen", "apple", 0.5),
         ("AtLocation", "apple", "kitchen", 2.0)]


def build(edges):
    b = GraphBuilder(RelationConfig())
    for r, h, t, w in edges:
        b.add(r, h, t, w)
    return b.build()


@pytest.fixture
def store(tmp_path):
    d = tmp_path / "s"
    build(EDGES).save(d)
    return d


def test_a_saved_store_records_sizes_and_checksums_and_verifies(store, capsys):
    meta = json.loads((store / "meta.json").read_text())
    assert meta["format_version"] == 2
    assert set(meta["checksums"]["files"]) == set(meta["files"]) >= {"edge_dst.npy", "concepts.bin", "relations.json"}
    assert meta["checksums"]["algorithm"] in ("xxh3-128", "blake2b-128")
    r = verify_store(store)
    assert (r["num_nodes"], r["num_edges"], r["files"]) == (6, 6, 10)
    assert main(["verify", str(store)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {store}: 6 concepts, 6 edges; checksums of every file and structure verified")


def _swap(d, a, b):
    pa, pb = d / a, d / b
    tmp = d / "swap.tmp"
    os.replace(pa, tmp)
    os.replace(pb, pa)
    os.replace(tmp, pb)


def test_swapped_out_and_in_indptr(store):
    _swap(store, "out_indptr.npy", "in_indptr.npy")
    with pytest.raises(StoreError, match=r"out_indptr\.npy: damaged store: checksum .* differs"):
        KnowledgeGraph.load(store)
    # Even with checksums made to match, the structure gives it away.
    rehash(store)
    with pytest.raises(StoreError, match=r"out_indptr\.npy: damaged store: offsets disagree with the edges' "
                                         r"sources in edge_src\.npy"):
        KnowledgeGraph.load(store)


def test_arrays_copied_from_another_store_with_the_same_counts(tmp_path, store, capsys):
    # Same concepts, same number of edges, other targets and weights.
    other = [(r, h, t, w * 3) for r, h, t, w in EDGES[:5]] + [("AtLocation", "apple", "market", 2.0)]
    o = tmp_path / "other"
    build(other).save(o)
    assert json.loads((o / "meta.json").read_text())["num_edges"] == 6
    keep = tmp_path / "keep"
    shutil.copytree(store, keep)
    for name in ("edge_weight.npy", "edge_dst.npy"):
        shutil.copyfile(o / name, store / name)
        with pytest.raises(StoreError, match=rf"{name}: damaged store: checksum .* differs .*copied from another"):
            KnowledgeGraph.load(store)
        assert main(["verify", str(store)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"kg-ingest: error: {store / name}: damaged store")
        shutil.copyfile(keep / name, store / name)
    assert main(["verify", str(store)]) == 0


def test_weights_from_another_store_pass_only_the_quick_check(tmp_path, store):
    o = tmp_path / "other"
    build([(r, h, t, w * 3) for r, h, t, w in EDGES]).save(o)
    shutil.copyfile(o / "edge_weight.npy", store / "edge_weight.npy")
    assert KnowledgeGraph.load(store, verify="quick").neighbors("banana") == [("IsA", "fruit", 3.0)]
    with pytest.raises(StoreError, match=r"edge_weight\.npy: damaged store: checksum"):
        KnowledgeGraph.load(store, verify="full")
    with pytest.raises(StoreError, match=r"edge_weight\.npy: damaged store: checksum"):
        KnowledgeGraph.load(store)  # the default


def test_targets_from_another_store_fail_the_structure_check_too(tmp_path, store):
    o = tmp_path / "other"
    build([(r, h, t, w) for r, h, t, w in EDGES[:5]] + [("AtLocation", "apple", "market", 2.0)]).save(o)
    shutil.copyfile(o / "edge_dst.npy", store / "edge_dst.npy")
    rehash(store)
    with pytest.raises(StoreError, match=r"damaged store: .*edge_dst\.npy"):
        KnowledgeGraph.load(store)


def _edit(d, name, fn):
    a = np.load(d / name)
    b = fn(a.copy())
    np.save(d / name, b.astype(a.dtype))
    rehash(d)


def test_monotone_but_wrong_out_indptr(store):
    def shift(x):
        i = int(np.flatnonzero(np.diff(x) > 0)[0]) + 1  # move one boundary by one edge, still monotone
        x[i] += 1
        assert np.all(np.diff(x) >= 0)
        return x

    _edit(store, "out_indptr.npy", shift)
    with pytest.raises(StoreError, match=r"out_indptr\.npy: damaged store: offsets disagree with the edges' sources"):
        KnowledgeGraph.load(store)


def test_duplicated_in_eid(store):
    _edit(store, "in_eid.npy", lambda x: np.concatenate([x[:1], x[:-1]]))
    with pytest.raises(StoreError, match=r"in_eid\.npy: damaged store: is not a permutation of the edge ids"):
        KnowledgeGraph.load(store)


def test_unsorted_concept_names(store):
    names = KnowledgeGraph.load(store).concept_names(range(6))
    names[0], names[1] = names[1], names[0]
    blob = "".join(names).encode()
    (store / "concepts.bin").write_bytes(blob)
    np.save(store / "concepts.off.npy", np.cumsum([0] + [len(n.encode()) for n in names]).astype(np.int64))
    rehash(store)
    with pytest.raises(StoreError, match=r"concepts\.bin: damaged store: concept names are not in strictly "
                                         r"increasing byte order \(names 0 and 1\)"):
        KnowledgeGraph.load(store)


def test_invalid_utf8_in_concept_names_fails_at_load_naming_the_file(store):
    blob = bytearray((store / "concepts.bin").read_bytes())
    blob[2] = 0xFF
    (store / "concepts.bin").write_bytes(bytes(blob))
    rehash(store)
    with pytest.raises(StoreError, match=r"concepts\.bin: damaged store: invalid UTF-8 at byte 2"):
        KnowledgeGraph.load(store)
    # Without checks the damage surfaces at query time, still as a StoreError naming the file.
    kg = KnowledgeGraph.load(store, verify=False)
    with pytest.raises(StoreError, match=r"concepts\.bin: damaged store: concept 0 is not valid UTF-8"):
        kg.concept_name(0)


def test_an_array_symlinked_outside_the_store_is_refused(tmp_path, store):
    outside = tmp_path / "elsewhere.npy"
    shutil.copyfile(store / "edge_dst.npy", outside)  # same bytes: only the link is wrong
    (store / "edge_dst.npy").unlink()
    (store / "edge_dst.npy").symlink_to(outside)
    with pytest.raises(StoreError, match=r"edge_dst\.npy: expected a regular file, found a symbolic link"):
        KnowledgeGraph.load(store, verify=False)


def test_relations_json_linked_to_dev_zero_is_refused_without_reading(store):
    (store / "relations.json").unlink()
    (store / "relations.json").symlink_to("/dev/zero")
    with pytest.raises(StoreError, match=r"relations\.json: expected a regular file, found a symbolic link"):
        KnowledgeGraph.load(store, verify=False)


def test_oversized_relations_json_is_refused_before_reading(store):
    with open(store / "relations.json", "ab") as f:
        f.truncate(1 << 30)  # sparse 1 GiB file
    with pytest.raises(StoreError, match=r"relations\.json: size 1073741824 bytes, metadata says \d+"):
        KnowledgeGraph.load(store, verify=False)


_FIFO_LOAD = """
import sys
from kg_ingest import KnowledgeGraph, StoreError
try:
    KnowledgeGraph.load(sys.argv[1])
except StoreError as e:
    print(e)
"""


@pytest.mark.parametrize("name", ["meta.json", "relations.json", "edge_src.npy", "concepts.bin"])
def test_a_fifo_in_the_store_is_refused_without_waiting(store, name):
    (store / name).unlink()
    os.mkfifo(store / name)
    r = subprocess.run([sys.executable, "-c", _FIFO_LOAD, str(store)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert r.stdout.strip() == f"{store / name}: expected a regular file, found a FIFO (a store holds only its " \
                               f"own regular files)", r.stderr


@pytest.mark.parametrize("files", [[], None, {"edge_src.npy": "x"}, 7])
def test_bad_files_field_in_meta_is_a_store_error(store, files, capsys):
    meta = json.loads((store / "meta.json").read_text())
    meta["files"] = files
    (store / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"meta\.json: damaged metadata: expected 'files' to map file names to sizes"):
        KnowledgeGraph.load(store)
    assert main(["info", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged metadata" in err and "Traceback" not in err


@pytest.mark.parametrize("key, value, message", [
    ("num_edges", "6", "expected a non-negative integer 'num_edges'"),
    ("num_nodes", -1, "expected a non-negative integer 'num_nodes'"),
    ("checksums", None, "expected 'checksums' with 'algorithm' and 'files'"),
    ("has_surface", "no", "expected true or false for 'has_surface'"),
])
def test_bad_meta_fields(store, key, value, message):
    meta = json.loads((store / "meta.json").read_text())
    meta[key] = value
    (store / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=message):
        KnowledgeGraph.load(store)


def test_a_missing_checksum_and_a_missing_listed_file(store):
    meta = json.loads((store / "meta.json").read_text())
    del meta["checksums"]["files"]["in_eid.npy"]
    (store / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"meta\.json: damaged metadata: no checksum for in_eid\.npy"):
        KnowledgeGraph.load(store)
    del meta["files"]["in_eid.npy"]
    (store / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"'files' does not list in_eid\.npy"):
        KnowledgeGraph.load(store)


def test_a_version_1_store_loads_but_cannot_be_fully_verified(store, capsys):
    meta = json.loads((store / "meta.json").read_text())
    meta["format_version"] = 1
    del meta["checksums"]
    (store / "meta.json").write_text(json.dumps(meta))
    assert KnowledgeGraph.load(store, verify="quick").num_edges == 6
    with pytest.raises(StoreError, match="a format version 1 store carries no checksums"):
        KnowledgeGraph.load(store, verify="full")
    assert main(["verify", str(store), "--quick"]) == 0
    assert "structure (a version 1 store: no checksums recorded) verified" in capsys.readouterr().out
    assert main(["verify", str(store)]) == 2
    assert "re-run the ingest" in capsys.readouterr().err


def test_replacing_a_store_under_a_reader_is_safe(tmp_path):
    """A reader keeps answering from the store it mapped while a new one replaces it."""
    d = tmp_path / "s"
    build(EDGES).save(d)
    reader = KnowledgeGraph.load(d)
    assert reader.neighbors("banana") == [("IsA", "fruit", 1.0)]
    for round_ in range(3):
        build([(r, h, t, w + round_ + 1) for r, h, t, w in EDGES] + [("IsA", "pear", "fruit", 1.0)]).save(d)
        assert reader.neighbors("banana") == [("IsA", "fruit", 1.0)]  # the old mapping, intact
        assert "pear" not in reader
        fresh = KnowledgeGraph.load(d)
        assert fresh.neighbors("banana") == [("IsA", "fruit", 2.0 + round_)] and "pear" in fresh
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


_READER = """
import sys, time
from kg_ingest import KnowledgeGraph
kg = KnowledgeGraph.load(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
print(sorted(kg.neighbors("banana"))[0][2], kg.num_edges, flush=True)
"""


def test_reingest_under_a_reader_process(tmp_path):
    d = tmp_path / "s"
    src = tmp_path / "t.txt"
    src.write_text("".join(f"{r}\t{h}\t{t}\t{w}\n" for r, h, t, w in EDGES))
    assert main(["triples", str(src), "--out", str(d), "--quiet", "--no-progress"]) == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.Popen([sys.executable, "-c", _READER, str(d)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "ready"
        src.write_text("IsA\tbanana\tfruit\t9\n")
        assert main(["triples", str(src), "--out", str(d), "--quiet", "--no-progress"]) == 0
        out, _ = p.communicate("go\n", timeout=60)
    finally:
        p.kill() if p.poll() is None else None
    assert p.returncode == 0 and out.split() == ["1.0", "6"]
    assert KnowledgeGraph.load(d).neighbors("banana") == [("IsA", "fruit", 9.0)]


def test_read_into_memory_gives_the_same_store_and_the_same_checks(store):
    a, b = KnowledgeGraph.load(store), KnowledgeGraph.load(store, mmap=False)
    assert not isinstance(b.edge_src, np.memmap)
    assert sorted(a.neighbors("apple", direction="both")) == sorted(b.neighbors("apple", direction="both"))
    _swap(store, "edge_src.npy", "edge_dst.npy")
    with pytest.raises(StoreError, match=r"edge_src\.npy: damaged store: checksum"):
        KnowledgeGraph.load(store, mmap=False)
