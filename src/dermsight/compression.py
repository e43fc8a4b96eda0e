"""How much an upload was compressed, read from its file header (no pixel is decoded).

The shipped network was trained, validated and tested on JPEGs saved at quality 90. On the
validation images re-saved with more compression its accuracy was measured lower
("Compressed uploads" in docs/experiments/README.md); this module finds such uploads so the
result can say so (a non-blocking flag, ``compression_flags``):

* **JPEG**: the quality is estimated from the luminance quantisation table, as the nearest table
  of the IJG scale (libjpeg's ``quality`` 1–100, which Pillow, libjpeg-turbo and most software
  use). Cameras and other encoders with tables of their own get the nearest IJG quality: an
  estimate, named as one.
* **WebP**: lossy or lossless (``dermsight.io.headers.webp_lossy``); a lossy WebP's quality is not
  stored in the file in a form read here.
* **DICOM**: a JPEG-baseline file's encapsulated frame is read as a JPEG (``Dermsight.decode``
  passes it here; format "DICOM JPEG"); uncompressed pixel data says nothing.
* Everything else (PNG, BMP, TIFF) is not inspected (``None``): a PNG screenshot of a
  compressed picture carries its losses without a trace in its header.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermsight.gate import Flag, quality_thresholds
from dermsight.io.decode import sniff
from dermsight.io.headers import webp_lossy

__all__ = ["MEASURED_ON_QUALITY", "Compression", "compression_flags", "inspect", "jpeg_quality",
           "note_limits", "survey"]

#: The note's limits were measured on a network whose training images were all JPEGs of this
#: quality (every image in ../shared); they say nothing about a network trained on other files.
MEASURED_ON_QUALITY = 90

#: The IJG standard luminance quantisation table (ITU T.81, Annex K.1), natural order.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], np.int64)


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255)


_IJG_TABLES = np.stack([_ijg_table(q) for q in range(1, 101)])  # row q-1: quality q


@dataclass(frozen=True)
class Compression:
    """What an image file's header says about its compression."""

    format: str  # "JPEG", "WebP" or "DICOM JPEG"
    lossy: bool
    quality: int | None = None  # estimated JPEG quality (IJG scale); None: not read

    def describe(self) -> str:
        if self.quality is not None:
            return f"{self.format} quality about {self.quality}"
        return f"{'lossy' if self.lossy else 'lossless'} {self.format}"


def jpeg_quality(luma_table: Any) -> int:
    """The IJG quality (1–100) whose luminance table is nearest to ``luma_table`` (64 values in
    natural order, as Pillow's ``quantization[0]``), by the sum of absolute differences; ties go
    to the higher quality."""
    table = np.asarray(luma_table, np.int64).reshape(-1)
    if table.size != 64:
        raise ValueError(f"a JPEG quantisation table has 64 values, got {table.size}")
    err = np.abs(_IJG_TABLES - table).sum(axis=1)
    return int(100 - np.argmin(err[::-1]))


def inspect(data: bytes) -> Compression | None:
    """The compression of a JPEG or WebP file's bytes (``None`` for other formats or a header
    that cannot be read: the decode itself reports broken files)."""
    kind = sniff(data)
    if kind == "JPEG":
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:  # parses the header, decodes nothing
                tables = getattr(im, "quantization", None) or {}
                if 0 in tables:
                    return Compression("JPEG", lossy=True, quality=jpeg_quality(tables[0]))
        return None
    lossy = webp_lossy(data) if kind == "WEBP" else None
    return None if lossy is None else Compression("WebP", lossy=lossy)


def _label(c: Compression | None) -> str:
    if c is None:
        return "not JPEG or WebP"
    return f"JPEG {c.quality}" if c.quality is not None else c.describe()


def survey(paths: Iterable[str | os.PathLike[str]]) -> dict[str, int]:
    """How a collection's files are compressed: counts by kind ("JPEG 90", "lossy WebP",
    "not JPEG or WebP"; a JPEG's quality is the IJG estimate), most common first. Reads each
    file's header only (``inspect``)."""
    counts = Counter(_label(inspect(Path(p).read_bytes())) for p in paths)
    return dict(counts.most_common())


def note_limits(files: Mapping[str, int], limits: Mapping[str, float]) -> dict[str, float]:
    """The ``compressed`` note's limits for a network trained on ``files`` (a ``survey``): the
    measured ``limits`` when every training file is a JPEG of quality ``MEASURED_ON_QUALITY`` or
    more, else both off (0) — the flag's message cites a measurement made only for such networks,
    and a network trained on, say, JPEG 75 files would have its own clinic's uploads called
    compressed."""
    measured = bool(files) and all(
        kind.startswith("JPEG ") and kind[5:].isdigit() and int(kind[5:]) >= MEASURED_ON_QUALITY
        for kind in files)
    out = dict(limits)
    if not measured:
        out.update(flag_jpeg_quality=0.0, flag_lossy_webp=0.0)
    return out


def compression_flags(c: Compression | None, cfg: dict[str, Any]) -> list[Flag]:
    """The non-blocking ``compressed`` flag for an upload saved with more compression than the
    card's gate allows without comment (``gate.quality``: ``flag_jpeg_quality``, JPEG at or
    below it; ``flag_lossy_webp`` 1 = any lossy WebP; 0 turns either off)."""
    if c is None or not c.lossy:
        return []
    limits = quality_thresholds(cfg)
    max_q = limits["flag_jpeg_quality"]
    if c.quality is not None and max_q > 0 and c.quality <= max_q:
        return [_flag(f"image compressed more than the training images ({c.describe()}): "
                      f"re-saved at JPEG quality {int(max_q)} or lower, validation images got "
                      "shifted probabilities and a measurably worse malignant ranking")]
    if c.format == "WebP" and limits["flag_lossy_webp"] > 0:
        return [_flag("lossy WebP image (its quality cannot be read from the file): re-saved "
                      "as lossy WebP, validation images got shifted probabilities")]
    return []


def _flag(what: str) -> Flag:
    return Flag("compressed", f"{what}; use the original file if you have it", blocking=False)
