"""A TIFF holding several photos is refused like a multi-frame DICOM, not scored on its first
page (the answer would be for one photo while the user believes the file was assessed); a TIFF
whose other pages are thumbnails or pyramid levels (smaller, or marked reduced-resolution by
NewSubfileType) still gives its first page. Real lesion images from the shared set."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from dermsight import Dermsight
from dermsight.io.decode import MAX_TIFF_PAGES, decode_image
from dermsight.io.errors import ImageDecodeError

REFUSED = "multi-page TIFF files are not accepted (this one holds {n} images)"


def _tiff(pages: list[Image.Image], **kw: object) -> bytes:
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:], **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(data_dir: Path, sample_ids: list[str]) -> list[Image.Image]:
    return [Image.open(data_dir / "images" / f"{i}.jpg").convert("RGB").resize((256, 192))
            for i in sample_ids[:3]]


def test_a_tiff_of_two_or_three_photos_is_refused(photos: list[Image.Image]) -> None:
    for n in (2, 3):
        with pytest.raises(ImageDecodeError, match=REFUSED.format(n=n).replace("(", r"\(")
                           .replace(")", r"\)")):
            decode_image(_tiff(photos[:n]))
    # a second photo of another shape (portrait after landscape) is another image too
    with pytest.raises(ImageDecodeError, match="holds 2 images"):
        decode_image(_tiff([photos[0], photos[1].rotate(90, expand=True)]))


def test_thumbnails_and_reduced_pages_keep_the_first_page(photos: list[Image.Image]) -> None:
    single = decode_image(_tiff(photos[:1]))
    thumb = photos[1].resize((64, 48))  # a small page: a preview, not a second photo
    assert np.array_equal(decode_image(_tiff([photos[0], thumb])), single)
    pyramid = [photos[0], photos[0].resize((128, 96)), photos[0].resize((64, 48))]
    assert np.array_equal(decode_image(_tiff(pyramid)), single)
    # same size, but marked as a reduced-resolution copy (NewSubfileType bit 0)
    marked = _tiff([photos[0], photos[1]], tiffinfo={254: 1})
    assert np.array_equal(decode_image(marked), single)


def test_pages_are_looked_at_up_to_the_cap(photos: list[Image.Image]) -> None:
    """A TIFF of many tiny pages after a full one: only page headers are read, at most the cap."""
    tiny = [photos[0]] + [photos[1].resize((8, 6))] * (MAX_TIFF_PAGES + 20)
    assert decode_image(_tiff(tiny)).shape == (192, 256, 3)


def test_the_facade_and_the_api_refuse_it(photos: list[Image.Image],
                                          client: httpx.Client) -> None:
    data = _tiff(photos[:2])
    with pytest.raises(ImageDecodeError, match="holds 2 images"):
        Dermsight.load(threads=1).predict(data)
    r = client.post("/api/v1/predict", files={"image": ("two.tif", data, "image/tiff")})
    assert r.status_code == 422
    assert r.json()["detail"].startswith(REFUSED.format(n=2))


def test_a_pillow_image_of_a_multi_photo_tiff_is_refused_too(photos: list[Image.Image]) -> None:
    """The facade reads a Pillow image as its file would be read: the same refusal."""
    model = Dermsight.load(threads=1)
    with Image.open(io.BytesIO(_tiff(photos[:2]))) as opened, \
            pytest.raises(ImageDecodeError, match="holds 2 images"):
        model.predict(opened)
    with Image.open(io.BytesIO(_tiff([photos[0], photos[1].resize((64, 48))]))) as thumbed:
        assert np.array_equal(model.load_image(thumbed), decode_image(_tiff(photos[:1])))
