"""Recipes: a typed Recipe, checked on load, one owner per setting."""

import json
from pathlib import Path

import pytest

from ravlm_graph.recipes import Recipe, load_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["builtin.json", "builtin_nokg.json", "fvqa.json", "builtin_generative.json",
                                  "builtin_generative_nokg.json"])
def test_committed_recipes_load(name):
    r = load_recipe(ROOT / "configs" / name)
    # the FVQA recipe retrieves 112 nodes (95 % answer coverage held out); the others 96
    assert isinstance(r, Recipe) and r.retrieval.budget == (112 if name == "fvqa.json" else 96)
    assert r.retrieval.method == "ppr"
    if r.generative:
        assert r.generative_config(40).num_relations == 64 and r.output_dir.name == Path(r.out_dir).name
    else:
        cfg = r.model_config(["yes", "no", "apple"], 40)
        assert cfg.answer_vocab == ["yes", "no", "apple"] and cfg.num_relations == 64
    assert r.train_config().out_dir == r.out_dir
    if name == "fvqa.json":
        assert r.model["fact_scorer"] is True and r.model["fact_features"] is True
    assert Recipe.from_dict(r.to_dict()) == r  # round trip through JSON-safe dicts
    json.dumps(r.to_dict())


def test_shipped_engine_recipes_with_a_top_level_budget_still_load():
    r = load_recipe(ROOT / "ravlm_graph" / "data" / "engine_builtin" / "recipe.json")
    assert r.retrieval.budget == 96  # the budget has one owner: the retrieval config
    with pytest.raises(ValueError, match=r"'budget' \(10\) and 'retrieval.budget' \(20\) disagree"):
        Recipe.from_dict({"budget": 10, "retrieval": {"budget": 20}})


@pytest.mark.parametrize("body, match", [
    ({"budjet": 5}, r"r.json: unknown fields \['budjet'\]; expected some of"),
    ({"model": {"gnn_hidden": 1000000}}, r"r.json: Recipe.model: KnowledgeVQAConfig.gnn_hidden: expected an integer "
                                         r"<= 16384, found 1000000"),
    ({"model": {"fusion": "magic"}}, r"KnowledgeVQAConfig.fusion: expected one of \(.*\), found 'magic'"),
    ({"model": {"answer_vocab": ["x"]}}, r"Recipe.model: \['answer_vocab'\] come from the training data"),
    ({"retrieval": {"budget": -1}}, r"r.json: Recipe.retrieval: RetrievalConfig.budget: expected a value >= 0"),
    ({"retrieval": {"method": "bfs"}}, r"RetrievalConfig.method: expected one of"),
    ({"train": {"epochs": 0}}, r"TrainConfig.epochs: expected a positive integer, found 0"),
    ({"detector": {"epoch": 2}}, r"Recipe.detector: unknown fields \['epoch'\]"),
    ({"detector": {"scorer": "fcn"}}, r"Recipe.detector.scorer: expected one of \('crops', 'cell_net'\), found 'fcn'"),
    ({"detector": {"extra_styles": ["twemoji", "noto"]}},
     r"Recipe.detector.extra_styles: 'noto' is the built-in benchmark's other \(test\) style"),
    ({"detector": {"init_from": 3}}, r"Recipe.detector.init_from: expected a detector folder path, found 3"),
    ({"detector": {"extra_styles": ["comic"]}}, r"extra_styles: unknown style 'comic'; expected some of"),
    ({"detector": {"augment": "no"}}, r"Recipe.detector.augment: expected true or false, found 'no'"),
    ({"detector": {"backbone": "vgg"}}, r"Recipe.detector.backbone: expected one of \('efficientnet_lite0',\), found 'vgg'"),
    ({"detector": {"extra_styles": "openmoji"}}, r"extra_styles: expected a non-empty list of style names"),
    ({"dataset": "vqa"}, r"Recipe.dataset: expected one of \('builtin', 'fvqa', 'okvqa', 'aokvqa'\), found 'vqa'"),
])
def test_bad_recipes_name_the_file_and_the_key(tmp_path, body, match):
    p = tmp_path / "r.json"
    p.write_text(json.dumps(body))
    with pytest.raises(ValueError, match=match):
        load_recipe(p)


def test_recipe_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"dataset":\n "builtin",,}')
    with pytest.raises(ValueError, match=r"bad.json:2: recipe is not valid JSON"):
        load_recipe(tmp_path / "bad.json")


def test_record_fact_gives_the_supporting_fact_from_the_visual_end():
    from ravlm_graph.datasets import load_fvqa
    from ravlm_graph.recipes import record_fact

    fix = ROOT / "tests" / "fixtures" / "vqa"
    by_id = {r.qid: r for r in load_fvqa(fix / "fvqa_train_split0_questions.json",
                                         fix / "fvqa_train_split0_fact_triples.json")}
    assert record_fact(by_id["271"]) == ("lipstick", "IsA", "cosmetics")  # visual end is the head
    assert record_fact(by_id["2039"]) == ("banana", "LessNatural", "sweet_potato")  # ... the tail
    no_facts = load_fvqa(fix / "fvqa_train_split0_questions.json")  # no fact triples: no supporting fact
    assert record_fact(no_facts[0]) is None


def test_a_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "bom.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps({"dataset": "builtin", "limit": 3}).encode())
    assert load_recipe(p).limit == 3


def test_data_files_a_dataset_does_not_read_are_refused(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"dataset": "builtin", "questions": "q.json"}))
    with pytest.raises(ValueError, match=r"r.json: Recipe.questions: a 'builtin' recipe does not read it"):
        load_recipe(p)


def test_check_inputs_names_the_source_and_the_key(tmp_path):
    r = Recipe.from_dict({"kg": str(tmp_path / "store")})
    with pytest.raises(FileNotFoundError, match=r"^r.json: Recipe.kg: .*store: no such folder"):
        r.check_inputs("r.json")
    (tmp_path / "store").mkdir()
    with pytest.raises(ValueError, match=r"^Recipe.kg: .*store: not a kg store folder \(no meta.json\)"):
        r.check_inputs()
    r = Recipe.from_dict({"dataset": "fvqa", "questions": str(tmp_path / "q.json")})
    with pytest.raises(FileNotFoundError, match=r"^--questions: .*q.json: no such file"):
        r.check_inputs("r.json", {"questions": "--questions"})
