"""The Python facade takes a Pillow image as it takes the image's file: the same pixels (so the
same answer), EXIF orientation applied, transparency, animation and oversize refused with the
file path's reasons; anything that is not an image input is a ``TypeError`` naming what is
accepted (it was "expected str, bytes or os.PathLike object, not JpegImageFile")."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermsight import Dermsight
from dermsight.io.decode import DecodeLimits, pil_to_rgb
from dermsight.io.errors import ImageDecodeError


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


def _png_bytes(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_a_pillow_image_gets_the_answer_its_file_gets(model: Dermsight,
                                                      sample_image: Path) -> None:
    with Image.open(sample_image) as img:
        from_pil = model.predict(img, age=55, sex="female", site="posterior torso")
    from_file = model.predict(sample_image, age=55, sex="female", site="posterior torso")
    assert from_pil.probabilities == pytest.approx(from_file.probabilities, abs=1e-6)
    assert from_pil.prediction == from_file.prediction
    assert from_pil.risk == from_file.risk
    assert np.array_equal(model.load_image(Image.open(sample_image)),
                          model.load_image(sample_image))


def test_pillow_modes_read_as_their_files_are(model: Dermsight, sample_image: Path) -> None:
    rgb = Image.open(sample_image).convert("RGB")
    with pytest.raises(ImageDecodeError, match="indexed-colour"):  # as its file is
        model.load_image(rgb.convert("P"))
    for mode in ("L", "CMYK"):
        img = rgb.convert(mode)
        data = _png_bytes(img) if mode != "CMYK" else None
        got = model.load_image(img)
        assert got.shape == (*rgb.size[::-1], 3)
        assert got.dtype == np.uint8
        if data is not None:  # a PNG of the same image decodes to the same pixels
            assert np.array_equal(got, model.load_image(data))
    # 16-bit grey: scaled to 8 bits as a 16-bit PNG file is, never wrapped around
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    assert np.array_equal(model.load_image(grey16), model.load_image(_png_bytes(grey16)))


def test_exif_orientation_is_applied_as_for_the_file(model: Dermsight, sample_image: Path,
                                                     tmp_path: Path) -> None:
    img = Image.open(sample_image).convert("RGB").resize((256, 160))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as opened:
        got = model.load_image(opened)
    assert got.shape == (256, 160, 3)  # upright: portrait
    assert np.array_equal(got, model.load_image(path))


def test_transparent_animated_and_oversize_pillow_images_are_refused(
        model: Dermsight, sample_image: Path) -> None:
    rgba = Image.open(sample_image).convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, np.uint8)
    alpha[:, : alpha.shape[1] // 2] = 0  # half cut out
    rgba.putalpha(Image.fromarray(alpha))
    with pytest.raises(ImageDecodeError, match="transparent areas"):
        model.predict(rgba)
    frames = [Image.open(sample_image).convert("RGB"), Image.new("RGB", (256, 256), "white")]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    with Image.open(io.BytesIO(buf.getvalue())) as animated, \
            pytest.raises(ImageDecodeError, match="animated PNG"):
        model.predict(animated)
    with pytest.raises(ImageDecodeError, match="too large"):
        pil_to_rgb(Image.new("RGB", (3000, 3000)), DecodeLimits(max_pixels=1_000_000))


def test_a_truncated_file_opened_lazily_is_an_image_error(model: Dermsight,
                                                          sample_image: Path) -> None:
    data = _png_bytes(Image.open(sample_image))
    with Image.open(io.BytesIO(data[: len(data) // 2])) as cut, \
            pytest.raises(ImageDecodeError, match="corrupt PNG image"):
        model.predict(cut)


@pytest.mark.parametrize("bad", [123, None, [1, 2, 3], {"path": "x.jpg"}, 4.5])
def test_other_inputs_are_a_type_error_naming_what_is_accepted(model: Dermsight,
                                                               bad: object) -> None:
    with pytest.raises(TypeError, match="file path, bytes, .* or a Pillow image, not "
                                        f"{type(bad).__name__}"):
        model.predict(bad)  # type: ignore[arg-type]
