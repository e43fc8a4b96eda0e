"""A researcher's own cohort (``image,diagnosis,age,sex,location,patient_no``) on its way into
dermsight: byte-identical images under different patients are kept on one side of every split
(``data split``, ``train``) and counted by ``data summary``; ``data split`` refuses to make
image-level folds when a column looks like the patient column; training says which metadata
columns it does not read; British spellings and plurals of a diagnosis are read, and the
refusal of an unknown one lists what is accepted. Real images, copied into tmp_path."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dermsight import taxonomy
from dermsight.cli import app
from dermsight.cli.errors import run_guarded
from dermsight.splits import split_csv
from dermsight.train.config import ConfigError, DataConfig
from dermsight.train.table import assign_split, load_table

HEADER = ["image", "diagnosis", "age", "sex", "location", "patient_no"]
N_PATIENTS = 24  # two images each: enough groups for the 20-fold test / val / train split


def _cohort(root: Path, data_dir: Path, metadata: pd.DataFrame, *, patient_col: str = "patient_no",
            site_col: str = "location", copy_of_first: bool = True,
            diagnoses: dict[int, str] | None = None) -> Path:
    """A cohort folder: 2 x ``N_PATIENTS`` real images (nevi and melanomas, two per patient),
    ``images/HOSP<k>.jpg``; with ``copy_of_first``, one more row whose file is a byte copy of
    HOSP0000's under a patient of its own (P999). ``diagnoses``: row -> diagnosis as written."""
    picks = pd.concat([
        metadata[metadata["diagnosis"] == "NV"].sort_values("image_id").head(N_PATIENTS),
        metadata[metadata["diagnosis"] == "MEL"].sort_values("image_id").head(N_PATIENTS),
    ])
    (root / "images").mkdir(parents=True)
    rows = []
    for k, (image_id, dx) in enumerate(zip(picks["image_id"], picks["diagnosis"], strict=True)):
        name = f"HOSP{k:04d}"
        shutil.copyfile(data_dir / "images" / f"{image_id}.jpg", root / "images" / f"{name}.jpg")
        written = (diagnoses or {}).get(k, "nevus" if dx == "NV" else "melanoma")
        rows.append([name, written, str(30 + k % 40), "FM"[k % 2], "back", f"P{k // 2:03d}"])
    if copy_of_first:
        shutil.copyfile(root / "images" / "HOSP0000.jpg", root / "images" / "HOSP9000.jpg")
        rows.append(["HOSP9000", rows[0][1], rows[0][2], rows[0][3], "back", "P999"])
    with (root / "metadata.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([patient_col if c == "patient_no" else site_col if c == "location" else c
                    for c in HEADER])
        w.writerows(rows)
    return root / "metadata.csv"


# --- 1. byte-identical images under different patients ----------------------------------------


def test_identical_files_are_found_by_content(tmp_path: Path, data_dir: Path,
                                              sample_ids: list[str]) -> None:
    from dermsight.splits import identical_files, merge_identical

    files = []
    for k, i in enumerate(sample_ids[:3]):
        files.append(tmp_path / f"{k}.jpg")
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", files[-1])
    shutil.copyfile(files[1], tmp_path / "copy.jpg")
    paths = [str(f) for f in files] + [str(tmp_path / "copy.jpg"), None, str(tmp_path / "gone")]
    assert identical_files(paths) == [[1, 3]]
    # groups: merged transitively, into the smallest id; no copy across groups: unchanged
    assert merge_identical(["b", "c", "a", "d"], [[0, 1], [1, 2]]) == (["a", "a", "a", "d"],
                                                                       [[0, 1], [1, 2]])
    assert merge_identical(["a", "a", "b"], [[0, 1]]) == (["a", "a", "b"], [])


def test_data_split_keeps_identical_files_in_one_fold(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = _cohort(tmp_path / "cohort", data_dir, metadata)
    a = split_csv(csv_path, 5, group_col="patient_no", seed=0)
    by_id = dict(zip(a.ids, zip(a.groups, a.folds, strict=True), strict=True))
    assert by_id["HOSP0000"] == by_id["HOSP9000"]  # one group, so one fold
    assert by_id["HOSP0001"][0] == by_id["HOSP0000"][0]  # P000's other image goes with it
    assert any("byte-identical" in w and "HOSP0000 (P000) = HOSP9000 (P999)" in w
               for w in a.warnings)
    code = run_guarded(app, ["data", "split", str(csv_path), "--group-col", "patient_no",
                             "--out", str(tmp_path / "folds.csv")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: metadata.csv: 1 set of byte-identical image files" in err


def test_training_split_keeps_identical_files_on_one_side(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = _cohort(tmp_path / "cohort", data_dir, metadata, patient_col="patient_id",
                   site_col="site").parent
    cfg = DataConfig(root=str(root), group_col="patient_id", classes=["MEL", "NV"])
    df = load_table(cfg)
    df["split"] = assign_split(df, cfg)
    pair = df.set_index("image_id").loc[["HOSP0000", "HOSP9000"]]
    assert pair["patient_id"].nunique() == 1
    assert pair["split"].nunique() == 1
    err = capsys.readouterr().err
    assert "1 set of byte-identical image files" in err
    assert "HOSP9000 (P999)" in err


def test_summary_counts_identical_files(tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = _cohort(tmp_path / "cohort", data_dir, metadata).parent
    code = run_guarded(app, ["data", "summary", str(root), "--json", "--no-verify",
                             "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    dup = json.loads(out)["duplicate_files"]
    assert dup == {"count": 1, "n_images": 2, "n_across_groups": 1,
                   "examples": [["HOSP0000", "HOSP9000"]],
                   "examples_across_groups": [["HOSP0000", "HOSP9000"]]}
    assert "byte-identical" in err


def test_summary_names_a_set_under_different_groups(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A copy within one patient (HOSP0000 = HOSP8000, both P000) comes first in the folder; the
    set the summary names as 'under different groups' is the one that is (HOSP0002 of P001 =
    HOSP8001 of P998)."""
    csv_path = _cohort(tmp_path / "cohort", data_dir, metadata, patient_col="patient_id",
                       copy_of_first=False)
    images = csv_path.parent / "images"
    shutil.copyfile(images / "HOSP0000.jpg", images / "HOSP8000.jpg")
    shutil.copyfile(images / "HOSP0002.jpg", images / "HOSP8001.jpg")
    with csv_path.open("a", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["HOSP8000", "nevus", "30", "F", "back", "P000"])
        w.writerow(["HOSP8001", "nevus", "32", "F", "back", "P998"])
    args = ["data", "summary", str(csv_path.parent), "--no-verify", "--no-progress"]
    assert run_guarded(app, args) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "byte-identical image files" in x)
    assert "2 sets (4 images), 1 of them under different groups (e.g. HOSP0002 = HOSP8001)" \
        in line, line
    assert run_guarded(app, [*args, "--json"]) == 0
    dup = json.loads(capsys.readouterr().out)["duplicate_files"]
    assert dup["examples"] == [["HOSP0002", "HOSP8001"], ["HOSP0000", "HOSP8000"]]
    assert dup["examples_across_groups"] == [["HOSP0002", "HOSP8001"]]


def test_no_copies_leave_the_folds_as_they_were(tmp_path: Path, data_dir: Path,
                                                metadata: pd.DataFrame) -> None:
    csv_path = _cohort(tmp_path / "cohort", data_dir, metadata, copy_of_first=False)
    a = split_csv(csv_path, 5, group_col="patient_no", seed=0)
    assert a.groups == [f"P{k // 2:03d}" for k in range(2 * N_PATIENTS)]
    assert a.warnings == []


# --- 2. data split: a patient column of another name ------------------------------------------


def test_data_split_refuses_image_folds_beside_a_patient_column(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = _cohort(tmp_path / "cohort", data_dir, metadata, copy_of_first=False)
    out = tmp_path / "folds.csv"
    code = run_guarded(app, ["data", "split", str(csv_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "patient_no" in err
    assert "--group-col patient_no" in err
    assert "--group-col none" in err
    assert not out.exists()
    # image by image on purpose
    code = run_guarded(app, ["data", "split", str(csv_path), "--group-col", "none",
                             "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "(grouped by image)" in err
    assert len(pd.read_csv(out)) == 2 * N_PATIENTS


@pytest.mark.parametrize("column", ["patient_no", "case_num", "subjectId", "PatientID", "patient"])
def test_data_split_refuses_beside_an_identifier_column(
        tmp_path: Path, column: str, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text(f"image_id,diagnosis,{column}\nA,NV,1\nB,MEL,2\nC,NV,3\nD,MEL,4\n",
                        encoding="utf-8")
    code = run_guarded(app, ["data", "split", str(csv_path), "--folds", "2",
                             "--out", str(tmp_path / "f.csv")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--group-col {column}" in err


def test_data_split_takes_no_metadata_column_for_a_patient_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """patient_age and patient_sex are read as age and sex; lesion_site and case_note name no
    patient: the folds are made image by image, with the warning, not refused (and
    ``--group-col patient_age`` is not suggested)."""
    from dermsight.splits import group_candidates

    header = "image_id,diagnosis,patient_age,patient_sex,lesion_site,case_note,localization"
    csv_path = tmp_path / "p.csv"
    csv_path.write_text(f"{header}\nA,NV,40,male,back,x,back\nB,MEL,50,female,back,y,back\n"
                        "C,NV,40,male,arm,z,arm\nD,MEL,60,female,arm,w,arm\n", encoding="utf-8")
    assert group_candidates(header.split(",")) == []
    out = tmp_path / "f.csv"
    code = run_guarded(app, ["data", "split", str(csv_path), "--folds", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "images of one patient may land in different folds" in err
    assert "--group-col patient_age" not in err
    assert sorted(pd.read_csv(out)["image_id"]) == ["A", "B", "C", "D"]


def test_data_split_without_any_group_column_warns(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = _cohort(tmp_path / "cohort", data_dir, metadata, patient_col="clinic",
                       copy_of_first=False)
    code = run_guarded(app, ["data", "split", str(csv_path), "--out", str(tmp_path / "f.csv")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning:" in err
    assert "images of one patient may land in different folds" in err


# --- 3. training names the metadata columns it does not read ----------------------------------


def test_training_notes_a_site_column_it_does_not_read(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> None:
    root = _cohort(tmp_path / "cohort", data_dir, metadata, patient_col="patient_id",
                   copy_of_first=False).parent
    notes: list[str] = []
    load_table(DataConfig(root=str(root), group_col="patient_id", classes=["MEL", "NV"]), notes)
    site = [n for n in notes if "has no site column" in n]
    assert len(site) == 1
    assert "its columns not read: location" in site[0]


# --- 4. diagnosis spellings -------------------------------------------------------------------


@pytest.mark.parametrize(("written", "code"), [
    ("naevus", "NV"), ("Naevus", "NV"), ("naevi", "NV"), ("nevi", "NV"),
    ("melanocytic naevus", "NV"), ("Melanocytic nevi", "NV"),
    ("seborrhoeic keratosis", "BKL"), ("angioma", "VASC"),
])
def test_british_spellings_and_plurals_are_read(written: str, code: str) -> None:
    assert taxonomy.normalize_diagnosis(written) == code


def test_sk_stays_unread() -> None:
    with pytest.raises(taxonomy.TaxonomyError, match="unknown diagnosis 'SK'"):
        taxonomy.normalize_diagnosis("SK")


def test_training_refusal_lists_the_accepted_spellings(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> None:
    root = _cohort(tmp_path / "cohort", data_dir, metadata, patient_col="patient_id",
                   copy_of_first=False, diagnoses={0: "naevus", 1: "psoriasis"}).parent
    with pytest.raises(ConfigError) as err:
        load_table(DataConfig(root=str(root), group_col="patient_id", classes=["MEL", "NV"]))
    text = str(err.value)
    assert "unknown diagnosis 'psoriasis'" in text
    assert "naevus'" not in text
    assert "nevus / naevus" in text
    assert "docs/batch.md" in text


def test_a_run_split_before_the_merge_is_told_why_its_split_moved(tmp_path: Path) -> None:
    """A run trained before byte-identical images' groups were merged finds its images in other
    splits with the same data: the refusal says that the merge may be why (it read as if the
    data had changed)."""
    import pandas as pd

    from dermsight.train.config import ConfigError
    from dermsight.train.pipeline import check_same_split

    pd.DataFrame({"image_id": ["a", "b"], "split": ["train", "val"],
                  "diagnosis": ["NV", "MEL"]}).to_csv(tmp_path / "split.csv", index=False)
    now = pd.DataFrame({"image_id": ["a", "b"], "split": ["train", "train"],
                        "diagnosis": ["NV", "MEL"]})
    with pytest.raises(ConfigError, match="byte-identical image files are merged"):
        check_same_split(now, tmp_path)
    gone = now.iloc[:1]
    with pytest.raises(ConfigError) as refused:
        check_same_split(gone, tmp_path)
    assert "byte-identical" not in str(refused.value)  # data that did change: no such hint
