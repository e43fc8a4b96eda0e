"""The "cannot assess" gate, scored with numpy only (the fitting lives in ``dermsight.train``).

* Quality checks (``quality_flags``): too small, blank, too dark, over-exposed, blurred, noise,
  no colour (a black-and-white image). Fixed thresholds (``DEFAULT_GATE``, written to the card's
  ``gate.quality``), not fitted.
* Gate v1 (``ood_score``): the deep-kNN distance of the model's pooled features to a bank of
  training images (``gate.npz``: ``bank``, ``k``); blocking above ``ood_threshold``, which is set
  on validation images (``train.calibrate.fit_gate``).
* Gate v2 (``v2_inputs``, ``v2_logit``), used in place of v1's threshold when the bundle has it
  (``has_v2``) and the image's quality statistics are given: a logistic "not dermoscopic" head on
  the pooled features, the kNN score and five image statistics (blocking above
  ``v2_threshold``), a second head for clinical skin photos that gives a non-blocking flag
  (``v2_clinical_threshold``) and, in bundles that have it, a third for dermoscopic images whose
  colours were altered (sepia, a tinted black-and-white copy, swapped channels, a negative:
  blocking above ``v2_recoloured_threshold``). The heads are plain arrays in ``gate.npz``,
  fitted by ``train.gate_fit`` (their thresholds set on validation images).

Blocking flags make a result "cannot assess" (``ood_flags``, ``assess``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from dermsight.parallel import limit_blas
from dermsight.preprocess import LUMA


@dataclass(frozen=True)
class Flag:
    code: str
    message: str
    blocking: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QualityStats:
    min_side: int
    mean: float  # mean luminance 0..255
    std: float  # luminance standard deviation
    clipped: float  # fraction of pixels near black or white
    sharpness: float  # variance of the Laplacian at 256 px
    saturation: float  # mean HSV saturation 0..1
    #: share of pixels with visible colour (channel spread > ``COLOUR_SPREAD``); not in the vector
    coloured: float = 1.0

    def as_vector(self) -> np.ndarray:
        return np.array(
            [self.mean, self.std, self.clipped, self.sharpness, self.saturation], np.float64
        )


#: a pixel counts as coloured when its largest and smallest channel differ by more than this
#: (of 255, at 256 px): a black-and-white copy has none (JPEG chroma noise stays below it), each
#: of the 13,592 dermoscopic images in ../shared at least 4.9 % of its pixels
#: (docs/experiments/README.md, "Black-and-white images")
COLOUR_SPREAD = 8.0


def quality_stats(image: np.ndarray) -> QualityStats:
    h, w = image.shape[:2]
    small = np.asarray(
        Image.fromarray(image).resize((256, 256), Image.Resampling.BILINEAR), np.float32
    )
    grey = small @ LUMA
    lap = (
        -4 * grey[1:-1, 1:-1]
        + grey[:-2, 1:-1]
        + grey[2:, 1:-1]
        + grey[1:-1, :-2]
        + grey[1:-1, 2:]
    )
    r, g, b = small[:, :, 0], small[:, :, 1], small[:, :, 2]
    # elementwise max/min: a reduction over the 3-long last axis is ~15x slower (hot path)
    mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    spread = mx - mn
    sat = np.where(mx > 0, spread / np.maximum(mx, 1e-6), 0.0)
    return QualityStats(
        min_side=int(min(h, w)),
        mean=float(grey.mean()),
        std=float(grey.std()),
        clipped=float(np.mean((grey < 8) | (grey > 247))),
        sharpness=float(lap.var()),
        saturation=float(sat.mean()),
        coloured=float(np.mean(spread > COLOUR_SPREAD)),
    )


#: Defaults used when a bundle carries no fitted values.
DEFAULT_GATE: dict[str, float] = {
    "min_side": 64,
    "dark_mean": 30.0,
    "bright_mean": 235.0,
    "min_std": 4.0,
    "max_clipped": 0.5,
    "min_sharpness": 1.5,
    "max_sharpness": 10000.0,
    # fewer coloured pixels than this share (QualityStats.coloured): a black-and-white image,
    # which the network (trained on colour) ranks far worse (docs/experiments/README.md,
    # "Black-and-white images"); 0 turns the check off
    "min_coloured": 0.01,
    # not blocking: the "compressed" flag (dermsight.compression) for JPEG uploads at or below
    # this estimated quality (0: never) and, when 1, for every lossy WebP; measured on the
    # shipped network's validation images ("Compressed uploads", docs/experiments/README.md)
    "flag_jpeg_quality": 85.0,
    "flag_lossy_webp": 1.0,
}


def quality_thresholds(cfg: dict[str, Any]) -> dict[str, float]:
    """The quality thresholds in force: the card's ``gate.quality`` (what finalize writes and the
    Model page shows) over the defaults; top-level keys of older cards are still honoured."""
    raw = cfg.get("quality")
    nested: dict[str, Any] = raw if isinstance(raw, dict) else {}
    legacy = {k: v for k, v in cfg.items() if k in DEFAULT_GATE}
    return {**DEFAULT_GATE, **legacy,
            **{k: float(v) for k, v in nested.items() if k in DEFAULT_GATE}}


def quality_flags(stats: QualityStats, cfg: dict[str, Any]) -> list[Flag]:
    c = quality_thresholds(cfg)
    flags: list[Flag] = []
    if stats.min_side < c["min_side"]:
        flags.append(Flag("too_small", f"image is only {stats.min_side} px on its short side; "
                                       f"at least {int(c['min_side'])} px are needed"))
    if stats.std < c["min_std"]:
        flags.append(Flag("blank", "image is almost uniform: no lesion can be seen"))
    if stats.mean < c["dark_mean"]:
        flags.append(Flag("too_dark", "image is too dark to assess"))
    if stats.mean > c["bright_mean"]:
        flags.append(Flag("overexposed", "image is over-exposed"))
    elif stats.clipped > c["max_clipped"]:  # same code: the API's codes stay as they were
        flags.append(Flag("overexposed", "most of the image is pure black or pure white"))
    if stats.sharpness < c["min_sharpness"] and stats.std >= c["min_std"]:
        flags.append(Flag("blurred", "image is too blurred to assess"))
    if stats.sharpness > c["max_sharpness"]:
        flags.append(Flag("noise", "image is mostly noise: no lesion can be seen"))
    if stats.coloured < c["min_coloured"] and stats.std >= c["min_std"]:
        flags.append(Flag("greyscale", "image is black and white: the model reads colour; "
                                       "send the colour original"))
    return flags


_BLAS_LOCK = threading.Lock()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run numpy's BLAS on the calling thread only, for the bank product below.

    OpenBLAS would otherwise wake one spinning thread per core for a sub-millisecond product and
    those threads keep competing with ONNX Runtime's inference threads: measured on 2 cores under
    load, 32 vs 38 ms per ``Dermsight.predict`` (median of 100), for a product that itself costs
    0.6 ms on one thread vs 0.3 ms on two (the web app and batch scorer already limit BLAS to one
    thread for the whole process; there this adds < 0.1 ms per call). The lock keeps concurrent
    callers from restoring each other's limit, so the caller's BLAS setting is back unchanged.
    """
    with _BLAS_LOCK, limit_blas(1, cached=True):
        yield


def ood_score(embedding: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Deep k-nearest-neighbour distance of pooled features to the training set.

    ``embedding`` is (N, D). ``arrays`` holds ``bank`` (M, D): L2-normalised pooled features of M
    training images, and ``k`` (the neighbour rank). The score is 1 - cosine similarity to the
    k-th nearest training image; larger = less like a dermoscopic training image.
    """
    emb = np.atleast_2d(np.asarray(embedding, np.float32))
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    with one_blas_thread():
        sims = emb @ arrays["bank"].astype(np.float32, copy=False).T  # no per-call copy if f32
    k = int(arrays["k"])
    kth = np.partition(sims, sims.shape[1] - k, axis=1)[:, sims.shape[1] - k]
    return (1.0 - kth).astype(np.float64)


OOD_FLAG = Flag("out_of_distribution",
                "this does not look like a dermoscopic image of a skin lesion")
CLINICAL_FLAG = Flag("not_dermoscopic",
                     "not a dermoscopic image \u2014 accuracy unknown: this looks like a "
                     "clinical (non-dermoscopic) photo of skin; the model was trained and tested "
                     "on dermoscopic images only", blocking=False)

RECOLOURED_FLAG = Flag("recoloured",
                       "the colours of this image look altered (sepia or another photo filter, a "
                       "tinted black-and-white copy, swapped colour channels or a negative): the "
                       "model reads colour; send the image as the dermatoscope recorded it")


def v2_inputs(embedding: np.ndarray, knn: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Gate v2's input row per image: pooled features, the kNN score and five image statistics
    (mean and spread of luminance /255, clipped fraction, log(1 + sharpness), saturation)."""
    q = np.atleast_2d(np.asarray(quality, np.float64))
    stats = np.column_stack([q[:, 0] / 255.0, q[:, 1] / 255.0, q[:, 2], np.log1p(q[:, 3]),
                             q[:, 4]])
    emb = np.atleast_2d(np.asarray(embedding, np.float64))
    return np.concatenate([emb, np.asarray(knn, np.float64).reshape(-1, 1), stats], axis=1)


def v2_logit(x: np.ndarray, arrays: dict[str, np.ndarray], head: str = "v2") -> np.ndarray:
    """A gate v2 head's logit (higher = less like a dermoscopic image) for ``v2_inputs`` rows:
    a logistic regression stored as plain arrays (``{head}_w``, ``{head}_b``, and the shared
    standardisation ``v2_mean`` / ``v2_scale``)."""
    z = (x - arrays["v2_mean"].astype(np.float64)) / arrays["v2_scale"].astype(np.float64)
    return np.asarray(z @ arrays[f"{head}_w"].astype(np.float64) + float(arrays[f"{head}_b"]),
                      np.float64)


def has_v2(cfg: dict[str, Any], arrays: dict[str, np.ndarray]) -> bool:
    return "v2_threshold" in cfg and "v2_w" in arrays and "bank" in arrays


def ood_flags(
    embeddings: np.ndarray, cfg: dict[str, Any], arrays: dict[str, np.ndarray],
    quality: np.ndarray | None = None,
) -> list[tuple[list[Flag], float | None]]:
    """The out-of-distribution part of the gate for a batch of pooled features (N, D).

    With a gate v2 in the bundle and the images' ``quality`` vectors (N, 5), the v2 heads
    decide (the score returned is the blocking head's logit); otherwise gate v1 (the kNN score
    against ``ood_threshold``)."""
    n = len(np.atleast_2d(embeddings))
    if not arrays or "ood_threshold" not in cfg:
        return [([], None)] * n
    knn = ood_score(embeddings, arrays)
    if quality is None or not has_v2(cfg, arrays):
        threshold = float(cfg["ood_threshold"])
        return [([OOD_FLAG], float(s)) if float(s) > threshold else ([], float(s)) for s in knn]
    x = v2_inputs(embeddings, knn, quality)
    block = v2_logit(x, arrays, "v2")
    clinical = (v2_logit(x, arrays, "v2c") > float(cfg["v2_clinical_threshold"])
                if "v2c_w" in arrays and "v2_clinical_threshold" in cfg else np.zeros(n, bool))
    recoloured = (v2_logit(x, arrays, "v2r") > float(cfg["v2_recoloured_threshold"])
                  if "v2r_w" in arrays and "v2_recoloured_threshold" in cfg
                  else np.zeros(n, bool))
    out: list[tuple[list[Flag], float | None]] = []
    for s, c, r in zip(block, clinical, recoloured, strict=True):
        if float(s) > float(cfg["v2_threshold"]):
            out.append(([OOD_FLAG], float(s)))
        elif r:
            out.append(([RECOLOURED_FLAG], float(s)))
        else:
            out.append(([CLINICAL_FLAG] if c else [], float(s)))
    return out


def quality_gate(image: np.ndarray, cfg: dict[str, Any]) -> tuple[list[Flag], np.ndarray]:
    """The quality checks for one image, and its statistics vector (gate v2 uses it)."""
    stats = quality_stats(image)
    return quality_flags(stats, cfg), stats.as_vector()


def assess(
    image: np.ndarray, embedding: np.ndarray | None, cfg: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> tuple[list[Flag], float | None]:
    """All gate flags for one image (and its OOD score if the bundle has a fitted gate)."""
    flags, quality = quality_gate(image, cfg)
    if embedding is None:
        return flags, None
    ood, score = ood_flags(embedding, cfg, arrays, quality[None])[0]
    return flags + ood, score
