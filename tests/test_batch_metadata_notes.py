"""Metadata a CSV gives in a form the reader normalises ("NaN", an age in Arabic-Indic digits or
``1e2``) keeps its note through the batch manifest, so the output row carries the same
``metadata_ignored`` / ``metadata_normalised`` flags ``dermsight predict`` gives those values
(the CSV reader normalised them first, and the scorer then saw clean values: no flag)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from cli_support import run
from dermsight.batch.store import read_output
from dermsight.predict import Dermsight
from dermsight.records import IGNORED, NORMALISED, Metadata

#: id -> (age, sex, site) as written in the CSV
CELLS = {
    "plain": ("45", "male", "back"),
    "arabic": ("٤٥", "male", "back"),
    "nan": ("NaN", "null", "NaN"),
    "exp": ("1e2", "female", "back"),
}


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
             sample_ids: list[str]) -> Path:
    root = tmp_path_factory.mktemp("notes")
    rows = []
    for rid, image_id in zip(CELLS, sample_ids, strict=False):
        shutil.copy(data_dir / "images" / f"{image_id}.jpg", root / f"{rid}.jpg")
        age, sex, site = CELLS[rid]
        rows.append({"id": rid, "path": f"{rid}.jpg", "age": age, "sex": sex, "site": site})
    csv = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def _flags(value: object) -> set[str]:
    return {f for f in str(value or "").split(";") if f.startswith("metadata")}


def test_notes_round_trip_as_text() -> None:
    meta = Metadata.parse(age="٤٥", sex="null", site="NaN")
    assert set(meta.notes) == {("age", NORMALISED), ("sex", IGNORED), ("site", IGNORED)}
    text = meta.notes_text()
    assert text is not None
    clean = Metadata(age=meta.age, sex=meta.sex, site=meta.site)
    assert clean.notes == ()
    assert clean.noted_from_text(text).notes == meta.notes
    assert Metadata().notes_text() is None
    assert clean.noted_from_text(None).notes == ()
    assert clean.noted_from_text("age:bogus;colour:ignored;").notes == ()


def test_a_csv_batch_flags_normalised_metadata_like_predict(
        manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        model: Dermsight) -> None:
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(manifest), "--out", str(out), "-q")
    assert code == 0, err
    df = read_output(out).set_index("id")
    assert df["error"].isna().all(), df["error"].tolist()
    assert _flags(df.loc["plain", "flags"]) == set()
    assert _flags(df.loc["arabic", "flags"]) == {"metadata_normalised"}
    assert _flags(df.loc["nan", "flags"]) == {"metadata_ignored"}
    assert _flags(df.loc["exp", "flags"]) == {"metadata_normalised"}
    assert df.loc["arabic", "age"] == 45.0
    assert df.loc["exp", "age"] == 100.0
    assert pd.isna(df.loc["nan", "age"])
    assert df.loc["nan", "sex"] is None
    # the same flags the facade gives the values as written
    for rid, (age, sex, site) in CELLS.items():
        pred = model.predict(manifest.parent / f"{rid}.jpg", age=age, sex=sex, site=site,
                             heatmap=False)
        assert _flags(df.loc[rid, "flags"]) == {f.code for f in pred.flags
                                                if f.code.startswith("metadata")}, rid


@pytest.mark.spark
@pytest.mark.slow
def test_spark_rows_keep_the_notes(manifest: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyspark")
    out = tmp_path / "spark"
    code, _, err = run(capsys, "batch", str(manifest), "--out", str(out), "--engine", "spark",
                       "--master", "local[2]", "-q")
    assert code == 0, err
    df = read_output(out).set_index("id")
    assert _flags(df.loc["arabic", "flags"]) == {"metadata_normalised"}
    assert _flags(df.loc["nan", "flags"]) == {"metadata_ignored"}
    assert _flags(df.loc["plain", "flags"]) == set()
