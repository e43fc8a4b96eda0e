"""Data folders and bundle paths given to the CLI and the facade, on real images.

A folder's ``metadata.csv`` that cannot be read is refused (exit 2, one line naming the file,
the reason and the way out, nothing written) by every command that reads a folder, instead of
the images being scored without the metadata the user supplied; other unreadable CSVs in a
folder (result tables, pixel dumps) are still skipped. A training run folder given where a
bundle is expected is named as such, with the path of its bundle, by every entry point.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cli_support import assert_bundle_error_line, run
from dermsight import Dermsight, taxonomy
from dermsight.batch.sources import open_source
from dermsight.batch.store import read_output
from dermsight.bundle import BundleError
from dermsight.io.errors import ReaderError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "dermsight" / "assets" / "default"
BROKEN = "foo,bar\n1,2\n"  # no column names the images
MISSING = re.escape("metadata.csv is missing required columns")
WAY_OUT = "(fix it, or move it out of the folder to use the images without metadata)"


@pytest.fixture
def rows(metadata: pd.DataFrame) -> pd.DataFrame:
    """Three real images with age, sex and site all given."""
    full = metadata[(metadata["age_approx"] != "") & (metadata["sex"] != "")
                    & (metadata["anatom_site"] != "")]
    return full.sort_values("image_id").head(3).reset_index(drop=True)


@pytest.fixture
def folder(tmp_path: Path, data_dir: Path, rows: pd.DataFrame) -> Path:
    """A folder of the three images, with no CSV yet."""
    root = tmp_path / "clinic"
    root.mkdir()
    for i in rows["image_id"]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", root / f"{i}.jpg")
    return root


def refused(code: int, err: str, name: str = "metadata.csv") -> str:
    """The one ``error:`` line of a command refused for the folder's broken ``name``."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert f"{name} is missing required columns" in lines[0] or f"{name} is empty" in lines[0]
    assert lines[0].endswith(WAY_OUT)
    return lines[0]


@pytest.mark.parametrize(("name", "text"), [
    ("metadata.csv", BROKEN),
    ("Metadata.CSV", BROKEN),
    ("metadata.tsv", BROKEN.replace(",", "\t")),
    ("metadata.csv", ""),
])
def test_batch_refuses_a_folder_whose_metadata_csv_cannot_be_read(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path, name: str,
        text: str) -> None:
    (folder / name).write_text(text)
    out = tmp_path / "scores"
    code, _, err = run(capsys, "batch", str(folder), "--out", str(out), "-q")
    assert str(folder) in refused(code, err, name)
    assert not out.exists()


def test_the_fixed_metadata_csv_is_scored_with_its_metadata(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path,
        rows: pd.DataFrame) -> None:
    (folder / "metadata.csv").write_text(BROKEN)
    code, _, err = run(capsys, "batch", str(folder), "--out", str(tmp_path / "s0"), "-q")
    refused(code, err)
    rows[["image_id", "age_approx", "sex", "anatom_site"]].to_csv(folder / "metadata.csv",
                                                                  index=False)
    out = tmp_path / "scores"
    code, _, err = run(capsys, "batch", str(folder), "--out", str(out), "-q")
    assert code == 0, err
    scored = read_output(out).set_index("id").loc[rows["image_id"]]
    assert scored["error"].isna().all()
    assert scored["age"].tolist() == [taxonomy.normalize_age(a) for a in rows["age_approx"]]
    assert scored["sex"].tolist() == [taxonomy.normalize_sex(s) for s in rows["sex"]]
    assert scored["site"].tolist() == [taxonomy.normalize_site(s) for s in rows["anatom_site"]]


def test_an_unrelated_broken_csv_is_skipped_as_before(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path,
        rows: pd.DataFrame) -> None:
    (folder / "results.csv").write_text(BROKEN)
    (folder / "metadata.csv").write_text(BROKEN)
    code, _, err = run(capsys, "batch", str(folder), "--out", str(tmp_path / "s0"), "-q")
    refused(code, err)  # the metadata.csv is named, not the results table
    (folder / "metadata.csv").unlink()  # the way out: the images without metadata
    out = tmp_path / "scores"
    code, _, err = run(capsys, "batch", str(folder), "--out", str(out), "-q")
    assert code == 0, err
    scored = read_output(out)
    assert sorted(scored["id"]) == sorted(rows["image_id"])
    assert scored["error"].isna().all()
    assert scored["age"].isna().all()


def test_every_folder_reader_refuses_it_before_writing(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path) -> None:
    (folder / "metadata.csv").write_text(BROKEN)
    out = tmp_path / "evaluation"
    code, _, err = run(capsys, "evaluate", str(SHIPPED), str(folder), "--out", str(out))
    refused(code, err)
    assert not out.exists()
    code, _, err = run(capsys, "data", "summary", str(folder), "--no-progress", "--no-verify")
    refused(code, err)
    # the batch engines' source (Spark lists it on the driver as the local runner does)
    with pytest.raises(ReaderError, match=MISSING):
        open_source(folder)
    # bundle adapt: refused before it claims OUT.scores for the network (nothing is written)
    adapted = tmp_path / "adapted"
    code, _, err = run(capsys, "bundle", "adapt", str(folder), "--out", str(adapted),
                       "--name", "Clinic A")
    refused(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clinic"]


def test_a_training_data_folder_with_a_broken_metadata_csv_is_a_config_error(
        folder: Path) -> None:
    from dermsight.train.config import ConfigError
    from dermsight.train.table import dataset_csv

    (folder / "metadata.csv").write_text(BROKEN)
    with pytest.raises(ConfigError) as exc:
        dataset_csv(folder)
    assert str(exc.value) == (
        f"data folder {folder}: metadata.csv is missing required columns: no column names "
        f"the images; expected one of image_id, image_name, image, isic_id, id, path (found: "
        f"foo, bar) {WAY_OUT}")


# --- a training run folder given for its bundle -------------------------------------------------


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """What ``dermsight train --out runs/x`` leaves: the bundle in ``runs/x/bundle``."""
    root = tmp_path / "runs" / "x"
    root.mkdir(parents=True)
    (root / "bundle").symlink_to(SHIPPED, target_is_directory=True)
    (root / "config.json").write_text("{}\n")
    return root


def hint(run_dir: Path) -> str:
    return f"{run_dir} is a training run folder, not a bundle: its bundle is {run_dir / 'bundle'}"


def test_every_entry_point_names_the_bundle_of_a_run_folder(
        capsys: pytest.CaptureFixture[str], run_dir: Path, folder: Path, tmp_path: Path,
        sample_image: Path) -> None:
    out = tmp_path / "scores"
    for args in (("batch", str(folder), "--model", str(run_dir), "--out", str(out), "-q"),
                 ("predict", "--model", str(run_dir), str(sample_image)),
                 ("bundle", "verify", str(run_dir)),
                 ("evaluate", str(run_dir), str(folder), "--out", str(out))):
        code, _, err = run(capsys, *args)
        assert_bundle_error_line(code, err, hint(run_dir))
        assert not out.exists(), args
    with pytest.raises(BundleError) as exc:
        Dermsight(run_dir)
    assert str(exc.value) == hint(run_dir)
    assert Dermsight(run_dir / "bundle").classes  # the way out: the bundle it names loads


def test_evaluate_refuses_a_folder_that_is_no_bundle_before_writing(
        capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path,
        rows: pd.DataFrame) -> None:
    rows[["image_id", "diagnosis"]].to_csv(folder / "metadata.csv", index=False)
    out = tmp_path / "evaluation"
    code, _, err = run(capsys, "evaluate", str(folder), str(folder), "--out", str(out))
    assert_bundle_error_line(code, err, f"{folder} is not a dermsight bundle: no card.json")
    assert not out.exists()
