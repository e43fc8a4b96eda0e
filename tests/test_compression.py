"""The ``compressed`` note: what an upload's file header says about its compression, and the
non-blocking flag the facade adds for uploads compressed more than the training images were."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermsight import Dermsight
from dermsight.bundle import Card
from dermsight.compression import Compression, compression_flags, inspect, jpeg_quality
from dermsight.gate import DEFAULT_GATE


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load()


@pytest.fixture(scope="module")
def stored(sample_image: Path) -> bytes:
    return sample_image.read_bytes()


def _resaved(data: bytes, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    with Image.open(io.BytesIO(data)) as im:
        im.convert("RGB").save(buf, format=fmt, **kw)
    return buf.getvalue()


def _codes(model: Dermsight, data: bytes | np.ndarray) -> list[str]:
    return [f.code for f in model.predict(data, age=50, sex="male", heatmap=False).flags]


def test_the_jpeg_quality_pillow_saved_with_is_read_back(stored: bytes) -> None:
    # a rounding slip in the IJG scale formula would put some qualities one off
    wrong = {q: got for q in range(1, 101)
             if (got := inspect(_resaved(stored, "JPEG", quality=q)).quality) != q}  # type: ignore[union-attr]
    assert wrong == {}


def test_the_shared_images_are_jpeg_quality_90_and_get_no_note(
        model: Dermsight, stored: bytes) -> None:
    assert inspect(stored) == Compression("JPEG", lossy=True, quality=90)
    assert "compressed" not in _codes(model, stored)


def test_uploads_compressed_more_than_the_card_allows_are_flagged_not_blocked(
        model: Dermsight, stored: bytes) -> None:
    assert model.card.gate["quality"]["flag_jpeg_quality"] == 85  # the shipped card's limit
    q60 = model.predict(_resaved(stored, "JPEG", quality=60), heatmap=False)
    note = [f for f in q60.flags if f.code == "compressed"]
    assert len(note) == 1
    assert not note[0].blocking
    assert "quality about 60" in note[0].message
    assert "85 or lower" in note[0].message
    # what was measured there (README, "JPEG 85 and 80"): shifted probabilities and a slightly
    # worse pooled malignant ranking, not a general loss of accuracy
    assert "shifted probabilities" in note[0].message
    assert "less accurately" not in note[0].message
    assert q60.assessable
    assert q60.risk != "cannot_assess"
    assert "compressed" in _codes(model, _resaved(stored, "JPEG", quality=85))
    assert "compressed" not in _codes(model, _resaved(stored, "JPEG", quality=86))
    webp = model.predict(_resaved(stored, "WEBP", quality=95), heatmap=False)
    assert [f.code for f in webp.flags if f.code == "compressed"] == ["compressed"]
    assert "lossy WebP" in next(f.message for f in webp.flags if f.code == "compressed")
    for lossless in (_resaved(stored, "WEBP", lossless=True), _resaved(stored, "PNG")):
        assert "compressed" not in _codes(model, lossless)
    # an array has no file: nothing is known about its compression, so nothing is said
    pixels = np.asarray(Image.open(io.BytesIO(_resaved(stored, "JPEG", quality=20))))
    assert "compressed" not in _codes(model, pixels)


def test_a_file_path_is_inspected_like_its_bytes(
        model: Dermsight, stored: bytes, tmp_path: Path) -> None:
    path = tmp_path / "upload.jpg"
    path.write_bytes(_resaved(stored, "JPEG", quality=40))
    assert "compressed" in _codes(model, path)  # type: ignore[arg-type]
    decoded = model.decode(path)
    assert decoded.compression == Compression("JPEG", lossy=True, quality=40)
    assert decoded.rgb.shape[2] == 3


def test_the_cards_limits_are_the_ones_in_force(stored: bytes) -> None:
    q88 = inspect(_resaved(stored, "JPEG", quality=88))
    webp = inspect(_resaved(stored, "WEBP", quality=50))
    assert compression_flags(q88, {}) == []  # defaults: JPEG at or below 85
    assert [f.code for f in compression_flags(q88, {"quality": {"flag_jpeg_quality": 88}})] \
        == ["compressed"]
    off = {"quality": {"flag_jpeg_quality": 0, "flag_lossy_webp": 0}}
    assert compression_flags(inspect(_resaved(stored, "JPEG", quality=10)), off) == []
    assert compression_flags(webp, off) == []
    assert [f.code for f in compression_flags(webp, {})] == ["compressed"]
    assert DEFAULT_GATE["flag_jpeg_quality"] == 85.0
    assert DEFAULT_GATE["flag_lossy_webp"] == 1.0


def test_the_card_schema_takes_the_limits_and_refuses_a_wrong_type(model: Dermsight) -> None:
    raw = copy.deepcopy(model.card.to_dict())
    assert Card.from_dict(raw).gate["quality"]["flag_lossy_webp"] == 1.0
    raw["gate"]["quality"]["flag_jpeg_quality"] = "high"
    with pytest.raises(Exception, match="flag_jpeg_quality"):
        Card.from_dict(raw)


def test_a_lossy_webp_with_alpha_is_read_behind_its_extended_header(stored: bytes) -> None:
    rgba = Image.open(io.BytesIO(stored)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))  # an alpha that must be kept
    for kw, lossy in (({"quality": 80}, True), ({"lossless": True}, False)):
        buf = io.BytesIO()
        rgba.save(buf, format="WEBP", **kw)
        data = buf.getvalue()
        if lossy:  # alpha: the extended layout (VP8X, ALPH, then the VP8 image chunk)
            assert data[12:16] == b"VP8X"
        assert inspect(data) == Compression("WebP", lossy=lossy)


@pytest.mark.parametrize("data", [
    b"", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0" + b"\x00" * 40, b"RIFF\x00\x00\x00\x00WEBP",
    b"RIFF\x10\x00\x00\x00WEBPJUNK\xff\xff\xff\xff", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30,
    b"GIF89a" + b"\x00" * 30,
])
def test_broken_or_other_headers_say_nothing_and_never_raise(data: bytes) -> None:
    assert inspect(data) is None


def test_a_table_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="64 values"):
        jpeg_quality([1] * 10)


def test_a_dicom_files_jpeg_frame_is_inspected_and_uncompressed_pixels_say_nothing(
        model: Dermsight, stored: bytes, tmp_path: Path) -> None:
    from dermsight.io import dicom

    rgb = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB"))
    low = dicom.write_dicom(tmp_path / "low.dcm", rgb, age=60, sex="female", quality=50)
    decoded = model.decode(low)
    assert decoded.compression == Compression("DICOM JPEG", lossy=True, quality=50)
    assert decoded.meta.age == 60  # the tags still fill the metadata
    note = [f for f in model.predict(low, heatmap=False).flags if f.code == "compressed"]
    assert len(note) == 1
    assert not note[0].blocking
    assert "DICOM JPEG quality about 50" in note[0].message
    high = dicom.write_dicom(tmp_path / "high.dcm", rgb, quality=95)
    assert model.decode(high).compression == Compression("DICOM JPEG", lossy=True, quality=95)
    assert "compressed" not in _codes(model, high.read_bytes())
    bare = dicom.write_dicom(tmp_path / "bare.dcm", rgb, jpeg=False)
    assert model.decode(bare).compression is None
    assert "compressed" not in _codes(model, bare.read_bytes())


def test_a_survey_counts_files_by_compression_and_the_note_applies_only_to_jpeg_90_training(
        data_dir: Path, stored: bytes, tmp_path: Path) -> None:
    from dermsight.compression import note_limits, survey

    shared = sorted((data_dir / "images").glob("*.jpg"))[:40]
    assert survey(shared) == {"JPEG 90": 40}
    (tmp_path / "a.jpg").write_bytes(_resaved(stored, "JPEG", quality=75))
    (tmp_path / "b.webp").write_bytes(_resaved(stored, "WEBP", quality=80))
    (tmp_path / "c.png").write_bytes(_resaved(stored, "PNG"))
    mixed = survey([*shared[:2], *sorted(tmp_path.iterdir())])
    assert mixed == {"JPEG 90": 2, "JPEG 75": 1, "lossy WebP": 1, "not JPEG or WebP": 1}
    measured = dict(DEFAULT_GATE)
    assert note_limits({"JPEG 90": 40}, measured) == measured
    assert note_limits({"JPEG 95": 3, "JPEG 90": 40}, measured) == measured
    # a cohort saved at 75, or with any PNG or WebP, or nothing read: the note is off
    for files in ({"JPEG 75": 40}, {"JPEG 90": 39, "not JPEG or WebP": 1}, {"lossy WebP": 2}, {}):
        off = note_limits(files, measured)
        assert off["flag_jpeg_quality"] == 0
        assert off["flag_lossy_webp"] == 0
        assert off["min_std"] == measured["min_std"]  # the other quality checks are untouched
        assert compression_flags(inspect(_resaved(stored, "JPEG", quality=20)),
                                 {"quality": off}) == []


def test_the_shipped_card_says_what_its_training_files_were(
        model: Dermsight, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from dermsight.compression import note_limits, survey
    from dermsight.train.config import load_config
    from dermsight.train.table import load_table

    repo = Path(__file__).resolve().parents[1]
    card = model.card.to_dict()
    split = pd.read_csv(repo / "configs" / "default-split.csv")
    monkeypatch.chdir(repo)  # the config's data roots are relative to the repository
    table = load_table(load_config(repo / "configs" / "default.yaml").data)
    train = split.loc[split["split"] == "train", ["image_id"]].merge(
        table[["image_id", "path"]], on="image_id", how="left", validate="one_to_one")
    files = survey(train["path"])
    assert card["data"]["train_compression"] == files == {"JPEG 90": 9344}
    assert note_limits(files, card["gate"]["quality"]) == card["gate"]["quality"]
    assert any("(JPEG 90: 9,344)" in line and "85 or lower" in line
               for line in card["limitations"])
