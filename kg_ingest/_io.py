"""Byte-block readers for plain and gzip-compressed input, path or file object.

The ConceptNet dump is ~10 GB unzipped, so nothing here ever holds a whole file:
input is read in blocks of whole lines. For gzip input the inflating runs in a
background thread (ISA-L's inflate releases the GIL), so decompression on one
core overlaps with parsing on the other.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Union

PathOrFile = Union[str, os.PathLike, BinaryIO]
log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
BLOCK_SIZE = 1 << 23  # 8 MiB of decompressed text per block
# The longest line a line-oriented reader holds (a ConceptNet line is a few KiB): a file with no
# line end (binary data, an archive) is refused here instead of being gathered into memory whole.
MAX_LINE = 1 << 26  # 64 MiB
_RAW_READ = 1 << 20


class InputError(ValueError):
    """Bad input: names the source, and the line where that is known."""


@dataclass
class ReadStats:
    """Running counters a reader updates as it goes (read by progress bars)."""

    raw_bytes: int = 0  # bytes read from the underlying file (compressed if gzip)
    text_bytes: int = 0  # bytes of text handed out
    total_raw: int | None = None  # file size when known
    sha256: str | None = None  # hash of the raw bytes, set when fully read
    warnings: list = None  # messages about input that was read but partly ignored (trailing data)

    def __post_init__(self):
        if self.warnings is None:
            self.warnings = []


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str) -> bytes:
    """A small input file read whole: only a regular file (never waits on a FIFO), size checked first."""
    import stat

    p = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as e:
        raise InputError(f"{p}: cannot open the {what}: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{p}: the {what} must be a regular file")
        if st.st_size > max_bytes:
            raise InputError(f"{p}: the {what} is {st.st_size} bytes, more than {max_bytes}")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)


# Leading bytes of inputs that are not UTF-8 text nor gzip: (magic, what it is, what to do).
_NOT_TEXT = (
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (xz -d, or xz -dc FILE | gzip > FILE.gz)"),
    (b"BZh", "bzip2-compressed", "decompress it first (bunzip2, or bzip2 -dc FILE | gzip > FILE.gz)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first (zstd -d, or zstd -dc FILE | gzip > FILE.gz)"),
    (b"PK\x03\x04", "a zip archive", "extract the file from it first (unzip)"),
    (b"PK\x05\x06", "an empty zip archive", "extract the file from it first (unzip)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive", "extract the file from it first"),
    (b"\xff\xfe", "UTF-16 text", "convert it to UTF-8 first (iconv -f UTF-16 -t UTF-8)"),
    (b"\xfe\xff", "UTF-16 text", "convert it to UTF-8 first (iconv -f UTF-16 -t UTF-8)"),
)


def _check_not_other_format(head: bytes, name: str) -> None:
    for magic, what, todo in _NOT_TEXT:
        if head.startswith(magic) and (magic != b"BZh" or head[3:10] in {bytes([c]) + b"1AY&SY" for c in b"123456789"}):
            raise InputError(f"{name}: the file is {what}; kg-ingest reads UTF-8 text, plain or gzip: {todo}")


def source_name(src: PathOrFile) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return getattr(src, "name", None) or "<stream>"


def _open_raw(src: PathOrFile) -> tuple[BinaryIO, bool, int | None]:
    """Open ``src`` for binary reading; returns (file, we_own_it, size)."""
    if isinstance(src, (str, os.PathLike)):
        import stat

        p = Path(src)
        if p.is_dir():
            raise InputError(f"{p}: is a directory, expected a file")
        try:
            f = open(p, "rb")
        except FileNotFoundError:
            raise InputError(f"{p}: no such file") from None
        except OSError as e:
            raise InputError(f"{p}: cannot open: {e.strerror or e}") from e
        st = os.fstat(f.fileno())
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            f.close()  # /dev/zero, /dev/urandom, a disk: endless or not a text file
            raise InputError(f"{p}: is a device, expected a file (or a pipe)")
        return f, True, st.st_size if stat.S_ISREG(st.st_mode) else None
    if isinstance(src, io.TextIOBase):
        raise InputError(f"{source_name(src)}: open the file in binary mode ('rb')")
    size = None
    try:
        size = os.fstat(src.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    return src, False, size


class _RawCounter:
    """File wrapper that counts and hashes the raw bytes read through it."""

    def __init__(self, f: BinaryIO, stats: ReadStats):
        self._f = f
        self._stats = stats
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        b = self._f.read(n)
        self._stats.raw_bytes += len(b)
        self._hash.update(b)
        return b

    def readinto(self, buf) -> int:  # used by some gzip readers
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def finish(self) -> None:
        # Hash whatever the decompressor did not consume (gzip trailer slack).
        while True:
            b = self._f.read(_RAW_READ)
            if not b:
                break
            self._stats.raw_bytes += len(b)
            self._hash.update(b)
        self._stats.sha256 = self._hash.hexdigest()


def _gzip_reader(raw: _RawCounter):
    try:
        from isal import igzip

        return igzip.GzipFile(fileobj=raw, mode="rb")
    except ImportError:  # pragma: no cover - isal is a core dependency
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")


def _decode_errors():
    import gzip
    import zlib

    errs: list[type[BaseException]] = [EOFError, zlib.error, gzip.BadGzipFile, OSError]
    try:
        from isal import isal_zlib

        errs.append(isal_zlib.error)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def iter_blocks(
    src: PathOrFile,
    stats: ReadStats | None = None,
    block_size: int = BLOCK_SIZE,
    threaded: bool = True,
    analyze: Callable[[bytes], Any] | None = None,
    max_line: int | None = MAX_LINE,
) -> Iterator[Any]:
    """Yield blocks of whole lines (each ends with ``\\n`` except maybe the last).

    With ``threaded=True`` reading, inflating and ``analyze(block)`` run in a
    background thread, two blocks ahead of the consumer; with ``analyze`` the
    items are ``(block, analyze(block))``. ``analyze`` should spend its time in
    code that releases the GIL (numpy) to overlap with the consumer.
    ``max_line``: the longest line held (bytes); None: no limit (a reader that
    takes the whole input anyway).

    Raises:
        InputError: a directory or device, a missing or empty file, a truncated or
            corrupt gzip, a compressed format other than gzip, UTF-16 text, a line
            longer than ``max_line``.
    """
    name = source_name(src)
    stats = stats if stats is not None else ReadStats()
    f, owned, size = _open_raw(src)
    stats.total_raw = size
    try:
        head = f.read(10)
        if not head:
            raise InputError(f"{name}: the file is empty")
        _check_not_other_format(head, name)
        raw = _RawCounter(f, stats)
        seekable = hasattr(f, "seekable") and f.seekable()
        if seekable:
            f.seek(0)
        else:
            stats.raw_bytes += len(head)
            raw._hash.update(head)
            raw = _PrefixedRaw(head, raw)
        gz = head[:2] == _GZIP_MAGIC
        reader = _gzip_reader(raw) if gz else raw

        recover = None
        if gz and owned and seekable:  # re-reads the file with pread: not a pipe
            recover = lambda done: _gzip_members(f.fileno(), done, name, stats)  # noqa: E731

        def produce():
            any_text = False
            for block in _aligned(_plain_reads(reader, block_size, name, gz, recover), stats, name, max_line):
                any_text = True
                yield (block, analyze(block)) if analyze is not None else block
            if not any_text:
                raise InputError(f"{name}: the file is empty" + (" (gzip with no content)" if gz else ""))
            raw.finish()

        yield from (_in_thread(produce) if threaded else produce())
    finally:
        if owned:
            f.close()


def _aligned(chunks: Iterator[bytes], stats: ReadStats, name: str = "<stream>",
             max_line: int | None = None) -> Iterator[bytes]:
    """Re-cut raw chunks at line ends; InputError for a line longer than ``max_line`` bytes."""
    pending = b""
    for chunk in chunks:
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n") + 1
        pending = data[cut:] if cut else data
        if max_line is not None and len(pending) > max_line:
            raise InputError(f"{name}: a line of more than {max_line:,} bytes (at byte {stats.text_bytes:,} of "
                             f"the text); not a line-by-line text file")
        if cut == 0:
            continue
        block = data[:cut] if pending else data
        stats.text_bytes += len(block)
        yield block
    if pending:
        stats.text_bytes += len(pending)
        yield pending


class _PrefixedRaw:
    """Re-inserts bytes already consumed from a non-seekable stream."""

    def __init__(self, prefix: bytes, inner: _RawCounter):
        self._prefix = prefix
        self._inner = inner

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            p, self._prefix = self._prefix, b""
            if n is None or n < 0:
                return p + self._inner.read()
            return p + self._inner.read(max(0, n - len(p)))
        return self._inner.read(n)

    def readinto(self, buf) -> int:  # used by the gzip readers
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def finish(self) -> None:
        self._inner.finish()


def _wrap_decode_error(name: str, gz: bool, e: BaseException) -> InputError:
    if isinstance(e, EOFError) or "end-of-stream" in str(e) or "truncated" in str(e).lower():
        return InputError(f"{name}: truncated gzip: the compressed stream ends before its end marker "
                          f"(or is followed by data that is not gzip)")
    kind = "corrupt gzip" if gz else "read error"
    return InputError(f"{name}: {kind}: {e}")


def _plain_reads(reader, block_size: int, name: str, gz: bool, recover=None) -> Iterator[bytes]:
    errs = _decode_errors()
    done = 0  # bytes handed out so far
    while True:
        try:
            chunk = reader.read(block_size)
        except errs as e:
            if recover is None:
                raise _wrap_decode_error(name, gz, e) from e
            # The fast reader cannot tell a truncated stream from data after its end
            # (and drops the block it was inflating): decode again, member by member.
            yield from recover(done)
            return
        if not chunk:
            return
        done += len(chunk)
        yield chunk


def _gzip_members(fd: int, skip: int, name: str, stats: ReadStats) -> Iterator[bytes]:
    """Inflate the gzip file ``fd`` (read with ``pread``) member by member, as gzip(1) does; the error path.

    Yields the text after its first ``skip`` bytes. Bytes after the last member
    that do not start another member are ignored with a warning (gzip(1):
    "trailing garbage ignored"); a member that ends early is a truncated gzip.
    """
    import zlib

    size = os.fstat(fd).st_size
    pos = 0  # raw bytes read
    d = zlib.decompressobj(31)
    data = b""
    member_start = 0
    out_total = 0
    while True:
        if not data:
            data = os.pread(fd, _RAW_READ, pos)
            pos += len(data)
            if not data:
                break
        try:
            out = d.decompress(data, BLOCK_SIZE)
        except zlib.error as e:
            raise InputError(f"{name}: corrupt gzip: {e} (in the member at byte {member_start})") from e
        if out:
            if out_total + len(out) > skip:
                yield out[max(0, skip - out_total):]
            out_total += len(out)
        if d.eof:
            rest = d.unused_data
            end = pos - len(rest)  # where this member ended
            while len(rest) < 2 and pos < size:
                more = os.pread(fd, _RAW_READ, pos)
                pos += len(more)
                rest += more
            if not rest:
                return
            if rest[:2] != _GZIP_MAGIC:
                n = size - end
                if rest.strip(b"\0") or pos < size and any(os.pread(fd, _RAW_READ, p).strip(b"\0")
                                                           for p in range(pos, size, _RAW_READ)):
                    msg = (f"{name}: {n:,} bytes of trailing data after the end of the gzip stream "
                           f"(at byte {end:,}) ignored, as gzip does")
                    stats.warnings.append(msg)
                    log.warning("%s", msg)
                return
            member_start = end
            d = zlib.decompressobj(31)
            data = rest
            continue
        data = d.unconsumed_tail
    raise InputError(f"{name}: truncated gzip: the compressed stream ends before its end marker")


def _in_thread(produce: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Run a generator in a background thread, two items ahead; errors re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for item in produce():
                if stop.is_set():
                    return
                q.put((None, item))
            q.put((None, done))
        except BaseException as e:  # surfaced in the consumer thread
            q.put((e, None))

    t = threading.Thread(target=work, name="kg-ingest-reader", daemon=True)
    # The worker spends its time in GIL-free C (inflate, numpy) but must take the
    # GIL back between calls; with the default 5 ms switch interval it would wait
    # behind the consumer's pure-Python loop for most of that time.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.0002))
    t.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
    finally:
        stop.set()
        # Drain so the worker is never blocked on a full queue.
        while t.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        t.join()
        sys.setswitchinterval(interval)


def iter_lines(src: PathOrFile, stats: ReadStats | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, line_bytes)`` (1-based, without the newline; a UTF-8 BOM at the start removed)."""
    lineno = 0
    for block in iter_blocks(src, stats, threaded=False):
        if lineno == 0 and block.startswith(UTF8_BOM):
            block = block[len(UTF8_BOM):]
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
        for line in lines:
            lineno += 1
            yield lineno, line.rstrip(b"\r")
