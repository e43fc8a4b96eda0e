"""Safe decoding: every bad input gets a clear ``ImageDecodeError``; every odd mode becomes RGB."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermsight.io.decode import DecodeLimits, decode_image, header_size, sniff, verify_image
from dermsight.io.dicom import write_dicom
from dermsight.io.errors import ImageDecodeError


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def make_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG built by hand (IHDR with a correct CRC), so the header can claim anything."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def _jpeg(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rgb(sample_image: Path) -> np.ndarray:
    return decode_image(sample_image)


def _reason(source: object, limits: DecodeLimits | None = None) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(source, limits)  # type: ignore[arg-type]
    return info.value.reason


def test_real_image_decodes(sample_image: Path) -> None:
    arr = decode_image(sample_image)
    assert arr.shape == (256, 256, 3)
    assert arr.dtype == np.uint8
    assert np.array_equal(decode_image(sample_image.read_bytes()), arr)
    assert verify_image(sample_image) == (256, 256)


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    assert _reason(p) == "empty file (0 bytes): not an image"
    with pytest.raises(ImageDecodeError, match="empty file"):
        verify_image(p)


def test_text_file_named_jpg(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("patient notes: lesion on the back\n")
    assert _reason(p) == "not an image (looks like a text file)"


def test_binary_junk() -> None:
    assert _reason(bytes(range(256)) * 4) == "not an image (unrecognised file format)"


def test_text_starting_with_bm_is_not_bmp() -> None:
    assert sniff(b"BMI report for the patient\n") is None


def test_truncated_jpeg(sample_image: Path, tmp_path: Path) -> None:
    data = sample_image.read_bytes()
    for keep in (0.5, 0.95):
        p = tmp_path / f"cut{keep}.jpg"
        p.write_bytes(data[: int(len(data) * keep)])
        assert _reason(p) == "truncated JPEG: the file is incomplete"
        with pytest.raises(ImageDecodeError, match="truncated JPEG"):
            verify_image(p)


def test_jpeg_with_broken_header() -> None:
    reason = _reason(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    assert reason.startswith(("corrupt JPEG", "truncated JPEG"))


def test_png_header_claiming_50000x50000_is_refused_before_decoding() -> None:
    bomb = make_png(50000, 50000, 8, 2, b"")
    assert header_size(bomb, "PNG") == (50000, 50000)
    reason = _reason(bomb)
    assert reason == "image too large: 50000x50000 (2,500,000,000 pixels, limit 25,000,000)"
    with pytest.raises(ImageDecodeError, match="image too large: 50000x50000"):
        verify_image(bomb)


def test_png_between_pillow_warning_and_error_limits() -> None:
    # 100 megapixels: above Pillow's warning threshold, below its error threshold.
    reason = _reason(make_png(10000, 10000, 8, 2, b""))
    assert reason.startswith("image too large: 10000x10000")


def test_pixel_limit_is_configurable(rgb: np.ndarray) -> None:
    reason = _reason(_jpeg(rgb), DecodeLimits(max_pixels=10_000))
    assert reason == "image too large: 256x256 (65,536 pixels, limit 10,000)"


def test_byte_limit(rgb: np.ndarray, tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    p.write_bytes(_jpeg(rgb))
    assert _reason(p, DecodeLimits(max_bytes=1000)).startswith("file too large:")
    assert _reason(p.read_bytes(), DecodeLimits(max_bytes=1000)).startswith("file too large:")


def test_animated_gif_refused_by_content(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    p = tmp_path / "lesion.jpg"  # the name lies; the content decides
    p.write_bytes(buf.getvalue())
    assert _reason(p) == ("GIF files are not accepted: send a JPEG, PNG, WebP, BMP or TIFF "
                          "photo, or a DICOM file")


def test_animated_png_refused() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    assert _reason(buf.getvalue()) == "animated PNG files are not accepted: send a still photo"


def test_svg_refused() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10"/>'
    assert _reason(svg).startswith("SVG files are not accepted")
    assert _reason(b"  <svg width='1' height='1'></svg>").startswith("SVG files are not accepted")


def test_pdf_refused(tmp_path: Path) -> None:
    p = tmp_path / "scan.png"
    p.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    assert _reason(p).startswith("PDF files are not accepted")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nope.jpg").startswith("file not found:")
    assert _reason(tmp_path).endswith("is a folder, not an image")


def test_wrong_extension_is_fine(rgb: np.ndarray, tmp_path: Path) -> None:
    p = tmp_path / "photo.png"
    p.write_bytes(_jpeg(rgb, quality=95))
    assert decode_image(p).shape == rgb.shape


def test_cmyk_jpeg(rgb: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG", quality=95)
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "CMYK"
    out = decode_image(buf.getvalue())
    assert out.shape == rgb.shape
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 4


def test_16bit_grayscale_png() -> None:
    values = (np.arange(64 * 32, dtype=np.uint32).reshape(32, 64) * 31).astype(np.uint16)
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(32))
    out = decode_image(make_png(64, 32, 16, 0, rows))
    assert out.shape == (32, 64, 3)
    expected = np.round(values / 65535 * 255)
    assert np.abs(out[:, :, 0].astype(float) - expected).max() <= 1
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_16bit_rgb_png() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, size=(8, 8, 3)).astype(np.uint16)
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(8))
    out = decode_image(make_png(8, 8, 16, 2, rows))
    assert np.abs(out.astype(int) - (values >> 8)).max() <= 1


def test_rgba_png_with_transparent_areas_is_refused() -> None:
    """Half the image transparent: an edited / cut-out copy, refused (blending it onto white
    made a washed-out image the model answered with confidence)."""
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[:, :10] = (200, 10, 10, 255)  # opaque red
    rgba[:, 10:] = (0, 0, 0, 0)  # fully transparent
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    with pytest.raises(ImageDecodeError, match="transparent areas"):
        decode_image(buf.getvalue())
    rgba[:, 10:] = (0, 0, 200, 255)  # the same picture, opaque: decoded
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    out = decode_image(buf.getvalue())
    assert out.shape == (10, 20, 3)
    assert tuple(out[0, 0]) == (200, 10, 10)
    assert tuple(out[0, 15]) == (0, 0, 200)


@pytest.mark.parametrize("mode", ["L", "1", "LA", "I", "F"])  # colour palettes: test_palette_images
def test_other_modes_become_rgb(rgb: np.ndarray, mode: str) -> None:
    img = Image.fromarray(rgb).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode in ("I", "F") else "PNG")
    out = decode_image(buf.getvalue())
    assert out.shape == rgb.shape
    assert out.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF"])
def test_other_allowed_formats(rgb: np.ndarray, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    assert np.array_equal(decode_image(buf.getvalue()), rgb)


def test_exif_rotated_jpeg(rgb: np.ndarray) -> None:
    stored = np.ascontiguousarray(rgb[:128])  # 256 wide, 128 high: rotation is visible
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; display rotated 90 deg clockwise
    data = _jpeg(stored, quality=95, exif=exif.tobytes())
    raw = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert raw.shape == (128, 256, 3)
    out = decode_image(data)
    assert out.shape == (256, 128, 3)
    assert np.array_equal(out, np.rot90(raw, k=-1))
    # Orientation 3 (upside down) keeps the shape but flips both axes.
    exif[0x0112] = 3
    data = _jpeg(stored, quality=95, exif=exif.tobytes())
    assert np.array_equal(decode_image(data), raw[::-1, ::-1])


def test_broken_exif_does_not_reject_pixels(rgb: np.ndarray) -> None:
    data = _jpeg(rgb, quality=90, exif=b"Exif\x00\x00garbage-not-tiff")
    assert decode_image(data).shape == rgb.shape


def test_decoded_array_carries_no_metadata(rgb: np.ndarray) -> None:
    """EXIF (description + GPS), a JPEG comment, XMP and an ICC profile with identifying text
    reach neither the decoded array (nor anything it keeps alive) nor what the facade returns."""
    import json

    from dermsight import Dermsight

    secrets = (b"DESC-Jane-Doe-1953", b"COMMENT-MRN-0042", b"XMP-ward-7", b"ICC-site-clinic")
    exif = Image.Exif()
    exif[0x010E] = secrets[0].decode()  # ImageDescription
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 12.0)}  # GPS IFD: latitude
    data = _jpeg(rgb, quality=95, exif=exif.tobytes(), comment=secrets[1],
                 xmp=b"<x:xmpmeta>" + secrets[2] + b"</x:xmpmeta>", icc_profile=secrets[3] * 8)
    assert all(s in data for s in secrets)  # the input really carries them
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)

    out = decode_image(data)
    assert type(out) is np.ndarray
    assert out.dtype == np.uint8
    assert out.shape == rgb.shape
    assert not hasattr(out, "info")
    assert not getattr(out, "__dict__", None)
    # The array keeps alive only raw pixel buffers of its own size (not the file, not the image).
    base: object = out
    while base is not None:
        assert isinstance(base, (np.ndarray, bytes, bytearray, memoryview)), type(base)
        raw = base.tobytes() if isinstance(base, np.ndarray) else bytes(base)
        assert len(raw) == out.nbytes
        assert not any(s in raw for s in secrets)
        base = getattr(base, "base", None)

    pred = Dermsight.load().predict(data, age=50, sex="female", site="torso")
    assert pred.cam is not None  # a real dermoscopic image: a result with a heatmap
    png = pred.overlay_png()
    assert not {b"eXIf", b"tEXt", b"iTXt", b"zTXt", b"iCCP"} & set(_png_chunks(png))
    for blob in (json.dumps(pred.to_dict(heatmap_png=True)).encode(), png):
        assert not any(s in blob for s in secrets)


def _png_chunks(png: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kinds.append(png[pos + 4:pos + 8])
        pos += 12 + length
    return kinds


def test_dicom_without_pixel_data(rgb: np.ndarray, tmp_path: Path) -> None:
    p = write_dicom(tmp_path / "ISIC_header_only.dcm", rgb, 50, "male", "torso", pixels=False)
    assert _reason(p) == "DICOM file has no image (pixel data)"


def test_dicom_routed_by_content(rgb: np.ndarray, tmp_path: Path) -> None:
    p = write_dicom(tmp_path / "lesion.jpg", rgb, 50, "male", "torso", jpeg=False)
    assert np.array_equal(decode_image(p), rgb)
    assert verify_image(p) == (256, 256)


def test_fake_dicom_preamble() -> None:
    data = b"\x00" * 128 + b"DICM" + b"\x00garbage" * 4
    reason = _reason(data)
    assert "DICOM" in reason


def test_many_threads_decode_the_same(sample_ids: list[str], data_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    paths = [data_dir / "images" / f"{i}.jpg" for i in sample_ids[:8]]
    serial = [decode_image(p) for p in paths]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(decode_image, paths))
    assert all(np.array_equal(a, b) for a, b in zip(serial, threaded, strict=True))
