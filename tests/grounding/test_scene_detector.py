"""The layout-cell detector of the built-in scenes, trained on freshly drawn scenes."""

import pytest

from ravlm_graph.datasets.builtin import default_emoji_root
from ravlm_graph.grounding.layouts import LAYOUTS, layout_cells
from ravlm_graph.datasets.scenes import synthetic_scenes
from ravlm_graph.grounding.detectors.layout import NONE, LayoutCellDetector, cell_label

POOL = [("1f43b.png", "bear"), ("1f680.png", "rocket"), ("1f36a.png", "cookie")]


def test_synthetic_scenes_follow_the_layouts():
    scenes = list(synthetic_scenes(POOL, 30, default_emoji_root(), seed=1))
    assert len(scenes) == 30
    again = list(synthetic_scenes(POOL, 30, default_emoji_root(), seed=1))
    assert [o for _, o in scenes] == [o for _, o in again]  # deterministic
    assert scenes[0][0].tobytes() == again[0][0].tobytes()
    counts = set()
    for im, objs in scenes:
        assert im.size == (128, 128) and 1 <= len(objs) <= 3  # at most the pool's 3 sprites
        counts.add(len(objs))
        assert len({c for c, _ in objs}) == len(objs)
        # every object is inside one cell of a layout with that many slots
        assert any(all(cell_label(cell, objs) != NONE for cell in layout_cells(slots, 128, 128))
                   for slots in LAYOUTS[len(objs)])
    assert counts == {1, 2, 3}
    with pytest.raises(ValueError, match="non-empty pool"):
        list(synthetic_scenes([], 1, default_emoji_root()))


def test_detector_learns_drawn_scenes_and_round_trips(tmp_path):
    train = list(synthetic_scenes(POOL, 200, default_emoji_root(), seed=2))
    det = LayoutCellDetector.train(train, [c for _, c in POOL], epochs=10, image_size=24, channels=(8, 16),
                                   negatives_per_scene=1, seed=0, progress=False, lr=3e-3)
    test = list(synthetic_scenes(POOL, 40, default_emoji_root(), seed=99))
    found = det.detect_batch([im for im, _ in test])
    hits = total = 0
    for ents, (_, objs) in zip(found, test):
        total += len(objs)
        hits += len({c for c, _ in objs} & {e.concept for e in ents})
        assert all(e.origin == "image" and e.box is not None and e.label for e in ents)
    assert hits / total >= 0.6, f"object recall {hits}/{total}"
    det.save_pretrained(tmp_path / "det")
    again = LayoutCellDetector.from_pretrained(tmp_path / "det")
    assert [[e.concept for e in es] for es in again.detect_batch([im for im, _ in test[:5]])] == \
        [[e.concept for e in es] for es in found[:5]]
    with pytest.raises(FileNotFoundError, match="layout_detector.json"):
        LayoutCellDetector.from_pretrained(tmp_path)
