"""The user's cache folder: where built stores, node embeddings and features are kept.

Everything written here is keyed by a content hash of what it was built from, so a
changed input gets a new entry instead of a stale one, and two processes may share
the folder: writers take a lock file, write to a temporary name in the same folder
and rename it into place (a rename is atomic), so a reader sees a whole file or none.

The folder is, first found:

1. ``$RAVLM_CACHE`` (any path; ``off`` disables the disk cache);
2. the platform's user cache folder for ``ravlm-graph`` (``platformdirs``; on Linux
   ``$XDG_CACHE_HOME/ravlm-graph``, by default ``~/.cache/ravlm-graph``).

>>> from ravlm_graph.utils.cache import cache_dir
>>> cache_dir("kg")            # doctest: +SKIP
PosixPath('/home/me/.cache/ravlm-graph/kg')
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

__all__ = ["cache_root", "cache_dir", "cache_enabled", "file_digest", "locked", "atomic_write_bytes",
           "atomic_save_npy", "atomic_dir"]

APP_NAME = "ravlm-graph"
ENV_VAR = "RAVLM_CACHE"
_OFF = ("off", "none", "0", "false", "no")


def cache_enabled() -> bool:
    """False when ``$RAVLM_CACHE`` is ``off`` (nothing is written to disk then)."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in _OFF


def cache_root() -> Path:
    """The cache folder (not created). See the module docstring for the order."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env and env.lower() not in _OFF:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / APP_NAME
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def cache_dir(kind: str, root: str | os.PathLike | None = None) -> Path:
    """``<root>/<kind>``, created; ``root`` defaults to :func:`cache_root`."""
    path = (Path(root) if root is not None else cache_root()) / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_digest(paths: Iterable[str | os.PathLike], extra: Iterable[str] = (), length: int = 16) -> str:
    """A hex digest of the files' names and bytes, in order, plus ``extra`` strings."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    for s in extra:
        h.update(str(s).encode() + b"\0")
    return h.hexdigest()[:length]


@contextlib.contextmanager
def locked(path: str | os.PathLike, timeout: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (other processes wait, up to ``timeout`` s).

    Raises:
        TimeoutError: the lock was not obtained in time (naming the lock file).
    """
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout as e:
        raise TimeoutError(f"{lock_path}: expected to take the cache lock within {timeout:.0f} s; another "
                           f"process holds it (remove the file if no ravlm process is running)") from e
    try:
        yield
    finally:
        lock.release()


def _tmp_name(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` through a temporary file and a rename (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``path``, renamed to ``path`` when the block ends well.

    The caller holds the lock of ``path`` (:func:`locked`); a folder already at ``path``
    is replaced. On an error the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like any user folder
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "x")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
