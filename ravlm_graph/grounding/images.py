"""The one gate images pass through: :func:`load_image` takes a path, bytes, a file object,
a PIL image or a numpy array and returns a decoded RGB ``PIL.Image``, or raises
:class:`InvalidImageError` (a ``ValueError``) naming the source and the problem.

PIL is imported inside the functions, so importing this module stays cheap."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

from ravlm_graph.grounding.language import InputWarning

# 8192 px a side: a 48-megapixel phone photo (8064 x 6048) or a 24-megapixel camera's (6000 x
# 4000) is accepted as it is; the models read it downscaled (SSD 300 px, EfficientNet 224 px).
DEFAULT_MAX_SIDE = 8192
DEFAULT_MIN_SIDE = 8


# --------------------------------------------------------------------------------------
# Loading images
# --------------------------------------------------------------------------------------


class InvalidImageError(ValueError):
    """An input that cannot be used as an image.

    Attributes:
        source: where the input came from (file path, ``"<bytes>"``, ``"<numpy array>"``, ...).
        reason: what is wrong with it, e.g. ``"cannot decode image"`` or ``"too small"``.
    """

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def _describe(x: Any) -> str:
    if isinstance(x, (str, os.PathLike)):
        return os.fspath(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return "<bytes>"
    name = getattr(x, "name", None)  # open file objects
    if isinstance(name, str):
        return name
    return f"<{type(x).__module__}.{type(x).__name__}>"


def _check_size(source: str, width: int, height: int, min_side: int, max_side: int) -> None:
    if width < min_side or height < min_side:
        raise InvalidImageError(
            source, f"image too small: expected at least {min_side}x{min_side} pixels, found {width}x{height}")
    if width > max_side or height > max_side:
        raise InvalidImageError(
            source, f"image too large: expected at most {max_side} pixels per side, found {width}x{height} "
                    f"(resize it so that neither side exceeds {max_side} pixels)")


def _array_to_pil(arr: Any, source: str, min_side: int, max_side: int):
    """A numpy array (H, W), (H, W, C) or (C, H, W) with C in 1/3/4 -> PIL image."""
    import numpy as np
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InvalidImageError(
            source, f"expected an array of shape (H, W), (H, W, 3|4) or (3|4, H, W), found {tuple(a.shape)}")
    if a.size == 0:
        raise InvalidImageError(source, f"empty array of shape {tuple(a.shape)}")
    _check_size(source, a.shape[1], a.shape[0], min_side, max_side)  # before any converted copy
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a.astype(np.uint32) // 257).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InvalidImageError(source, "float array contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidImageError(
                source, f"expected float pixel values in [0, 1], found range [{lo:g}, {hi:g}]")
        a = np.round(a * 255.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise InvalidImageError(
                source, f"expected integer pixel values in [0, 255] (or a uint16 array), found range [{lo}, {hi}]")
        a = a.astype(np.uint8)
    else:
        raise InvalidImageError(source, f"unsupported array dtype {a.dtype}")
    if a.ndim == 2:
        mode = "L"
    else:
        mode = "RGB" if a.shape[-1] == 3 else "RGBA"
    return Image.fromarray(np.ascontiguousarray(a), mode=mode)


def _to_rgb(im, source: str):
    """Any PIL mode -> RGB; transparent pixels are composited onto white, high bit depths scaled."""
    import numpy as np
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.min() >= 0 and a.max() <= 65535 and a.max() > 255):
            a = a / 257.0  # 16-bit range -> 8 bit
        elif mode == "F" and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        elif a.min() < 0 or a.max() > 255:
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    try:
        if has_alpha:
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise InvalidImageError(source, f"cannot convert image mode {mode!r} to RGB: {e}") from e


def _tensor_to_numpy(t: Any, source: str):
    """A torch tensor's values as a numpy array (on the CPU; bfloat16 and float16 as float32)."""
    import torch

    if t.device.type == "meta":
        raise InvalidImageError(source, "a tensor on the 'meta' device holds no values")
    t = t.detach().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16
        t = t.float()
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as e:
        raise InvalidImageError(source, f"unsupported tensor dtype {t.dtype}: {e}") from e


def load_image(x: Any, *, max_side: int = DEFAULT_MAX_SIDE, min_side: int = DEFAULT_MIN_SIDE):
    """Decode and check an image; return it as RGB.

    The size is checked from the file header before any pixel is decoded, so a
    decompression bomb (a tiny file that claims 100,000 x 100,000 pixels) is refused
    without allocating it; PIL's own ``MAX_IMAGE_PIXELS`` limit stays in force as well.
    EXIF orientation is applied (to a path, bytes, a file object, and a PIL image as
    ``Image.open`` returned it), so that boxes are given in the orientation the photo is seen
    in; transparent pixels are composited onto white; 16-bit and float modes are scaled to 8
    bits; palette, LA, CMYK, YCbCr, 1-bit, ... are converted. Of a file of several frames or
    pages (animated GIF / WebP / PNG, multi-page TIFF) the first is read, with an
    :class:`~ravlm_graph.grounding.language.InputWarning` (a PIL image is read at the frame it
    was sought to).

    Args:
        x: a path (``str`` / ``os.PathLike``), encoded bytes, a binary file object, a
            ``PIL.Image.Image``, or an array-like (numpy, torch on CPU) of shape (H, W),
            (H, W, 3|4) or (3|4, H, W), dtype uint8 / uint16 / bool or float in [0, 1].
        max_side: largest accepted width or height in pixels (default 8192).
        min_side: smallest accepted width or height in pixels (default 8).

    Returns:
        PIL.Image.Image: an RGB image, fully loaded (no open file handle).

    Raises:
        FileNotFoundError: a path that does not exist.
        InvalidImageError: (a ``ValueError``) undecodable or truncated data, a size outside
            ``[min_side, max_side]``, an unsupported array; the message names the source.
        TypeError: an input of another type.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if min_side < 1 or max_side < min_side:
        raise ValueError(f"load_image: expected 1 <= min_side <= max_side, found min_side={min_side}, "
                         f"max_side={max_side}")
    source = _describe(x)

    if isinstance(x, Image.Image):
        _check_size(source, x.width, x.height, min_side, max_side)
        try:
            x.load()
            if x.format is not None:
                # As it came from Image.open (an image made or changed in memory has no format):
                # its EXIF orientation is applied, as for a path, so that boxes are given in the
                # orientation the photo is seen in. exif_transpose removes the tag it applies,
                # so an image already passed through it is not turned twice.
                x = ImageOps.exif_transpose(x) or x
        except (OSError, ValueError, SyntaxError) as e:
            raise InvalidImageError(source, f"cannot decode image: {e}") from e
        return _to_rgb(x, source)

    fp: Any
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if not p.exists():
            raise FileNotFoundError(f"{source}: image file not found")
        if not p.is_file():
            raise InvalidImageError(source, "expected an image file, found a directory or special file")
        fp = p
    elif isinstance(x, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(x))
    elif hasattr(x, "read"):
        fp = x
    elif hasattr(x, "__array__") or hasattr(x, "__array_interface__"):
        if hasattr(x, "detach"):  # torch tensor
            x = _tensor_to_numpy(x, source)
        return _to_rgb(_array_to_pil(x, source, min_side, max_side), source)
    else:
        raise TypeError(f"load_image: expected a path, bytes, a file object, a PIL image or an array, "
                        f"found {type(x).__name__}")

    try:
        # Image.open reads the header only; the size is checked before pixels are decoded.
        with Image.open(fp) as im:
            _check_size(source, im.width, im.height, min_side, max_side)
            frames = getattr(im, "n_frames", 1)
            if frames > 1:  # an animated GIF / WebP / PNG, a TIFF of several pages
                warnings.warn(f"{source}: an image of {frames} frames or pages; only the first is read",
                              InputWarning, stacklevel=2)
            im.load()
            im = ImageOps.exif_transpose(im) or im
            out = _to_rgb(im, source)
            out.load()
            return out
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as e:
        raise InvalidImageError(source, f"image too large (decompression bomb guard): {e}") from e
    except UnidentifiedImageError as e:
        raise InvalidImageError(source, "cannot decode image: not a recognised image format") from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise InvalidImageError(source, f"cannot decode image: {e}") from e


def images_to_uint8(images, size: int, *, max_side: int = DEFAULT_MAX_SIDE, desc: str | None = None,
                    channels_last: bool = False):
    """Decode ``images`` (anything :func:`load_image` reads) and resize each to a ``size``
    square: a uint8 tensor (N, 3, size, size). ``desc``: a progress bar for long lists.
    ``channels_last``: the same values laid out as (N, size, size, 3) in memory (the layout a
    channels-last network reads; the pixels are copied once, without a transpose).

    Raises:
        InvalidImageError: an unreadable image, named by its position in ``images``.
    """
    import numpy as np
    import torch
    from PIL import Image

    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    it = enumerate(images)
    if desc is not None and len(images) > 256:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(images), desc=desc, unit="img")
    for i, x in it:
        try:
            im = load_image(x, max_side=max_side)
        except InvalidImageError as e:
            raise InvalidImageError(f"image {i}: {e.source}", e.reason) from e
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(im, dtype=np.uint8)  # (S, S, 3)
    t = torch.from_numpy(out).permute(0, 3, 1, 2)  # (N, 3, S, S), channels-last strides
    return t if channels_last else t.contiguous()
