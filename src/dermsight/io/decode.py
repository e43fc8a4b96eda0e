"""Safe image decoding: the one function every entry point uses to turn bytes into RGB pixels.

* Allow-list by *content* (magic bytes), never by file name: JPEG, PNG, WebP, BMP, TIFF.
  DICOM files are recognised and routed to the DICOM reader.
* Byte cap before reading, pixel cap from the header *before* decoding (decompression bombs):
  PNG and JPEG dimensions are read by hand from the header, so a bomb is refused before
  Pillow allocates anything; other formats rely on the size Pillow reads from the header.
* EXIF orientation applied; every mode (L, LA, P, RGBA, CMYK, I;16, F, ...) -> 8-bit RGB.
* Nothing but pixels leaves this function (EXIF/GPS/ICC/text chunks are dropped).
* Thread-safe: no global state (warning filters, Pillow limits) is touched, so images can be
  decoded in a thread pool.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dermsight.io.errors import ImageDecodeError

DEFAULT_MAX_BYTES = int(os.environ.get("DERMSIGHT_MAX_IMAGE_BYTES", 20 * 1024 * 1024))
DEFAULT_MAX_PIXELS = int(os.environ.get("DERMSIGHT_MAX_IMAGE_PIXELS", 50_000_000))

#: Pillow format name -> what we call it in messages.
ALLOWED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF"}

_BMP_DIB_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)


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
    if head.startswith(b"BM") and len(head) >= 18:
        (dib,) = struct.unpack("<I", head[14:18])
        if dib in _BMP_DIB_SIZES:
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


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF marker, without decoding; None if not found."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):
            i += 2
            continue
        (seg_len,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + seg_len
    return None


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """Image (width, height) read straight from a PNG/JPEG header; None when unknown."""
    if kind == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if kind == "JPEG":
        return _jpeg_size(data)
    return None


def _too_large(w: int, h: int, limits: DecodeLimits) -> ImageDecodeError:
    return ImageDecodeError(
        f"image too large: {w}x{h} ({w * h / 1e6:.0f} megapixels, "
        f"limit {limits.max_pixels / 1e6:.0f})"
    )


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
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode == "RGB":
        return np.asarray(img)
    return np.asarray(img.convert("RGB"))


def _read_source(
    source: bytes | bytearray | memoryview | str | os.PathLike[str], limits: DecodeLimits
) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "upload"
    else:
        path = Path(source)
        name = path.name
        try:
            if path.is_dir():
                raise ImageDecodeError(f"{path} is a folder, not an image")
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise ImageDecodeError(f"file not found: {path}") from exc
        except OSError as exc:
            raise ImageDecodeError(f"cannot read {path}: {exc.strerror or exc}") from exc
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
    return data, name


def decode_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    limits: DecodeLimits | None = None,
) -> np.ndarray:
    """Bytes or a file path -> RGB uint8 array (H, W, 3). Raises ``ImageDecodeError``."""
    limits = limits or DecodeLimits()
    data, name = _read_source(source, limits)
    kind = sniff(data)
    if kind == "DICOM":
        from dermsight.io.dicom import decode_dicom_bytes

        image = decode_dicom_bytes(data, limits).image
        if image is None:  # pragma: no cover - decode_dicom_bytes raises instead
            raise ImageDecodeError("DICOM file has no image (pixel data)")
        return image
    if kind not in ALLOWED_FORMATS:
        raise ImageDecodeError(_describe_refused(kind, data))
    return _decode_raster(data, kind, limits, name)


def verify_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    limits: DecodeLimits | None = None,
) -> tuple[int, int]:
    """Check that ``decode_image`` would succeed, faster: JPEGs are decoded at 1/8 scale (every
    byte of the entropy-coded data is still read, so truncation and corruption are caught).
    Returns the full (width, height); raises ``ImageDecodeError`` like ``decode_image``."""
    limits = limits or DecodeLimits()
    data, name = _read_source(source, limits)
    kind = sniff(data)
    if kind == "DICOM":
        arr = decode_image(data, limits)
        return int(arr.shape[1]), int(arr.shape[0])
    if kind not in ALLOWED_FORMATS:
        raise ImageDecodeError(_describe_refused(kind, data))
    img = _open_checked(data, kind, limits)
    size = img.size
    if kind == "JPEG":
        img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
    _load(img, kind)
    return int(size[0]), int(size[1])


_BOMB_RE = re.compile(r"\((\d+) pixels\)")


def _open_checked(data: bytes, kind: str, limits: DecodeLimits) -> Image.Image:
    """Open lazily (header only) and enforce the pixel cap and the still-image rule."""
    label = ALLOWED_FORMATS[kind]
    peek = header_size(data, kind)
    if peek is not None:
        w, h = peek
        if w * h > limits.max_pixels:
            raise _too_large(w, h, limits)
    try:
        img = Image.open(io.BytesIO(data), formats=[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        m = _BOMB_RE.search(str(exc))
        px = f"{int(m.group(1)) / 1e6:.0f} megapixels" if m else "too many pixels"
        raise ImageDecodeError(
            f"image too large: {px} (limit {limits.max_pixels / 1e6:.0f})"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ImageDecodeError(f"corrupt {label} file: the header cannot be read") from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"invalid {label}: {w}x{h} pixels")
    if w * h > limits.max_pixels:
        raise _too_large(w, h, limits)
    if getattr(img, "n_frames", 1) > 1 and kind != "TIFF":
        raise ImageDecodeError(f"animated {label} files are not accepted: send a still photo")
    return img


def _load(img: Image.Image, kind: str) -> None:
    label = ALLOWED_FORMATS[kind]
    try:
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        text = str(exc).lower()
        if "truncat" in text or "premature" in text or "end of file" in text:
            raise ImageDecodeError(f"truncated {label}: the file is incomplete") from exc
        raise ImageDecodeError(f"corrupt {label} file: {exc}") from exc


def _decode_raster(data: bytes, kind: str, limits: DecodeLimits, name: str) -> np.ndarray:
    img = _open_checked(data, kind, limits)
    _load(img, kind)
    with contextlib.suppress(Exception):  # a broken EXIF block must not reject good pixels
        img = ImageOps.exif_transpose(img) or img
    try:
        return to_rgb(img)
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(
            f"unsupported {ALLOWED_FORMATS[kind]} colour mode {img.mode}: {exc}"
        ) from exc
