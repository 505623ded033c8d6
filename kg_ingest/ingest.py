"""End-to-end ingest: a parser feeds the builder; the store is written atomically.

Each function returns ``(KnowledgeGraph, IngestStats)``; when ``out`` is given
the store is saved there and the returned graph is the memory-mapped saved one.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

from ._io import InputError, PathOrFile, ReadStats, source_name
from ._replace import check_target
from .builder import GraphBuilder
from .conceptnet import ConceptNetOptions, iter_assertions
from .rdf import iter_rdf
from .records import Assertion, IngestStats
from .relations import RelationConfig
from .store import KnowledgeGraph, StoreError, save_and_reload, write_atomically
from .triples import iter_triples

log = logging.getLogger(__name__)


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


@contextmanager
def _progress(read_stats: ReadStats, stats: IngestStats, enabled: bool, desc: str):
    """tqdm over input bytes (compressed bytes for .gz), with lines read in the postfix."""
    if not enabled:
        yield lambda: None
        return
    from tqdm import tqdm

    bar = tqdm(total=read_stats.total_raw, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
               file=sys.stderr, dynamic_ncols=True, mininterval=0.5, disable=None)  # None: off when not a tty
    last = [0, 0.0]

    def update():
        bar.update(read_stats.raw_bytes - last[0])
        last[0] = read_stats.raw_bytes
        now = time.perf_counter()
        if now - last[1] > 0.5:
            last[1] = now
            bar.set_postfix_str(f"{stats.lines_read:,} lines, {stats.records:,} kept", refresh=False)

    try:
        yield update
    finally:
        update()
        bar.set_postfix_str(f"{stats.lines_read:,} lines, {stats.records:,} kept")
        bar.close()


def _prepare_out(out):
    """Fail before reading a 10 GB file if the output cannot be written."""
    if out is None:
        return None
    target = check_target(out)
    probe = target.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise StoreError(f"{out}: cannot write the store here: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StoreError(f"{out}: cannot write the store here: permission denied on {probe}")
    return Path(out)


def _no_edges_message(stats: IngestStats, source: str) -> str:
    why = ", ".join(f"{k}: {v:,}" for k, v in sorted(stats.skipped.items(), key=lambda t: -t[1])) or "none"
    first = f"; first problem: {stats.malformed_samples[0]}" if stats.malformed_samples else ""
    return (f"{source}: no edges to store: {stats.lines_read:,} lines read, {stats.records:,} records parsed, "
            f"skipped by reason: {why}{first}")


def _run(builder: GraphBuilder, stats: IngestStats, out, meta: dict):
    kg = builder.build(meta=meta)
    if kg.num_edges == 0:
        raise InputError(_no_edges_message(stats, stats.source or "input"))
    stats.seconds = time.perf_counter() - stats.started
    stats.peak_rss_mb = _peak_rss_mb()
    kg.meta["ingest_stats"] = stats.to_dict()
    kg.meta["relation_counts"] = kg.relation_counts()
    if builder.dropped_relations:
        kg.meta["dropped_relations"] = dict(builder.dropped_relations)
    if out is not None:
        kg = save_and_reload(kg, out)
        stats.seconds = time.perf_counter() - stats.started
        stats.peak_rss_mb = _peak_rss_mb()
    return kg, stats


def _source_meta(src, kind: str, read_stats: ReadStats, extra: dict) -> dict:
    return {
        "source": {"kind": kind, "path": source_name(src), "sha256": read_stats.sha256,
                   "bytes": read_stats.raw_bytes},
        **extra,
    }


def ingest_conceptnet(
    src: PathOrFile,
    out: str | os.PathLike | None = None,
    *,
    options: ConceptNetOptions | None = None,
    relations: RelationConfig | None = None,
    min_weight: float = 0.0,
    progress: bool = False,
) -> tuple[KnowledgeGraph, IngestStats]:
    """Official ConceptNet assertions dump (``.csv``/``.csv.gz``) -> store.

    Args:
        src: the dump (path or binary file object).
        out: store folder to write (atomically); None keeps the graph in memory.
        options: language filter, POS/sense handling, surface texts, strictness.
        relations: relation keep/drop/merge/inverse rules (default: drop ExternalURL, dbpedia/*).
        min_weight: drop edges lighter than this.
        progress: show a progress bar on stderr.
    """
    opts = options or ConceptNetOptions()
    rels = relations or RelationConfig()
    out = _prepare_out(out)
    stats, rs = IngestStats(), ReadStats()
    builder = GraphBuilder(rels, min_weight=min_weight, keep_surface=opts.keep_surface, stats=stats)
    with _progress(rs, stats, progress, "conceptnet") as tick:
        batches = iter_assertions(src, opts, stats, rs, on_block=tick)
        meta_extra = {
            "language": None if opts.prefix_language else opts.languages[0],
            "ingest_config": {"kind": "conceptnet", "languages": list(opts.languages) if opts.languages else None,
                              "keep_pos": opts.keep_pos, "keep_sense": opts.keep_sense,
                              "keep_surface": opts.keep_surface, "min_weight": min_weight,
                              "relations": rels.to_dict()},
        }
        for batch in batches:
            builder.add_batch(batch)
    stats.warnings += rs.warnings
    return _run(builder, stats, out, _source_meta(src, "conceptnet", rs, meta_extra))


def ingest_triples(
    sources: PathOrFile | list[PathOrFile],
    out: str | os.PathLike | None = None,
    *,
    order: str = "rht",
    relations: RelationConfig | None = None,
    min_weight: float = 0.0,
    language: str = "en",
    strict: bool = False,
    progress: bool = False,
) -> tuple[KnowledgeGraph, IngestStats]:
    """One or more triple files (CN-100K, FVQA facts, TSV) -> one store."""
    srcs = sources if isinstance(sources, list) else [sources]
    rels = relations or RelationConfig()
    out = _prepare_out(out)
    stats = IngestStats()
    builder = GraphBuilder(rels, min_weight=min_weight, stats=stats)
    hashes = []
    lines = 0
    for s in srcs:
        rs = ReadStats()
        stats.source = ""
        with _progress(rs, stats, progress, Path(source_name(s)).name) as tick:
            for batch in iter_triples(s, order=order, stats=stats, read_stats=rs, strict=strict, on_block=tick):
                builder.add_batch(batch)
        stats.warnings += rs.warnings
        lines += stats.lines_read
        hashes.append({"path": source_name(s), "sha256": rs.sha256, "bytes": rs.raw_bytes})
    stats.lines_read = lines
    stats.source = ", ".join(source_name(s) for s in srcs)
    meta = {"language": language, "source": {"kind": "triples", "files": hashes},
            "ingest_config": {"kind": "triples", "order": order, "min_weight": min_weight,
                              "relations": rels.to_dict()}}
    return _run(builder, stats, out, meta)


def ingest_rdf(
    src: PathOrFile,
    out: str | os.PathLike | None = None,
    *,
    fmt: str | None = None,
    relations: RelationConfig | None = None,
    language: str = "en",
    strict: bool = False,
    progress: bool = False,
    jsonld_context: str | os.PathLike | None = None,
) -> tuple[KnowledgeGraph, IngestStats]:
    """Any RDF graph rdflib can parse (N-Triples streamed) -> store.

    Nothing but ``src`` is read and nothing is fetched: a JSON-LD document whose
    ``@context`` names a URL or file needs ``jsonld_context``, a local context
    file used in its place.
    """
    rels = relations or RelationConfig()
    out = _prepare_out(out)
    stats, rs = IngestStats(), ReadStats()
    builder = GraphBuilder(rels, stats=stats)
    with _progress(rs, stats, progress, "rdf") as tick:
        for batch in iter_rdf(src, fmt, stats, rs, strict=strict, on_block=tick, jsonld_context=jsonld_context):
            builder.add_batch(batch)
    stats.warnings += rs.warnings
    meta = _source_meta(src, "rdf", rs, {"language": language,
                                         "ingest_config": {"kind": "rdf", "format": fmt,
                                                           "relations": rels.to_dict()}})
    return _run(builder, stats, out, meta)


# ------------------------------------------------------------ bundled default
def bundled_path(name: str = "cn100k") -> Path:
    """Path of a bundled data file: ``"cn100k"`` (folder), ``"fvqa_facts"`` (TSV)."""
    root = resources.files("kg_ingest") / "data"
    if name == "cn100k":
        return Path(str(root / "cn100k"))
    if name == "fvqa_facts":
        return Path(str(root / "fvqa_conceptnet_facts.tsv"))
    raise ValueError(f"unknown bundled data {name!r}; expected 'cn100k' or 'fvqa_facts'")


def cn100k_files(splits: Iterable[str] = ("train", "valid", "test")) -> list[Path]:
    root = bundled_path("cn100k")
    return [root / f"{s}.txt" for s in splits]


def load_default(with_fvqa: bool = False, out: str | os.PathLike | None = None,
                 progress: bool = False) -> KnowledgeGraph:
    """The bundled default KG: CN-100K (train+valid+test true facts), optionally + FVQA's ConceptNet facts.

    Built in about a second; with ``out`` it is saved there (and loaded from
    there next time if the folder already holds a store built from the same files).
    """
    files = cn100k_files()
    if with_fvqa:
        files.append(bundled_path("fvqa_facts"))
    if out is not None and (Path(out) / "meta.json").exists():
        try:
            kg = KnowledgeGraph.load(out)
            got = [f["path"] for f in kg.meta.get("source", {}).get("files", [])]
            if [Path(p).name for p in got] == [f.name for f in files]:
                return kg
        except StoreError:
            log.warning("%s: damaged store, rebuilding", out)
    kg, _ = ingest_triples(files, out, progress=progress)
    kg.meta["name"] = "cn100k" + ("+fvqa" if with_fvqa else "")
    return kg


def iter_records(batches: Iterable[list[Assertion]]) -> Iterator[Assertion]:
    """Flatten a parser's batches into single records."""
    for b in batches:
        yield from b


__all__ = ["ingest_conceptnet", "ingest_triples", "ingest_rdf", "load_default", "bundled_path", "cn100k_files",
           "iter_records", "write_atomically"]
