"""Builders of hostile image files (no tests here): decompression bombs, lying headers, wrong
DICOM VRs, PHI planted in DICOM tags. Used by ``test_decode_limits.py`` (the bounded decoder),
``test_hostile_uploads.py`` (the real server: fuzz corpus, peak RSS).

Everything is built from bytes by hand (PNG chunks, JPEG markers, DICOM elements), so a file can
declare a size its data does not have, and the largest ones (e.g. a PNG of 1 x 49,000,000
pixels, a DICOM that inflates to 1 GB) stay a few kB to a few MB on the wire.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

# --- PNG ---------------------------------------------------------------------------------------


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def zeros_deflated(n: int, chunk: int = 1 << 22) -> bytes:
    """zlib stream of ``n`` zero bytes, without ever holding them (about n / 1000 bytes)."""
    comp = zlib.compressobj(9)
    block = bytes(min(chunk, n))
    out = []
    left = n
    while left > 0:
        k = min(left, len(block))
        out.append(comp.compress(block[:k]))
        left -= k
    out.append(comp.flush())
    return b"".join(out)


def png(width: int, height: int, bit_depth: int = 8, colour: int = 0, idat: bytes | None = None,
        extra: Iterable[bytes] = (), interlace: int = 0) -> bytes:
    """A PNG with the given IHDR; ``idat`` defaults to all-zero rows of the declared size."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, interlace)
    if idat is None:
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
        row = 1 + (width * channels * bit_depth + 7) // 8
        idat = zeros_deflated(row * height)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + b"".join(extra)
            + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def png_strip(length: int = 49_000_000) -> bytes:
    """The reported attack: 1 x 49,000,000 grey pixels, valid data (~48 kB)."""
    return png(1, length)


def apng(frames: int, side: int = 64) -> bytes:
    actl = png_chunk(b"acTL", struct.pack(">II", frames, 0))
    return png(side, side, extra=[actl])


# --- JPEG --------------------------------------------------------------------------------------


def real_jpeg(path: Path, progressive: bool = False, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, format="JPEG", quality=quality,
                                         progressive=progressive)
    return buf.getvalue()


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOFn) claiming another size."""
    i = 2
    while i + 4 <= len(jpeg):
        marker = jpeg[i + 1]
        (seg,) = struct.unpack(">H", jpeg[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            return jpeg[: i + 5] + struct.pack(">HH", height & 0xFFFF, width & 0xFFFF) \
                + jpeg[i + 9 :]
        i += 2 + seg
    raise ValueError("no SOF marker")


def jpeg_many_scans(jpeg: bytes, scans: int) -> bytes:
    """A JPEG with ``scans`` extra (empty) SOS segments before EOI (a scan-count CPU attack)."""
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    body = jpeg[:-2] if jpeg.endswith(b"\xff\xd9") else jpeg
    return body + sos * scans + b"\xff\xd9"


# --- WebP / BMP / TIFF ---------------------------------------------------------------------------


def webp_vp8x(width: int, height: int, animated: bool = False) -> bytes:
    """A WebP container whose VP8X chunk declares a ``width`` x ``height`` canvas."""
    flags = 0x02 if animated else 0
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + \
        (height - 1).to_bytes(3, "little")
    chunks = b"VP8X" + struct.pack("<I", 10) + vp8x
    if animated:
        chunks += b"ANIM" + struct.pack("<I", 6) + b"\0" * 6
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def solid_webp(side: int) -> bytes:
    """A real lossless WebP of side x side (a few kB whatever the side)."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (180, 120, 90)).save(buf, format="WEBP", lossless=True,
                                                        method=0, quality=0)
    return buf.getvalue()


def bmp_header(width: int, height: int, bpp: int = 24, compression: int = 0,
               payload: bytes = b"") -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, compression, len(payload),
                       2835, 2835, 0, 0)
    palette = b"\0\0\0\0" * (256 if bpp == 8 else 0)
    offset = 14 + len(info) + len(palette)
    head = b"BM" + struct.pack("<IHHI", offset + len(payload), 0, 0, offset)
    return head + info + palette + payload


def tiff_tiled_bomb(tile: int = 20000) -> bytes:
    """A 64x64 RGB TIFF whose tiles claim to be tile x tile pixels (deflate)."""
    entries = [
        (256, 3, 1, 64), (257, 3, 1, 64), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 2),
        (277, 3, 1, 3), (284, 3, 1, 1), (322, 4, 1, tile), (323, 4, 1, tile),
    ]
    data = zlib.compress(b"\0" * 4096)
    n = len(entries) + 2
    ifd_size = 2 + 12 * n + 4
    data_off = 8 + ifd_size
    entries += [(324, 4, 1, data_off), (325, 4, 1, len(data))]
    entries.sort()
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if typ == 3:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + data


def multipage_tiff(pages: int, side: int = 32) -> bytes:
    frames = [Image.new("RGB", (side, side), (i * 7 % 255, 90, 120)) for i in range(pages)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


# --- DICOM -------------------------------------------------------------------------------------

NATIVE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG2000 = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
_LONG_VRS = (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN")

Element = tuple[int, bytes, bytes]  # (tag as 0xGGGGEEEE, VR, value bytes)


def element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One explicit-VR little-endian element (value padded to even length)."""
    if len(value) % 2 and tag != 0x7FE00010:
        value += b"\0" if vr == b"UI" else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if vr in _LONG_VRS:
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def us(v: int) -> bytes:
    return struct.pack("<H", v & 0xFFFF)


def encapsulate(frame: bytes) -> bytes:
    """Basic offset table (empty) + one fragment + sequence delimiter."""
    if len(frame) % 2:
        frame += b"\0"
    item = b"\xfe\xff\x00\xe0"
    return (item + struct.pack("<I", 0) + item + struct.pack("<I", len(frame)) + frame
            + b"\xfe\xff\xdd\xe0" + struct.pack("<I", 0))


def image_elements(rows: int, cols: int, *, patient_id: bytes = b"IP_TEST",
                   patient_name: bytes = b"TEST^PATIENT", spp: int = 3,
                   photometric: bytes = b"RGB", frames: bytes | None = None,
                   bits: int = 8) -> list[Element]:
    els: list[Element] = [
        (0x00080016, b"UI", SC_STORAGE.encode()),
        (0x00080018, b"UI", b"1.2.826.0.1.3680043.8.498.1"),
        (0x00080060, b"CS", b"XC"),
        (0x00100010, b"PN", patient_name),
        (0x00100020, b"LO", patient_id),
        (0x00101010, b"AS", b"045Y"),
        (0x00100040, b"CS", b"F"),
        (0x00280002, b"US", us(spp)),
        (0x00280004, b"CS", photometric),
        (0x00280010, b"US", us(rows)),
        (0x00280011, b"US", us(cols)),
        (0x00280100, b"US", us(bits)),
        (0x00280101, b"US", us(bits)),
        (0x00280102, b"US", us(bits - 1)),
        (0x00280103, b"US", us(0)),
    ]
    if spp == 3:
        els.append((0x00280006, b"US", us(0)))
    if frames is not None:
        els.append((0x00280008, b"IS", frames))
    return els


def replace(els: list[Element], tag: int, vr: bytes, value: bytes) -> list[Element]:
    return [e for e in els if e[0] != tag] + [(tag, vr, value)]


def dicom(els: list[Element], pixel_data: bytes | None, ts: str = NATIVE,
          pixel_vr: bytes = b"OB", deflate: bool = False) -> bytes:
    """A Part 10 file: preamble, file meta (explicit VR LE), then the data set (optionally
    deflated: then ``ts`` should be ``DEFLATED``)."""
    body_els = sorted(els, key=lambda e: e[0])
    body = b"".join(element(t, vr, v) for t, vr, v in body_els)
    if pixel_data is not None:
        body += element(0x7FE00010, pixel_vr, pixel_data)
    return _meta(ts) + (_deflate(body) if deflate else body)


def _meta(ts: str) -> bytes:
    meta = b"".join([
        element(0x00020001, b"OB", b"\0\1"),
        element(0x00020002, b"UI", SC_STORAGE.encode()),
        element(0x00020003, b"UI", b"1.2.826.0.1.3680043.8.498.1"),
        element(0x00020010, b"UI", ts.encode()),
        element(0x00020012, b"UI", b"1.2.826.0.1.3680043.8.498"),
    ])
    group_len = element(0x00020000, b"UL", struct.pack("<I", len(meta)))
    return b"\0" * 128 + b"DICM" + group_len + meta


def _deflate(body: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return comp.compress(body) + comp.flush()


def dicom_deflate_bomb(inflated: int = 2_000_000_000, rows: int = 8, cols: int = 8) -> bytes:
    """A deflated data set whose (zero) pixel data inflates to ``inflated`` bytes (~2 MB file
    for 2 GB, about the reported 1000:1)."""
    els = image_elements(rows, cols)
    head = b"".join(element(t, vr, v) for t, vr, v in sorted(els, key=lambda e: e[0]))
    head += struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0" + struct.pack("<I", inflated)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)]
    block = 1 << 22
    # after a full flush the compressor starts afresh, so every 4 MiB block of zeros deflates
    # to the same bytes: compress one, repeat it (a 2 GB bomb in milliseconds)
    zeros = comp.compress(bytes(block)) + comp.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(inflated, block)
    parts.append(zeros * (n - 1) if n else b"")
    tail = bytes(block if n else 0) + bytes(rest)
    parts.append(comp.compress(tail) + comp.flush())
    return _meta(DEFLATED) + b"".join(parts)


def dicom_jpeg(frame: bytes, rows: int, cols: int, **kw: object) -> bytes:
    els = image_elements(rows, cols, photometric=b"YBR_FULL_422", **kw)  # type: ignore[arg-type]
    return dicom(els, encapsulate(frame), ts=JPEG_BASELINE)


def dicom_native(rgb: np.ndarray, **kw: object) -> bytes:
    h, w, _ = rgb.shape
    return dicom(image_elements(h, w, **kw), rgb.tobytes())  # type: ignore[arg-type]


# --- the reported attacks, by name ---------------------------------------------------------------


def reported_bombs(jpeg: bytes) -> dict[str, bytes]:
    """The single uploads of the issue (each <= 20 MiB), built from a real JPEG."""
    return {
        "dicom-deflate-2GB": dicom_deflate_bomb(2_000_000_000),
        "png-1x49M": png_strip(49_000_000),
        "png-7000x7000": png(7000, 7000, colour=2),
        "webp-7000x7000": solid_webp(7000),
        "dicom-jpeg-16000x11000-in-8x8": dicom_jpeg(jpeg_with_size(jpeg, 16000, 11000), 8, 8),
        "jpeg-16000x11000": jpeg_with_size(jpeg, 16000, 11000),
        "jpeg-5000x5000-claimed": jpeg_with_size(jpeg, 5000, 5000),
        "tiff-20000px-tiles": tiff_tiled_bomb(20000),
    }
