"""Benchmark: subgraph retrieval — answer coverage and latency.

Coverage (``--coverage``): the share of questions whose answer concept is a node of
the retrieved subgraph (:func:`ravlm_graph.evaluation.subgraph_coverage`), per
method, at node budgets 50 / 100 / 200:

* FVQA (``vqa/fvqa``): KG = CN-100K + FVQA's ConceptNet facts; seeds = the image
  entities of the given-entities mode (the fact's visual concept + 4 random
  distractor concepts, origin ``image``) + the concepts grounded in the question.
* CommonsenseQA (``vqa/csqa/valid.jsonl``): seeds = the concepts grounded in the
  question; answer = the correct choice's concept. The share of answers that are in
  the KG at all (the ceiling) is printed alongside.

Latency (``--latency``): on the 1/10-scale synthetic ConceptNet store (built with
``synth_conceptnet.py`` + ``kg_ingest`` when missing), median time per query with
3 seed concepts, excluding the question's embedding (computed beforehand):
k-hop + relevance pruning to 200 nodes (``method="relevance"``), the other methods,
and, on the same seeds, networkx ``ego_graph`` (radius 2 around each seed, one
call on a virtual node joined to the seeds, radius 3) for the raw 2-hop subgraph.

Node embeddings are computed once per store and cached in ``--emb-cache``.

Usage::

    python benchmarks/bench_retrieval.py                      # coverage + latency
    python benchmarks/bench_retrieval.py --coverage --limit 500
    python benchmarks/bench_retrieval.py --latency --synth-kg STORE  (default: built in the user cache folder)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _args import (check_files, fraction, nonneg_float, nonneg_int, output_file,  # noqa: E402
                   positive_int, store_dir)
from ravlm_graph.utils.cache import cache_root  # noqa: E402

# Generated dumps and stores live in the user cache folder ($RAVLM_CACHE or the platform's),
# never in the checkout.
WORK = cache_root() / "benchmarks"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _embeddings(kg, cache_dir: Path, encoder):
    from ravlm_graph.retrieval.embeddings import NodeEmbeddings

    ne = NodeEmbeddings(kg, encoder, cache_dir=cache_dir)
    if not ne.complete:
        log(f"  embedding {int((~ne.done).sum()):,} node names (once per store; cached in {cache_dir}) ...")
        t = time.perf_counter()
        ne.compute_all(progress=True)
        log(f"  ... {time.perf_counter() - t:.0f} s")
    return ne


# --------------------------------------------------------------------------- coverage

def coverage(args, encoder) -> dict:
    from tqdm.auto import tqdm

    from kg_ingest import KnowledgeGraph, load_default
    from ravlm_graph.retrieval.config import RetrievalConfig
    from ravlm_graph.datasets import load_csqa, load_fvqa
    from ravlm_graph.evaluation import subgraph_coverage
    from ravlm_graph.retrieval.retriever import SubgraphRetriever

    data = Path(args.data) / "vqa"
    kg = KnowledgeGraph.load(args.kg) if args.kg else load_default(with_fvqa=True, out=WORK / "store-cn100k-fvqa")
    log(f"coverage KG: {kg!r}")
    ne = _embeddings(kg, Path(args.emb_cache), encoder)
    retr = SubgraphRetriever(kg, RetrievalConfig(cache_size=0, relation_weight=args.relation_weight),
                             embeddings=ne, encoder=encoder)

    fv = data / "fvqa"
    fvqa = load_fvqa(fv / "train_split0_questions.json", fv / "train_split0_fact_triples.json",
                     kb_facts=fv / "conceptnet_facts.tsv")
    fvqa = [r for r in fvqa if r.answer_concepts]
    csqa = [r for r in load_csqa(data / "csqa" / "valid.jsonl") if r.answer_concepts]
    if args.limit:
        fvqa, csqa = fvqa[:args.limit], csqa[:args.limit]
    results: dict = {}
    for name, records in (("fvqa", fvqa), ("csqa", csqa)):
        log(f"{name}: {len(records)} questions; embedding the questions ...")
        qvecs = encoder.encode([r.question for r in records])
        in_kg = sum(any(a in kg for a in r.answer_concepts) for r in records) / len(records)
        row = {"questions": len(records), "answer_in_kg": in_kg}
        for method in args.methods:
            for budget in args.budgets:
                hits, times, sizes = [], [], []
                for r, qv in tqdm(list(zip(records, qvecs)), desc=f"{name} {method} {budget}", leave=False):
                    ents = [_to_entity(e) for e in r.entities if e.origin == "image"]
                    t = time.perf_counter()
                    sg = retr.retrieve(ents, r.question, budget=budget, method=method,
                                       question_embedding=qv, ground_question=True)
                    times.append(time.perf_counter() - t)
                    sizes.append(sg.num_nodes)
                    hits.append(subgraph_coverage(r.answer_concepts, sg.node_names))
                row[f"{method}@{budget}"] = {
                    "coverage": statistics.mean(hits), "median_ms": 1e3 * statistics.median(times),
                    "mean_nodes": statistics.mean(sizes)}
        results[name] = row
    return results


def _to_entity(e):
    from ravlm_graph.grounding import Entity

    return Entity(e.name, 1.0, e.origin)


# --------------------------------------------------------------------------- latency

def ensure_synth_store(path: Path, scale: float) -> Path:
    if (path / "meta.json").exists():
        return path
    dump = WORK / f"conceptnet-synth-{scale}-seed0.csv.gz"
    if not dump.exists():
        log(f"generating {dump} ...")
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synth_conceptnet.py"), "--scale", str(scale),
                        "--out", str(dump)], check=True)
    log(f"ingesting {dump} -> {path} ...")
    subprocess.run([sys.executable, "-m", "kg_ingest", "conceptnet", str(dump), "--out", str(path)], check=True,
                   cwd=ROOT)
    return path


def latency(args, encoder) -> dict:
    import numpy as np

    from kg_ingest import KnowledgeGraph
    from ravlm_graph.retrieval.config import RetrievalConfig
    from ravlm_graph.retrieval.retriever import SubgraphRetriever

    store = ensure_synth_store(Path(args.synth_kg), args.scale)
    kg = KnowledgeGraph.load(store)
    log(f"latency KG: {kg!r}")
    ne = _embeddings(kg, Path(args.emb_cache), encoder)
    t = time.perf_counter()
    retr = SubgraphRetriever(kg, RetrievalConfig(cache_size=0, relation_weight=args.relation_weight),
                             embeddings=ne, encoder=encoder)
    retr._node_vectors(np.zeros(1, dtype=np.int64))  # float32 copy of the node embeddings, once
    setup_s = time.perf_counter() - t

    rng = np.random.default_rng(0)
    deg = np.asarray(kg.degree())
    pool = np.flatnonzero(deg >= 2)
    seed_sets = [rng.choice(pool, 3, replace=False).tolist() for _ in range(args.queries)]
    # The kg_ingest benchmark's seeds (degree ranks 10, 100, 1000) come first.
    order = np.lexsort((np.arange(len(deg)), -deg))
    seed_sets.insert(0, [int(order[r]) for r in (10, 100, 1000)])
    names = [[kg.concept_name(i) for i in s] for s in seed_sets]
    questions = [f"How are {a.replace('_', ' ')}, {b.replace('_', ' ')} and {c.replace('_', ' ')} related?"
                 for a, b, c in names]
    qvecs = encoder.encode(questions)
    res: dict = {"kg": repr(kg), "queries": len(seed_sets), "retriever_setup_s": setup_s, "methods": {}}
    for method in args.latency_methods:
        times, cands, sizes = [], [], []
        for s, q, qv in zip(names, questions, qvecs):
            retr.retrieve(s, q, budget=200, method=method, question_embedding=qv)  # warm-up
        for s, q, qv in zip(names, questions, qvecs):
            t0 = time.perf_counter()
            sg = retr.retrieve(s, q, budget=200, method=method, question_embedding=qv, use_cache=False)
            times.append(time.perf_counter() - t0)
            cands.append(sg.info["candidates"])
            sizes.append(sg.num_nodes)
        ts = sorted(times)
        res["methods"][method] = {"median_ms": 1e3 * statistics.median(ts), "p90_ms": 1e3 * ts[int(0.9 * (len(ts) - 1))],
                                  "median_candidates": statistics.median(cands), "mean_nodes": statistics.mean(sizes)}
    # kg.k_hop raw 2-hop (no caps) on the same seeds.
    t_k = []
    for s in names[:args.nx_queries]:
        t0 = time.perf_counter()
        kg.subgraph(kg.k_hop(s, 2))
        t_k.append(time.perf_counter() - t0)
    res["kg_k_hop_raw_2hop_ms"] = 1e3 * statistics.median(t_k)
    if args.nx_queries:
        import networkx as nx

        log("building the networkx graph (kg.to_networkx()) ...")
        t0 = time.perf_counter()
        g = kg.to_networkx()
        res["nx_build_s"] = time.perf_counter() - t0
        t_nx, n_nx = [], []
        for s in names[:args.nx_queries]:
            for x in s:
                g.add_edge("__ego__", x)
            t0 = time.perf_counter()
            h = nx.ego_graph(g, "__ego__", radius=3, undirected=True)  # = union of radius-2 balls of the seeds
            t_nx.append(time.perf_counter() - t0)
            n_nx.append(h.number_of_nodes() - 1)
            g.remove_node("__ego__")
        res["nx_ego_graph_ms"] = 1e3 * statistics.median(t_nx)
        res["nx_ego_graph_nodes_median"] = statistics.median(n_nx)
        res["nx_queries"] = len(t_nx)
    return res


# --------------------------------------------------------------------------- report

def report(cov: dict | None, lat: dict | None, args) -> str:
    lines = []
    if cov:
        lines.append("Answer coverage (share of questions whose answer concept is a subgraph node)")
        for name, row in cov.items():
            lines.append(f"  {name}: {row['questions']} questions; answer concept in the KG: {row['answer_in_kg']:.1%}")
            lines.append("    " + "method".ljust(10) + "".join(f"@{b}".rjust(10) for b in args.budgets)
                         + "   median ms @" + str(args.budgets[-1]))
            for m in args.methods:
                cells = "".join(f"{row[f'{m}@{b}']['coverage']:10.1%}" for b in args.budgets)
                lines.append("    " + m.ljust(10) + cells + f"   {row[f'{m}@{args.budgets[-1]}']['median_ms']:.2f}")
    if lat:
        lines.append(f"\nLatency on {lat['kg']} ({lat['queries']} queries, 3 seeds each, budget 200, "
                     "question embedding excluded)")
        for m, r in lat["methods"].items():
            lines.append(f"  ours {m:<10} median {r['median_ms']:7.2f} ms  p90 {r['p90_ms']:7.2f} ms  "
                         f"(candidates {r['median_candidates']:.0f}, nodes {r['mean_nodes']:.0f})")
        lines.append(f"  kg.subgraph(kg.k_hop(seeds, 2)) raw 2-hop, no caps: median {lat['kg_k_hop_raw_2hop_ms']:.2f} ms")
        if "nx_ego_graph_ms" in lat:
            lines.append(f"  networkx ego_graph (radius 2 per seed, raw): median {lat['nx_ego_graph_ms']:.1f} ms "
                         f"over {lat['nx_queries']} queries ({lat['nx_ego_graph_nodes_median']:.0f} nodes); "
                         f"graph build {lat['nx_build_s']:.1f} s once")
            r = lat["methods"].get("relevance")
            if r:
                lines.append(f"  speed-up of k-hop + relevance pruning over ego_graph: "
                             f"{lat['nx_ego_graph_ms'] / r['median_ms']:.0f}x  (target: <= 5 ms median: "
                             f"{'MET' if r['median_ms'] <= 5 else 'NOT MET'})")
    return "\n".join(lines)


def main(argv=None) -> int:
    from ravlm_graph.retrieval.methods import METHODS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="data root (default ../shared/data)")
    ap.add_argument("--kg", type=store_dir, default=None, help="coverage KG store (default: bundled CN-100K + FVQA facts)")
    ap.add_argument("--synth-kg", default=str(WORK / "store-0.1"), help="latency store (built when missing)")
    ap.add_argument("--scale", type=fraction, default=0.1, help="synthetic dump scale when building it (default 0.1)")
    ap.add_argument("--emb-cache", default=str(WORK / "emb-cache"), help="node embedding cache folder")
    ap.add_argument("--coverage", action="store_true", help="run only the coverage part (default: both)")
    ap.add_argument("--latency", action="store_true", help="run only the latency part (default: both)")
    ap.add_argument("--methods", nargs="+", choices=METHODS.names(), default=["khop", "ppr", "relevance", "hybrid", "pcst"])
    ap.add_argument("--latency-methods", nargs="+", choices=METHODS.names(), default=["khop", "relevance", "ppr", "hybrid", "pcst"])
    ap.add_argument("--budgets", nargs="+", type=positive_int, default=[50, 100, 200])
    ap.add_argument("--limit", type=nonneg_int, default=0, help="first N questions per dataset (0: all)")
    ap.add_argument("--relation-weight", type=nonneg_float, default=0.0,
                    help="RetrievalConfig.relation_weight: rank the asked relation's edges first (default 0: off)")
    ap.add_argument("--queries", type=positive_int, default=200, help="latency queries (default 200)")
    ap.add_argument("--nx-queries", type=nonneg_int, default=5, help="queries timed with networkx (0: skip)")
    ap.add_argument("--json", type=output_file, default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    both = not args.coverage and not args.latency
    if both or args.coverage:  # the coverage part's inputs, checked before any embedding
        if not Path(args.data).is_dir():
            ap.error(f"--data {args.data}: no such folder")
        vqa = Path(args.data) / "vqa"
        check_files(ap, vqa / "fvqa" / "train_split0_questions.json", vqa / "fvqa" / "train_split0_fact_triples.json",
                    vqa / "fvqa" / "conceptnet_facts.tsv", vqa / "csqa" / "valid.jsonl",
                    what="--data is the data root holding vqa/fvqa/ and vqa/csqa/")
    for name in ("emb_cache", "synth_kg"):
        path = Path(getattr(args, name))
        if path.exists() and not path.is_dir():
            ap.error(f"--{name.replace('_', '-')} {path}: not a folder")

    from ravlm_graph.retrieval.embeddings import TextEncoder

    encoder = TextEncoder.from_package()
    cov = coverage(args, encoder) if (both or args.coverage) else None
    lat = latency(args, encoder) if (both or args.latency) else None
    print(report(cov, lat, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"coverage": cov, "latency": lat}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
