"""A CSV manifest whose rows would be silently wrong or missing is refused before anything is
scored or any output folder is made: a stray quote that runs on over the rows after it, a line
that is no UTF-8 (a CSV saved as Windows-1252), a column named twice, rows with more fields than
the header; a UTF-16 manifest leaves no output folder behind. A quoted value with a line break
in a column that is not read stays legal. DICOM files listed in a manifest get the source and
group (a pseudonym of the PatientID) that the folder reader gives them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cli_support import run
from dermsight.batch.sources import open_source
from dermsight.io import iter_records
from dermsight.io.dicom import patient_pseudonym
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
    pat0, pat1 = patient_pseudonym("PAT0"), patient_pseudonym("PAT1")
    assert {k: (r["source"], r["group"]) for k, r in by_folder.items()} == {
        "d0": ("dicom", pat0), "d1": ("dicom", pat1)}
    manifest = _manifest(tmp_path / "m.csv", "path,id",
                         [f"{folder / 'd0.dcm'},d0", f"{folder / 'd1.dcm'},d1"])
    got = {r["id"]: (r["source"], r["group"]) for r in open_source(manifest).rows()}
    assert got == {"d0": ("dicom", pat0), "d1": ("dicom", pat1)}
    # the manifest's own values win, as given
    own = _manifest(tmp_path / "own.csv", "path,id,source,patient_id",
                    [f"{folder / 'd0.dcm'},d0,clinic-a,P-9", f"{folder / 'd1.dcm'},d1,,"])
    got = {r["id"]: (r["source"], r["group"]) for r in open_source(own).rows()}
    assert got == {"d0": ("clinic-a", "P-9"), "d1": ("dicom", pat1)}


def test_a_remote_manifest_is_checked_before_its_first_row(images: list[Path]) -> None:
    """A remote CSV (here fsspec's in-memory file system) is read to its end as soon as it is
    fetched: by ``open_source`` (before the job makes its output folder), and again when its
    rows are read (fetched again): no row of it is handed on to be scored."""
    fsspec = pytest.importorskip("fsspec")
    from dermsight.batch.sources import Source

    rows = _rows(images[:4])
    rows[1] = rows[1].replace(",q1,", ',"q1,')
    fs = fsspec.filesystem("memory")
    fs.pipe("/csv-integrity/m.csv", ("path,id,age\n" + "\n".join(rows) + "\n").encode())
    try:
        with pytest.raises(ReaderError, match=r"m\.csv line 3: a quote"):
            open_source("memory://csv-integrity/m.csv")
        got = Source("memory://csv-integrity/m.csv", "remote-csv").rows()
        with pytest.raises(ReaderError, match=r"m\.csv line 3: a quote"):
            next(got)
    finally:
        fs.rm("/csv-integrity", recursive=True)


# --- 7. a stray quote in a column that is not read ---------------------------------------------


def _ids_csv(path: Path, body: str) -> Path:
    path.write_text("image_id,dx,notes\n" + body)
    return path


SWALLOWED = ('ISIC_1,nv,"oops\nISIC_2,nv,x\nISIC_3,mel,y\nISIC_4,nv,z\nISIC_5,nv,end"\n'
             "ISIC_6,nv,ok\n")


def test_rows_swallowed_by_a_quote_in_a_column_not_read_stop_the_job(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The reviewer's case: a stray quote opens the notes of line 2 and another closes it at
    the end of line 6: legal CSV, but lines 3-6 (a melanoma among them) would vanish into the
    notes of ISIC_1. Refused, naming the line where the quote opens."""
    manifest = _ids_csv(tmp_path / "m.csv", SWALLOWED)
    line = _refused(capsys, tmp_path, manifest)
    assert ("m.csv line 2: a quote (\") opens a field that runs on to line 6 in the notes "
            "value, so lines 3-6 would be read as part of that field, not as rows (line 3 looks "
            "like a row: ISIC_2,nv,x)") in line
    with pytest.raises(ReaderError, match=r"m\.csv line 2: a quote"):
        list(iter_records(manifest, decode=False))


def test_a_note_over_several_lines_none_like_a_row_is_read(tmp_path: Path) -> None:
    """A line of a multi-line note looks like a row only with as many separators as the header
    has columns less one (2 here): one comma is a note, read as such."""
    from dermsight.io.csvfolder import check_manifest, iter_csv_rows

    manifest = _ids_csv(tmp_path / "m.csv", 'ISIC_1,nv,"seen twice\nsee scan, left arm\n'
                                            'ok"\nISIC_2,mel,"a,b"\n')
    check_manifest(manifest)
    assert [(n, r.id, r.label) for n, r in iter_csv_rows(manifest)] == [
        (2, "ISIC_1", "NV"), (5, "ISIC_2", "MEL")]
    # the line named is where the quote opens, after a legal note over two lines
    bad = _ids_csv(tmp_path / "bad.csv", 'ISIC_1,nv,"a\nb"\nISIC_2,nv,"c\nISIC_3,mel,d"\n')
    with pytest.raises(ReaderError, match=r"bad\.csv line 4: a quote \(\"\) opens a field that "
                                          r"runs on to line 5 in the notes value"):
        check_manifest(bad)


def test_a_quote_closed_inside_a_value_not_read_is_read_as_before(
        images: list[Path], tmp_path: Path) -> None:
    """``"Dr X" said fine`` in notes, on one line: no row is at risk, read as before the strict
    check (``Dr X said fine``)."""
    rows = [f'{r},"Dr X" said fine' for r in _rows(images[:3])]
    manifest = _manifest(tmp_path / "m.csv", "path,id,age,notes", rows)
    got = list(open_source(manifest).rows())
    assert [(r["id"], r["age"], r["error"]) for r in got] == [
        ("q0", 40, None), ("q1", 40, None), ("q2", 40, None)]


def test_a_quote_closed_inside_a_value_that_is_read_names_the_column(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(images[:3])
    rows[1] = rows[1].replace(",q1,", ',"q1" b,')
    line = _refused(capsys, tmp_path, _manifest(tmp_path / "m.csv", "path,id,age", rows))
    assert ('m.csv line 3: the id value "q1" b has a quote (") that closes before the value '
            "ends") in line
    assert "put the whole value in quotes with each quote inside it written twice" in line
    assert "expected after" not in line  # not the csv module's words


# --- 8. a column not read, named twice ---------------------------------------------------------


def test_a_column_not_read_named_twice_is_no_matter(
        images: list[Path], tmp_path: Path) -> None:
    rows = [f"{r},a,b" for r in _rows(images[:2])]
    manifest = _manifest(tmp_path / "m.csv", "path,id,age,notes,Notes", rows)
    got = list(open_source(manifest).rows())
    assert [(r["id"], r["age"]) for r in got] == [("q0", 40), ("q1", 40)]


def test_an_accepted_column_name_twice_is_refused_though_another_is_read(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``age`` read, ``patient_age`` (also a name of the age) twice: which copy would be meant
    is not known, refused as a column read."""
    rows = [f"{r},41,42" for r in _rows(images[:2])]
    manifest = _manifest(tmp_path / "m.csv", "path,id,age,patient_age,patient_age", rows)
    assert "m.csv has the column patient_age twice" in _refused(capsys, tmp_path, manifest)


# --- 9. the extra-fields example uses the CSV's separator --------------------------------------


@pytest.mark.parametrize(("sep", "example"), [
    (",", "(upper extremity, left)"), (";", "(upper extremity; left)"),
    ("\t", "(upper extremity<tab>left)")])
def test_the_extra_fields_example_uses_the_csvs_separator(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], sep: str,
        example: str) -> None:
    rows = [sep.join(r.split(",")) for r in _rows(images[:3])]
    rows[1] += f"{sep}upper{sep}left"
    manifest = _manifest(tmp_path / "m.csv", sep.join(("path", "id", "site")), rows)
    line = _refused(capsys, tmp_path, manifest)
    assert f"a value that holds the separator without quotes {example} moves" in line


# --- 10. a remote CSV is checked before OUT is made --------------------------------------------


@pytest.mark.parametrize("url", ["memory://csv-remote/m.csv", "memory://csv-remote/"])
def test_a_refused_remote_csv_leaves_no_output_folder(
        images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        url: str) -> None:
    """``dermsight batch memory://.../m.csv --out OUT`` (or the prefix whose one CSV it is)
    with a stray quote: exit 2 and one line, and no OUT (no ``_lock``) left behind."""
    fsspec = pytest.importorskip("fsspec")

    rows = _rows(images[:4])
    rows[1] = rows[1].replace(",q1,", ',"q1,')
    fs = fsspec.filesystem("memory")
    fs.pipe("/csv-remote/m.csv", ("path,id,age\n" + "\n".join(rows) + "\n").encode())
    try:
        out = tmp_path / "out"
        code, _stdout, err = run(capsys, "batch", url, "--out", str(out), "-q",
                                 "--workers", "1")
        assert code == 2, err
        assert "Traceback" not in err
        assert err.strip().splitlines() == [err.strip()], err
        assert "m.csv line 3: a quote (\") opens a field" in err
        assert not out.exists(), sorted(p.name for p in out.iterdir())
    finally:
        fs.rm("/csv-remote", recursive=True)


# --- 11. DICOM files in a manifest: their header alone is read ---------------------------------


def _rchar() -> int:
    """Bytes this process has read so far (Linux: /proc/self/io), page cache included."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_listing_a_manifest_of_dicom_files_reads_their_headers_only(tmp_path: Path) -> None:
    """The group (PatientID's pseudonym) of a DICOM file named in a CSV comes from its header:
    listing 4 files of about 2 MB each reads a few kB of each, not their pixels (a resumed run
    lists its input up to three times; DICOM of tens of MB on network storage)."""
    import numpy as np

    from dermsight.io.dicom import write_dicom

    if not Path("/proc/self/io").exists():
        pytest.skip("needs /proc/self/io (Linux)")
    rng = np.random.default_rng(0)
    folder = tmp_path / "dcm"
    folder.mkdir()
    for n in range(4):
        noise = rng.integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
        write_dicom(folder / f"d{n}.dcm", noise, 40, "male", patient_id=f"PAT{n}")
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total > 4_000_000
    manifest = _manifest(tmp_path / "m.csv", "path,id",
                         [f"{folder / f'd{n}.dcm'},d{n}" for n in range(4)])
    source = open_source(manifest)
    before = _rchar()
    got = {r["id"]: (r["source"], r["group"]) for r in source.rows()}
    read = _rchar() - before
    assert got == {f"d{n}": ("dicom", patient_pseudonym(f"PAT{n}")) for n in range(4)}
    assert read < 400_000, f"listing read {read} bytes of {total}"


def test_a_deflated_or_preambleless_dicom_in_a_manifest_gets_its_group(tmp_path: Path) -> None:
    """Files the header-only read passes on are read as the folder reader reads them: a
    deflated one (inflated within the upload cap) and one written without its preamble; a
    deflate bomb gives no group and lists at once (decoding it says why)."""
    import time

    import numpy as np

    import hostile_inputs as h

    rgb = np.full((24, 40, 3), (150, 90, 60), np.uint8)
    els = h.image_elements(24, 40, patient_id=b"PAT-D ")
    deflated = h.dicom(els, rgb.tobytes(), ts=h.DEFLATED, deflate=True)
    plain = h.dicom(els, rgb.tobytes())
    (tmp_path / "deflated.dcm").write_bytes(deflated)
    (tmp_path / "bare.dcm").write_bytes(plain[128:])  # starts with DICM
    (tmp_path / "bomb.dcm").write_bytes(h.dicom_deflate_bomb(2_000_000_000))
    manifest = _manifest(tmp_path / "m.csv", "path,id",
                         [f"{tmp_path / n}.dcm,{n}" for n in ("deflated", "bare", "bomb")])
    t0 = time.perf_counter()
    got = {r["id"]: (r["source"], r["group"]) for r in open_source(manifest).rows()}
    assert time.perf_counter() - t0 < 5.0
    pat_d = patient_pseudonym("PAT-D")
    assert got == {"deflated": ("dicom", pat_d), "bare": ("dicom", pat_d),
                   "bomb": ("dicom", None)}
