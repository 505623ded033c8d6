"""Benchmark runner behind ``ravlm bench``: predictions with evidence, results, tables, plots.

Outputs in ``--out DIR``:

* ``predictions.jsonl`` — one line per question: the prediction, whether it is right,
  the valid answers, and the evidence (entities, subgraph size, facts, copy probability);
* ``results.json`` — per split: ``accuracy`` (= ``top1``), ``top3``, ``coverage`` (share of
  questions whose answer concept is in the retrieved subgraph; yes/no questions count
  as covered; null for an engine without the graph, which retrieves nothing), ``n``, and
  accuracy per relation and per question type;
* ``results.md`` — the same as a markdown table;
* ``accuracy_by_split.png``, ``accuracy_by_relation.png``, ``coverage_by_budget.png`` — when
  matplotlib is installed.

``results.json`` also holds ``_coverage_by_budget``: for each node budget, the share of
questions whose answer is in the subgraph retrieved from the same entities (retrieval
only, no model), over all splits — how much of the answer space a budget reaches.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Collection, Sequence
from ravlm_graph.recipes import builtin_entities, fvqa_entities
from ravlm_graph.recipes import record_image
from ravlm_graph.types import Entity
from ravlm_graph.datasets import load_builtin
from ravlm_graph.datasets.builtin import default_builtin_root
from ravlm_graph.evaluation.checks import check_limit, check_out_dir
from ravlm_graph.engine import KnowledgeVQA
from ravlm_graph.datasets import load_fvqa, unknown_relations
from ravlm_graph.evaluation.metrics import exact_match, soft_score_accuracy, vqa_accuracy
from ravlm_graph.models.hf_backbones import answer_text

log = logging.getLogger(__name__)


def _entity_fn(dataset: str, use_detector: bool):

    if dataset == "fvqa":
        return fvqa_entities
    return None if use_detector else builtin_entities


def _generated_scores(prediction: str, record, valid: set) -> tuple[float, float]:
    """(exact match, VQA accuracy) of a generated answer.

    Exact match: the normalised text equals a valid answer (concepts read as text). VQA
    accuracy: the official VQA score (min(#matching humans / 3, 1), averaged over the ten
    leave-one-out subsets) over the record's raw human answers when it has several (VQAv2,
    OK-VQA, A-OKVQA direct answers), else its soft score table (LXMERT-style labels), else
    the exact match. An answer only one annotator gave scores 0.3, never 1, whatever the
    exact-match set accepts (A-OKVQA's multiple-choice answer included)."""
    texts = [answer_text(v) for v in valid]
    em = exact_match(prediction, texts) if texts else 0.0
    scores = getattr(record, "answer_scores", None)
    if scores:  # the loaders' table: the VQA score of each human answer, or LXMERT's labels
        return em, soft_score_accuracy(prediction, {answer_text(k): v for k, v in scores.items()})
    raw = list(getattr(record, "answers", ()) or ())
    if len(raw) >= 3:
        return em, vqa_accuracy(prediction, raw)
    return em, em


def run_split(engine, records: Sequence[Any], entity_fn: Callable | None, batch_size: int = 16,
              progress: bool = True, max_new_tokens: int | None = None,
              num_beams: int | None = None) -> tuple[dict, list[dict]]:
    """Answer every record; returns (metrics, per-question rows).

    A generative engine is scored by exact match of its text (``accuracy``) and VQA accuracy
    (``vqa_accuracy``); ``max_new_tokens`` / ``num_beams`` set its decoding."""
    from tqdm import tqdm


    rows = []
    generative = bool(getattr(engine, "generative", False))
    vqa_sum = 0.0
    per_rel: dict[str, list[int]] = defaultdict(list)
    per_type: dict[str, list[int]] = defaultdict(list)
    hits = top3 = cov = 0
    any_graph = False  # an engine without the graph retrieves nothing: its coverage is undefined
    t0 = time.perf_counter()
    for s in tqdm(range(0, len(records), batch_size), desc="answering", disable=not progress, leave=False):
        chunk = records[s:s + batch_size]
        images = [record_image(r) for r in chunk]
        ents = None if entity_fn is None else [entity_fn(r) for r in chunk]
        kw = {"max_new_tokens": max_new_tokens, "num_beams": num_beams} if generative else {}
        answers = engine.answer_batch(images, [r.question for r in chunk], ents, top_k=3, **kw)
        for r, a in zip(chunk, answers):
            valid = set(r.answer_concepts) if getattr(r, "answer_concepts", None) else set(r.answers)
            if generative:
                em, vqa = _generated_scores(a.answer, r, valid)
                ok, in3 = em > 0, em > 0
            else:
                ok = a.answer in valid
                in3 = any(c in valid for c, _ in a.candidates[:3])
                vqa = float(ok)
            vqa_sum += vqa
            any_graph = any_graph or a.subgraph is not None
            covered = (valid <= {"yes", "no"}) or (a.subgraph is not None and
                                                   any(n in valid for n in a.subgraph.node_names))
            hits += ok
            top3 += in3
            cov += covered
            rel = r.extra.get("relation") or (r.facts[0].relation if r.facts else "unknown")
            per_rel[rel].append(int(ok))
            per_type[r.extra.get("question_type", "all")].append(int(ok))
            row = {"qid": r.qid, "question": r.question, "prediction": a.answer, "correct": bool(ok),
                   "vqa_accuracy": round(vqa, 4),
                   "answers": sorted(valid), "relation": rel, **{k: v for k, v in a.to_dict().items()
                                                                  if k not in ("question", "answer")}}
            rows.append(row)
    n = max(1, len(records))
    metrics = {"accuracy": hits / n, "top1": hits / n, "top3": top3 / n,
               "coverage": cov / n if any_graph or not records else None, "n": len(records),
               "exact_match": hits / n, "vqa_accuracy": vqa_sum / n, "generative": generative,
               "per_relation": {k: sum(v) / len(v) for k, v in sorted(per_rel.items())},
               "per_question_type": {k: sum(v) / len(v) for k, v in sorted(per_type.items())},
               "seconds": round(time.perf_counter() - t0, 2)}
    return metrics, rows


DEFAULT_BUDGETS = (16, 32, 64, 96, 128, 192)


def coverage_by_budget(retriever, rows: Sequence[dict], budgets: Sequence[int] = DEFAULT_BUDGETS,
                       progress: bool = True) -> dict[str, float]:
    """Answer coverage of the retrieved subgraph per node budget, from the rows' own entities.

    The image entities each question was answered with (detected or given) are the seeds,
    the question is grounded again by the retriever; yes/no questions count as covered.
    Returns ``{str(budget): share}``.
    """
    from tqdm import tqdm


    out = {}
    for b in tqdm(budgets, desc="coverage by budget", disable=not progress, leave=False):
        cov = 0
        for row in rows:
            valid = set(row["answers"])
            if valid <= {"yes", "no"}:
                cov += 1
                continue
            ents = [Entity(e["concept"], float(e["score"]), "image",
                           box=tuple(e["box"]) if e.get("box") else None, label=e.get("label"))
                    for e in row.get("entities", []) if e.get("origin") == "image"]
            sg = retriever.retrieve(ents, row["question"], budget=int(b))
            cov += any(n in valid for n in sg.node_names)
        out[str(int(b))] = cov / max(1, len(rows))
    return out


def write_outputs(out: Path, results: dict, rows: list[dict], title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(results_table(results, title))
    try:
        _plots(out, results)
    except ImportError:
        log.info("matplotlib not installed: no plots")


def _pct(v) -> str:
    """A share as a percentage with one decimal; "–" for None (e.g. the coverage of an engine
    without the graph)."""
    return "–" if v is None else f"{100 * v:.1f}"


def results_table(results: dict, title: str) -> str:
    gen = any(isinstance(m, dict) and m.get("generative") for m in results.values())
    if gen:
        lines = [f"### {title}", "", "| split | n | exact match | VQA accuracy | coverage |", "|---|---:|---:|---:|---:|"]
    else:
        lines = [f"### {title}", "", "| split | n | accuracy | top-3 | coverage |", "|---|---:|---:|---:|---:|"]
    for split, m in results.items():
        if not isinstance(m, dict) or "accuracy" not in m:
            continue
        second = m.get("vqa_accuracy", m["top3"]) if gen else m["top3"]
        lines.append(f"| {split} | {m['n']} | {100 * m['accuracy']:.1f} | {100 * second:.1f} | "
                     f"{_pct(m['coverage'])} |")
    notes = [f"{split}: {m['n_unknown_relation']} questions with a relation the loader does not know "
             f"({', '.join(f'{r} x{n}' for r, n in m['unknown_relations'].items())}); evaluated all the same"
             for split, m in results.items() if isinstance(m, dict) and m.get("n_unknown_relation")]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _plots(out: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s, m in results.items() if isinstance(m, dict) and "accuracy" in m]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(splits, [100 * results[s]["accuracy"] for s in splits], color="#4c72b0")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(out / "accuracy_by_split.png", dpi=100)
    plt.close(fig)
    rels = sorted({r for s in splits for r in results[s]["per_relation"]})
    if rels:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        w = 0.8 / max(1, len(splits))
        for i, s in enumerate(splits):
            pr = results[s]["per_relation"]
            ax.bar([j + i * w for j in range(len(rels))], [100 * pr.get(r, 0) for r in rels], width=w, label=s)
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(rels))], rels, rotation=35, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "accuracy_by_relation.png", dpi=100)
        plt.close(fig)
    cb = results.get("_coverage_by_budget")
    if cb:
        fig, ax = plt.subplots(figsize=(5, 3))
        xs = sorted(int(b) for b in cb)
        ax.plot(xs, [100 * cb[str(b)] for b in xs], marker="o")
        ax.set_xlabel("subgraph budget (nodes)")
        ax.set_ylabel("answer coverage (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "coverage_by_budget.png", dpi=100)
        plt.close(fig)


def bench_builtin(model: str, out: str, splits: Sequence[str] | None = None, data: str | None = None,
                  use_detector: bool = True, limit: int | None = None, progress: bool = True,
                  kg_cache: str | None = None, kg: str | None = None,
                  budgets: Sequence[int] | None = DEFAULT_BUDGETS, max_new_tokens: int | None = None,
                  num_beams: int | None = None) -> dict:
    """Evaluate an engine on the built-in benchmark's test splits (``kg``: a store folder
    to use instead of the engine's own KG; ``budgets``: node budgets of the coverage curve,
    None or empty for none)."""

    out_dir = check_out_dir(out)
    limit = check_limit(limit)
    splits = list(splits or ("test_iid", "test_unseen_facts", "test_other_style"))
    # Every split is read (and checked) before the engine loads.
    records = {}
    for sp in splits:
        recs = load_builtin(sp, root=data)
        if not recs:
            raise ValueError(f"no questions in {Path(data) if data is not None else default_builtin_root()}"
                             f"/{sp}.jsonl")
        records[sp] = recs[:limit] if limit else recs
    engine = KnowledgeVQA.from_pretrained(model, kg=kg, detector=use_detector, kg_cache=kg_cache)
    if use_detector and engine.detector is None:
        log.warning("%s has no detector: using the scenes' annotated objects", model)
        use_detector = False
    results, all_rows = {}, []
    for sp, recs in records.items():
        m, rows = run_split(engine, recs, _entity_fn("builtin", use_detector), progress=progress,
                            max_new_tokens=max_new_tokens, num_beams=num_beams)
        for r in rows:
            r["split"] = sp
        results[sp] = m
        all_rows += rows
        log.info("%s: accuracy %.1f %%, coverage %s %% (n=%d)", sp, 100 * m["accuracy"], _pct(m["coverage"]), m["n"])
    if budgets and engine.retriever is not None and engine.model.config.uses_graph:
        results["_coverage_by_budget"] = coverage_by_budget(engine.retriever, all_rows, budgets, progress)
    kind = _model_kind(engine)
    results["_meta"] = {"model": str(model), "detector": use_detector, "fusion": kind,
                        "max_new_tokens": max_new_tokens, "num_beams": num_beams}
    write_outputs(out_dir, results, all_rows, f"built-in benchmark — {model} ({kind})")
    return results


def bench_fvqa(model: str, questions: str, facts: str, out: str, limit: int | None = None,
               progress: bool = True, kg_cache: str | None = None, kg: str | None = None,
               budgets: Sequence[int] | None = DEFAULT_BUDGETS, max_new_tokens: int | None = None,
               num_beams: int | None = None, qids: Collection[str] | None = None) -> dict:
    """Evaluate on FVQA questions in given-entities mode (visual concept + distractors as image entities).

    ``qids``: evaluate only these question ids (e.g. the questions a training run held out,
    see :func:`held_out_qids`); an id set that matches no question is an error.
    """

    out_dir = check_out_dir(out)
    limit = check_limit(limit)
    loaded = load_fvqa(questions, facts)
    if not loaded:
        raise ValueError(f"no questions in {questions}")
    recs = [r for r in loaded if r.answer_concepts]
    if not recs:
        raise ValueError(f"no questions with an answer concept (from a supporting fact) in {questions}")
    if qids is not None:
        wanted = {str(q) for q in qids}
        recs = [r for r in recs if str(r.qid) in wanted]
        if not recs:
            raise ValueError(f"none of the {len(wanted)} question ids given is in {questions}")
    if limit:
        recs = recs[:limit]
    engine = KnowledgeVQA.from_pretrained(model, kg=kg, detector=False, kg_cache=kg_cache)
    m, rows = run_split(engine, recs, _entity_fn("fvqa", False), progress=progress, max_new_tokens=max_new_tokens,
                        num_beams=num_beams)
    # Relations the loader could not map: counted here (the loader warned once).
    m["unknown_relations"] = unknown_relations(recs)
    m["n_unknown_relation"] = sum(m["unknown_relations"].values())
    results = {"fvqa": m, "_meta": {"model": str(model), "setting": "given entities (no images)",
                                    "questions": str(questions), "n_questions": len(recs),
                                    "subset": "given question ids" if qids is not None else "all"}}
    if budgets and engine.retriever is not None and engine.model.config.uses_graph:
        results["_coverage_by_budget"] = coverage_by_budget(engine.retriever, rows, budgets, progress)
    write_outputs(out_dir, results, rows, f"FVQA (given-entities mode) — {model}")
    return results


def held_out_qids(path: str | Path) -> list[str]:
    """Question ids a training run held out: ``RUN/summary.json`` (or that file) written by
    ``ravlm train``, or a JSON file holding a list of ids."""

    p, data = _read_json_in(path, "summary.json", "not found (give a training run folder or a JSON list of question ids)")
    ids = data.get("holdout_qids") if isinstance(data, dict) else data
    if not isinstance(ids, list) or not ids:
        raise ValueError(f"{p}: expected 'holdout_qids' (a training summary) or a non-empty list of question ids")
    return [str(q) for q in ids]


def _model_kind(engine) -> str:
    """What answers: the pointer model's fusion, or the generative backbone's kind."""
    if getattr(engine, "generative", False):
        return f"generative {engine.model.config.backbone.kind}" + ("" if engine.model.config.use_graph else ", no KG")
    return engine.model.config.fusion


def load_results(path: str | Path) -> dict:
    """``results.json`` of a ``ravlm bench`` run (a folder or the file itself)."""
    return _read_json_in(path, "results.json", "no results file (run `ravlm bench ... --out DIR` first)")[1]


def _read_json_in(path: str | Path, name: str, missing: str) -> tuple[Path, Any]:
    """(file, parsed JSON) of ``path``, or of ``path/name`` when ``path`` is a folder."""

    p = Path(path)
    if p.is_dir():
        p = p / name
    try:
        return p, json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: {missing}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from e


def comparison_table(runs: dict[str, dict], metric: str = "accuracy") -> str:
    """Markdown table of one metric per split (rows) and run (columns)."""
    splits = [s for s in next(iter(runs.values())) if not s.startswith("_")]
    head = "| split | " + " | ".join(runs) + " |\n|---|" + "---:|" * len(runs) + "\n"
    rows = ["| " + s + " | " + " | ".join(_pct(r[s].get(metric)) if s in r else "–" for r in runs.values())
            + " |" for s in splits]
    return head + "\n".join(rows) + "\n"


def plot_comparison(runs: dict[str, dict], metric: str = "accuracy", ax=None, by: str = "split"):
    """Grouped bars: ``by="split"`` (metric per split) or ``by="relation"`` (accuracy per relation,
    averaged over splits). Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    first = next(iter(runs.values()))
    # Runs may cover different splits (one also measured on val): compare the shared ones.
    splits = [s for s in first if not s.startswith("_") and all(s in r for r in runs.values())]
    if not splits:
        raise ValueError(f"plot_comparison: the runs {list(runs)} share no split")
    if by == "split":
        groups = splits
        values = {n: [100 * (r[s][metric] or 0.0) for s in splits] for n, r in runs.items()}  # None: no bar
    else:
        groups = sorted({rel for r in runs.values() for s in splits for rel in r[s]["per_relation"]})
        values = {n: [100 * sum(r[s]["per_relation"].get(g, 0) for s in splits) / len(splits) for g in groups]
                  for n, r in runs.items()}
    w = 0.8 / len(runs)
    for i, (n, v) in enumerate(values.items()):
        ax.bar([j + i * w for j in range(len(groups))], v, width=w, label=n)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(groups))], groups, rotation=30, ha="right")
    ax.set_ylabel(f"{metric if by == 'split' else 'accuracy'} (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    return ax
