"""Image libraries' own log records never reach the logs: they can quote the uploader's data."""

from __future__ import annotations

import io
import logging
import struct

import pytest
from PIL import Image

from dermsight.io.decode import decode_image
from dermsight.io.errors import ImageDecodeError


def _tiff_with_samples_per_pixel(spp: int) -> bytes:
    """A real 8x8 RGB TIFF whose SamplesPerPixel entry is then rewritten to ``spp``."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 90)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, at)[0] == 277:  # SamplesPerPixel
            struct.pack_into("<H", data, at + 8, spp)
            return bytes(data)
    raise AssertionError("no SamplesPerPixel entry")


def test_pillow_complaints_about_an_odd_tiff_are_not_logged(caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImageDecodeError):
        decode_image(_tiff_with_samples_per_pixel(35))
    assert [r for r in caplog.records if r.name.startswith("PIL")] == []
    # the same file, decoded by Pillow with its logger left alone, does log at ERROR: the test
    # above would see it
    pil = logging.getLogger("PIL")
    saved = (pil.level, pil.propagate, list(pil.filters))
    pil.setLevel(logging.NOTSET)
    pil.propagate = True
    for f in saved[2]:
        pil.removeFilter(f)
    try:
        caplog.clear()
        with pytest.raises(Exception):  # noqa: B017, PT011 - Pillow's own error type varies
            Image.open(io.BytesIO(_tiff_with_samples_per_pixel(35))).load()
        assert any(r.name.startswith("PIL") and r.levelno >= logging.ERROR
                   for r in caplog.records)
    finally:
        pil.setLevel(saved[0])
        pil.propagate = saved[1]
        for f in saved[2]:
            pil.addFilter(f)
