"""A CSV manifest whose rows would be silently wrong or missing is refused before anything is
scored or any output folder is made: a stray quote that runs on over the rows after it, a line
that is no UTF-8 (a CSV saved as Windows-1252), a column named twice, rows with more fields than
the header; a UTF-16 manifest leaves no output folder behind. A quoted value with a line break
in a column that is not read stays legal. DICOM files listed in a manifest get the source and
group (PatientID) that the folder reader gives them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cli_support import run
from dermsight.batch.sources import open_source
from dermsight.io import iter_records
from dermsight.io.errors import ReaderError


@pytest.fixture(scope="module")
def images(data_dir: Path, metadata: pd.DataFrame) -> list[Path]:
    """12 real images of the shared data, by image id."""
    ids = sorted(metadata["image_id"])[:12]
    return [data_dir / "images" / f"{i}.jpg" for i in ids]


def _rows(images: list[Path]) -> list[str]:
    return [f"{p},q{n},40" for n, p in enumerate(images)]


def _manifest(path: Path, header: str, rows: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes((header + "\n" + "\n".join(rows) + "\n").encode(encoding))
    return path


def _refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, manifest: Path) -> str:
    """``dermsight batch MANIFEST --out OUT``: exit 2, one ``error:`` line (returned), no OUT."""
    out = tmp_path / "out"
    code, _stdout, err = run(capsys, "batch", str(manifest), "--out", str(out), "-q",
                             "--workers", "1")
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    return lines[0]


# --- 1. a quote that runs on -------------------------------------------------------------------


def test_a_stray_quote_that_runs_to_the_end_stops_the_job(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(images)
    rows[4] = rows[4].replace(",q4,", ',"q4,')  # row 5 (line 6): its id opens a quote
    line = _refused(capsys, tmp_path, _manifest(tmp_path / "m.csv", "path,id,age", rows))
    assert "m.csv line 6: a quote (\") opens a field that runs on to the end of the file" in line
    assert "lines 7-13 would be read as part of that field" in line


def test_a_quote_that_merges_two_lines_into_an_id_stops_the_job(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The auditor's case: the id of line 4 holds line 5 (``q2,40\\n...,q3,40``), closed by a
    quote: legal CSV, but row q3 would vanish."""
    rows = _rows(images)
    rows[2] = rows[2].replace(",q2,", ',"q2,')
    rows[3] += '"'
    line = _refused(capsys, tmp_path, _manifest(tmp_path / "m.csv", "path,id,age", rows))
    assert ("m.csv line 4: a quote (\") opens a field that runs on to line 5 in the id value, "
            "so line 5 would be read as part of that field") in line


def test_a_stray_quote_closed_by_a_later_one_names_where_it_opens(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(images)
    rows[2] = rows[2].replace(",q2,", ',"q2,')
    rows[8] = rows[8].replace(",q8,", ',"q8"x,')
    line = _refused(capsys, tmp_path, _manifest(tmp_path / "m.csv", "path,id,age", rows))
    assert "m.csv line 4: a quote (\") opens a field that runs on to line 10, where" in line


def test_the_readers_refuse_it_too(images: list[Path], tmp_path: Path) -> None:
    """``evaluate``, ``data summary`` and training read through ``iter_records``: the same
    refusal, when the row is reached."""
    rows = _rows(images)
    rows[4] = rows[4].replace(",q4,", ',"q4,')
    manifest = _manifest(tmp_path / "m.csv", "path,id,age", rows)
    with pytest.raises(ReaderError, match=r"m\.csv line 6: a quote"):
        list(iter_records(manifest, decode=False))


def test_a_line_break_in_a_quoted_column_not_read_is_legal(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f'{r},"seen twice,\nsee ""notes"""' for r in _rows(images[:2])]
    manifest = _manifest(tmp_path / "m.csv", "path,id,age,notes", rows)
    out = tmp_path / "out"
    code, _stdout, err = run(capsys, "batch", str(manifest), "--out", str(out), "-q",
                             "--workers", "1")
    assert code == 0, err
    from dermsight.batch.store import read_output

    got = read_output(out).sort_values("id")
    assert got["id"].tolist() == ["q0", "q1"]
    assert got["error"].isna().all(), got["error"].tolist()


# --- 2. rows with more fields than the header --------------------------------------------------


def test_rows_with_more_fields_than_the_header_are_named(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(images)
    rows[2] += ",upper, left"  # line 4: 5 fields
    rows[6] += ",x"  # line 8: 4 fields
    rows[7] += ",,"  # empty trailing fields: nothing is lost, read as it is
    line = _refused(capsys, tmp_path, _manifest(tmp_path / "m.csv", "path,id,site", rows))
    assert ("m.csv: 2 rows have more fields than the header's 3 columns "
            "(line 4 (5), line 8 (4))") in line


def test_empty_trailing_fields_are_read(images: list[Path], tmp_path: Path) -> None:
    rows = [r + ",," for r in _rows(images[:3])]
    manifest = _manifest(tmp_path / "m.csv", "path,id,age", rows)
    got = list(open_source(manifest).rows())
    assert [r["id"] for r in got] == ["q0", "q1", "q2"]
    assert [r["age"] for r in got] == [40, 40, 40]


# --- 3. not UTF-8 ------------------------------------------------------------------------------


def test_a_windows_1252_manifest_names_its_first_bad_byte(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"{r},male" for r in _rows(images[:4])]
    rows[2] = rows[2].replace(",male", ",féminin").replace(",q2,", ",café,")
    manifest = _manifest(tmp_path / "m.csv", "path,id,age,sex", rows, encoding="cp1252")
    line = _refused(capsys, tmp_path, manifest)
    assert "m.csv is not UTF-8 text (line 4: byte 0xE9 in " in line
    assert "Windows-1252" in line
    assert line.endswith("save it as CSV UTF-8")


def test_a_utf16_manifest_leaves_no_output_folder(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(tmp_path / "m.csv", "path,id,age", _rows(images[:3]), "utf-16")
    line = _refused(capsys, tmp_path, manifest)
    assert "m.csv is not UTF-8 text (it looks like UTF-16: save it as CSV UTF-8)" in line


# --- 4. a column named twice -------------------------------------------------------------------


@pytest.mark.parametrize(("header", "named"), [
    ("path,id,age,age", "the column age twice:"),
    ("path,id,Age,age", "the column age twice (Age and age)")])
def test_a_column_named_twice_is_refused(images: list[Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], header: str,
                                         named: str) -> None:
    rows = [f"{r},70" for r in _rows(images[:3])]
    line = _refused(capsys, tmp_path, _manifest(tmp_path / "m.csv", header, rows))
    assert f"m.csv has {named}" in line


# --- 5. a folder's CSV is checked as well ------------------------------------------------------


def test_a_folders_metadata_csv_is_checked_before_the_output_is_made(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    (folder / "images").mkdir(parents=True)
    for p in images[:4]:
        (folder / "images" / p.name).write_bytes(p.read_bytes())
    rows = [f"{p.stem},NV,50,female" for p in images[:4]]
    rows[1] = rows[1].replace("NV,50", 'NV,"50')
    _manifest(folder / "metadata.csv", "image_id,diagnosis,age_approx,sex", rows)
    line = _refused(capsys, tmp_path, folder)
    assert "metadata.csv line 3: a quote (\") opens a field that runs on" in line


# --- 6. DICOM files listed in a manifest -------------------------------------------------------


def test_dicom_files_in_a_manifest_get_the_folder_readers_source_and_group(
        images: list[Path], tmp_path: Path) -> None:
    from dermsight.io.decode import decode_image
    from dermsight.io.dicom import write_dicom

    folder = tmp_path / "dcm"
    folder.mkdir()
    for n, p in enumerate(images[:2]):
        write_dicom(folder / f"d{n}.dcm", decode_image(p), 40, "male", patient_id=f"PAT{n}")
    by_folder = {r["id"]: r for r in open_source(folder).rows()}
    assert {k: (r["source"], r["group"]) for k, r in by_folder.items()} == {
        "d0": ("dicom", "PAT0"), "d1": ("dicom", "PAT1")}
    manifest = _manifest(tmp_path / "m.csv", "path,id",
                         [f"{folder / 'd0.dcm'},d0", f"{folder / 'd1.dcm'},d1"])
    got = {r["id"]: (r["source"], r["group"]) for r in open_source(manifest).rows()}
    assert got == {"d0": ("dicom", "PAT0"), "d1": ("dicom", "PAT1")}
    # the manifest's own values win
    own = _manifest(tmp_path / "own.csv", "path,id,source,patient_id",
                    [f"{folder / 'd0.dcm'},d0,clinic-a,P-9", f"{folder / 'd1.dcm'},d1,,"])
    got = {r["id"]: (r["source"], r["group"]) for r in open_source(own).rows()}
    assert got == {"d0": ("clinic-a", "P-9"), "d1": ("dicom", "PAT1")}


def test_a_remote_manifest_is_checked_before_its_first_row(images: list[Path]) -> None:
    """A remote CSV (here fsspec's in-memory file system) is read to its end as soon as it is
    fetched: no row of it is handed on to be scored."""
    fsspec = pytest.importorskip("fsspec")

    rows = _rows(images[:4])
    rows[1] = rows[1].replace(",q1,", ',"q1,')
    fs = fsspec.filesystem("memory")
    fs.pipe("/csv-integrity/m.csv", ("path,id,age\n" + "\n".join(rows) + "\n").encode())
    try:
        source = open_source("memory://csv-integrity/m.csv")
        got = source.rows()
        with pytest.raises(ReaderError, match=r"m\.csv line 3: a quote"):
            next(got)
    finally:
        fs.rm("/csv-integrity", recursive=True)
