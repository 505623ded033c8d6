"""``ravlm ground`` and ``ravlm retrieve``: text grounding and subgraph retrieval from the shell.

    ravlm ground "Where do you keep ice cream?" [--kg DIR] [--json]
    ravlm retrieve --question "What is a knife used for?" [--entities apple,knife] [--kg DIR]
                   [--budget N] [--method hybrid] [--json]

Without ``--kg`` the bundled CN-100K (+ FVQA ConceptNet facts) is used.
"""

from __future__ import annotations

import argparse
import json
import sys

from ravlm_graph.retrieval.config import RETRIEVAL_METHODS
from ravlm_graph.kg import open_kg
from ravlm_graph.grounding.detectors.given import resolve_concept
from ravlm_graph.grounding.text import TextGrounder
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.types import Entity
from ravlm_graph.types import ORIGIN_CODES
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.utils.threads import set_threads

__all__ = ["register"]


def _load_kg(path: str | None):
    # The bundled store is built once into the user's cache folder, then memory-mapped.
    return open_kg(path or "bundled:cn100k+fvqa", progress=True)


def _entity_json(e) -> dict:
    return {"concept": e.concept, "score": e.score, "origin": e.origin, "span": list(e.span) if e.span else None,
            "box": list(e.box) if e.box else None, "label": e.label}


def cmd_ground(args: argparse.Namespace) -> int:

    res = TextGrounder(_load_kg(args.kg)).ground(args.text)
    if args.json:
        print(json.dumps({"text": res.text, "entities": [_entity_json(e) for e in res], "reason": res.reason},
                         ensure_ascii=False, indent=1))
    else:
        if res.reason:
            print(f"no concepts: {res.reason}")
        for e in res:
            print(f"{e.concept:<30} {e.score:5.2f}  [{e.span[0]}:{e.span[1]}] {e.label!r}")
    return 0 if len(res) else 1


def cmd_retrieve(args: argparse.Namespace) -> int:

    if not args.question and not args.entities:
        raise ValueError("retrieve: expected --question TEXT and/or --entities a,b, found neither")
    if args.threads < 1:
        raise ValueError(f"--threads: expected an integer >= 1, found {args.threads}")
    if args.facts < 0:
        raise ValueError(f"--facts: expected an integer >= 0, found {args.facts}")
    names = [c.strip() for c in (args.entities or "").split(",")]
    if args.entities is not None and not any(names):
        raise ValueError(f"--entities: expected concept names such as 'knife,bread', found {args.entities!r}")
    if args.question is not None and not args.question.strip():
        raise ValueError("--question is empty: expected a question (or leave it out and give --entities)")
    set_threads(args.threads)
    kg = _load_kg(args.kg)
    ents = []
    for name in filter(None, names):
        # the lemma or spelling the graph knows ("knives" -> knife), as `ravlm answer --entities` maps it
        m = resolve_concept(name, kg)
        if m.note:
            print(f"note: {m.note}", file=sys.stderr)
        ents.append(Entity(m.concept, 1.0, args.origin))
    changes = {"budget": args.budget} if args.budget is not None else {}
    # hybrid ranks nodes by relevance to the question; without one, personalised PageRank
    method = args.method or ("hybrid" if args.question else "ppr")
    retr = SubgraphRetriever(kg, RetrievalConfig(method=method, k=args.hops, **changes))
    sg = retr.retrieve(ents, args.question, ground_question=bool(args.question))
    if retr._embeddings is not None:
        retr._embeddings.save()  # keep the node vectors computed for this query (store/cache)
    codes = {v: k for k, v in ORIGIN_CODES.items()}
    if args.json:
        out = {
            "question": args.question, "reason": sg.reason, "num_nodes": sg.num_nodes, "num_edges": sg.num_edges,
            "entities": [_entity_json(e) for e in sg.entities],
            "missing_seeds": sg.info.get("missing_seeds", []),
            "nodes": [{"name": n, "relevance": round(float(r), 4), "seed": bool(s), "origin": codes[int(o)]}
                      for n, r, s, o in zip(sg.node_names, sg.array("node_relevance").tolist(),
                                            sg.array("seed_mask").tolist(), sg.array("origin").tolist())],
            "facts": sg.verbalize(max_facts=args.facts),
        }
        print(json.dumps(out, ensure_ascii=False, indent=1))
    else:
        if sg.reason:
            print(f"empty subgraph: {sg.reason}")
            return 1
        seeds = [f"{n} ({codes[int(o)]})" for n, s, o in zip(sg.node_names, sg.array("seed_mask").tolist(),
                                                             sg.array("origin").tolist()) if s]
        print(f"{sg.num_nodes} nodes, {sg.num_edges} edges; seeds: {', '.join(seeds)}")
        if sg.info.get("missing_seeds"):
            print(f"not in the KG: {', '.join(sg.info['missing_seeds'])}")
        for f in sg.verbalize(max_facts=args.facts):
            print(f"  {f}")
    return 1 if sg.reason else 0


def register(subparsers) -> None:
    p = subparsers.add_parser("ground", help="find the ConceptNet concepts a question mentions")
    p.add_argument("text", help="the question")
    p.add_argument("--kg", default=None, help="KG store folder (default: bundled CN-100K + FVQA facts)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_ground)

    p = subparsers.add_parser("retrieve", help="retrieve the KG subgraph around a question's / image's concepts")
    p.add_argument("--question", default=None, help="the question (grounded into seeds; used for relevance)")
    p.add_argument("--entities", default=None, help="comma-separated seed concepts, e.g. apple,knife")
    p.add_argument("--origin", default="image", choices=["image", "question"], help="origin of --entities (image)")
    p.add_argument("--kg", default=None, help="KG store folder (default: bundled CN-100K + FVQA facts)")
    p.add_argument("--budget", type=int, default=None,
                   help=f"node budget (default: RetrievalConfig's, {RetrievalConfig().budget})")
    p.add_argument("--hops", type=int, default=2, help="expansion hops (default 2)")
    p.add_argument("--method", default=None, choices=RETRIEVAL_METHODS,
                   help="pruning method (default: hybrid with --question, ppr without; khop and ppr need no "
                        "text encoder)")
    p.add_argument("--facts", type=int, default=20, help="facts to print (default 20)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: one query is too small "
                   "to gain from more)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_retrieve)


if __name__ == "__main__":  # pragma: no cover
    from ravlm_graph.cli.main import main

    sys.exit(main())
