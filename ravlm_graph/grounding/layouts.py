"""Scene layouts: slot names ("left", "top_right", ...) by object count and the pixel cell
of each slot. Shared by the benchmark's scene renderer and the layout-cell detector."""

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
