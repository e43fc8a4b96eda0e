"""The heatmap overlays a batch job writes (``--heatmaps``): one ``<id>.png`` per assessed image."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np

from dermsight import heatmap

#: Largest side of the image copy kept for overlays (bounds memory per row).
HEATMAP_MAX_SIDE = 512
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The image at most ``HEATMAP_MAX_SIDE`` px on its long side (what an overlay is drawn on)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= HEATMAP_MAX_SIDE:
        return rgb
    from PIL import Image

    scale = HEATMAP_MAX_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def safe_name(rid: str) -> str:
    """A file name made of ``rid`` (characters a file system could misread replaced)."""
    name = _UNSAFE.sub("_", rid).strip("._") or "image"
    return name[:180]


class HeatmapWriter:
    """Writes ``<id>.png`` overlays into a folder (from worker threads when given a pool)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, rid: str, thumb: np.ndarray, cam: np.ndarray) -> None:
        png = heatmap.png_bytes(heatmap.overlay(thumb, heatmap.normalize_cam(cam)))
        final = self.folder / f"{safe_name(rid)}.png"
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, final)
