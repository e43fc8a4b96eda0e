"""Two messages a user reads when a path is not what it seems.

An output path that is a link leading nowhere (a missing target, a loop of links), itself or a
folder above it, is refused before the work with one line naming the link, as reading names a
broken link; a link to a usable place is still followed. A TFRecord reference (``<shard>#<byte
offset>``, what a batch row holds) whose offset starts no record is named as a wrong or stale
reference, not as a damaged shard, while a shard that is damaged at a true record start keeps
its own message."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import pandas as pd
import pytest

from dermsight import Dermsight
from dermsight.batch.references import row_image
from dermsight.batch.scorer import score_frame
from dermsight.cli import app
from dermsight.cli.errors import EXIT_USER, run_guarded
from dermsight.io.decode import DecodeLimits
from dermsight.io.errors import ImageDecodeError
from dermsight.io.tfrecord import iter_tfrecord, write_tfrecord
from dermsight.train.config import ConfigError, load_config
from dermsight.train.pipeline import check_run_folder

WRONG = "the reference is wrong or stale; the shard itself may be fine"

# --- output paths that are links leading nowhere -------------------------------------------------


@pytest.fixture
def dataset_csv(metadata: pd.DataFrame, tmp_path: Path) -> Path:
    """Forty real rows of the shared metadata (``image_id``, ``diagnosis``, ``group_id``)."""
    path = tmp_path / "ds.csv"
    rows = metadata.sort_values("image_id").head(40)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "diagnosis", "group_id"])
        w.writerows(rows[["image_id", "diagnosis", "group_id"]].itertuples(index=False))
    return path


def split_into(dataset: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``dermsight data split DATASET --folds 2 --out OUT``: (exit code, stderr)."""
    code = run_guarded(app, ["data", "split", str(dataset), "--folds", "2", "--out", str(out)])
    return code, capsys.readouterr().err


def test_split_out_that_is_a_broken_link_is_refused_and_a_good_link_followed(
        dataset_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = tmp_path / "gone" / "folds.csv"
    dangling = tmp_path / "folds.csv"
    dangling.symlink_to(nowhere)
    code, err = split_into(dataset_csv, dangling, capsys)
    assert code == EXIT_USER
    assert err == f"error: cannot write --out {dangling}: it is a broken link (to {nowhere})\n"
    assert not nowhere.parent.exists()
    # a link to a file in a writable folder is written through, as before
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "folds.csv").write_text("old\n")
    good = tmp_path / "good.csv"
    good.symlink_to(kept / "folds.csv")
    code, err = split_into(dataset_csv, good, capsys)
    assert code == 0, err
    assert good.is_symlink()
    assert (kept / "folds.csv").read_text().startswith("image_id,fold\n")


def test_split_out_that_is_a_loop_of_links_is_refused(
        dataset_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.symlink_to(b)
    b.symlink_to(a)
    code, err = split_into(dataset_csv, a, capsys)
    assert code == EXIT_USER
    assert err == f"error: cannot write --out {a}: it is a broken link (to {b})\n"


def test_split_out_under_a_folder_that_is_a_broken_link_is_refused(
        dataset_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "results"
    folder.symlink_to(tmp_path / "unmounted")
    out = folder / "2026" / "folds.csv"
    code, err = split_into(dataset_csv, out, capsys)
    assert code == EXIT_USER
    assert err == (f"error: cannot write --out {out}: {folder} is a broken link "
                   f"(to {tmp_path / 'unmounted'})\n")


@pytest.fixture
def two_images(data_dir: Path, tmp_path: Path) -> Path:
    """A folder of two real shared images."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for src in sorted((data_dir / "images").glob("*.jpg"))[:2]:
        (folder / src.name).write_bytes(src.read_bytes())
    return folder


def test_batch_outputs_that_are_broken_links_are_refused_before_scoring(
        two_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``batch --out`` (was a FileExistsError traceback) and ``--heatmaps`` (was "a file is in
    the way"), then ``predict --heatmap`` whose folder or file is a link leading nowhere."""
    gone = tmp_path / "unmounted"
    out = tmp_path / "out"
    out.symlink_to(gone / "out")
    code = run_guarded(app, ["batch", str(two_images), "--out", str(out), "--quiet"])
    assert (code, capsys.readouterr().err) == (
        EXIT_USER, f"error: cannot write --out {out}: it is a broken link (to {gone / 'out'})\n")
    maps = tmp_path / "maps"
    maps.symlink_to(gone / "maps")
    code = run_guarded(app, ["batch", str(two_images), "--out", str(tmp_path / "o2"),
                             "--heatmaps", str(maps), "--quiet"])
    assert (code, capsys.readouterr().err) == (
        EXIT_USER, f"error: --heatmaps {maps}: cannot write overlays there: it is a broken link "
                   f"(to {gone / 'maps'})\n")
    image = str(next(two_images.iterdir()))
    png = tmp_path / "map.png"
    png.symlink_to(gone / "map.png")
    code = run_guarded(app, ["predict", image, "--heatmap", str(png)])
    assert (code, capsys.readouterr().err) == (
        EXIT_USER, f"error: cannot write --heatmap {png}: it is a broken link "
                   f"(to {gone / 'map.png'})\n")
    code = run_guarded(app, ["predict", image, "--heatmap", str(maps / "x.png")])
    assert (code, capsys.readouterr().err) == (
        EXIT_USER, f"error: --heatmap {maps / 'x.png'}: cannot write into the folder {maps}: it "
                   f"is a broken link (to {gone / 'maps'})\n")
    assert not gone.exists()


def test_a_run_folder_that_is_a_broken_link_is_refused_and_a_good_link_followed(
        tmp_path: Path) -> None:
    cfg = load_config(None)
    out = tmp_path / "run"
    out.symlink_to(tmp_path / "scratch" / "run")
    with pytest.raises(ConfigError) as info:
        check_run_folder(cfg, out, resume=False, stage="all")
    assert str(info.value) == (f"cannot write the run folder --out {out}: it is a broken link "
                               f"(to {tmp_path / 'scratch' / 'run'})")
    (tmp_path / "scratch" / "run").mkdir(parents=True)  # now the link leads to an empty folder
    check_run_folder(cfg, out, resume=False, stage="all")


# --- TFRecord references whose offset starts no record -------------------------------------------


@pytest.fixture(scope="module")
def jpegs(data_dir: Path) -> list[tuple[str, bytes]]:
    files = sorted((data_dir / "images").glob("*.jpg"))[:3]
    assert len(files) == 3, f"the shared images are missing under {data_dir / 'images'}"
    return [(f.stem, f.read_bytes()) for f in files]


def shard_of(path: Path, jpegs: list[tuple[str, bytes]]) -> Path:
    return write_tfrecord(path, [{"image": data, "image_name": name} for name, data in jpegs])


def offsets(shard: Path) -> list[int]:
    return [int(str(r.path).rpartition("#")[2]) for r in iter_tfrecord(shard, decode=False)]


def read_ref(ref: str) -> str:
    """The reason ``row_image`` (what a batch row goes through) refuses ``ref`` with."""
    with pytest.raises(ImageDecodeError) as info:
        row_image(None, ref, None, DecodeLimits())
    return info.value.reason


@pytest.mark.parametrize("gzipped", [False, True])
def test_an_offset_that_starts_no_record_is_a_wrong_reference(
        jpegs: list[tuple[str, bytes]], tmp_path: Path, gzipped: bool) -> None:
    shard = shard_of(tmp_path / "s.tfrec", jpegs)
    first, second, third = offsets(shard)
    end = shard.stat().st_size
    if gzipped:
        shard.write_bytes(gzip.compress(shard.read_bytes()))  # same name: found by its magic
    inside = {5: first, second - 3: first, second + 20: second, end - 3: third}
    for offset, start in inside.items():
        assert read_ref(f"{shard}#{offset}") == (
            f"s.tfrec: no record starts at byte {offset} (it is inside the record at byte "
            f"{start}): {WRONG}")
    for offset in (end, end + 100):
        assert read_ref(f"{shard}#{offset}") == (
            f"s.tfrec: no record starts at byte {offset} (the shard ends at byte {end}): {WRONG}")


def test_batch_rows_tell_a_wrong_reference_from_a_damaged_shard(
        jpegs: list[tuple[str, bytes]], tmp_path: Path) -> None:
    good = shard_of(tmp_path / "good.tfrec", jpegs)
    _, second, third = offsets(good)
    flipped = tmp_path / "flipped.tfrec"  # a byte of the second record's image changed
    raw = bytearray(good.read_bytes())
    raw[second + 12 + 500] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    header = tmp_path / "header.tfrec"  # the second record's length header changed
    raw = bytearray(good.read_bytes())
    raw[second + 2] ^= 0xFF
    header.write_bytes(bytes(raw))
    cut = tmp_path / "cut.tfrec"  # cut inside the third record
    cut.write_bytes(good.read_bytes()[: third + 12 + 100])
    empty = tmp_path / "empty.tfrec"
    empty.write_bytes(b"")
    rows = {
        "ok": f"{good}#{second}",
        "wrong": f"{good}#{second + 7}",
        "stale": f"{good}#{good.stat().st_size + 40}",
        "flipped": f"{flipped}#{second}",
        "header": f"{header}#{second}",
        "cut": f"{cut}#{third}",
        "empty": f"{empty}#0",
    }
    frame = pd.DataFrame({"id": list(rows), "path": list(rows.values())})
    out = score_frame(frame, Dermsight.load(threads=2)).set_index("id")
    assert out.loc["ok", "error"] is None
    assert out.loc["ok", "prediction"] is not None
    size = good.stat().st_size
    assert out["error"].drop("ok").to_dict() == {
        "wrong": f"good.tfrec: no record starts at byte {second + 7} (it is inside "
                 f"the record at byte {second}): {WRONG}",
        "stale": f"good.tfrec: no record starts at byte {size + 40} (the shard ends "
                 f"at byte {size}): {WRONG}",
        "flipped": f"flipped.tfrec, record at byte {second}: corrupt record "
                   "(data checksum mismatch)",
        "header": f"header.tfrec, record at byte {second}: not a TFRecord file, "
                  "or corrupt (record length checksum mismatch)",
        "cut": f"cut.tfrec, record at byte {third}: truncated shard: the last record "
               "is incomplete",
        "empty": "empty.tfrec, record at byte 0: empty shard: it holds no records",
    }
    assert os.path.getsize(good) == size  # nothing was written to a shard
