"""Opening the knowledge graph an engine names: a bundled KG or a store folder.

``"bundled:cn100k"`` and ``"bundled:cn100k+fvqa"`` are built from the data files shipped
in :mod:`kg_ingest` once, into the user's cache folder (:mod:`ravlm_graph.utils.cache`),
under a key made of the hash of those files and of the ``kg_ingest`` code that builds
them; every later process memory-maps the built store (milliseconds instead of the
build's seconds). Concurrent first calls build once: the others wait on the lock.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import kg_ingest
from kg_ingest import KnowledgeGraph, StoreError, bundled_path, cn100k_files, load_default

from ravlm_graph.utils.cache import atomic_dir, cache_dir, cache_enabled, file_digest, locked

log = logging.getLogger(__name__)

__all__ = ["open_kg", "BUNDLED_KGS", "bundled_key"]

BUNDLED_KGS = ("cn100k", "cn100k+fvqa")


def _sources(name: str) -> list[Path]:
    files = list(cn100k_files())
    if name.endswith("+fvqa"):
        files.append(bundled_path("fvqa_facts"))
    return files


def bundled_key(name: str) -> str:
    """The cache key of a bundled KG: a hash of its data files and of the ``kg_ingest`` sources."""
    code = sorted(Path(kg_ingest.__file__).parent.glob("*.py"))
    return file_digest(_sources(name) + code, extra=[name])


def open_kg(spec: str | os.PathLike, cache_root: str | os.PathLike | None = None, *,
            progress: bool = False) -> KnowledgeGraph:
    """A KG from an engine spec: ``bundled:cn100k[+fvqa]`` or a store folder.

    Args:
        spec: ``bundled:<name>`` or the path of a store folder (str or ``pathlib.Path``).
        cache_root: where bundled KGs are built and kept; None: the user's cache folder
            (``$RAVLM_CACHE`` or the platform's; ``RAVLM_CACHE=off`` builds in memory).
        progress: show the build's progress bar the first time.

    Raises:
        TypeError: ``spec`` is neither a str nor a path.
        ValueError: an unknown bundled name.
        StoreError: a store folder that is not a readable store.
    """
    if isinstance(spec, os.PathLike):
        return KnowledgeGraph.load(spec)
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected 'bundled:<name>' or a store folder (str or os.PathLike), found "
                        f"{type(spec).__name__} {spec!r}"[:300])
    if not spec.startswith("bundled:"):
        return KnowledgeGraph.load(spec)
    name = spec.split(":", 1)[1]
    if name not in BUNDLED_KGS:
        raise ValueError(f"unknown bundled KG {name!r}; expected one of {', '.join(BUNDLED_KGS)}")
    with_fvqa = name.endswith("+fvqa")
    if cache_root is None and not cache_enabled():
        return load_default(with_fvqa=with_fvqa, progress=progress)
    folder = cache_dir("kg", cache_root) / f"{name.replace('+', '_')}-{bundled_key(name)}"
    kg = _try_load(folder)
    if kg is not None:
        return kg
    with locked(folder):
        kg = _try_load(folder)  # another process may have built it while we waited
        if kg is not None:
            return kg
        t0 = time.perf_counter()
        log.info("building the bundled KG %s once into %s", name, folder)
        with atomic_dir(folder) as tmp:
            load_default(with_fvqa=with_fvqa, out=tmp / "store", progress=progress)
            for f in (tmp / "store").iterdir():
                os.replace(f, tmp / f.name)
            (tmp / "store").rmdir()
        log.info("built %s in %.1f s", folder, time.perf_counter() - t0)
        _drop_stale(folder, name)
    return KnowledgeGraph.load(folder)


def _drop_stale(keep: Path, name: str) -> None:
    """Remove the stores of ``name`` built from older sources (a process that still has one
    mapped keeps reading it: the files stay until it unmaps them)."""
    for other in keep.parent.glob(f"{name.replace('+', '_')}-*"):
        if other != keep and other.is_dir() and not other.name.endswith((".tmp", ".old")):
            shutil.rmtree(other, ignore_errors=True)
            Path(f"{other}.lock").unlink(missing_ok=True)


def _try_load(folder: Path) -> KnowledgeGraph | None:
    if not (folder / "meta.json").exists():
        return None
    try:
        return KnowledgeGraph.load(folder, verify="quick")
    except StoreError as e:
        log.warning("%s: damaged cached store (%s); rebuilding", folder, e)
        return None
