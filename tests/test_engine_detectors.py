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
