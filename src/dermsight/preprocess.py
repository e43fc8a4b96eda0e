"""The ONE preprocessing path shared by training, export, serving and batch scoring.

``preprocess`` turns a decoded RGB image into the network's input tensor exactly as the bundle's
``InputSpec`` says; ``encode_meta`` turns age/sex/site into the metadata vector with explicit
missing indicators. Training augmentations run *before* ``preprocess`` on the RGB image, so the
eval/serve path and the train path share this code and cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from dermsight import taxonomy
from dermsight.records import Metadata

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
#: the values ``InputSpec.interpolation`` and ``InputSpec.crop`` may take
INTERPOLATIONS = tuple(_RESAMPLE)
CROPS = ("center_square", "none")
#: RGB -> luma weights (ITU-R BT.601): an image's brightness (the gate, the augmentations)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class InputSpec:
    size: int = 160
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    crop: str = "center_square"  # "center_square" (crop the short side) or "none" (squash)
    #: the network sees the centre ``crop_fraction`` of that field of view (each side), resized
    #: to ``size`` (like timm's ``crop_pct``); 1 = all of it. Training's random crops are taken
    #: inside that same centre, so training never sees more of the image than serving does
    crop_fraction: float = 1.0
    #: "none" or "shades_of_gray" (Finlayson & Trezzi 2004, Minkowski norm ``cc_power``)
    color_constancy: str = "none"
    cc_power: float = 6.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(
            size=int(d["size"]),
            mean=tuple(float(x) for x in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in d["std"]),  # type: ignore[arg-type]
            interpolation=str(d.get("interpolation", "bicubic")),
            crop=str(d.get("crop", "center_square")),
            crop_fraction=float(d.get("crop_fraction", 1.0)),
            color_constancy=str(d.get("color_constancy", "none")),
            cc_power=float(d.get("cc_power", 6.0)),
        )


@dataclass(frozen=True)
class MetaSpec:
    """Layout of the metadata vector: [age/100, age_missing, sex one-hot.., sex_missing,
    site one-hot.., site_missing]."""

    sexes: tuple[str, ...] = taxonomy.SEXES
    sites: tuple[str, ...] = taxonomy.SITES
    age_scale: float = 100.0
    fields: tuple[str, ...] = field(default=("age", "sex", "site"))

    @property
    def dim(self) -> int:
        return 2 + len(self.sexes) + 1 + len(self.sites) + 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dim"] = self.dim
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetaSpec:
        return cls(
            sexes=tuple(d["sexes"]),
            sites=tuple(d["sites"]),
            age_scale=float(d.get("age_scale", 100.0)),
        )


def square_crop(image: np.ndarray) -> np.ndarray:
    """Centre square of an (H, W, 3) image (the short side)."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top : top + s, left : left + s]


def field_of_view(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The part of an (H, W, 3) image the network sees (serving) and training crops from: the
    centre square (``crop="center_square"``) or all of it (``"none"``), then its centre
    ``crop_fraction``."""
    view = square_crop(image) if spec.crop == "center_square" else image
    return centre_fraction(view, spec.crop_fraction)


def centre_fraction(image: np.ndarray, fraction: float) -> np.ndarray:
    """The centre ``fraction`` of each side of an (H, W, 3) image (at least 1 pixel)."""
    if fraction >= 1.0:
        return image
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


def resize_rgb(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Geometric part of preprocessing: crop per spec (field of view, then its centre
    ``crop_fraction``) and resize to (size, size) uint8 RGB."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    image = field_of_view(image, spec)
    if image.shape[0] == spec.size and image.shape[1] == spec.size:
        return image
    pil = Image.fromarray(image).resize((spec.size, spec.size), _RESAMPLE[spec.interpolation])
    return np.asarray(pil)


COLOR_CONSTANCY = ("none", "shades_of_gray")


def shades_of_gray(image: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Shades of Gray colour constancy on uint8 RGB -> float32 RGB in [0, 255].

    Estimates the illuminant per channel as the Minkowski ``power``-norm of the pixel values and
    rescales each channel so that the illuminant becomes neutral grey (brightness is kept: the
    gains average 1). Removes the colour cast of different dermatoscopes and cameras
    (Barata et al. 2015 used it for dermoscopy; ISIC 2019/2020 winners too).
    """
    x = image.astype(np.float32)
    flat = x.reshape(-1, 3)
    norm = np.power(np.mean(np.power(flat, power), axis=0), 1.0 / power)  # (3,)
    norm = np.maximum(norm, 1e-3)
    gain = norm.mean() / norm
    # a pure-colour image (one channel ~0) would get an absurd gain: cap it
    gain = np.clip(gain, 1 / 3, 3.0).astype(np.float32)
    return np.clip(x * gain, 0.0, 255.0)


def normalize(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 (S, S, 3) -> float32 (3, S, S): colour constancy per spec, scaled to [0, 1], then
    standardised by mean/std."""
    if spec.color_constancy == "shades_of_gray":
        x: np.ndarray = shades_of_gray(image, spec.cc_power) / 255.0
    elif spec.color_constancy == "none":
        x = image.astype(np.float32) / 255.0
    else:
        raise ValueError(f"unknown color_constancy {spec.color_constancy!r}; "
                         f"expected one of {', '.join(COLOR_CONSTANCY)}")
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """RGB uint8 image of any size -> float32 (3, size, size) network input."""
    return normalize(resize_rgb(image, spec), spec)


def encode_meta(meta: Metadata | None, spec: MetaSpec) -> np.ndarray:
    """Metadata -> float32 vector with explicit missing flags (all missing if ``meta`` is None)."""
    meta = meta or Metadata()
    v = np.zeros(spec.dim, np.float32)
    if meta.age is None:
        v[1] = 1.0
    else:
        v[0] = float(meta.age) / spec.age_scale
    o = 2
    if meta.sex in spec.sexes:
        v[o + spec.sexes.index(meta.sex)] = 1.0
    else:
        v[o + len(spec.sexes)] = 1.0
    o += len(spec.sexes) + 1
    if meta.site in spec.sites:
        v[o + spec.sites.index(meta.site)] = 1.0
    else:
        v[o + len(spec.sites)] = 1.0
    return v
