"""``ravlm bench csqa``: CommonsenseQA dev accuracy of the fine-tuned trunk with and without the KG.

Settings come from the defaults (:class:`~ravlm_graph.models.csqa.CSQAConfig`,
:data:`~ravlm_graph.evaluation.csqa.DEFAULT_TRAIN`), then from a ``--config`` JSON file
(``{"model": {...}, "train": {...}}``, e.g. ``configs/csqa.json``), then from the options.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import torch

from ravlm_graph.evaluation.checks import check_limit, check_out_dir
from ravlm_graph.evaluation.csqa import DEFAULT_TRAIN, results_markdown, run_csqa
from ravlm_graph.models.csqa.configuration import POOLINGS, VARIANTS, CSQAConfig
from ravlm_graph.training.loop import TrainConfig

# option -> (section, field) of the --config file
_MODEL_OPTIONS = ("trunk_layers", "train_layers", "pooling", "max_length", "hidden", "dropout", "gnn_kind", "gnn_hidden", "gnn_layers",
                  "gnn_heads", "budget", "method", "text_backbone", "link_features", "text_facts")
_TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "backbone_lr", "weight_decay", "warmup_ratio", "seed", "patience")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of the CommonsenseQA run."""
    m, t = CSQAConfig(), DEFAULT_TRAIN
    parser.add_argument("--train", required=True, help="CommonsenseQA training file (JSON lines)")
    parser.add_argument("--dev", required=True, help="CommonsenseQA dev file (JSON lines, labelled)")
    parser.add_argument("--out", required=True, help="output folder (results.json, results.md, predictions)")
    parser.add_argument("--config", default=None,
                        help='JSON settings {"model": {CSQAConfig fields}, "train": {TrainConfig fields}}; '
                             "options given on the command line override them")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="variants to train (default: no_kg kg)")
    parser.add_argument("--kg", default="bundled:cn100k+fvqa", help="bundled:cn100k[+fvqa] or a store folder "
                        "(default bundled:cn100k+fvqa)")
    parser.add_argument("--kg-cache", default=None, help="folder for the bundled stores (default: the user cache folder)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training questions")
    parser.add_argument("--dev-limit", type=int, default=None, help="use the first N dev questions")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="training questions held out to pick the epoch (default 0.1)")
    model = parser.add_argument_group("model (CSQAConfig)")
    model.add_argument("--text-backbone", default=None, help=f"'minilm' or a model folder (default {m.text_backbone})")
    model.add_argument("--trunk-layers", type=int, default=None,
                       help=f"first N trunk layers, 0: all (default {m.trunk_layers})")
    model.add_argument("--train-layers", type=int, default=None,
                       help=f"fine-tune the top N kept layers, 0: all (default {m.train_layers})")
    model.add_argument("--pooling", choices=POOLINGS, default=None, help=f"default {m.pooling}")
    model.add_argument("--max-length", type=int, default=None, help=f"tokens per pair (default {m.max_length})")
    model.add_argument("--hidden", type=int, default=None, help=f"scoring MLP width (default {m.hidden})")
    model.add_argument("--dropout", type=float, default=None, help=f"default {m.dropout}")
    model.add_argument("--gnn-kind", default=None, help=f"default {m.gnn_kind}")
    model.add_argument("--gnn-hidden", type=int, default=None, help=f"default {m.gnn_hidden}")
    model.add_argument("--gnn-layers", type=int, default=None, help=f"default {m.gnn_layers}")
    model.add_argument("--gnn-heads", type=int, default=None, help=f"default {m.gnn_heads}")
    model.add_argument("--budget", type=int, default=None, help=f"subgraph nodes per choice (default {m.budget})")
    model.add_argument("--method", default=None, help=f"retrieval pruning (default {m.method})")
    model.add_argument("--link-features", action=argparse.BooleanOptionalAction, default=None,
                       help=f"kg: also read the question-choice link counts of each subgraph "
                            f"(default {m.link_features})")
    model.add_argument("--text-facts", type=int, default=None, metavar="N",
                       help=f"kg: also read up to N facts of each pair's subgraph as text after the choice "
                            f"(raise --max-length to make room; default {m.text_facts})")
    tr = parser.add_argument_group("training (TrainConfig)")
    tr.add_argument("--epochs", type=int, default=None, help=f"default {t.epochs}")
    tr.add_argument("--batch-size", type=int, default=None, help=f"questions per step (default {t.batch_size})")
    tr.add_argument("--lr", type=float, default=None, help=f"learning rate of the new layers (default {t.lr})")
    tr.add_argument("--backbone-lr", type=float, default=None,
                    help=f"learning rate of the pretrained trunk (default {t.backbone_lr})")
    tr.add_argument("--weight-decay", type=float, default=None, help=f"default {t.weight_decay}")
    tr.add_argument("--warmup-ratio", type=float, default=None, help=f"default {t.warmup_ratio}")
    tr.add_argument("--patience", type=int, default=None, help="early stopping (epochs; default 0: off)")
    tr.add_argument("--seed", type=int, default=None, help=f"default {t.seed}")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="write resumable per-epoch checkpoints under OUT/checkpoints")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def settings_from_args(args: argparse.Namespace) -> tuple[CSQAConfig, TrainConfig]:
    """The model and training settings: defaults, then ``--config``, then the options."""
    model, train = CSQAConfig().to_dict(), asdict(DEFAULT_TRAIN)
    if args.config:
        p = Path(args.config)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}: expected a JSON file of CommonsenseQA settings ({e})") from e
        unknown = sorted(set(data) - {"model", "train"}) if isinstance(data, dict) else ["<not an object>"]
        if unknown:
            raise ValueError(f"{p}: expected the sections 'model' and 'train', found {unknown}")
        model.update(data.get("model", {}))
        train.update(data.get("train", {}))
    model.update({k: getattr(args, k) for k in _MODEL_OPTIONS if getattr(args, k) is not None})
    train.update({k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k) is not None})
    tcfg = TrainConfig.from_dict(train)
    return CSQAConfig.from_dict(model), replace(tcfg, progress=not args.no_progress)


def run_from_args(args: argparse.Namespace) -> dict:
    """Run :func:`run_csqa` from parsed :func:`add_arguments` options; prints the table."""
    check_out_dir(args.out, "--out")
    for opt in ("limit", "dev_limit", "threads"):
        check_limit(getattr(args, opt), f"--{opt.replace('_', '-')}")
    if args.threads is not None:
        torch.set_num_threads(int(args.threads))
    cfg, tcfg = settings_from_args(args)
    res = run_csqa(args.train, args.dev, args.out, kg=args.kg, kg_cache=args.kg_cache, variants=args.variants,
                   limit=args.limit, dev_limit=args.dev_limit, config=cfg, train_config=tcfg,
                   val_fraction=args.val_fraction, keep_checkpoints=args.keep_checkpoints,
                   progress=not args.no_progress)
    print(results_markdown(res))
    return res


def main(argv: Sequence[str] | None = None, prog: str = "ravlm bench csqa") -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog=prog, description="CommonsenseQA dev accuracy of the fine-tuned MiniLM trunk, with and without a "
                               "QA-GNN-style knowledge-graph module."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_from_args(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"ravlm: error: {e}", file=sys.stderr)
        return 2
    return 0
