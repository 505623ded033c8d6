"""Node embeddings at full ConceptNet scale: time to embed, memory, per-query latency.

    .venv/bin/python benchmarks/bench_embeddings_scale.py [--store DIR] [--scale 0.1] [--queries 50]

On the 1/10-scale synthetic ConceptNet store (``synth_conceptnet.py`` + ``kg_ingest``,
built into ``benchmarks/`` of the user cache folder when missing), and extrapolated to the full dump (x10
concepts):

1. **time to embed**: all-MiniLM-L6-v2 throughput on a random sample of the store's own
   concept names (``--sample``, default 2048), times the number of concepts;
2. **memory / disk**: the cache file (float16, ``(N, 384)``) memory-mapped by
   :class:`~ravlm_graph.retrieval.embeddings.NodeEmbeddings`: its size on disk, the
   process's resident memory before and after opening it and after the queries (only
   the pages read count), against a float32 copy in RAM; int8 with one scale per row is
   shown as the next step down (half of float16);
3. **per-query latency** of retrieval with relevance pruning (``method="relevance"``,
   200-node budget, 3 seed concepts, the question's vector given) reading the mapped
   float16 matrix; target <= 5 ms.

For (2) and (3) the cache file is filled with random unit vectors (the values do not
change the work done: the same rows are gathered and multiplied), so the benchmark does
not need the hours a CPU takes to embed a million names; (1) measures that cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _args import fraction, output_file, positive_int, store_dir  # noqa: E402  (benchmarks/ is on the path)
from ravlm_graph.utils.cache import cache_root  # noqa: E402

# Generated dumps and stores live in the user cache folder ($RAVLM_CACHE or the platform's),
# never in the checkout.
WORK = cache_root() / "benchmarks"

FULL_FACTOR = 10  # the synthetic 1/10 store -> the full dump


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return 0.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=store_dir, default=None, help="a store folder (default: the synthetic store at --scale)")
    p.add_argument("--scale", type=fraction, default=0.1, help="synthetic store's share of the full dump, in (0, 1]")
    p.add_argument("--sample", type=positive_int, default=2048, help="names embedded to measure throughput")
    p.add_argument("--queries", type=positive_int, default=50)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--json", type=output_file, default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from bench_retrieval import ensure_synth_store
    from kg_ingest import KnowledgeGraph
    from ravlm_graph.retrieval.config import RetrievalConfig
    from ravlm_graph.retrieval.embeddings import NodeEmbeddings, TextEncoder, node_text
    from ravlm_graph.retrieval.retriever import SubgraphRetriever
    from ravlm_graph.utils.cache import atomic_save_npy

    WORK.mkdir(parents=True, exist_ok=True)
    store = Path(args.store) if args.store else ensure_synth_store(WORK / f"store-{args.scale}", args.scale)
    kg = KnowledgeGraph.load(store)
    n = kg.num_nodes
    log(f"store: {kg!r}")
    res: dict = {"store": str(store), "num_nodes": n, "num_edges": kg.num_edges, "threads": args.threads}

    # 1. time to embed -------------------------------------------------------------------
    enc = TextEncoder.from_package()
    rng = np.random.default_rng(0)
    sample = rng.choice(n, min(args.sample, n), replace=False)
    texts = [node_text(kg.concept_name(int(i))) for i in sample]
    enc.encode(texts[:64])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    enc.encode(texts)
    rate = len(texts) / (time.perf_counter() - t0)
    cpu_rate = len(texts) / (time.process_time() - c0)  # names per CPU-second (all threads)
    res["embed_names_per_cpu_s"] = cpu_rate
    res["embed_names_per_s"] = rate
    res["embed_store_s"] = n / rate
    res["embed_full_s"] = FULL_FACTOR * n / rate

    # 2. memory / disk: a float16 cache file, memory-mapped --------------------------------
    with tempfile.TemporaryDirectory(prefix="ravlm-emb-scale-") as tmp:
        probe = NodeEmbeddings(kg, enc, cache_dir=tmp, autosave=False)
        full = probe._files().full
        log(f"writing {n:,} random unit vectors (float16) to {full} ...")
        vec = np.empty((n, enc.dim), dtype=np.float16)
        for s in range(0, n, 65536):
            block = rng.standard_normal((min(65536, n - s), enc.dim)).astype(np.float32)
            vec[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        atomic_save_npy(full, vec)
        del vec, probe
        disk = full.stat().st_size
        before = rss_mb()
        t0 = time.perf_counter()
        ne = NodeEmbeddings(kg, enc, cache_dir=tmp, autosave=False)
        open_ms = 1e3 * (time.perf_counter() - t0)
        after_open = rss_mb()
        assert ne.complete and isinstance(ne.vectors, np.memmap)

        # 3. per-query latency with relevance pruning -------------------------------------
        retr = SubgraphRetriever(kg, RetrievalConfig(cache_size=0), embeddings=ne, encoder=enc)
        deg = np.asarray(kg.degree())
        pool = np.flatnonzero(deg >= 2)
        seeds = [[kg.concept_name(int(i)) for i in rng.choice(pool, 3, replace=False)] for _ in range(args.queries)]
        questions = [f"How are {a.replace('_', ' ')}, {b.replace('_', ' ')} and {c.replace('_', ' ')} related?"
                     for a, b, c in seeds]
        qvecs = enc.encode(questions)
        for s, q, qv in zip(seeds, questions, qvecs):  # warm-up: the pages these queries read
            retr.retrieve(s, q, budget=200, method="relevance", question_embedding=qv, use_cache=False)
        times, cpus, cands = [], [], []
        for s, q, qv in zip(seeds, questions, qvecs):
            t0, c0 = time.perf_counter(), time.process_time()
            sg = retr.retrieve(s, q, budget=200, method="relevance", question_embedding=qv, use_cache=False)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            cands.append(sg.info.get("candidates", 0))
        after_q = rss_mb()
        ts = sorted(times)
        res.update({
            "disk_fp16_mb": disk / 2 ** 20, "disk_fp16_full_mb": FULL_FACTOR * disk / 2 ** 20,
            "disk_int8_full_mb": FULL_FACTOR * n * (enc.dim + 4) / 2 ** 20,
            "ram_fp32_copy_full_mb": FULL_FACTOR * n * enc.dim * 4 / 2 ** 20,
            "open_ms": open_ms, "rss_open_delta_mb": after_open - before, "rss_after_queries_delta_mb": after_q - before,
            "query_median_ms": 1e3 * statistics.median(ts), "query_p90_ms": 1e3 * ts[int(0.9 * (len(ts) - 1))],
            "query_median_cpu_ms": 1e3 * statistics.median(cpus),
            "median_candidates": statistics.median(cands),
        })

    print(f"store: {n:,} concepts, {kg.num_edges:,} edges ({store}); full dump ~ x{FULL_FACTOR}: "
          f"{FULL_FACTOR * n:,} concepts")
    print(f"embed (all-MiniLM-L6-v2, {args.threads} threads): {rate:,.0f} names/s wall, {cpu_rate:,.0f} names per "
          f"CPU-second -> this store {res['embed_store_s'] / 60:.1f} min, full dump {res['embed_full_s'] / 3600:.1f} h "
          f"wall at this rate ({FULL_FACTOR * n / cpu_rate / 3600:.1f} CPU-hours; once, then cached)")
    print(f"disk, float16: {res['disk_fp16_mb']:.0f} MB here, {res['disk_fp16_full_mb']:,.0f} MB full "
          f"(int8 + a scale per row: {res['disk_int8_full_mb']:,.0f} MB; a float32 copy in RAM would be "
          f"{res['ram_fp32_copy_full_mb']:,.0f} MB)")
    print(f"memory-mapped open: {open_ms:.1f} ms; resident memory +{res['rss_open_delta_mb']:.0f} MB after opening, "
          f"+{res['rss_after_queries_delta_mb']:.0f} MB after {args.queries} queries (only the pages read)")
    ok = "met" if res["query_median_ms"] <= 5 else "missed"
    print(f"relevance pruning to 200 nodes, 3 seeds: median {res['query_median_ms']:.2f} ms wall "
          f"({res['query_median_cpu_ms']:.2f} ms CPU), p90 {res['query_p90_ms']:.2f} ms per query (median "
          f"{res['median_candidates']:.0f} candidates); target <= 5 ms: {ok}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
