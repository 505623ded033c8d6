"""Every notebook in notebooks/ runs top to bottom, headless, and is committed without outputs.

Each ``notebooks/*.ipynb`` is executed with nbclient on a kernel that runs this very
interpreter (``sys.executable``, so the project's virtual environment, not whatever
``python3`` kernel the machine has), from the notebooks folder, with ``HF_HUB_OFFLINE=1``
and ``MPLBACKEND=Agg``. A failing cell fails the test with the cell's source and error.
New notebooks are picked up by the glob. Needs the ``notebooks`` extra (nbclient,
nbformat, ipykernel, matplotlib); the tests skip without it.
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

#: Seconds one cell may run.
CELL_TIMEOUT = 300
#: Seconds the kernel may take to start.
STARTUP_TIMEOUT = 120
KERNEL_NAME = "ravlm-test"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours of IPython tracebacks

nbformat = pytest.importorskip("nbformat")

_ids = [p.name for p in NOTEBOOKS]


def _env() -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
            "PYTHONPATH": pythonpath, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


@pytest.fixture(scope="module")
def kernel_prefix(tmp_path_factory):
    """A Jupyter data folder holding one kernelspec that runs ``sys.executable``."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    share = tmp_path_factory.mktemp("jupyter")
    spec_dir = share / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ravlm-graph tests",
        "language": "python",
        "env": _env(),
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return share


def test_notebooks_found():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} have outputs or an execution count; clear them "
                       f"before committing (jupyter nbconvert --clear-output --inplace {path.name})")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs(path, kernel_prefix, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    # The kernel process inherits this environment; the spec's "env" sets the same values.
    for k, v in _env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_prefix))
    # Only our kernelspec is visible: never a machine-wide "python3" of another interpreter.
    ksm = KernelSpecManager(kernel_dirs=[str(kernel_prefix / "kernels")])
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)

    nb = nbformat.read(path, as_version=4)
    n_cells = len(nb.cells)
    # A last cell, added to this in-memory copy only, proves which interpreter ran the notebook.
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os, sys\n"
        "print(sys.executable, os.getcwd(), os.environ.get('MPLBACKEND'), os.environ.get('HF_HUB_OFFLINE'),"
        " sep='\\n', end='')"))
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, startup_timeout=STARTUP_TIMEOUT,
                            kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
                            allow_errors=False)
    t0 = time.perf_counter()
    failure = None
    try:
        client.execute(cwd=str(NOTEBOOK_DIR))
    except CellTimeoutError as e:
        failure = f"{path.name}: a cell ran longer than {CELL_TIMEOUT} s:\n{e}"
    except CellExecutionError as e:
        failure = f"{path.name}: a cell failed:\n{_ANSI.sub('', str(e))}"
    if failure is not None:  # outside the except block: one traceback, the cell's
        pytest.fail(failure, pytrace=False)
    elapsed = time.perf_counter() - t0
    probe = nb.cells.pop()
    assert len(nb.cells) == n_cells
    seen = "".join(o.get("text", "") for o in probe.outputs).split("\n")
    assert seen == [sys.executable, str(NOTEBOOK_DIR), "Agg", "1"]
    executed = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.execution_count is not None for c in executed), f"{path.name}: some cells did not run"
    errors = [o for c in executed for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: error outputs: {[e.ename for e in errors]}"
    print(f"{path.name}: {len(executed)} cells in {elapsed:.1f} s")
