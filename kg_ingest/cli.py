"""``kg-ingest``: build and inspect knowledge-graph stores from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

from ._io import InputError
from .conceptnet import ConceptNetOptions
from .records import IngestStats
from .relations import PRESETS, RelationConfig
from .store import KnowledgeGraph, StoreError


def _relation_config(args) -> RelationConfig:
    spec = args.relations
    extra = {"add_inverse": args.inverse}
    if spec is None or spec in PRESETS:
        cfg = RelationConfig.preset(spec or "conceptnet", **extra)
    elif not Path(spec).exists():
        raise InputError(f"--relations {spec!r}: not a preset ({', '.join(PRESETS)}) and no such file")
    else:
        cfg = RelationConfig.from_json(spec)
        cfg.add_inverse = cfg.add_inverse or args.inverse
    if args.drop:
        cfg = RelationConfig(keep=cfg.keep, drop=cfg.drop + args.drop, merge=cfg.merge, add_inverse=cfg.add_inverse,
                             others=cfg.others)
    if args.keep:
        cfg = RelationConfig(keep=args.keep, drop=cfg.drop, merge=cfg.merge, add_inverse=cfg.add_inverse,
                             others=cfg.others)
    return cfg


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, found {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, found {text!r}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, found {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, found {v}")
    return v


def _fmt_int(n) -> str:
    return f"{n:,}"


def print_summary(kg: KnowledgeGraph, stats: IngestStats, out, file=None) -> None:
    w = (file or sys.stdout).write
    secs = max(stats.seconds, 1e-9)
    w("\n== ingest summary ==\n")
    w(f"source            {stats.source}\n")
    w(f"lines read        {_fmt_int(stats.lines_read)}\n")
    w(f"records parsed    {_fmt_int(stats.records)}\n")
    w(f"edges stored      {_fmt_int(kg.num_edges)}  (parallel edges merged: {_fmt_int(stats.merged_parallel)})\n")
    w(f"concepts          {_fmt_int(kg.num_nodes)}\n")
    if stats.skipped:
        w("skipped by reason\n")
        for k, v in sorted(stats.skipped.items(), key=lambda t: -t[1]):
            w(f"  {k:<28} {_fmt_int(v)}\n")
    if stats.malformed_samples:
        w("malformed samples\n")
        for s in stats.malformed_samples:
            w(f"  {s}\n")
    for msg in stats.warnings:
        w(f"warning           {msg}\n")
    dropped = kg.meta.get("dropped_relations") or {}
    if dropped:
        total = sum(dropped.values())
        names = ", ".join(f"{r} ({c:,})" for r, c in list(dropped.items())[:8])
        more = f" and {len(dropped) - 8} more" if len(dropped) > 8 else ""
        w(f"relations dropped {_fmt_int(total)} records of {len(dropped)} relations not kept by the relation "
          f"config: {names}{more}\n")
    rc = kg.relation_counts()
    w(f"edges per relation ({len(rc)} relations)\n")
    for i, (r, c) in enumerate(rc.items()):
        if i == 15:
            rest = sum(list(rc.values())[15:])
            w(f"  {'(' + str(len(rc) - 15) + ' more)':<28} {_fmt_int(rest)}\n")
            break
        w(f"  {r:<28} {_fmt_int(c)}\n")
    w(f"time              {stats.seconds:.2f} s  ({stats.lines_read / secs:,.0f} lines/s)\n")
    w(f"peak memory       {stats.peak_rss_mb:.0f} MB\n")
    if out is not None:
        w(f"store             {out}\n")


def _info(args) -> int:
    kg = KnowledgeGraph.load(args.store)
    ds = kg.degree_stats(top=10)
    meta = kg.meta
    if args.json:
        print(json.dumps({"path": str(kg.path), "num_nodes": kg.num_nodes, "num_edges": kg.num_edges,
                          "relations": kg.relation_counts(), "degree": ds, "source": meta.get("source"),
                          "ingest_config": meta.get("ingest_config"), "format_version": meta.get("format_version"),
                          "has_surface": kg.has_surface}, indent=2, ensure_ascii=False))
        return 0
    print(f"store        {kg.path}")
    print(f"format       {meta.get('format')} v{meta.get('format_version')}")
    src = meta.get("source") or {}
    def sha(d):
        h = d.get("sha256") if isinstance(d, dict) else None
        return f"sha256 {h[:16]}…" if isinstance(h, str) and h else "sha256 not recorded"

    if isinstance(src, dict) and isinstance(src.get("files"), list):
        for f in src["files"]:
            print(f"source       {f.get('path') if isinstance(f, dict) else f}  {sha(f)}")
    elif isinstance(src, dict) and src:
        print(f"source       {src.get('path')}  {sha(src)}")
    print(f"concepts     {kg.num_nodes:,}")
    print(f"edges        {kg.num_edges:,}")
    print(f"surface text {'yes' if kg.has_surface else 'no'}")
    print(f"degree       mean {ds['mean']:.2f}, median {ds['median']:.0f}, max {ds['max']:,}, "
          f"isolated {ds['isolated']:,}")
    print("top concepts " + ", ".join(f"{n} ({d:,})" for n, d in ds["top"]))
    print(f"relations ({kg.num_relations})")
    for r, c in kg.relation_counts().items():
        print(f"  {r:<28} {c:,}")
    return 0


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _verify(args) -> int:
    from .store import verify_store

    r = verify_store(args.store, level="quick" if args.quick else "full")
    if r["checksum"] is None:
        what = "structure (a version 1 store: no checksums recorded)"
    elif r["level"] == "full":
        what = "checksums of every file and structure"
    else:
        what = "structure and checksums of the small files"
    print(f"ok: {r['path']}: {r['num_nodes']:,} concepts, {r['num_edges']:,} edges; {what} verified "
          f"({r['files']} files, {_size(r['bytes'])}{', ' + r['checksum'] if r['checksum'] else ''}) "
          f"in {r['seconds']:.3f} s")
    return 0


def _neighbors(args) -> int:
    """Outgoing edges as ``relation <tab> concept <tab> weight``; with --direction in/both each
    edge is written whole, ``head --relation--> tail <tab> weight``, so an incoming edge never
    reads as an outgoing one."""
    kg = KnowledgeGraph.load(args.store)
    r = kg.resolve(args.concept)
    if r is None:
        kg.concept_id(args.concept)  # raises the KeyError with similar names
    if r.concept != args.concept:
        typed = kg.find_id(args.concept)
        also = ""
        if typed is not None and typed != r.id:
            d = int(kg.out_indptr[typed + 1] - kg.out_indptr[typed] + kg.in_indptr[typed + 1] - kg.in_indptr[typed])
            also = f"; {args.concept!r} has {d:,} edge{'s' * (d != 1)}"
        print(f"kg-ingest: using concept {r.concept!r} ({r.degree:,} edges) for {args.concept!r}{also}",
              file=sys.stderr)
    if args.direction == "out":
        rows = kg.neighbors(r.id, relation=args.relation, direction="out")
        rows.sort(key=lambda x: -x.weight)
        lines = [f"{x.relation}\t{x.concept}\t{x.weight:g}" for x in rows]
    else:
        edges = kg.incident_edges(r.id, relation=args.relation, direction=args.direction)
        edges.sort(key=lambda x: -x.weight)
        lines = [f"{x.head} --{x.relation}--> {x.tail}\t{x.weight:g}" for x in edges]
    for ln in lines[: args.limit]:
        print(ln)
    if len(lines) > args.limit:
        print(f"... {len(lines) - args.limit} more", file=sys.stderr)
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that temporary files are removed on the way out."""


def _terminate_as_interrupt():
    """Install the SIGTERM handler; returns a function that restores the previous one."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise _Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)


def _store_identity(out):
    """(device, inode, mtime) of ``out/meta.json``: changes exactly when a new store is swapped in."""
    if out is None:
        return None
    try:
        st = os.stat(Path(out) / "meta.json")
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _what_happened(out, before) -> str:
    after = _store_identity(out)
    if after is not None and after != before:
        return f"the new store had already been written to {out} (it is complete)"
    if before is not None:
        return f"the existing store at {out} was left unchanged"
    return f"no store was written to {out}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kg-ingest", description="Build and inspect knowledge-graph stores.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--out", required=True, help="store folder to write (replaced atomically on success)")
        sp.add_argument("--strict", action="store_true", help="stop at the first malformed line")
        sp.add_argument("--relations", default=None,
                        help=f"relation preset ({', '.join(PRESETS)}) or a JSON file with keep/drop/merge")
        sp.add_argument("--keep", nargs="+", metavar="REL", help="keep only these relations (globs allowed)")
        sp.add_argument("--drop", nargs="+", metavar="REL", help="also drop these relations (globs allowed)")
        sp.add_argument("--inverse", action="store_true", help="add each edge reversed as <relation>_inv")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")
        sp.add_argument("--quiet", action="store_true", help="no summary")

    c = sub.add_parser("conceptnet", help="ingest the official ConceptNet assertions dump (.csv or .csv.gz)")
    c.add_argument("dump")
    common(c)
    c.add_argument("--lang", nargs="+", default=["en"], metavar="CODE",
                   help="keep edges whose both ends are in these languages (default: en)")
    c.add_argument("--all-languages", action="store_true", help="keep every language (names become lang/term)")
    c.add_argument("--keep-pos", action="store_true", help="keep part-of-speech suffixes (apple/n)")
    c.add_argument("--keep-sense", action="store_true", help="keep whole sense suffixes (apple/n/wn/food)")
    c.add_argument("--surface", action="store_true", help="keep surfaceText for verbalisation")
    c.add_argument("--min-weight", type=_finite_float, default=0.0, help="drop edges lighter than this (default 0)")

    t = sub.add_parser("triples", help="ingest triple files (CN-100K, FVQA facts, TSV)")
    t.add_argument("files", nargs="*", help="triple files; omit with --bundled")
    common(t)
    t.add_argument("--order", default="rht", help="column order: rht (relation head tail, default) or hrt")
    t.add_argument("--bundled", action="store_true", help="also ingest the bundled CN-100K files")
    t.add_argument("--with-fvqa", action="store_true", help="also merge in the bundled FVQA ConceptNet facts")
    t.add_argument("--min-weight", type=_finite_float, default=0.0, help="drop edges lighter than this (default 0)")

    r = sub.add_parser("rdf", help="ingest an RDF graph (N-Triples streamed; Turtle, RDF/XML, JSON-LD, ...)")
    r.add_argument("file")
    common(r)
    r.add_argument("--format", default=None, help="rdflib format name (default: from the file extension)")
    r.add_argument("--jsonld-context", default=None, metavar="FILE",
                   help="local JSON-LD context used for every @context URL or file the input names "
                        "(nothing is ever fetched)")

    v = sub.add_parser("verify", help="check a store: every file's checksum and the structure of its arrays")
    v.add_argument("store")
    v.add_argument("--quick", action="store_true", help="hash only the small files (names, relations)")

    i = sub.add_parser("info", help="describe a store")
    i.add_argument("store")
    i.add_argument("--json", action="store_true")

    n = sub.add_parser("neighbors", help="list a concept's neighbours in a store")
    n.add_argument("store")
    n.add_argument("concept")
    n.add_argument("--relation", default=None)
    n.add_argument("--direction", default="out", choices=["out", "in", "both"],
                   help="out (default): 'relation<TAB>concept<TAB>weight'; in/both: whole edges, "
                        "'head --relation--> tail<TAB>weight'")
    n.add_argument("--limit", type=_non_negative_int, default=50, help="print at most this many edges (default 50)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from . import ingest

    before = _store_identity(getattr(args, "out", None))
    restore = lambda: None  # noqa: E731
    try:
        if args.cmd == "info":
            return _info(args)
        if args.cmd == "neighbors":
            return _neighbors(args)
        if args.cmd == "verify":
            return _verify(args)
        restore = _terminate_as_interrupt()
        rels = _relation_config(args)
        progress = not args.no_progress
        if args.cmd == "conceptnet":
            opts = ConceptNetOptions(languages=None if args.all_languages else tuple(args.lang),
                                     keep_pos=args.keep_pos, keep_sense=args.keep_sense,
                                     keep_surface=args.surface, strict=args.strict)
            kg, stats = ingest.ingest_conceptnet(args.dump, args.out, options=opts, relations=rels,
                                                 min_weight=args.min_weight, progress=progress)
        elif args.cmd == "triples":
            files = list(args.files)
            if args.bundled:
                files = [str(f) for f in ingest.cn100k_files()] + files
            if args.with_fvqa:
                files.append(str(ingest.bundled_path("fvqa_facts")))
            if not files:
                raise InputError("no triple file given (pass FILE ... or --bundled)")
            kg, stats = ingest.ingest_triples(files, args.out, order=args.order, relations=rels,
                                              min_weight=args.min_weight, strict=args.strict, progress=progress)
        else:
            kg, stats = ingest.ingest_rdf(args.file, args.out, fmt=args.format, relations=rels,
                                          strict=args.strict, progress=progress, jsonld_context=args.jsonld_context)
        if not args.quiet:
            print_summary(kg, stats, Path(args.out))
        return 0
    except (InputError, StoreError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"kg-ingest: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        code = 143 if isinstance(e, _Terminated) else 130
        if args.cmd in ("info", "neighbors", "verify"):
            print("kg-ingest: interrupted", file=sys.stderr)
            return code
        print(f"kg-ingest: interrupted; {_what_happened(args.out, before)}", file=sys.stderr)
        return code
    except BrokenPipeError:  # e.g. `kg-ingest neighbors ... | head`
        sys.stderr.close()
        return 0
    except OSError as e:
        print(f"kg-ingest: error: {e}", file=sys.stderr)
        return 1
    finally:
        restore()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
