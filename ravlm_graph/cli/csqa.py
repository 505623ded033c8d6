"""CommonsenseQA (multiple choice) with and without the knowledge graph: a QA-GNN-lite.

What the model is: a **small scorer trained on top of frozen all-MiniLM-L6-v2 sentence
embeddings** — not a fine-tuned language model. Each (question, choice) pair gets one
score; the choices of a question compete through a softmax (cross-entropy over the
choices). Two variants, trained with identical settings so that the difference is the
knowledge graph only:

* ``no_kg`` — text only. Features of a pair: the frozen MiniLM embedding ``t`` of
  ``"<question> <choice>"``, the embedding ``c`` of the choice alone, and ``t * c``;
  a two-layer MLP maps them to a score. This is "the MiniLM-based model without the KG".
* ``kg`` — the same text features, plus a graph read-out (after QA-GNN, Yasunaga et al.,
  NAACL 2021, https://arxiv.org/abs/2104.06378, much reduced):

  1. seeds: the concepts grounded in the question (plus the dataset's question concept)
     and the concepts grounded in the choice text;
  2. a small subgraph around the seeds is retrieved (personalised PageRank pruning,
     ``budget`` nodes) from the store;
  3. node features: the MiniLM embedding of the concept name, an origin embedding
     (question / choice / both / other / context) and the retrieval relevance;
  4. a context node carrying ``t`` is linked to every seed (two extra relation types:
     context-question, context-choice), which conditions the graph on the pair;
  5. a 2-layer GATv2 :class:`~ravlm_graph.gnn.GraphEncoder` with relation-type edge
     features;
  6. read-out: attention pooling over the concept nodes with a projection of ``t`` as
     the query, the context node's final state, and the mean state of the choice's
     own concept nodes; these join the text features in the scoring MLP.

Every expensive feature (text embeddings, grounding, subgraphs, node-name embeddings)
is computed once per run, with a progress bar; training epochs then only gather
tensors. Training is seeded: the same seed and data give the same scores. A held-out
slice of the *training* file (``val_fraction``) picks the best epoch; the dev file is
used only for the reported accuracy.

Run it::

    python -m ravlm_graph.csqa --train train.jsonl --dev valid.jsonl --out runs/csqa

which writes ``results.json``, ``results.md`` and ``predictions_<variant>.jsonl`` into
``--out``. :func:`run_csqa` is the same from Python and accepts an injected encoder and
store (tests use a hash stand-in encoder and a tiny graph).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Sequence

import torch
from ravlm_graph.evaluation.csqa import _markdown, run_csqa
from ravlm_graph.models.csqa.configuration import CSQAConfig, VARIANTS

if TYPE_CHECKING:  # pragma: no cover

    pass


# --------------------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of the CommonsenseQA run (for ``python -m ravlm_graph.csqa`` and CLIs)."""
    d = CSQAConfig()
    parser.add_argument("--train", required=True, help="CommonsenseQA training file (JSON lines)")
    parser.add_argument("--dev", required=True, help="CommonsenseQA dev file (JSON lines, labelled)")
    parser.add_argument("--out", required=True, help="output folder (results.json, results.md, predictions)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="variants to train (default: no_kg kg)")
    parser.add_argument("--kg", default="bundled:cn100k", help="bundled:cn100k[+fvqa] or a store folder")
    parser.add_argument("--kg-cache", default=None, help="folder for the bundled stores (default: the user cache folder)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training questions")
    parser.add_argument("--dev-limit", type=int, default=None, help="use the first N dev questions")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"questions per step (default {d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"default {d.lr}")
    parser.add_argument("--budget", type=int, default=d.budget, help=f"subgraph nodes per choice (default {d.budget})")
    parser.add_argument("--method", default=d.method, help=f"retrieval pruning (default {d.method})")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction,
                        help=f"training questions held out to pick the epoch (default {d.val_fraction})")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run_from_args(args: argparse.Namespace) -> dict:
    """Run :func:`run_csqa` from parsed :func:`add_arguments` options; prints the table."""
    if args.threads is not None:
        torch.set_num_threads(int(args.threads))
    cfg = CSQAConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, budget=args.budget,
                     method=args.method, val_fraction=args.val_fraction, seed=args.seed)
    res = run_csqa(args.train, args.dev, args.out, kg=args.kg, kg_cache=args.kg_cache, variants=args.variants,
                   limit=args.limit, dev_limit=args.dev_limit, config=cfg, progress=not args.no_progress)
    print(_markdown(res))
    return res


def main(argv: Sequence[str] | None = None, prog: str = "python -m ravlm_graph.csqa") -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog=prog,
        description="CommonsenseQA dev accuracy of a small scorer on frozen MiniLM embeddings, "
                    "with and without the knowledge graph."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_from_args(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
