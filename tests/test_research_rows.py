"""A researcher's own cohort: error rows keep their CSV metadata, unusable diagnoses are counted
as invalid (not missing) by ``dermsight data summary``, and scikit-learn's warnings about small
classes are told once in dermsight's words (``quiet_warnings.sklearn_notes``)."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from dermsight.cli import app
from dermsight.cli.errors import run_guarded

COHORT_HEADER = ["Filename", "Diagnosis", "Patient_Age", "Gender", "Body_Site", "Patient_ID",
                 "Source"]


def write_cohort(root: Path, data_dir: Path, ids: list[str],
                 rows: list[tuple[str, str, str, str, str, str]]) -> Path:
    """A cohort CSV in a clinic's own spelling (``Filename`` relative to it): row ``k`` of
    ``rows`` (diagnosis, age, sex, site, patient, source) names real image ``ids[k]``, copied
    as ``img/CLN-<1000+k>.jpg``; rows beyond ``ids`` name files that do not exist."""
    (root / "img").mkdir(parents=True)
    with (root / "cohort.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COHORT_HEADER)
        for k, row in enumerate(rows):
            name = f"img/CLN-{1000 + k}.jpg"
            if k < len(ids):
                shutil.copyfile(data_dir / "images" / f"{ids[k]}.jpg", root / name)
            w.writerow([name, *row])
    return root / "cohort.csv"


# --- error rows keep their metadata (batch / evaluate output) -----------------------------------


def test_missing_file_error_row_keeps_csv_metadata(
    data_dir: Path, sample_ids: list[str], tmp_path: Path
) -> None:
    from dermsight.batch.local import run_local
    from dermsight.batch.store import read_output

    cohort = write_cohort(tmp_path / "cohort", data_dir, sample_ids[:2], [
        ("nevus", "55", "M", "Chest", "PT000", "clinicA"),
        ("Melanoma", "62", "F", "Leg", "PT001", "clinicA"),
        ("nevus", "40", "F", "back", "PT999", "clinicB"),   # CLN-1002.jpg: no such file
    ])
    (tmp_path / "cohort" / "img" / "CLN-1003.jpg").write_bytes(b"")  # an empty file
    with cohort.open("a", newline="") as fh:
        csv.writer(fh).writerow(["img/CLN-1003.jpg", "bcc", "71", "M", "scalp", "PT998",
                                 "clinicB"])
    run_local(cohort, tmp_path / "out", progress=False)
    df = read_output(tmp_path / "out").set_index("id")
    assert not isinstance(df.loc["CLN-1000", "error"], str)  # scored
    missing = df.loc["CLN-1002"]
    assert "image file not found" in missing["error"]
    assert (missing["age"], missing["sex"], missing["site"]) == (40.0, "female",
                                                                 "posterior torso")
    assert (missing["label"], missing["group"], missing["source"]) == ("NV", "PT999", "clinicB")
    empty = df.loc["CLN-1003"]  # an error found while decoding: kept its metadata before too
    assert isinstance(empty["error"], str)
    assert (empty["age"], empty["sex"], empty["site"]) == (71.0, "male", "head/neck")
    assert (empty["label"], empty["group"], empty["source"]) == ("BCC", "PT998", "clinicB")


def test_reader_error_row_with_unusable_metadata_keeps_the_rest() -> None:
    """A reader's error row is not refused for a metadata value: the usable fields are kept."""
    from dermsight.batch.scorer import prepare_row
    from dermsight.predict import Dermsight

    model = Dermsight.load()
    prep = prepare_row(model, {"id": "x", "path": "/nowhere/x.jpg", "age": 250, "sex": "female",
                               "site": "back", "label": "NV", "group": "P1", "source": "s",
                               "error": "x.jpg: image file not found"})
    assert prep.error == "x.jpg: image file not found"
    assert (prep.meta.age, prep.meta.sex, prep.meta.site) == (None, "female", "posterior torso")
    assert (prep.label, prep.group, prep.source) == ("NV", "P1", "s")


# --- data summary: unusable diagnoses are invalid, not missing ----------------------------------


@pytest.fixture
def labelled_cohort(data_dir: Path, sample_ids: list[str], tmp_path: Path) -> Path:
    """Six real images: two usable diagnoses, three given but naming no class, one not given;
    one age that cannot be used (its value must never be printed)."""
    return write_cohort(tmp_path / "cohort", data_dir, sample_ids[:6], [
        ("nevus", "55", "M", "Chest", "PT000", "clinicA"),
        ("Melanoma", "62", "F", "Leg", "PT001", "clinicA"),
        ("Halo naevus", "40", "F", "back", "PT002", "clinicA"),
        ("Halo naevus", "41", "F", "back", "PT003", "clinicA"),
        ("Spitz nevus", "173", "M", "back", "PT004", "clinicB"),
        ("", "30", "M", "back", "PT005", "clinicB"),
    ])


def test_summary_counts_unusable_diagnoses_as_invalid(labelled_cohort: Path) -> None:
    from dermsight.datasummary import summarize

    d = summarize(labelled_cohort, verify=False).to_dict()
    assert d["n_unlabeled"] == 4  # no usable label: both kinds
    assert d["n_invalid"] == {"diagnosis": 3, "age": 1, "sex": 0, "site": 0}
    assert d["missing"]["diagnosis"] == round(1 / 6, 4)  # only the label not given
    assert d["unusable_labels"] == {"Halo naevus": 2, "Spitz nevus": 1}
    assert sum(d["by_diagnosis"].values()) == 2  # the classes' table keeps its keys


def test_summary_cli_shows_invalid_diagnoses(
    labelled_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    from dermsight.datasummary import plot_summary

    code = run_guarded(app, ["data", "summary", str(labelled_cohort), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    table = out[out.index("by diagnosis:"):out.index("by source:")]
    assert [ln.split()[:2] for ln in table.splitlines() if ln.split()[:1] == ["invalid"]] == \
        [["invalid", "3"]]
    assert "'Halo naevus' (2), 'Spitz nevus' (1)" in out
    assert "missing: diagnosis 16.7 %" in out
    assert "173" not in out  # a metadata value is never shown, only its count
    code = run_guarded(app, ["data", "summary", str(labelled_cohort), "--no-progress", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["n_invalid"]["diagnosis"] == 3
    # the chart's missing bar is d["missing"]: the labels not given only
    plot_summary(d, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


# --- scikit-learn's warnings in dermsight's words -----------------------------------------------


def test_sklearn_notes_tell_a_predicted_class_absent_from_the_truth_once() -> None:
    from sklearn.metrics import balanced_accuracy_score

    from dermsight.quiet_warnings import sklearn_notes

    said: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with sklearn_notes(said.append):
            for _ in range(3):
                balanced_accuracy_score([0, 0, 1, 1], [0, 2, 1, 1])
    assert [str(w.message) for w in seen] == []  # no raw library warning
    assert len(said) == 1
    assert "predicted classes that none of the evaluated images has" in said[0]


def test_sklearn_notes_name_the_class_too_small_for_the_folds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sklearn.model_selection import StratifiedGroupKFold

    from dermsight.quiet_warnings import sklearn_notes

    labels = np.array(["NV"] * 12 + ["MEL"] * 6 + ["DF"])
    groups = np.arange(len(labels))
    told: set[str] = set()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(2):  # e.g. once per run: told the first time only
            with sklearn_notes(labels=labels, told=told):
                list(StratifiedGroupKFold(n_splits=5).split(labels, labels, groups))
    assert [str(w.message) for w in seen] == []
    err = capsys.readouterr().err
    assert err == ("note: class DF (1 case) has fewer cases than the 5 folds: not every fold "
                   "can hold it\n")


def test_sklearn_notes_pass_other_warnings_on() -> None:
    from dermsight.quiet_warnings import sklearn_notes

    said: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with sklearn_notes(said.append):
            warnings.warn("something else", UserWarning, stacklevel=1)
            warnings.warn("The least populated class in y has only 2 members, which is less "
                          "than n_splits=3.", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]
    assert said == ["the least common class has only 2 cases, fewer than the 3 folds: not "
                    "every fold can hold it"]


def test_training_validation_metrics_say_a_missing_class_once_in_dermsights_words(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`dermsight train` printed scikit-learn's own warning line (its file and line number) each
    epoch whose validation split lacked a predicted class; now one `note:` line per run."""
    pytest.importorskip("torch")
    from dermsight.train import loop

    loop._TOLD.clear()
    labels = np.array([0, 0, 1, 1])
    logits = np.array([[2, 0, 0], [0, 0, 2], [0, 2, 0], [0, 2, 0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's own warning would fail here
        for _ in range(3):
            assert loop.quick_metrics(labels, logits, ["MEL", "NV", "BCC"])[
                "balanced_accuracy"] == 0.75
    err = capsys.readouterr().err
    assert err.count("note: the model predicted classes that none of the evaluated") == 1
    assert "sklearn" not in err
