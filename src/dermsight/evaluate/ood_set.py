"""A non-dermoscopic image set, assembled offline, to measure the "cannot assess" gate.

Sources (all available without a download): scikit-image's bundled sample photos, matplotlib's
sample images, and generated images — text pages, app screenshots, charts, blanks, noise,
gradients, and badly exposed / blurred versions of everyday photos. Deterministic in ``seed``.
Needs the [train] extra (scikit-image, matplotlib).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dermsight.io.decode import to_rgb

_SKIMAGE = [
    "astronaut", "brick", "camera", "cat", "chelsea", "checkerboard", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "rocket", "text",
]
_WORDS = [
    "patient", "report", "lesion", "follow", "up", "clinic", "result", "invoice", "meeting",
    "notes", "total", "amount", "please", "review", "the", "attached", "document", "before",
    "monday", "appointment", "table", "figure",
]


def _rgb(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8:
        a = np.clip(a * (255 if a.max() <= 1 else 1), 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(a))


def photos() -> Iterator[tuple[str, np.ndarray]]:
    from skimage import data

    for name in _SKIMAGE:
        try:
            yield f"skimage:{name}", _rgb(getattr(data, name)())
        except Exception:  # noqa: BLE001 - a sample missing from this skimage build
            continue
    try:
        from matplotlib import cbook

        for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
            with Image.open(cbook.get_sample_data(name, asfileobj=False)) as im:
                yield f"matplotlib:{name}", to_rgb(im)
    except Exception:  # noqa: BLE001
        return


def text_page(rng: np.random.Generator, w: int = 600, h: int = 800) -> np.ndarray:
    img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(225, 256, 3)))
    d = ImageDraw.Draw(img)
    y = 30
    while y < h - 30:
        line = " ".join(rng.choice(_WORDS, int(rng.integers(4, 11))))
        d.text((30, y), line, fill=tuple(int(v) for v in rng.integers(0, 60, 3)))
        y += int(rng.integers(14, 26))
    return np.asarray(img)


def screenshot(rng: np.random.Generator, w: int = 800, h: int = 500) -> np.ndarray:
    img = Image.new("RGB", (w, h), (245, 246, 248))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, w, 40], fill=tuple(int(v) for v in rng.integers(20, 120, 3)))
    d.rectangle([0, 40, 160, h], fill=(230, 232, 236))
    for i in range(8):
        d.text((15, 60 + 28 * i), f"Menu item {i + 1}", fill=(40, 40, 40))
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(180, w - 200)), int(rng.integers(60, h - 80))
        d.rectangle([x0, y0, x0 + int(rng.integers(80, 200)), y0 + int(rng.integers(25, 60))],
                    fill=tuple(int(v) for v in rng.integers(60, 250, 3)), outline=(0, 0, 0))
        d.text((x0 + 8, y0 + 6), " ".join(rng.choice(_WORDS, 2)), fill=(0, 0, 0))
    return np.asarray(img)


def chart(rng: np.random.Generator) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
    x = np.arange(20)
    if rng.random() < 0.5:
        ax.plot(x, rng.normal(size=20).cumsum())
    else:
        ax.bar(x[:8], rng.random(8))
    ax.set_title("Quarterly figures")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return to_rgb(Image.open(io.BytesIO(buf.getvalue())))


def synthetic(rng: np.random.Generator, kind: str, size: int = 256) -> np.ndarray:
    if kind == "blank":
        return np.full((size, size, 3), rng.integers(0, 256, 3), np.uint8)
    if kind == "noise":
        return rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    if kind == "gaussian_noise":
        base = rng.integers(60, 200, 3)
        return np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    if kind == "gradient":
        t = np.linspace(0, 1, size)[None, :, None]
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        return np.repeat((a + (b - a) * t).astype(np.uint8), size, axis=0)
    raise ValueError(kind)


def degraded(img: np.ndarray, rng: np.random.Generator, how: str) -> np.ndarray:
    pil = Image.fromarray(img)
    if how == "blur":
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(6, 12)))))
    if how == "dark":
        return (img.astype(np.float32) * rng.uniform(0.03, 0.1)).astype(np.uint8)
    if how == "overexposed":
        return np.clip(img.astype(np.float32) * rng.uniform(3, 6) + 80, 0, 255).astype(np.uint8)
    if how == "tiny":
        return np.asarray(pil.resize((int(rng.integers(16, 48)),) * 2))
    if how == "crop":
        h, w = img.shape[:2]
        s = int(min(h, w) * rng.uniform(0.4, 0.8))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        return img[y : y + s, x : x + s]
    raise ValueError(how)


def build_ood_set(seed: int = 0, n_generated: int = 20) -> list[tuple[str, np.ndarray]]:
    """~250 non-dermoscopic images with names saying what each is."""
    rng = np.random.default_rng(seed)
    items = list(photos())
    base = [img for _, img in items if img.shape[0] >= 100]
    for name, img in list(items):
        for how in ("crop", "blur", "dark", "overexposed"):
            items.append((f"{name}+{how}", degraded(img, rng, how)))
    for i in range(n_generated):
        items.append((f"text_page:{i}", text_page(rng)))
        items.append((f"screenshot:{i}", screenshot(rng)))
        for kind in ("blank", "noise", "gaussian_noise", "gradient"):
            items.append((f"{kind}:{i}", synthetic(rng, kind)))
    for i in range(max(1, n_generated // 4)):
        items.append((f"chart:{i}", chart(rng)))
        items.append((f"tiny:{i}", degraded(base[i % len(base)], rng, "tiny")))
    return items
