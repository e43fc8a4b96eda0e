"""Image sizes read straight from file headers, before any decoder allocates anything.

Only a few bytes are parsed by hand (no Pillow): the PNG ``IHDR``, the JPEG frame header
(``SOFn``, with its components' sampling factors and the number of scans, which decide how much
memory libjpeg needs), the BMP info header and the WebP ``VP8 ``/``VP8L``/``VP8X`` chunk (and
whether a WebP is lossy). The same JPEG parser checks JPEG frames embedded in DICOM files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: SOF markers of JPEG frames (not DHT 0xC4, JPG 0xC8, DAC 0xCC).
_SOF = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
_PROGRESSIVE = (0xC2, 0xC6, 0xCA, 0xCE)


@dataclass(frozen=True)
class JpegFrame:
    """What the first frame header of a JPEG says."""

    width: int
    height: int
    marker: int  # 0xC0 baseline, 0xC2 progressive, ...
    sampling: tuple[tuple[int, int], ...]  # (h, v) sampling factor of each component
    scans: int  # SOS markers between the frame header and the end of the image

    @property
    def progressive(self) -> bool:
        return self.marker in _PROGRESSIVE

    @property
    def coefficient_bytes(self) -> int:
        """Bytes of the whole-image DCT coefficient buffer libjpeg allocates for a progressive
        or multi-scan image (2 bytes x 64 coefficients per 8x8 block of every component)."""
        if not self.sampling:
            return 0
        hmax = max(1, max(h for h, _ in self.sampling))
        vmax = max(1, max(v for _, v in self.sampling))
        total = 0
        for h, v in self.sampling:
            cw = -(-self.width * max(h, 1) // hmax)
            ch = -(-self.height * max(v, 1) // vmax)
            total += (-(-cw // 8)) * (-(-ch // 8)) * 128
        return total

    @property
    def needs_full_buffer(self) -> bool:
        return self.progressive or self.scans > 1


# ruff noqa below: one return per marker case.
def jpeg_frame(data: bytes) -> JpegFrame | None:  # noqa: PLR0911
    """The first SOF of a JPEG (width, height, sampling, scan count); None if none is found
    before the first scan or the header is cut short."""
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
        if marker in _SOF:
            if i + 10 > n:
                return None
            h, w, nc = struct.unpack(">HHB", data[i + 5 : i + 10])
            comps = []
            for k in range(nc):
                j = i + 10 + 3 * k
                if j + 2 > n:
                    return None
                hv = data[j + 1]
                comps.append((hv >> 4, hv & 0x0F))
            end = data.find(b"\xff\xd9", i)
            scans = data.count(b"\xff\xda", i, end if end >= 0 else n)
            return JpegFrame(int(w), int(h), marker, tuple(comps), scans)
        if marker == 0xDA:  # start of scan before any frame header
            return None
        if seg_len < 2:
            return None
        i += 2 + seg_len
    return None


def png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    return None


def bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:
        w, h = struct.unpack("<HH", data[18:22])
        return int(w), int(h)
    w, h = struct.unpack("<ii", data[18:26])
    return abs(int(w)), abs(int(h))


def bmp_compression(data: bytes) -> int:
    """The BMP compression field (0 none, 1 RLE8, 2 RLE4, 3 bitfields, ...); 0 for old headers."""
    if len(data) < 34:
        return 0
    (dib,) = struct.unpack("<I", data[14:18])
    if dib < 40:
        return 0
    (comp,) = struct.unpack("<I", data[30:34])
    return int(comp)


def webp_size(data: bytes) -> tuple[int, int] | None:
    """Canvas size of a WebP from its first chunk (VP8X, VP8L or VP8)."""
    if len(data) < 30:
        return None
    chunk = data[12:16]
    body = data[20:]
    if chunk == b"VP8X" and len(body) >= 10:
        w = 1 + int.from_bytes(body[4:7], "little")
        h = 1 + int.from_bytes(body[7:10], "little")
        return w, h
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", body[6:10])
        return int(w & 0x3FFF), int(h & 0x3FFF)
    return None


def webp_lossy(data: bytes) -> bool | None:
    """True for a lossy WebP (its image is a ``VP8 `` chunk, also behind ``VP8X`` / ``ALPH``),
    False for a lossless one (``VP8L``), None when neither chunk is found."""
    if len(data) < 16 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if chunk == b"VP8 ":
            return True
        if chunk == b"VP8L":
            return False
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """Image (width, height) read straight from the header; None when unknown."""
    if kind == "PNG":
        return png_size(data)
    if kind == "JPEG":
        frame = jpeg_frame(data)
        return (frame.width, frame.height) if frame is not None else None
    if kind == "BMP":
        return bmp_size(data)
    if kind == "WEBP":
        return webp_size(data)
    return None
