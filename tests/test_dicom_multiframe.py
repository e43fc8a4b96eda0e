"""Multi-frame DICOM is refused like an animated PNG/WebP, never scored on its first frame alone.

Scoring frame 1 of N silently would tell the clinician (API / UI), the ``dermsight predict`` user
and the batch user that *the file* was assessed; the frames of such a file can be other views or
other lesions. The files here are real ISIC images written as DICOM with pydicom: JPEG baseline
with 2 and 3 frames (declared in NumberOfFrames or only present in the pixel data), uncompressed
with 2 frames, complete or truncated; and the same files inside a TFRecord shard.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate

from cli_support import run
from dermsight.batch.local import run_local
from dermsight.batch.store import read_output
from dermsight.io import iter_records
from dermsight.io.decode import decode_image
from dermsight.io.dicom import read_dicom, read_dicom_dataset, write_dicom
from dermsight.io.errors import ImageDecodeError
from dermsight.io.tfrecord import iter_tfrecord, load_tfrecord_image, write_tfrecord
from dermsight.predict import Dermsight

SIZE = (96, 72)  # small: the readers, not the network, are under test


@pytest.fixture(scope="module")
def frames(data_dir: Path, sample_ids: list[str]) -> list[np.ndarray]:
    """Three different real ISIC images of one size: the frames of a multi-frame file."""
    out = []
    for image_id in sample_ids[:3]:
        full = decode_image(data_dir / "images" / f"{image_id}.jpg")
        out.append(np.asarray(Image.fromarray(full).resize(SIZE)))
    return out


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, subsampling=1)
    return buf.getvalue()


def _save(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def jpeg_dicom(path: Path, images: list[np.ndarray], *, declared: int | None = None,
               bot: bool = True) -> Path:
    """A JPEG-baseline DICOM (tags as SIIM-ISIC writes them) whose pixel data encapsulates
    ``images``, one JPEG per frame; NumberOfFrames is ``declared`` (0: tag left out)."""
    write_dicom(path, images[0], age=55, sex="female", site="torso")
    ds = pydicom.dcmread(path)
    declared = len(images) if declared is None else declared
    if declared:
        ds.NumberOfFrames = declared
    ds.PixelData = encapsulate([_jpeg(im) for im in images], has_bot=bot)
    ds["PixelData"].VR = "OB"
    return _save(ds, path)


def native_dicom(path: Path, images: list[np.ndarray], *, keep: float = 1.0) -> Path:
    """An uncompressed RGB DICOM holding ``images`` as its frames; only the first ``keep``
    share of the pixel data is written (a truncated file)."""
    write_dicom(path, images[0], age=55, sex="female", site="torso", jpeg=False)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = len(images)
    data = np.stack(images).tobytes()
    cut = int(len(data) * keep)
    ds.PixelData = data[: cut + cut % 2]  # even length, as DICOM stores it
    return _save(ds, path)


def _refused(path: Path, frames_held: int) -> None:
    """Every reader refuses the file with the multi-frame reason (nothing decoded)."""
    reason = f"multi-frame DICOM files are not accepted (this one holds {frames_held} frames)"
    data = path.read_bytes()
    for decode in (lambda: read_dicom_dataset(data), lambda: decode_image(data)):
        with pytest.raises(ImageDecodeError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            decode()
    for lazy in (False, True):  # a listing (header only) already says so
        rec = read_dicom(path, decode=not lazy)
        assert rec.image is None
        assert rec.error is not None
        assert reason in rec.error
        assert "send each frame as its own still image" in rec.error


@pytest.mark.parametrize("n", [2, 3])
def test_multi_frame_jpeg_dicom_is_refused(frames: list[np.ndarray], tmp_path: Path,
                                           n: int) -> None:
    _refused(jpeg_dicom(tmp_path / f"jpeg{n}.dcm", frames[:n]), n)


def test_multi_frame_uncompressed_dicom_is_refused(frames: list[np.ndarray],
                                                   tmp_path: Path) -> None:
    _refused(native_dicom(tmp_path / "native2.dcm", frames[:2]), 2)


def test_multi_frame_uncompressed_dicom_short_of_its_frames_is_truncated(
        frames: list[np.ndarray], tmp_path: Path) -> None:
    """1.5 frames of pixel data for 2 declared: refused as truncated, never read (the first
    frame alone is complete, and was decoded before)."""
    path = native_dicom(tmp_path / "short.dcm", frames[:2], keep=0.75)
    with pytest.raises(ImageDecodeError, match="truncated DICOM: the pixel data is incomplete"):
        read_dicom_dataset(path.read_bytes())
    rec = read_dicom(path)
    assert rec.image is None
    assert rec.error == "short.dcm: truncated DICOM: the pixel data is incomplete"


@pytest.mark.parametrize("bot", [True, False])
@pytest.mark.parametrize("declared", [0, 1])
def test_jpeg_images_beyond_the_declared_frame_count_are_refused(
        frames: list[np.ndarray], tmp_path: Path, declared: int, bot: bool) -> None:
    """NumberOfFrames absent or 1 but two JPEG images encapsulated (with a basic offset table,
    or without one: pydicom then joins them into one frame, and the decoder stopped at the
    first image's end)."""
    path = jpeg_dicom(tmp_path / "undeclared.dcm", frames[:2], declared=declared, bot=bot)
    with pytest.raises(ImageDecodeError, match=r"multi-frame DICOM .* holds 2 frames"):
        read_dicom_dataset(path.read_bytes())


def test_single_frame_dicoms_are_still_read(frames: list[np.ndarray], tmp_path: Path) -> None:
    """NumberOfFrames 1 written out, and one JPEG split over several fragments: one image."""
    plain = write_dicom(tmp_path / "plain.dcm", frames[0], age=55, sex="female", site="torso")
    expected = read_dicom_dataset(plain.read_bytes()).image
    assert expected is not None
    one = jpeg_dicom(tmp_path / "one.dcm", frames[:1], declared=1)
    ds = pydicom.dcmread(plain)
    ds.PixelData = encapsulate([_jpeg(frames[0])], fragments_per_frame=3, has_bot=True)
    ds["PixelData"].VR = "OB"
    split = _save(ds, tmp_path / "split.dcm")
    native = native_dicom(tmp_path / "native1.dcm", frames[:1])
    for path in (one, split):
        image = read_dicom_dataset(path.read_bytes()).image
        assert image is not None
        assert np.array_equal(image, expected)
    rec = read_dicom(native)
    assert rec.error is None
    assert rec.image is not None
    assert np.array_equal(rec.image, frames[0])


def test_multi_frame_dicom_in_a_tfrecord_is_an_error_record(frames: list[np.ndarray],
                                                            tmp_path: Path) -> None:
    multi = jpeg_dicom(tmp_path / "multi.dcm", frames[:3]).read_bytes()
    native = native_dicom(tmp_path / "native.dcm", frames[:2]).read_bytes()
    single = write_dicom(tmp_path / "single.dcm", frames[0]).read_bytes()
    shard = write_tfrecord(tmp_path / "train00-3.tfrec", [
        {"image": multi, "image_name": "MULTI"},
        {"image": native, "image_name": "NATIVE"},
        {"image": single, "image_name": "SINGLE"},
    ])
    got = {r.id: r for r in iter_tfrecord(shard)}
    for rid, n in (("MULTI", 3), ("NATIVE", 2)):
        assert got[rid].image is None
        assert got[rid].error is not None
        assert f"multi-frame DICOM files are not accepted (this one holds {n} frames)" \
            in got[rid].error
    assert got["SINGLE"].error is None
    assert got["SINGLE"].image is not None
    lazy = {r.id: r for r in iter_records(shard, decode=False)}
    path = lazy["MULTI"].path
    assert path is not None
    with pytest.raises(ImageDecodeError, match="multi-frame DICOM"):
        load_tfrecord_image(path)


def test_facade_and_cli_refuse_a_multi_frame_dicom(frames: list[np.ndarray], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = jpeg_dicom(tmp_path / "multi.dcm", frames[:2])
    model = Dermsight.load(threads=1)
    with pytest.raises(ImageDecodeError, match="multi-frame DICOM"):
        model.predict(path, heatmap=False)
    still = tmp_path / "still.jpg"
    still.write_bytes(_jpeg(frames[0]))
    code, out, err = run(capsys, "predict", str(path), str(still), "--json")
    assert code == 1, err  # one of two files refused: its error said, the other scored
    results = json.loads(out)
    assert "multi-frame DICOM files are not accepted (this one holds 2 frames)" \
        in results[0]["error"]
    assert "probabilities" in results[1]
    assert "Traceback" not in err
    assert f"error: {path}" in err


def test_api_refuses_a_multi_frame_dicom_with_422(client: httpx.Client,
                                                  frames: list[np.ndarray],
                                                  tmp_path: Path) -> None:
    path = native_dicom(tmp_path / "native2.dcm", frames[:2])
    r = client.post("/api/v1/predict", params={"heatmap": "false"},
                    files={"image": ("lesion.dcm", path.read_bytes(), "application/dicom")})
    assert r.status_code == 422, r.text
    assert "multi-frame DICOM files are not accepted (this one holds 2 frames)" \
        in r.json()["detail"]


def test_batch_gives_a_multi_frame_dicom_an_error_row(frames: list[np.ndarray],
                                                      tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    jpeg_dicom(src / "multi.dcm", frames[:3])
    write_dicom(src / "single.dcm", frames[1], age=40, sex="male", site="back")
    run_local(src, tmp_path / "out", progress=False)
    got = read_output(tmp_path / "out").set_index("id")
    assert got.loc["single", "error"] is None
    assert got.loc["single", "prediction"] is not None
    error = got.loc["multi", "error"]
    assert error is not None
    assert "multi-frame DICOM files are not accepted (this one holds 3 frames)" in error
    assert got.loc["multi", "prediction"] is None
