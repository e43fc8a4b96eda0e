"""Indexed-colour (palette, mode P/PA) images are refused with a one-line reason that says what
to send, through the one decoder: decoder, fast check, facade (files, bytes and Pillow images),
HTTP API (422), CLI predict (an error line, like a GIF) and a batch folder (an error row).
Measured (200 ISIC images, shipped model): a dithered 256-colour copy moved the risk tier of 48 %
of them (74 low -> high), a plain 256-colour one of 16 %, a JPEG q90 copy none. A palette of greys
only is a greyscale image and is read as before. Every file is made from a real image."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cli_support import run
from dermsight.batch.store import read_output
from dermsight.io.decode import decode_image, pil_to_rgb, verify_image
from dermsight.io.errors import ImageDecodeError
from dermsight.predict import Dermsight

#: the auditor's repros: low risk as photos, high as dithered palette PNGs
NEVUS = "ISIC_0013053"
DERMATOFIBROMA = "ISIC_0024845"
REASON = "indexed-colour (palette)"
SEND = "send the original full-colour photo as JPEG or PNG"


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def photo(data_dir: Path, image_id: str) -> Image.Image:
    return Image.open(data_dir / "images" / f"{image_id}.jpg").convert("RGB")


#: name -> a palette copy of a real photo
PALETTES: dict[str, Callable[[Image.Image], bytes]] = {
    "dithered PNG": lambda p: encode(p.convert("P")),  # Pillow's default: web palette, dithered
    "256-colour PNG": lambda p: encode(p.quantize(256)),  # adaptive palette, no dithering
    "BMP": lambda p: encode(p.convert("P"), "BMP"),
    "TIFF": lambda p: encode(p.convert("P"), "TIFF"),
}


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.mark.parametrize("name", list(PALETTES))
def test_palette_copies_are_refused_by_the_decoder(data_dir: Path, name: str) -> None:
    img = photo(data_dir, NEVUS)
    data = PALETTES[name](img)
    assert Image.open(io.BytesIO(data)).mode == "P"
    for read in (decode_image, verify_image):
        with pytest.raises(ImageDecodeError, match=r"indexed-colour \(palette\)") as err:
            read(data)
        assert SEND in err.value.reason
        assert "\n" not in err.value.reason
    assert decode_image(encode(img)).shape == (*img.size[::-1], 3)  # the photo as PNG: read


def test_a_pillow_palette_image_is_refused_like_its_file(data_dir: Path) -> None:
    pal = photo(data_dir, NEVUS).convert("P")
    for img in (pal, pal.convert("PA")):
        with pytest.raises(ImageDecodeError, match=re.escape(f"{REASON} image: its colours")):
            pil_to_rgb(img)


def test_grey_palettes_greyscale_and_transparency_keep_their_answers(data_dir: Path) -> None:
    grey = photo(data_dir, NEVUS).convert("L")
    grey_palette = encode(grey.convert("P"))  # a greyscale image stored with a palette of greys
    assert Image.open(io.BytesIO(grey_palette)).mode == "P"
    assert (decode_image(grey_palette) == decode_image(encode(grey))).all()
    # a palette PNG with a transparent colour over an area: still named for its transparency
    pal = photo(data_dir, NEVUS).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    commonest = max(pal.getcolors() or [], key=lambda c: c[0])[1]
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=commonest)
    with pytest.raises(ImageDecodeError, match="transparent areas"):
        decode_image(buf.getvalue())


@pytest.mark.parametrize("image_id", [NEVUS, DERMATOFIBROMA])
def test_facade_refuses_the_palette_copy_that_turned_low_risk_high(
        model: Dermsight, data_dir: Path, tmp_path: Path, image_id: str) -> None:
    original = model.predict(data_dir / "images" / f"{image_id}.jpg", heatmap=False)
    assert original.risk == "low"
    path = tmp_path / "x.png"
    photo(data_dir, image_id).convert("P").save(path)
    with pytest.raises(ImageDecodeError, match=re.escape(REASON)):
        model.predict(path, heatmap=False)
    with pytest.raises(ImageDecodeError, match=re.escape(REASON)):
        model.predict(path.read_bytes(), heatmap=False)


def test_api_answers_422_with_the_reason(data_dir: Path, client: httpx.Client) -> None:
    data = encode(photo(data_dir, NEVUS).convert("P"))
    r = client.post("/api/v1/predict", params={"heatmap": "false"},
                    files={"image": ("x.png", data, "image/png")})
    assert r.status_code == 422, r.text[:300]
    detail = r.json()["detail"]
    assert REASON in detail
    assert SEND in detail
    ok = client.post("/api/v1/predict", params={"heatmap": "false"},
                     files={"image": ("x.png", encode(photo(data_dir, NEVUS)), "image/png")})
    assert ok.status_code == 200, ok.text[:300]


def test_cli_predict_prints_one_error_line_like_a_gif(
        capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path) -> None:
    good = data_dir / "images" / f"{NEVUS}.jpg"
    pal = tmp_path / "x.png"
    photo(data_dir, NEVUS).convert("P").save(pal)
    gif = tmp_path / "x.gif"
    photo(data_dir, NEVUS).save(gif)
    code, out, err = run(capsys, "predict", str(good), str(pal), str(gif), "--json")
    assert code == 1  # as for a GIF: the bad inputs are errors, the good one is printed
    results = json.loads(out)
    assert "probabilities" in results[0]
    assert REASON in results[1]["error"]
    assert SEND in results[1]["error"]
    assert "GIF" in results[2]["error"]
    lines = [line for line in err.splitlines() if str(pal) in line]
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {pal}: an indexed-colour (palette)")
    assert "Traceback" not in err


def test_batch_folder_gives_the_palette_image_an_error_row(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(data_dir / "images" / f"{NEVUS}.jpg", folder / f"{NEVUS}.jpg")
    (folder / "dithered.png").write_bytes(encode(photo(data_dir, DERMATOFIBROMA).convert("P")))
    (folder / "grey.png").write_bytes(encode(photo(data_dir, DERMATOFIBROMA).convert("L")))
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(folder), "--out", str(out), "--quiet",
                       "--workers", "1")
    assert code == 1  # some inputs failed, the job completed
    assert "Traceback" not in err
    df = read_output(out).set_index("id")
    assert sorted(df.index) == sorted([NEVUS, "dithered", "grey"])
    assert REASON in str(df.loc["dithered", "error"])
    assert df.loc[[NEVUS, "grey"], "error"].isna().all()  # greyscale is not refused here
