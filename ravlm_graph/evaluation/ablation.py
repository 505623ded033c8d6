"""Ablations behind ``ravlm bench builtin --ablate``: one recipe, several fusions, one table.

Each variant is the recipe with one change to its model configuration, trained by the
same :func:`~ravlm_graph.recipes.train_recipe` (same data, seed and budget) and then
evaluated like any engine. All variants share one detector, so that they differ only in
how (and whether) the knowledge graph reaches the answer.

Outputs in ``OUT``:

* ``OUT/<variant>/train/final`` — the trained engine; ``OUT/<variant>/results.json`` etc. —
  its benchmark outputs (as ``ravlm bench builtin`` writes them);
* ``OUT/ablation.json`` — per variant: the change, the metrics per split, training time;
* ``OUT/ablation.md`` — accuracy (and coverage) per variant and split as a markdown table;
* ``OUT/ablation.png`` — grouped bars (when matplotlib is installed).

A variant whose results already exist with the same settings is not trained again, so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence
from ravlm_graph.nn.fusion import FUSIONS
from ravlm_graph.recipes import Recipe, as_recipe, train_recipe
from ravlm_graph.evaluation.bench import bench_builtin
from ravlm_graph.evaluation.bench import plot_comparison

log = logging.getLogger(__name__)

def _variants() -> dict[str, dict]:
    """One variant per registered fusion kind (named by the kind, or its ``variant`` name),
    the kinds without a graph first; then the non-fusion variants."""
    kinds = sorted(FUSIONS, key=lambda n: (FUSIONS.get(n).uses_graph, n))
    out = {(FUSIONS.get(n).variant or n): {"fusion": n} for n in kinds}
    # the recipe's own fusion with the text trunk re-initialised: what the pretrained MiniLM brings
    out["scratch_trunk"] = {"trunk_init": "scratch"}
    return out


#: variant name -> changes to the recipe's ``model`` section
ABLATIONS: dict[str, dict] = _variants()
#: every fusion variant
DEFAULT_VARIANTS: tuple[str, ...] = tuple(n for n, change in ABLATIONS.items() if "fusion" in change)


def variant_recipe(recipe: Recipe | dict, name: str, out: Path, *, epochs: int | None = None,
                   limit: int | None = None, detector_from: str | None = None) -> Recipe:
    """The recipe of one ablation variant (a copy; ``recipe`` is untouched)."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation variant {name!r}; expected some of {sorted(ABLATIONS)}")
    recipe = as_recipe(recipe)
    train = dict(recipe.train)
    if epochs is not None:
        train["epochs"] = int(epochs)
    return recipe.replace(model={**recipe.model, **ABLATIONS[name]}, out_dir=str(out / name / "train"), train=train,
                          limit=int(limit) if limit is not None else recipe.limit,
                          detector={"from": detector_from} if detector_from else None)


def run_ablation(recipe: Recipe | dict, out: str | Path, *, variants: Sequence[str] | None = None,
                 splits: Sequence[str] | None = None, epochs: int | None = None, limit: int | None = None,
                 detector_from: str | None = None, eval_limit: int | None = None, data: str | None = None,
                 progress: bool = True, kg_cache: str | None = None) -> dict:
    """Train and evaluate each variant of ``recipe`` on the built-in benchmark.

    Args:
        recipe: a built-in benchmark recipe (see :mod:`ravlm_graph.recipes`).
        out: output folder.
        variants: names from :data:`ABLATIONS` (default :data:`DEFAULT_VARIANTS`).
        splits: test splits (default all three).
        epochs, limit: override the recipe's epochs / number of training questions (quicker runs).
        detector_from: a layout-detector folder shared by all variants; None evaluates every
            variant with the scenes' annotated objects (given-entities mode).
        eval_limit: evaluate only the first N questions of each split.
    """
    recipe = as_recipe(recipe)
    if recipe.dataset != "builtin":
        raise ValueError("--ablate runs on the built-in benchmark; the recipe's dataset is "
                         f"{recipe.dataset!r}")
    if recipe.generative:
        raise ValueError(f"--ablate: the variants change the pointer model's fusion (and trunk); this recipe's "
                         f"model.backbone is a Hugging Face backbone (kind {recipe.model['backbone']['kind']!r}), "
                         f"which has neither: train the same recipe with \"use_graph\": false (as "
                         f"configs/builtin_generative_nokg.json does) and bench both engines instead")
    variants = list(variants or DEFAULT_VARIANTS)
    for v in variants:
        if v not in ABLATIONS:
            raise ValueError(f"unknown ablation variant {v!r}; expected some of {sorted(ABLATIONS)}")
    if detector_from is not None and not Path(detector_from).is_dir():
        raise FileNotFoundError(f"{detector_from}: no such detector folder")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table: dict[str, dict] = {}
    for i, name in enumerate(variants):
        vr = variant_recipe(recipe, name, out, epochs=epochs, limit=limit, detector_from=detector_from)
        settings = {"variant": name, "change": ABLATIONS[name], "model": vr.model, "train": vr.train,
                    "limit": vr.limit, "detector": detector_from, "splits": list(splits or []),
                    "eval_limit": eval_limit}
        done = out / name / "ablation_variant.json"
        if done.exists():
            try:
                prev = json.loads(done.read_text())
            except json.JSONDecodeError:
                prev = {}
            if prev.get("settings") == settings:
                log.info("[%d/%d] %s: results exist with the same settings, reused", i + 1, len(variants), name)
                table[name] = prev
                continue
        log.info("[%d/%d] %s: training (%s)", i + 1, len(variants), name, ABLATIONS[name])
        t0 = time.perf_counter()
        summary = train_recipe(vr, progress=progress)
        t_train = time.perf_counter() - t0
        res = bench_builtin(summary["engine"], str(out / name), splits=splits, data=data,
                            use_detector=detector_from is not None, limit=eval_limit, progress=progress,
                            kg_cache=kg_cache, budgets=None)
        entry = {"settings": settings, "results": {k: v for k, v in res.items() if not k.startswith("_")},
                 "train_minutes": round(t_train / 60, 1), "val_accuracy": summary.get("val_accuracy")}
        done.write_text(json.dumps(entry, indent=1))
        table[name] = entry
    result = {"variants": table, "recipe": recipe.to_dict(), "detector": detector_from,
              "entities": "detected" if detector_from else "given (annotated objects)"}
    (out / "ablation.json").write_text(json.dumps(result, indent=1))
    (out / "ablation.md").write_text(ablation_table(result))
    try:
        _plot(out, result)
    except ImportError:
        log.info("matplotlib not installed: no plot")
    return result


def ablation_table(result: dict) -> str:
    """Markdown: one row per variant, accuracy (coverage) per split, training minutes."""
    variants = result["variants"]
    if not variants:
        return "(no variants)\n"
    splits = list(next(iter(variants.values()))["results"])
    lines = [f"Entities: {result.get('entities', '?')}. Cells: accuracy % (subgraph coverage %).", "",
             "| variant | change | " + " | ".join(splits) + " | train min |",
             "|---|---|" + "---:|" * len(splits) + "---:|"]
    for name, e in variants.items():
        change = ", ".join(f"{k}={v}" for k, v in e["settings"]["change"].items())
        cells = []
        for s in splits:
            m = e["results"].get(s)
            cov = m and m.get("coverage")
            cells.append("–" if m is None else f"{100 * m['accuracy']:.1f} ({'–' if cov is None else f'{100 * cov:.1f}'})")
        lines.append(f"| {name} | {change} | " + " | ".join(cells) + f" | {e['train_minutes']} |")
    return "\n".join(lines) + "\n"


def _plot(out: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    runs = {n: e["results"] for n, e in result["variants"].items()}
    if not runs:
        return
    fig, ax = plt.subplots(figsize=(9, 3.5))
    plot_comparison(runs, ax=ax)
    ax.set_title("ablation: accuracy per split")
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=100)
    plt.close(fig)
