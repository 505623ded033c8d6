"""Every notebook in notebooks/ runs top to bottom, headless, and is committed without outputs.

Each ``notebooks/*.ipynb`` is executed with nbclient on a kernel that runs this very
interpreter (``sys.executable``, so the project's virtual environment, not whatever
``python3`` kernel the machine has), from the notebooks folder, with ``HF_HUB_OFFLINE=1``
and ``MPLBACKEND=Agg``. A failing cell fails the test with the cell's source and error.
New notebooks are picked up by the glob. Needs the ``notebooks`` extra (nbclient,
nbformat, ipykernel, matplotlib); the tests skip without it.

Every cell that draws (``draw_subgraph(``, ``draw_entities(``, ``plt.subplots(``, ``plt.imshow(``, ``.plot(``) must leave a PNG
with content in its outputs, so a figure that silently fails to draw fails the test. The
kernel's connection file lives in the test's own temporary folder and is gone afterwards
(nothing is left in the system temp folder). Notebook 01 also runs on another store (the
ConceptNet sample lines) with seeds taken from that store, so it cannot depend on the
concepts of the bundled one.
"""

import base64
import io
import json
import os
import re
import sys
import tempfile
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


_DRAWS = re.compile(r"draw_subgraph\(|draw_entities\(|plt\.subplots\(|plt\.imshow\(|\.plot\(")


def _png_has_content(b64: str) -> bool:
    """True when the PNG is not a blank canvas (more than a handful of distinct colours)."""
    from PIL import Image

    im = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
    colours = im.getcolors(maxcolors=1 << 16)
    return im.width > 50 and im.height > 50 and (colours is None or len(colours) > 8)


def _figure_problems(nb) -> list[str]:
    out = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or not _DRAWS.search(c.source):
            continue
        pngs = [o["data"]["image/png"] for o in c.outputs if "image/png" in o.get("data", {})]
        if not pngs:
            out.append(f"cell {i} draws but shows no figure: {c.source.splitlines()[0][:60]!r}")
        elif not all(_png_has_content(p) for p in pngs):
            out.append(f"cell {i} shows a blank figure")
    return out


def _execute(nb, kernel_prefix, monkeypatch, workdir: Path):
    """Run ``nb`` in place on our kernel; (seconds, failure message or None)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    # The kernel process inherits this environment; the spec's "env" sets the same values.
    for k, v in _env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_prefix))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(workdir))
    # Only our kernelspec is visible: never a machine-wide "python3" of another interpreter.
    ksm = KernelSpecManager(kernel_dirs=[str(kernel_prefix / "kernels")])
    conn = workdir / "kernel-connection.json"
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm, connection_file=str(conn))
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, startup_timeout=STARTUP_TIMEOUT,
                            kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
                            allow_errors=False)
    t0 = time.perf_counter()
    failure = None
    try:
        client.execute(cwd=str(NOTEBOOK_DIR))
    except CellTimeoutError as e:
        failure = f"a cell ran longer than {CELL_TIMEOUT} s:\n{e}"
    except CellExecutionError as e:
        failure = f"a cell failed:\n{_ANSI.sub('', str(e))}"
    finally:
        # nbclient shuts the kernel down but leaves the connection file of a kernel manager
        # it was given; ours sits in the test's folder and is removed here.
        km.cleanup_connection_file()
        conn.unlink(missing_ok=True)
    return time.perf_counter() - t0, failure


def _temp_connection_files() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("tmp*.json")
            if KERNEL_NAME in p.read_text(errors="replace")[:2000]}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs(path, kernel_prefix, monkeypatch, tmp_path):
    before = _temp_connection_files()
    nb = nbformat.read(path, as_version=4)
    n_cells = len(nb.cells)
    # A last cell, added to this in-memory copy only, proves which interpreter ran the notebook.
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os, sys\n"
        "print(sys.executable, os.getcwd(), os.environ.get('MPLBACKEND'), os.environ.get('HF_HUB_OFFLINE'),"
        " sep='\\n', end='')"))
    elapsed, failure = _execute(nb, kernel_prefix, monkeypatch, tmp_path)
    if failure is not None:  # outside the except block: one traceback, the cell's
        pytest.fail(f"{path.name}: {failure}", pytrace=False)
    assert _temp_connection_files() <= before, "kernel connection files left in the system temp folder"
    probe = nb.cells.pop()
    assert len(nb.cells) == n_cells
    seen = "".join(o.get("text", "") for o in probe.outputs).split("\n")
    assert seen == [sys.executable, str(NOTEBOOK_DIR), "Agg", "1"]
    executed = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.execution_count is not None for c in executed), f"{path.name}: some cells did not run"
    errors = [o for c in executed for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: error outputs: {[e.ename for e in errors]}"
    problems = _figure_problems(nb)
    assert not problems, f"{path.name}: " + "; ".join(problems)
    print(f"{path.name}: {len(executed)} cells in {elapsed:.1f} s")


def test_blank_figure_is_seen():
    """The figure check itself: a cell that draws without showing a PNG, or shows a blank one, is caught."""
    from PIL import Image

    def png(im):
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()

    blank = png(Image.new("RGB", (200, 200), "white"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("draw_subgraph(sg);"),
                                         nbformat.v4.new_code_cell("fig, ax = plt.subplots()")])
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": blank})]
    assert _figure_problems(nb) == ["cell 0 draws but shows no figure: 'draw_subgraph(sg);'",
                                    "cell 1 shows a blank figure"]


@pytest.mark.slow
def test_explorer_runs_on_another_store(kernel_prefix, monkeypatch, tmp_path):
    """Notebook 01 with STORE pointed at another store and seeds of that store."""
    from kg_ingest import ingest_conceptnet

    kg, _ = ingest_conceptnet(ROOT / "kg_ingest" / "data" / "conceptnet_sample.csv", tmp_path / "store")
    ranked = sorted(range(kg.num_nodes), key=lambda i: -len(kg.neighbors(kg.concept_name(i))))
    names = [kg.concept_name(i) for i in ranked[:4]]
    path = NOTEBOOK_DIR / "01_conceptnet_explorer.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith("# ----")
                and "STORE = None" in c.source)
    cell.source = (f"STORE = {str(tmp_path / 'store')!r}\nSEEDS = {names[:2]!r}\nPAIR = {names[2:4]!r}\n")
    elapsed, failure = _execute(nb, kernel_prefix, monkeypatch, tmp_path)
    if failure is not None:
        pytest.fail(f"{path.name} on the sample store: {failure}", pytrace=False)
    problems = _figure_problems(nb)
    assert not problems, "; ".join(problems)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "seeds not in this store: none" in text
