"""The user cache: bundled stores built once and shared, locks, atomic writes; the CLI's
early input checks and its message for a missing extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ravlm_graph.kg as kgmod
from ravlm_graph.cli.main import missing_extra_message
from ravlm_graph.utils.cache import atomic_dir, atomic_save_npy, cache_root, file_digest, locked

ROOT = Path(__file__).resolve().parents[1]


def test_cache_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("RAVLM_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("RAVLM_CACHE")
    assert cache_root() == tmp_path / "xdg" / "ravlm-graph"


def test_file_digest_follows_content(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("x")
    d1 = file_digest([a])
    a.write_text("y")
    assert file_digest([a]) != d1
    assert file_digest([a], extra=["v2"]) != file_digest([a])


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    atomic_save_npy(tmp_path / "v.npy", np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), [0, 1, 2])
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("half")
            raise RuntimeError("build failed")
    assert not (tmp_path / "d").exists()
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("whole")
    assert (tmp_path / "d" / "f").read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "v.npy"]


def test_lock_times_out_with_its_path(tmp_path):
    with locked(tmp_path / "x"):
        with pytest.raises(TimeoutError, match=r"x\.lock"):
            with locked(tmp_path / "x", timeout=0.2):
                pass


def test_bundled_kg_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAVLM_CACHE", str(tmp_path))
    calls = []
    real = kgmod.load_default

    def counting(**kw):
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(kgmod, "load_default", counting)
    kg = kgmod.open_kg("bundled:cn100k")
    assert len(calls) == 1 and calls[0]["out"] is not None
    assert kg.path is not None and kg.path.parent == tmp_path / "kg" and kgmod.bundled_key("cn100k") in kg.path.name
    again = kgmod.open_kg("bundled:cn100k")
    assert len(calls) == 1 and again.path == kg.path and again.num_edges == kg.num_edges
    assert not list((tmp_path / "kg").glob(".*.tmp"))  # no half-built folder left
    # a store built from other sources (an older version) is dropped when a new one is built
    stale = tmp_path / "kg" / "cn100k-0000000000000000"
    stale.mkdir()
    monkeypatch.setattr(kgmod, "bundled_key", lambda name: "1111111111111111")
    kgmod.open_kg("bundled:cn100k")
    assert len(calls) == 2 and not stale.exists() and not kg.path.exists()
    assert (tmp_path / "kg" / "cn100k-1111111111111111" / "meta.json").exists()
    with pytest.raises(ValueError, match="unknown bundled KG 'cn5'"):
        kgmod.open_kg("bundled:cn5")


def test_cache_off_builds_in_memory(monkeypatch):
    monkeypatch.setenv("RAVLM_CACHE", "off")
    assert kgmod.open_kg("bundled:cn100k").path is None


_RACE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from ravlm_graph.kg import open_kg
kg = open_kg("bundled:cn100k")
print("PATH", kg.path, kg.num_edges)
"""


@pytest.mark.slow
def test_two_processes_build_the_store_once(tmp_path):
    env = {**os.environ, "RAVLM_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _RACE], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {line for o in outs for line in o.splitlines() if line.startswith("PATH")}
    assert len(paths) == 1  # the same store, same edges
    builds = sum(o.count("building the bundled KG") for o in outs)
    assert builds == 1, outs


def _run_cli(args, extra_code=""):
    code = (f"import sys\n{extra_code}\nfrom ravlm_graph.cli.main import main\nrc = main({args!r})\n"
            "print('RC', rc, 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_missing_image_reported_before_the_engine_loads(tmp_path):
    r = _run_cli(["answer", "--model", str(ROOT / "ravlm_graph/data/engine_builtin"), "--image",
                  str(tmp_path / "nope.png"), "--question", "What is it?"])
    assert "RC 2 False" in r.stdout, r.stdout + r.stderr  # failed, and torch never imported
    assert "--image: expected an image file, found no such path" in r.stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = _run_cli(["answer", "--model", str(ROOT / "ravlm_graph/data/engine_builtin"), "--image", str(bad),
                  "--question", "What is it?"])
    assert "RC 2 False" in r.stdout and "bad.png" in r.stderr, r.stdout + r.stderr


def test_missing_extra_named_instead_of_a_traceback(tmp_path):
    no_torch = "sys.modules['torch'] = None"
    r = _run_cli(["answer", "--model", str(ROOT / "ravlm_graph/data/engine_builtin"), "--image",
                  str(ROOT / "examples" / "scene.png"), "--question", "What is it?"], extra_code=no_torch)
    assert "RC 2" in r.stdout, r.stdout + r.stderr
    assert "pip install 'ravlm-graph[model]'" in r.stderr and "Traceback" not in r.stderr
    # retrieval itself needs no torch
    r = _run_cli(["retrieve", "--entities", "knife", "--method", "ppr"], extra_code=no_torch)
    assert "RC 0" in r.stdout and "knife" in r.stdout, r.stdout + r.stderr
    e = ModuleNotFoundError("No module named 'rdflib'", name="rdflib")
    assert "ravlm-graph[rdf]" in missing_extra_message(e, "data")
    assert missing_extra_message(ModuleNotFoundError("x", name="something_else"), "data") is None


@pytest.mark.parametrize("given, expected", [(None, "default"), (["none"], ()), (["None"], ()), (["16", "32"], (16, 32))])
def test_budgets_option(given, expected):
    from ravlm_graph.cli.bench import _budgets
    from ravlm_graph.cli.main import build_parser
    from ravlm_graph.evaluation.bench import DEFAULT_BUDGETS

    argv = ["bench", "fvqa", "--questions", "q.json", "--facts", "f.json", "--model", "m", "--out", "o"]
    args = build_parser("bench").parse_args(argv + (["--budgets", *given] if given else []))
    assert _budgets(args) == (DEFAULT_BUDGETS if expected == "default" else expected)
    assert args.kg_cache is None  # never a folder in the current directory by default


def test_budgets_option_refuses_nonsense():
    from ravlm_graph.cli.bench import _budgets
    from ravlm_graph.cli.main import build_parser

    argv = ["bench", "fvqa", "--questions", "q.json", "--facts", "f.json", "--model", "m", "--out", "o", "--budgets"]
    for bad in (["0"], ["ten"], ["none", "16"]):
        with pytest.raises(ValueError, match="--budgets: expected positive node counts or 'none'"):
            _budgets(build_parser("bench").parse_args(argv + bad))
