"""A TFRecord reference (``<shard>#<offset>``, what batch and Spark hand to a worker) decodes the
same image as reading the shard in order, and a damaged shard or a wrong offset is refused with
the shard, the byte and the reason named."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA
from dermsight.io.decode import ImageDecodeError
from dermsight.io.tfrecord import iter_tfrecord, load_tfrecord_image, write_tfrecord

IMAGES = DATA / "images"


@pytest.fixture(scope="module")
def jpegs() -> list[tuple[str, bytes]]:
    files = sorted(IMAGES.glob("*.jpg"))[:3]
    assert len(files) == 3, f"the shared images are missing under {IMAGES}"
    return [(f.stem, f.read_bytes()) for f in files]


def shard_of(path: Path, jpegs: list[tuple[str, bytes]]) -> Path:
    return write_tfrecord(path, [{"image": data, "image_name": name} for name, data in jpegs])


def refs(shard: Path) -> list[str]:
    paths = [r.path for r in iter_tfrecord(shard, decode=False)]
    assert all(p is not None for p in paths)
    return [str(p) for p in paths]


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_reference_decodes_the_image_read_in_order(jpegs: list[tuple[str, bytes]],
                                                     tmp_path: Path, gzipped: bool) -> None:
    shard = shard_of(tmp_path / "s.tfrec", jpegs)
    if gzipped:
        packed = tmp_path / "s.tfrec.gz"
        packed.write_bytes(gzip.compress(shard.read_bytes()))
        shard = packed
    in_order = [r.image for r in iter_tfrecord(shard)]
    lazy = [load_tfrecord_image(ref) for ref in refs(shard)]
    assert len(lazy) == 3
    for a, b in zip(in_order, lazy, strict=True):
        assert a is not None
        np.testing.assert_array_equal(a, b)


def test_an_offset_past_the_last_record_is_a_wrong_reference(jpegs: list[tuple[str, bytes]],
                                                             tmp_path: Path) -> None:
    shard = shard_of(tmp_path / "s.tfrec", jpegs)
    end = shard.stat().st_size
    with pytest.raises(ImageDecodeError,
                       match=rf"s\.tfrec: no record starts at byte {end} \(the shard ends at "
                             rf"byte {end}\): the reference is wrong or stale; the shard itself "
                             "may be fine$"):
        load_tfrecord_image(f"{shard}#{end}")


def test_an_offset_inside_a_record_is_a_wrong_reference(jpegs: list[tuple[str, bytes]],
                                                        tmp_path: Path) -> None:
    shard = shard_of(tmp_path / "s.tfrec", jpegs)
    with pytest.raises(ImageDecodeError,
                       match=r"s\.tfrec: no record starts at byte 5 \(it is inside the record "
                             r"at byte 0\): the reference is wrong or stale"):
        load_tfrecord_image(f"{shard}#5")


def test_a_shard_cut_inside_a_record_names_the_truncation(jpegs: list[tuple[str, bytes]],
                                                          tmp_path: Path) -> None:
    shard = shard_of(tmp_path / "s.tfrec", jpegs)
    second = refs(shard)[1]
    offset = int(second.rpartition("#")[2])
    shard.write_bytes(shard.read_bytes()[: offset + 12 + 100])  # header + 100 bytes of data
    with pytest.raises(ImageDecodeError,
                       match=rf"record at byte {offset}: truncated shard: the last record is "
                             r"incomplete$"):
        load_tfrecord_image(second)


def test_a_flipped_byte_in_the_data_names_the_checksum(jpegs: list[tuple[str, bytes]],
                                                       tmp_path: Path) -> None:
    shard = shard_of(tmp_path / "s.tfrec", jpegs)
    first = refs(shard)[0]
    raw = bytearray(shard.read_bytes())
    raw[12 + 500] ^= 0xFF  # inside the first record's payload
    shard.write_bytes(bytes(raw))
    with pytest.raises(ImageDecodeError,
                       match=r"s\.tfrec, record at byte 0: corrupt record \(data checksum"):
        load_tfrecord_image(first)


def test_a_damaged_gzip_shard_is_refused(jpegs: list[tuple[str, bytes]], tmp_path: Path) -> None:
    plain = shard_of(tmp_path / "s.tfrec", jpegs)
    packed = tmp_path / "p.tfrec"  # gzip recognised by its magic bytes, not the name
    data = gzip.compress(plain.read_bytes())
    packed.write_bytes(data[: len(data) // 2])
    last = refs(plain)[-1]
    with pytest.raises(ImageDecodeError, match=r"p\.tfrec.*compressed data is corrupt or trunc"):
        load_tfrecord_image(f"{packed}#{last.rpartition('#')[2]}")


def test_a_missing_shard_and_a_record_without_image(jpegs: list[tuple[str, bytes]],
                                                    tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match=r"cannot read .*gone\.tfrec"):
        load_tfrecord_image(f"{tmp_path / 'gone.tfrec'}#0")
    shard = write_tfrecord(tmp_path / "e.tfrec", [{"image": b"", "image_name": "EMPTY"}])
    with pytest.raises(ImageDecodeError,
                       match=r"e\.tfrec: the record at byte 0 has no image feature"):
        load_tfrecord_image(f"{shard}#0")
