"""`dermsight data summary` and `dermsight data split` from the command line."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dermsight.cli import app
from dermsight.cli.errors import EXIT_USER, run_guarded

REPO = Path(__file__).resolve().parents[1]
README_COUNTS = {
    "MEL": 1729, "NV": 8160, "BCC": 514, "AK": 130, "BKL": 1395, "DF": 122, "VASC": 142,
    "SCC": 202, "UNK": 0,
}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_guarded(app, argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def small_dataset(data_dir: Path, sample_ids: list[str], tmp_path: Path) -> Path:
    """Eight real images + one missing file + one truncated file, in the shared layout."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    ids = sample_ids[:8]
    for i in ids:
        shutil.copy(data_dir / "images" / f"{i}.jpg", root / "images" / f"{i}.jpg")
    good = (root / "images" / f"{ids[0]}.jpg").read_bytes()
    (root / "images" / "CUT.jpg").write_bytes(good[:2000])
    with (root / "metadata.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "diagnosis", "age_approx", "sex", "anatom_site", "source",
                    "group_id"])
        for k, i in enumerate(ids):
            w.writerow([i, ["MEL", "NV", "BCC", "AK"][k % 4], 20 + 10 * k,
                        "male" if k % 2 else "female", "torso" if k < 6 else "", "test",
                        f"g{k // 2}"])
        w.writerow(["GONE", "NV", "", "", "", "test", "g9"])
        w.writerow(["CUT", "NV", 95, "male", "head/neck", "other", "g10"])
    return root


def test_summary_json(small_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["data", "summary", str(small_dataset), "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)  # exactly one JSON object on stdout (the progress bar is on stderr)
    assert d["n_images"] == 10
    assert d["n_errors"] == 2
    assert d["n_ok"] == 8
    assert d["by_diagnosis"] == {**dict.fromkeys(README_COUNTS, 0), "MEL": 2, "NV": 4,
                                 "BCC": 2, "AK": 2}
    assert d["by_source"] == {"test": 9, "other": 1}
    assert d["by_sex"] == {"male": 5, "female": 4, "missing": 1}
    assert d["by_site"] == {"torso": 6, "head/neck": 1, "missing": 3}
    assert d["age_histogram"]["20-29"] == 1
    assert d["age_histogram"]["90+"] == 2
    assert d["age_histogram"]["missing"] == 1
    assert d["missing"]["age"] == 0.1
    assert d["missing"]["site"] == 0.3
    assert d["n_groups"] == 6
    assert d["image_sizes"] == {"256x256": 8}
    assert any("GONE" in e and "image file not found" in e for e in d["errors"])
    assert any("CUT" in e and "truncated JPEG" in e for e in d["errors"])


def test_summary_no_verify_does_not_open_images(
    small_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["data", "summary", str(small_dataset), "--json", "--no-verify"], capsys)
    d = json.loads(out)
    assert code == 0
    assert d["verified"] is False
    assert d["n_errors"] == 1  # only the missing file; the truncated one is not decoded
    assert d["image_sizes"] == {}


def test_summary_tables(small_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["data", "summary", str(small_dataset), "--no-progress"], capsys)
    assert code == 0
    assert "images: 10" in out
    assert "unreadable/invalid rows: 2" in out
    assert "MEL" in out
    assert "truncated JPEG" in out


def test_summary_plot(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "out" / "summary.png"
    code, out, err = run(
        ["data", "summary", str(small_dataset), "--json", "--plot", str(png)], capsys
    )
    assert code == 0, err
    assert json.loads(out)["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_of_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["data", "summary", str(tmp_path / "nowhere")], capsys)
    assert code == EXIT_USER
    assert out == ""
    assert err.strip() == f"error: not found: {tmp_path / 'nowhere'}"


def test_summary_of_csv_missing_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("file_name,diagnosis\nx.jpg,NV\n")
    code, _, err = run(["data", "summary", str(p), "--no-progress"], capsys)
    assert code == EXIT_USER
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: bad.csv is missing required columns")


def test_split_cli(small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_csv = tmp_path / "folds.csv"
    code, _, err = run(
        ["data", "split", str(small_dataset / "metadata.csv"), "--folds", "2",
         "--group-col", "group_id", "--seed", "0", "--out", str(out_csv)],
        capsys,
    )
    assert code == 0, err
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10
    assert set(rows[0]) == {"image_id", "fold"}
    assert {r["fold"] for r in rows} == {"0", "1"}
    assert "grouped by group_id" in err
    # Same seed, same folds, on stdout this time.
    code, out, _ = run(
        ["data", "split", str(small_dataset / "metadata.csv"), "--folds", "2"], capsys
    )
    assert code == 0
    assert list(csv.DictReader(out.splitlines())) == rows


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--group-col", "nope"], "error: group column 'nope' is not in the CSV"),
        (["--folds", "20"], "error: cannot make 20 folds from 6 groups"),
    ],
)
def test_split_user_errors(
    small_dataset: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, _, err = run(["data", "split", str(small_dataset / "metadata.csv"), *extra], capsys)
    assert code == EXIT_USER
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1


def test_split_missing_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["data", "split", str(tmp_path / "x.csv")], capsys)
    assert code == EXIT_USER
    assert err.strip() == f"error: CSV not found: {tmp_path / 'x.csv'}"


def test_installed_command_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "dermsight"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                           "from dermsight.cli import main; main()"]
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,melanoma\nISIC_1,1\n")
    proc = subprocess.run(
        [*cmd, "data", "summary", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: bad.csv looks like ISIC 2017 ground truth but is missing required column "
        "seborrheic_keratosis"
    )


@pytest.mark.slow
def test_summary_of_the_shared_dataset(data_dir: Path) -> None:
    exe = Path(sys.executable).parent / "dermsight"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                           "from dermsight.cli import main; main()"]
    proc = subprocess.run(
        [*cmd, "data", "summary", str(data_dir), "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    d = json.loads(proc.stdout)
    assert d["n_images"] == 12394
    assert d["n_errors"] == 0
    assert d["by_diagnosis"] == README_COUNTS
    assert d["by_source"] == {"ham10000": 10013, "isic2017": 1430, "isic2019": 749,
                              "isic_archive": 201, "isic2016": 1}
    assert d["n_groups"] == 9835
    # README: age 95.9 %, sex 96.1 %, site 84.8 % complete.
    assert round(1 - d["missing"]["age"], 3) == 0.959
    assert round(1 - d["missing"]["sex"], 3) == 0.961
    assert round(1 - d["missing"]["site"], 3) == 0.848


@pytest.mark.parametrize("as_json", [False, True])
def test_summary_of_a_folder_without_images_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], as_json: bool) -> None:
    """A wrong or empty folder was summarised as a dataset of 0 images, exit 0."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image\n")
    code, out, err = run(["data", "summary", str(empty), "--no-progress",
                          *(["--json"] if as_json else [])], capsys)
    assert code == 2
    assert out == ""
    assert err.strip() == (f"error: no images found in {empty}: a dataset is a folder of images "
                           "(.jpg, .png, ... or .dcm, with or without a metadata.csv), a CSV, "
                           "DICOM files or TFRecord shards")
