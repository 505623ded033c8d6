"""`ravlm data build`: options checked (named as typed) before the KG loads; nothing left on an error."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

import ravlm_graph.cli.data as data_cli
import ravlm_graph.datasets.builtin as builtin
from kg_ingest import KnowledgeGraph
from ravlm_graph.cli.main import main
from ravlm_graph.datasets.builtin import BuildConfig


@pytest.fixture()
def no_kg(monkeypatch):
    def never(*a, **k):
        raise AssertionError("the KG was loaded before the options were checked")

    monkeypatch.setattr(data_cli, "_load_kg", never)


@pytest.mark.parametrize("args, match", [
    (["--test", "-1"], r"--test: expected a count >= 0, found -1"),
    (["--val", "-2"], r"--val: expected a count >= 0, found -2"),
    (["--train", "-5"], r"--train: expected a count >= 0, found -5"),
    (["--image-size", "100000"], r"--image-size: expected 32..4096 px .*found 100000"),
    (["--image-size", "8"], r"--image-size: expected 32..4096 px .*found 8"),
    (["--kg", "/nonexistent/store"], r"--kg: /nonexistent/store: no such folder"),
    (["--kg", "TMP/afile"], r"--kg: expected a folder, found a file"),
    (["--emoji-root", "/nonexistent/emoji"], r"--emoji-root: /nonexistent/emoji: no such folder"),
])
def test_build_options_are_checked_before_the_kg_loads(capsys, tmp_path, no_kg, args, match):
    (tmp_path / "afile").write_text("x")
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    rc = main(["data", "build", "--out", str(tmp_path / "new" / "out"), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("ravlm: error: ") and err.count("\n") == 1 and re.search(match, err), err
    assert not (tmp_path / "new").exists()


def test_build_refuses_a_file_as_out(capsys, tmp_path, no_kg):
    (tmp_path / "afile").write_text("x")
    assert main(["data", "build", "--out", str(tmp_path / "afile"), "--no-progress"]) == 2
    assert "--out: " in capsys.readouterr().err and (tmp_path / "afile").read_text() == "x"


def test_image_size_has_the_engines_upper_bound():
    with pytest.raises(ValueError, match=r"BuildConfig.image_size: expected 32..4096 px"):
        BuildConfig(image_size=100000)


def test_a_kg_with_too_few_concepts_is_named(capsys, tmp_path):
    store = tmp_path / "store"
    KnowledgeGraph.from_arrays(["apple", "tree"], ["AtLocation"], [0], [1], [0], [1.0]).save(store)
    rc = main(["data", "build", "--out", str(tmp_path / "new" / "out"), "--kg", str(store), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert re.search(rf"^ravlm: error: {re.escape(str(store))}: the KG has too few concepts with >= 5 nameable "
                     rf"facts", err), err
    assert "index.json: expected" not in err
    assert not (tmp_path / "new").exists()


def test_an_error_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(tmp, *a, **k):
        (tmp / "train.jsonl").write_text("partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(builtin, "_write_builtin", fail)
    kg = KnowledgeGraph.from_arrays(["apple", "tree"], ["AtLocation"], [0], [1], [0], [1.0])
    monkeypatch.setattr(builtin, "select_objects", lambda *a, **k: ([SimpleNamespace(concept="apple"), SimpleNamespace(concept="tree")], [], {}))
    monkeypatch.setattr(builtin, "_Knowledge", lambda *a, **k: type("K", (), {"pairs": lambda self: []})())
    with pytest.raises(RuntimeError, match="disk full"):
        builtin.build_builtin(tmp_path / "new" / "out", kg=kg, progress=False)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="disk full"):
        builtin.build_builtin(kept, kg=kg, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert [p.name for p in kept.iterdir()] == ["mine.txt"]
