import gzip
import json
import subprocess
import sys

from kg_ingest import KnowledgeGraph
from kg_ingest.cli import main

from .conftest import line


def test_conceptnet_command_writes_store_and_summary(sample_path, tmp_path, capsys):
    gz = tmp_path / "dump.csv.gz"
    gz.write_bytes(gzip.compress(sample_path.read_bytes()))
    rc = main(["conceptnet", str(gz), "--out", str(tmp_path / "s"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "lines read        33" in out and "edges per relation" in out and "peak memory" in out
    kg = KnowledgeGraph.load(tmp_path / "s")
    assert kg.num_edges > 10 and "test" in kg


def test_info_and_neighbors(tmp_path, capsys):
    p = tmp_path / "t.txt"
    p.write_text("IsA\tdog\tanimal\nCapableOf\tdog\tbark\n")
    assert main(["triples", str(p), "--out", str(tmp_path / "s"), "--quiet", "--no-progress"]) == 0
    assert main(["info", str(tmp_path / "s"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_nodes"] == 3 and info["relations"] == {"IsA": 1, "CapableOf": 1}
    assert main(["neighbors", str(tmp_path / "s"), "dog"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == ["CapableOf\tbark\t1", "IsA\tanimal\t1"]


def test_errors_exit_non_zero_with_one_clear_message(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["conceptnet", str(empty), "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip() == f"kg-ingest: error: {empty}: the file is empty"
    assert main(["conceptnet", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    assert "is a directory, expected a file" in capsys.readouterr().err
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    dump = tmp_path / "d.csv"
    dump.write_text(line("IsA", "/c/en/dog", "/c/en/animal"))
    assert main(["conceptnet", str(dump), "--out", str(blocker / "store")]) == 2
    assert "cannot write the store here" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "no such store folder" in capsys.readouterr().err
    dump.write_text(line("IsA", "/c/en/dog", "/c/en/animal") + "x\ty\n")
    assert main(["conceptnet", str(dump), "--out", str(tmp_path / "s2"), "--strict"]) == 2
    assert f"{dump}:2: expected 5 tab-separated columns, found 2" in capsys.readouterr().err
    assert not (tmp_path / "s2").exists()


def test_failed_ingest_keeps_existing_store(tmp_path, capsys):
    good = tmp_path / "good.csv"
    good.write_text(line("IsA", "/c/en/dog", "/c/en/animal"))
    assert main(["conceptnet", str(good), "--out", str(tmp_path / "s"), "--quiet", "--no-progress"]) == 0
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(good.read_bytes() * 5000)[:300])
    assert main(["conceptnet", str(bad), "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    assert "truncated gzip" in capsys.readouterr().err
    assert KnowledgeGraph.load(tmp_path / "s").neighbors("dog") == [("IsA", "animal", 1.0)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv.gz", "good.csv", "s"]


def test_console_entry_point_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "kg_ingest", "triples", "--bundled", "--out", str(tmp_path / "cn"),
                        "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "concepts          78," in r.stdout
