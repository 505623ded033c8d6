"""Draw the packaged emoji in more styles, for training detectors that must not depend on one artist.

The built-in benchmark's scenes use Twemoji (training) and Noto (the ``test_other_style``
split). A detector trained on one drawing style learns that style; drawings of the same
things by other artists teach it what stays the same. This script renders, for every emoji of
``ravlm_graph/data/emoji/index.json``, the same emoji from Iconify JSON icon sets (npm packages
``@iconify-json/<set>``: SVG bodies with a code-point map) into ``<style>64/<image>`` 64x64 RGBA
PNGs next to ``twemoji64/``. Noto is never one of them.

Run once by a maintainer (the PNGs ship with the package); needs ``cairosvg`` (not a project
dependency) and the unpacked npm packages::

    python scripts/build_extra_emoji_styles.py --set openmoji=PATH/openmoji/package \
        --set fluent=PATH/fluent-emoji-flat/package --set emojione=PATH/emojione/package \
        --set fluent3d=PATH/fluent-emoji/package --set emojione1=PATH/emojione-v1/package \
        --set fxemoji=PATH/fxemoji/package --set streamline=PATH/streamline-emojis/package \
        --exclude fxemoji:1f576-fe0f.png

Emoji are matched by code points (the set's ``chars.json``) and, failing that, by their names
(the index's ``name`` and ``short_names``, with spaces as ``-``) unless the set's code-point map
says that name draws another emoji. Missing emoji are listed, not drawn.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ravlm_graph" / "data" / "emoji"
SIZE = 64


def _icon_svg(icons: dict, name: str) -> str | None:
    """The SVG document of one icon of an Iconify JSON set (following aliases)."""
    data = icons["icons"]
    aliases = icons.get("aliases", {})
    seen = set()
    extra: dict = {}
    while name not in data:
        if name in seen or name not in aliases:
            return None
        seen.add(name)
        a = aliases[name]
        extra = {**{k: v for k, v in a.items() if k != "parent"}, **extra}
        name = a["parent"]
    icon = {**data[name], **extra}
    left = icon.get("left", icons.get("left", 0))
    top = icon.get("top", icons.get("top", 0))
    width = icon.get("width", icons.get("width", 16))
    height = icon.get("height", icons.get("height", 16))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'viewBox="{left} {top} {width} {height}" width="{SIZE}" height="{SIZE}">{icon["body"]}</svg>')


def _candidates(entry: dict) -> tuple[list[str], list[str]]:
    u = entry["unified"].lower()
    cps = [u, u.replace("-fe0f", ""), "-".join(p for p in u.split("-") if p != "fe0f")]
    names = [entry["name"].lower().replace(" ", "-").replace("_", "-")]
    names += [s.lower().replace("_", "-") for s in entry.get("short_names", [])]
    return cps, names


def build_style(style: str, package: Path, index: list[dict], exclude=frozenset()) -> tuple[int, list[str]]:
    import cairosvg
    from PIL import Image

    icons = json.loads((package / "icons.json").read_text(encoding="utf-8"))
    chars_path = package / "chars.json"
    chars = json.loads(chars_path.read_text(encoding="utf-8")) if chars_path.is_file() else {}
    owner = {name: cp for cp, name in chars.items()}  # icon name -> the code point it draws
    out = ROOT / f"{style}64"
    out.mkdir(exist_ok=True)
    drawn, missing = 0, []
    for e in index:
        if e["image"] in exclude:
            missing.append(e["name"] + " (excluded)")
            continue
        cps, names = _candidates(e)
        svg = None
        for cp in cps:
            if cp in chars:
                svg = _icon_svg(icons, chars[cp])
                if svg:
                    break
        if svg is None:
            for n in names:
                if owner.get(n, None) not in (None, *cps):
                    continue  # the set draws another emoji under this name
                svg = _icon_svg(icons, n)
                if svg:
                    break
        if svg is None:
            missing.append(e["name"])
            continue
        try:
            png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), output_width=SIZE, output_height=SIZE)
        except (MemoryError, ValueError) as exc:  # a drawing the rasteriser cannot handle
            missing.append(f"{e['name']} ({type(exc).__name__})")
            continue
        im = Image.open(io.BytesIO(png)).convert("RGBA")
        if im.getchannel("A").getbbox() is None:
            missing.append(e["name"] + " (blank)")
            continue
        im.save(out / e["image"], optimize=True)
        drawn += 1
    return drawn, missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", required=True, metavar="STYLE=PACKAGE_DIR",
                    help="style name and the unpacked @iconify-json package folder")
    ap.add_argument("--exclude", action="append", default=[], metavar="STYLE:IMAGE",
                    help="do not draw this emoji in this style (a name match that draws another thing, "
                         "found by looking at the drawings)")
    args = ap.parse_args(argv)
    exclude: dict[str, set[str]] = {}
    for spec in args.exclude:
        style, _, image = spec.partition(":")
        if not image:
            ap.error(f"--exclude {spec!r}: expected STYLE:IMAGE")
        exclude.setdefault(style, set()).add(image)
    index = json.loads((ROOT / "index.json").read_text(encoding="utf-8"))
    for spec in args.set:
        style, _, pkg = spec.partition("=")
        if not pkg or style in ("twemoji", "noto"):
            ap.error(f"--set {spec!r}: expected STYLE=DIR with a new style name")
        drawn, missing = build_style(style, Path(pkg), index, frozenset(exclude.get(style, ())))
        print(f"{style}: {drawn} of {len(index)} drawn; missing {len(missing)}: {', '.join(missing[:20])}"
              f"{' ...' if len(missing) > 20 else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
