"""Safe image decoding: the one function every entry point uses to turn bytes into RGB pixels.

* Allow-list by *content* (magic bytes), never by file name: JPEG, PNG, WebP, BMP, TIFF.
  DICOM files are recognised and routed to the DICOM reader.
* Bounded before decoding (decompression bombs, "tiny file, huge image"): the byte cap, then the
  size *declared in the header* (read by hand for PNG, JPEG, BMP and WebP, so a bomb is refused
  before Pillow allocates anything) against a pixel cap (``max_pixels``, default 25 MP), an
  aspect-ratio cap (``max_aspect``, 10:1, for images over 4096 px long) and an estimate of the
  memory the decoder will need (``max_decode_bytes``, default 128 MiB: pixels x bytes per
  pixel of the decoded mode, plus what the codec itself holds: libjpeg's whole-image
  coefficient buffer for progressive / multi-scan JPEGs, libwebp's canvases, a TIFF tile).
  Every decode then holds its estimate of a process-wide memory budget (``budget.py``), so
  concurrent decodes cannot add up past it.
* Only the first frame is ever decoded: animated PNG/WebP are refused from their header
  (frame count), GIF is refused outright, a multi-frame DICOM is refused (``io.dicom``), and so
  is a TIFF with a second image (a further page at least half the first's size and not marked as
  a reduced-resolution copy: ``tiff_images``); a TIFF whose other pages are thumbnails or
  pyramid levels gives its first page (their pixels are never read).
* Large images are decoded small: a JPEG is decoded with DCT scaling (Pillow ``draft``, 1/2, 1/4
  or 1/8) and any other image is box-reduced right after decoding, so that what leaves this
  module has at most ``work_pixels`` (2 MP) — the model uses 160 px; no conversion ever runs on
  the full-size pixels.
* EXIF orientation applied; every mode (L, LA, RGBA, CMYK, I;16, F, P with a palette of greys,
  ...) -> 8-bit RGB.
  Transparency is refused: an image with more than 1 % of its pixels under alpha 250 (a
  half-transparent or cut-out PNG/WebP/TIFF, a palette PNG with a transparent colour over an
  area) is an edited copy the model was never measured on; an opaque alpha channel is fine.
* Indexed-colour (palette) images are refused too (``check_palette``): a PNG, BMP or TIFF in
  mode P/PA with a colour palette had its colours reduced to at most 256, which moved the risk
  tier of 16 % (plain palette) to 48 % (dithered) of 200 ISIC images (GIF, palette-only, is a
  refused format). A palette of greys only is a greyscale image and is read as one.
* Other image formats are recognised by their magic bytes only to be refused with a reason
  that says what to send instead (``REFUSED_FORMATS``: GIF, HEIC/HEIF, AVIF, JPEG 2000,
  JPEG XL, PPM/PGM, ICO, TGA 2.0, PDF, SVG); they are never decoded.
* Nothing but pixels leaves this function (EXIF/GPS/ICC/text chunks are dropped).
* Thread-safe: no global state (warning filters, Pillow limits) is touched, so images can be
  decoded in a thread pool.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from dermsight.io.budget import ENV_ERRORS, decode_budget, env_number
from dermsight.io.errors import ImageDecodeError
from dermsight.io.files import read_regular_file
from dermsight.io.headers import bmp_compression, header_size, jpeg_frame
from dermsight.io.quiet import silence_logger
from dermsight.io.sizes import MIB, size_pair, size_text, too_large_text

# Pillow logs odd files at ERROR ("More samples per pixel than can be decoded: 35", TIFF/EXIF
# fields): values from an untrusted upload must not reach the logs; our own reason is raised.
silence_logger("PIL")

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "REFUSED_FORMATS",
    "REFUSED_IMAGE_EXTS",
    "DecodeLimits",
    "RefusedFormat",
    "check_dimensions",
    "decode_cost",
    "decode_image",
    "header_size",
    "pil_to_rgb",
    "refused_by_name",
    "size_text",
    "sniff",
    "to_rgb",
    "too_large_text",
    "transparent_share",
    "verify_image",
]

#: Built-in defaults (the ``DERMSIGHT_*`` environment variables below override them).
MAX_PIXELS_BUILTIN = 25_000_000  # 6000 x 4000 dermatoscope cameras fit
MAX_DECODE_BYTES_BUILTIN = 128 * MIB


def _env_limit(name: str, default: float, default_text: str) -> float:
    """``env_number``; an invalid value's warning (at the first decode) names the default as
    ``default_text`` (``20 MB``), not as a bare float (``2.09715e+07``)."""
    value = env_number(name, default)
    if name in ENV_ERRORS:
        raw = os.environ.get(name, "").strip()
        ENV_ERRORS[name] = (f"{name}={raw[:40]!r} is not a positive number: using the "
                            f"default, {default_text}")
    return value


DEFAULT_MAX_BYTES = int(_env_limit("DERMSIGHT_MAX_IMAGE_BYTES", 20 * MIB,
                                   f"{size_text(20 * MIB)} ({20 * MIB:,} bytes)"))
DEFAULT_MAX_PIXELS = int(_env_limit("DERMSIGHT_MAX_IMAGE_PIXELS", MAX_PIXELS_BUILTIN,
                                    f"{MAX_PIXELS_BUILTIN:,} pixels"))
DEFAULT_MAX_DECODE_BYTES = int(
    _env_limit("DERMSIGHT_MAX_DECODE_MB", MAX_DECODE_BYTES_BUILTIN / MIB,
               f"{size_text(MAX_DECODE_BYTES_BUILTIN)}") * MIB
)
#: Longest side / shortest side: dermoscopy is about square; a 1 x 49,000,000 strip is an attack.
DEFAULT_MAX_ASPECT = 10.0
#: ... but only beyond this long side: small odd shapes cost nothing and the quality gate
#: answers them ("too small"); long strips cost CPU per row.
MAX_STRIP_SIDE = 4096
#: Images larger than this are decoded small (JPEG DCT scaling) or box-reduced after decoding.
DEFAULT_WORK_PIXELS = 2_000_000
#: More scans than this in one JPEG is a CPU attack (each scan walks the whole image again);
#: ordinary progressive JPEGs have about 10.
MAX_JPEG_SCANS = 100
#: Pillow decodes RLE-compressed BMPs in pure Python: bound their size (CPU).
MAX_RLE_BMP_BYTES = 2 * MIB
#: TIFF pages looked at for a second image (only their headers are read).
MAX_TIFF_PAGES = 64
#: A single TIFF tile/strip buffer libtiff allocates.
MAX_TIFF_TILE_BYTES = 32 * MIB

#: Pillow format name -> what we call it in messages.
ALLOWED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF"}

_BMP_DIB_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES
    max_aspect: float = DEFAULT_MAX_ASPECT
    work_pixels: int = DEFAULT_WORK_PIXELS


# ruff noqa below: one return per file format.
def sniff(data: bytes) -> str | None:  # noqa: PLR0911
    """Recognise a format from its first bytes; None if it is none we know. Besides the
    ``ALLOWED_FORMATS`` and DICOM, the formats of ``REFUSED_FORMATS`` are named, so that their
    refusal can say what to send instead."""
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
    if head.startswith(b"DICM\x02\x00"):  # a DICOM file written without its preamble
        return "DICOM"
    return _sniff_refused(data)


@dataclass(frozen=True)
class RefusedFormat:
    """An image format recognised only to be refused (never decoded: the model was not
    measured on it): its name in messages, what to do instead, and its file extensions (a
    folder's files with these become error rows instead of being skipped)."""

    name: str
    hint: str = ""
    exts: tuple[str, ...] = ()

    def reason(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.name} files are not accepted: send {_ACCEPTED}{hint}"


#: what is accepted instead, as the upload form and the API describe it (DICOM included)
_ACCEPTED = "a JPEG, PNG, WebP, BMP or TIFF photo, or a DICOM file"
_CONVERT = "convert it to JPEG or PNG"

#: ``sniff`` kind -> how it is refused.
REFUSED_FORMATS: dict[str, RefusedFormat] = {
    "GIF": RefusedFormat("GIF", exts=(".gif",)),
    "PDF": RefusedFormat("PDF"),
    "SVG": RefusedFormat("SVG"),
    "HEIC": RefusedFormat(
        "HEIC/HEIF",
        "export it as JPEG; on an iPhone: Settings > Camera > Formats > Most Compatible",
        (".heic", ".heif", ".hif"),
    ),
    "AVIF": RefusedFormat("AVIF", _CONVERT, (".avif",)),
    "JPEG2000": RefusedFormat(
        "JPEG 2000", _CONVERT, (".jp2", ".j2k", ".j2c", ".jpc", ".jpf", ".jpx")
    ),
    "JXL": RefusedFormat("JPEG XL", _CONVERT, (".jxl",)),
    "NETPBM": RefusedFormat(
        "PPM/PGM (Netpbm)", _CONVERT, (".ppm", ".pgm", ".pbm", ".pnm", ".pam")
    ),
    "ICO": RefusedFormat(
        "ICO (icon)", "send the original photo, not an icon made from it", (".ico", ".cur")
    ),
    "TGA": RefusedFormat("TGA", _CONVERT, (".tga",)),
}

#: Extensions of refused image formats (a folder lists them so that they get error rows).
REFUSED_IMAGE_EXTS: tuple[str, ...] = tuple(
    ext for fmt in REFUSED_FORMATS.values() for ext in fmt.exts
)


def refused_by_name(name: str) -> RefusedFormat | None:
    """The refused format a file name's extension names (``x.heic``: HEIC/HEIF), or None. For
    saying what to send instead about a file that is not read; files that are read are judged
    by their content (``sniff``)."""
    ext = os.path.splitext(name)[1].lower()
    return next((fmt for fmt in REFUSED_FORMATS.values() if ext in fmt.exts), None)


_REFUSED_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),  # JP2 signature box
    (b"\xff\x4f\xff\x51", "JPEG2000"),  # raw codestream (SOC + SIZ)
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JXL"),  # JPEG XL container
    (b"\xff\x0a", "JXL"),  # JPEG XL codestream
)
#: ISO-BMFF ``ftyp`` brands of still images: AVIF first (an AVIF also lists ``mif1``).
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
#: "P6", whitespace (comment lines allowed), then the width
_NETPBM_RE = re.compile(rb"P[1-7]\s+(?:#[^\n]*\n\s*)*\d")
#: TGA has no magic number; a TGA 2.0 file (what Pillow and most tools write) ends with this.
_TGA_FOOTER = b"TRUEVISION-XFILE.\x00"


def _ftyp_kind(head: bytes) -> str | None:
    """HEIC or AVIF from an ISO-BMFF ``ftyp`` box (major brand and compatible brands)."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    (size,) = struct.unpack(">I", head[:4])
    box = head[8 : min(max(size, 16), len(head))]
    brands = {box[i : i + 4] for i in range(0, len(box) - 3, 4)} - {box[4:8]}  # minor version
    if brands & _AVIF_BRANDS:
        return "AVIF"
    return "HEIC" if brands & _HEIF_BRANDS else None


def _is_ico(head: bytes) -> bool:
    """An ICO/CUR header: reserved 0, type 1 or 2, 1..255 images, first entry reserved 0."""
    if len(head) < 22 or head[:4] not in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"):
        return False
    (count,) = struct.unpack("<H", head[4:6])
    return 0 < count < 256 and head[9] == 0


# ruff noqa below: one return per file format.
def _sniff_refused(data: bytes) -> str | None:  # noqa: PLR0911
    """The kind of a refused format (a key of ``REFUSED_FORMATS``), or None."""
    head = data[:132]
    for prefix, kind in _REFUSED_PREFIXES:
        if head.startswith(prefix):
            return kind
    if (ftyp := _ftyp_kind(head)) is not None:
        return ftyp
    if _NETPBM_RE.match(head):
        return "NETPBM"
    if _is_ico(head):
        return "ICO"
    if data.endswith(_TGA_FOOTER):
        return "TGA"
    stripped = head.lstrip()
    if stripped.startswith((b"<?xml", b"<svg", b"<!DOCTYPE svg")) or b"<svg" in data[:1024]:
        return "SVG"
    return None


#: The reason a zero-byte file is refused, whatever its name says it is.
EMPTY_FILE = "empty file (0 bytes): not an image"


def _describe_refused(kind: str | None, data: bytes) -> str:
    if not data:
        return EMPTY_FILE
    refused = REFUSED_FORMATS.get(kind) if kind is not None else None
    if refused is not None:
        return refused.reason()
    try:
        data[:512].decode("utf-8")
        return "not an image (looks like a text file)"
    except UnicodeDecodeError:
        return "not an image (unrecognised file format)"


def _too_large(w: int, h: int, limits: DecodeLimits) -> ImageDecodeError:
    # exact pixel counts: rounded megapixels read "25 megapixels, limit 25" for 5001 x 5000
    return ImageDecodeError(
        f"image too large: {w}x{h} ({w * h:,} pixels, limit {limits.max_pixels:,})"
    )


def check_dimensions(w: int, h: int, limits: DecodeLimits, label: str = "image") -> None:
    """Refuse a declared size before decoding: not positive, over the pixel cap, or a strip."""
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"invalid {label}: {w}x{h} pixels")
    if w * h > limits.max_pixels:
        raise _too_large(w, h, limits)
    if max(w, h) > limits.max_aspect * min(w, h) and max(w, h) > MAX_STRIP_SIDE:
        raise ImageDecodeError(
            f"{label} of {w}x{h} pixels is refused: its sides differ by more than "
            f"{limits.max_aspect:g}:1, which is not a photo of a skin lesion"
        )


def _check_cost(w: int, h: int, cost: int, limits: DecodeLimits, label: str) -> None:
    if cost > limits.max_decode_bytes:
        need, cap = size_pair(cost, limits.max_decode_bytes)
        raise ImageDecodeError(
            f"image too large: this {w}x{h} {label} needs about {need} to decode (limit {cap})"
        )


def reduce_factor(pixels: int, target: int) -> int:
    """Smallest integer factor that brings ``pixels`` down to ``target`` or fewer."""
    if pixels <= target or target <= 0:
        return 1
    return max(1, math.ceil(math.sqrt(pixels / target)))


def _mode_bytes(mode: str) -> int:
    """Bytes per pixel of a decoded Pillow image in this mode."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8, compositing transparency onto white."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 65535.0 if mode.startswith("I;16") or hi > 255 else 255.0
        if mode == "F" and hi <= 1.0:
            scale = 1.0
        out = np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(out[:, :, None], 3, axis=2)
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
        # regular files only: a FIFO / socket / device named x.jpg must not block or never end
        data = read_regular_file(path, limits.max_bytes)
    if len(data) > limits.max_bytes:
        raise ImageDecodeError(too_large_text(len(data), limits.max_bytes))
    return data, name


def decode_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    limits: DecodeLimits | None = None,
) -> np.ndarray:
    """Bytes or a file path -> RGB uint8 array (H, W, 3). Raises ``ImageDecodeError``.

    Images over ``limits.work_pixels`` come back reduced by an integer factor (see module doc).
    """
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


#: Decodes estimated above this are "heavy": a server runs them one at a time, apart from its
#: ordinary workers, so that large uploads cannot hold every worker (see ``decode_cost``).
HEAVY_DECODE_BYTES = 32 * MIB


def decode_cost(data: bytes, limits: DecodeLimits | None = None) -> int:
    """Header-only estimate of the bytes decoding ``data`` will need: 0 when the header is
    refused or unreadable (the decode itself then fails in a few microseconds). DICOM, whose
    header is not parsed here, counts 8 bytes per byte of file."""
    limits = limits or DecodeLimits()
    kind = sniff(data)
    if kind == "DICOM":
        return min(limits.max_decode_bytes, 8 * len(data))
    if kind not in ALLOWED_FORMATS or len(data) > limits.max_bytes:
        return 0
    frame = jpeg_frame(data) if kind == "JPEG" else None
    size = (frame.width, frame.height) if frame is not None else header_size(data, kind)
    small = size is not None and 0 < size[0] * size[1] <= 500_000
    if small and (frame is None or frame.scans <= MAX_JPEG_SCANS):
        return size[0] * size[1] * 32 if size is not None else 0  # no need to ask Pillow
    try:
        return _open_checked(data, kind, limits).cost
    except ImageDecodeError:
        return 0


def verify_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    limits: DecodeLimits | None = None,
) -> tuple[int, int]:
    """Check that ``decode_image`` would succeed, faster: JPEGs are decoded at 1/8 scale (every
    byte of the entropy-coded data is still read, so truncation and corruption are caught), after
    the header checks of the full decode (its memory estimate: a large progressive JPEG that
    ``decode_image`` refuses can fit at 1/8 scale). Returns the full (width, height); raises
    ``ImageDecodeError`` like ``decode_image``."""
    limits = limits or DecodeLimits()
    data, _name = _read_source(source, limits)
    kind = sniff(data)
    if kind == "DICOM":
        arr = decode_image(data, limits)
        return int(arr.shape[1]), int(arr.shape[0])
    if kind not in ALLOWED_FORMATS:
        raise ImageDecodeError(_describe_refused(kind, data))
    if kind == "JPEG":
        _open_checked(data, kind, limits)  # header only: the full decode's limits
    opened = _open_checked(data, kind, limits, scale=8)
    with decode_budget().reserve(opened.cost):
        _load(opened.img, kind)
        if _has_transparency(opened.img) or opened.img.mode in ("P", "PA"):
            _usable(opened.img, ALLOWED_FORMATS[kind], limits)
    return opened.size


_BOMB_RE = re.compile(r"\((\d+) pixels\)")


@dataclass
class _Opened:
    img: Image.Image
    size: tuple[int, int]  # as declared in the file (before any DCT scaling)
    cost: int  # estimated bytes the decode needs


def _open_checked(
    data: bytes, kind: str, limits: DecodeLimits, scale: int | None = None
) -> _Opened:
    """Open lazily (header only) and enforce every limit that the header allows to check:
    pixel cap, aspect ratio, still image, decode memory. JPEGs are set up for DCT scaling
    (``scale``: at least this reduction; default: down to ``limits.work_pixels``)."""
    label = ALLOWED_FORMATS[kind]
    frame = jpeg_frame(data) if kind == "JPEG" else None
    peek = (frame.width, frame.height) if frame is not None else header_size(data, kind)
    if peek is not None:
        check_dimensions(*peek, limits, label)
    if frame is not None and frame.scans > MAX_JPEG_SCANS:
        raise ImageDecodeError(
            f"corrupt JPEG file: {frame.scans} scans (at most {MAX_JPEG_SCANS} are accepted)"
        )
    if kind == "BMP" and bmp_compression(data) in (1, 2) and len(data) > MAX_RLE_BMP_BYTES:
        raise ImageDecodeError(
            f"RLE-compressed BMP over {size_text(MAX_RLE_BMP_BYTES)} is not accepted: "
            "send a JPEG or PNG"
        )
    try:
        img = Image.open(io.BytesIO(data), formats=[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        m = _BOMB_RE.search(str(exc))
        px = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
        raise ImageDecodeError(
            f"image too large: {px} (limit {limits.max_pixels:,})"
        ) from exc
    except Exception as exc:  # any failure on untrusted bytes is theirs
        raise ImageDecodeError(f"corrupt {label} file: the header cannot be read") from exc
    w, h = img.size
    check_dimensions(w, h, limits, label)
    try:
        frames = int(getattr(img, "n_frames", 1)) if kind in ("PNG", "WEBP") else 1
    except Exception as exc:
        raise ImageDecodeError(f"corrupt {label} file: the header cannot be read") from exc
    if frames > 1:
        raise ImageDecodeError(f"animated {label} files are not accepted: send a still photo")
    _check_single_tiff(img)
    try:
        cost = _decode_cost(img, kind, frame, limits, scale)
    except ImageDecodeError:
        raise
    except Exception as exc:  # a header Pillow accepted but we cannot size
        raise ImageDecodeError(f"corrupt {label} file: the header cannot be read") from exc
    _check_cost(w, h, cost, limits, label)
    return _Opened(img, (int(w), int(h)), cost)


def _check_single_tiff(img: Image.Image) -> None:
    """Refuse a TIFF holding a second photo (``tiff_images``); any other image passes."""
    if img.format == "TIFF" and (images := tiff_images(img)) > 1:
        raise ImageDecodeError(
            f"multi-page TIFF files are not accepted (this one holds {images} images): send each "
            "image as its own file (JPEG, PNG or a single-page TIFF)")


def tiff_images(img: Image.Image) -> int:
    """How many images an opened TIFF holds: its first page, and each further page (of the first
    ``MAX_TIFF_PAGES``) that is not marked as a reduced-resolution copy (NewSubfileType bit 0: a
    thumbnail, a pyramid level) and has at least half the first page's pixels. Scoring page 1 of
    a file holding several photos would answer for one while the user believes the file was
    assessed. Only page headers are read; a later page that cannot be read ends the count (the
    first page was read before, as it always was). ``img`` is left on its first page."""
    w0, h0 = img.size
    images = 1
    # EOFError: no more pages; anything else: a broken later page (the first one stands)
    with contextlib.suppress(Exception):
        try:
            for page in range(1, MAX_TIFF_PAGES):
                img.seek(page)
                w, h = img.size
                reduced = int(getattr(img, "tag_v2", {}).get(254, 0) or 0) & 1
                if not reduced and 2 * w * h >= w0 * h0:
                    images += 1
        finally:
            img.seek(0)
    return images


def _decode_cost(
    img: Image.Image, kind: str, frame: object, limits: DecodeLimits, scale: int | None
) -> int:
    """Estimated peak bytes to decode the first frame (and set up JPEG DCT scaling)."""
    w, h = img.size
    px = w * h
    # what the conversions after decoding cost, on at most work_pixels: about 8 bytes a pixel
    # for plain RGB/L (the array + Pillow's copy), 16 with alpha compositing or 16-bit scaling
    per_px = 8 if img.mode in ("RGB", "L", "CMYK", "YCbCr") else 16
    after = min(px, limits.work_pixels) * per_px
    if kind == "JPEG":
        from dermsight.io.headers import JpegFrame

        want = scale or reduce_factor(px, limits.work_pixels)
        if want > 1:
            img.draft(None, (max(1, w // want), max(1, h // want)))
        dw, dh = img.size
        cost = dw * dh * _mode_bytes(img.mode) + min(dw * dh, limits.work_pixels) * per_px
        if isinstance(frame, JpegFrame) and frame.needs_full_buffer:
            cost += frame.coefficient_bytes
        return cost
    cost = px * _mode_bytes(img.mode) + after
    if px > limits.work_pixels and _mode_bytes(img.mode) < 4:
        cost += px * 4  # _shrink converts P / 1 / I;16 to a 4-byte mode before reducing
    if kind == "WEBP":
        # libwebp's output buffer and its animation decoder's two RGBA canvases (measured:
        # about 16 bytes per pixel in all for a still WebP)
        cost += px * 12
    elif kind == "TIFF":
        cost += _tiff_tile_bytes(img)
    return cost


def _tiff_tile_bytes(img: Image.Image) -> int:
    """The tile or strip buffer libtiff will allocate; refuses absurd ones."""
    tags = getattr(img, "tag_v2", {})
    w, h = img.size
    spp = int(tags.get(277, 1) or 1)
    bps_raw = tags.get(258, 8)
    bps = max(bps_raw) if isinstance(bps_raw, tuple) and bps_raw else int(bps_raw or 8)
    bytes_per_px = max(1, spp * max(1, int(bps)) // 8)
    if 322 in tags or 323 in tags:
        tw, th = int(tags.get(322, 0) or 0), int(tags.get(323, 0) or 0)
        buf = tw * th * bytes_per_px
    else:
        rows = min(int(tags.get(278, h) or h), h)
        buf = rows * w * bytes_per_px
    if buf > MAX_TIFF_TILE_BYTES:
        tiles, cap = size_pair(buf, MAX_TIFF_TILE_BYTES)
        raise ImageDecodeError(f"TIFF tiles/strips of {tiles} are not accepted (limit {cap})")
    compression = int(tags.get(259, 1) or 1)
    # libtiff-decoded JPEG/OJPEG TIFFs go through an RGBA buffer of the whole image
    return buf + (w * h * 4 if compression in (6, 7) else 0)


def _load(img: Image.Image, kind: str) -> None:
    label = ALLOWED_FORMATS[kind]
    try:
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("image too large: too many pixels") from exc
    except Exception as exc:  # any failure on untrusted bytes is theirs
        text = str(exc).lower()
        if "truncat" in text or "premature" in text or "end of file" in text:
            raise ImageDecodeError(f"truncated {label}: the file is incomplete") from exc
        raise ImageDecodeError(f"corrupt {label} file: the image data cannot be decoded") from exc


def _shrink(img: Image.Image, work_pixels: int) -> Image.Image:
    """Box-reduce a decoded image to at most ``work_pixels`` (an integer factor)."""
    w, h = img.size
    f = reduce_factor(w * h, work_pixels)
    if f <= 1:
        return img
    if img.mode in ("P", "PA") or img.mode.startswith("I;16") or img.mode == "1":
        target = (
            "RGBA" if img.mode in ("P", "PA") else "I" if img.mode.startswith("I;16") else "L"
        )
        img = img.convert(target)
    return img.reduce(f)


#: Alpha below this is "transparent" ...
OPAQUE_ALPHA = 250
#: ... and an image with more than this share of such pixels is refused: blending its
#: transparent areas onto a background makes an image the model was never measured on.
MAX_TRANSPARENT_SHARE = 0.01
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _has_transparency(img: Image.Image) -> bool:
    """An alpha channel, or a transparent colour (``tRNS``) of a mode that ``to_rgb``
    composites (P, L, RGB)."""
    return img.mode in _ALPHA_MODES or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    )


def transparent_share(img: Image.Image) -> float:
    """The share of pixels with alpha below ``OPAQUE_ALPHA`` (0.0 for an image without
    transparency: no alpha channel and no transparent colour)."""
    if img.mode in _ALPHA_MODES:
        alpha = np.asarray(img.getchannel(len(img.getbands()) - 1))
    elif _has_transparency(img):
        alpha = np.asarray(img.convert("RGBA").getchannel("A"))
    else:
        return 0.0
    return float(np.count_nonzero(alpha < OPAQUE_ALPHA)) / max(1, alpha.size)


def check_transparency(share: float) -> None:
    """Refuse an image with more than ``MAX_TRANSPARENT_SHARE`` of its pixels transparent
    (``share``: ``transparent_share``, or an RGBA array's own count)."""
    if share > MAX_TRANSPARENT_SHARE:
        raise ImageDecodeError(
            f"image has transparent areas ({share:.0%} of its pixels): "
            "send the original photo, not an edited or cut-out copy"
        )


def _colour_palette(img: Image.Image) -> bool:
    """A loaded P/PA image whose pixels use a colour that is not a grey: its colours were
    reduced to a palette of at most 256. (A palette of greys only is a greyscale image.)"""
    if img.mode not in ("P", "PA"):
        return False
    palette = np.asarray(img.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    used = np.flatnonzero(np.asarray(img.histogram()[:256]))
    used = used[used < len(palette)]
    colours = palette[used].astype(np.int16)
    return bool(np.any(colours != colours[:, :1]))


def check_palette(palette: bool, label: str) -> None:
    """Refuse an indexed-colour image (``_colour_palette``; a DICOM PALETTE COLOR image of at
    most 256 colours, ``dicom._apply_palette``): measured on 200 ISIC images, a
    256-colour copy moved the risk tier of 16 % of them (48 % when dithered, as Pillow's
    ``convert("P")`` does: all upward, 74 low to high) where a JPEG q90 copy moved none."""
    if palette:
        raise ImageDecodeError(
            f"an indexed-colour (palette) {label}: its colours were reduced to at most 256, "
            "which changes the model's answer; send the original full-colour photo as JPEG or PNG"
        )


def _usable(img: Image.Image, label: str, limits: DecodeLimits) -> Image.Image:
    """A loaded image, reduced to ``limits.work_pixels``; refused when it has transparent
    areas (an opaque alpha channel, or a few stray transparent pixels, are fine) or is an
    indexed-colour image (``check_palette``; transparency is named first). ``label`` names its
    format in messages."""
    try:
        palette = _colour_palette(img)
        img = _shrink(img, limits.work_pixels)
        share = transparent_share(img)
    except Exception as exc:  # an odd mode of untrusted bytes
        raise ImageDecodeError(f"unsupported {label} colour mode {img.mode}") from exc
    check_transparency(share)
    check_palette(palette, label)
    return img


def _decode_raster(data: bytes, kind: str, limits: DecodeLimits, name: str) -> np.ndarray:
    opened = _open_checked(data, kind, limits)
    with decode_budget().reserve(opened.cost):
        img = opened.img
        _load(img, kind)
        return _oriented_rgb(_usable(img, ALLOWED_FORMATS[kind], limits), ALLOWED_FORMATS[kind])


def _oriented_rgb(img: Image.Image, label: str) -> np.ndarray:
    """A usable image's RGB pixels, turned upright by its EXIF orientation."""
    with contextlib.suppress(Exception):  # a broken EXIF block must not reject good pixels
        img = ImageOps.exif_transpose(img) or img
    try:
        return to_rgb(img)
    except Exception as exc:  # an odd mode of untrusted bytes
        raise ImageDecodeError(f"unsupported {label} colour mode {img.mode}") from exc


def pil_to_rgb(img: Image.Image, limits: DecodeLimits | None = None) -> np.ndarray:
    """A Pillow image a caller opened -> (H, W, 3) uint8, read as a file's pixels are: the same
    pixel limit, reduction to ``limits.work_pixels``, refusal of transparent areas, of
    animated PNG/WebP/GIF and of a TIFF holding a second photo, EXIF orientation, colour modes
    (16-bit and float scaled as ``to_rgb`` does). Raises ``ImageDecodeError``."""
    limits = limits or DecodeLimits()
    label = f"{img.format} image" if img.format else "image"
    w, h = img.size
    check_dimensions(w, h, limits, label)
    if img.format in ("PNG", "WEBP", "GIF") and int(getattr(img, "n_frames", 1)) > 1:
        raise ImageDecodeError(f"animated {label}s are not accepted: send a still photo")
    _check_single_tiff(img)
    try:
        img.load()
    except Exception as exc:  # a lazily opened file that turns out truncated or corrupt
        raise ImageDecodeError(f"corrupt {label}: its pixels cannot be read ({exc})") from exc
    return _oriented_rgb(_usable(img, label, limits), label)
