"""How ``dermsight batch`` ends when the output folder fails it, and what it reports, on real
images of the shared isic-subset:

* a part that cannot be written (a full disk: ``OSError`` ENOSPC from the writer, simulated
  in-process) stops the job with one line naming the file and the cause and exit code 2 (not
  1, which says the job finished with some error rows); the parts written before are kept, the
  stale ``_summary.json`` is removed, and the same command resumes once space is back;
* a damaged part file (a truncated Parquet part, a CSV part that does not parse) is named in
  one line, exit code 2, and the summary is removed; moved out of the folder, its rows are
  scored again;
* ``_summary.json`` counts ``rows``, ``scored`` (without an error) and ``errors`` as the printed
  line does, and images/s is over the scored images;
* ``--master`` / ``--partitions`` with the local engine are refused, not ignored;
* a run whose stderr is not a terminal (a log) shows progress; ``-q`` silences it;
* the help names one input (several TFRecord shards: their folder) and says what a larger
  ``--batch-size`` costs.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cli_support import run
from dermsight.batch.store import SUMMARY_FILE, part_files, read_output
from dermsight.batch.summary import RunSummary

IDS = ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002", "ISIC_0000003"]


@pytest.fixture
def folder(tmp_path: Path, data_dir: Path) -> Path:
    """Four real images."""
    root = tmp_path / "in"
    root.mkdir()
    for i in IDS:
        shutil.copy(data_dir / "images" / f"{i}.jpg", root / f"{i}.jpg")
    return root


def _one_error_line(code: int, err: str) -> str:
    """Exit code 2 and one stderr line ``error: ...`` (no traceback); returns it."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def _batch(capsys: pytest.CaptureFixture[str], folder: Path, out: Path,
           *extra: str) -> tuple[int, str, str]:
    return run(capsys, "batch", str(folder), "--out", str(out), "--chunk-size", "1",
               "--workers", "1", *extra)


def _disk_full_after(monkeypatch: pytest.MonkeyPatch, fmt: str, writes: int) -> None:
    """The part writer of ``fmt`` writes ``writes`` files, then fails as on a full disk: half a
    file, then ``OSError`` ENOSPC."""
    calls = {"n": 0}

    def full(path: Any) -> None:
        calls["n"] += 1
        if calls["n"] > writes:
            Path(path).write_bytes(b"PAR1 half")
            raise OSError(errno.ENOSPC, "No space left on device")

    if fmt == "parquet":
        import pyarrow.parquet as pq

        real_pq = pq.write_table

        def write_table(table: Any, where: Any, *args: Any, **kwargs: Any) -> None:
            full(where)
            real_pq(table, where, *args, **kwargs)

        monkeypatch.setattr(pq, "write_table", write_table)
    else:
        real_csv = pd.DataFrame.to_csv

        def to_csv(self: pd.DataFrame, where: Any = None, *args: Any, **kwargs: Any) -> Any:
            if where is not None and Path(where).name.startswith(".tmp-part-"):
                full(where)
            return real_csv(self, where, *args, **kwargs)

        monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_disk_full_stops_with_exit_2_keeps_the_parts_and_resumes(
        folder: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    code, _, err = _batch(capsys, folder, out, "--format", fmt, "--limit", "1", "-q")
    assert code == 0, err
    assert (out / SUMMARY_FILE).exists()  # the first run's: about to be stale
    with monkeypatch.context() as patch:
        _disk_full_after(patch, fmt, writes=1)
        code, _, err = _batch(capsys, folder, out, "--format", fmt, "-q")
    line = _one_error_line(code, err)
    assert "No space left on device" in line, line
    assert f"cannot write {out / 'part-'}" in line, line
    assert f".{fmt}: " in line, line
    assert "run the same command again to resume" in line, line
    assert "scoring" not in err  # -q: no progress
    # the first run's part and the one part this run wrote are kept; no temporary file
    assert len(part_files(out)) == 2
    assert not list(out.glob(".tmp-*"))
    assert not (out / SUMMARY_FILE).exists()  # removed, not left stale
    # space back: the same command scores the rest, no duplicate
    code, _, err = _batch(capsys, folder, out, "--format", fmt, "-q")
    assert code == 0, err
    assert sorted(read_output(out)["id"]) == IDS
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert (summary["rows"], summary["scored"], summary["errors"]) == (2, 2, 0)
    assert summary["skipped"] == 2


def test_damaged_parquet_part_is_named_and_can_be_moved_out(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = _batch(capsys, folder, out, "-q")
    assert code == 0, err
    bad = part_files(out)[1]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated: no Parquet footer
    code, _, err = _batch(capsys, folder, out, "-q")
    line = _one_error_line(code, err)
    assert f"cannot read the part file {bad} as Parquet" in line, line
    assert "damaged" in line, line
    assert f"Move it out of {out} " in line, line
    assert not (out / SUMMARY_FILE).exists()  # it counted the part that is now damaged
    assert len(part_files(out)) == len(IDS)  # nothing else touched
    bad.rename(tmp_path / bad.name)
    code, _, err = _batch(capsys, folder, out, "-q")
    assert code == 0, err
    assert sorted(read_output(out)["id"]) == IDS
    assert json.loads((out / SUMMARY_FILE).read_text())["rows"] == 1  # its row, again


def test_damaged_csv_part_is_named(folder: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = _batch(capsys, folder, out, "--format", "csv", "--limit", "1", "-q")
    assert code == 0, err
    bad = out / "part-00000000000000-dead00-00000.csv"
    bad.write_text('"id,path\nx,y\n')  # a quote never closed: pandas cannot parse it
    code, _, err = _batch(capsys, folder, out, "--format", "csv", "-q")
    line = _one_error_line(code, err)
    assert f"cannot read the part file {bad} as CSV" in line, line


def test_a_part_file_without_read_permission_is_named_as_such(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A part that may not be read (permission denied; simulated in-process, as the tests may
    run as root) is not called damaged: one line naming it and the cause, exit code 2."""
    out = tmp_path / "out"
    code, _, err = _batch(capsys, folder, out, "-q")
    assert code == 0, err
    bad = part_files(out)[1]
    real = pd.read_parquet

    def denied(path: Any, *args: Any, **kwargs: Any) -> pd.DataFrame:
        if Path(path) == bad:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", denied)
    code, _, err = _batch(capsys, folder, out, "-q")
    line = _one_error_line(code, err)
    assert f"cannot read the part file {bad}: permission denied" in line, line
    assert "damaged" not in line, line
    assert "Move it out" not in line, line
    assert "read access" in line, line
    assert len(part_files(out)) == len(IDS)  # nothing touched


def test_summary_counts_rows_scored_and_errors_as_printed(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two real images and a text file named .jpg, without -q: the output's rows, scored and
    errors agree between the printed line and ``_summary.json``; stderr (not a terminal here,
    as in a log) carries the progress."""
    for i in IDS[2:]:
        (folder / f"{i}.jpg").unlink()
    (folder / "zz_text.jpg").write_text("this is not an image\n")
    out = tmp_path / "out"
    code, stdout, err = _batch(capsys, folder, out)
    assert code == 1, err  # finished, with an error row
    assert "2 scored, 1 errors" in stdout
    assert "scoring" in err  # the progress, though stderr is no terminal
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert (summary["rows"], summary["scored"], summary["errors"]) == (3, 2, 1)
    busy = summary["elapsed_s"] - summary["startup_s"]
    assert summary["images_per_s"] == pytest.approx(2 / busy, abs=0.01)


def test_images_per_s_counts_scored_images_only() -> None:
    """A run of error rows only (30,000 missing files) scores no image: 0 images/s."""
    summary = RunSummary(input="in", out="out", engine="local", model={}, scored=30_004,
                         errors=30_000, elapsed_s=2.0)
    saved = summary.to_dict()
    assert (saved["rows"], saved["scored"], saved["errors"]) == (30_004, 4, 30_000)
    assert saved["images_per_s"] == 2.0
    assert "30004 rows in 2.0 s (2.0 scored images/s); 4 scored, 30000 errors" in \
        summary.render()


@pytest.mark.parametrize("given", [["--master", "local[2]"], ["--partitions", "4"],
                                   ["--master", "local[2]", "--partitions", "4"]])
def test_spark_options_are_refused_with_the_local_engine(
        folder: Path, tmp_path: Path, given: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(folder), "--out", str(out), *given)
    line = _one_error_line(code, err)
    for option in given[::2]:
        assert option in line, line
    assert "--engine spark" in line, line
    assert not out.exists()  # refused before any work


def test_help_names_one_input_and_the_cost_of_larger_batches(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: no wrapping to undo
    code, stdout, _ = run(capsys, "batch", "--help")
    assert code == 0
    text = " ".join(stdout.split())
    assert "(s)" not in text
    assert "a TFRecord shard (several shards: their folder)" in text
    assert "larger batches take more memory" in text
    assert "Exit code 1 when the job finished" in text


def _full_disk_for(monkeypatch: pytest.MonkeyPatch, method: str, names: str) -> None:
    """``Path.<method>`` (``write_text`` / ``write_bytes``) fails as on a full disk for a file
    whose name starts with ``names``."""
    real = getattr(Path, method)

    def write(self: Path, data: Any, *args: Any, **kwargs: Any) -> Any:
        if self.name.startswith(names):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, method, write)


def test_disk_full_writing_the_summary_keeps_the_rows(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _full_disk_for(patch, "write_text", f".tmp-{SUMMARY_FILE}")
        code, _, err = _batch(capsys, folder, out, "-q")
    line = _one_error_line(code, err)
    assert f"cannot write {out / SUMMARY_FILE}: No space left on device" in line, line
    assert sorted(read_output(out)["id"]) == IDS  # every row is written
    assert not (out / SUMMARY_FILE).exists()
    assert not list(out.glob(".tmp-*"))


def test_disk_full_writing_an_overlay_is_one_line_exit_2(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An overlay (``--heatmaps``) that meets a full disk: one line naming its file, exit code
    2 (the CLI's net for the file system's errors), not a traceback and exit 1."""
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _full_disk_for(patch, "write_bytes", f".{IDS[0]}.png")
        code, _, err = _batch(capsys, folder, out, "--heatmaps", str(tmp_path / "heat"), "-q")
    line = _one_error_line(code, err)
    assert line.startswith(f"error: {tmp_path / 'heat'}/.{IDS[0]}.png"), line
    assert line.endswith(": No space left on device"), line
