"""Benchmark: text grounding recall of CommonsenseQA's ``question_concept``.

For every CommonsenseQA question, the question text is grounded against the KG
vocabulary (default: bundled CN-100K + FVQA facts) and the returned concepts are
compared with the record's ``question_concept``:

* exact      — the question concept itself is returned;
* lemma      — a returned concept equals the question concept up to word lemmas
               (``reading_newspaper`` ~ ``read_newspaper``, ``magazines`` ~ ``magazine``);
* in-KG      — the same as *lemma*, over the questions whose concept is in the KG in
               some lemma form (the ones a vocabulary linker can find at all).

Usage::

    python benchmarks/bench_grounding.py [--data ../shared/data] [--kg DIR] [--split valid|train|all]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _args import check_files, existing_dir, nonneg_int, store_dir  # noqa: E402  (benchmarks/ is on the path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=existing_dir, default=str(ROOT.parent / "shared" / "data"),
                    help="data root (default ../shared/data)")
    ap.add_argument("--kg", type=store_dir, default=None, help="KG store folder (default: bundled CN-100K + FVQA facts)")
    ap.add_argument("--split", default="all", choices=["train", "valid", "all"])
    ap.add_argument("--limit", type=nonneg_int, default=0, help="use only the first N questions (0: all)")
    ap.add_argument("--drop-general", action="store_true", help="drop over-general concepts instead of down-weighting")
    ap.add_argument("--show-misses", type=nonneg_int, default=10)
    args = ap.parse_args(argv)
    csqa = Path(args.data) / "vqa" / "csqa"
    files = {"train": [csqa / "train.jsonl"], "valid": [csqa / "valid.jsonl"],
             "all": [csqa / "train.jsonl", csqa / "valid.jsonl"]}[args.split]
    check_files(ap, *files, what="CommonsenseQA; --data is the data root holding vqa/csqa/")

    from tqdm.auto import tqdm

    from kg_ingest import KnowledgeGraph, load_default
    from ravlm_graph.grounding.config import GroundingConfig
    from ravlm_graph.datasets import load_csqa
    from ravlm_graph.grounding import TextGrounder, concept_variants

    try:
        records = [r for f in files for r in load_csqa(f) if r.question_concept]
    except ValueError as e:
        ap.error(" ".join(str(e).split()))
    if args.limit:
        records = records[:args.limit]
    if not records:
        ap.error(f"no CommonsenseQA question with a question concept in {', '.join(map(str, files))}")
    kg = KnowledgeGraph.load(args.kg) if args.kg else load_default(with_fvqa=True)
    grounder = TextGrounder(kg, GroundingConfig(drop_general=args.drop_general))
    grounder.ground("warm up the lemmatiser")

    exact = lemma = in_kg = in_kg_hit = 0
    n_concepts, times, misses = [], [], []
    for r in tqdm(records, desc="grounding", unit="q"):
        t0 = time.perf_counter()
        res = grounder.ground(r.question)
        times.append(time.perf_counter() - t0)
        got = res.concepts
        n_concepts.append(len(got))
        qv = concept_variants(r.question_concept)
        hit_exact = r.question_concept in got
        hit_lemma = hit_exact or any(qv & concept_variants(c) for c in got)
        exact += hit_exact
        lemma += hit_lemma
        if any(v in grounder.vocab for v in qv):
            in_kg += 1
            in_kg_hit += hit_lemma
            if not hit_lemma:
                misses.append((r.question_concept, r.question, got))
    n = len(records)
    times_ms = sorted(t * 1e3 for t in times)
    print(f"\nText grounding on CommonsenseQA ({args.split}: {n} questions), KG {kg!r}")
    print(f"  recall exact       : {exact / n:7.2%}")
    print(f"  recall lemma       : {lemma / n:7.2%}")
    print(f"  recall in-KG (lemma): {in_kg_hit / max(in_kg, 1):7.2%}  ({in_kg} questions whose concept is in the KG)")
    print(f"  concepts/question  : mean {statistics.mean(n_concepts):.1f}, median {statistics.median(n_concepts)}")
    print(f"  latency per question: median {statistics.median(times_ms):.3f} ms, p95 {times_ms[int(0.95 * (n - 1))]:.3f} ms")
    for qc, q, got in misses[:args.show_misses]:
        print(f"  miss: {qc!r} in {q!r} -> {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
