#!/usr/bin/env python3
"""Ingest benchmark on synthetic ConceptNet 5.7 dumps (1/100 and 1/10 of the real size).

For each scale, in one run:

(a) ``zcat FILE | wc -l`` wall time: the floor any reader of the .gz pays;
(b) ``python -m kg_ingest conceptnet FILE --out DIR``: wall time, peak RSS of
    that child process (``os.wait4`` rusage), lines/s;
(c) store load: ``KnowledgeGraph.load(DIR)`` timed inside a fresh interpreter
    (import excluded), median of 5 processes, at each verify level: the default
    (every file's checksum + structural cross-checks), "quick" (structure + the
    small files' checksums) and none (file kinds and sizes only);
(d) 2-hop neighbourhood of 3 seed concepts: ``kg.k_hop(seeds, 2)`` against
    networkx on the MultiDiGraph of the same store (``kg.to_networkx()``);
    node sets must be identical; speed-ups "node set only" and "with edges";
(e) linear scaling: ingest time per line at the largest scale / at the smallest;
    also with the fixed cost of one ingest (a 1,000-line dump) taken off both;
(f) optional (``--baseline``): QA-GNN-style preprocessing in plain Python
    (``qagnn_style_baseline.py``), wall time and peak RSS.

networkx has no multi-source ego graph. We add a virtual node ``__ego__`` with
an edge to each of the 3 seeds (outside the timed region); the union of the
radius-2 balls of the seeds is then the radius-3 ball of ``__ego__`` minus
``__ego__``. "Node set only" times an undirected breadth-first search
(Each figure is measured two ways for networkx:

* "ego_graph": what ``nx.ego_graph(G, "__ego__", radius=3, undirected=True)``
  does -- ``G.to_undirected()`` (a copy of the whole graph, on every call),
  then a cut-off breadth-first search (node set), then
  ``G.subgraph(nodes).copy()`` (with edges);
* "view": the cheapest networkx idiom -- the same search on
  ``G.to_undirected(as_view=True)`` (no copy), then ``G.subgraph(nodes).copy()``.

Ours: ``kg.k_hop(seeds, 2)`` (node set) and ``kg.subgraph(kg.k_hop(seeds, 2))``
(node ids plus the ids of every store edge among them).

Results go to a table on stdout (each figure next to its target) and, with
``--json PATH``, to a JSON file. Progress goes to stderr. Dumps are cached in
``--work`` (default: ``benchmarks/`` in the user cache folder) and regenerated only when the
generator, the seed or the line count changes.

    python benchmarks/bench_ingest.py                       # 1/100 and 1/10
    python benchmarks/bench_ingest.py --scales 0.01 --baseline --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import synth_conceptnet  # noqa: E402

TARGETS = {
    "ingest_vs_zcat": 1.5,  # ingest wall time <= 1.5 x (zcat | wc -l)
    "peak_rss_mb_at_0.1": 250.0,
    "load_s": 0.2,
    "two_hop_speedup": 100.0,
    "scaling_ratio": 1.25,
}

_LOAD_SNIPPET = r"""
import json, sys, time
from kg_ingest import KnowledgeGraph
level = {"default": True, "quick": "quick", "none": False}[sys.argv[2]]
t = time.perf_counter()
kg = KnowledgeGraph.load(sys.argv[1], verify=level)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "nodes": kg.num_nodes, "edges": kg.num_edges}))
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

# The measured command is started by this small wrapper with fork + exec, and
# reaped with os.wait4: the rusage is the command's own. (A child started by the
# benchmark process directly inherits, on Linux, the benchmark's high-water RSS
# in ru_maxrss -- vfork/exec carries the parent's peak over -- which would hide
# the real peak of a small child after the benchmark held a big graph.)
_WRAPPER = r"""
import json, os, sys, time
cmd, report = json.loads(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t
with open(report, "w") as f:
    json.dump({"wall_s": wall, "rc": os.waitstatus_to_exitcode(status), "maxrss_kb": ru.ru_maxrss,
               "user_s": ru.ru_utime, "sys_s": ru.ru_stime}, f)
"""


def run_measured(cmd, *, shell: bool = False, stdout_path: Path | None = None,
                 stderr_path: Path | None = None, work: Path | None = None) -> dict:
    """Run ``cmd`` to completion: wall time (fork to exit) and the command's own
    rusage; ``maxrss_mb`` is its peak resident set (for a shell pipeline, the
    largest process of the pipeline), in MiB."""
    if shell:
        cmd = ["/bin/sh", "-c", cmd]
    fd, report = tempfile.mkstemp(prefix="rusage-", suffix=".json", dir=work)
    os.close(fd)
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
    try:
        rc = subprocess.call([sys.executable, "-S", "-c", _WRAPPER, json.dumps([str(c) for c in cmd]), report],
                             stdout=out, stderr=err, cwd=ROOT)
        if rc != 0:
            raise RuntimeError(f"measuring wrapper failed (exit {rc}) for {cmd}")
        r = json.loads(Path(report).read_text())
    finally:
        for f in (out, err):
            if f is not subprocess.DEVNULL:
                f.close()
        os.unlink(report)
    r["maxrss_mb"] = r.pop("maxrss_kb") / 1024.0
    return r


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


def _generator_digest() -> str:
    return hashlib.sha256((HERE / "synth_conceptnet.py").read_bytes()).hexdigest()[:16]


def ensure_dump(work: Path, scale: float, seed: int) -> tuple[Path, int, dict]:
    """The cached synthetic dump for ``scale`` (generated when missing or stale)."""
    lines = synth_conceptnet.lines_for_scale(scale)
    path = work / f"conceptnet-synth-{scale:g}-seed{seed}.csv.gz"
    meta_path = path.with_name(path.name + ".json")
    want = {"lines": lines, "seed": seed, "generator": _generator_digest()}
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if all(meta.get(k) == v for k, v in want.items()) and meta.get("file_bytes") == path.stat().st_size:
            log(f"[{scale:g}] reusing {path} ({lines:,} lines)")
            return path, lines, meta
    log(f"[{scale:g}] generating {path} ({lines:,} lines) ...")
    info = synth_conceptnet.generate(str(path), lines, seed=seed, progress=True)
    meta = dict(info, **want)
    meta_path.write_text(json.dumps(meta, indent=1))
    log(f"[{scale:g}] generated in {info['seconds']:.1f} s: {info['uncompressed_bytes'] / 1e6:,.0f} MB "
        f"uncompressed, {info['file_bytes'] / 1e6:,.1f} MB gzipped")
    return path, lines, meta


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, res = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), res


def pick_seeds(kg, n: int = 3) -> list[str]:
    """3 high/mid-degree concepts, deterministically: degree ranks 10, 100, 1000
    (clipped to the graph), ties broken by node id."""
    import numpy as np

    deg = np.asarray(kg.degree())
    order = np.lexsort((np.arange(len(deg)), -deg))  # degree desc, id asc
    ranks = [10, 100, 1000][:n]
    picked: list[int] = []
    for r in ranks:
        r = min(r, len(order) - 1)
        while order[r] in picked and r + 1 < len(order):
            r += 1
        picked.append(int(order[r]))
    return [kg.concept_name(i) for i in picked]


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------

def measure_zcat(dump: Path, lines: int, work: Path) -> dict:
    outp = work / "zcat-wc.out"
    r = run_measured(f"zcat '{dump}' | wc -l", shell=True, stdout_path=outp, work=work)
    counted = int(outp.read_text().strip() or -1)
    if counted != lines:
        raise RuntimeError(f"zcat | wc -l counted {counted} lines, expected {lines}")
    return {"wall_s": r["wall_s"]}


def measure_ingest(dump: Path, lines: int, store: Path, work: Path, tag: str) -> dict:
    cmd = [sys.executable, "-m", "kg_ingest", "conceptnet", str(dump), "--out", str(store), "--no-progress"]
    errp = work / f"ingest-{tag}.log"
    r = run_measured(cmd, stdout_path=work / f"ingest-{tag}.out", stderr_path=errp, work=work)
    if r["rc"] != 0:
        raise RuntimeError(f"ingest failed (exit {r['rc']}): {' '.join(cmd)}\n{_tail(errp)}")
    return {"cmd": " ".join(cmd[1:]), "wall_s": r["wall_s"], "peak_rss_mb": r["maxrss_mb"],
            "cpu_s": r["user_s"] + r["sys_s"], "lines_per_s": lines / r["wall_s"]}


def measure_load(store: Path, work: Path, repeat: int = 5, level: str = "default") -> dict:
    """``KnowledgeGraph.load`` in fresh interpreters; ``level``: "default" (every checksum and the
    structural cross-checks), "quick" (structure + small files' checksums) or "none" (sizes only)."""
    times, info = [], {}
    for i in range(repeat):
        outp = work / "load.out"
        r = run_measured([sys.executable, "-c", _LOAD_SNIPPET, str(store), level], stdout_path=outp,
                         stderr_path=work / "load.err", work=work)
        if r["rc"] != 0:
            raise RuntimeError(f"store load failed:\n{_tail(work / 'load.err')}")
        info = json.loads(outp.read_text())
        times.append(info["seconds"])
    return {"median_s": statistics.median(times), "all_s": times, "nodes": info["nodes"], "edges": info["edges"]}


def measure_two_hop(store: Path, skip_networkx: bool) -> dict:
    from kg_ingest import KnowledgeGraph

    kg = KnowledgeGraph.load(store)
    seeds = pick_seeds(kg)
    deg = kg.degree()
    res: dict = {"seeds": {s: int(deg[kg.concept_id(s)]) for s in seeds}}
    t_nodes, ids = _median_time(lambda: kg.k_hop(seeds, 2), 21)

    def ours_edges():
        sg = kg.subgraph(kg.k_hop(seeds, 2))
        return sg

    t_edges, sg = _median_time(ours_edges, 21)
    res.update(ours_nodes_s=t_nodes, ours_edges_s=t_edges, nodes=int(len(ids)), edges=int(len(sg.edge_ids)))
    if skip_networkx:
        return res

    import networkx as nx

    log("    building the networkx graph (kg.to_networkx()) ...")
    t = time.perf_counter()
    g = kg.to_networkx()
    res["nx_build_s"] = time.perf_counter() - t
    ego = "__ego__"
    assert ego not in g
    for s in seeds:
        g.add_edge(ego, s)
    und = g.to_undirected(as_view=True)

    def nx_nodes_ego():  # the node-set step of nx.ego_graph(..., undirected=True)
        return dict(nx.single_source_shortest_path_length(g.to_undirected(), ego, cutoff=3))

    def nx_nodes_view():  # same search on an undirected view: no copy of the graph
        return nx.single_source_shortest_path_length(und, ego, cutoff=3)

    def nx_edges_ego():  # the public API
        h = nx.ego_graph(g, ego, radius=3, undirected=True)
        h.remove_node(ego)
        return h

    def nx_edges_view():  # view search + induced subgraph copy (what ego_graph returns)
        sp = nx.single_source_shortest_path_length(und, ego, cutoff=3)
        h = g.subgraph(sp).copy()
        h.remove_node(ego)
        return h

    log("    timing networkx (nx.ego_graph copies the whole graph on each call) ...")
    t_nx_nodes_ego, sp_ego = _median_time(nx_nodes_ego, 3)
    t_nx_nodes_view, sp = _median_time(nx_nodes_view, 5)
    t_nx_edges_ego, h2 = _median_time(nx_edges_ego, 3)
    t_nx_edges_view, h = _median_time(nx_edges_view, 3)
    nx_set = set(sp) - {ego}
    our_set = set(kg.concept_names(ids.tolist()))
    ok = (nx_set == our_set and set(sp_ego) - {ego} == our_set and set(h.nodes) == our_set
          and set(h2.nodes) == our_set)
    res.update(
        nx_nodes_ego_s=t_nx_nodes_ego, nx_nodes_view_s=t_nx_nodes_view,
        nx_edges_ego_s=t_nx_edges_ego, nx_edges_view_s=t_nx_edges_view,
        nx_nodes=len(nx_set), nx_edges=h.number_of_edges(),
        check="OK" if ok else "MISMATCH",
        check_detail=None if ok else {"only_networkx": sorted(nx_set - our_set)[:10],
                                      "only_ours": sorted(our_set - nx_set)[:10]},
        edges_equal=h.number_of_edges() == len(sg.edge_ids) == h2.number_of_edges(),
        speedup_nodes=t_nx_nodes_ego / t_nodes, speedup_nodes_view=t_nx_nodes_view / t_nodes,
        speedup_edges=t_nx_edges_ego / t_edges, speedup_edges_view=t_nx_edges_view / t_edges,
    )
    print(f"CHECK {res['check']}: 2-hop node sets of {seeds} ({len(our_set):,} nodes) "
          f"{'identical' if ok else 'DIFFER'} (ours vs networkx); edge counts "
          f"{'equal' if res['edges_equal'] else 'differ'} ({len(sg.edge_ids):,} ours, "
          f"{h.number_of_edges():,} networkx)", flush=True)
    del g, und, h, h2
    return res


def measure_baseline(dump: Path, work: Path, tag: str) -> dict:
    tsv = work / f"qagnn-style-{tag}.en.tsv"
    outp, errp = work / f"baseline-{tag}.out", work / f"baseline-{tag}.log"
    cmd = [sys.executable, str(HERE / "qagnn_style_baseline.py"), str(dump), "--tsv", str(tsv)]
    r = run_measured(cmd, stdout_path=outp, stderr_path=errp, work=work)
    if r["rc"] != 0:
        raise RuntimeError(f"baseline failed:\n{_tail(errp)}")
    info = json.loads(outp.read_text().strip().splitlines()[-1])
    tsv.unlink(missing_ok=True)
    return dict(info, wall_s=r["wall_s"], peak_rss_mb=r["maxrss_mb"])


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def report(results: dict) -> str:
    rows = []  # (scale, figure, value, target, verdict)
    scales = results["scales"]
    for key, r in scales.items():
        z, ing, ld = r["zcat_wc"], r["ingest"], r["load"]
        ratio = ing["wall_s"] / z["wall_s"]
        rows.append((key, "zcat | wc -l", f"{z['wall_s']:.2f} s", "(reference)", "-"))
        rows.append((key, "ingest wall time", f"{ing['wall_s']:.2f} s = {ratio:.2f} x zcat",
                     f"<= {TARGETS['ingest_vs_zcat']} x zcat", _verdict(ratio <= TARGETS["ingest_vs_zcat"])))
        rows.append((key, "ingest lines/s", f"{ing['lines_per_s']:,.0f}", "", "-"))
        is_tenth = abs(float(key) - 0.1) < 1e-9
        rows.append((key, "ingest peak RSS", f"{ing['peak_rss_mb']:.0f} MB",
                     f"<= {TARGETS['peak_rss_mb_at_0.1']:.0f} MB at 1/10" if is_tenth else "(250 MB at 1/10)",
                     _verdict(ing["peak_rss_mb"] <= TARGETS["peak_rss_mb_at_0.1"]) if is_tenth else "-"))
        rows.append((key, "store load, full checks (median of 5)", f"{ld['median_s'] * 1000:.1f} ms",
                     f"<= {TARGETS['load_s'] * 1000:.0f} ms", _verdict(ld["median_s"] <= TARGETS["load_s"])))
        for level, lk in (("quick checks", "load_quick"), ("sizes only", "load_none")):
            if lk in r:
                rows.append((key, f"store load, {level} (median of 5)", f"{r[lk]['median_s'] * 1000:.1f} ms", "", "-"))
        h = r["two_hop"]
        rows.append((key, "2-hop ours, node set", f"{h['ours_nodes_s'] * 1000:.2f} ms ({h['nodes']:,} nodes)", "", "-"))
        rows.append((key, "2-hop ours, with edges", f"{h['ours_edges_s'] * 1000:.2f} ms ({h['edges']:,} edges)", "", "-"))
        if "speedup_nodes" in h:
            t = TARGETS["two_hop_speedup"]
            rows.append((key, "2-hop nx, node set (ego_graph way)", f"{h['nx_nodes_ego_s'] * 1000:.1f} ms", "", "-"))
            rows.append((key, "2-hop nx, node set (view BFS)", f"{h['nx_nodes_view_s'] * 1000:.2f} ms", "", "-"))
            rows.append((key, "2-hop nx, with edges (ego_graph)", f"{h['nx_edges_ego_s'] * 1000:.1f} ms", "", "-"))
            rows.append((key, "2-hop nx, with edges (view+copy)", f"{h['nx_edges_view_s'] * 1000:.1f} ms", "", "-"))
            for label, k in (("node set, vs ego_graph way", "speedup_nodes"),
                             ("node set, vs view BFS", "speedup_nodes_view"),
                             ("with edges, vs ego_graph", "speedup_edges"),
                             ("with edges, vs view+copy", "speedup_edges_view")):
                rows.append((key, f"2-hop speed-up {label}", f"{h[k]:.1f} x", f">= {t:.0f} x", _verdict(h[k] >= t)))
            rows.append((key, "2-hop node sets ours = nx", h["check"], "identical", _verdict(h["check"] == "OK")))
        b = r.get("baseline")
        if b:
            rows.append((key, "QA-GNN-style baseline", f"{b['wall_s']:.2f} s, {b['peak_rss_mb']:.0f} MB peak",
                         "(reference)", "-"))
            rows.append((key, "  ingest speed-up vs baseline", f"{b['wall_s'] / ing['wall_s']:.1f} x", "", "-"))
    sc = results.get("scaling")
    if sc:
        rows.append((sc["scales"], "scaling ratio (time/line)", f"{sc['ratio']:.2f}",
                     f"~1 (<= {TARGETS['scaling_ratio']})", _verdict(sc["ratio"] <= TARGETS["scaling_ratio"])))
        rows.append((sc["scales"], "  fixed cost (1,000-line ingest)", f"{sc['fixed_cost_s']:.2f} s", "", "-"))
        rows.append((sc["scales"], "  ratio without the fixed cost", f"{sc['ratio_minus_fixed_cost']:.2f}",
                     f"~1 (<= {TARGETS['scaling_ratio']})",
                     _verdict(sc["ratio_minus_fixed_cost"] <= TARGETS["scaling_ratio"])))
    w = [max(len(str(row[i])) for row in rows + [("scale", "figure", "value", "target", "verdict")])
         for i in range(5)]
    lines = []
    head = ("scale", "figure", "value", "target", "verdict")
    lines.append("  ".join(str(x).ljust(w[i]) for i, x in enumerate(head)))
    lines.append("  ".join("-" * w[i] for i in range(5)))
    for row in rows:
        lines.append("  ".join(str(x).ljust(w[i]) for i, x in enumerate(row)))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="0.01,0.1", help="comma-separated fractions of the real dump (default 0.01,0.1)")
    ap.add_argument("--work", default=None,
                    help="cache folder for dumps and stores (default: the user cache folder's benchmarks/)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    ap.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    ap.add_argument("--skip-networkx", action="store_true", help="skip the networkx 2-hop comparison")
    ap.add_argument("--baseline", action="store_true",
                    help="also run the QA-GNN-style preprocessing baseline (qagnn_style_baseline.py)")
    a = ap.parse_args(argv)
    try:
        scales = sorted({float(s) for s in a.scales.split(",") if s.strip()})
    except ValueError:
        ap.error(f"--scales: expected numbers like 0.01,0.1, found {a.scales!r}")
    if not scales or any(not 0 < s <= 1 for s in scales):
        ap.error("--scales: each scale must be in (0, 1]")
    if a.json and (Path(a.json).is_dir() or not Path(a.json).resolve().parent.is_dir()):
        ap.error(f"--json {a.json}: not a file path in an existing folder")
    if a.work is None:  # generated dumps and stores go to the user cache folder, never the checkout
        from ravlm_graph.utils.cache import cache_root

        a.work = str(cache_root() / "benchmarks")
    if Path(a.work).exists() and not Path(a.work).is_dir():
        ap.error(f"--work {a.work}: not a folder")
    if shutil.which("zcat") is None:
        ap.error("zcat not found on PATH")
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    import numpy

    results: dict = {
        "env": {"python": platform.python_version(), "platform": platform.platform(),
                "cpus": os.cpu_count(), "numpy": numpy.__version__},
        "targets": TARGETS, "scales": {},
    }
    try:
        import networkx

        results["env"]["networkx"] = networkx.__version__
    except ImportError:
        if not a.skip_networkx:
            ap.error("networkx is not installed; pip install networkx or pass --skip-networkx")

    for scale in scales:
        key = f"{scale:g}"
        dump, lines, meta = ensure_dump(work, scale, a.seed)
        r: dict = {"dump": str(dump), "lines": lines, "dump_bytes": meta.get("file_bytes"),
                   "dump_uncompressed_bytes": meta.get("uncompressed_bytes")}
        log(f"[{key}] zcat | wc -l ...")
        r["zcat_wc"] = measure_zcat(dump, lines, work)
        store = work / f"store-{key}"
        log(f"[{key}] ingest -> {store} ...")
        r["ingest"] = measure_ingest(dump, lines, store, work, key)
        log(f"[{key}]   {r['ingest']['wall_s']:.2f} s, peak RSS {r['ingest']['peak_rss_mb']:.0f} MB")
        log(f"[{key}] store load x5 (each verify level) ...")
        r["load"] = measure_load(store, work)
        r["load_quick"] = measure_load(store, work, level="quick")
        r["load_none"] = measure_load(store, work, level="none")
        log(f"[{key}] 2-hop ...")
        r["two_hop"] = measure_two_hop(store, a.skip_networkx)
        if a.baseline:
            log(f"[{key}] QA-GNN-style baseline ...")
            r["baseline"] = measure_baseline(dump, work, key)
        results["scales"][key] = r

    if len(scales) >= 2:
        # Fixed cost of one ingest (interpreter start, imports, store write): a
        # 1,000-line dump, median of 3. Reported to read the scaling ratio.
        tiny = work / f"conceptnet-synth-1000-seed{a.seed}.csv.gz"
        synth_conceptnet.generate(str(tiny), 1000, seed=a.seed)  # 0.1 s; never stale
        log("[fixed cost] ingest of a 1,000-line dump x3 ...")
        fixed = statistics.median(
            measure_ingest(tiny, 1000, work / "store-1000", work, "1000")["wall_s"] for _ in range(3))
        lo, hi = results["scales"][f"{scales[0]:g}"], results["scales"][f"{scales[-1]:g}"]
        per_lo = lo["ingest"]["wall_s"] / lo["lines"]
        per_hi = hi["ingest"]["wall_s"] / hi["lines"]
        net_lo = max(lo["ingest"]["wall_s"] - fixed, 1e-9) / lo["lines"]
        net_hi = max(hi["ingest"]["wall_s"] - fixed, 1e-9) / hi["lines"]
        results["scaling"] = {"scales": f"{scales[-1]:g}/{scales[0]:g}", "ratio": per_hi / per_lo,
                              "s_per_mline_lo": per_lo * 1e6, "s_per_mline_hi": per_hi * 1e6,
                              "fixed_cost_s": fixed, "ratio_minus_fixed_cost": net_hi / net_lo}

    print()
    print(report(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1, default=str))
        log(f"results written to {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
