"""Class-activation heatmaps: normalise a CAM, colour it, overlay it on the lesion, encode PNG.

The map itself (the CAM of the suggested class over the whole image) is computed by
``dermsight.camgrid``; this module only draws it. Pure numpy + Pillow, so serving needs no torch
and no matplotlib.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

# 'turbo'-like colour map from a few anchor colours (perceptually ordered, colour-blind friendlier
# than jet); interpolated to 256 entries.
_ANCHORS = np.array(
    [
        [48, 18, 59],
        [70, 107, 227],
        [40, 187, 236],
        [50, 241, 152],
        [164, 252, 60],
        [237, 208, 58],
        [251, 128, 34],
        [210, 49, 5],
        [122, 4, 3],
    ],
    dtype=np.float32,
)
_LUT = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, i]) for i in
     range(3)],
    axis=1,
).astype(np.uint8)


def normalize_cam(cam: np.ndarray) -> np.ndarray:
    """Raw class activation map (h, w) -> [0, 1] (ReLU, then divide by the max)."""
    cam = np.maximum(np.asarray(cam, np.float32), 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    return cam / peak if peak > 1e-12 else np.zeros_like(cam)


def upsample_levels(cam01: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[0, 1] map -> its colour-map index (uint8) at ``size`` = (width, height), bilinear;
    ``levels(upsample(...))`` without the float image between."""
    # clipped first: a value just above 1 must be hot, not wrap around to a cold level
    img = Image.fromarray((np.clip(cam01, 0.0, 1.0) * 255).astype(np.uint8), mode="L")
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR))


def upsample(cam01: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[0, 1] map -> (H, W) float32 at ``size`` = (width, height), bilinear."""
    return upsample_levels(cam01, size).astype(np.float32) / 255.0


def levels(cam01: np.ndarray) -> np.ndarray:
    """[0, 1] map -> its colour-map index (uint8, 256 levels)."""
    return np.clip(cam01 * 255.0 + 0.5, 0, 255).astype(np.uint8)


def colorize(cam01: np.ndarray) -> np.ndarray:
    """[0, 1] map -> RGB uint8 via the colour map."""
    return _LUT[levels(cam01)]


def _blend_weights(alpha: float) -> np.ndarray:
    """Per colour-map level, the heat's weight in ``overlay`` as 0-255: ``alpha`` x 1.5 x the
    level, capped at ``alpha`` (hot areas show the colour, cold ones the image)."""
    weight = alpha * np.clip(np.arange(256, dtype=np.float32) / 255.0 * 1.5, 0.0, 1.0)
    return np.clip(weight * 255.0 + 0.5, 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, cam01: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the coloured heatmap onto the RGB image (heat weighted by its own intensity).

    Drawn in 8-bit by Pillow (colour-map level -> colour and weight by table, one composite),
    so a 24-megapixel photo takes about a second rather than several, without float copies of
    the image. ``image``: (h, w, 3) uint8 RGB (``ValueError`` otherwise); the result is a new,
    read-only array of the same shape."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay: the image must be an (h, w, 3) uint8 RGB array, not "
                         f"{image.shape} {image.dtype}")
    h, w = image.shape[:2]
    idx = upsample_levels(cam01, (w, h)) if cam01.shape != (h, w) else levels(cam01)
    colour = Image.fromarray(_LUT[idx])
    weight = Image.fromarray(_blend_weights(alpha)[idx], mode="L")
    return np.asarray(Image.composite(colour, Image.fromarray(np.ascontiguousarray(image)),
                                      weight))


def png_bytes(rgb_or_rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb_or_rgba).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def rgba_size(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(width, height) of a ``heatmap_rgba`` PNG: the map's aspect, ``size`` px on its long side."""
    h, w = shape[:2]
    if h >= w:
        return max(1, round(size * w / h)), size
    return size, max(1, round(size * h / w))


#: Long side, in px, of the heatmap PNG that dermsight hands out: the API's ``heatmap`` field and
#: ``Prediction.to_dict()``'s (the same answer), the default of the functions below. The map itself
#: (``dermsight.camgrid``) is 10 cells on the image's short side, so 112 px keeps all of it while
#: costing a quarter of 224 px to colour and encode; browsers stretch the overlay over the whole
#: image with CSS.
PNG_PX = 112

#: opacity of each colour-map entry: 1.3 x the heat, capped, so that hot areas are opaque and
#: cold ones see-through
_ALPHA = np.clip(np.arange(256) * 1.3, 0, 255).astype(np.uint8)


def heat_levels(cam01: np.ndarray, size: int = PNG_PX) -> np.ndarray:
    """The map upsampled to ``rgba_size``, as colour-map indices (``levels``)."""
    return upsample_levels(cam01, rgba_size(cam01.shape, size))


def heatmap_rgba(cam01: np.ndarray, size: int = PNG_PX) -> np.ndarray:
    """Transparent-background heatmap (RGBA) to lay over the image in a browser with opacity.

    The map (``camgrid.class_map``) tiles the whole image, so the PNG keeps its aspect, ``size``
    px on the long side, and is meant to be stretched over the whole image."""
    idx = heat_levels(cam01, size)
    return np.dstack([_LUT[idx], _ALPHA[idx]])


def heatmap_png(cam01: np.ndarray, size: int = PNG_PX) -> bytes:
    """``heatmap_rgba`` as a PNG, pixel for pixel: a palette image (the colour map, with each
    entry's opacity in its tRNS chunk), which encodes about 5x faster and 2.3x smaller than the
    same pixels as RGBA."""
    img = Image.fromarray(heat_levels(cam01, size), mode="P")
    img.putpalette(_LUT.tobytes())
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1, transparency=_ALPHA.tobytes())
    return buf.getvalue()


def heatmap_base64(cam01: np.ndarray, size: int = PNG_PX) -> str:
    """``heatmap_png`` as base64 (the API's ``heatmap`` field)."""
    return base64.b64encode(heatmap_png(cam01, size)).decode("ascii")
