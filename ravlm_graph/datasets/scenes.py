"""Scenes of the built-in benchmark: 1-4 emoji objects on a background, drawn with Pillow.

A scene is stored as a *specification* (a JSON-able dict), not as pixels; rendering it
is deterministic (same spec, same sprite files, same Pillow -> same pixels). Spec fields:

``id``            scene id (str)
``size``          ``[W, H]`` canvas size in px
``style``         sprite style: ``"twemoji"`` or ``"noto"`` (sprite folders ``twemoji64/``, ``noto64/``);
                  an object may carry its own ``"style"`` (detector training draws objects of
                  several styles in one scene, :data:`TRAINING_STYLE_DIRS`)
``background``    ``{"kind": "solid", "color": [r, g, b]}``,
                  ``{"kind": "gradient", "colors": [c0, c1], "axis": "x"|"y"}`` or
                  ``{"kind": "checker", "colors": [c0, c1], "cell": px}``
``objects``       list of ``{"image", "concept", "slot", "size", "angle", "x", "y", "box"}``:
                  the sprite is resized to ``size`` x ``size``, rotated by ``angle`` degrees
                  (counter-clockwise, canvas grown to fit), and pasted with its top-left
                  corner at ``(x, y)``; ``box`` = ``[x0, y0, x1, y1]`` (x1, y1 exclusive) is the
                  bounding box of its visible (alpha > 0) pixels on the canvas.

Objects sit in disjoint layout cells (:data:`LAYOUTS`), so the slot names
("left", "top_right", ...) are true spatial descriptions of the rendered scene.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence
from ravlm_graph.grounding.layouts import LAYOUTS, layout_cells

__all__ = ["LAYOUTS", "STYLE_DIRS", "TRAINING_STYLE_DIRS", "SpriteCache", "available_styles", "layout_cells",
           "load_sprite", "place_objects", "random_background", "render_scene", "synthetic_scenes"]

STYLE_DIRS: Mapping[str, str] = {"twemoji": "twemoji64", "noto": "noto64"}
#: Styles drawn only for training detectors, never used by the benchmark's splits: the same emoji
#: drawn by other artists (``scripts/build_extra_emoji_styles.py``; sources in ``ATTRIBUTION.md``).
TRAINING_STYLE_DIRS: Mapping[str, str] = {"openmoji": "openmoji64", "fluent": "fluent64",
                                          "emojione": "emojione64", "fluent3d": "fluent3d64",
                                          "emojione1": "emojione164", "fxemoji": "fxemoji64",
                                          "streamline": "streamline64"}
_ALL_STYLE_DIRS: Mapping[str, str] = {**STYLE_DIRS, **TRAINING_STYLE_DIRS}


def _style_dir(emoji_root: str | os.PathLike, style: str) -> Path:
    """The sprite folder of ``style`` under ``emoji_root``; KeyError for an unknown style."""
    if style not in _ALL_STYLE_DIRS:
        raise KeyError(f"unknown emoji style {style!r}; expected one of {sorted(_ALL_STYLE_DIRS)}")
    return Path(emoji_root) / _ALL_STYLE_DIRS[style]

_SCALE = (0.55, 0.9)       # sprite side as a fraction of its cell's short side
_MAX_SIDE = 0.6            # ... and never more than this fraction of the canvas
_MAX_ANGLE = 20.0          # degrees


class SpriteCache:
    """Decoded RGBA sprites by (style, image), for one build or one loop over records."""

    def __init__(self, emoji_root: str | os.PathLike):
        self.root = Path(emoji_root)
        self._cache: dict[tuple[str, str], Any] = {}

    def get(self, style: str, image: str):
        key = (style, image)
        if key not in self._cache:
            self._cache[key] = load_sprite(self.root, style, image)
        return self._cache[key]


def load_sprite(emoji_root: str | os.PathLike, style: str, image: str):
    """Open one sprite as a fully decoded RGBA image.

    Raises:
        KeyError: unknown style.
        FileNotFoundError: the sprite file is missing.
        ValueError: the file cannot be decoded as an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = _style_dir(emoji_root, style) / image
    if not path.is_file():
        raise FileNotFoundError(f"emoji image not found: {path}")
    try:
        with Image.open(path) as im:
            return im.convert("RGBA")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot decode image: {e}") from e


def _transform(sprite, size: int, angle: float):
    from PIL import Image

    im = sprite.resize((size, size), Image.Resampling.LANCZOS)
    if angle:
        im = im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    return im


def _color(rng: random.Random) -> list[int]:
    return [rng.randint(60, 245) for _ in range(3)]


def random_background(rng: random.Random) -> dict:
    """A background spec: solid, gradient or low-contrast checker, colours drawn from ``rng``."""
    kind = rng.choice(("solid", "solid", "gradient", "checker"))
    c0 = _color(rng)
    if kind == "solid":
        return {"kind": "solid", "color": c0}
    if kind == "gradient":
        return {"kind": "gradient", "colors": [c0, _color(rng)], "axis": rng.choice(("x", "y"))}
    c1 = [max(0, min(255, v + rng.choice((-1, 1)) * rng.randint(12, 28))) for v in c0]
    return {"kind": "checker", "colors": [c0, c1], "cell": rng.choice((8, 16, 32))}


def _draw_background(bg: Mapping[str, Any], width: int, height: int):
    from PIL import Image, ImageDraw

    kind = bg.get("kind")
    if kind == "solid":
        return Image.new("RGBA", (width, height), tuple(bg["color"]) + (255,))
    if kind == "gradient":
        c0, c1 = bg["colors"]
        along_x = bg.get("axis", "y") == "x"
        n = width if along_x else height
        im = Image.new("RGBA", (width, height))
        draw = ImageDraw.Draw(im)
        for i in range(n):
            t = i / max(1, n - 1)
            c = tuple(int(round(a + (b - a) * t)) for a, b in zip(c0, c1)) + (255,)
            draw.line([(i, 0), (i, height - 1)] if along_x else [(0, i), (width - 1, i)], fill=c)
        return im
    if kind == "checker":
        c0, c1 = (tuple(c) + (255,) for c in bg["colors"])
        cell = int(bg["cell"])
        im = Image.new("RGBA", (width, height), c0)
        draw = ImageDraw.Draw(im)
        for y in range(0, height, cell):
            for x in range(0, width, cell):
                if (x // cell + y // cell) % 2:
                    draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=c1)
        return im
    raise ValueError(f"scene background: expected kind 'solid', 'gradient' or 'checker', found {kind!r}")


def place_objects(objects: Sequence[Mapping[str, str]], slots: Sequence[str], width: int, height: int,
                  style: str, sprites: SpriteCache, rng: random.Random) -> list[dict]:
    """Choose size, rotation and position of each object inside its slot's cell.

    Args:
        objects: ``{"image", "concept"}`` per object, in slot order.
        slots: slot names (one of :data:`LAYOUTS`).
        width, height: canvas size.
        style: sprite style.
        sprites: where sprites come from (decoded once).
        rng: the random source.

    Returns:
        Object specs with ``size``, ``angle``, ``x``, ``y`` and the exact ``box``.
    """
    out = []
    for obj, slot, (cx0, cy0, cx1, cy1) in zip(objects, slots, layout_cells(slots, width, height)):
        cw, ch = cx1 - cx0, cy1 - cy0
        side_max = min(cw, ch, int(_MAX_SIDE * min(width, height)))
        sprite = sprites.get(obj.get("style", style), obj["image"])
        while True:  # shrink until the rotated sprite fits the cell (at most a few rounds)
            size = max(4, int(round(rng.uniform(*_SCALE) * side_max)))
            angle = round(rng.uniform(-_MAX_ANGLE, _MAX_ANGLE), 1)
            im = _transform(sprite, size, angle)
            if im.width <= cw and im.height <= ch:
                break
            side_max = max(4, int(side_max * 0.9))
        x = cx0 + rng.randint(0, cw - im.width)
        y = cy0 + rng.randint(0, ch - im.height)
        bb = im.getchannel("A").getbbox() or (0, 0, 0, 0)
        out.append({"image": obj["image"], "concept": obj["concept"], "slot": slot, "size": size,
                    "angle": angle, "x": x, "y": y,
                    "box": [x + bb[0], y + bb[1], x + bb[2], y + bb[3]],
                    **({"style": obj["style"]} if "style" in obj else {})})
    return out


def render_scene(spec: Mapping[str, Any], emoji_root: str | os.PathLike | None = None, *,
                 sprites: SpriteCache | None = None):
    """Draw a scene spec.

    Args:
        spec: the scene (module docstring).
        emoji_root: folder with ``twemoji64/`` and ``noto64/`` (used when ``sprites`` is None).
        sprites: a shared sprite cache (faster over many scenes).

    Returns:
        PIL.Image.Image: the RGB scene.
    """
    if sprites is None:
        if emoji_root is None:
            raise ValueError("render_scene: expected emoji_root or sprites, found neither")
        sprites = SpriteCache(emoji_root)
    width, height = spec["size"]
    canvas = _draw_background(spec["background"], width, height)
    for obj in spec["objects"]:
        im = _transform(sprites.get(obj.get("style", spec["style"]), obj["image"]), int(obj["size"]),
                        float(obj["angle"]))
        canvas.alpha_composite(im, (int(obj["x"]), int(obj["y"])))
    return canvas.convert("RGB")


def available_styles(emoji_root: str | os.PathLike, image: str, styles: Sequence[str]) -> list[str]:
    """The styles of ``styles`` that have a sprite file for ``image`` under ``emoji_root``."""
    dirs = [(s, _style_dir(emoji_root, s)) for s in styles]
    return [s for s, d in dirs if (d / image).is_file()]


def synthetic_scenes(pool: Sequence[tuple[str, str]], n: int, emoji_root: str | os.PathLike, *, seed: int = 0,
                     style: str = "twemoji", size: tuple[int, int] = (128, 128),
                     styles: Sequence[str] | None = None):
    """Yield ``n`` freshly drawn scenes of objects from ``pool``, for training detectors.

    The scenes follow the benchmark's own recipe (1-4 objects in layout cells, random
    size, rotation and background), with objects drawn from ``pool`` — ``(image, concept)``
    pairs, e.g. those of the training split — so a detector can see each sprite in many
    more placements than the training questions show.

    Args:
        styles: draw each object in a style picked at random among these (those that have
            the sprite); default: every object in ``style``.

    Yields:
        ``(PIL.Image, [(concept, box), ...])`` per scene.
    """
    if n and not pool:
        raise ValueError("synthetic_scenes: expected a non-empty pool of (image, concept) pairs")
    rng = random.Random(seed)
    sprites = SpriteCache(emoji_root)
    w, h = size
    pool = list(pool)
    have: dict[str, list[str]] = {}
    if styles:
        have = {im: available_styles(emoji_root, im, styles) for im, _ in pool}
        pool = [(im, c) for im, c in pool if have[im]]
        if n and not pool:
            raise ValueError(f"synthetic_scenes: no sprite of the pool exists in any of the styles {list(styles)}")
    for i in range(n):
        k = rng.randint(1, 4)
        slots = rng.choice(LAYOUTS[k])
        objs = [{"image": im, "concept": c} for im, c in rng.sample(pool, min(k, len(pool)))]
        if styles:
            for o in objs:
                o["style"] = rng.choice(have[o["image"]])
        if len(objs) < k:
            slots = rng.choice(LAYOUTS[len(objs)])
        placed = place_objects(objs, slots, w, h, style, sprites, rng)
        spec = {"id": f"synthetic-{i}", "size": [w, h], "style": style, "background": random_background(rng),
                "objects": placed}
        yield render_scene(spec, sprites=sprites), [(o["concept"], o["box"]) for o in placed]
