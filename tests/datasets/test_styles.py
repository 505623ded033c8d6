"""Training-only emoji styles: sprites present, drawn per object, never the benchmark's test style."""

import json

import numpy as np
import pytest

from ravlm_graph.datasets.builtin import default_emoji_root
from ravlm_graph.datasets.scenes import (STYLE_DIRS, TRAINING_STYLE_DIRS, available_styles, load_sprite,
                                         synthetic_scenes)


def _index():
    return json.loads((default_emoji_root() / "index.json").read_text(encoding="utf-8"))


def test_training_styles_are_other_artists_and_ship_most_sprites():
    assert not set(TRAINING_STYLE_DIRS) & set(STYLE_DIRS)
    index = _index()
    for style in TRAINING_STYLE_DIRS:
        have = [e for e in index if available_styles(default_emoji_root(), e["image"], [style])]
        assert len(have) >= 0.25 * len(index), (style, len(have))
        im = load_sprite(default_emoji_root(), style, have[0]["image"])
        assert im.size == (64, 64) and im.mode == "RGBA"
        assert im.getchannel("A").getbbox() is not None
        # a drawing of its own, not a copy of the Twemoji or Noto sprite
        for other in STYLE_DIRS:
            ref = load_sprite(default_emoji_root(), other, have[0]["image"])
            assert np.abs(np.asarray(im, dtype=int) - np.asarray(ref, dtype=int)).mean() > 5
    assert all(name in (default_emoji_root() / "ATTRIBUTION.md").read_text(encoding="utf-8")
                                 for name in ("OpenMoji", "Fluent Emoji", "EmojiOne", "Firefox OS Emoji", "Streamline Emojis",
                                              *(f"`{d}/`" for d in TRAINING_STYLE_DIRS.values())))


def test_synthetic_scenes_draw_each_object_in_one_of_the_styles():
    index = _index()
    pool = [(e["image"], e["concept"]) for e in index[:40]]
    styles = ["twemoji", "openmoji", "fluent"]
    a = list(synthetic_scenes(pool, 12, default_emoji_root(), seed=5, styles=styles))
    b = list(synthetic_scenes(pool, 12, default_emoji_root(), seed=5, styles=styles))
    plain = list(synthetic_scenes(pool, 12, default_emoji_root(), seed=5))
    assert [np.asarray(x).tobytes() for x, _ in a] == [np.asarray(x).tobytes() for x, _ in b]  # deterministic
    assert [objs for _, objs in a] and all(1 <= len(objs) <= 4 for _, objs in a)
    # other artists' drawings change the pixels of the same scenes
    assert sum(np.asarray(x).tobytes() != np.asarray(y).tobytes() for (x, _), (y, _) in zip(a, plain)) >= 6
    with pytest.raises(KeyError, match="unknown emoji style 'comic'"):
        list(synthetic_scenes(pool, 1, default_emoji_root(), styles=["comic"]))


def test_objects_missing_from_every_style_are_left_out(tmp_path):
    pool = [("no-such-sprite.png", "ghost")]
    with pytest.raises(ValueError, match="no sprite of the pool exists"):
        list(synthetic_scenes(pool, 1, default_emoji_root(), styles=["openmoji"]))
