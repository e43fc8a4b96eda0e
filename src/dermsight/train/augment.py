"""Training augmentations on RGB uint8 images, with the serving geometry of the ``InputSpec``.

The crop mode, output size and interpolation come from the spec the card stores (the same one
``preprocess`` serves with), so training never sees a geometry that serving does not: with
``crop="center_square"`` the random crop is taken inside the centre square that serving uses
(and inside its centre ``crop_fraction``, ``preprocess.field_of_view``),
with ``crop="none"`` it keeps the image's aspect (relative aspect 1 = the whole image, squashed to
a square as in serving); the resize is ``preprocess.resize_rgb`` with the spec's interpolation.
Colour constancy and standardisation follow in ``preprocess.normalize`` (``LesionDataset``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
import scipy.fft as sfft
from PIL import Image, ImageDraw, ImageFilter

from dermsight.preprocess import LUMA, InputSpec, field_of_view, resize_rgb
from dermsight.train.augment_siim2020 import siim2020_augment


@dataclass(frozen=True)
class Augment:
    """Augmentations on RGB uint8: the 8 flips/rotations, random resized crop,
    brightness/contrast/saturation/hue jitter. Output is (spec.size, spec.size) uint8 RGB.

    With ``dermoscopy=True`` also what other dermatoscopes and cameras do to an image (each with
    its own probability): zoom-out onto a black border, a circular dermatoscope vignette, blur,
    JPEG re-compression, gamma, and hairs. With ``randconv > 0``, that share of the images gets
    a random convolution first (``random_convolution``); with ``wide_field > 0``, that share is
    shown smaller in a field of skin (``zoom_out_onto_skin``); with ``resave > 0``, that share
    is first re-saved whole as a JPEG or lossy WebP (``resave_lossy``). At 0 no random number
    is drawn for any of them, so every other augmentation stays the same draw. With
    ``siim2020=True`` the colour jitter is replaced by the 1st-place SIIM-ISIC 2020 augmentations
    (``augment_siim2020``: brightness, contrast, blur or noise, optical / grid / elastic
    distortion, CLAHE, hue-saturation-value, shift-scale-rotate and one square hole).
    """

    #: area fraction of the crop (of the serving field of view) and its relative aspect ratio
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (0.8, 1.25)
    jitter: float = 0.15
    hue: float = 0.03
    dermoscopy: bool = False
    #: probability of a random convolution (``random_convolution``) after the colour jitter
    randconv: float = 0.0
    #: probability of showing the image smaller in a field of skin (``zoom_out_onto_skin``)
    wide_field: float = 0.0
    #: the 1st-place SIIM-ISIC 2020 augmentations instead of ``colour``
    siim2020: bool = False
    #: probability of re-saving the whole image, before the crop, as a JPEG or lossy WebP of
    #: random quality (``resave_lossy``: how uploads arrive after a messaging app)
    resave: float = 0.0
    #: each dermoscopy effect's probability times this (capped at 1); magnitudes unchanged
    dermoscopy_strength: float = 1.0

    def __call__(self, img: np.ndarray, spec: InputSpec, rng: np.random.Generator
                 ) -> np.ndarray:
        if self.resave and rng.random() < self.resave:
            img = resave_lossy(img, rng)
        out = self.geometry(img, spec, rng)
        out = siim2020_augment(out, rng) if self.siim2020 else self.colour(out, rng)
        if self.randconv and rng.random() < self.randconv:
            out = random_convolution(out, rng)
        if self.wide_field and rng.random() < self.wide_field:
            out = zoom_out_onto_skin(out, rng)
        return dermoscopy_effects(out, rng, self.dermoscopy_strength) if self.dermoscopy \
            else out

    def geometry(self, img: np.ndarray, spec: InputSpec, rng: np.random.Generator
                 ) -> np.ndarray:
        """Random resized crop of the spec's field of view, then one of the 8 flips/rotations;
        (spec.size, spec.size) uint8 RGB."""
        view = field_of_view(img, spec)
        h, w = view.shape[:2]
        aspect = w / h
        for _ in range(10):
            a = h * w * rng.uniform(*self.scale)
            r = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
            cw, ch = int(round(np.sqrt(a * r * aspect))), int(round(np.sqrt(a / (r * aspect))))
            if 0 < cw <= w and 0 < ch <= h:
                break
        else:
            cw, ch = w, h
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        # the crop is squashed to the square: the spec's own resize, nothing cropped again
        out = resize_rgb(np.ascontiguousarray(view[top : top + ch, left : left + cw]),
                         replace(spec, crop="none", crop_fraction=1.0))
        k = int(rng.integers(0, 8))
        out = np.rot90(out, k % 4)
        return out[:, ::-1] if k >= 4 else out

    def colour(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Brightness, contrast, saturation and hue jitter on uint8 RGB."""
        x = img.astype(np.float32)
        b = 1 + rng.uniform(-self.jitter, self.jitter)
        c = 1 + rng.uniform(-self.jitter, self.jitter)
        s = 1 + rng.uniform(-self.jitter, self.jitter)
        grey = x @ LUMA
        x = x * b
        x = (x - grey.mean() * b) * c + grey.mean() * b
        g = (x @ LUMA)[:, :, None]
        x = g + (x - g) * s
        if self.hue:
            shift = rng.uniform(-self.hue, self.hue) * 255
            x = x + np.array([shift, 0.0, -shift], np.float32)
        return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def random_convolution(img: np.ndarray, rng: np.random.Generator,
                       sizes: tuple[int, ...] = (1, 3, 5, 7)) -> np.ndarray:
    """RandConv (Xu et al., ICLR 2021): a convolution with random weights (3 -> 3 channels,
    kernel side drawn from ``sizes``, He-normal weights, reflected borders) changes the local
    colour and texture response the way another sensor or optic would, while the shapes stay.
    Each output channel is rescaled to the input channel's own mean and standard deviation, then
    blended with the input by a weight ~ U(0, 1). Same-size uint8 RGB in and out."""
    k = int(rng.choice(sizes))
    x = img.astype(np.float32) / 255.0
    h, w = x.shape[:2]
    weights = rng.normal(0.0, np.sqrt(2.0 / (3 * k * k)), (k, k, 3, 3)).astype(np.float32)
    p = k // 2
    padded = np.pad(x, ((p, p), (p, p), (0, 0)), mode="reflect")
    out = np.zeros_like(x)
    for i in range(k):
        for j in range(k):
            out += padded[i:i + h, j:j + w] @ weights[i, j]
    mean, std = x.mean(axis=(0, 1)), x.std(axis=(0, 1))
    out = (out - out.mean(axis=(0, 1))) / (out.std(axis=(0, 1)) + 1e-6) * std + mean
    alpha = np.float32(rng.uniform(0.0, 1.0))
    return np.clip((alpha * x + (1 - alpha) * out) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def zoom_out_onto_skin(img: np.ndarray, rng: np.random.Generator,
                       shrink: tuple[float, float] = (0.45, 0.8)) -> np.ndarray:
    """The image shrunk (side x U(``shrink``)) and placed at a random spot of a field of skin, as
    a wide-field dermatoscope would show the same lesion among more skin. The skin is drawn from
    the lighter half of the image's own outer ring (its mean colour, with smooth light/dark
    blotches and a fine grain of its spread), and the pasted image fades into it over 10 % of
    its side, so no border or seam says "pasted".
    Tight crops (HAM10000's lesions fill the frame) then also appear as wide-field images, the
    way other cameras take them. Same-size uint8 RGB in and out."""
    s = img.shape[0]
    n = max(2, int(round(s * rng.uniform(*shrink))))
    small = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize(
        (n, n), Image.Resampling.BILINEAR), np.float32)
    b = max(1, s // 10)
    ring = np.concatenate([img[:b].reshape(-1, 3), img[-b:].reshape(-1, 3),
                           img[b:-b, :b].reshape(-1, 3), img[b:-b, -b:].reshape(-1, 3)]
                          ).astype(np.float32)
    grey = ring @ LUMA
    skin = ring[grey >= np.median(grey)]  # the ring's lighter half: skin, not lesion or hair
    spread = float(np.std(skin @ LUMA))
    coarse = rng.normal(0.0, 1.0, (max(2, s // 16),) * 2).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse).resize((s, s), Image.Resampling.BICUBIC))
    grain = rng.normal(0.0, 0.3, (s, s)).astype(np.float32)  # the skin's fine texture
    canvas = skin.mean(0) + (spread * (0.5 * blotches + grain))[:, :, None]  # light/dark only
    top, left = (int(v) for v in rng.integers(0, s - n + 1, 2))
    edge = np.minimum(np.arange(n), np.arange(n)[::-1]) + 0.5
    fade = np.clip(edge / max(1.0, 0.1 * n), 0.0, 1.0)
    alpha = np.minimum(fade[:, None], fade[None, :])[:, :, None]
    region = canvas[top:top + n, left:left + n]
    canvas[top:top + n, left:left + n] = alpha * small + (1 - alpha) * region
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


#: the qualities ``resave_lossy`` draws from (uniform, both ends included)
RESAVE_QUALITY = (30, 90)


def resave_lossy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image saved once more at its own size as JPEG or lossy WebP (even odds; Pillow's
    defaults otherwise, 4:2:0 chroma for JPEG) at a quality drawn from ``RESAVE_QUALITY``, and
    decoded again: the compression an upload gets from a messaging app or a web export, at the
    resolution it is applied at (before the serving resize). The measured cost of such uploads
    to the shipped network: "Compressed uploads" in docs/experiments/README.md."""
    fmt = "JPEG" if rng.random() < 0.5 else "WEBP"
    quality = int(rng.integers(RESAVE_QUALITY[0], RESAVE_QUALITY[1] + 1))
    return np.asarray(_reencoded(Image.fromarray(np.ascontiguousarray(img)), fmt, quality))


def _reencoded(pil: Image.Image, fmt: str, quality: int) -> Image.Image:
    """``pil`` saved by Pillow as ``fmt`` at ``quality`` and decoded again (RGB)."""
    buf = io.BytesIO()
    pil.save(buf, format=fmt, quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


#: each dermoscopy effect's probability at strength 1 (``dermoscopy_effects``)
DERMOSCOPY_P = {"zoom_out": 0.25, "hair": 0.15, "blur": 0.15, "jpeg": 0.2, "gamma": 0.3,
                "vignette": 0.3}


def dermoscopy_effects(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0
                       ) -> np.ndarray:
    """Camera/dermatoscope variation on a square uint8 RGB image (same size out).

    Each effect happens with its probability in ``DERMOSCOPY_P`` times ``strength`` (capped at
    1); at strength 1 every draw is the shipped recipe's.

    The zoom-out's own bilinear downscale is part of the simulated optics (another device's
    image), not the serving resize, which ``Augment.geometry`` has already done per the spec.
    """
    p = {k: min(1.0, v * strength) for k, v in DERMOSCOPY_P.items()}
    s = img.shape[0]
    pil = Image.fromarray(np.ascontiguousarray(img))
    if rng.random() < p["zoom_out"]:  # zoom out: the lesion smaller, a dark border around
        f = rng.uniform(0.6, 0.9)
        small = pil.resize((max(1, int(s * f)),) * 2, Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (s, s), (int(rng.integers(0, 25)),) * 3)
        room = s - small.size[0] + 1
        off = int(rng.integers(0, room)), int(rng.integers(0, room))
        canvas.paste(small, off)
        pil = canvas
    if rng.random() < p["hair"]:  # hairs: thin dark curves
        draw = ImageDraw.Draw(pil)
        colour = tuple(int(v) for v in rng.integers(10, 60, 3))
        for _ in range(int(rng.integers(1, 7))):
            pts = [tuple(float(v) for v in rng.uniform(0, s, 2))]
            angle = rng.uniform(0, 2 * np.pi)
            for _ in range(4):
                angle += rng.normal(0, 0.3)
                step = s / 8
                px, py = pts[-1]
                pts.append((px + step * np.cos(angle), py + step * np.sin(angle)))
            draw.line(pts, fill=colour, width=int(rng.integers(1, 3)))
    if rng.random() < p["blur"]:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.5)))
    if rng.random() < p["jpeg"]:
        pil = _reencoded(pil, "JPEG", int(rng.integers(35, 90)))
    x = np.asarray(pil, np.float32)
    if rng.random() < p["gamma"]:
        gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
        x = 255.0 * np.power(x / 255.0, gamma)
    if rng.random() < p["vignette"]:  # circular dermatoscope field of view, black outside
        r = rng.uniform(0.45, 0.75) * s
        cy, cx = ((s - 1) / 2 + rng.normal(0, s * 0.03, 2)).tolist()
        yy, xx = np.mgrid[0:s, 0:s]
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        mask = np.clip((r - dist) / (0.04 * s) + 0.5, 0.0, 1.0)[:, :, None]
        x = x * mask + (1 - mask) * np.float32(rng.uniform(0, 20))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def swap_style(img: np.ndarray, donor: np.ndarray, beta: float, mix: float) -> np.ndarray:
    """Fourier domain style swap (FDA, Yang & Soatto 2020): the low-frequency amplitude spectrum
    of ``img`` (colour cast, illumination, vignetting: what a camera adds) moves ``mix`` of the
    way to ``donor``'s inside the window of frequencies up to ``beta`` x side; the phase (the
    lesion's structure) is kept. Same-size uint8 RGB in, uint8 RGB out."""
    h, w = img.shape[:2]
    f = sfft.rfft2(img.astype(np.float32), axes=(0, 1), workers=1)
    fd = sfft.rfft2(donor.astype(np.float32), axes=(0, 1), workers=1)
    b = max(1, int(min(h, w) * beta))
    rows = np.r_[0 : b + 1, h - b : h]  # the lowest frequencies, both signs (rfft: cols >= 0)
    win = np.ix_(rows, np.arange(b + 1))
    amp, phase = np.abs(f[win]), np.angle(f[win])
    amp = (1 - mix) * amp + mix * np.abs(fd[win])
    f[win] = amp * np.exp(1j * phase)
    out = sfft.irfft2(f, s=(h, w), axes=(0, 1), workers=1)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
