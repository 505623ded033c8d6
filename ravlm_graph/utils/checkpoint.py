"""Checkpoint folders and the one loader every weight file goes through.

A checkpoint folder is ``config.json`` + ``model.safetensors`` (+ extra JSON files); it is
complete: ``from_pretrained(path)`` needs nothing else. Everything the project writes goes
through :func:`atomic_folder` (a temporary sibling folder renamed into place, the previous
folder restored if that fails), and every weight file it reads through
:func:`load_safetensors`: safetensors only (a folder holding pickled weights is refused,
since unpickling runs arbitrary code), with each tensor's name, dtype and shape checked
against what the module expects from the file's header, before a byte of it is read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

__all__ = ["CONFIG_NAME", "CheckpointError", "CheckpointNotFoundError", "WEIGHTS_NAME", "atomic_folder", "check_no_pickles", "skip_init",
           "load_safetensors", "read_config", "read_json", "read_weights", "write_checkpoint"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
#: A header larger than this is not a weights file of this project (the format allows 100 MB).
MAX_HEADER_BYTES = 100 * 1024 * 1024

# safetensors dtype names -> (bytes per element, kind): "f" floating, "i" integer, "b" bool.
_DTYPES = {"F64": (8, "f"), "F32": (4, "f"), "F16": (2, "f"), "BF16": (2, "f"),
           "I64": (8, "i"), "I32": (4, "i"), "I16": (2, "i"), "I8": (1, "i"), "U8": (1, "i"), "BOOL": (1, "b")}


class CheckpointError(ValueError):
    """A checkpoint folder that is missing files, mismatched, or of another format."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint folder does not exist."""


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Write a folder all at once: yields an empty temporary sibling of ``path``; on success
    it replaces ``path`` (the old folder is moved aside first and put back if the final
    rename fails); on an error the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    try:
        yield tmp
        _usual_modes(tmp)
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            old.rmdir()
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous folder back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _usual_modes(folder: Path) -> None:
    """Give the folder and what is in it the modes a plain ``mkdir``/``open`` would (the
    temporary folder and some writers use owner-only modes)."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~umask)


def write_checkpoint_files(folder: str | os.PathLike, config: Mapping[str, Any], state_dict: Mapping[str, Any],
                           extra_json: Mapping[str, Any] | None = None, format_name: str = "",
                           format_version: int = 1) -> Path:
    """``config.json`` (with ``format``/``format_version``), ``model.safetensors`` and extra
    JSON files into an existing folder (normally one from :func:`atomic_folder`)."""
    from safetensors.torch import save_file  # heavy: only when writing weights

    folder = Path(folder)
    cfg = dict(config)
    cfg["format"] = format_name
    cfg["format_version"] = format_version
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": format_name})
    for name, obj in (extra_json or {}).items():
        (folder / name).write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
    return folder


def write_checkpoint(path: str | os.PathLike, config: Mapping[str, Any], state_dict: Mapping[str, Any],
                     extra_json: Mapping[str, Any] | None = None, format_name: str = "",
                     format_version: int = 1) -> Path:
    """Write a checkpoint folder atomically (see :func:`atomic_folder`)."""
    with atomic_folder(path) as tmp:
        write_checkpoint_files(tmp, config, state_dict, extra_json, format_name, format_version)
    return Path(path)


# --------------------------------------------------------------------------- reading


def check_no_pickles(path: str | os.PathLike, what: str = "checkpoint") -> None:
    """Refuse a folder holding pickled weights (``*.bin``, ``*.pt`` ...)."""
    path = Path(path)
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{path}: refusing pickled weights {pickles} in this {what} folder: only "
                              f"safetensors are loaded (unpickling can run arbitrary code); convert them to "
                              f"model.safetensors")


def read_config(path: str | os.PathLike, format_name: str, format_version: int | Iterable[int]) -> dict:
    """Check a checkpoint folder and return its ``config.json`` (``format`` keys included).

    Args:
        format_version: the version this code writes, or all the versions it reads.
    """
    path = Path(path)
    versions = (format_version,) if isinstance(format_version, int) else tuple(format_version)
    if not path.exists():
        raise CheckpointNotFoundError(f"{path}: no such checkpoint folder")
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected a checkpoint folder (config.json + model.safetensors), found a file")
    check_no_pickles(path)
    cp = path / CONFIG_NAME
    if not cp.exists():
        raise CheckpointError(f"{path}: missing {CONFIG_NAME}")
    cfg = read_json(path, CONFIG_NAME)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cp}: expected a JSON object")
    if cfg.get("format") != format_name:
        raise CheckpointError(f"{cp}: expected a {format_name!r} checkpoint, found format {cfg.get('format')!r}")
    if cfg.get("format_version") not in versions:
        raise CheckpointError(f"{cp}: written by checkpoint format version {cfg.get('format_version')!r}; this "
                              f"version of ravlm_graph reads version {' or '.join(map(str, versions))}")
    if not (path / WEIGHTS_NAME).exists():
        raise CheckpointError(f"{path}: missing {WEIGHTS_NAME}")
    return cfg


def read_json(path: str | os.PathLike, name: str):
    p = Path(path) / name
    if not p.exists():
        raise CheckpointError(f"{Path(path)}: missing {name}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{p}: not UTF-8 text ({e})") from e


def _header(file: Path) -> dict:
    """The safetensors header (name -> dtype, shape, offsets), checked against the file size."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{file}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{file}: not a safetensors file (header length {n} for a file of {size} bytes)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{file}: not a safetensors file (unreadable header: {e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: not a safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    data = size - 8 - n
    for name, info in header.items():
        try:
            dtype, shape, (a, b) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{file}: tensor {name!r}: malformed header entry {info!r}") from e
        if dtype not in _DTYPES:
            raise CheckpointError(f"{file}: tensor {name!r}: dtype {dtype} is not one this project stores "
                                  f"(expected one of {sorted(_DTYPES)})")
        if any(s < 0 for s in shape) or not 0 <= a <= b <= data or b - a != math.prod(shape) * _DTYPES[dtype][0]:
            raise CheckpointError(f"{file}: tensor {name!r}: shape {shape} {dtype} does not match its "
                                  f"{b - a} bytes at [{a}, {b}) of {data}")
    return header


def _kind(dtype) -> str:
    if dtype.is_floating_point:
        return "f"
    return "b" if str(dtype) == "torch.bool" else "i"


def load_safetensors(file: str | os.PathLike, expected: Mapping[str, Any],
                     rename: Callable[[str], str] | None = None) -> dict:
    """Read a safetensors file whose tensors must be exactly ``expected``.

    The header is checked first — every name present and none extra, each shape equal to
    the expected tensor's, each dtype of the same kind (a floating weight may be stored in
    any float width and is cast on load; an integer buffer must be stored as integers) —
    so a mismatched or hostile file fails before any tensor is allocated.

    Args:
        file: the ``.safetensors`` file.
        expected: name -> tensor of the wanted shape and dtype (a module's ``state_dict()``).
        rename: maps a stored name to the expected name (older formats).

    Returns:
        name -> tensor, cast to the expected dtype.

    Raises:
        CheckpointError: unreadable file, missing/unexpected tensors, a shape or dtype mismatch.
    """
    from safetensors import safe_open  # heavy: only when reading weights

    file = Path(file)
    if file.suffix != ".safetensors":
        raise CheckpointError(f"{file}: only .safetensors weight files are loaded")
    if not file.is_file():
        raise CheckpointError(f"{file}: missing weights file")
    header = _header(file)
    stored = {(rename(k) if rename else k): k for k in header}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
    for name in sorted(set(expected) & set(stored)):
        info, want = header[stored[name]], expected[name]
        if tuple(info["shape"]) != tuple(want.shape):
            problems.append(f"shape mismatch for {name}: checkpoint {tuple(info['shape'])}, model {tuple(want.shape)}")
            break
        if _DTYPES[info["dtype"]][1] != _kind(want.dtype):
            problems.append(f"dtype mismatch for {name}: checkpoint {info['dtype']}, model {want.dtype}")
            break
    if problems:
        raise CheckpointError(f"{file}: weights do not match config.json: " + "; ".join(problems))
    out = {}
    try:
        with safe_open(str(file), framework="pt") as f:
            for name, key in stored.items():
                out[name] = f.get_tensor(key).to(expected[name].dtype)
    except (OSError, RuntimeError) as e:
        raise CheckpointError(f"{file}: cannot read weights: {e}") from e
    return out


def read_weights(path: str | os.PathLike, module, rename: Callable[[str], str] | None = None) -> None:
    """Load ``path/model.safetensors`` into ``module`` (every name, shape and dtype checked first)."""
    state = load_safetensors(Path(path) / WEIGHTS_NAME, module.state_dict(), rename=rename)
    module.load_state_dict(state, strict=True)


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                   "sparse_")


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Build modules without their random initialisation, for weights loaded right after.

    ``torch.nn.init``'s functions (what ``reset_parameters`` of ``Linear``, ``Embedding``,
    ``LayerNorm``, ``Conv2d`` ... call) do nothing inside the block, so parameters keep the
    uninitialised memory ``torch.empty`` gave them: only use it where every parameter and
    buffer is then loaded with a strict key check (:func:`read_weights`). Outputs are those
    of the loaded weights, unchanged; the global random generator is not advanced.
    Not thread-safe against modules built at the same time in other threads.
    """
    from torch.nn import init

    saved = {name: getattr(init, name) for name in _INIT_FUNCTIONS if hasattr(init, name)}

    def _noop(tensor, *args, **kwargs):
        return tensor

    try:
        for name in saved:
            setattr(init, name, _noop)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)
