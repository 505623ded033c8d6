"""The layout-cell detector's prepared inference path gives the reference results exactly:
the cell network run as plain tensor calls (:class:`_PreparedCellNet`, each cell's maximum by
:func:`_cell_maxima`) against the inference module's own forward, and the batched decoding
of cells into entities against the per-scene rule it replaces (written out below)."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from ravlm_graph.grounding.detectors.cellnet import (CellNet, CellNetConfig, _cell_maxima, _max_indices,  # noqa: E402
                                                     _pool, _pool_weights, _rectangles)
from ravlm_graph.grounding.detectors.layout import NONE, LayoutCellDetector, default_layouts  # noqa: E402
from ravlm_graph.grounding.images import load_image  # noqa: E402
from ravlm_graph.grounding.layouts import layout_cells  # noqa: E402

VOCAB = ("bear", "cookie", "rocket", NONE)
SHIPPED = Path(__file__).resolve().parents[3] / "ravlm_graph" / "data" / "engine_builtin" / "detector"


def _net(image_size=32, seed=0):
    net = CellNet(CellNetConfig(concepts=VOCAB, layouts=default_layouts(), image_size=image_size,
                                channels=(4, 6, 8, 8), blocks=(0, 1, 1, 2), hidden=8), seed=seed)
    g = torch.Generator().manual_seed(seed)
    for bn in (m for m in net.model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-1, 1, generator=g)
        bn.running_var.uniform_(0.5, 2, generator=g)
        bn.weight.data.uniform_(0.5, 1.5, generator=g)
    with torch.no_grad():
        net.model.cell_bias.normal_(generator=g)
    return net


def _scenes(n, seed=0, size=(40, 40)):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def _reference_probs(net, images):
    """The inference module's own forward (module calls, a slice and a maximum per cell)."""
    x = net.normalise(net.images_to_tensor(images)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        c, l = net._inference_model(x)
    return torch.softmax(c, -1).numpy(), torch.softmax(l, -1).numpy()


def _reference_decode(det, cell_probs, layout_probs, sizes):
    """Entities scene by scene, cell by cell: the rule the batched decoding must keep."""
    out = []
    for n, (w, h) in enumerate(sizes):
        where = [(li, si, cell) for li, slots in enumerate(det.layouts) for si, cell in enumerate(layout_cells(slots, w, h))]
        p = cell_probs[n].copy()
        p[:, det._none] = 0.0
        best = p.argmax(1)
        conf = p[np.arange(len(where)), best]
        score: dict[int, float] = {}
        for k, (li, _si, _c) in enumerate(where):
            score[li] = min(score.get(li, 1.0), float(conf[k]))
        if det.layout_choice == "head":
            score = {li: float(layout_probs[n, li]) for li in score}
        elif det.layout_choice == "joint":
            score = {li: v * float(layout_probs[n, li]) for li, v in score.items()}
        li_best = max(score, key=lambda l: (score[l], len(det.layouts[l])))
        out.append([(det.tagger.config.concepts[int(best[k])], float(conf[k]), tuple(float(v) for v in cell),
                     det.layouts[li][si]) for k, (li, si, cell) in enumerate(where)
                    if li == li_best and not conf[k] < det.min_score])
    return out


def _rows(found):
    return [[(e.concept, e.score, e.box, e.label) for e in es] for es in found]


@pytest.mark.parametrize("image_size", [32, 48, 64, 128])
def test_cell_maxima_equal_the_maximum_over_each_rectangle(image_size):
    cfg = CellNetConfig(concepts=VOCAB, layouts=default_layouts(), image_size=image_size)
    for side in (image_size // 8, image_size // 16):
        mean_w, max_m = _pool_weights(cfg, side)
        rects = _rectangles(max_m, side)
        h = torch.randn(3, 5, side, side)
        want = _pool(h, mean_w, max_m, rects)[..., 5:]  # (B, cells, C)
        for x in (h, h.contiguous(memory_format=torch.channels_last)):
            assert torch.equal(_cell_maxima(x, *_max_indices(rects, side)), want)


@pytest.mark.parametrize("image_size", [32, 48])
def test_prepared_cell_net_gives_the_inference_module_s_values(image_size):
    net = _net(image_size)
    net.prepare_for_inference()
    assert net._prepared is not None
    for n in (1, 2, 5):
        images = _scenes(n, seed=n)
        x = net.normalise(net.images_to_tensor(images)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            want, got = net._inference_model(x), net._prepared(x)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        cells, layouts = net.predict(images)
        ref_cells, ref_layouts = _reference_probs(net, images)
        np.testing.assert_array_equal(cells, ref_cells)
        np.testing.assert_array_equal(layouts, ref_layouts)
    assert net.trained_module() is net.model and net._prepared is None


@pytest.mark.parametrize("choice", ["cells", "head", "joint"])
def test_batched_decoding_keeps_the_per_cell_rule(choice):
    det = LayoutCellDetector(_net(seed=1), min_score=0.3, layout_choice=choice)
    det.prepare_for_inference()
    images = _scenes(6, size=(40, 30)) + _scenes(3, seed=2, size=(57, 41))
    cells, layouts = det.tagger.predict(images)
    sizes = [im.size for im in images]
    assert _rows(det.detect_batch(images)) == _reference_decode(det, cells, layouts, sizes)
    # ties: equal layout scores (the layout of more cells wins, then the first), a score equal
    # to min_score in float32, several concepts equally likely (the first wins)
    rng = np.random.default_rng(0)
    c = rng.dirichlet(np.ones(len(VOCAB)), size=(8, cells.shape[1])).astype(np.float32)
    c[:, :, :] = c[:, :1, :]  # every cell alike: every layout's weakest cell ties
    c[1, 3, :] = np.float32(0.3)
    c[2, :, 0] = c[2, :, 1]
    c[3] = np.float32(0.3)  # every concept exactly at min_score
    l = np.full((8, layouts.shape[1]), 1 / layouts.shape[1], np.float32)
    l[4, 1] = l[4, 2] = np.float32(0.4)  # two layouts of two cells tie
    for probs, lay in ((c, l), (cells, layouts)):
        # 0.3000000125: above float32(0.3) as a float64, equal to it as a float32 (compared so)
        for min_score in (0.0, 0.3, float(np.float32(0.3)), 0.3000000125, 0.5):
            det.min_score = min_score
            sz = sizes[: len(probs)] + [(40, 30)] * (len(probs) - len(sizes))
            got = [[(e.concept, e.score, e.box, e.label) for e in es] for es in det._decode(probs, lay, sz)]
            assert got == _reference_decode(det, probs, lay, sz), min_score


def test_shipped_detector_finds_the_reference_entities_on_builtin_scenes():
    """The engine's own detector on built-in val scenes, one at a time and 12 at once: each of
    its two networks (the cell heads over the frozen image network, also from maps given as
    ``features``, and the fallback network) gives the same entities (concept, box, slot) and
    scores as the reference path, and the pair takes the fallback's exactly for the scenes
    the first is unsure of."""
    from ravlm_graph.datasets import load_builtin

    det = LayoutCellDetector.from_pretrained(SHIPPED)
    det.prepare_for_inference()
    assert det.fallback is not None and det.backbone is not None and det.fallback.backbone is None
    first = LayoutCellDetector(det.tagger, det.layouts, det.min_score, det.layout_choice)  # the same network alone
    images = [load_image(r.load_image()) for r in load_builtin("val")[:24]]
    unsure = 0
    for batch in (1, 12):
        for s in range(0, len(images), batch):
            chunk = images[s:s + batch]
            maps = det.backbone_features(det.tagger.images_to_tensor(chunk).float() / 255.0)
            found = {}
            for name, d, kw in (("first", first, {}), ("first, from maps", first, {"features": maps}),
                                ("fallback", det.fallback, {})):
                cells, layouts = _reference_probs(d.tagger, chunk)
                want = _reference_decode(d, cells, layouts, [im.size for im in chunk])
                got = _rows(d.detect_batch(chunk, **kw))
                assert [[r[:1] + r[2:] for r in es] for es in got] == [[r[:1] + r[2:] for r in es] for es in want], name
                for g, w in zip(got, want):
                    assert [r[1] for r in g] == pytest.approx([r[1] for r in w], abs=1e-5, rel=0), name
                found[name] = got
            pair = _rows(det.detect_batch(chunk, features=maps))
            for k, es in enumerate(found["first"]):
                u = not es or min(r[1] for r in es) < det.fallback_below
                unsure += u
                assert pair[k] == (found["fallback"] if u else found["first, from maps"])[k]
    assert 0 < unsure < 2 * len(images)  # both paths taken
    assert sum(len(es) for es in det.detect_batch(images)) >= len(images)
