"""The image-quality half of the "cannot assess" gate: each check on images made to fail it, a
real dermoscopic image that passes, and the card's ``gate.quality`` thresholds actually in force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermsight.gate import DEFAULT_GATE, quality_flags, quality_stats, quality_thresholds
from dermsight.io.decode import decode_image


def _codes(image: np.ndarray, cfg: dict[str, object] | None = None) -> set[str]:
    return {f.code for f in quality_flags(quality_stats(image), cfg or {})}


@pytest.fixture(scope="module")
def lesion(data_dir: Path, sample_ids: list[str]) -> np.ndarray:
    return decode_image(data_dir / "images" / f"{sample_ids[0]}.jpg")


def test_a_real_dermoscopic_image_passes(lesion: np.ndarray) -> None:
    assert _codes(lesion) == set()


def test_each_check_fires_on_the_image_made_to_fail_it(lesion: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    assert "too_small" in _codes(lesion[:40, :40])
    assert "blank" in _codes(np.full((200, 200, 3), 128, np.uint8))
    assert "too_dark" in _codes((lesion // 12).astype(np.uint8))
    bright = np.clip(lesion.astype(int) + 200, 0, 255).astype(np.uint8)
    assert "overexposed" in _codes(bright)
    # the message names what is wrong: a half-black frame is clipped, not over-exposed
    black_half = lesion.copy()
    black_half[: int(lesion.shape[0] * 0.6)] = 0
    msgs = {f.code: f.message for f in quality_flags(quality_stats(black_half), DEFAULT_GATE)}
    assert msgs.get("overexposed") == "most of the image is pure black or pure white"
    msgs = {f.code: f.message for f in quality_flags(quality_stats(bright), DEFAULT_GATE)}
    assert msgs["overexposed"] == "image is over-exposed"
    noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert "noise" in _codes(noise)
    from PIL import Image, ImageFilter

    blurred = np.asarray(Image.fromarray(lesion).filter(ImageFilter.GaussianBlur(12)))
    assert "blurred" in _codes(blurred)


def test_the_cards_quality_thresholds_are_the_ones_in_force(lesion: np.ndarray) -> None:
    # what finalize writes: gate.quality = {...}; raising min_side above the image must flag it
    cfg = {"quality": {**DEFAULT_GATE, "min_side": lesion.shape[0] + 1}}
    assert quality_thresholds(cfg)["min_side"] == lesion.shape[0] + 1
    assert "too_small" in _codes(lesion, cfg)
    # older cards kept them at the top level: still honoured; the nested section wins
    assert quality_thresholds({"dark_mean": 99.0})["dark_mean"] == 99.0
    both = {"dark_mean": 99.0, "quality": {"dark_mean": 5.0}}
    assert quality_thresholds(both)["dark_mean"] == 5.0
    assert quality_thresholds({}) == DEFAULT_GATE


def test_editing_the_cards_quality_section_changes_what_the_facade_does(
        lesion: np.ndarray) -> None:
    from dermsight import Dermsight

    model = Dermsight.load()
    assert "too_small" not in {f.code for f in model.predict(lesion, heatmap=False).flags}
    model.card.gate = {**model.card.gate,
                       "quality": {**model.card.gate.get("quality", {}),
                                   "min_side": lesion.shape[0] + 1}}
    result = model.predict(lesion, heatmap=False)
    assert "too_small" in {f.code for f in result.flags}
    assert result.risk == "cannot_assess"


def _black_and_white_jpeg(path: Path) -> bytes:
    """The file as a black-and-white camera or an export 'in grey' would send it."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(path).convert("L").save(buf, "JPEG", quality=75)
    return buf.getvalue()


def test_black_and_white_copies_are_refused_and_their_colour_originals_are_not(
        data_dir: Path, sample_ids: list[str]) -> None:
    from dermsight import Dermsight

    model = Dermsight.load()
    paths = [data_dir / "images" / f"{i}.jpg" for i in sample_ids]
    originals = model.predict_batch(paths)
    greys = model.predict_batch([_black_and_white_jpeg(p) for p in paths])
    for path, colour, grey in zip(paths, originals, greys, strict=True):
        assert "greyscale" not in {f.code for f in colour.flags}, path.name
        flag = next(f for f in grey.flags if f.code == "greyscale")
        assert flag.blocking
        assert "black and white" in flag.message
        assert grey.risk == "cannot_assess"
        assert not grey.assessable
    # a small coloured mark (a pen dot, a label) in a black-and-white picture leaves it that
    grey = decode_image(_black_and_white_jpeg(paths[0])).copy()
    grey[:5, :5] = (255, 0, 0)
    assert "greyscale" in _codes(grey)
    assert quality_stats(grey).coloured < DEFAULT_GATE["min_coloured"]
    # 0 turns the check off, as the card's other quality thresholds do
    assert "greyscale" not in _codes(grey, {"quality": {"min_coloured": 0.0}})


def test_a_monochrome_dicom_is_refused_as_black_and_white(
        data_dir: Path, sample_ids: list[str]) -> None:
    # the DICOM reader repeats a MONOCHROME2 frame to three channels; the gate then refuses it
    from PIL import Image

    import hostile_inputs as h
    from dermsight import Dermsight

    grey = np.asarray(Image.open(data_dir / "images" / f"{sample_ids[0]}.jpg").convert("L"))
    rows, cols = grey.shape
    dcm = h.dicom(h.image_elements(rows, cols, spp=1, photometric=b"MONOCHROME2"),
                  grey.tobytes())
    result = Dermsight.load().predict(dcm, heatmap=False)
    assert "greyscale" in {f.code for f in result.flags}
    assert result.risk == "cannot_assess"


def test_no_dermoscopic_image_of_either_data_folder_is_called_black_and_white(
        data_dir: Path) -> None:
    # every 20th image of both folders (the full sweep over all 13,592 is in the experiment log)
    folders = [data_dir, data_dir.parent / "isic2020-sample"]
    paths = [p for d in folders for p in sorted((d / "images").iterdir())[::20]]
    assert len(paths) > 600
    coloured = [quality_stats(decode_image(p)).coloured for p in paths]
    assert min(coloured) > 2 * DEFAULT_GATE["min_coloured"]
