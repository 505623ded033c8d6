"""The layout-cell detector of the built-in scenes, trained on freshly drawn scenes."""

import pytest

from ravlm_graph.datasets.builtin import default_emoji_root
from ravlm_graph.grounding.layouts import LAYOUTS, layout_cells
from ravlm_graph.datasets.scenes import synthetic_scenes
from ravlm_graph.grounding.detectors.layout import NONE, cell_label

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
