"""Checkpoint folders: ``config.json`` + ``model.safetensors`` (+ extra JSON/npy files).

A checkpoint folder is complete: ``from_pretrained(path)`` needs nothing else.
Weights are safetensors only; a folder holding pickled weights (``*.bin``,
``*.pt``, ``*.pkl``) is refused, since unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint folder that is missing files, mismatched, or of another format."""


def write_checkpoint(path: str | os.PathLike, config: dict, state_dict: dict, extra_json: dict[str, Any] | None = None,
                     format_name: str = "", format_version: int = 1) -> Path:
    """Write a checkpoint folder atomically (temporary folder, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    try:
        cfg = dict(config)
        cfg["format"] = format_name
        cfg["format_version"] = format_version
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": format_name})
        for name, obj in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
        (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
        if path.exists():
            old = parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_config(path: str | os.PathLike, format_name: str, format_version: int) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected a checkpoint folder (config.json + model.safetensors), found a file")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{path}: refusing pickled weights {pickles}: only safetensors checkpoints are "
                              f"loaded (unpickling can run arbitrary code)")
    cp = path / CONFIG_NAME
    if not cp.exists():
        raise CheckpointError(f"{path}: missing {CONFIG_NAME}")
    try:
        cfg = json.loads(cp.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cp}: not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cp}: expected a JSON object")
    if cfg.get("format") != format_name:
        raise CheckpointError(f"{cp}: expected a {format_name!r} checkpoint, found format {cfg.get('format')!r}")
    if cfg.get("format_version") != format_version:
        raise CheckpointError(f"{cp}: written by checkpoint format version {cfg.get('format_version')!r}; this "
                              f"version of ravlm_graph reads version {format_version}")
    if not (path / WEIGHTS_NAME).exists():
        raise CheckpointError(f"{path}: missing {WEIGHTS_NAME}")
    return cfg


def read_weights(path: str | os.PathLike, module) -> None:
    """Load ``model.safetensors`` into ``module``; every key must match in name and shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wp = Path(path) / WEIGHTS_NAME
    try:
        state = load_file(str(wp))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{wp}: cannot read weights: {e}") from e
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
        if shape:
            k = shape[0]
            parts.append(f"shape mismatch for {k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}")
        raise CheckpointError(f"{wp}: weights do not match config.json: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


def read_json(path: str | os.PathLike, name: str):
    p = Path(path) / name
    if not p.exists():
        raise CheckpointError(f"{Path(path)}: missing {name}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: not valid JSON ({e})") from e
