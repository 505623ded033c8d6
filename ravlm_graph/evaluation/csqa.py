"""CommonsenseQA benchmark: the same fine-tuned trunk with and without the knowledge graph.

:func:`run_csqa` fine-tunes one :class:`~ravlm_graph.models.csqa.CSQAModel` per variant
(``no_kg``: the cross-encoder alone; ``kg``: the cross-encoder joined with the graph
module) on a training file through :func:`ravlm_graph.training.train`, with identical
training settings, so that the difference is the knowledge graph only. A held-out slice
of the *training* file (``val_fraction``) picks the best epoch; the dev file is used only
for the reported accuracy. It writes ``results.json``, ``results.md`` and
``predictions_<variant>.jsonl``.

The subgraphs (grounding, retrieval, node-name embeddings) are built once per run with a
progress bar; training epochs then only gather them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ravlm_graph.datasets.loaders import load_csqa
from ravlm_graph.evaluation.checks import check_limit, check_out_dir
from ravlm_graph.grounding.config import GroundingConfig
from ravlm_graph.grounding.text import TextGrounder
from ravlm_graph.kg import open_kg
from ravlm_graph.models.csqa.configuration import VARIANTS, CSQAConfig
from ravlm_graph.models.csqa.modeling import CSQAModel, load_trunk
from ravlm_graph.models.csqa.processing import CSQAExamples, GraphFeatures, build_examples, build_graph_features, max_choices
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.retrieval.embeddings import NodeEmbeddings, TextEncoder, quiet_loading
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.training.loop import TrainConfig, train

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

    from ravlm_graph.types import VQARecord

logger = logging.getLogger(__name__)

#: Training settings of the CommonsenseQA runs (a small trunk fine-tuned gently, the new
#: layers faster); ``out_dir`` is set per run.
DEFAULT_TRAIN = TrainConfig(epochs=2, batch_size=8, lr=1e-3, backbone_lr=1e-4, weight_decay=0.01, warmup_ratio=0.1,
                            grad_clip=1.0, seed=0)


def load_questions(path: str | os.PathLike, *, limit: int | None = None, what: str = "file") -> list["VQARecord"]:
    """The labelled CommonsenseQA records of ``path`` (the first ``limit`` of them).

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed records (from :func:`~ravlm_graph.datasets.loaders.load_csqa`),
            or no record with an answer key.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: expected the CommonsenseQA {what} (JSON lines), found no such file")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected an integer >= 1 or None, found {limit!r}")
    records = [r for r in load_csqa(p) if r.correct_choice is not None and r.choices]
    if not records:
        raise ValueError(f"{p}: expected labelled CommonsenseQA records (with an 'answerKey'), found none")
    return records[:limit] if limit is not None else records


def predict(model: CSQAModel, examples: CSQAExamples, questions: Sequence[int] | None = None,
            batch_size: int = 32) -> np.ndarray:
    """(Q, C) choice scores of ``questions`` (default: all) in eval mode; padding choices are -inf."""
    qs = list(range(examples.num_questions)) if questions is None else list(questions)
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(qs), batch_size):
            batch = examples.collate(qs[i:i + batch_size], with_graphs=model.config.use_kg)
            batch.labels = None
            out.append(model(batch).logits)
    return torch.cat(out).numpy() if out else np.zeros((0, examples.num_choices), np.float32)


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((scores.argmax(1) == labels).mean()) if len(labels) else float("nan")


def _kg_name(kg) -> str:
    if isinstance(kg, str):
        return kg
    meta = getattr(kg, "meta", None) or {}
    return str(meta.get("name") or getattr(kg, "path", None) or type(kg).__name__)


def _write_predictions(path: Path, records, scores: np.ndarray, graphs: GraphFeatures | None) -> None:
    c = scores.shape[1]
    with path.open("w", encoding="utf-8") as f:
        for i, r in enumerate(records):
            k = len(r.choices)
            s = scores[i, :k]
            pred = int(np.argmax(s))
            row: dict[str, Any] = {"qid": r.qid, "question": r.question, "choices": list(r.choices),
                                   "scores": [round(float(x), 4) for x in s], "predicted": pred,
                                   "correct": int(r.correct_choice), "is_correct": pred == r.correct_choice}
            if graphs is not None:
                ps = [i * c + j for j in range(k)]
                row["subgraph_nodes"] = [graphs.num_nodes(p) for p in ps]
                row["choice_concepts"] = [graphs.choice_concepts[p] for p in ps]
                row["facts"] = [graphs.facts[p] for p in ps]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def results_markdown(results: dict) -> str:
    """The one-screen summary of a :func:`run_csqa` result (``results.md``)."""
    m = results["model"]
    lines = ["# CommonsenseQA: the fine-tuned cross-encoder with and without the knowledge graph", "",
             f"Train: `{results['train_file']}` ({results['n_train']} questions, {results['n_val']} of them held out "
             f"to pick the epoch); dev: `{results['dev_file']}` ({results['n_dev']} questions); "
             f"KG: {results['kg'] or 'none'}; trunk: {m['text_backbone']}, {m['trunk_layers'] or 'all'} layers "
             f"(top {m['train_layers'] or 'all'} fine-tuned), {m['pooling']} pooling, {m['max_length']} tokens per pair; "
             f"{results['torch_threads']} torch threads.", "",
             "| variant | dev accuracy | dev questions | best epoch | held-out train accuracy | train s (wall) "
             "| train s (CPU) |", "|---|---|---|---|---|---|---|"]
    for name, v in results["variants"].items():
        val = f"{100 * v['val_accuracy']:.1f} %" if v.get("val_accuracy") is not None else "-"
        lines.append(f"| {name} | {100 * v['accuracy']:.1f} % | {v['n']} | {v['best_epoch']} | {val} | "
                     f"{v['train_seconds']:.1f} | {v.get('train_cpu_seconds', float('nan')):.1f} |")
    lines += ["", "Chance: 20 % with 5 choices. `kg`: the same trunk and training, plus a QA-GNN-style module "
              "(a context node from the pair's trunk state linked to the seeds of one retrieved ConceptNet "
              "subgraph per choice, a GNN, its pooled states joined with the text state).", ""]
    if results.get("train_dev_overlap"):
        lines += [f"**Warning:** {results['train_dev_overlap']} of the {results['n_dev']} dev questions are also in the "
                  "training file (same question ids): their dev accuracy is not a held-out measure.", ""]
    if results.get("graph_stats"):
        lines.append("Subgraphs: " + "; ".join(f"{k}: {json.dumps(v)}" for k, v in results["graph_stats"].items()))
        lines.append("")
    lines.append("Feature seconds: " + json.dumps(results["feature_seconds"]))
    return "\n".join(lines) + "\n"


def run_csqa(train_path: str | os.PathLike, dev_path: str | os.PathLike, out_dir: str | os.PathLike, *,
             kg: "str | KnowledgeGraph" = "bundled:cn100k+fvqa", kg_cache: str | os.PathLike | None = None,
             variants: Sequence[str] = VARIANTS, limit: int | None = None, dev_limit: int | None = None,
             config: CSQAConfig | None = None, train_config: TrainConfig | None = None, val_fraction: float = 0.1,
             encoder=None, node_cache_dir: str | os.PathLike | None = None, keep_checkpoints: bool = False,
             progress: bool = True) -> dict:
    """Fine-tune each variant on ``train_path``, evaluate on ``dev_path``, write the results.

    Args:
        train_path / dev_path: CommonsenseQA JSON lines (only labelled records are used).
        out_dir: created if needed; receives ``results.json``, ``results.md`` and
            ``predictions_<variant>.jsonl`` (and ``checkpoints/<variant>`` with ``keep_checkpoints``).
        kg: engine spec (``bundled:cn100k+fvqa``, a store folder) or a loaded store; only
            opened when the ``kg`` variant runs.
        kg_cache: folder for the bundled stores (None: the user cache folder).
        variants: some of :data:`VARIANTS`.
        limit: use only the first ``limit`` training questions; dev_limit: the first
            ``dev_limit`` dev questions (default: all).
        config: model settings (default :class:`CSQAConfig`; ``use_kg`` is set per variant).
        train_config: training settings (default :data:`DEFAULT_TRAIN`; ``out_dir``,
            ``select_metric`` are set per variant).
        val_fraction: share of the training questions held out to pick the best epoch (0:
            keep the last epoch).
        encoder: sentence encoder of the concept names (``dim``, ``encode(texts, progress=)``);
            default the packaged all-MiniLM-L6-v2.
        node_cache_dir: cache of node-name embeddings (default: the store's ``cache/``).
        keep_checkpoints: write per-epoch checkpoints (resumable) under ``out_dir/checkpoints``.
        progress: tqdm bars.

    Returns:
        The dict written to ``results.json``.

    Raises:
        FileNotFoundError: a missing input file.
        ValueError: unknown or no variants, a file without labelled records, bad settings.
    """
    variants = list(dict.fromkeys(variants))
    if not variants:
        raise ValueError(f"variants: expected some of {VARIANTS}, found none")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variant(s) {bad}; expected some of {VARIANTS}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a number in [0, 1), found {val_fraction!r}")
    cfg = config or CSQAConfig()
    tcfg = train_config or DEFAULT_TRAIN
    out = check_out_dir(out_dir, "out_dir")
    check_limit(limit, "limit")
    check_limit(dev_limit, "dev_limit")
    train_recs = load_questions(train_path, limit=limit, what="training file")
    dev_recs = load_questions(dev_path, limit=dev_limit, what="dev file")
    overlap = train_dev_overlap(train_recs, dev_recs)
    if overlap:
        logger.warning("%d of the %d dev questions are also in the training file (same question ids, e.g. %r): "
                       "their dev accuracy is not a held-out measure", len(overlap), len(dev_recs), overlap[0])
    out.mkdir(parents=True, exist_ok=True)
    # Local loads of the trunk take milliseconds: no "Loading weights" bar per variant.
    with quiet_loading():
        return _run(train_path, dev_path, out, train_recs, dev_recs, overlap, kg=kg, kg_cache=kg_cache,
                    variants=variants, limit=limit, dev_limit=dev_limit, cfg=cfg, tcfg=tcfg,
                    val_fraction=val_fraction, encoder=encoder, node_cache_dir=node_cache_dir,
                    keep_checkpoints=keep_checkpoints, progress=progress)


def train_dev_overlap(train_recs: Sequence["VQARecord"], dev_recs: Sequence["VQARecord"]) -> list[str]:
    """The dev question ids that are also training question ids, in dev order."""
    train_ids = {r.qid for r in train_recs}
    return [r.qid for r in dev_recs if r.qid in train_ids]


def _run(train_path, dev_path, out: Path, train_recs, dev_recs, overlap: list[str], *, kg, kg_cache, variants,
         limit, dev_limit, cfg: CSQAConfig, tcfg: TrainConfig, val_fraction: float, encoder, node_cache_dir,
         keep_checkpoints: bool, progress: bool) -> dict:

    c = max(max_choices(train_recs), max_choices(dev_recs))
    secs: dict[str, float] = {}
    graph_stats: dict[str, Any] = {}
    train_g = dev_g = None
    node_table = train_rows = dev_rows = None
    if "kg" in variants:
        if encoder is None:
            encoder = TextEncoder.from_package()
        t0 = time.perf_counter()
        store = open_kg(kg, cache_root=kg_cache) if isinstance(kg, str) else kg
        secs["open_kg"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        node_emb = NodeEmbeddings(store, encoder, cache_dir=node_cache_dir)
        # Text-only questions: "left" may be the verb, not a place in an image.
        grounder = TextGrounder(store, GroundingConfig(spatial=False))
        retriever = SubgraphRetriever(store, RetrievalConfig(budget=cfg.budget, method=cfg.method, cache_size=0),
                                      embeddings=node_emb, encoder=encoder, grounder=grounder)
        train_g = build_graph_features(train_recs, store, retriever, grounder, config=cfg, num_choices=c,
                                       encoder=encoder, progress=progress, desc="subgraphs (train)")
        dev_g = build_graph_features(dev_recs, store, retriever, grounder, config=cfg, num_choices=c,
                                     keep_facts=True, encoder=encoder, progress=progress, desc="subgraphs (dev)")
        secs["subgraphs"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        uniq = np.unique(np.concatenate([train_g.node_store_id, dev_g.node_store_id]))
        node_emb.compute(uniq, progress=progress)
        node_emb.save()
        node_table = np.asarray(node_emb.get(uniq), dtype=np.float32)
        train_rows = np.searchsorted(uniq, train_g.node_store_id)
        dev_rows = np.searchsorted(uniq, dev_g.node_store_id)
        secs["node_embeddings"] = round(time.perf_counter() - t0, 1)
        graph_stats = {"train": train_g.info, "dev": dev_g.info, "distinct_nodes": int(len(uniq))}
        cfg = replace(cfg, num_relations=int(store.num_relations), node_dim=int(node_table.shape[1]))

    t0 = time.perf_counter()
    tokenizer, _ = load_trunk(cfg)
    train_ex = build_examples(train_recs, tokenizer, cfg, num_choices=c, graphs=train_g, node_table=node_table,
                              node_rows=train_rows)
    dev_ex = build_examples(dev_recs, tokenizer, cfg, num_choices=c, graphs=dev_g, node_table=node_table,
                            node_rows=dev_rows)
    secs["tokenize"] = round(time.perf_counter() - t0, 1)

    # Held-out slice of the training questions (epoch selection only).
    perm = np.random.default_rng(tcfg.seed).permutation(len(train_recs))
    n_val = int(round(val_fraction * len(train_recs))) if len(train_recs) > 1 else 0
    val_idx, fit_idx = np.sort(perm[:n_val]).tolist(), np.sort(perm[n_val:]).tolist()

    results: dict[str, Any] = {
        "dataset": "commonsenseqa", "train_file": str(train_path), "dev_file": str(dev_path),
        "n_train": len(train_recs), "n_val": int(n_val), "n_dev": len(dev_recs), "limit": limit,
        "dev_limit": dev_limit, "train_dev_overlap": len(overlap), "kg": _kg_name(kg) if "kg" in variants else None,
        "model": cfg.to_dict(), "train": {k: v for k, v in asdict(tcfg).items() if k not in ("out_dir", "extra")},
        "node_encoder": getattr(encoder, "name", type(encoder).__name__) if encoder is not None else None,
        "torch_threads": torch.get_num_threads(), "feature_seconds": secs, "graph_stats": graph_stats,
        "variants": {},
    }
    for v in variants:
        vcfg = replace(cfg, use_kg=v == "kg")
        v_train, v_dev = train_ex, dev_ex
        if vcfg.use_kg and vcfg.text_facts:  # the pairs' facts as text: the kg variant's own token ids
            v_train = build_examples(train_recs, tokenizer, vcfg, num_choices=c, graphs=train_g,
                                     node_table=node_table, node_rows=train_rows)
            v_dev = build_examples(dev_recs, tokenizer, vcfg, num_choices=c, graphs=dev_g, node_table=node_table,
                                   node_rows=dev_rows)
        run_cfg = replace(tcfg, out_dir=str(out / "checkpoints" / v) if keep_checkpoints else "",
                          select_metric="val_accuracy" if n_val else "", progress=progress and tcfg.progress)
        torch.manual_seed(run_cfg.seed)
        model = CSQAModel(vcfg)

        def validate(epoch, m, _ex=v_train, _labels=train_ex.labels[val_idx]):
            return {"val_accuracy": round(_accuracy(predict(m, _ex, val_idx), _labels), 4)}

        t0, c0 = time.perf_counter(), time.process_time()
        res = train(model, fit_idx, v_train.collate if vcfg.use_kg else _text_collate(v_train), run_cfg,
                    on_epoch_end=validate if n_val else None)
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        scores = predict(model, v_dev)
        eval_s = time.perf_counter() - t0
        acc = _accuracy(scores, v_dev.labels)
        _write_predictions(out / f"predictions_{v}.jsonl", dev_recs, scores, dev_g if vcfg.use_kg else None)
        results["variants"][v] = {
            "accuracy": round(acc, 4), "n": len(dev_recs), "correct": int(round(acc * len(dev_recs))),
            "train_seconds": round(train_s, 1), "train_cpu_seconds": round(train_cpu, 1),
            "dev_seconds": round(eval_s, 1),
            "best_epoch": res.best_epoch if res.best_epoch is not None else res.epochs_run,
            "val_accuracy": res.best_metric, "history": res.history, "steps": res.steps,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "trained_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        }
        logger.info("%s: dev accuracy %.1f %% (%d questions), trained in %.0f s", v, 100 * acc, len(dev_recs), train_s)
        (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "results.md").write_text(results_markdown(results), encoding="utf-8")
    return results


def _text_collate(examples: CSQAExamples):
    """A collate function that leaves the subgraphs out (the ``no_kg`` variant)."""
    def collate(questions):
        return examples.collate(questions, with_graphs=False)

    return collate
