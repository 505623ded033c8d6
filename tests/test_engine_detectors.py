"""engine.json names its detector by kind (the DETECTORS registry), with a folder or settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from ravlm_graph.engine import EngineConfig, KnowledgeVQA, detector_spec  # noqa: E402
from ravlm_graph.grounding.detectors import DETECTORS, ImageEntityDetector, build_detector, detector_kind  # noqa: E402
from ravlm_graph.types import Entity  # noqa: E402
from ravlm_graph.utils.checkpoint import CheckpointError  # noqa: E402
from tests.models.knowledge_vqa.test_modeling import make_model, tiny  # noqa: E402,F401  (the tiny model fixture)

ROOT = Path(__file__).resolve().parents[1]


class _Sees(ImageEntityDetector):
    """A detector built from settings: it 'sees' the concepts it is told to."""

    def __init__(self, concepts=(), box=None):
        self.concepts, self.box = list(concepts), box

    @classmethod
    def from_config(cls, settings, kg=None):
        return cls(**settings)

    def detect(self, image):
        return [Entity(c, 0.9, "image", box=tuple(self.box) if self.box else None) for c in self.concepts]

    def engine_settings(self):
        return {"concepts": self.concepts, "box": self.box}


@pytest.fixture
def sees():
    DETECTORS.register("test_sees", _Sees)
    yield _Sees
    DETECTORS.unregister("test_sees")


def test_spec_of_engines_saved_before_is_a_layout_folder():
    assert detector_spec("detector") == {"kind": "layout_cells", "path": "detector", "settings": {}}
    assert detector_spec(None) is None
    assert detector_spec({"kind": "photo", "settings": {"box_threshold": 0.4}}) == \
        {"kind": "photo", "path": None, "settings": {"box_threshold": 0.4}}


@pytest.mark.parametrize("value, message", [
    ({"kind": "sonar"}, r"detector.kind: expected one of \(.*'photo'.*\), found 'sonar'"),
    ({"kind": "photo", "colour": 1}, r"unknown fields \['colour'\]"),
    ({"kind": "photo", "settings": [1]}, "detector.settings: expected an object, found list"),
    ({"kind": "layout_cells", "path": ""}, "detector.path: expected a subfolder name"),
    (3, "detector: expected null, a folder name or an object"),
])
def test_bad_specs_name_what_was_expected(value, message):
    with pytest.raises(CheckpointError, match=message):
        EngineConfig.from_dict({"detector": value}, where="engine.json")


def test_registry_names_detector_classes_without_importing_them(sees):
    assert DETECTORS.name_of(_Sees) == "test_sees" == detector_kind(_Sees())
    assert "photo" in DETECTORS and DETECTORS.name_of(object) is None
    with pytest.raises(ValueError, match="expected a detector of a registered kind"):
        detector_kind(object())
    det = build_detector("test_sees", settings={"concepts": ["apple"]})
    assert isinstance(det, _Sees) and det.concepts == ["apple"]
    with pytest.raises(ValueError, match="unknown detector 'sonar'"):
        build_detector("sonar")
    with pytest.raises(ValueError, match="expected a saved .trained. detector folder, found none"):
        build_detector("layout_cells")


def test_settings_detector_round_trip_through_engine_json(tiny, sees, tmp_path):
    _, _, kg, retriever = tiny
    engine = KnowledgeVQA(make_model(tiny), EngineConfig(kg="unused", retrieval=retriever.config, detector={"kind": "test_sees"}),
                          kg=kg, retriever=retriever, detector=_Sees(["apple"], box=[0, 0, 8, 16]))
    engine.save_pretrained(tmp_path / "eng")
    saved = json.loads((tmp_path / "eng" / "engine.json").read_text())
    assert saved["detector"] == {"kind": "test_sees", "settings": {"concepts": ["apple"], "box": [0, 0, 8, 16]}}
    spec = EngineConfig.from_dict(saved).detector_spec()
    again = build_detector(spec["kind"], settings=spec["settings"])
    img = Image.new("RGB", (16, 16))
    assert again.detect(img) == engine.detector.detect(img)
    a = engine.answer(img, "what is the object used for?")
    assert [(e.concept, e.box) for e in a.entities if e.origin == "image"] == [("apple", (0, 0, 8, 16))]
    assert a.notes == []


def test_an_empty_detection_is_explained_in_the_answer(tiny, sees):
    _, _, kg, retriever = tiny
    engine = KnowledgeVQA(make_model(tiny), EngineConfig(kg="unused", retrieval=retriever.config, detector={"kind": "test_sees"}),
                          kg=kg, retriever=retriever, detector=_Sees([]))
    a = engine.answer(Image.new("RGB", (16, 16)), "which of these can peel?")
    assert not [e for e in a.entities if e.origin == "image"]
    assert a.notes == ["the _Sees found no object it can name"]
    assert a.to_dict()["notes"] == a.notes and str(a).count("note: the _Sees found no object") == 1
    bare = KnowledgeVQA(make_model(tiny), EngineConfig(kg="unused", retrieval=retriever.config, detector=None), kg=kg,
                        retriever=retriever)
    assert "no image detector" in bare.answer(Image.new("RGB", (16, 16)), "which of these can peel?").notes[0]
    # a model without the graph reads no entities: nothing to explain
    no_kg = KnowledgeVQA(make_model(tiny, fusion="none"), EngineConfig(kg="unused", retrieval=retriever.config,
                                                                       detector=None), kg=kg, retriever=retriever)
    assert no_kg.answer(Image.new("RGB", (16, 16)), "which of these can peel?").notes == []


@pytest.mark.slow
def test_the_shipped_builtin_engine_still_loads_its_layout_folder():
    """engine_builtin/engine.json was written before kinds were named: ``"detector": "detector"``."""
    from ravlm_graph.grounding.detectors.layout import LayoutCellDetector

    folder = ROOT / "ravlm_graph" / "data" / "engine_builtin"
    raw = json.loads((folder / "engine.json").read_text())
    spec = detector_spec(raw["detector"])
    assert spec["kind"] == "layout_cells"
    det = build_detector("layout_cells", path=folder / spec["path"])
    assert isinstance(det, LayoutCellDetector)


def test_a_cell_network_at_the_model_s_image_size_converts_each_scene_once(tiny, monkeypatch):
    """A layout-cell detector that reads scenes at the model's image size hands its pixels to
    the model's inputs: the scenes are converted once, and the answers are those of the
    engine that converts them twice (for the detector, then for the model)."""
    import numpy as np

    import ravlm_graph.models.knowledge_vqa.processing as processing
    from ravlm_graph.grounding.detectors.cellnet import CellNet, CellNetConfig
    from ravlm_graph.grounding.detectors.layout import NONE, LayoutCellDetector, default_layouts

    _, _, kg, retriever = tiny
    net = CellNet(CellNetConfig(concepts=("apple", "banana", NONE), layouts=default_layouts(), image_size=32,
                                channels=(4, 4, 8, 8), hidden=8), seed=1)
    det = LayoutCellDetector(net, min_score=0.0, layout_choice="joint")
    det.prepare_for_inference()
    engine = KnowledgeVQA(make_model(tiny, image_size=32),
                          EngineConfig(kg="unused", retrieval=retriever.config, detector={"kind": "layout_cells"}),
                          kg=kg, retriever=retriever, detector=det)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in ((32, 32), (48, 40), (20, 64))]
    questions = ["what is the object used for?", "which of these can peel?", "what is the object on the left used for?"]

    def rows(answers):
        return [(a.answer, a.score, a.candidates, a.copy_prob, a.graph_attributions,
                 [(e.concept, e.score, e.box, e.label, e.origin) for e in a.entities]) for a in answers]

    def no_second_conversion(*a, **k):
        raise AssertionError("the scene was converted again for the model")

    with monkeypatch.context() as m:
        m.setattr(processing, "image_tensor", no_second_conversion)
        once = [rows(engine.answer_batch(images[i:i + b], questions[i:i + b])) for b in (1, 3) for i in range(0, 3, b)]
    monkeypatch.delattr(LayoutCellDetector, "scene_pixels")  # the engine then converts the scenes for the model
    twice = [rows(engine.answer_batch(images[i:i + b], questions[i:i + b])) for b in (1, 3) for i in range(0, 3, b)]
    assert once == twice
    assert any(e[4] == "image" for rs in once for r in rs for e in r[5])
