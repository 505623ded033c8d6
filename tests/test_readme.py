"""The README's fenced shell and Python blocks run as written, offline, on the bundled data.

Each ``bash`` line and each ``python`` statement line of README.md is either run or
skipped by one of the rules in :data:`SKIP`, each with its reason (a download, the
user's own files, a placeholder, minutes of training). A README line that no rule
covers runs, so a new example is tested by default. ``kg-ingest`` and ``ravlm`` run as
``python -m kg_ingest`` / ``python -m ravlm_graph`` with this interpreter, in a
temporary folder that links the repository's top-level entries (so relative paths such
as ``ravlm_graph/data/engine_builtin`` and ``examples/scene.png`` resolve and outputs
such as ``stores/`` land in the temporary folder).
"""

from __future__ import annotations

import codeop
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# (pattern found in the line, why it cannot run here). First match wins.
SKIP: list[tuple[str, str]] = [
    ("make demo", "runs the whole demo (make demo is its own check)"),
    ("make test", "runs the whole suite"),
    ("conceptnet-assertions-5.7.0", "needs the 475 MB ConceptNet dump (a download)"),
    ("stores/conceptnet-en", "needs the store built from the downloaded dump"),
    ("train.txt", "the user's own triple files"),
    ("facts.tsv", "the user's own triple files"),
    ("graph.nt", "the user's own RDF file"),
    ("graph.ttl", "the user's own RDF file"),
    ("ravlm answer ...", "abbreviates the full command above it"),
    ("--out DIR", "placeholder output folder (DIR)"),
    ("ENGINE", "placeholder engine folder (ENGINE)"),
    ("ravlm train", "trains a model (minutes to hours)"),
    ("ravlm export runs/", "needs the engines trained by the lines above"),
    ("ravlm bench builtin", "runs the full benchmark (minutes)"),
    ("train_split0", "needs the FVQA download"),
    ("FVQA_DIR", "needs the FVQA download"),
    ("CSQA_DIR", "needs the CommonsenseQA download"),
]

BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(lang: str):
    text = README.read_text(encoding="utf-8")
    for m in BLOCK.finditer(text):
        if m.group(1) == lang:
            yield text[: m.start()].count("\n") + 2, m.group(2)


def _skip_reason(line: str) -> str | None:
    return next((why for pat, why in SKIP if pat in line), None)


def _shell_lines():
    out = []
    for first, body in _blocks("bash"):
        pending, start = "", None
        for k, raw in enumerate(body.splitlines()):
            line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if not line:
                continue
            if line.endswith("\\"):  # continued on the next line
                pending, start = pending + line[:-1] + " ", start if pending else first + k
                continue
            out.append((start if pending else first + k, pending + line))
            pending, start = "", None
    return out


SHELL = _shell_lines()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv", "stores", "runs"):
            (d / entry.name).symlink_to(entry)
    return d


def _argv(line: str) -> list[str]:
    argv = shlex.split(line)
    if argv[0] == "kg-ingest":
        return [sys.executable, "-m", "kg_ingest", *argv[1:]]
    if argv[0] == "ravlm":
        return [sys.executable, "-m", "ravlm_graph", *argv[1:]]
    raise AssertionError(f"README.md: a shell line this test does not know how to run: {line!r}")


def test_readme_has_runnable_examples():
    runnable = [line for _, line in SHELL if _skip_reason(line) is None]
    assert len(runnable) >= 4, runnable
    assert any("examples/scene.png" in line for line in runnable)
    assert (ROOT / "examples" / "scene.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("lineno, line", SHELL, ids=[f"README.md:{n}" for n, _ in SHELL])
def test_readme_shell_line(lineno, line, workdir):
    why = _skip_reason(line)
    if why is not None:
        pytest.skip(f"README.md:{lineno}: {why}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    r = subprocess.run(_argv(line), cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"README.md:{lineno}: {line}\nexit {r.returncode}\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}"
    assert r.stdout.strip(), f"README.md:{lineno}: {line} printed nothing"


@pytest.mark.slow
def test_readme_python_blocks(workdir, monkeypatch):
    """Every Python block, statement line by statement line, in one namespace per block."""
    monkeypatch.chdir(workdir)
    ran = 0
    for first, body in _blocks("python"):
        ns: dict = {}
        buf, start = "", None
        for k, raw in enumerate(body.splitlines()):
            stmt = raw.split("  #", 1)[0].rstrip()
            if not stmt.strip():
                continue
            if not buf and _skip_reason(stmt) is not None:
                continue
            buf, start = buf + stmt + "\n", start if buf else first + k
            try:
                code = codeop.compile_command(buf, f"README.md:{start}", "exec")
            except SyntaxError as e:
                pytest.fail(f"README.md:{start}: not valid Python: {buf.strip()}\n{e}", pytrace=False)
            if code is None:  # a statement that continues on the next line
                continue
            try:
                exec(code, ns)
            except Exception as e:  # noqa: BLE001 - report the README line that failed
                pytest.fail(f"README.md:{start}: {buf.strip()}\n{type(e).__name__}: {e}", pytrace=False)
            buf = ""
            ran += 1
        assert not buf, f"README.md:{start}: an unfinished statement: {buf!r}"
    assert ran >= 10


def test_benchmarks_readme_names_no_outside_path():
    for path in (ROOT / "benchmarks" / "README.md", README, ROOT / "notebooks" / "README.md"):
        text = path.read_text(encoding="utf-8")
        bad = re.findall(r"(?<![\w.])/(?:work|home|Users|root|mnt|data)/[^\s`)]*", text)
        assert not bad, f"{path.relative_to(ROOT)}: names paths outside the repository: {bad}"
