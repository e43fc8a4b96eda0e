"""``data.group_col`` over several data folders: a folder without that column is split by its
own group_id / lesion_id / patient_id column (one that splits no patient or lesion), said per
folder and recorded for the card; a name no folder has, and a folder that cannot be grouped
without splitting a patient, are refused with a hint that names the folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from dermsight.train.config import ConfigError, DataConfig
from dermsight.train.table import load_table

#: the table column naming the column each image was grouped by (train.table.GROUPED_BY)
GROUPED_BY = "grouped_by"
CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]


def _folder(root: Path, data_dir: Path, rows: pd.DataFrame,
            columns: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    """A data folder over real images: ``columns(rows)`` is its metadata.csv."""
    (root / "images").mkdir(parents=True)
    for i in rows["image_id"]:
        (root / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
    columns(rows.reset_index(drop=True)).to_csv(root / "metadata.csv", index=False)
    return root


@pytest.fixture
def rows(metadata: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two disjoint sets of 30 labelled images of the configured classes."""
    usable = metadata[metadata["diagnosis"].isin(CLASSES)].sort_values("image_id")
    return usable.iloc[:30], usable.iloc[30:60]


def _patients_only(df: pd.DataFrame) -> pd.DataFrame:
    """A clinic cohort: its own spelling of the patient column, no group or lesion column."""
    return pd.DataFrame({"image_id": df["image_id"], "diagnosis": df["diagnosis"],
                         "Patient_ID": [f"PAT{i // 3}" for i in range(len(df))]})


def _with_groups(df: pd.DataFrame) -> pd.DataFrame:
    return df[["image_id", "diagnosis", "group_id", "lesion_id", "patient_id"]]


def test_a_folder_without_the_group_column_is_split_by_its_own(
        rows: tuple[pd.DataFrame, pd.DataFrame], data_dir: Path, tmp_path: Path) -> None:
    from dermsight.train import table
    from dermsight.train.finalize.card import group_cols_by_folder

    assert table.GROUPED_BY == GROUPED_BY
    cohort = _folder(tmp_path / "cohort", data_dir, rows[0], _patients_only)
    shared = _folder(tmp_path / "shared", data_dir, rows[1], _with_groups)
    notes: list[str] = []
    df = load_table(DataConfig(root=[str(cohort), str(shared)], classes=CLASSES), notes=notes)
    assert group_cols_by_folder(df) == {"cohort": "Patient_ID", "shared": "group_id"}
    # the group key: one patient's three images share one group
    mine = df[df["root"] == "cohort"]
    assert mine["group_id"].tolist() == [f"cohort:PAT{i // 3}" for i in range(30)]
    assert mine.groupby("Patient_ID")["group_id"].nunique().max() == 1
    theirs = df[df["root"] == "shared"]
    assert (theirs["group_id"] == "shared:" + rows[1]["group_id"].to_numpy()).all()
    assert set(theirs[GROUPED_BY]) == {"group_id"}
    line = next(n for n in notes if "group column" in n)
    assert "cohort by Patient_ID (it has no group_id column); shared by group_id" in line
    # every folder with the column: no note, nothing to record beyond data.group_col
    notes.clear()
    df = load_table(DataConfig(root=[str(shared)], classes=CLASSES), notes=notes)
    assert not any("group column" in n for n in notes)
    assert group_cols_by_folder(df) == {"shared": "group_id"}


def test_the_fallback_never_splits_a_patient(
        rows: tuple[pd.DataFrame, pd.DataFrame], data_dir: Path, tmp_path: Path) -> None:
    """Lesions nested in patients: grouping by lesion_id would put one patient's lesions in
    two splits, so the folder is grouped by patient_id."""
    def lesions_of_patients(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"image_id": df["image_id"], "diagnosis": df["diagnosis"],
                             "lesion_id": [f"LES{i}" for i in range(len(df))],
                             "patient_id": [f"PAT{i // 3}" for i in range(len(df))]})

    nested = _folder(tmp_path / "nested", data_dir, rows[0], lesions_of_patients)
    shared = _folder(tmp_path / "shared", data_dir, rows[1], _with_groups)
    df = load_table(DataConfig(root=[str(nested), str(shared)], classes=CLASSES))
    part = df[df["root"] == "nested"]
    assert set(part[GROUPED_BY]) == {"patient_id"}
    assert part.groupby("patient_id")["group_id"].nunique().max() == 1


def test_a_folder_that_cannot_be_grouped_safely_is_refused(
        rows: tuple[pd.DataFrame, pd.DataFrame], data_dir: Path, tmp_path: Path) -> None:
    def chained(df: pd.DataFrame) -> pd.DataFrame:  # lesions across patients and back
        return pd.DataFrame({"image_id": df["image_id"], "diagnosis": df["diagnosis"],
                             "lesion_id": [f"L{i // 2}" for i in range(len(df))],
                             "patient_id": [f"P{(i + 1) // 2}" for i in range(len(df))]})

    bad = _folder(tmp_path / "bad", data_dir, rows[0], chained)
    shared = _folder(tmp_path / "shared", data_dir, rows[1], _with_groups)
    with pytest.raises(ConfigError) as err:
        load_table(DataConfig(root=[str(bad), str(shared)], classes=CLASSES))
    msg = str(err.value)
    assert f"{bad / 'metadata.csv'} has no group_id column" in msg
    assert "would split one patient or lesion" in msg
    assert "add a group_id column to it" in msg


def test_a_group_column_no_folder_has_names_each_folders_column(
        rows: tuple[pd.DataFrame, pd.DataFrame], data_dir: Path, tmp_path: Path) -> None:
    cohort = _folder(tmp_path / "cohort", data_dir, rows[0], _patients_only)
    shared = _folder(tmp_path / "shared", data_dir, rows[1], _with_groups)
    with pytest.raises(ConfigError) as err:
        load_table(DataConfig(root=[str(cohort), str(shared)], classes=CLASSES,
                              group_col="subject"))
    msg = str(err.value)
    assert "group column 'subject' is in none of the data folders' CSVs" in msg
    assert f"{cohort / 'metadata.csv'}: Patient_ID" in msg
    assert f"{shared / 'metadata.csv'}: " in msg


def test_a_leak_hint_names_the_folders_without_the_suggested_column(
        rows: tuple[pd.DataFrame, pd.DataFrame], data_dir: Path, tmp_path: Path) -> None:
    """data.group_col=patient_id over a folder whose patient_id is empty where its lesion_id
    is not (as in the shared ISIC subset): the hint says lesion_id, and which folders have
    none (they then fall back to their own column)."""
    def sparse_patients(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"image_id": df["image_id"], "diagnosis": df["diagnosis"],
                             "lesion_id": [f"L{i // 2}" for i in range(len(df))],
                             "patient_id": ""})

    cohort = _folder(tmp_path / "cohort", data_dir, rows[0], _patients_only)
    sparse = _folder(tmp_path / "sparse", data_dir, rows[1], sparse_patients)
    with pytest.raises(ConfigError) as err:
        load_table(DataConfig(root=[str(cohort), str(sparse)], classes=CLASSES,
                              group_col="patient_id"))
    msg = str(err.value)
    assert "15 lesion_id values have images in more than one patient_id group" in msg
    assert "set data.group_col=lesion_id (the data folders without a lesion_id column, " \
           "cohort, are then each split by their own" in msg
    # following it works: the cohort falls back to its patient column
    df = load_table(DataConfig(root=[str(cohort), str(sparse)], classes=CLASSES,
                               group_col="lesion_id"))
    assert df.groupby("root")[GROUPED_BY].first().to_dict() == {"cohort": "Patient_ID",
                                                                 "sparse": "lesion_id"}


def test_one_folder_without_the_column_is_still_refused(
        rows: tuple[pd.DataFrame, pd.DataFrame], data_dir: Path, tmp_path: Path) -> None:
    """A single folder has no other to take the column from: a wrong name is a mistake."""
    cohort = _folder(tmp_path / "cohort", data_dir, rows[0], _patients_only)
    with pytest.raises(ConfigError, match=r"group column 'group_id' is not in the CSV .*"
                                          r"\(here: Patient_ID\)"):
        load_table(DataConfig(root=str(cohort), classes=CLASSES))
