"""Scenes of the built-in benchmark: 1-4 emoji objects on a background, drawn with Pillow.

A scene is stored as a *specification* (a JSON-able dict), not as pixels; rendering it
is deterministic (same spec, same sprite files, same Pillow -> same pixels). Spec fields:

``id``            scene id (str)
``size``          ``[W, H]`` canvas size in px
``style``         sprite style: ``"twemoji"`` or ``"noto"`` (sprite folders ``twemoji64/``, ``noto64/``)
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

from typing import Mapping, Sequence

# Layouts by object count: each a tuple of slot names, laid out along an axis or in a grid.
LAYOUTS: Mapping[int, tuple[tuple[str, ...], ...]] = {
    1: (("only",),),
    2: (("left", "right"), ("top", "bottom")),
    3: (("left", "middle", "right"), ("top", "middle", "bottom")),
    4: (("top_left", "top_right", "bottom_left", "bottom_right"),),
}


def layout_cells(slots: Sequence[str], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Disjoint cells ``(x0, y0, x1, y1)`` of the canvas, one per slot, in slot order."""
    n = len(slots)
    if slots == ("only",) or list(slots) == ["only"]:
        return [(0, 0, width, height)]
    if n == 4:
        hw, hh = width // 2, height // 2
        return [(0, 0, hw, hh), (hw, 0, width, hh), (0, hh, hw, height), (hw, hh, width, height)]
    horizontal = slots[0] == "left"
    cells = []
    for i in range(n):
        if horizontal:
            cells.append((i * width // n, 0, (i + 1) * width // n, height))
        else:
            cells.append((0, i * height // n, width, (i + 1) * height // n))
    return cells
