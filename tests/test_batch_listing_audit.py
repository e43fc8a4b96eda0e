"""What an audit of a 400k-image job found the batch listing dropped silently, now read or said:
a folder of images with TFRecord shards at its top (the images were all lost), shards further
down (skipped without a word), links to folders (the local engine skipped them, Spark followed
them), CSV metadata columns of names it does not know (scored without them, unsaid), and CSV
rows whose metadata or label cannot be used (error rows: the image was not scored)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from batch_support import image_folder
from cli_support import run
from dermsight.batch.store import read_output
from dermsight.io import detect_kind, estimate_count, iter_records
from dermsight.io.decode import decode_image
from dermsight.io.dicom import write_dicom
from dermsight.io.tfrecord import write_tfrecord

IDS = [f"ISIC_{i:07d}" for i in (0, 1, 2, 3, 4, 6, 7, 8)]  # (ISIC_0000005 has no image)


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def _shard(path: Path, data_dir: Path, ids: list[str]) -> Path:
    """A SIIM-ISIC shard of the real images ``ids`` (no metadata)."""
    return write_tfrecord(path, [
        {"image": (data_dir / "images" / f"{i}.jpg").read_bytes(), "image_name": i}
        for i in ids])


def _batch(capsys: pytest.CaptureFixture[str], src: Path, out: Path, *more: str
           ) -> tuple[int, str, pd.DataFrame]:
    code, _out, err = run(capsys, "batch", str(src), "--out", str(out), "--workers", "1",
                          "-q", *more)
    assert "Traceback" not in err
    assert code in (0, 1), err
    return code, err, read_output(out).set_index("id")


def test_a_folder_of_images_and_shards_is_read_whole(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """2 JPEGs, a DICOM, a 3-record shard and a broken .tfrec at the top, a shard one folder
    down: every image and every record of the top shard is a row (the broken file an error
    row), and one warning names the shard below, which is not read. Before, the shards alone
    were read: the JPEGs and the DICOM were lost without a word."""
    folder = image_folder(tmp_path, data_dir, IDS[:2])
    write_dicom(folder / "scan.dcm", decode_image(data_dir / "images" / f"{IDS[2]}.jpg"),
                age=50, sex="female", jpeg=False)
    _shard(folder / "train00-3.tfrec", data_dir, IDS[3:6])
    (folder / "badimg.tfrec").write_bytes(b"not a tfrecord at all")
    (folder / "more").mkdir()
    _shard(folder / "more" / "train01-1.tfrec", data_dir, IDS[6:7])

    assert detect_kind(folder) == "mixed-folder"
    lines: list[str] = []
    recs = list(iter_records(folder, decode=False, on_warning=lines.append))
    scored = sorted([*IDS[:2], "scan", *IDS[3:6]])
    assert sorted(r.id for r in recs if r.error is None) == scored
    assert len(recs) == 7
    assert len(lines) == 1
    assert lines[0].startswith(f"1 TFRecord shard in folders below {folder} is not read")
    assert os.path.join("more", "train01-1.tfrec") in lines[0]

    code, err, df = _batch(capsys, folder, tmp_path / "o")
    assert code == 1  # the broken shard's error row
    assert sorted(df.index[df["error"].isna()]) == scored
    assert df["error"].notna().sum() == 1
    assert "badimg.tfrec" in df.loc[df["error"].notna(), "path"].iloc[0]
    assert len(df) == 7
    (warned,) = _warnings(err)
    assert "train01-1.tfrec" in warned, err

    code, out, err = run(capsys, "data", "summary", str(folder), "--json", "--no-progress")
    summary = json.loads(out)
    assert (summary["kind"], summary["n_images"], summary["n_errors"]) == ("mixed-folder", 7, 1)
    assert len(_warnings(err)) == 1


def test_a_shard_below_a_folder_of_images_is_said(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """No shard at the top: the folder is a folder of images, and the shards below it are
    named (count and path) instead of skipped silently; a folder of shards alone the same."""
    folder = image_folder(tmp_path, data_dir, IDS[:2])
    (folder / "a" / "b").mkdir(parents=True)
    for n, sub in enumerate(("a", "a/b")):
        _shard(folder / sub / f"s{n}.tfrec", data_dir, IDS[2 + n:3 + n])
    code, out, err = run(capsys, "data", "summary", str(folder), "--json", "--no-progress")
    assert (code, json.loads(out)["n_images"]) == (0, 2)
    assert [line.split(":")[0:2] for line in _warnings(err)] == [
        ["warning", f" 2 TFRecord shards in folders below {folder} are not read (only the "
                    "shards at the top of the input folder are)"]]
    lines: list[str] = []
    recs = list(iter_records(folder, decode=False, on_warning=lines.append))
    assert [r.id for r in recs] == IDS[:2]
    assert lines == [f"2 TFRecord shards in folders below {folder} are not read (only the "
                     f"shards at the top of the input folder are): "
                     f"{os.path.join('a', 's0.tfrec')}, {os.path.join('a', 'b', 's1.tfrec')}; "
                     "give the folder that holds them as the input to read them"]

    shards = tmp_path / "shards"
    (shards / "old").mkdir(parents=True)
    _shard(shards / "s.tfrec", data_dir, IDS[4:5])
    _shard(shards / "old" / "t.tfrec", data_dir, IDS[5:6])
    assert detect_kind(shards) == "tfrecord-folder"
    lines.clear()
    assert [r.id for r in iter_records(shards, decode=False, on_warning=lines.append)] == \
        IDS[4:5]
    assert len(lines) == 1
    assert lines[0].startswith("1 TFRecord shard in folders below")


def test_linked_folders_are_followed_each_folder_once(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A link to a folder of images is read (as Spark's listing reads it); a link back up the
    tree, and a second link to a folder already read, do not read a folder twice."""
    folder = image_folder(tmp_path, data_dir, IDS[:1])
    clinic = tmp_path / "clinic b"
    clinic.mkdir()
    for i in IDS[1:3]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", clinic / f"{i}.jpg")
    (folder / "b").symlink_to(clinic, target_is_directory=True)
    (folder / "b2").symlink_to(clinic, target_is_directory=True)  # the same folder again
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # back up the tree
    want = {IDS[0]: str(folder / f"{IDS[0]}.jpg"),
            **{i: str(folder / "b" / f"{i}.jpg") for i in IDS[1:3]}}
    recs = list(iter_records(folder, decode=False))
    assert {r.id: r.path for r in recs} == want
    assert len(recs) == 3
    assert estimate_count(folder) == 3

    code, _err, df = _batch(capsys, folder, tmp_path / "o")
    assert code == 0
    assert df["path"].to_dict() == want
    assert df["error"].isna().all()

    # a link to a folder inside the input (sorting before it) is not followed: the folder's
    # images keep their own paths, the resume key, whatever links point at them
    inner = folder / "z_scans"
    inner.mkdir()
    shutil.copy(data_dir / "images" / f"{IDS[3]}.jpg", inner / f"{IDS[3]}.jpg")
    (folder / "a_latest").symlink_to(inner, target_is_directory=True)
    paths = {r.id: r.path for r in iter_records(folder, decode=False)}
    assert paths[IDS[3]] == str(inner / f"{IDS[3]}.jpg")
    assert len(paths) == 4

    # a CSV's ids are looked up in linked folders too
    (folder / "metadata.csv").write_text("image_id,age_approx,sex,anatom_site\n"
                                         f"{IDS[2]},50,female,back\n")
    (rec,) = iter_records(folder, decode=False)
    assert (rec.error, rec.path) == (None, str(folder / "b" / f"{IDS[2]}.jpg"))


def test_metadata_columns_it_does_not_know_are_said(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """``age_years`` is not an age column: one warning names the missing age, the column
    names read as age and the CSV's columns not read; a CSV with age, sex and site says
    nothing."""
    folder = image_folder(tmp_path, data_dir, IDS[:2])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,age_years,sex,anatom_site_general,extra1\n" + "".join(
        f"in/{i}.jpg,55,female,anterior torso,x\n" for i in IDS[:2]))
    code, err, df = _batch(capsys, manifest, tmp_path / "o")
    assert code == 0
    assert df["age"].isna().all()
    assert (df["sex"] == "female").all()
    assert _warnings(err) == [
        "warning: manifest.csv has no age column (read as age: age_approx, age, "
        "age_approximate, patient_age): its images are read without age; its columns not "
        "read: age_years, extra1"]

    # a folder's CSV, joined metadata CSVs counted: nothing missing, nothing said
    (folder / "metadata.csv").write_text("image_id,age_approx,sex,anatom_site\n" + "".join(
        f"{i},55,female,back\n" for i in IDS[:2]))
    code, err, _df = _batch(capsys, folder, tmp_path / "o2")
    assert code == 0
    assert _warnings(err) == []


def test_an_unusable_metadata_value_or_label_does_not_cost_the_score(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Age -1 (TFRecord's "not given"), sex ``x``, diagnosis ``FOO``: each image is scored.
    The unusable value is left out with ``metadata_ignored`` (the scores equal those without
    it); the unusable label leaves the row unlabelled, said once. Before, each was an error
    row, its image not scored."""
    folder = image_folder(tmp_path, data_dir, IDS[:3])
    (folder / "metadata.csv").write_text(
        "image_id,diagnosis,age_approx,sex,anatom_site\n"
        f"{IDS[0]},NV,-1,female,back\n"
        f"{IDS[1]},NV,50,x,back\n"
        f"{IDS[2]},FOO,50,female,back\n")
    code, err, df = _batch(capsys, folder, tmp_path / "o")
    assert code == 0, err
    assert df["error"].isna().all()
    assert df["p_MEL"].notna().all()
    assert "metadata_ignored" in df.loc[IDS[0], "flags"]
    assert "metadata_ignored" in df.loc[IDS[1], "flags"]
    assert pd.isna(df.loc[IDS[0], "age"])
    assert df.loc[IDS[0], "sex"] == "female"
    assert pd.isna(df.loc[IDS[1], "sex"])
    assert df.loc[IDS[1], "age"] == 50
    assert pd.isna(df.loc[IDS[2], "label"])
    assert df.loc[IDS[0], "label"] == "NV"
    assert _warnings(err) == [
        f"warning: 1 row of metadata.csv has a label that cannot be used (line 4 ({IDS[2]}): "
        "unknown diagnosis 'FOO'): its image is read without a label"]

    # the same image with the age left empty: the same scores
    (folder / "metadata.csv").write_text(
        f"image_id,diagnosis,age_approx,sex,anatom_site\n{IDS[0]},NV,,female,back\n")
    code, _err, empty = _batch(capsys, folder, tmp_path / "o_empty")
    assert code == 0
    assert abs(empty.loc[IDS[0], "p_MEL"] - df.loc[IDS[0], "p_MEL"]) < 1e-6
