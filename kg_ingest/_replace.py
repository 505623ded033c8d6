"""Writing a store folder safely: one writer per target, crash-safe replacement, leftovers cleaned.

For a target ``parent/NAME``:

* ``parent/.NAME.lock`` is an advisory lock file (``fcntl.flock``) that exists
  while a writer works; a second writer waits for the first (with a log
  message naming its pid).
* The new store is written into ``parent/.NAME.tmp-<hex>`` (same file system),
  which holds a marker file ``.kg_ingest-partial`` until it is complete.
* The swap exchanges the two folders in one atomic step (Linux ``renameat2``
  with ``RENAME_EXCHANGE``), so ``NAME`` always holds either the old complete
  store or the new one; the old one is then renamed to ``.NAME.old-<hex>`` and
  removed. Where the exchange is not supported (another OS or file system) the
  old store is first renamed aside, then the new one in; a crash between the
  two renames leaves ``.NAME.old-<hex>``, which the next writer renames back.
* SIGINT/SIGTERM are held back during the swap itself (a few system calls) and
  delivered right after it, so an interrupt never splits it.
* Before writing, the next writer (holding the lock) removes what interrupted
  runs left: marked temporary folders, and old stores set aside.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ._files import StoreError

log = logging.getLogger(__name__)

PARTIAL_MARKER = ".kg_ingest-partial"
# Every file a store writer makes (format versions 1 and 2).
STORE_FILES = frozenset({
    "meta.json", "relations.json", "concepts.bin", "concepts.off.npy", "edge_src.npy", "edge_dst.npy",
    "edge_rel.npy", "edge_weight.npy", "out_indptr.npy", "in_indptr.npy", "in_eid.npy", "surface.bin",
    "surface.off.npy",
})


def _foreign_entries(folder: Path) -> list[str]:
    """Names in an existing store folder that no store writer made (a user's files, a nested store)."""
    return sorted(e.name for e in os.scandir(folder) if e.name not in STORE_FILES)


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def check_target(path: str | os.PathLike) -> Path:
    """The absolute folder a store will be written to, or a StoreError saying why not.

    A symbolic link to a folder is followed (the store replaces the link's target
    and the link keeps pointing at it); a dangling link or a link to a file is
    refused. The current folder (``--out .``) or one of its parents is refused:
    replacing the folder a shell stands in would leave it in a deleted folder.
    """
    given = Path(path)
    p = Path(os.path.abspath(given))
    if os.path.islink(p):
        target = Path(os.path.realpath(p))
        if not target.exists():
            raise StoreError(f"{given}: a symbolic link to {target}, which does not exist; point it at a "
                             f"folder or give another --out")
        if not target.is_dir():
            raise StoreError(f"{given}: a symbolic link to {target}, which is not a folder")
        log.info("%s: following the symbolic link to %s", given, target)
        p = target
    else:
        p = Path(os.path.realpath(p))
    if p.parent == p:
        raise StoreError(f"{given}: cannot write a store over the file system root")
    cwd = Path(os.path.realpath(os.getcwd()))
    if cwd == p or p in cwd.parents:
        raise StoreError(f"{given}: is the current folder (or contains it); a store folder is replaced as a "
                         f"whole, so run from its parent folder, e.g. --out ../{p.name}")
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise StoreError(f"{given}: exists and is not a folder; refusing to replace it with a store")
        try:
            has_meta = os.path.lexists(p / "meta.json")
            non_empty = any(True for _ in os.scandir(p))
            foreign = _foreign_entries(p) if has_meta else []
        except OSError as e:
            raise StoreError(f"{given}: cannot read the folder: {e.strerror or e}") from e
        if non_empty and not has_meta:
            raise StoreError(f"{given}: a non-empty folder that is not a kg store; refusing to replace it "
                             f"(choose a new --out folder)")
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise StoreError(f"{given}: the store folder also holds {shown}, which no store writer made; "
                             f"replacing the store would delete {'it' if len(foreign) == 1 else 'them'}: move "
                             f"{'it' if len(foreign) == 1 else 'them'} out or choose another --out")
    return p


@contextmanager
def target_lock(target: Path):
    """Hold the advisory lock of ``target`` (waiting for another writer).

    The lock file is removed on release. A waiter that wakes up holding the lock
    of a file that was removed meanwhile retries on the current one, so two
    writers never both believe they hold the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    lp = lock_path(target)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    warned = False
    while True:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lp, flags, 0o666)
        except OSError as e:
            raise StoreError(f"{target}: cannot write the store here: {e.strerror or e} ({lp})") from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"{lp}: the lock file is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not warned:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                    log.warning("%s: another ingest (pid %s) is writing this store; waiting for it to finish",
                                target, holder)
                    warned = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(lp, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # the file we locked was removed by the previous holder: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        try:
            os.unlink(lp)
        except OSError:
            pass
        os.close(fd)  # releases the lock


def _is_complete_store(p: Path) -> bool:
    return (p / "meta.json").is_file() and not os.path.lexists(p / PARTIAL_MARKER)


def clean_leftovers(target: Path) -> list[str]:
    """Remove what interrupted writers left beside ``target``; call with the lock held.

    Returns one line per action (also logged). When ``target`` is missing and
    an old store set aside by an interrupted swap is there, it is renamed back.
    """
    parent, name = target.parent, target.name
    done: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return done
    # Exactly the names this module makes (8 hex digits), so that the leftovers of
    # a store named "s" are never confused with the folders of one named "s.tmp-x".
    ours = re.compile(re.escape(f".{name}.") + r"(tmp|old)-[0-9a-f]{8}")
    olds, tmps = [], []
    for e in entries:
        m = ours.fullmatch(e.name)
        if m is None or not e.is_dir(follow_symlinks=False):
            continue
        (olds if m.group(1) == "old" else tmps).append(Path(e.path))
    if not os.path.lexists(target):
        complete = [p for p in olds if _is_complete_store(p)]
        if complete:
            newest = max(complete, key=lambda p: p.stat().st_mtime_ns)
            os.rename(newest, target)
            olds.remove(newest)
            done.append(f"restored the previous store from {newest.name} (an interrupted ingest had set it aside)")
    for p in tmps:
        # A marked folder is a partial write; an unmarked complete one is either a
        # finished store whose swap never ran or an old store exchanged out.
        if os.path.lexists(p / PARTIAL_MARKER) or _is_complete_store(p) or not any(os.scandir(p)):
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}, left by an interrupted ingest")
    for p in olds:
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"removed {p.name}, an old store left by an interrupted ingest")
    for line in done:
        log.warning("%s: %s", target, line)
    return done


def new_temp_folder(target: Path) -> Path:
    """``parent/.NAME.tmp-<hex>`` created with the umask's permissions, marked as partial."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.tmp-{os.urandom(4).hex()}"
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        except OSError as e:
            raise StoreError(f"{target}: cannot write the store here: {e.strerror or e}") from e
        try:
            (tmp / PARTIAL_MARKER).write_bytes(b"")
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"{target}: cannot write the store here: {e.strerror or e}") from e
        return tmp
    raise StoreError(f"{target}: cannot create a temporary folder beside it")  # pragma: no cover


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, getattr(errno, "ENOTSUP", -1), getattr(errno, "EOPNOTSUPP", -1)):
        return False
    raise OSError(err, os.strerror(err), str(a))


@contextmanager
def held_signals():
    """Hold SIGINT/SIGTERM back for the duration (main thread only), then deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = [signal.SIGINT, signal.SIGTERM]
    old = {s: signal.getsignal(s) for s in sigs}

    def hold(signum, frame):
        got.append(signum)

    for s in sigs:
        signal.signal(s, hold)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            signal.raise_signal(got[0])


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def swap_in(tmp: Path, target: Path, *, use_exchange: bool = True) -> None:
    """Put the complete folder ``tmp`` at ``target``; ``target`` is never missing if it existed."""
    os.unlink(tmp / PARTIAL_MARKER)
    _fsync_dir(tmp)
    old = target.parent / f".{target.name}.old-{os.urandom(4).hex()}"
    with held_signals():
        if not os.path.lexists(target):
            os.rename(tmp, target)
            old = None
        elif use_exchange and exchange(tmp, target):
            os.rename(tmp, old)  # tmp now holds the old store
        else:
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
        _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_folder(target: Path, write: Callable[[Path], None], *, locked: bool = False,
                 use_exchange: bool = True) -> Path:
    """Write a new folder with ``write(tmp)`` and swap it in at ``target`` (see the module doc)."""
    target = check_target(target)

    def run():
        clean_leftovers(target)
        tmp = new_temp_folder(target)
        try:
            try:
                write(tmp)
            except StoreError as e:  # name the store, not the temporary folder that is removed now
                raise StoreError(str(e).replace(str(tmp), str(target))) from e
            swap_in(tmp, target, use_exchange=use_exchange)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    if locked:
        return run()
    with target_lock(target):
        return run()
