#!/usr/bin/env python3
"""Baseline: the preprocessing most ConceptNet-for-QA code bases do, in plain Python.

This is an independent re-implementation of the *steps* of the widely copied
QA-GNN / MHGRN / KagNet ConceptNet preprocessing, not their code:

1. read the assertions dump line by line (``.csv`` or ``.csv.gz``) and split
   each line on tabs;
2. keep the lines whose start and end are both English (``/c/en/...``);
3. ``json.loads`` the info column to get the weight;
4. write an English TSV ``relation \\t head \\t tail \\t weight`` (relation in
   lower case, POS/sense suffixes dropped from the concepts);
5. read the TSV back and build a ``networkx.MultiDiGraph`` (nodes are concept
   names, edges carry ``relation`` and ``weight``).

It prints one JSON object on stdout with the time of each phase and the graph
size, so that ``bench_ingest.py`` can run it as a subprocess and measure its
wall time and peak RSS. Run it alone with::

    python benchmarks/qagnn_style_baseline.py DUMP --tsv /tmp/conceptnet.en.tsv
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time


def extract_english(dump: str, tsv: str) -> dict:
    """Steps 1-4. Returns counts."""
    opener = gzip.open if dump.endswith(".gz") else open
    n_lines = n_kept = 0
    with opener(dump, "rt", encoding="utf-8") as fin, open(tsv, "w", encoding="utf-8") as fout:
        for line in fin:
            n_lines += 1
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 5:
                continue
            start, end = cols[2], cols[3]
            if not (start.startswith("/c/en/") and end.startswith("/c/en/")):
                continue
            relation = cols[1].split("/")[-1].lower()  # /r/IsA -> isa, /r/dbpedia/genre -> genre
            head = start.split("/")[3].lower()  # /c/en/apple/n/wn/food -> apple
            tail = end.split("/")[3].lower()
            info = json.loads(cols[4])
            fout.write(f"{relation}\t{head}\t{tail}\t{info['weight']}\n")
            n_kept += 1
    return {"lines": n_lines, "english_edges": n_kept}


def build_graph(tsv: str):
    """Step 5: networkx MultiDiGraph from the TSV."""
    import networkx as nx

    g = nx.MultiDiGraph()
    with open(tsv, encoding="utf-8") as f:
        for line in f:
            rel, head, tail, w = line.rstrip("\n").split("\t")
            g.add_edge(head, tail, relation=rel, weight=float(w))
    return g


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="QA-GNN-style ConceptNet preprocessing baseline")
    ap.add_argument("dump", help="conceptnet assertions .csv or .csv.gz")
    ap.add_argument("--tsv", required=True, help="English TSV to write")
    ap.add_argument("--no-graph", action="store_true", help="stop after writing the TSV")
    a = ap.parse_args(argv)
    if not os.path.isfile(a.dump):
        ap.error(f"{a.dump}: no such file")
    tsv_dir = os.path.dirname(a.tsv) or "."
    if os.path.isdir(a.tsv) or not os.path.isdir(tsv_dir):
        ap.error(f"--tsv {a.tsv}: not a writable file path (folder {tsv_dir} missing, or it is a folder)")
    t0 = time.perf_counter()
    counts = extract_english(a.dump, a.tsv)
    t1 = time.perf_counter()
    out = dict(counts, extract_s=round(t1 - t0, 3))
    if not a.no_graph:
        g = build_graph(a.tsv)
        t2 = time.perf_counter()
        out.update(graph_s=round(t2 - t1, 3), nodes=g.number_of_nodes(), edges=g.number_of_edges())
    out["total_s"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
