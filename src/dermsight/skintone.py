"""Skin tone from the image itself: the individual typology angle (ITA) of non-lesion skin.

No skin-type labels exist for the ISIC data, so the tone is *estimated* from the pixels around
the lesion (Del Bino et al., 2006 / Chardon et al., 1991)::

    ITA = arctan((L* - 50) / b*) * 180 / pi       (L*, b*: CIELAB, D65)

computed on the **median** L* and b* of the pixels taken as non-lesion skin. Del Bino's bands:
very light > 55 deg, light 41-55, intermediate 28-41, tan 10-28, brown -30-10, dark < -30.

Which pixels count as skin (all on a copy subsampled to at most ``MAX_SIDE`` px per side):

1. **not too dark**: L* < ``DARK_L`` is the dermatoscope's black vignette/corners or hair; the
   dark mask is dilated by ``DARK_MARGIN`` px so the grey rim of a vignette is dropped too;
2. **not too bright**: L* > ``BRIGHT_L`` or any channel >= 250 is a specular highlight;
3. **lighter than the lesion**: when the L* histogram of the remaining pixels has two clear
   modes (Otsu split with class means ``MIN_SPLIT`` L* units apart), only the lighter class is
   kept: lesions are darker than the skin around them;
4. **away from the centre** when possible: the lesion is usually centred, so pixels outside a
   central disc (radius ``CENTRE_RADIUS`` x the shorter side) are used if at least
   ``MIN_SKIN_FRACTION`` of the image remains, else all pixels left after 1-3.

:func:`ita_degrees` returns ``None`` when fewer than ``MIN_SKIN_FRACTION`` of the pixels are
skin or the median b* is not positive (ITA is then undefined). The second case is common: many
dermoscopy images have a blue, grey or purple colour cast from the instrument's lighting and
white balance (about a third of HAM10000, a tenth of ISIC 2017/2019: docs/skin-tone.md), and no
colour correction is attempted, because it would also remove the skin's own yellow. This is an
*estimate* under dermoscopic lighting, not a colorimeter reading: treat bands as coarse, and the
darker bands as "few images here", not as measured Fitzpatrick types.

sRGB -> CIELAB uses the standard IEC 61966-2-1 transfer curve, the sRGB D65 matrix and the CIE
1976 L*a*b* formulas (the same as ``skimage.color.rgb2lab`` with the default D65/2 deg
illuminant); numpy only, so serving and evaluation need no extra dependency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import reduce

import numpy as np
import numpy.typing as npt

__all__ = [
    "BANDS",
    "BAND_LIMITS",
    "DARKER_BANDS",
    "NOT_ESTIMABLE",
    "ita_band",
    "ita_degrees",
    "ita_for_images",
    "ita_from_lab",
    "skin_mask",
    "srgb_to_lab",
]

#: Del Bino categories, lightest first.
BANDS: tuple[str, ...] = ("very light", "light", "intermediate", "tan", "brown", "dark")
#: Lower limit (exclusive) of each band in degrees; the last band has no lower limit.
BAND_LIMITS: tuple[float, ...] = (55.0, 41.0, 28.0, 10.0, -30.0)
#: The bands that the ISIC data barely contain; reports count them explicitly.
DARKER_BANDS: tuple[str, ...] = ("tan", "brown", "dark")
#: Band label for images where no ITA could be estimated.
NOT_ESTIMABLE = "not estimable"

MAX_SIDE = 128
DARK_L = 25.0
DARK_MARGIN = 3
BRIGHT_L = 95.0
SATURATED = 250
MIN_SPLIT = 12.0
CENTRE_RADIUS = 0.30
MIN_SKIN_FRACTION = 0.03

FloatArray = npt.NDArray[np.float32]

# sRGB (IEC 61966-2-1) -> linear, as a lookup table over the 256 uint8 codes.
_codes = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_codes <= 0.04045, _codes / 12.92, ((_codes + 0.055) / 1.055) ** 2.4)
_LINEAR32 = _LINEAR.astype(np.float32)
# linear sRGB -> XYZ (D65), rows X, Y, Z; then divided by the D65 white point (2 deg observer).
_M = np.array([[0.412453, 0.357580, 0.180423],
               [0.212671, 0.715160, 0.072169],
               [0.019334, 0.119193, 0.950227]])
_WHITE = np.array([0.95047, 1.0, 1.08883])
_M_WHITE = (_M / _WHITE[:, None]).T.astype(np.float32)
_EPS = (6.0 / 29.0) ** 3
_KAPPA = 1.0 / (3.0 * (6.0 / 29.0) ** 2)


def srgb_to_lab(rgb: npt.ArrayLike) -> FloatArray:
    """uint8 sRGB ``(..., 3)`` -> CIELAB ``(..., 3)`` float32 (L* 0-100, D65)."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(np.asarray(arr, dtype=np.float64)), 0, 255).astype(np.uint8)
    if arr.shape[-1:] != (3,):
        raise ValueError(f"expected (..., 3) RGB values, got shape {arr.shape}")
    lin = _LINEAR32[arr]
    xyz = lin @ _M_WHITE
    f = np.where(xyz > _EPS, np.cbrt(xyz), xyz * _KAPPA + 4.0 / 29.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab.astype(np.float32, copy=False)


def ita_from_lab(lightness: float, b_star: float) -> float | None:
    """ITA in degrees from L* and b*; ``None`` when b* <= 0 (the angle is then undefined)."""
    if not (math.isfinite(lightness) and math.isfinite(b_star)) or b_star <= 0:
        return None
    return math.degrees(math.atan((lightness - 50.0) / b_star))


def ita_band(ita: float | None) -> str:
    """Del Bino band of an ITA in degrees (``not estimable`` for ``None``/NaN).

    Boundaries belong to the darker band: exactly 55 deg is ``light``, exactly -30 is ``dark``.
    """
    if ita is None or not math.isfinite(ita):
        return NOT_ESTIMABLE
    for band, lower in zip(BANDS, BAND_LIMITS, strict=False):
        if ita > lower:
            return band
    return BANDS[-1]


def _subsample(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    step = max(1, math.ceil(max(rgb.shape[0], rgb.shape[1]) / MAX_SIDE))
    return rgb[::step, ::step]


def _dilate(mask: npt.NDArray[np.bool_], r: int) -> npt.NDArray[np.bool_]:
    """Binary dilation with a ``(2r+1)`` square, as two separable passes of shifted ORs."""
    if r <= 0 or not mask.any():
        return mask
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        n = src.shape[axis]
        for s in range(1, min(r, n - 1) + 1):
            if axis == 0:
                out[s:] |= src[:-s]
                out[:-s] |= src[s:]
            else:
                out[:, s:] |= src[:, :-s]
                out[:, :-s] |= src[:, s:]
    return out


def _otsu_split(values: FloatArray) -> float | None:
    """Otsu threshold on L* (1-unit bins) when the two classes are clearly apart, else None."""
    hist = np.bincount(np.clip(values, 0, 100).astype(np.int64), minlength=101).astype(
        np.float64)
    centres = np.arange(hist.size, dtype=np.float64) + 0.5
    w0 = np.cumsum(hist)
    s0 = np.cumsum(hist * centres)
    total, total_s = w0[-1], s0[-1]
    w1 = total - w0
    valid = (w0 > 0) & (w1 > 0)
    if not valid.any():
        return None
    mu0 = np.divide(s0, w0, out=np.zeros_like(s0), where=w0 > 0)
    mu1 = np.divide(total_s - s0, w1, out=np.zeros_like(s0), where=w1 > 0)
    between = np.where(valid, w0 * w1 * (mu0 - mu1) ** 2, -1.0)
    k = int(np.argmax(between))
    if mu1[k] - mu0[k] < MIN_SPLIT:
        return None
    return float(k + 1)  # values >= k + 1 are the lighter class


def skin_mask(lab: FloatArray, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Boolean mask of the pixels taken as non-lesion skin (rules 1-4 in the module docstring)."""
    lightness = lab[..., 0]
    dark = _dilate(lightness < DARK_L, DARK_MARGIN)
    # the brightest channel per pixel; a chain of maximums, several times faster than
    # rgb.max(axis=-1) (a reduction over a 3-long axis)
    brightest = reduce(np.maximum, (rgb[..., k] for k in range(rgb.shape[-1])))
    bright = (lightness > BRIGHT_L) | (brightest >= SATURATED)
    mask = ~dark & ~bright
    if not mask.any():
        return mask
    split = _otsu_split(lightness[mask])
    if split is not None:
        mask &= lightness >= split
    h, w = lightness.shape
    yy, xx = np.ogrid[:h, :w]
    radius = CENTRE_RADIUS * min(h, w)
    outer = (yy - (h - 1) / 2.0) ** 2 + (xx - (w - 1) / 2.0) ** 2 > radius**2
    ring = mask & outer
    if ring.sum() >= MIN_SKIN_FRACTION * mask.size:
        return ring
    return mask


def ita_degrees(rgb: npt.ArrayLike) -> float | None:
    """ITA (degrees) of the non-lesion skin in an RGB image; ``None`` if not estimable.

    ``rgb``: ``(H, W, 3)`` uint8 (other dtypes are rounded and clipped to 0-255); an RGBA image
    is read without its alpha channel and a grey ``(H, W)`` image has no colour, so ``None``.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 2 or arr.shape[1] < 2:
        return None
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(np.asarray(arr, dtype=np.float64)), 0, 255).astype(np.uint8)
    small = _subsample(arr)
    lab = srgb_to_lab(small)
    mask = skin_mask(lab, small)
    if mask.sum() < max(1, MIN_SKIN_FRACTION * mask.size):
        return None
    # one channel at a time: no (n, 3) copy of the skin pixels
    return ita_from_lab(float(np.median(lab[..., 0][mask])), float(np.median(lab[..., 2][mask])))


def ita_for_images(images: Iterable[npt.ArrayLike], workers: int = 1) -> list[float | None]:
    """:func:`ita_degrees` over many images, in order (``workers`` > 1 uses threads)."""
    items: Sequence[npt.ArrayLike] = list(images)
    if workers <= 1 or len(items) < 2:
        return [ita_degrees(im) for im in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(ita_degrees, items))
