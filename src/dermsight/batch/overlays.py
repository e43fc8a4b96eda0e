"""The heatmap overlays a batch job writes (``--heatmaps``): one ``<id>.png`` per assessed image
(``<id>-2.png``, ``<id>-3.png``, ... for later rows whose name was already used in the run)."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

import numpy as np

from dermsight import heatmap
from dermsight.batch.store import OutputError

#: Largest side of the image copy kept for overlays (bounds memory per row).
HEATMAP_MAX_SIDE = 512
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 180  # characters of a file name made of an id


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
    """A file name made of ``rid`` (characters a file system could misread replaced; a long id
    cut to 180 characters and a hash of the whole id, so two long ids keep apart)."""
    name = _UNSAFE.sub("_", rid).strip("._") or "image"
    if len(name) <= _MAX_NAME:
        return name
    return f"{name[:_MAX_NAME - 9]}-{hashlib.sha256(rid.encode()).hexdigest()[:8]}"


def make_folder(folder: Path) -> str | None:
    """Create ``folder`` (and its parents) for overlays: None when it can be written to, else
    why not (a short phrase)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        return "a file is in the way"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if os.access(folder, os.W_OK | os.X_OK) else "not writable"


class UniqueNames:
    """File names handed out once each (thread-safe): a name already given in this run gets
    ``-2``, ``-3``, ... before its suffix, so two inputs never share a file. Compared without
    case, as some file systems do."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, stem: str, suffix: str) -> str:
        with self._lock:
            name, n = f"{stem}{suffix}", 1
            while name.casefold() in self._used:
                n += 1
                name = f"{stem}-{n}{suffix}"
            self._used.add(name.casefold())
            return name


class HeatmapWriter:
    """Writes ``<id>.png`` overlays into a folder (from worker threads when given a pool)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.names = UniqueNames()
        if (why := make_folder(self.folder)) is not None:
            raise OutputError(f"--heatmaps {folder}: cannot write overlays there: {why}")

    def write(self, rid: str, thumb: np.ndarray, cam: np.ndarray) -> Path:
        """Write ``rid``'s overlay; returns the file written."""
        png = heatmap.png_bytes(heatmap.overlay(thumb, heatmap.normalize_cam(cam)))
        final = self.folder / self.names.claim(safe_name(rid), ".png")
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, final)
        return final
