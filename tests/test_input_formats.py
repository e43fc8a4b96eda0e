"""Image formats the model was never measured on, and transparency: each is refused with a reason
that names the format and says what to send instead (decoder, facade, HTTP API and a batch
folder), and never silently blended, decoded or skipped. Every file is made from a real image."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from dermsight.batch.store import read_output
from dermsight.cli import main as cli_main
from dermsight.io.decode import decode_image, sniff, verify_image
from dermsight.io.errors import ImageDecodeError
from dermsight.predict import Dermsight

ACCEPTED = "send a JPEG, PNG, WebP, BMP or TIFF photo, or a DICOM file"


@pytest.fixture(scope="module")
def photo(sample_image: Path) -> Image.Image:
    img = Image.open(sample_image).convert("RGB")
    img.thumbnail((256, 256))
    return img


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=2)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def heic(photo: Image.Image) -> bytes:
    """An iPhone-style HEIC header (Pillow cannot write HEIC; sniffing needs only the ``ftyp``
    box): major brand mif1, compatible brands mif1/miaf/heic, then a real image's bytes."""
    ftyp = b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1miafheic"
    return ftyp + encode(photo, "JPEG")[2:]


#: name -> (builder from the real photo, words the reason must hold)
REFUSED: dict[str, tuple[Callable[[Image.Image], bytes], tuple[str, ...]]] = {
    "heic": (heic, ("HEIC", "export it as JPEG", "Settings > Camera > Formats > Most Compatible")),
    "avif": (lambda p: encode(p, "AVIF"), ("AVIF", "convert it to JPEG or PNG")),
    "jp2": (lambda p: encode(p, "JPEG2000"), ("JPEG 2000", "convert it")),
    "j2k": (lambda p: encode(p, "JPEG2000", no_jp2=True), ("JPEG 2000",)),
    "ppm": (lambda p: encode(p, "PPM"), ("PPM/PGM",)),
    "pgm": (lambda p: encode(p.convert("L"), "PPM"), ("PPM/PGM",)),
    "ico": (lambda p: encode(p, "ICO"), ("ICO", "original photo")),
    "tga": (lambda p: encode(p, "TGA"), ("TGA",)),
    "gif": (lambda p: encode(p, "GIF"), ("GIF",)),
}


# --- refused formats ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_format_names_itself_and_what_to_send(photo: Image.Image, model: Dermsight,
                                                      name: str) -> None:
    build, words = REFUSED[name]
    data = build(photo)
    assert sniff(data) is not None
    for call in (decode_image, verify_image, model.predict):
        with pytest.raises(ImageDecodeError) as err:
            call(data)
        reason = err.value.reason
        assert ACCEPTED in reason, reason
        assert "unrecognised" not in reason
        for w in words:
            assert w in reason, (w, reason)


def test_avif_is_refused_although_pillow_could_decode_it(photo: Image.Image) -> None:
    data = encode(photo, "AVIF")
    assert Image.open(io.BytesIO(data)).size == photo.size  # decodable, yet never measured
    with pytest.raises(ImageDecodeError, match="AVIF files are not accepted"):
        decode_image(data)


def test_look_alikes_are_not_misnamed() -> None:
    """Text or junk that shares a first byte or two with a refused format stays 'not an image'."""
    for data in (b"P5 is the plan for today\n", b"\x00\x00\x01\x00" + b"\xff" * 40,
                 b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 40):
        with pytest.raises(ImageDecodeError, match="not an image"):
            decode_image(data)


@pytest.mark.parametrize("name", ["heic", "avif", "jp2", "tga"])
def test_api_refuses_with_415_and_the_reason(photo: Image.Image, client: httpx.Client,
                                             name: str) -> None:
    build, words = REFUSED[name]
    r = client.post("/api/v1/predict", params={"heatmap": "false"},
                    files={"image": (f"x.{name}", build(photo), "application/octet-stream")})
    assert r.status_code == 415, r.text[:300]
    detail = r.json()["detail"]
    assert ACCEPTED in detail
    for w in words:
        assert w in detail, (w, detail)


# --- transparency ---------------------------------------------------------------------------


def _rgba(photo: Image.Image, alpha: np.ndarray) -> Image.Image:
    rgba = np.dstack([np.asarray(photo), alpha.astype(np.uint8)])
    return Image.fromarray(rgba, mode="RGBA")


def half_transparent(photo: Image.Image, fmt: str = "PNG") -> bytes:
    alpha = np.full(photo.size[::-1], 128)
    return encode(_rgba(photo, alpha), fmt, **({"lossless": True} if fmt == "WEBP" else {}))


def palette_with_transparent_colour(photo: Image.Image) -> bytes:
    pal = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    commonest = int(np.bincount(np.asarray(pal).ravel()).argmax())  # several % of the pixels
    return encode(pal, "PNG", transparency=commonest)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_half_transparent_image_is_refused(photo: Image.Image, fmt: str) -> None:
    data = half_transparent(photo, fmt)
    for call in (decode_image, verify_image):
        with pytest.raises(ImageDecodeError, match="transparent areas") as err:
            call(data)
        assert "100% of its pixels" in err.value.reason
        assert "original photo" in err.value.reason


def test_palette_png_with_a_transparent_colour_is_refused(photo: Image.Image,
                                                          model: Dermsight) -> None:
    data = palette_with_transparent_colour(photo)
    with pytest.raises(ImageDecodeError, match="transparent areas"):
        decode_image(data)
    with pytest.raises(ImageDecodeError, match="transparent areas"):
        model.predict(data)


def test_opaque_alpha_and_stray_transparent_pixels_still_decode(photo: Image.Image) -> None:
    rgb = decode_image(encode(photo, "PNG"))
    h, w = rgb.shape[:2]
    opaque = decode_image(encode(_rgba(photo, np.full((h, w), 255)), "PNG"))
    assert np.array_equal(opaque, rgb)
    alpha = np.full((h, w), 255)
    alpha[0, : w // 2] = 0  # one half row: well under 1 % of the pixels
    stray = decode_image(encode(_rgba(photo, alpha), "PNG"))
    assert np.array_equal(stray[1:], rgb[1:])
    assert tuple(stray[0, 0]) == (255, 255, 255)  # composited onto white


def test_real_dermoscopic_images_still_pass(data_dir: Path, sample_ids: list[str],
                                            model: Dermsight) -> None:
    for image_id in sample_ids[:4]:
        path = data_dir / "images" / f"{image_id}.jpg"
        assert decode_image(path).ndim == 3
        png = encode(Image.open(path).convert("RGBA"), "PNG")  # an opaque alpha channel
        pred = model.predict(png, heatmap=False)
        assert pred.prediction in model.classes


def test_api_refuses_transparency_with_422(photo: Image.Image, client: httpx.Client) -> None:
    r = client.post("/api/v1/predict", params={"heatmap": "false"},
                    files={"image": ("x.png", half_transparent(photo), "image/png")})
    assert r.status_code == 422, r.text[:300]
    assert "transparent areas" in r.json()["detail"]


# --- a batch folder -------------------------------------------------------------------------


def test_batch_folder_gives_refused_formats_error_rows(
        photo: Image.Image, data_dir: Path, sample_ids: list[str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sample_ids[:3]
    for i in good:
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    refused = {"anim.gif": "GIF", "iphone.HEIC": "HEIC", "camera.avif": "AVIF",
               "cutout.png": "transparent areas"}
    (folder / "anim.gif").write_bytes(REFUSED["gif"][0](photo))
    (folder / "iphone.HEIC").write_bytes(heic(photo))
    (folder / "camera.avif").write_bytes(REFUSED["avif"][0](photo))
    (folder / "cutout.png").write_bytes(half_transparent(photo))
    (folder / "notes.txt").write_text("not an image, not a row\n")
    (folder / ".hidden.gif").write_bytes(REFUSED["gif"][0](photo))
    out = tmp_path / "out"
    try:
        cli_main(["batch", str(folder), "--out", str(out), "--quiet", "--workers", "1"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 1  # some inputs failed, the job completed
    assert "Traceback" not in capsys.readouterr().err
    df = read_output(out).set_index("id")
    assert sorted(df.index) == sorted([*good, *(Path(n).stem for n in refused)])
    assert df.loc[good, "error"].isna().all()
    for name, word in refused.items():
        row = df.loc[Path(name).stem]
        assert word in str(row["error"]), (name, row["error"])
        assert row["path"] == str(folder / name)
