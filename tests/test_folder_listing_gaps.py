"""What a folder input leaves out is said, never silently dropped: image files its metadata.csv
does not list (one warning, and a count in ``data summary``), folders that cannot be read (an
error row below the input, one line and exit 2 for the input itself), a metadata.csv saved as
UTF-16, and a DICOM file whose tags cannot be used (scored with ``metadata_ignored``, as
``predict`` does, not refused)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from cli_support import run
from dermsight.batch.store import read_output
from dermsight.io import iter_records
from dermsight.io.decode import decode_image
from dermsight.predict import Dermsight

if TYPE_CHECKING:
    from dermsight.io.csvfolder import UnlistedImages

LISTED = [f"ISIC_000000{i}" for i in range(5)]  # and ISIC_0000005, which has no image file
UNLISTED = "ISIC_0000006"
DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "src" / "dermsight" / "assets" / "default"


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


def _folder(root: Path, data_dir: Path, image_names: dict[str, str]) -> Path:
    """``root`` with images/ (real images, id -> file name) and a metadata.csv of LISTED plus
    ISIC_0000005 (no file)."""
    (root / "images").mkdir(parents=True)
    for image_id, name in image_names.items():
        shutil.copy(data_dir / "images" / f"{image_id}.jpg", root / "images" / name)
    rows = [f"{i},NV,50,female,back" for i in [*LISTED, "ISIC_0000005"]]
    (root / "metadata.csv").write_text(
        "image_id,diagnosis,age_approx,sex,anatom_site\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture
def m1(tmp_path: Path, data_dir: Path) -> Path:
    return _folder(tmp_path / "m1", data_dir,
                   {i: f"{i}.jpg" for i in [*LISTED, UNLISTED]})


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


# --- 1. image files the CSV does not list -------------------------------------------------------


def test_an_image_the_csv_does_not_list_is_named_not_made_a_row(m1: Path) -> None:
    told: list[UnlistedImages] = []
    recs = list(iter_records(m1, decode=False, on_unlisted=told.append))
    assert [r.id for r in recs] == [*LISTED, "ISIC_0000005"]  # the CSV is the listing
    assert len(told) == 1
    assert told[0].files == (os.path.join("images", f"{UNLISTED}.jpg"),)
    assert told[0].message("not scored") == (
        f"1 image file in {m1} is not listed in metadata.csv (not scored): "
        f"{os.path.join('images', UNLISTED + '.jpg')}")


def test_a_file_whose_name_differs_in_case_from_its_id_is_named(tmp_path: Path,
                                                               data_dir: Path) -> None:
    names = {i: f"{i}.jpg" for i in LISTED}
    names[LISTED[3]] = f"{LISTED[3].lower()}.JPG"
    folder = _folder(tmp_path / "case", data_dir, names)
    told: list[UnlistedImages] = []
    recs = {r.id: r for r in iter_records(folder, decode=False, on_unlisted=told.append)}
    assert recs[LISTED[3]].error is not None  # the id's file is not found under its case
    assert [u.files for u in told] == [(os.path.join("images", names[LISTED[3]]),)]


def test_the_shared_data_lists_every_image_file(data_dir: Path) -> None:
    told: list[UnlistedImages] = []
    n = sum(1 for _ in iter_records(data_dir, decode=False, on_unlisted=told.append))
    assert n > 10_000
    assert told == []


def test_batch_warns_once_per_run_and_data_summary_counts_them(
        m1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(m1 / "images" / f"{LISTED[0]}.jpg", m1 / "images" / "extra one.png")
    def expected(consequence: str) -> str:
        return (f"warning: 2 image files in {m1} are not listed in metadata.csv ({consequence}): "
                f"{os.path.join('images', UNLISTED + '.jpg')}, "
                f"{os.path.join('images', 'extra one.png')}")

    out = tmp_path / "out"
    for _ in range(2):  # the second run lists the input twice (it retries the error row)
        code, _stdout, err = run(capsys, "batch", str(m1), "--out", str(out), "-q",
                                 "--workers", "1")
        assert code == 1, err  # ISIC_0000005's missing file
        assert _warnings(err) == [expected("not scored")], err
    df = read_output(out)
    assert sorted(df["id"]) == sorted([*LISTED, "ISIC_0000005"])
    code, stdout, err = run(capsys, "data", "summary", str(m1), "--json", "--no-progress",
                            "--no-verify")
    assert code == 0, err
    assert _warnings(err) == [expected("not counted")], err  # a summary scores nothing
    summary = json.loads(stdout)
    assert summary["n_images"] == 6
    assert summary["n_unlisted"] == 2
    assert summary["unlisted"] == [os.path.join("images", UNLISTED + ".jpg"),
                                   os.path.join("images", "extra one.png")]


# --- 2. folders that cannot be read -------------------------------------------------------------


def _locked_run(*args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` as a user that file modes apply to (root without its DAC capabilities)."""
    cmd = [sys.executable, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file modes do not apply")
        drop = "-dac_override,-dac_read_search"
        cmd = [setpriv, "--bounding-set", drop, "--inh-caps", drop, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A folder without read or search permission, made readable again for the clean-up."""
    folder = tmp_path / "locked"
    folder.mkdir()
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("name", ["clinic b", "scans.jpg"])
def test_an_unreadable_folder_inside_an_image_folder_is_one_error_row(
        tmp_path: Path, data_dir: Path, name: str) -> None:
    """Also when it is named like an image (then listed as an entry and reported by the walk
    too): one row."""
    top = tmp_path / "imgs"
    inner = top / name
    inner.mkdir(parents=True)
    shutil.copy(data_dir / "images" / f"{LISTED[0]}.jpg", top / f"{LISTED[0]}.jpg")
    shutil.copy(data_dir / "images" / f"{LISTED[1]}.jpg", inner / f"{LISTED[1]}.jpg")
    inner.chmod(0)
    try:
        res = _locked_run("-c", "import json, sys; from dermsight.io import iter_records; "
                          "print(json.dumps([[r.id, r.path, r.error] for r in "
                          "iter_records(sys.argv[1], decode=False)]))", str(top))
    finally:
        inner.chmod(0o755)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [
        [LISTED[0], str(top / f"{LISTED[0]}.jpg"), None],
        [name, str(inner), f"{name}{os.sep}: cannot read this folder (Permission denied): the "
                           "images in it, if any, were not read"],
    ]


@pytest.mark.parametrize("command", ["batch", "evaluate"])
def test_an_unreadable_input_folder_is_one_line_and_exit_2(
        command: str, locked: Path, tmp_path: Path) -> None:
    args = {"batch": ["batch", str(locked), "--out", str(tmp_path / "x"), "-q"],
            "evaluate": ["evaluate", str(DEFAULT_BUNDLE), str(locked), "--out",
                         str(tmp_path / "y"), "-q"]}[command]
    locked.chmod(0)
    res = _locked_run("-m", "dermsight.cli", *args)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: cannot read folder {locked}: Permission denied"], res.stderr


# --- 3. a metadata.csv saved as UTF-16 ----------------------------------------------------------


@pytest.mark.parametrize("command", ["batch", "summary"])
def test_a_utf16_metadata_csv_is_named_as_such(m1: Path, tmp_path: Path, command: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = (m1 / "metadata.csv").read_text()
    (m1 / "metadata.csv").write_text(text.replace(",", "\t"), encoding="utf-16")
    args = (["batch", str(m1), "--out", str(tmp_path / "out"), "-q"] if command == "batch"
            else ["data", "summary", str(m1), "--no-progress"])
    code, _stdout, err = run(capsys, *args)
    assert code == 2, err
    assert "\0" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert ("metadata.csv is not UTF-8 text (it looks like UTF-16: save it as CSV UTF-8)"
            in lines[0]), err
    assert not (tmp_path / "out").exists()


# --- 4. a DICOM file whose tags cannot be used --------------------------------------------------


def test_a_dicom_with_an_unusable_age_is_scored_as_predict_scores_it(
        model: Dermsight, data_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import pydicom

    from dermsight.io.dicom import write_dicom

    folder = tmp_path / "dcm"
    folder.mkdir()
    path = write_dicom(folder / "a.dcm",
                       decode_image(data_dir / "images" / f"{LISTED[0]}.jpg"), 40, "male")
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'abc' is no valid Age String: that is the point
        ds.PatientAge = "abc"
        ds.save_as(path)
    pred = model.predict(str(path), heatmap=False)
    flags = ";".join(f.code for f in pred.flags)
    assert "metadata_ignored" in flags
    (tmp_path / "m.csv").write_text(f"id,path\na,{path}\n")
    for name, source in (("folder", folder), ("manifest", tmp_path / "m.csv")):
        out = tmp_path / f"out-{name}"
        code, _stdout, err = run(capsys, "batch", str(source), "--out", str(out), "-q",
                                 "--workers", "1")
        assert code == 0, (name, err)
        row = read_output(out).iloc[0]
        assert pd.isna(row["error"]), (name, row["error"])
        assert row["flags"] == flags, name
        assert row["sex"] == "male", name
        assert row["malignant_probability"] == pytest.approx(pred.malignant_probability,
                                                         abs=1e-5), name


def test_training_tells_of_images_its_csv_does_not_list(
        m1: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``dermsight train``'s data table reads the folder by its own CSV reader; it says the same
    warning once, before its own refusal of a CSV row without a file."""
    from dermsight.train.config import ConfigError, DataConfig
    from dermsight.train.table import load_table

    with pytest.raises(ConfigError, match=r"1 images listed in .* have no image file"):
        load_table(DataConfig(root=str(m1), group_col="image_id"))  # the listed id without file
    err = capsys.readouterr().err
    assert err.count("warning: 1 image file in") == 1, err
    assert "is not listed in metadata.csv (not used for training): images/ISIC_" in err
