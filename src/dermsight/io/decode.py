"""Safe image decoding: the one function every entry point uses to turn bytes into RGB pixels.

* Allow-list by *content* (magic bytes), never by file name: JPEG, PNG, WebP, BMP, TIFF.
  DICOM files are recognised and routed to the DICOM reader.
* Byte cap before reading, pixel cap from the header *before* decoding (decompression bombs).
* EXIF orientation applied; every mode (L, LA, P, RGBA, CMYK, I;16, F, ...) -> 8-bit RGB.
* Nothing but pixels leaves this function (EXIF/GPS/ICC/text chunks are dropped).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dermsight.io.errors import ImageDecodeError

DEFAULT_MAX_BYTES = int(os.environ.get("DERMSIGHT_MAX_IMAGE_BYTES", 20 * 1024 * 1024))
DEFAULT_MAX_PIXELS = int(os.environ.get("DERMSIGHT_MAX_IMAGE_PIXELS", 50_000_000))

#: Pillow format name -> what we call it in messages.
ALLOWED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF"}


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


def sniff(data: bytes) -> str | None:
    """Recognise a format from its first bytes; None if it is none we know."""
    head = data[:132]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"%PDF"):
        return "PDF"
    stripped = head.lstrip()
    if stripped.startswith((b"<?xml", b"<svg", b"<!DOCTYPE svg")) or b"<svg" in data[:1024]:
        return "SVG"
    return None


def _describe_refused(kind: str | None, data: bytes) -> str:
    if not data:
        return "empty file (0 bytes): not an image"
    if kind in ("GIF", "PDF", "SVG"):
        return f"{kind} files are not accepted: send a JPEG, PNG, WebP, BMP or TIFF photo"
    try:
        data[:512].decode("utf-8")
        return "not an image (looks like a text file)"
    except UnicodeDecodeError:
        return "not an image (unrecognised file format)"


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8, compositing transparency onto white."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 65535.0 if mode.startswith("I;16") or hi > 255 else 255.0
        if mode == "F" and hi <= 1.0:
            scale = 1.0
        arr = np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode == "CMYK":
        return np.asarray(img.convert("RGB"))
    return np.asarray(img.convert("RGB"))


def decode_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    limits: DecodeLimits | None = None,
) -> np.ndarray:
    """Bytes or a file path -> RGB uint8 array (H, W, 3). Raises ``ImageDecodeError``."""
    limits = limits or DecodeLimits()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "upload"
    else:
        path = Path(source)
        name = path.name
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise ImageDecodeError(f"file not found: {path}") from exc
        except OSError as exc:
            raise ImageDecodeError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if path.is_dir():
            raise ImageDecodeError(f"{path} is a folder, not an image")
        if size > limits.max_bytes:
            raise ImageDecodeError(
                f"file too large: {size / 1e6:.1f} MB (limit {limits.max_bytes / 1e6:.0f} MB)"
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > limits.max_bytes:
        raise ImageDecodeError(
            f"file too large: {len(data) / 1e6:.1f} MB (limit {limits.max_bytes / 1e6:.0f} MB)"
        )
    kind = sniff(data)
    if kind == "DICOM":
        from dermsight.io.dicom import decode_dicom_bytes

        return decode_dicom_bytes(data, limits).image  # type: ignore[return-value]
    if kind not in ALLOWED_FORMATS:
        raise ImageDecodeError(_describe_refused(kind, data))
    return _decode_raster(data, kind, limits, name)


def _decode_raster(data: bytes, kind: str, limits: DecodeLimits, name: str) -> np.ndarray:
    label = ALLOWED_FORMATS[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[kind])
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(f"image too large: {exc}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageDecodeError(f"corrupt {label} file: the header cannot be read") from exc
        w, h = img.size
        if w <= 0 or h <= 0:
            raise ImageDecodeError(f"invalid {label}: {w}x{h} pixels")
        if w * h > limits.max_pixels:
            raise ImageDecodeError(
                f"image too large: {w}x{h} ({w * h / 1e6:.0f} megapixels, "
                f"limit {limits.max_pixels / 1e6:.0f})"
            )
        if getattr(img, "n_frames", 1) > 1 and kind != "TIFF":
            raise ImageDecodeError(f"animated {label} files are not accepted: send a still photo")
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(f"image too large: {exc}") from exc
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
            text = str(exc).lower()
            if "truncat" in text or "premature" in text or "end of file" in text:
                raise ImageDecodeError(f"truncated {label}: the file is incomplete") from exc
            raise ImageDecodeError(f"corrupt {label} file: {exc}") from exc
        try:
            img = ImageOps.exif_transpose(img) or img
        except Exception:  # noqa: BLE001 - a broken EXIF block must not reject good pixels
            pass
        return to_rgb(img)
