"""Interrupted, concurrent and odd-target ingests: the store at --out is always complete, nothing is left behind."""

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kg_ingest import KnowledgeGraph, StoreError
from kg_ingest import _replace
from kg_ingest.cli import main

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def triples(path, *rows):
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture
def two_inputs(tmp_path):
    a = triples(tmp_path / "a.txt", ("IsA", "dog", "animal"), ("CapableOf", "dog", "bark"))
    b = triples(tmp_path / "b.txt", ("IsA", "cat", "animal"))
    return a, b


def ingest(src, out, *extra):
    return main(["triples", str(src), "--out", str(out), "--quiet", "--no-progress", *extra])


def listing(d):
    return sorted(p.name for p in Path(d).iterdir())


@pytest.mark.parametrize("umask, dmode, fmode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)])
def test_permissions_follow_the_umask(tmp_path, two_inputs, umask, dmode, fmode):
    old = os.umask(umask)
    try:
        assert ingest(two_inputs[0], tmp_path / "s") == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == dmode
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "s").iterdir()} == {fmode}


def test_leftovers_of_interrupted_runs_are_removed_by_the_next_ingest(tmp_path, two_inputs, caplog):
    a, b = two_inputs
    assert ingest(a, tmp_path / "s") == 0
    partial = tmp_path / ".s.tmp-dead0001"
    partial.mkdir()
    (partial / _replace.PARTIAL_MARKER).write_bytes(b"")
    (partial / "edge_src.npy").write_bytes(b"half")
    aside = tmp_path / ".s.old-dead0002"
    KnowledgeGraph.load(tmp_path / "s")  # a complete old store set aside
    import shutil

    shutil.copytree(tmp_path / "s", aside)
    mine = tmp_path / ".s.tmp-notours"  # a user's folder that only looks like ours
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    other = tmp_path / ".s.tmp-x.tmp-0badcafe"  # a partial write of another store, named "s.tmp-x"
    other.mkdir()
    (other / _replace.PARTIAL_MARKER).write_bytes(b"")
    with caplog.at_level("WARNING", logger="kg_ingest._replace"):
        assert ingest(b, tmp_path / "s") == 0
    assert listing(tmp_path) == [".s.tmp-notours", ".s.tmp-x.tmp-0badcafe", "a.txt", "b.txt", "s"]
    assert (mine / "notes.txt").read_text() == "keep me"
    msgs = " | ".join(r.getMessage() for r in caplog.records)
    assert "removed .s.tmp-dead0001, left by an interrupted ingest" in msgs
    assert "removed .s.old-dead0002, an old store left by an interrupted ingest" in msgs
    assert KnowledgeGraph.load(tmp_path / "s").neighbors("cat") == [("IsA", "animal", 1.0)]


def test_a_crash_between_the_two_renames_is_recovered(tmp_path, two_inputs, capsys):
    """Fallback swap (no atomic exchange): old aside, new not yet in. Readers are told where
    the old store is; the next ingest puts it back before writing."""
    a, b = two_inputs
    assert ingest(a, tmp_path / "s") == 0
    os.rename(tmp_path / "s", tmp_path / ".s.old-cafe0001")
    with pytest.raises(StoreError, match=r"no such store folder \(an interrupted ingest left the previous "
                                         r"store at .*\.s\.old-cafe0001"):
        KnowledgeGraph.load(tmp_path / "s")
    assert _replace.clean_leftovers(tmp_path / "s") == [
        "restored the previous store from .s.old-cafe0001 (an interrupted ingest had set it aside)"]
    assert KnowledgeGraph.load(tmp_path / "s").neighbors("dog")
    os.rename(tmp_path / "s", tmp_path / ".s.old-cafe0002")
    assert ingest(b, tmp_path / "s") == 0
    assert listing(tmp_path) == ["a.txt", "b.txt", "s"]
    assert "cat" in KnowledgeGraph.load(tmp_path / "s")


@pytest.mark.parametrize("use_exchange", [True, False])
def test_swap_replaces_the_store_both_ways(tmp_path, two_inputs, use_exchange, monkeypatch):
    a, b = two_inputs
    assert ingest(a, tmp_path / "s") == 0
    if not use_exchange:
        monkeypatch.setattr(_replace, "exchange", lambda x, y: False)
    assert ingest(b, tmp_path / "s") == 0
    assert listing(tmp_path) == ["a.txt", "b.txt", "s"]
    assert "cat" in KnowledgeGraph.load(tmp_path / "s") and "dog" not in KnowledgeGraph.load(tmp_path / "s")


def test_atomic_exchange_is_used_where_the_file_system_has_it(tmp_path):
    x, y = tmp_path / "x", tmp_path / "y"
    x.mkdir()
    y.mkdir()
    (x / "f").write_text("x")
    if not _replace.exchange(x, y):
        pytest.skip("renameat2(RENAME_EXCHANGE) not supported here")
    assert (y / "f").read_text() == "x" and not (x / "f").exists()


_KILLED = """
import os, signal, sys
import kg_ingest._files as f
real = f.FileWriter.write_npy
def die(self, name, arr, dtype):
    real(self, name, arr, dtype)
    if name == "edge_rel.npy":
        os.kill(os.getpid(), signal.SIGKILL)
f.FileWriter.write_npy = die
from kg_ingest.cli import main
sys.exit(main(["triples", sys.argv[1], "--out", sys.argv[2], "--quiet", "--no-progress"]))
"""


def test_kill_9_during_the_write_leaves_the_old_store_and_a_leftover_the_next_run_removes(tmp_path, two_inputs):
    a, b = two_inputs
    assert ingest(a, tmp_path / "s") == 0
    r = subprocess.run([sys.executable, "-c", _KILLED, str(b), str(tmp_path / "s")], env=ENV, timeout=120)
    assert r.returncode == -signal.SIGKILL
    left = [n for n in listing(tmp_path) if n.startswith(".s.")]
    assert [n.split("-")[0] for n in left] == [".s.lock", ".s.tmp"]  # killed while holding the lock
    assert KnowledgeGraph.load(tmp_path / "s").neighbors("dog")  # old store intact and complete
    assert ingest(b, tmp_path / "s") == 0
    assert listing(tmp_path) == ["a.txt", "b.txt", "s"]


def test_sigint_and_sigterm_are_held_during_the_swap():
    got = []
    old = signal.signal(signal.SIGINT, lambda s, f: got.append("INT"))
    try:
        with _replace.held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            assert got == []  # held
        assert got == ["INT"]  # delivered after
    finally:
        signal.signal(signal.SIGINT, old)


def test_interrupt_messages_say_what_happened(tmp_path, two_inputs, monkeypatch, capsys):
    a, b = two_inputs
    out = tmp_path / "s"
    import kg_ingest.builder as builder

    real_build = builder.GraphBuilder.build

    def interrupted(self, meta=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(builder.GraphBuilder, "build", interrupted)
    assert ingest(a, out) == 130
    assert capsys.readouterr().err.strip() == f"kg-ingest: interrupted; no store was written to {out}"
    monkeypatch.setattr(builder.GraphBuilder, "build", real_build)
    assert ingest(a, out) == 0
    monkeypatch.setattr(builder.GraphBuilder, "build", interrupted)
    assert ingest(b, out) == 130
    assert capsys.readouterr().err.strip() == f"kg-ingest: interrupted; the existing store at {out} was left unchanged"
    monkeypatch.setattr(builder.GraphBuilder, "build", real_build)
    # Interrupted after the swap (while reopening the new store): the store was replaced, and we say so.
    real_load = KnowledgeGraph.load.__func__

    def load_then_interrupt(cls, *args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(KnowledgeGraph, "load", classmethod(load_then_interrupt))
    assert ingest(b, out) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"kg-ingest: interrupted; the new store had already been written to {out} (it is complete)"
    monkeypatch.setattr(KnowledgeGraph, "load", classmethod(real_load))
    assert "cat" in KnowledgeGraph.load(out)
    assert listing(tmp_path) == ["a.txt", "b.txt", "s"]


_SLOW_SWAP = """
import sys, time
import kg_ingest._replace as r
real = r.swap_in
def slow(tmp, target, **kw):
    time.sleep(0.3)
    return real(tmp, target, **kw)
r.swap_in = slow
from kg_ingest.cli import main
sys.exit(main(["triples", sys.argv[1], "--out", sys.argv[2], "--quiet", "--no-progress"]))
"""


def test_concurrent_ingests_to_one_out_queue_and_all_succeed(tmp_path):
    srcs = [triples(tmp_path / f"in{i}.txt", ("IsA", f"thing{i}", "object"), ("IsA", "dog", "animal"))
            for i in range(3)]
    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-c", _SLOW_SWAP, str(s), str(tmp_path / "s")], env=ENV,
                                  stderr=subprocess.PIPE, text=True) for s in srcs]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        for p in procs:
            p.stderr.close()
        assert [rc for rc, _ in results] == [0, 0, 0], results
        assert all("damaged" not in err for _, err in results)
        kg = KnowledgeGraph.load(tmp_path / "s")
        assert sum(f"thing{i}" in kg for i in range(3)) == 1 and "dog" in kg
        assert listing(tmp_path) == ["in0.txt", "in1.txt", "in2.txt", "s"]


def test_a_second_writer_waits_for_the_lock_and_says_so(tmp_path, two_inputs):
    import select

    a, _ = two_inputs
    out = tmp_path / "s"
    with _replace.target_lock(out):
        p = subprocess.Popen([sys.executable, "-m", "kg_ingest", "triples", str(a), "--out", str(out), "--quiet",
                              "--no-progress"], env=ENV, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([p.stderr], [], [], 60)
        line = p.stderr.readline() if ready else ""
        assert "another ingest (pid" in line and "waiting for it to finish" in line
        assert p.poll() is None and not out.exists()  # still waiting
    assert p.wait(timeout=60) == 0
    p.stderr.close()
    assert "dog" in KnowledgeGraph.load(out)
    assert listing(tmp_path) == ["a.txt", "b.txt", "s"]


def test_out_as_a_symlink_is_followed_and_dangling_links_are_refused(tmp_path, two_inputs, capsys):
    a, b = two_inputs
    real = tmp_path / "real"
    assert ingest(a, real) == 0
    link = tmp_path / "link"
    link.symlink_to(real)
    assert ingest(b, link) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "cat" in KnowledgeGraph.load(real) and "cat" in KnowledgeGraph.load(link)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert ingest(a, dangling) == 2
    assert f"{dangling}: a symbolic link to {tmp_path / 'nowhere'}, which does not exist" in capsys.readouterr().err
    to_file = tmp_path / "tofile"
    to_file.symlink_to(a)
    assert ingest(a, to_file) == 2
    assert "which is not a folder" in capsys.readouterr().err
    assert a.read_text().startswith("IsA")


def test_out_dot_inside_a_store_fails_before_reading_input(tmp_path, two_inputs, monkeypatch, capsys):
    a, _ = two_inputs
    assert ingest(a, tmp_path / "s") == 0
    import kg_ingest.ingest as ing

    def no_read(*args, **kw):
        raise AssertionError("input read before --out was checked")

    monkeypatch.setattr(ing, "iter_triples", no_read)
    monkeypatch.chdir(tmp_path / "s")
    assert ingest(a, ".") == 2
    err = capsys.readouterr().err
    assert err.startswith("kg-ingest: error: .: is the current folder") and "--out ../s" in err
    monkeypatch.chdir(tmp_path)
    assert ingest(a, tmp_path) == 2  # a parent of the current folder
    assert "is the current folder (or contains it)" in capsys.readouterr().err


def test_disk_full_is_reported_clearly_and_the_old_store_kept(tmp_path, two_inputs, monkeypatch, capsys):
    a, b = two_inputs
    assert ingest(a, tmp_path / "s") == 0
    import kg_ingest._files as files

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

    real_open = files.FileWriter._open
    monkeypatch.setattr(files.FileWriter, "_open", lambda self, name: Full(real_open(self, name)))
    assert ingest(b, tmp_path / "s") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"kg-ingest: error: {tmp_path / 's' / 'concepts.bin'}: the disk is full (no space left to write the " \
           f"store;" in err
    assert "iB free there); the previous store, if any, is unchanged" in err
    assert listing(tmp_path) == ["a.txt", "b.txt", "s"]
    assert "dog" in KnowledgeGraph.load(tmp_path / "s")
