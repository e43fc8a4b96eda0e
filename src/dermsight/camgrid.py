"""The heatmap's map: the class activation map (CAM) of one class over the WHOLE image, on a grid
twice as fine as the network's.

The classification looks at the centre square at ``InputSpec.size`` px (``preprocess``); its own
CAM is a coarse ``size / 32`` grid (5 x 5 at 160 px) of that square only. This module explains
the same class over the whole frame instead:

* the whole image is resized so that its short side is ``InputSpec.size`` px, or
  ``size / crop_fraction`` when the classification sees only the centre (the scale the
  classification sees; ``crop="none"`` bundles squash the frame to a square as they do when
  classifying) and normalised like the network input (``preprocess.normalize``);
* the network is run on it twice: on the frame, and on the frame cropped by half a stride (16 px)
  at the top and the left, whose CAM cells lie half a stride diagonally from the first run's.
  Together they sample the map on a quincunx lattice (every other cell of a 16 px grid, like
  the black squares of a chessboard); each other cell of that grid is the mean of its sampled
  neighbours. (Four runs, shifted in x, y and both, would sample every cell; on 40 real lesion
  images their map and this one correlate 0.995 (median, per pixel) at twice the cost, while the
  old 32 px map correlates 0.915 with it.) For a square image the first run IS the
  classification's run, so its CAM is reused and only one run is added;
* the samples are interpolated (separably, linearly) onto a regular grid of cells of half a
  stride that covers the frame edge to edge, then ReLU + divide by the maximum.

So the result is a ``(ny, nx)`` map in [0, 1] whose cells tile the whole image (ny / nx is the
image's aspect to within one cell): 10 x 10 for a square image, 10 x 13 for 4:3. It needs a model
whose ONNX input has symbolic height and width (the shipped bundle does; ``train.export`` exports
them so); for a bundle with a fixed input size it falls back to the classification's own CAM of
the centre square, placed in the full frame with zero heat outside it.

The classification itself is untouched: only the explanation is computed here.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
from PIL import Image

from dermsight.heatmap import normalize_cam, upsample
from dermsight.preprocess import InputSpec, MetaSpec, encode_meta, normalize, preprocess
from dermsight.records import Metadata

#: Most pixels of the frame the map is computed on, as a multiple of ``size`` squared. Frames
#: wider than 2:1 are computed at a smaller scale so that the cost stays bounded.
MAX_AREA = 2.0


class CardLike(Protocol):
    @property
    def input_spec(self) -> InputSpec: ...

    @property
    def meta_spec(self) -> MetaSpec: ...


def frame_size(h: int, w: int, spec: InputSpec) -> tuple[int, int]:
    """(height, width) the whole image is resized to for the map, at the classification's scale:
    short side ``spec.size`` / ``spec.crop_fraction`` (``crop="none"``: the square the
    classification squashes to)."""
    s = spec.size / spec.crop_fraction  # the classification sees the centre crop_fraction
    if spec.crop == "none":
        return round(s), round(s)
    scale = s / min(h, w)
    area = h * w * scale * scale
    if area > MAX_AREA * s * s:
        scale *= math.sqrt(MAX_AREA * s * s / area)
    return max(1, round(h * scale)), max(1, round(w * scale))


def is_dynamic(session: Any) -> bool:
    """True when the ONNX ``image`` input accepts any height and width."""
    shape = session.get_inputs()[0].shape
    return not (isinstance(shape[2], int) and isinstance(shape[3], int))


def _resample(spec: InputSpec) -> Image.Resampling:
    return Image.Resampling[spec.interpolation.upper()]


def _cam(session: Any, x: np.ndarray, meta: np.ndarray, cls: int) -> np.ndarray:
    (cam,) = session.run(["cam"], {"image": x[None], "meta": meta[None]})
    return np.asarray(cam[0, cls], np.float32)


def _resample_axis(values: np.ndarray, centres: np.ndarray, n: int, length: int,
                   axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` from samples at increasing pixel ``centres`` to the
    centres of ``n`` equal cells tiling ``length`` pixels (values beyond the outer samples are
    held)."""
    targets = (np.arange(n) + 0.5) * length / n
    return np.apply_along_axis(lambda v: np.interp(targets, centres, v), axis, values)


def _fill_from_neighbours(grid: np.ndarray) -> np.ndarray:
    """NaN cells of a quincunx lattice -> the mean of their (up to four) sampled neighbours."""
    padded = np.pad(grid, 1, constant_values=np.nan)
    near = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    count = np.sum(~np.isnan(near), axis=0)
    total = np.nansum(near, axis=0)
    fill = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.where(np.isnan(grid), fill, grid)


def shifted_grid(session: Any, frame: np.ndarray, meta: np.ndarray, cls: int,
                 spec: InputSpec, base: np.ndarray | None = None) -> np.ndarray:
    """Raw CAM of class ``cls`` on a half-stride grid over ``frame`` (uint8 RGB); ``base`` is the
    unshifted run's CAM when the caller already has it.

    Two runs: the frame, and the frame cropped by half a stride at the top and the left. Their
    cells are samples on a quincunx lattice (every other cell of the half-stride grid, like the
    black squares of a chessboard); each remaining cell is the mean of its sampled neighbours.
    """
    fh, fw = frame.shape[:2]
    if base is None:
        base = _cam(session, normalize(frame, spec), meta, cls)
    stride = 2 ** round(math.log2(max(fh / base.shape[0], fw / base.shape[1])))
    half = stride // 2
    runs = {0: base}
    if fh > half and fw > half:
        runs[half] = _cam(session, normalize(frame[half:, half:], spec), meta, cls)
    # sample positions (pixel centres of the cells) of both runs, in order along each axis
    rows = sorted((min(d + stride * k + stride / 2, fh), d, k)
                  for d, cam in runs.items() for k in range(cam.shape[0]))
    cols = sorted((min(d + stride * k + stride / 2, fw), d, k)
                  for d, cam in runs.items() for k in range(cam.shape[1]))
    grid = np.full((len(rows), len(cols)), np.nan, np.float32)
    for a, (_, dy, ky) in enumerate(rows):
        for b, (_, dx, kx) in enumerate(cols):
            if dy == dx:  # a cell of run ``dy``; the others are filled in below
                grid[a, b] = runs[dy][ky, kx]
    grid = _fill_from_neighbours(grid)
    cy = np.array([c for c, _, _ in rows], np.float64)
    cx = np.array([c for c, _, _ in cols], np.float64)
    ny, nx = max(1, round(fh / half)), max(1, round(fw / half))
    grid = _resample_axis(grid, cy, ny, fh, axis=0)
    return _resample_axis(grid, cx, nx, fw, axis=1).astype(np.float32)


def centre_only(session: Any, image: np.ndarray, meta: np.ndarray, cls: int,
                spec: InputSpec) -> np.ndarray:
    """Fallback for a fixed-size model: its CAM of the centre square (of its centre
    ``crop_fraction``), placed in the full frame (zero outside it, which that model never sees),
    one cell per pixel of the frame."""
    cam = _cam(session, preprocess(image, spec), meta, cls)
    if spec.crop == "none" and spec.crop_fraction >= 1:
        return cam
    h, w = image.shape[:2] if spec.crop != "none" else (1, 1)  # "none": a squashed square
    scale = spec.size / (spec.crop_fraction * min(h, w))
    fh, fw = (max(spec.size, round(n * scale)) for n in (h, w))
    top, left = (fh - spec.size) // 2, (fw - spec.size) // 2
    peak = float(cam.max())
    out = np.zeros((fh, fw), np.float32)
    if peak > 0:  # upsample expects [0, 1]; normalize_cam rescales the result anyway
        square = upsample(np.maximum(cam, 0) / peak, (spec.size, spec.size))
        out[top : top + spec.size, left : left + spec.size] = square
    return out


def class_map(
    session: Any, image: np.ndarray, card: CardLike, meta: Metadata | None, cls: int,
    classified: np.ndarray | None = None,
) -> np.ndarray:
    """The heatmap of class index ``cls`` for ``image`` (uint8 RGB, any size): a [0, 1] map
    whose cells tile the whole image (see the module docstring).

    ``classified`` is the CAM of ``cls`` from the classification's own run, if the caller has
    it: when that run's input is exactly the unshifted frame (a square image, or a squashing
    ``crop="none"`` bundle) it is reused instead of being computed again (one run of two less).
    With test-time augmentation it is the flip/rotation average, so the map then mixes it in.
    """
    spec = card.input_spec
    m = encode_meta(meta, card.meta_spec)
    if not is_dynamic(session):
        return normalize_cam(centre_only(session, image, m, cls, spec))
    h, w = image.shape[:2]
    fh, fw = frame_size(h, w, spec)
    same_input = (spec.crop == "none" or h == w) and spec.crop_fraction >= 1
    base = classified if same_input and classified is not None else None
    if (fh, fw) == (h, w):
        frame = image
    else:
        frame = np.asarray(Image.fromarray(image).resize((fw, fh), _resample(spec)))
    return normalize_cam(shifted_grid(session, frame, m, cls, spec, base))

