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

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn
from ravlm_graph.models.csqa.configuration import CSQAConfig, VARIANTS
from ravlm_graph.models.csqa.modeling import ChoiceScorer
from ravlm_graph.models.csqa.processing import GraphFeatures, TextFeatures, _collate_graphs, _num_choices, _ranges, build_graph_features, build_text_features
from ravlm_graph.datasets.loaders import load_csqa
from ravlm_graph.kg import open_kg
from ravlm_graph.retrieval.embeddings import TextEncoder
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.retrieval.embeddings import NodeEmbeddings
from ravlm_graph.grounding.text import TextGrounder
from ravlm_graph.grounding.config import GroundingConfig
from ravlm_graph.retrieval.retriever import SubgraphRetriever

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

    from ravlm_graph.types import VQARecord

logger = logging.getLogger(__name__)

# Node origins seen by the graph encoder. 1-3 are the retriever's codes, with its
# second origin slot ("image") carrying the answer-choice concepts.


# --------------------------------------------------------------------------- data

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


# --------------------------------------------------------------------------- training

@dataclass
class _Split:
    """Tensors of one question set for one variant."""

    pair: torch.Tensor            # (Q, C, D)
    choice: torch.Tensor          # (Q, C, D)
    mask: torch.Tensor            # (Q, C)
    labels: torch.Tensor          # (Q,)
    graphs: GraphFeatures | None = None
    node_rows: np.ndarray | None = None


def _make_split(tf: TextFeatures, graphs: GraphFeatures | None = None, node_rows: np.ndarray | None = None) -> _Split:
    return _Split(torch.from_numpy(tf.pair), torch.from_numpy(tf.choice), torch.from_numpy(tf.mask),
                  torch.from_numpy(tf.labels), graphs, node_rows)


def _scores(model: ChoiceScorer, split: _Split, qs: np.ndarray, node_table: torch.Tensor | None) -> torch.Tensor:
    """(B, C) scores of the questions ``qs`` (padding choices: -inf)."""
    c = split.pair.shape[1]
    idx = torch.from_numpy(qs)
    pair = split.pair[idx].reshape(len(qs) * c, -1)  # (B*C, D)
    choice = split.choice[idx].reshape(len(qs) * c, -1)  # (B*C, D)
    text = torch.cat([pair, choice, pair * choice], dim=-1)  # (B*C, 3D)
    graph = None
    if model.use_kg:
        pairs = (qs[:, None] * c + np.arange(c)[None, :]).reshape(-1)
        graph = _collate_graphs(split.graphs, split.node_rows, pairs)
    s = model(text, pair, graph, node_table).reshape(len(qs), c)
    return s.masked_fill(~split.mask[idx], float("-inf"))


def predict(model: ChoiceScorer, split: _Split, node_table: torch.Tensor | None = None,
            batch_size: int = 64) -> np.ndarray:
    """(Q, C) scores in eval mode."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, split.labels.shape[0], batch_size):
            qs = np.arange(i, min(i + batch_size, split.labels.shape[0]))
            out.append(_scores(model, split, qs, node_table))
    return torch.cat(out).numpy() if out else np.zeros((0, split.pair.shape[1]), np.float32)


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((scores.argmax(1) == labels).mean()) if len(labels) else float("nan")


def train_variant(variant: str, train: _Split, val: _Split | None, config: CSQAConfig, *, text_dim: int,
                  node_table: torch.Tensor | None = None, progress: bool = False) -> tuple[ChoiceScorer, dict]:
    """Train one variant with cross-entropy over the choices; returns the model (the best
    epoch on ``val`` when given, else the last) and a history."""
    from tqdm.auto import tqdm

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    num_rel = train.graphs.num_relations if variant == "kg" else None
    model = ChoiceScorer(text_dim, config, num_rel)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = train.labels.shape[0]
    steps = config.epochs * math.ceil(n / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(steps, 1), pct_start=0.1,
                                                anneal_strategy="cos")
    history = []
    best, best_state, best_epoch = -1.0, None, config.epochs
    bar = tqdm(total=steps, desc=f"train {variant}", unit="step", disable=not progress, dynamic_ncols=True)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = rng.permutation(n)
        total, seen = 0.0, 0
        for i in range(0, n, config.batch_size):
            qs = order[i:i + config.batch_size]
            s = _scores(model, train, qs, node_table)
            loss = nn.functional.cross_entropy(s, train.labels[torch.from_numpy(qs)])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(qs)
            seen += len(qs)
            bar.update(1)
        rec = {"epoch": epoch, "train_loss": round(total / max(seen, 1), 4)}
        if val is not None:
            acc = _accuracy(predict(model, val, node_table), val.labels.numpy())
            rec["val_accuracy"] = round(acc, 4)
            if acc > best:
                best, best_epoch = acc, epoch
                best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(rec)
        history.append(rec)
        logger.info("%s epoch %d: %s", variant, epoch, rec)
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, {"history": history, "best_epoch": best_epoch,
                   "val_accuracy": round(best, 4) if val is not None else None}


# --------------------------------------------------------------------------- runner

def _open_kg(kg, kg_cache):
    if isinstance(kg, str):

        return open_kg(kg, cache_root=kg_cache)
    return kg


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


def _markdown(results: dict) -> str:
    lines = ["# CommonsenseQA: the MiniLM-based scorer with and without the knowledge graph", "",
             f"Train: `{results['train_file']}` ({results['n_train']} questions, {results['n_val']} of them held out "
             f"to pick the epoch); dev: `{results['dev_file']}` ({results['n_dev']} questions); "
             f"KG: {results['kg'] or 'none'}; encoder: {results['encoder']} (frozen).", "",
             "| variant | dev accuracy | dev questions | best epoch | held-out train accuracy | train s |",
             "|---|---|---|---|---|---|"]
    for name, v in results["variants"].items():
        val = f"{100 * v['val_accuracy']:.1f} %" if v.get("val_accuracy") is not None else "-"
        lines.append(f"| {name} | {100 * v['accuracy']:.1f} % | {v['n']} | {v['best_epoch']} | {val} | "
                     f"{v['train_seconds']:.1f} |")
    lines += ["", "Chance: 20 % with 5 choices. The model: a small MLP (and, for `kg`, a 2-layer GNN over one "
              "retrieved ConceptNet subgraph per choice) on frozen all-MiniLM-L6-v2 sentence embeddings, "
              "not a fine-tuned language model.", ""]
    if results.get("graph_stats"):
        lines.append("Subgraphs: " + "; ".join(f"{k}: {json.dumps(v)}" for k, v in results["graph_stats"].items()))
        lines.append("")
    lines.append("Feature seconds: " + json.dumps(results["feature_seconds"]))
    return "\n".join(lines) + "\n"


def run_csqa(train_path: str | os.PathLike, dev_path: str | os.PathLike, out_dir: str | os.PathLike, *,
             kg: "str | KnowledgeGraph" = "bundled:cn100k", kg_cache: str | os.PathLike | None = None,
             variants: Sequence[str] = VARIANTS, epochs: int | None = None, limit: int | None = None,
             dev_limit: int | None = None, seed: int | None = None, config: CSQAConfig | None = None,
             encoder=None, node_cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Train each variant on ``train_path``, evaluate on ``dev_path``, write the results.

    Args:
        train_path / dev_path: CommonsenseQA JSON lines (only labelled records are used).
        out_dir: created if needed; receives ``results.json``, ``results.md`` and
            ``predictions_<variant>.jsonl``.
        kg: engine spec (``bundled:cn100k``, a store folder) or a loaded store; only
            opened when the ``kg`` variant runs.
        kg_cache: folder for the bundled stores (default: the user cache folder).
        variants: some of :data:`VARIANTS`.
        epochs, seed: override ``config``'s (None: keep them; the default seed is 0).
        limit: use only the first ``limit`` training questions; dev_limit: the first
            ``dev_limit`` dev questions (default: all).
        config: model and training settings (default :class:`CSQAConfig`).
        encoder: sentence encoder with ``dim``, ``name`` and ``encode(texts, progress=)``;
            default the packaged all-MiniLM-L6-v2.
        node_cache_dir: cache of node-name embeddings (default: the store's ``cache/``).
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
    cfg = config or CSQAConfig()
    over = {k: v for k, v in (("epochs", epochs), ("seed", seed)) if v is not None}
    cfg = CSQAConfig(**{**asdict(cfg), **over})
    train_recs = load_questions(train_path, limit=limit, what="training file")
    dev_recs = load_questions(dev_path, limit=dev_limit, what="dev file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if encoder is None:

        encoder = TextEncoder.from_package()
    c = max(_num_choices(train_recs), _num_choices(dev_recs))
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    train_tf = build_text_features(train_recs, encoder, num_choices=c, progress=progress)
    dev_tf = build_text_features(dev_recs, encoder, num_choices=c, progress=progress)
    secs["text_embeddings"] = round(time.perf_counter() - t0, 1)

    # Held-out slice of the training questions (epoch selection only).
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(train_recs))
    n_val = int(round(cfg.val_fraction * len(train_recs))) if len(train_recs) > 1 else 0
    val_idx, fit_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    graph_stats: dict[str, Any] = {}
    store = None
    train_g = dev_g = None
    node_table = None
    train_rows = dev_rows = None
    if "kg" in variants:

        t0 = time.perf_counter()
        store = _open_kg(kg, kg_cache)
        secs["open_kg"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        node_emb = NodeEmbeddings(store, encoder, cache_dir=node_cache_dir)
        # Text-only questions: "left" may be the verb, not a place in an image.
        grounder = TextGrounder(store, GroundingConfig(spatial=False))
        retriever = SubgraphRetriever(store, RetrievalConfig(budget=cfg.budget, method=cfg.method, cache_size=0),
                                      embeddings=node_emb, encoder=encoder, grounder=grounder)
        train_g = build_graph_features(train_recs, store, retriever, grounder, config=cfg, num_choices=c,
                                       pair_embeddings=train_tf.pair, progress=progress,
                                       desc="subgraphs (train)")
        dev_g = build_graph_features(dev_recs, store, retriever, grounder, config=cfg, num_choices=c,
                                     keep_facts=True, pair_embeddings=dev_tf.pair, progress=progress,
                                     desc="subgraphs (dev)")
        secs["subgraphs"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        uniq = np.unique(np.concatenate([train_g.node_store_id, dev_g.node_store_id]))
        node_emb.compute(uniq, progress=progress)
        node_emb.save()
        node_table = torch.from_numpy(node_emb.get(uniq))
        train_rows = np.searchsorted(uniq, train_g.node_store_id)
        dev_rows = np.searchsorted(uniq, dev_g.node_store_id)
        secs["node_embeddings"] = round(time.perf_counter() - t0, 1)
        graph_stats = {"train": train_g.info, "dev": dev_g.info, "distinct_nodes": int(len(uniq))}

    def subset(tf: TextFeatures, idx: np.ndarray) -> TextFeatures:
        return TextFeatures(tf.pair[idx], tf.choice[idx], tf.mask[idx], tf.labels[idx])

    def subset_graphs(g: GraphFeatures | None, idx: np.ndarray) -> GraphFeatures | None:
        if g is None:
            return None
        pairs = (idx[:, None] * g.num_choices + np.arange(g.num_choices)[None, :]).reshape(-1)
        nsel, ncount = _ranges(g.node_ptr, pairs)
        esel, ecount = _ranges(g.edge_ptr, pairs)
        return GraphFeatures(g.num_choices, np.concatenate([[0], np.cumsum(ncount)]).astype(np.int64),
                             g.node_store_id[nsel], g.node_origin[nsel], g.node_relevance[nsel],
                             np.concatenate([[0], np.cumsum(ecount)]).astype(np.int64), g.edge_index[:, esel],
                             g.edge_type[esel], g.num_relations,
                             [g.choice_concepts[p] for p in pairs], [g.facts[p] for p in pairs], dict(g.info))

    def split_of(tf, g, rows, idx):
        if idx is None:
            return _make_split(tf, g, rows)
        sg = subset_graphs(g, idx)
        r = None
        if g is not None:
            pairs = (idx[:, None] * g.num_choices + np.arange(g.num_choices)[None, :]).reshape(-1)
            r = rows[_ranges(g.node_ptr, pairs)[0]]
        return _make_split(subset(tf, idx), sg, r)

    results: dict[str, Any] = {
        "dataset": "commonsenseqa", "train_file": str(train_path), "dev_file": str(dev_path),
        "n_train": len(train_recs), "n_val": int(n_val), "n_dev": len(dev_recs), "limit": limit,
        "dev_limit": dev_limit, "kg": _kg_name(kg) if "kg" in variants else None,
        "encoder": getattr(encoder, "name", type(encoder).__name__), "torch_threads": torch.get_num_threads(),
        "feature_seconds": secs, "graph_stats": graph_stats, "variants": {},
    }
    for v in variants:
        use_g = v == "kg"
        fit = split_of(train_tf, train_g if use_g else None, train_rows, fit_idx)
        val = split_of(train_tf, train_g if use_g else None, train_rows, val_idx) if n_val else None
        dev = split_of(dev_tf, dev_g if use_g else None, dev_rows, None)
        t0 = time.perf_counter()
        model, hist = train_variant(v, fit, val, cfg, text_dim=int(encoder.dim),
                                    node_table=node_table if use_g else None, progress=progress)
        train_s = time.perf_counter() - t0
        scores = predict(model, dev, node_table if use_g else None)
        acc = _accuracy(scores, dev.labels.numpy())
        _write_predictions(out / f"predictions_{v}.jsonl", dev_recs, scores, dev_g if use_g else None)
        settings = {k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "hidden", "dropout",
                                                 "val_fraction", "seed")}
        settings["text_features"] = "[emb(question + choice), emb(choice), product]"
        if use_g:
            settings.update({k: getattr(cfg, k) for k in ("gnn_kind", "gnn_hidden", "gnn_layers", "gnn_heads",
                                                          "budget", "method")})
        results["variants"][v] = {
            "accuracy": round(acc, 4), "n": len(dev_recs), "correct": int(round(acc * len(dev_recs))),
            "train_seconds": round(train_s, 1), "best_epoch": hist["best_epoch"],
            "val_accuracy": hist["val_accuracy"], "history": hist["history"],
            "parameters": int(sum(p.numel() for p in model.parameters())), "settings": settings,
        }
        logger.info("%s: dev accuracy %.4f (%d questions)", v, acc, len(dev_recs))
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "results.md").write_text(_markdown(results), encoding="utf-8")
    return results



