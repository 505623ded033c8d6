"""The store's file layer: only regular files inside the store folder, sizes checked before reading.

Every store file is opened relative to a descriptor of the store folder with
``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` to be a regular file, so
a symbolic link (to ``/dev/zero``, to another store, anywhere), a FIFO or a
device in a store folder is refused without being read or waited on. Sizes are
checked against the metadata and the array headers before anything is read or
mapped. Writing hashes each file as it is written (checksums for ``meta.json``).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from pathlib import Path

import numpy as np

# The checksum written by this version; both are readable.
_XXH = "xxh3-128"
_BLAKE = "blake2b-128"
_CHUNK = 1 << 20


class StoreError(ValueError):
    """A store folder that is missing, damaged or of another format (the message names the file)."""


def new_hasher(algorithm: str | None = None):
    """``(name, hasher)``; the default is xxh3-128 (xxhash), blake2b-128 where xxhash is missing."""
    if algorithm in (None, _XXH):
        try:
            import xxhash

            return _XXH, xxhash.xxh3_128()
        except ImportError:
            if algorithm == _XXH:
                raise StoreError("this store's checksums are xxh3-128: pip install xxhash") from None
    if algorithm in (None, _BLAKE):
        return _BLAKE, hashlib.blake2b(digest_size=16)
    raise StoreError(f"unknown checksum algorithm {algorithm!r}; expected {_XXH!r} or {_BLAKE!r}")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | os.PathLike, *, dir_fd: int | None = None, what: str = "file") -> tuple[int, int]:
    """Open a regular file for reading without following a final symlink or blocking on a FIFO.

    Returns ``(fd, size)``. Raises StoreError naming ``path`` otherwise.
    """
    p = os.fspath(path)
    shown = p if dir_fd is None else p
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        st = os.lstat(p, dir_fd=dir_fd) if dir_fd is not None else os.lstat(p)
    except FileNotFoundError:
        raise StoreError(f"{shown}: missing {what}") from None
    except OSError as e:
        raise StoreError(f"{shown}: cannot read: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{shown}: expected a regular file, found {_kind(st.st_mode)} "
                         f"(a store holds only its own regular files)")
    try:
        fd = os.open(p, flags, dir_fd=dir_fd) if dir_fd is not None else os.open(p, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StoreError(f"{shown}: expected a regular file, found a symbolic link") from e
        raise StoreError(f"{shown}: cannot open: {e.strerror or e}") from e
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # replaced between lstat and open
        os.close(fd)
        raise StoreError(f"{shown}: expected a regular file, found {_kind(st.st_mode)}")
    return fd, st.st_size


class StoreDir:
    """A store folder opened once; files are opened relative to it (never outside it)."""

    def __init__(self, path: Path):
        self.path = path
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            self.fd = os.open(path, flags)
        except FileNotFoundError:
            raise StoreError(f"{path}: no such store folder") from None
        except NotADirectoryError:
            raise StoreError(f"{path}: expected a store folder, found a file") from None
        except OSError as e:
            raise StoreError(f"{path}: cannot open the store folder: {e.strerror or e}") from e

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def name(self, fname: str) -> Path:
        return self.path / fname

    def exists(self, fname: str) -> bool:
        try:
            os.lstat(fname, dir_fd=self.fd)
            return True
        except FileNotFoundError:
            return False

    def open(self, fname: str, what: str = "store file") -> tuple[int, int]:
        try:
            return open_regular(fname, dir_fd=self.fd, what=what)
        except StoreError as e:
            # Re-word with the full path.
            msg = str(e)
            raise StoreError(f"{self.path / fname}{msg[len(fname):]}") from e.__cause__

    def read_small(self, fname: str, max_bytes: int, expect_size: int | None = None,
                   what: str = "store file") -> bytes:
        """Whole content of a small file, sizes checked before reading."""
        fd, size = self.open(fname, what)
        try:
            if expect_size is not None and size != expect_size:
                raise StoreError(f"{self.name(fname)}: size {size} bytes, metadata says {expect_size} "
                                 f"(truncated or replaced file)")
            if size > max_bytes:
                raise StoreError(f"{self.name(fname)}: {size} bytes, more than the {max_bytes} a store's "
                                 f"{fname} may hold")
            data = _read_exact(fd, size)
            if len(data) != size:
                raise StoreError(f"{self.name(fname)}: read {len(data)} of {size} bytes (file changed while read)")
            return data
        finally:
            os.close(fd)

    def hash(self, fname: str, algorithm: str) -> str:
        fd, _ = self.open(fname)
        try:
            _, h = new_hasher(algorithm)
            buf = bytearray(_CHUNK)
            mv = memoryview(buf)
            while True:
                n = os.readv(fd, [buf])
                if not n:
                    break
                h.update(mv[:n])
            return h.hexdigest()
        finally:
            os.close(fd)

    def load_npy(self, fname: str, dtype, length: int, mmap: bool, expect_size: int | None) -> np.ndarray:
        """A 1-D ``.npy`` of ``length`` values of ``dtype``; header and size checked before mapping."""
        p = self.name(fname)
        fd, size = self.open(fname)
        f = os.fdopen(fd, "rb", buffering=0)
        try:
            if expect_size is not None and size != expect_size:
                raise StoreError(f"{p}: size {size} bytes, metadata says {expect_size} (truncated or replaced file)")
            head = f.read(min(size, 4096))
            bio = io.BytesIO(head)
            try:
                version = np.lib.format.read_magic(bio)
                if version == (1, 0):
                    shape, fortran, found = np.lib.format.read_array_header_1_0(bio)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, found = np.lib.format.read_array_header_2_0(bio)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except Exception as e:  # numpy's header reader raises ValueError, SyntaxError, TokenError, ...
                first = (str(e).splitlines() or [type(e).__name__])[0][:200]
                raise StoreError(f"{p}: damaged array file: {first}") from e
            want = np.dtype(dtype)
            if found != want or fortran or len(shape) != 1 or shape[0] != length:
                raise StoreError(f"{p}: expected {want.name} array of length {length}, "
                                 f"found {found.name if found.names is None else found} {shape}")
            offset = bio.tell()
            need = offset + length * want.itemsize
            if size != need:
                raise StoreError(f"{p}: size {size} bytes, its header needs {need} (truncated or extended file)")
            if length == 0:
                a = np.zeros(0, dtype=want)
                a.flags.writeable = False
                return a
            if mmap:
                return np.memmap(f, dtype=want, mode="r", offset=offset, shape=(length,))
            a = np.empty(length, dtype=want)
            os.lseek(fd, offset, os.SEEK_SET)
            got = f.readinto(memoryview(a).cast("B"))
            if got != a.nbytes:
                raise StoreError(f"{p}: read {got} of {a.nbytes} bytes (file changed while read)")
            return a
        finally:
            f.close()

    def map_bytes(self, fname: str, size: int, mmap: bool):
        """The bytes of a blob file of ``size`` bytes (memory-mapped or read)."""
        fd, found = self.open(fname)
        try:
            if found != size:
                raise StoreError(f"{self.name(fname)}: size {found} bytes, offsets expect {size} (truncated file)")
            if size == 0:
                return b""
            if mmap:
                import mmap as _mmap

                return memoryview(_mmap.mmap(fd, size, access=_mmap.ACCESS_READ))
            data = _read_exact(fd, size)
            if len(data) != size:
                raise StoreError(f"{self.name(fname)}: read {len(data)} of {size} bytes (file changed while read)")
            return data
        finally:
            os.close(fd)


def _read_exact(fd: int, size: int) -> bytes:
    out = bytearray(size)
    mv = memoryview(out)
    got = 0
    while got < size:
        n = os.readv(fd, [mv[got:]])
        if not n:
            break
        got += n
    return bytes(out[:got])


# -------------------------------------------------------------------- writing
class FileWriter:
    """Writes store files into a new folder, recording each file's size and checksum.

    Files are created with the process umask (``0o666 & ~umask``) and fsynced.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.sizes: dict[str, int] = {}
        self.checksums: dict[str, str] = {}
        self.algorithm, _ = new_hasher()

    def _open(self, fname: str):
        try:
            return open(self.folder / fname, "xb")
        except OSError as e:
            raise _write_error(self.folder / fname, e) from e

    def _finish(self, fname: str, f, h, size: int) -> None:
        try:
            f.flush()
            os.fsync(f.fileno())
        except OSError as e:
            raise _write_error(self.folder / fname, e) from e
        finally:
            f.close()
        self.sizes[fname] = size
        self.checksums[fname] = h.hexdigest()

    def write_bytes(self, fname: str, data) -> None:
        _, h = new_hasher(self.algorithm)
        mv = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else memoryview(data)
        f = self._open(fname)
        try:
            h.update(mv)
            f.write(mv)
        except OSError as e:
            f.close()
            raise _write_error(self.folder / fname, e) from e
        self._finish(fname, f, h, len(mv))

    def write_npy(self, fname: str, arr: np.ndarray, dtype) -> None:
        a = np.ascontiguousarray(arr, dtype=dtype)
        if a.ndim != 1:
            raise ValueError(f"{fname}: expected a 1-D array, found shape {a.shape}")
        hdr = io.BytesIO()
        np.lib.format.write_array_header_1_0(hdr, np.lib.format.header_data_from_array_1_0(a))
        _, h = new_hasher(self.algorithm)
        f = self._open(fname)
        body = memoryview(a).cast("B") if a.size else memoryview(b"")
        try:
            head = hdr.getvalue()
            h.update(head)
            f.write(head)
            h.update(body)
            f.write(body)
        except OSError as e:
            f.close()
            raise _write_error(self.folder / fname, e) from e
        self._finish(fname, f, h, len(head) + len(body))


def _write_error(path: Path, e: OSError) -> StoreError:
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        try:
            import shutil

            free = shutil.disk_usage(path.parent).free
            room = f"; {free / 2**20:.1f} MiB free there" if free >= 2**20 else f"; {free / 1024:.0f} KiB free there"
        except OSError:
            room = ""
        return StoreError(f"{path}: the disk is full (no space left to write the store{room}); "
                          f"the previous store, if any, is unchanged")
    return StoreError(f"{path}: cannot write: {e.strerror or e}")
