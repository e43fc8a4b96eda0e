"""Second review's fixes: a multi-line note with commas is legal CSV (rows a stray quote
swallows are still refused); a remote CSV is fetched once per run; a remote prefix with several
CSVs stops before OUT is made; the reference credits keep "non-commercial" while CC BY-NC images
are in the set; a DICOM tag given but unusable is counted invalid, not missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli_support import run
from dermsight.io.errors import ReaderError

# --- 1. multi-line notes with commas -----------------------------------------------------------


def _csv(path: Path, header: str, body: str) -> Path:
    path.write_text(header + "\n" + body)
    return path


def test_a_multi_line_note_with_commas_is_read(tmp_path: Path) -> None:
    """An EHR / Excel export's note over two lines (Alt+Enter) whose second line has as many
    commas as a row: no id on it, so it is a note, and all rows are read."""
    from dermsight.io.csvfolder import check_manifest, iter_csv_rows

    m = _csv(tmp_path / "m.csv", "image_id,dx,notes",
             'a1,NV,"Seen by Dr X.\nFollow-up: 3 months, biopsy, excision"\n'
             "a2,MEL,plain\n"
             'a3,NV,"first line\nsecond, third, fourth"\n')
    check_manifest(m)
    assert [(n, r.id, r.label) for n, r in iter_csv_rows(m)] == [
        (2, "a1", "NV"), (4, "a2", "MEL"), (5, "a3", "NV")]


def test_a_two_column_csv_with_a_one_comma_note_line_is_read(tmp_path: Path) -> None:
    from dermsight.io.csvfolder import check_manifest, iter_csv_rows

    m = _csv(tmp_path / "m.csv", "image_id,notes",
             'ISIC_0000001,"left arm\nseen again, no change"\nISIC_0000002,ok\n')
    check_manifest(m)
    assert [r.id for _n, r in iter_csv_rows(m)] == ["ISIC_0000001", "ISIC_0000002"]


def test_rows_swallowed_by_a_stray_quote_are_still_refused(tmp_path: Path) -> None:
    from dermsight.io.csvfolder import check_manifest

    m = _csv(tmp_path / "m.csv", "image_id,dx,notes",
             'ISIC_1,nv,"oops\nISIC_2,nv,x\nISIC_3,mel,y\nISIC_4,nv,end"\nISIC_5,nv,ok\n')
    with pytest.raises(ReaderError, match=r"line 3 looks like a row: ISIC_2,nv,x"):
        check_manifest(m)
    # without an id column: a line whose path is an image file's name is a row
    p = _csv(tmp_path / "p.csv", "path,notes",
             'img/a.jpg,"oops\nimg/b.jpg,x\nimg/c.jpg,y"\nimg/d.jpg,ok\n')
    with pytest.raises(ReaderError, match=r"line 3 looks like a row: img/b\.jpg,x"):
        check_manifest(p)
    ok = _csv(tmp_path / "ok.csv", "path,notes", 'img/a.jpg,"seen\nagain, later"\n')
    check_manifest(ok)


# --- 2. / 3. remote CSVs -----------------------------------------------------------------------


@pytest.fixture
def memfs() -> Iterator[tuple[Any, list[str]]]:
    """fsspec's in-memory file system, with each ``get`` (a fetch) recorded."""
    fsspec = pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    fs = fsspec.filesystem("memory")
    fetched: list[str] = []
    real = MemoryFileSystem.get

    def get(self: Any, rpath: Any, lpath: Any, *args: Any, **kwargs: Any) -> Any:
        fetched.append(str(rpath))
        return real(self, rpath, lpath, *args, **kwargs)

    MemoryFileSystem.get = get  # type: ignore[method-assign]
    try:
        yield fs, fetched
    finally:
        MemoryFileSystem.get = real  # type: ignore[method-assign]
        for top in ("/review2-once", "/review2-p2"):
            if fs.exists(top):
                fs.rm(top, recursive=True)


@pytest.mark.parametrize("url", ["memory://review2-once/m.csv", "memory://review2-once/"])
def test_a_remote_csv_is_fetched_once_per_run(memfs: tuple[Any, list[str]], url: str) -> None:
    """``open_source`` fetches and checks the CSV; the row passes (three on a resume) read
    that copy: one fetch in all, not one more per pass."""
    from dermsight.batch.sources import open_source

    fs, fetched = memfs
    fs.pipe("/review2-once/m.csv", b"id,path,age\nx1,img/x1.jpg,40\nx2,img/x2.jpg,50\n")
    source = open_source(url)
    for _ in range(3):
        assert [r["id"] for r in source.rows()] == ["x1", "x2"]
    assert len(fetched) == 1, fetched
    source.close()


def test_a_remote_prefix_with_several_csvs_leaves_no_output_folder(
        memfs: tuple[Any, list[str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fs, _fetched = memfs
    fs.pipe("/review2-p2/a.csv", b"id,path\nx1,x1.jpg\n")
    fs.pipe("/review2-p2/b.csv", b"id,path\nx2,x2.jpg\n")
    out = tmp_path / "out"
    code, _stdout, err = run(capsys, "batch", "memory://review2-p2/", "--out", str(out), "-q",
                             "--workers", "1")
    assert code == 2, err
    assert "Traceback" not in err
    assert "has several CSVs (a.csv, b.csv)" in err
    assert not out.exists(), sorted(p.name for p in out.iterdir())


# --- 5. a DICOM tag given but unusable is invalid ----------------------------------------------


def test_a_bad_dicom_age_is_counted_invalid(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from dermsight.io import iter_records
    from dermsight.io.dicom import write_dicom

    path = write_dicom(tmp_path / "d.dcm", np.zeros((16, 16, 3), np.uint8), age=45,
                       sex="male", jpeg=False)
    ds = pydicom.dcmread(path)
    ds.PatientAge = "250Y"
    ds.save_as(path)
    (rec,) = list(iter_records(tmp_path, decode=False))
    assert rec.meta.age is None
    assert rec.meta.sex == "male"
    assert rec.meta.invalid == ("age",)
