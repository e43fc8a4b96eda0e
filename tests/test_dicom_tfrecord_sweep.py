"""DICOM and TFRecord inputs as real SIIM-ISIC data and hospital exports carry them: real ISIC
images converted in ``tmp_path``, read by the reader, the facade, the CLI and the batch job."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from cli_support import run
from dermsight.batch.local import run_local
from dermsight.batch.store import read_output
from dermsight.io.decode import decode_image
from dermsight.io.dicom import read_dicom, read_dicom_dataset, write_dicom
from dermsight.io.errors import ImageDecodeError
from dermsight.io.tfrecord import _tfrecord, iter_tfrecord, write_tfrecord
from dermsight.predict import Dermsight
from dermsight.records import IGNORED, Metadata


@pytest.fixture(scope="module")
def rgb(data_dir: Path, sample_ids: list[str]) -> np.ndarray:
    """A real ISIC image, 96x72 (small: the readers, not the network, are under test)."""
    full = decode_image(data_dir / "images" / f"{sample_ids[0]}.jpg")
    return np.asarray(Image.fromarray(full).resize((96, 72)))


def _palette_dicom(path: Path, rgb: np.ndarray, colours: int | None = None) -> Path:
    """The real image as a PALETTE COLOR DICOM with 16-bit lookup tables: by default every
    colour of the image is an entry (16-bit indices, thousands of colours, the image exactly);
    ``colours=64`` quantises it to 64 entries (8-bit indices), as a palette PNG is."""
    write_dicom(path, rgb, age=50, sex="male", site="torso", jpeg=False)
    if colours is not None:
        quant = Image.fromarray(rgb).quantize(colours)
        palette = quant.getpalette()
        assert palette is not None
        lut = np.array(palette[: colours * 3], dtype=np.uint16).reshape(-1, 3)
        pixels = np.asarray(quant, dtype=np.uint8)
    else:
        lut, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
        assert len(lut) < 2**16
        lut = lut.astype(np.uint16)
        pixels = index.reshape(rgb.shape[:2]).astype(np.uint16)
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated = ds.BitsStored = pixels.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    del ds.PlanarConfiguration
    ds.PixelData = pixels.tobytes()
    for i, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [len(lut), 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", (lut[:, i] * 257).tobytes())
    for tag in (0x00281101, 0x00281102, 0x00281103):
        ds[tag].VR = "US"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_palette_colour_dicom_is_decoded_through_its_lookup_tables(
        rgb: np.ndarray, tmp_path: Path) -> None:
    path = _palette_dicom(tmp_path / "pal.dcm", rgb)
    assert np.unique(rgb.reshape(-1, 3), axis=0).shape[0] > 256
    for image in (read_dicom(path).image, decode_image(path.read_bytes())):
        assert image is not None
        assert image.shape == rgb.shape
        # the colours of the image, not its palette indices as grey levels
        assert np.abs(image.astype(int) - rgb.astype(int)).max() <= 1
    # lookup tables missing: refused by name, never shown as grey indices
    ds = pydicom.dcmread(path)
    del ds.RedPaletteColorLookupTableData
    ds.save_as(tmp_path / "nolut.dcm", enforce_file_format=True)
    with pytest.raises(ImageDecodeError, match=r"PALETTE COLOR .*lookup tables"):
        read_dicom_dataset((tmp_path / "nolut.dcm").read_bytes())


def test_palette_colour_dicom_of_at_most_256_colours_is_refused_like_a_palette_png(
        rgb: np.ndarray, tmp_path: Path) -> None:
    """Colours reduced to 64 (as a palette PNG's are) move the model's answer: the file is
    refused with the palette PNG's reason (the reader's error row, the decoder)."""
    path = _palette_dicom(tmp_path / "pal64.dcm", rgb, colours=64)
    rec = read_dicom(path)
    assert rec.image is None
    assert rec.error is not None
    assert "indexed-colour (palette)" in rec.error
    assert "at most 256" in rec.error
    with pytest.raises(ImageDecodeError, match="indexed-colour"):
        decode_image(path.read_bytes())


def test_dicom_without_its_preamble_is_read(rgb: np.ndarray, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    full = write_dicom(tmp_path / "full.dcm", rgb, age=45, sex="female", site="head/neck",
                       jpeg=False)
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(full.read_bytes()[128:])  # "DICM" first, as some exporters write it
    rec = read_dicom(bare)
    assert rec.error is None
    assert rec.image is not None
    assert np.array_equal(rec.image, rgb)
    assert (rec.meta.age, rec.meta.sex, rec.meta.site) == (45.0, "female", "head/neck")
    assert np.array_equal(decode_image(bare.read_bytes()), rgb)
    code, _out, err = run(capsys, "predict", str(bare), "--json")
    assert code == 0, err


def test_palette_dicom_through_the_facade_scores_like_the_image(
        rgb: np.ndarray, tmp_path: Path) -> None:
    model = Dermsight.load(threads=1)
    big = np.asarray(Image.fromarray(rgb).resize((384, 288)))
    pal = _palette_dicom(tmp_path / "pal.dcm", big)
    png = io.BytesIO()
    Image.fromarray(big).save(png, format="PNG")
    tags = Metadata(age=50, sex="male", site="torso")  # what _palette_dicom writes
    direct = model.predict(png.getvalue(), meta=tags, heatmap=False)
    via_dicom = model.predict(pal.read_bytes(), heatmap=False)
    assert via_dicom.meta.as_dict() == tags.as_dict()
    # a colour image, assessed: not palette indices refused as black and white
    assert [f.code for f in via_dicom.flags] == [f.code for f in direct.flags]
    assert "greyscale" not in [f.code for f in via_dicom.flags]
    assert via_dicom.risk == direct.risk != "cannot_assess"
    assert abs(via_dicom.probabilities["MEL"] - direct.probabilities["MEL"]) < 0.01


def test_empty_tfrecord_shard_is_an_error_row(rgb: np.ndarray, tmp_path: Path) -> None:
    empty = tmp_path / "train15-0.tfrec"
    empty.write_bytes(b"")
    recs = list(iter_tfrecord(empty))
    assert len(recs) == 1
    assert recs[0].image is None
    assert recs[0].error is not None
    assert "empty shard" in recs[0].error
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    write_tfrecord(tmp_path / "train00-1.tfrec", [{"image": buf.getvalue(), "image_name": "A"}])
    run_local(tmp_path, tmp_path / "out", progress=False)
    got = read_output(tmp_path / "out").set_index("id")
    assert got.loc["A", "error"] is None
    errors = [e for e in got["error"] if e is not None]
    assert len(errors) == 1
    assert "empty shard" in errors[0]


def test_tfrecord_fractional_code_is_reported_not_truncated(
        rgb: np.ndarray, tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    shard = tmp_path / "x.tfrec"
    writer = _tfrecord().writer.TFRecordWriter(str(shard))
    writer.write({"image": (buf.getvalue(), "byte"), "image_name": (b"B", "byte"),
                  "sex": (1.5, "float")})
    writer.write({"image": (buf.getvalue(), "byte"), "image_name": (b"C", "byte"),
                  "sex": (1.0, "float")})
    writer.close()
    b, c = list(iter_tfrecord(shard))
    # 1.5 is not cut down to code 1 (female): it is left out, noted, and the image scored
    assert b.error is None
    assert b.meta.sex is None
    assert b.meta.notes == (("sex", IGNORED),)
    assert c.error is None
    assert c.meta.sex == "female"
    assert c.image is not None
    assert np.array_equal(c.image, rgb)  # PNG image bytes decode as well as JPEG


def _native_variant(path: Path, rgb: np.ndarray, **tags: object) -> Path:
    """The real image written uncompressed, then ``tags`` (and pixel data) replaced."""
    write_dicom(path, rgb, jpeg=False)
    ds = pydicom.dcmread(path)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_uncompressed_ybr_full_422_is_converted_to_rgb(rgb: np.ndarray, tmp_path: Path) -> None:
    from pydicom.pixels import convert_color_space

    ybr = convert_color_space(rgb, "RGB", "YBR_FULL").astype(np.uint8)
    h, w, _ = ybr.shape
    # 4:2:2 as the standard lays it out: Y1 Y2 Cb Cr for each pair of pixels
    pairs = np.concatenate([ybr[:, :, 0].reshape(h, w // 2, 2), ybr[:, 0::2, 1:]], axis=2)
    path = _native_variant(tmp_path / "ybr422.dcm", rgb, PhotometricInterpretation="YBR_FULL_422",
                           PixelData=pairs.tobytes())
    rec = read_dicom(path)
    assert rec.error is None, rec.error  # was refused as "truncated"
    assert rec.image is not None
    assert np.abs(rec.image.astype(int) - rgb.astype(int)).mean() < 3


def test_16_bit_rgb_keeps_its_brightness(rgb: np.ndarray, tmp_path: Path) -> None:
    """16-bit samples map their declared range (BitsStored) to 0-255, as a 16-bit PNG does:
    a dark photograph is not silently stretched to full brightness."""
    dark = (rgb.astype(np.uint16) * 100).astype("<u2")  # at most 25500 of 65535
    path = _native_variant(tmp_path / "rgb16.dcm", rgb, BitsAllocated=16, BitsStored=16,
                           HighBit=15, PixelData=dark.tobytes())
    image = decode_image(path.read_bytes())
    expected = np.round(dark / 65535 * 255)
    assert np.abs(image.astype(int) - expected).max() <= 1
    twelve = (rgb.astype(np.uint16) * 16).astype("<u2")  # 12 bits stored in 16
    path = _native_variant(tmp_path / "rgb12.dcm", rgb, BitsAllocated=16, BitsStored=12,
                           HighBit=11, PixelData=twelve.tobytes())
    assert np.abs(decode_image(path.read_bytes()).astype(int) - rgb.astype(int)).max() <= 1


def test_api_reads_bare_and_palette_dicoms_and_refuses_a_broken_or_reduced_palette_with_422(
        client: httpx.Client, rgb: np.ndarray, tmp_path: Path) -> None:
    big = np.asarray(Image.fromarray(rgb).resize((384, 288)))

    def post(data: bytes) -> httpx.Response:
        return client.post("/api/v1/predict", params={"heatmap": "false"},
                           files={"image": ("lesion.dcm", data, "application/octet-stream")})

    full = write_dicom(tmp_path / "full.dcm", big, age=60, sex="male", site="torso")
    r = post(full.read_bytes()[128:])  # no preamble
    assert r.status_code == 200, r.text
    assert r.json()["input"] == {"age": 60.0, "sex": "male", "site": "torso"}
    pal = _palette_dicom(tmp_path / "pal.dcm", big)
    r = post(pal.read_bytes())
    assert r.status_code == 200, r.text
    assert "greyscale" not in r.text
    r = post(_palette_dicom(tmp_path / "pal64.dcm", big, colours=64).read_bytes())
    assert r.status_code == 422, r.text
    assert "indexed-colour (palette)" in r.json()["detail"]
    ds = pydicom.dcmread(pal)
    del ds.GreenPaletteColorLookupTableData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    r = post(buf.getvalue())
    assert r.status_code == 422, r.text
    assert "PALETTE COLOR" in r.json()["detail"]


def test_gzip_shard_named_tfrec_and_an_image_named_tfrec(rgb: np.ndarray, tmp_path: Path) -> None:
    import gzip

    from dermsight.io import iter_records
    from dermsight.io.tfrecord import load_tfrecord_image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    plain = write_tfrecord(tmp_path / "plain.tfrec",
                           [{"image": buf.getvalue(), "image_name": "G", "sex": "female"}])
    # TensorFlow's compression_type="GZIP", named like any other shard
    zipped = tmp_path / "train00-1.tfrec"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    (rec,) = iter_tfrecord(zipped)
    assert rec.error is None, rec.error
    assert rec.image is not None
    assert np.array_equal(rec.image, rgb)
    (lazy,) = iter_records(zipped, decode=False)
    assert lazy.path is not None
    assert np.array_equal(load_tfrecord_image(lazy.path), rgb)
    # a JPEG saved under a shard's name: said so, not "corrupt"
    photo = tmp_path / "photo.tfrec"
    Image.fromarray(rgb).save(photo, format="JPEG")
    (bad,) = iter_tfrecord(photo)
    assert bad.error is not None
    assert "not a TFRecord file: it is a JPEG file" in bad.error


def test_truncated_gzip_shard_is_an_error_record_not_a_crash(
        rgb: np.ndarray, tmp_path: Path) -> None:
    import gzip

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    plain = write_tfrecord(tmp_path / "p.tfrec", [{"image": buf.getvalue(), "image_name": "G"}])
    zipped = gzip.compress(plain.read_bytes())
    for name, data in (("cut.tfrec.gz", zipped[: len(zipped) // 2]),
                       ("cut.tfrec", zipped[: len(zipped) // 2]),
                       ("bad.tfrec", zipped[:40] + bytes(50) + zipped[90:])):
        (tmp_path / name).write_bytes(data)
        recs = list(iter_tfrecord(tmp_path / name))  # raised EOFError / zlib.error before
        assert recs
        assert recs[-1].error is not None
        assert "unreadable shard: the compressed data is corrupt or truncated" in recs[-1].error


def test_lazy_load_of_a_record_damaged_since_listing_is_an_image_error(
        rgb: np.ndarray, tmp_path: Path) -> None:
    from dermsight.io.tfrecord import load_tfrecord_image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    shard = write_tfrecord(tmp_path / "s.tfrec", [{"image": buf.getvalue(), "image_name": "G"}])
    (lazy,) = iter_tfrecord(shard, decode=False)
    assert lazy.path is not None
    data = bytearray(shard.read_bytes())
    data[40] ^= 0xFF  # one byte of the record's payload flipped after the listing
    shard.write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError, match="record at byte 0: corrupt record"):
        load_tfrecord_image(lazy.path)
    shard.write_bytes(bytes(data[:30]))  # cut short
    with pytest.raises(ImageDecodeError, match="record at byte 0: truncated shard"):
        load_tfrecord_image(lazy.path)


def test_truncated_or_empty_dicoms_and_another_tfrecord_schema_say_what_is_wrong(
        rgb: np.ndarray, tmp_path: Path) -> None:
    """A JPEG DICOM cut inside its pixel data is "truncated" (it said "has no image"); a
    zero-byte .dcm is an empty file of the DICOM reader (source "dicom", as its neighbours);
    a shard of another schema names the features it has."""
    full = write_dicom(tmp_path / "full.dcm", rgb, age=50, sex="male", site="torso")
    data = full.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 400])
    rec = read_dicom(cut)
    assert rec.error == "cut.dcm: truncated DICOM: the pixel data is incomplete"
    header_only = tmp_path / "header.dcm"  # cut before the pixel data starts: nothing to say
    header_only.write_bytes(data[:300])
    assert "truncated DICOM" not in (read_dicom(header_only).error or "")
    empty = tmp_path / "zero.dcm"
    empty.write_bytes(b"")
    rec = read_dicom(empty)
    assert rec.error == "zero.dcm: empty file (0 bytes): not an image"
    assert rec.source == "dicom"

    shard = tmp_path / "other.tfrec"
    writer = _tfrecord().writer.TFRecordWriter(str(shard))
    writer.write({"image_raw": (data[:10], "byte"), "name": (b"x", "byte"),
                  "label": (1, "int")})
    writer.close()
    [rec] = list(iter_tfrecord(shard))
    assert rec.error is not None
    assert "record has no image feature" in rec.error
    assert "'image_raw', 'label', 'name'" in rec.error
    assert "'image_name'" in rec.error
