"""Bounded decoding (issue 10): every format is refused from its header before a decoder
allocates anything, big images are decoded small, only first frames are decoded, DICOM
deflate / frame-size / wrong-VR attacks are 4xx reasons that never quote a tag value, and the
process-wide decode memory budget makes large decodes wait for each other."""

from __future__ import annotations

import io
import logging
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hostile_inputs as h
from dermsight.io.budget import DecodeBudget
from dermsight.io.decode import DecodeLimits, decode_image, verify_image
from dermsight.io.dicom import write_dicom
from dermsight.io.errors import ImageDecodeError
from dermsight.io.headers import jpeg_frame


def _reason(data: bytes, limits: DecodeLimits | None = None) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, limits)
    return info.value.reason


def _cpu(fn: object) -> float:
    t = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - t


@pytest.fixture(scope="module")
def real(sample_image: Path) -> np.ndarray:
    return np.asarray(Image.open(sample_image).convert("RGB"))


@pytest.fixture(scope="module")
def big_jpeg(real: np.ndarray) -> bytes:
    """A real lesion upscaled to 3000 x 2000 (6 MP), baseline JPEG."""
    buf = io.BytesIO()
    Image.fromarray(real).resize((3000, 2000), Image.Resampling.BILINEAR).save(
        buf, format="JPEG", quality=85)
    return buf.getvalue()


# --- the reported attacks --------------------------------------------------------------------


def test_png_strip_of_49_megapixels_is_refused_from_its_header() -> None:
    bomb = h.png_strip(49_000_000)
    assert len(bomb) < 200_000
    cpu = _cpu(lambda: _reason(bomb))
    assert _reason(bomb) == "image too large: 1x49000000 (49,000,000 pixels, limit 25,000,000)"
    assert cpu < 0.2
    # under the pixel cap, a strip is refused by its aspect ratio
    assert "differ by more than 10:1" in _reason(h.png_strip(20_000))


def test_tiny_webp_declaring_7000x7000_is_refused_before_decoding() -> None:
    webp = h.solid_webp(7000)
    assert len(webp) < 2000
    assert _reason(webp).startswith("image too large: 7000x7000")
    assert _reason(h.webp_vp8x(7000, 7000)).startswith("image too large: 7000x7000")
    # under the pixel cap, WebP's decoder holds ~16 bytes a pixel: the memory estimate decides
    reason = _reason(h.solid_webp(4000))
    assert reason == ("image too large: this 4000x4000 WebP needs about 259 MB to decode "
                      "(limit 128 MB)")


def test_jpeg_lying_about_its_size_is_refused_before_decoding(sample_image: Path) -> None:
    jpeg = h.real_jpeg(sample_image)
    assert _reason(h.jpeg_with_size(jpeg, 16000, 11000)).startswith(
        "image too large: 16000x11000")


def test_tiff_with_giant_tiles_is_refused() -> None:
    assert _reason(h.tiff_tiled_bomb(20000)).startswith("TIFF tiles/strips of 1144 MB")


def test_jpeg_with_too_many_scans_is_refused(sample_image: Path) -> None:
    jpeg = h.real_jpeg(sample_image, progressive=True)
    ok = jpeg_frame(jpeg)
    assert ok is not None
    assert 2 <= ok.scans <= 20
    assert _reason(h.jpeg_many_scans(jpeg, 500)).startswith("corrupt JPEG file: 5")


def test_rle_bmp_over_2_mb_is_refused_and_a_small_one_decodes() -> None:
    rle_row = b"\x10\x07" * 2 + b"\x00\x00"  # 2 runs of 16 px, end of line
    small = h.bmp_header(32, 8, bpp=8, compression=1, payload=rle_row * 8 + b"\x00\x01")
    assert decode_image(small).shape == (8, 32, 3)
    big = h.bmp_header(2000, 2000, bpp=8, compression=1, payload=b"\x01\x07" * (1_100_000))
    assert _reason(big).startswith("RLE-compressed BMP over 2 MB is not accepted")


def test_animated_png_and_webp_are_refused_from_the_header() -> None:
    assert _reason(h.apng(3)) == "animated PNG files are not accepted: send a still photo"
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert _reason(buf.getvalue()) == "animated WebP files are not accepted: send a still photo"


def test_multipage_tiff_is_refused_not_scored_on_its_first_page() -> None:
    """40 pages of one size: 40 images (test_tiff_pages.py: thumbnails and pyramid levels)."""
    assert _reason(h.multipage_tiff(40)) == (
        "multi-page TIFF files are not accepted (this one holds 40 images): send each image as "
        "its own file (JPEG, PNG or a single-page TIFF)")
    out = decode_image(h.multipage_tiff(1))
    assert out.shape == (32, 32, 3)
    assert tuple(out[0, 0]) == (0, 90, 120)


# --- decoding big images small -----------------------------------------------------------------


def test_big_jpeg_is_decoded_small_with_dct_scaling(big_jpeg: bytes, real: np.ndarray) -> None:
    out = decode_image(big_jpeg)
    assert out.shape == (1000, 1500, 3)  # 1/2 scale: the largest under 2 MP
    full = np.asarray(Image.open(io.BytesIO(big_jpeg)).convert("RGB"), dtype=np.float32)
    assert full.shape == (2000, 3000, 3)
    # the same picture: compare both at the scaled size
    ref = np.asarray(Image.fromarray(full.astype(np.uint8)).reduce(2), dtype=np.float32)
    assert np.abs(out.astype(np.float32) - ref).mean() < 3.0
    assert verify_image(big_jpeg) == (3000, 2000)


def test_big_png_is_box_reduced_to_at_most_2_megapixels(real: np.ndarray) -> None:
    img = Image.fromarray(real).resize((2400, 1800), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    out = decode_image(buf.getvalue())
    assert out.shape == (900, 1200, 3)
    assert np.array_equal(out, np.asarray(img.reduce(2)))
    # images up to 2 MP come back at full size, pixel for pixel
    assert np.array_equal(decode_image(buf.getvalue(), DecodeLimits(work_pixels=5_000_000)),
                          np.asarray(img))


def test_progressive_jpeg_memory_estimate_counts_the_coefficient_buffer(real: np.ndarray) -> None:
    img = Image.fromarray(real).resize((3000, 3000), Image.Resampling.BILINEAR)
    base, prog = io.BytesIO(), io.BytesIO()
    img.save(base, format="JPEG", quality=80, subsampling=0)
    img.save(prog, format="JPEG", quality=80, subsampling=0, progressive=True)
    frame = jpeg_frame(prog.getvalue())
    assert frame is not None
    assert frame.progressive
    assert frame.coefficient_bytes == 54_000_000
    limits = DecodeLimits(max_decode_bytes=40 * 1024 * 1024)
    assert decode_image(base.getvalue(), limits).shape == (750, 750, 3)
    assert "needs about 75 MB to decode (limit 40 MB)" in _reason(prog.getvalue(), limits)


# --- the decode memory budget ------------------------------------------------------------------


def test_decode_budget_makes_big_decodes_wait_and_lets_small_ones_pass() -> None:
    budget = DecodeBudget(100)
    entered = threading.Event()
    order: list[str] = []

    def second() -> None:
        entered.set()
        with budget.reserve(60):
            order.append("second")

    with budget.reserve(60):
        t = threading.Thread(target=second)
        t.start()
        entered.wait(5)
        deadline = time.monotonic() + 5
        while budget.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert budget.waiting == 1  # 60 + 60 > 100: the second decode waits
        with budget.reserve(30):  # a small one fits beside the first
            order.append("small")
        order.append("first done")
    t.join(5)
    assert order == ["small", "first done", "second"]
    with budget.reserve(10**9):  # larger than the whole budget: clamped, runs alone
        assert budget.used == 100
    assert budget.used == 0


# --- DICOM -------------------------------------------------------------------------------------

PHI = b"PHI-DOE-4471"


def _quiet_capture(caplog: pytest.LogCaptureFixture, data: bytes) -> tuple[str, str]:
    """Decode, returning (reason or "ok", everything logged or warned meanwhile)."""
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            decode_image(data)
            reason = "ok"
        except ImageDecodeError as exc:
            reason = exc.reason
    text = caplog.text + "\n".join(str(w.message) for w in caught)
    return reason, text


def test_dicom_deflate_bomb_is_refused_after_inflating_at_most_the_upload_cap() -> None:
    bomb = h.dicom_deflate_bomb(2_000_000_000)
    assert len(bomb) < 2_500_000
    t0 = time.perf_counter()
    reason = _reason(bomb)
    assert reason == "DICOM deflated data set is too large once decompressed (limit 20 MB)"
    assert time.perf_counter() - t0 < 2.0
    # a real deflated DICOM still reads
    rgb = np.full((24, 40, 3), (150, 90, 60), np.uint8)
    ok = h.dicom(h.image_elements(24, 40), rgb.tobytes(), ts=h.DEFLATED, deflate=True)
    assert np.array_equal(decode_image(ok), rgb)


def test_dicom_jpeg_frame_larger_than_its_header_is_refused(sample_image: Path) -> None:
    jpeg = h.real_jpeg(sample_image)
    lying = h.dicom_jpeg(h.jpeg_with_size(jpeg, 16000, 11000), 8, 8)
    assert _reason(lying) == (
        "corrupt DICOM: the JPEG frame is 16000x11000 pixels but the header says 8x8")
    honest_but_huge = h.dicom_jpeg(h.jpeg_with_size(jpeg, 16000, 11000), 11000, 16000)
    assert _reason(honest_but_huge).startswith("image too large: 16000x11000")
    # the frame itself goes through the bounded decoder: same pixels as the plain JPEG
    good = h.dicom_jpeg(jpeg, 256, 256)
    assert np.array_equal(decode_image(good), decode_image(jpeg))


def test_dicom_jpeg_round_trip_through_write_dicom(real: np.ndarray, tmp_path: Path) -> None:
    p = write_dicom(tmp_path / "a.dcm", real, 50, "male", "torso")
    out = decode_image(p)
    assert out.shape == real.shape
    assert np.abs(out.astype(int) - real).mean() < 2.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("frames-abc", "invalid DICOM header: NumberOfFrames is not a valid number"),
        ("rows-3-bytes", "invalid DICOM header: Rows is not a valid number"),
        ("patient-id-as-US", "ok"),
        ("patient-name-as-US", "ok"),
        ("age-as-US", "ok"),
        ("rle", "DICOM pixel data in RLE Lossless cannot be decoded here (JPEG baseline and "
                "uncompressed are supported)"),
        ("jpeg2000", "DICOM pixel data in JPEG 2000 Image Compression (Lossless Only) cannot be "
                     "decoded here "
                     "(JPEG baseline and uncompressed are supported)"),
        ("short-pixels", "truncated DICOM: the pixel data is incomplete"),
        ("garbage-frame", "corrupt DICOM pixel data: the frame is not a JPEG image"),
        ("rows-65535", "image too large: 65535x65535 (4,294,836,225 pixels, limit 25,000,000)"),
    ],
)
def test_hostile_dicom_is_a_clear_reason_that_never_quotes_a_tag(
        name: str, expected: str, caplog: pytest.LogCaptureFixture) -> None:
    rgb = np.full((32, 32, 3), 120, np.uint8)
    base = h.image_elements(32, 32, patient_id=PHI, patient_name=PHI + b"^JANE")
    files = {
        "frames-abc": h.dicom(h.image_elements(32, 32, patient_id=PHI, frames=b"abc"),
                              rgb.tobytes()),
        "rows-3-bytes": h.dicom(h.replace(base, 0x00280010, b"US", b"\x20\x00\x00"),
                                rgb.tobytes()),
        "patient-id-as-US": h.dicom(h.replace(base, 0x00100020, b"US", PHI + b"X"),
                                    rgb.tobytes()),
        "patient-name-as-US": h.dicom(h.replace(base, 0x00100010, b"US", PHI + b"X"),
                                      rgb.tobytes()),
        "age-as-US": h.dicom(h.replace(base, 0x00101010, b"US", PHI + b"X"), rgb.tobytes()),
        "rle": h.dicom(base, h.encapsulate(PHI * 8), ts=h.RLE),
        "jpeg2000": h.dicom(base, h.encapsulate(PHI * 8), ts=h.JPEG2000),
        "short-pixels": h.dicom(base, rgb.tobytes()[:100]),
        "garbage-frame": h.dicom(base, h.encapsulate(PHI * 8), ts=h.JPEG_BASELINE),
        "rows-65535": h.dicom(h.replace(h.replace(base, 0x00280010, b"US", h.us(65535)),
                                        0x00280011, b"US", h.us(65535)), rgb.tobytes()),
    }
    reason, logged = _quiet_capture(caplog, files[name])
    assert reason == expected
    assert PHI.decode() not in reason
    assert PHI.decode() not in logged


def test_pydicom_loggers_reach_no_handler(caplog: pytest.LogCaptureFixture, tmp_path: Path,
                                          real: np.ndarray) -> None:
    """pydicom's own log records (which may quote tag values) never reach the application."""
    decode_image(write_dicom(tmp_path / "a.dcm", real))  # reading DICOM once sets this up
    caplog.set_level(logging.DEBUG)
    for name in ("pydicom", "pydicom.pixels.utils", "pydicom.pixels.decoders.base"):
        logging.getLogger(name).error("value %s", PHI.decode())
    assert PHI.decode() not in caplog.text


def test_dicom_multiframe_is_refused_not_scored_on_its_first_frame() -> None:
    """Refused like an animated PNG/WebP (was: the first frame decoded, silently; see
    tests/test_dicom_multiframe.py); one frame short is truncated, never read."""
    frames = np.stack([np.full((16, 20, 3), v, np.uint8) for v in (30, 200)])
    native = h.dicom(h.image_elements(16, 20, frames=b"2"), frames.tobytes())
    with pytest.raises(ImageDecodeError, match=r"multi-frame DICOM .* holds 2 frames"):
        decode_image(native)
    short = h.dicom(h.image_elements(16, 20, frames=b"2"), frames[0].tobytes())
    with pytest.raises(ImageDecodeError, match="truncated DICOM"):
        decode_image(short)


def test_decode_cost_tells_heavy_uploads_from_ordinary_ones(sample_image: Path,
                                                            big_jpeg: bytes) -> None:
    from dermsight.io.decode import HEAVY_DECODE_BYTES, decode_cost

    ordinary = sample_image.read_bytes()
    assert 0 < decode_cost(ordinary) < HEAVY_DECODE_BYTES
    assert decode_cost(h.png(4900, 4900, colour=2)) > HEAVY_DECODE_BYTES
    assert 0 < decode_cost(big_jpeg) < HEAVY_DECODE_BYTES  # 6 MP JPEG: decoded at 1/2 scale
    for refused in (h.png_strip(), h.solid_webp(7000), b"not an image", h.tiff_tiled_bomb()):
        assert decode_cost(refused) == 0  # refused from the header: the decode fails fast


def test_bad_limit_in_the_environment_warns_and_keeps_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dermsight.io import budget
    from dermsight.io.budget import env_number

    # recorded when read (serve refuses it: tests/test_ops_errors.py), warned at the first decode
    monkeypatch.setattr(budget, "ENV_ERRORS", {})
    monkeypatch.setenv("DERMSIGHT_MAX_DECODE_MB", "lots")
    assert env_number("DERMSIGHT_MAX_DECODE_MB", 128) == 128
    with pytest.warns(UserWarning, match="DERMSIGHT_MAX_DECODE_MB='lots' is not a positive"):
        budget.decode_budget()
    monkeypatch.setenv("DERMSIGHT_MAX_DECODE_MB", "64")
    assert env_number("DERMSIGHT_MAX_DECODE_MB", 128) == 64
