"""lemminflect's look-up tables, read one word at a time from an indexed copy in the cache.

lemminflect parses its two gzipped tables (70 k lemma rows, 34 k inflection rows) on the
first look-up of a process, which costs a single ``ravlm answer`` / ``ravlm retrieve``
0.3-0.5 CPU-seconds for the handful of words it realises or grounds. :func:`use_indexed_tables`
writes the parsed tables once into an SQLite file in the user's cache folder (keyed by
the tables' content hash, written to a temporary name and renamed into place), and hands
lemminflect two read-only mappings that look each word up there. lemminflect's code and
results are unchanged (the rows are those its own loader produces, aux/modal entries
included); with the cache off (``RAVLM_CACHE=off``), or if the file cannot be written,
lemminflect loads its tables as before.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ravlm_graph.utils.cache import _tmp_name, cache_dir, cache_enabled, file_digest

__all__ = ["IndexedTable", "use_indexed_tables"]

_LOCK = threading.Lock()
_DONE = False


class IndexedTable:
    """A read-only ``word -> {tag: forms}`` mapping in an SQLite file (only ``get`` and ``in``,
    what lemminflect calls). Values come back as lemminflect builds them (tuples of forms)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._memo: dict[str, Any] = {}

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # a fresh connection in a forked child
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._pid = os.getpid()
        return self._conn

    def get(self, word: str, default: Any = None) -> Any:
        if word in self._memo:
            v = self._memo[word]
        else:
            row = self._db().execute("SELECT v FROM t WHERE k = ?", (word,)).fetchone()
            v = None if row is None else {tag: tuple(forms) for tag, forms in json.loads(row[0]).items()}
            self._memo[word] = v
        return default if v is None else v

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.get(word) is not None

    def __repr__(self) -> str:
        return f"IndexedTable({str(self.path)!r})"


def _write(path: Path, table: dict) -> None:
    tmp = _tmp_name(path)
    try:
        tmp.unlink()
        conn = sqlite3.connect(str(tmp))
        with conn:
            conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID")
            conn.executemany("INSERT INTO t VALUES (?, ?)",
                             ((k, json.dumps(v, separators=(",", ":"))) for k, v in table.items()))
        conn.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _table(name: str, source: str, load) -> IndexedTable:
    digest = file_digest([source], extra=[name, "1"])
    path = cache_dir("lemminflect") / f"{name}-{digest}.sqlite"
    if not path.is_file():
        _write(path, load(source))
    return IndexedTable(path)


def use_indexed_tables() -> bool:
    """Point lemminflect's lemma and inflection tables at the cached indexed copies (once per
    process; the first call in a fresh cache writes them). False when lemminflect keeps
    loading its own tables (cache off, unwritable cache, tables already loaded)."""
    global _DONE
    with _LOCK:
        if _DONE:
            return isinstance(getattr(_lemmatizer(), "lemma_dict", None), IndexedTable)
        _DONE = True
        if not cache_enabled():
            return False
        from lemminflect.codecs.InflectionLUCodec import InflectionLUCodec
        from lemminflect.codecs.LemmaLUCodec import LemmaLUCodec

        lem, infl = _lemmatizer(), _inflections()
        if hasattr(lem, "lemma_dict") or hasattr(infl, "infl_dict"):
            return False
        try:
            lemma_table = _table("lemma", lem.lemma_lu_fn, LemmaLUCodec.load)
            infl_table = _table("inflection", infl.infl_lu_fn, InflectionLUCodec.load)
        except (OSError, sqlite3.Error):
            return False
        lem.lemma_dict = lemma_table
        infl.infl_dict = infl_table
        return True


def _lemmatizer():
    from lemminflect import Lemmatizer

    return Lemmatizer()


def _inflections():
    from lemminflect import Inflections

    return Inflections()
