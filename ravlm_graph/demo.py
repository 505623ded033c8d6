"""``make demo``: the engine end to end on its bundled defaults.

Run as ``python -m ravlm_graph.demo [--work DIR]``. Every section uses only what
ships with the package: the official-format ConceptNet sample, CN-100K, the FVQA
ConceptNet facts, the built-in benchmark and the two shipped engines (with and
without the knowledge graph), trained by ``ravlm train configs/builtin.json`` and
``ravlm train configs/builtin_nokg.json``.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from kg_ingest import ConceptNetOptions, bundled_path, ingest_conceptnet, load_default
from kg_ingest.cli import print_summary
from kg_ingest import KnowledgeGraph
from ravlm_graph.utils.cache import cache_dir, cache_enabled
from importlib import resources
from ravlm_graph.datasets import load_builtin
from ravlm_graph.engine import KnowledgeVQA
from ravlm_graph.evaluation.bench import run_split
from ravlm_graph.explore import draw_entities
from ravlm_graph.grounding.language import InputWarning


class _Progress:
    """Headings and step lines, each with the time since the demo started (no step is silent)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def h(self, title: str) -> None:
        print(f"\n{'=' * 78}\n[{time.perf_counter() - self.t0:6.1f} s] {title}\n{'=' * 78}", flush=True)

    def step(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.1f} s] {msg}", flush=True)


def section_ingest(work: Path, p: _Progress):

    p.h("1. Ingest: real lines of the official ConceptNet 5.7 dump (.csv.gz), then CN-100K + FVQA facts")
    sample = bundled_path("cn100k").parent / "conceptnet_sample.csv"
    gz = work / "conceptnet_sample.csv.gz"
    gz.write_bytes(gzip.compress(sample.read_bytes()))
    kg_s, st = ingest_conceptnet(gz, work / "sample_store", options=ConceptNetOptions(keep_surface=True))
    print_summary(kg_s, st, work / "sample_store")
    print("\nneighbours of 'test' in the sample store (both directions):")
    for r in kg_s.neighbors("test", direction="both")[:6]:
        print(f"  {r.relation:<12} {r.concept:<28} weight {r.weight:g}")

    p.step("building the bundled CN-100K + FVQA store (about 2-4 s) ...")
    t = time.perf_counter()
    kg = load_default(with_fvqa=True, out=work / "cn100k_fvqa")
    print(f"\nbundled default KG (CN-100K + FVQA ConceptNet facts): {kg.num_nodes:,} concepts, "
          f"{kg.num_edges:,} edges, {kg.num_relations} relations; ready in {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()

    kg = KnowledgeGraph.load(work / "cn100k_fvqa")
    print(f"memory-mapped reload: {1000 * (time.perf_counter() - t):.1f} ms")
    return kg


def section_queries(kg, p: _Progress) -> None:
    p.h("2. Queries on the store")
    for concept, rel in (("umbrella", "UsedFor"), ("apple", "AtLocation"), ("bird", "CapableOf")):
        rows = kg.neighbors(concept, relation=rel)
        print(f"{concept} -{rel}-> " + ", ".join(r.concept.replace("_", " ") for r in rows[:8]))
    print("edges between 'dog' and 'bark':", [f"{e.head} {e.relation} {e.tail}" for e in kg.edges_between("dog", "bark")])
    print("lookup('Ice Cream') ->", kg.concept_name(kg.lookup("Ice Cream")))
    ds = kg.degree_stats(top=5)
    print(f"degree: mean {ds['mean']:.2f}, median {ds['median']:.0f}, max {ds['max']:,}; "
          f"hubs: {', '.join(f'{n} ({d})' for n, d in ds['top'])}")


def section_subgraph(kg, work: Path, p: _Progress) -> None:
    p.h("3. A subgraph around seed concepts, and its exports")
    seeds = ["umbrella", "rain"]
    t = time.perf_counter()
    one = kg.k_hop(seeds, 1)
    two = kg.k_hop(seeds, 2)
    ms = 1000 * (time.perf_counter() - t)
    print(f"seeds {seeds}: 1-hop {len(one):,} nodes, 2-hop {len(two):,} nodes ({ms:.1f} ms for both)")
    sg = kg.subgraph(one)
    print(f"induced 1-hop subgraph: {sg.num_nodes} nodes, {sg.num_edges} edges; some facts:")
    for e in sg.edges()[:8]:
        print(f"  {e.head.replace('_', ' ')} --{e.relation}--> {e.tail.replace('_', ' ')}")
    g = sg.to_networkx()
    print(f"to_networkx: MultiDiGraph with {g.number_of_nodes()} nodes, {g.number_of_edges()} edges")
    try:
        data = sg.to_pyg()
        print(f"to_pyg: Data(edge_index={tuple(data.edge_index.shape)}, edge_type={tuple(data.edge_type.shape)}, "
              f"num_nodes={data.num_nodes})")
    except ImportError as e:
        print(f"to_pyg skipped: {e}")
    ttl = work / "umbrella_rain.ttl"
    sg.to_rdflib().serialize(ttl, format="turtle")
    print(f"to_rdflib: {ttl} ({ttl.stat().st_size:,} bytes of Turtle)")


ENGINES = {"KG": "engine_builtin", "no KG": "engine_builtin_nokg"}


def _engine_dir(name: str) -> Path:

    return Path(str(resources.files("ravlm_graph") / "data" / name))


def section_answers(work: Path, n_eval: int, p: _Progress) -> None:

    p.h("4. Knowledge VQA: answers with their evidence, with the KG and without it")
    missing = [n for n in ENGINES.values() if not (_engine_dir(n) / "engine.json").exists()]
    if missing:
        print(f"shipped engines missing ({', '.join(missing)}): train them with `ravlm train configs/builtin.json`")
        return
    p.step("loading the two shipped engines (the KG one opens the bundled store from the user cache, "
          "building it there the first time) ...")
    t = time.perf_counter()
    engines = {"KG": KnowledgeVQA.from_pretrained(_engine_dir(ENGINES["KG"])),
               "no KG": KnowledgeVQA.from_pretrained(_engine_dir(ENGINES["no KG"]))}
    print(f"loaded both engines in {time.perf_counter() - t:.1f} s")
    emb = engines["KG"].retriever.embeddings
    print(f"node-name embeddings cached so far: {int(emb.done.sum()):,} of {len(emb.done):,} concepts "
          f"({emb.cache_dir or 'no disk cache'}); the first run computes the ones its questions need")
    picks = [("test_iid", 0), ("test_iid", 3), ("test_unseen_facts", 0), ("test_unseen_facts", 5),
             ("test_other_style", 2)]
    for split, i in picks:
        p.step(f"answering {split} #{i} with both engines ...")
        r = load_builtin(split)[i]
        img = r.load_image()
        img.save(work / f"{split}-{i}.png")
        a = engines["KG"].answer(img, r.question)
        b = engines["no KG"].answer(img, r.question)
        print(f"\n[{split} #{i}]  image: {work / f'{split}-{i}.png'}")
        print(f"Q: {r.question}")
        print(f"valid answers: {', '.join(x.replace('_', ' ') for x in r.answers)}")
        print("entities: " + ", ".join(f"{e.concept} ({e.origin}{', ' + e.label if e.label else ''}, "
                                       f"{e.score:.2f})" for e in a.entities))
        print(f"subgraph: {a.subgraph_size} nodes, {0 if a.subgraph is None else a.subgraph.num_edges} edges")
        for f in a.facts[:4]:
            print(f"  fact: {f}")
        ok = lambda x: "right" if x.answer in r.answers else "wrong"
        print(f"answer with the KG:    {a.answer.replace('_', ' '):<24} p={a.score:.2f}  copied p={a.copy_prob:.2f}  "
              f"[{ok(a)}]")
        print(f"answer without the KG: {b.answer.replace('_', ' '):<24} p={b.score:.2f}  [{ok(b)}]")

    p.h(f"5. Accuracy, KG vs no KG (live, first {n_eval} questions of each test split, detected entities)")

    rows = {}
    for name, eng in engines.items():
        for split in ("test_iid", "test_unseen_facts", "test_other_style"):
            p.step(f"{name} engine, {split}: answering {n_eval} questions ...")
            t = time.perf_counter()
            m, _ = run_split(eng, load_builtin(split)[:n_eval], None, progress=sys.stderr.isatty())
            rows[(name, split)] = m
            print(f"{'':9}accuracy {100 * m['accuracy']:.1f} % in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"{'split':<20} {'KG':>8} {'no KG':>8} {'coverage':>9}")
    for split in ("test_iid", "test_unseen_facts", "test_other_style"):
        print(f"{split:<20} {100 * rows[('KG', split)]['accuracy']:>7.1f}% {100 * rows[('no KG', split)]['accuracy']:>7.1f}%"
              f" {100 * rows[('KG', split)]['coverage']:>8.1f}%")
    emb.save()  # node-name embeddings computed on the way, for the next run (a no-op when saved)
    full = _engine_dir(ENGINES["KG"]) / "results.md"
    if full.exists():
        print(f"\nFull test splits, measured by `ravlm bench builtin` (see README):\n")
        print(full.read_text())


#: Real photos shipped in ravlm_graph/data/photos with a question each (the last one shows no object).
PHOTO_QUESTIONS = (
    ("chelsea.jpg", "What can the animal in the picture do?"),
    ("coffee.jpg", "Which object in this image is used for drinking?"),
    ("camera.jpg", "What is the object on the three legs used for?"),
    ("grace_hopper.jpg", "Where can the thing the person wears around the neck be found?"),
    ("grass.jpg", "What can the animal in the picture do?"),
)


def section_photos(work: Path, p: _Progress) -> None:
    """Real photos answered by the photo engine: a trained model with the photo detector."""
    p.h("6. Real photos: the photo engine (the photo detector's COCO boxes + ImageNet tags)")
    folder = _engine_dir("engine_photo")
    if not (folder / "engine.json").exists():
        print("the photo engine is missing: see README, 'Real photos' (ravlm export ENGINE --detector photo)")
        return
    try:
        t = time.perf_counter()
        engine = KnowledgeVQA.from_pretrained(folder, kg_cache=work)
        engine.detector.load()
    except ImportError as e:
        print(f"photo engine skipped: {e}")
        return
    p.step(f"loaded {folder.name} ({engine.detector!r}) in {time.perf_counter() - t:.1f} s")
    photos = Path(str(resources.files("ravlm_graph") / "data" / "photos"))
    for name, question in PHOTO_QUESTIONS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)  # its notes are printed below
            a = engine.answer(photos / name, question)
        print(f"\n[{name}]  Q: {question}")
        seen = [e for e in a.entities if e.origin == "image"]
        print("seen: " + (", ".join(f"{e.concept.replace('_', ' ')} ({e.score:.2f}"
                                    f"{', box ' + ','.join(str(round(v)) for v in e.box) if e.box else ''})"
                                    for e in seen) or "nothing"))
        print(f"A: {a.answer.replace('_', ' ')}  (p={a.score:.2f})")
        for f in a.facts[:3]:
            print(f"  fact: {f}")
        for n in a.notes:
            print(f"  note: {n}")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            ax = draw_entities(photos / name, seen)
            out = work / f"photo-{Path(name).stem}.png"
            ax.figure.savefig(out, dpi=100, bbox_inches="tight")
            plt.close(ax.figure)
            print(f"  drawn: {out}")
        except ImportError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ravlm_graph.demo", description=__doc__)
    ap.add_argument("--work", default=None, help="folder for the demo's stores and outputs "
                    "(default: demo/ in the user cache folder, never the current folder)")
    ap.add_argument("--fresh", action="store_true", help="delete the work folder first")
    ap.add_argument("--eval", type=int, default=50, help="questions per test split in the live accuracy table (default 50)")
    ap.add_argument("--skip-kg", action="store_true", help="skip the ingest/query sections")
    args = ap.parse_args(argv)
    work = Path(args.work) if args.work else (cache_dir("demo") if cache_enabled() else Path(tempfile.mkdtemp(prefix="ravlm-demo-")))
    print(f"outputs go to {work}")
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    p = _Progress()
    t0 = p.t0
    if not args.skip_kg:
        kg = section_ingest(work, p)
        section_queries(kg, p)
        section_subgraph(kg, work, p)
    section_answers(work, args.eval, p)
    section_photos(work, p)
    p.h(f"done in {time.perf_counter() - t0:.1f} s; outputs in {work}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
