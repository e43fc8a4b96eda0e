"""Metadata audit: one reading of age, sex and site in every path.

1. An age with a month, week or day unit ("60m", "8w", "12d", "006M") was read as months,
   weeks or days everywhere (``predict --age 60m`` scored age 5 without a word); those units
   are read only from a DICOM file's PatientAge now, and refused elsewhere (422 / exit 2), left
   out and flagged in data files. An age with a year unit ("55y", "55 years") is read, flagged
   ``metadata_normalised``.
2. The placeholders for "not known" ("N/A", "NA", "?", "-", "NaN", "none", "null") read alike:
   not given, flagged ``metadata_ignored``; "1_0" is refused (it was read as 10).
3. ``dermsight train`` names sex and site values it cannot use in a note, as it does ages.
4. ``dermsight data summary`` counts invalid values apart from missing ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cli_support import run
from dermsight import Dermsight, taxonomy
from dermsight.records import IGNORED, NORMALISED, Metadata
from dermsight.taxonomy import TaxonomyError

IN_YEARS = "give the age in years"
OTHER_UNITS = ["60m", "60M", "12d", "8w", "006M", "060 months", "3 weeks"]
PLACEHOLDERS = ["N/A", "n/a", "NA", "?", "-", " ? ", "NaN", "none", "NULL"]


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.fixture(scope="module")
def lesion(data_dir: Path, sample_ids: list[str]) -> Path:
    return data_dir / "images" / f"{sample_ids[0]}.jpg"


# --- 1. units ------------------------------------------------------------------------------------


@pytest.mark.parametrize("age", OTHER_UNITS)
def test_an_age_in_months_weeks_or_days_is_refused(age: str) -> None:
    with pytest.raises(TaxonomyError, match=IN_YEARS) as info:
        Metadata.parse(age=age)
    assert f"age {age!r}" in str(info.value)
    assert "PatientAge" in str(info.value)


@pytest.mark.parametrize("age", ["55y", "55Y", "055Y", "55 years", "55 yrs", "55 Year"])
def test_an_age_with_a_year_unit_is_read_and_noted(age: str) -> None:
    meta = Metadata.parse(age=age)
    assert meta.age == 55.0
    assert meta.notes == (("age", NORMALISED),)


def test_a_dicom_age_keeps_its_unit() -> None:
    assert taxonomy.normalize_dicom_age("006M") == 0.5
    assert taxonomy.normalize_dicom_age("045Y") == 45.0
    assert taxonomy.normalize_dicom_age("052W") == 1.0
    assert taxonomy.normalize_dicom_age("45") == 45.0
    with pytest.raises(TaxonomyError, match="outside 0-120"):
        taxonomy.normalize_dicom_age("999Y")


def test_a_dicom_files_age_in_months_is_read(model: Dermsight, lesion: Path,
                                            tmp_path: Path) -> None:
    import pydicom

    from dermsight.io import dicom

    rgb = np.asarray(Image.open(lesion).convert("RGB"))
    path = dicom.write_dicom(tmp_path / "a.dcm", rgb, age=40, sex="female")
    ds = pydicom.dcmread(path)
    ds.PatientAge = "006M"
    ds.save_as(path)
    got = model.predict(path, heatmap=False)
    assert got.meta.age == 0.5
    assert not [f for f in got.flags if f.code.startswith("metadata_")]


def test_the_facade_refuses_an_age_in_months(model: Dermsight, lesion: Path) -> None:
    with pytest.raises(TaxonomyError, match=IN_YEARS):
        model.predict(lesion, age="60m", heatmap=False)


def test_predict_refuses_an_age_in_months_exit_2(lesion: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "predict", str(lesion), "--age", "60m", "--json")
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: ")
    assert IN_YEARS in err
    assert "Traceback" not in err


def test_the_api_refuses_an_age_in_months_422(client: httpx.Client, lesion: Path) -> None:
    r = client.post("/api/v1/predict", params={"heatmap": "false"}, data={"age": "60m"},
                    files={"image": (lesion.name, lesion.read_bytes(), "image/jpeg")})
    assert r.status_code == 422, r.text
    assert IN_YEARS in r.json()["detail"]


@pytest.mark.parametrize("age", ["60m", "8w", "12d", "1_0", "250"])
def test_a_data_file_leaves_such_an_age_out_with_a_note(age: str) -> None:
    meta = Metadata.lenient(age=age, sex="male")
    assert (meta.age, meta.sex) == (None, "male")
    assert meta.notes == (("age", IGNORED),)
    assert meta.invalid == ("age",)


# --- 2. placeholders and digit grouping ---------------------------------------------------------


@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_every_placeholder_is_not_given_and_noted(value: str) -> None:
    meta = Metadata.parse(age=value, sex=value, site=value)
    assert meta == Metadata()
    assert meta.notes == (("age", IGNORED), ("sex", IGNORED), ("site", IGNORED))
    lenient = Metadata.lenient(age=value, sex=value, site=value)
    assert lenient.notes == meta.notes
    assert lenient.invalid == ()  # not given, not invalid


@pytest.mark.parametrize("age", ["1_0", "1_0y", "5_5"])
def test_digit_grouping_is_not_an_age(age: str) -> None:
    with pytest.raises(TaxonomyError, match="is not a number"):
        Metadata.parse(age=age)


# --- 3. training names sex and site values it cannot use ----------------------------------------


def _cohort(data_dir: Path, root: Path, metadata: pd.DataFrame,
            cells: list[dict[str, Any]]) -> Path:
    """A data folder of real images (symlinked): 12 good rows, then one row per ``cells``."""
    (root / "images").mkdir(parents=True)
    ids = metadata.sort_values("image_id")["image_id"].tolist()[:12 + len(cells)]
    rows = []
    for k, i in enumerate(ids):
        (root / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
        row = {"image_id": i, "diagnosis": ("NV", "MEL", "BKL")[k % 3], "age": 50,
               "sex": "male", "anatom_site": "torso", "group_id": f"g{k}"}
        rows.append({**row, **(cells[k - 12] if k >= 12 else {})})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def test_training_notes_sex_and_site_values_it_cannot_use(
        data_dir: Path, metadata: pd.DataFrame, tmp_path: Path) -> None:
    from dermsight.train.config import DataConfig
    from dermsight.train.table import load_table

    root = _cohort(data_dir, tmp_path / "c", metadata, [
        {"sex": "X"}, {"anatom_site": "moon"}, {"anatom_site": "extremity"},
        {"sex": "N/A", "anatom_site": "?"}, {"age": "60m"},
    ])
    notes: list[str] = []
    df = load_table(DataConfig(root=str(root), classes=["NV", "MEL", "BKL"]), notes)
    assert df["sex"].isna().sum() == 2
    assert df["site"].isna().sum() == 3
    said = [n for n in notes if "sex or site" in n]
    assert len(said) == 1, notes
    assert said[0].startswith("3 sex or site values in "), said[0]
    assert "(sex: 1 (lines 14); site: 2 (lines 15, 16))" in said[0], said[0]
    assert "trained on as not given" in said[0]
    ages = [n for n in notes if "ages in" in n]  # "60m" is no age in years
    assert len(ages) == 1, notes
    assert ages[0].startswith("1 ages in ")
    assert "(lines 18)" in ages[0]


# --- 4. data summary counts invalid values apart from missing ones -------------------------------


@pytest.fixture
def summary_folder(data_dir: Path, metadata: pd.DataFrame, tmp_path: Path) -> Path:
    cells: list[dict[str, Any]] = [
        {"age": -5}, {"age": 250}, {"age": "forty"}, {"age": "60m"},
        {"sex": "X"}, {"anatom_site": "moon"}, {"anatom_site": "extremity"},
        {"age": "", "sex": "", "anatom_site": ""}, {"age": "N/A", "sex": "?", "anatom_site": "-"},
    ]
    return _cohort(data_dir, tmp_path / "s", metadata, cells)


def test_data_summary_counts_invalid_values_apart(summary_folder: Path) -> None:
    from dermsight.datasummary import summarize

    d = summarize(summary_folder, verify=False).to_dict()
    assert d["n_images"] == 21
    assert d["n_invalid"] == {"age": 4, "sex": 1, "site": 2}
    assert d["by_sex"] == {"male": 18, "female": 0, "invalid": 1, "missing": 2}
    assert d["by_site"] == {"torso": 17, "invalid": 2, "missing": 2}
    assert d["age_histogram"]["invalid"] == 4
    assert d["age_histogram"]["missing"] == 2
    assert d["missing"]["age"] == round(2 / 21, 4)
    assert d["missing"]["sex"] == round(2 / 21, 4)
    assert d["age"]["mean"] == 50.0


def test_data_summary_text_shows_invalid_rows(summary_folder: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "data", "summary", str(summary_folder), "--no-verify",
                         "--no-progress")
    assert code == 0, err
    lines = [ln.split() for ln in out.splitlines()]
    assert ["invalid", "4", "19.0", "%"] in lines, out  # age
    assert ["invalid", "1", "4.8", "%"] in lines, out  # sex
    assert ["invalid", "2", "9.5", "%"] in lines, out  # site
    code, out, err = run(capsys, "data", "summary", str(summary_folder), "--no-verify",
                         "--no-progress", "--json")
    assert code == 0, err
    assert json.loads(out)["n_invalid"] == {"age": 4, "sex": 1, "site": 2}
