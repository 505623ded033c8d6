"""``ravlm bench builtin --ablate``: variants of one recipe trained and evaluated, one table."""

import json
import subprocess
import sys

import pytest

from ravlm_graph.evaluation.ablation import ABLATIONS, DEFAULT_VARIANTS, ablation_table, run_ablation, variant_recipe

RECIPE = {
    "dataset": "builtin",
    "kg": "bundled:cn100k+fvqa",
    "budget": 24,
    "retrieval": {"method": "ppr"},
    "model": {"fusion": "graph_tokens", "trunk_layers": 1, "train_text_layers": 1, "image_size": 16,
              "vision_channels": [8, 16], "vision_grid": 2, "num_graph_tokens": 4, "gnn_hidden": 32,
              "gnn_layers": 1, "seed_relation_keys": True},
    "train": {"epochs": 3, "batch_size": 8, "lr": 1e-3, "seed": 0},
    "detector": {"epochs": 1},
}


def test_variant_recipe_changes_one_thing(tmp_path):
    r = variant_recipe(RECIPE, "verbalized", tmp_path, epochs=1, limit=10)
    assert r.model["fusion"] == "verbalized" and r.model["trunk_layers"] == 1
    assert r.train["epochs"] == 1 and r.limit == 10 and r.detector is None
    assert r.out_dir == str(tmp_path / "verbalized" / "train")
    assert r.retrieval.budget == 24  # the recipe's top-level budget, moved into the retrieval config
    assert RECIPE["model"]["fusion"] == "graph_tokens" and RECIPE["train"]["epochs"] == 3  # untouched
    s = variant_recipe(RECIPE, "scratch_trunk", tmp_path, detector_from="det")
    assert s.model["trunk_init"] == "scratch" and s.model["fusion"] == "graph_tokens"
    assert s.detector == {"from": "det"}
    with pytest.raises(ValueError, match="unknown ablation variant 'magic'"):
        variant_recipe(RECIPE, "magic", tmp_path)


def test_variants_come_from_the_fusion_registry():
    from ravlm_graph.nn.fusion import FUSIONS

    fusions = {change["fusion"] for change in ABLATIONS.values() if "fusion" in change}
    assert fusions == set(FUSIONS)
    assert ABLATIONS["no_kg"] == {"fusion": "none"} and DEFAULT_VARIANTS[0] == "no_kg"
    assert set(DEFAULT_VARIANTS) >= {"no_kg", "verbalized", "graph_tokens", "both", "xattn", "concat", "product",
                                     "attention"}


@pytest.mark.slow
def test_run_ablation_trains_evaluates_and_resumes(tmp_path, caplog):
    kw = dict(variants=["no_kg", "graph_tokens"], splits=["test_iid"], epochs=1, limit=24, eval_limit=12,
              progress=False, kg_cache=str(tmp_path / "stores"))
    res = run_ablation(RECIPE, tmp_path / "abl", **kw)
    assert list(res["variants"]) == ["no_kg", "graph_tokens"]
    for name, fusion in (("no_kg", "none"), ("graph_tokens", "graph_tokens")):
        e = res["variants"][name]
        m = e["results"]["test_iid"]
        assert m["n"] == 12 and 0.0 <= m["accuracy"] <= 1.0
        # an engine without the graph retrieves nothing: no coverage to report
        assert m["coverage"] is None if fusion == "none" else 0.0 <= m["coverage"] <= 1.0
        cfg = json.loads((tmp_path / "abl" / name / "train" / "final" / "config.json").read_text())
        assert cfg["fusion"] == fusion
        assert (tmp_path / "abl" / name / "predictions.jsonl").exists()
    # no KG: no subgraph, so only yes/no questions count as covered; the KG variant retrieves one
    rows = [json.loads(l) for l in (tmp_path / "abl" / "graph_tokens" / "predictions.jsonl").open()]
    assert any(r["subgraph_size"] > 0 for r in rows)
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| no_kg | fusion=none |" in table and "| graph_tokens | fusion=graph_tokens |" in table
    assert table == ablation_table(json.loads((tmp_path / "abl" / "ablation.json").read_text()))
    # A second run with the same settings reuses the results instead of training again.
    before = (tmp_path / "abl" / "no_kg" / "train" / "final" / "model.safetensors").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="ravlm_graph.evaluation.ablation"):
        again = run_ablation(RECIPE, tmp_path / "abl", **kw)
    assert "reused" in caplog.text
    assert again["variants"]["no_kg"]["results"] == res["variants"]["no_kg"]["results"]
    assert (tmp_path / "abl" / "no_kg" / "train" / "final" / "model.safetensors").stat().st_mtime_ns == before


def test_run_ablation_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown ablation variant 'nokg'"):
        run_ablation(RECIPE, tmp_path, variants=["nokg"])
    with pytest.raises(ValueError, match="built-in benchmark"):
        run_ablation({**RECIPE, "dataset": "fvqa"}, tmp_path)
    with pytest.raises(FileNotFoundError, match="no such detector folder"):
        run_ablation(RECIPE, tmp_path, detector_from=str(tmp_path / "missing"))


def test_cli_ablate_needs_a_recipe_or_engine(tmp_path):
    def ravlm(*args):
        return subprocess.run([sys.executable, "-m", "ravlm_graph", "bench", "builtin", *args],
                              capture_output=True, text=True)

    r = ravlm("--ablate", "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "give --recipe FILE or --model ENGINE" in r.stderr
    r = ravlm("--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "--model is required" in r.stderr
    r = ravlm("--model", "x", "--epochs", "2", "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "--epochs only applies with --ablate" in r.stderr
    (tmp_path / "r.json").write_text(json.dumps(RECIPE))
    r = ravlm("--ablate", "--recipe", str(tmp_path / "r.json"), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "--given-entities" in r.stderr


def test_run_ablation_refuses_a_generative_recipe(tmp_path):
    # The fusion variants were merged into a Hugging Face backbone's model section, which failed
    # on training the first variant with "Recipe.model: unknown fields ['fusion']".
    gen = {**RECIPE, "model": {"backbone": {"kind": "vision_encoder_decoder", "path": str(tmp_path / "ved")}}}
    with pytest.raises(ValueError, match=r"--ablate: the variants change the pointer model's fusion .*\(kind "
                                         r"'vision_encoder_decoder'.*\"use_graph\": false"):
        run_ablation(gen, tmp_path / "out", variants=["no_kg"])
    assert not (tmp_path / "out").exists()
