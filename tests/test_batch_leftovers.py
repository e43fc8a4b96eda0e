"""What an audit of ``dermsight batch`` left behind: a remote CSV's unusable labels said as a
local CSV's are, ``--partitions``' help taking the slice size from its constant, a Spark slice
killed midway said to be scored again, and a second link to a folder already read named in a
warning instead of its images silently missing under its path."""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from batch_support import image_folder
from cli_support import run
from dermsight.batch.store import part_files, read_output

IDS = [f"ISIC_{i:07d}" for i in (0, 1, 2, 3, 4, 6, 7, 8)]  # (ISIC_0000005 has no image)


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def _batch(capsys: pytest.CaptureFixture[str], src: str | Path, out: Path, *more: str
           ) -> tuple[int, str, pd.DataFrame]:
    code, _out, err = run(capsys, "batch", str(src), "--out", str(out), "--workers", "1",
                          "-q", *more)
    assert "Traceback" not in err
    assert code in (0, 1), err
    return code, err, read_output(out).set_index("id")


# --- 1. a remote CSV's unusable labels: the local CSV's warning ---------------------------------


@pytest.fixture
def remote_dataset(tmp_path: Path, data_dir: Path) -> Iterator[tuple[Path, str]]:
    """The same dataset twice: a local folder and fsspec's in-memory file system (a remote
    input), each an ``images/`` folder of 3 real images and a ``metadata.csv`` with an unknown
    diagnosis in line 4 and no site column."""
    fsspec = pytest.importorskip("fsspec")
    text = ("image_id,diagnosis,age_approx,sex\n"
            f"{IDS[0]},NV,40,female\n{IDS[1]},MEL,45,male\n{IDS[2]},FOO,50,female\n")
    local = tmp_path / "ds"
    (local / "images").mkdir(parents=True)
    fs = fsspec.filesystem("memory")
    base = f"/leftovers-{os.getpid()}-{tmp_path.name}"
    for i in IDS[:3]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", local / "images" / f"{i}.jpg")
        fs.pipe(f"{base}/images/{i}.jpg", (data_dir / "images" / f"{i}.jpg").read_bytes())
    (local / "metadata.csv").write_text(text)
    fs.pipe(f"{base}/metadata.csv", text.encode())
    try:
        yield local, f"memory://{base}/metadata.csv"
    finally:
        fs.rm(base, recursive=True)


def test_a_remote_csv_warns_of_unusable_labels_as_a_local_csv_does(
    remote_dataset: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A remote CSV's row with a label that cannot be used is scored unlabelled, as a local
    CSV's is, and the job now says so in the local CSV's words (with the missing site column),
    once per run, a resumed run included. Before, a remote CSV said nothing."""
    local, remote = remote_dataset
    code, local_err, local_df = _batch(capsys, local / "metadata.csv", tmp_path / "local")
    assert code == 0, local_err
    code, remote_err, remote_df = _batch(capsys, remote, tmp_path / "remote")
    assert code == 0, remote_err
    assert _warnings(local_err) == _warnings(remote_err)
    site, label = _warnings(remote_err)
    assert site.startswith("warning: metadata.csv has no site column (read as site: ")
    assert label == (f"warning: 1 row of metadata.csv has a label that cannot be used (line 4 "
                     f"({IDS[2]}): unknown diagnosis 'FOO'): its image is read without a label")
    for df in (local_df, remote_df):
        assert df["error"].isna().all()
        assert pd.isna(df.loc[IDS[2], "label"])
        assert df.loc[IDS[1], "label"] == "MEL"
    # a resumed run says it again, once
    again_err = run(capsys, "batch", remote, "--out", str(tmp_path / "remote"), "-q")[2]
    assert _warnings(again_err) == _warnings(remote_err)


def test_a_remote_csv_read_by_the_source_warns_once_per_job(
    remote_dataset: tuple[Path, str], capsys: pytest.CaptureFixture[str],
) -> None:
    """The source's first full pass says it; later passes (resume, evaluation) do not."""
    from dermsight.batch.sources import open_source

    _local, remote = remote_dataset
    source = open_source(remote)
    first = list(source.rows())
    assert len(first) == 3
    assert len(_warnings(capsys.readouterr().err)) == 2
    assert list(source.rows()) == first
    assert _warnings(capsys.readouterr().err) == []


# --- 2. --partitions' help: the slice size from the constant ------------------------------------


def _partitions_help(module: Any) -> str:
    hints = typing.get_type_hints(module.batch, include_extras=True)
    return str(hints["partitions"].__metadata__[0].help)


def test_partitions_help_takes_the_slice_size_from_the_constant(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The help says the size of a slice from ``SLICE_ROWS``, the one the Spark runner uses:
    a change of the constant changes the help. Before, "50,000" was written out in the help."""
    import dermsight.cli.batch as cli_batch
    from dermsight.batch import options

    spark = pytest.importorskip("dermsight.batch.spark")
    assert spark.SLICE_ROWS == options.SLICE_ROWS
    assert f"slice of {options.SLICE_ROWS:,} input rows" in _partitions_help(cli_batch)
    for written in ("50,000", "50_000", "50000"):
        assert written not in inspect.getsource(cli_batch)
    monkeypatch.setattr(options, "SLICE_ROWS", 1234, raising=False)
    try:
        importlib.reload(cli_batch)
        assert "slice of 1,234 input rows" in _partitions_help(cli_batch)
    finally:
        monkeypatch.undo()
        importlib.reload(cli_batch)
    assert "1,234" not in _partitions_help(cli_batch)


# --- 4. a second link to a folder already read: said, not silent --------------------------------


def _linked(tmp_path: Path, data_dir: Path) -> tuple[Path, Path]:
    """An input folder with one image and the links ``b`` and ``b2`` to one folder of two
    images outside it."""
    folder = image_folder(tmp_path, data_dir, IDS[:1])
    clinic = tmp_path / "clinic b"
    clinic.mkdir()
    for i in IDS[1:3]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", clinic / f"{i}.jpg")
    (folder / "b").symlink_to(clinic, target_is_directory=True)
    (folder / "b2").symlink_to(clinic, target_is_directory=True)
    return folder, clinic


def test_a_second_link_to_a_folder_already_read_is_named(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """``b`` and ``b2`` lead to one folder: its images get one row each, under ``b`` (not
    listed twice), and one warning names ``b2``, passed over, and ``b``, the path they are
    listed under, once per run. Before, ``b2``'s images were missing without a word."""
    folder, _clinic = _linked(tmp_path, data_dir)
    code, err, df = _batch(capsys, folder, tmp_path / "o")
    assert code == 0, err
    assert df["path"].to_dict() == {IDS[0]: str(folder / f"{IDS[0]}.jpg"),
                                    **{i: str(folder / "b" / f"{i}.jpg") for i in IDS[1:3]}}
    assert _warnings(err) == [
        f"warning: b2 in {folder} leads to a folder already read as b: its images are listed "
        "once, under b, not again under b2"]
    # a resumed run (an error row makes it read its input again) says it once too
    (folder / "zz_text.jpg").write_text("not an image")
    code, err, df = _batch(capsys, folder, tmp_path / "o")
    assert code == 1
    code, err, df = _batch(capsys, folder, tmp_path / "o")
    assert len(_warnings(err)) == 1, err
    assert len(df) == 4


def test_every_folder_passed_over_is_named_and_nothing_else(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Several folders passed over are named in one line, each with the path read: a second
    link, and a folder below a link that another link reached first. A link inside the input
    (not followed: its folder is read under its own path), a link back up the tree and a folder
    with a CSV (its rows name their images) say nothing."""
    from dermsight.batch.sources import open_source

    folder, clinic = _linked(tmp_path, data_dir)
    outside = tmp_path / "outside"
    (outside / "x").mkdir(parents=True)
    shutil.copy(data_dir / "images" / f"{IDS[3]}.jpg", outside / "x" / f"{IDS[3]}.jpg")
    (folder / "a").symlink_to(outside / "x", target_is_directory=True)
    (folder / "c").symlink_to(outside, target_is_directory=True)  # holds x, read as a
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    inner = folder / "z_scans"
    inner.mkdir()
    shutil.copy(data_dir / "images" / f"{IDS[4]}.jpg", inner / f"{IDS[4]}.jpg")
    (folder / "a_latest").symlink_to(inner, target_is_directory=True)
    rows = list(open_source(folder).rows())
    assert sorted(r["id"] for r in rows) == sorted(IDS[:5])  # each image once
    assert _warnings(capsys.readouterr().err) == [
        f"warning: 2 linked folders in {folder} lead to folders already read under another "
        "path: their images are listed once, under that path, not again: b2 (read as b), "
        f"{os.path.join('c', 'x')} (read as a)"]
    (folder / "metadata.csv").write_text(f"image_id\n{IDS[1]}\n")
    assert [r["id"] for r in open_source(folder).rows()] == [IDS[1]]
    assert not [w for w in _warnings(capsys.readouterr().err) if "already read" in w]
    assert clinic.exists()


# --- 3. a Spark slice stopped midway is scored again, and the run says so -----------------------


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")
    from dermsight.batch.spark import get_session

    session = get_session("local[2]")
    yield session
    session.stop()


@pytest.mark.spark
@pytest.mark.slow
def test_a_spark_slice_stopped_midway_is_said_to_be_scored_again(
    spark: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Slices of 4: a Ctrl-C in the third slice says that the 8 rows of the two committed
    slices are kept and the slice in progress is not; a re-run that finds what a killed job
    left of its slice (``OUT/_temporary``) says that slice is scored again from its start, and
    scores it, with no duplicate; a run after a clean end says neither. Before, neither was
    said."""
    import dermsight.batch.spark as spark_engine
    from dermsight.batch.spark import run_spark

    folder = tmp_path / "in"
    folder.mkdir()
    images = sorted((data_dir / "images").glob("*.jpg"))[:10]
    for image in images:
        shutil.copyfile(image, folder / image.name)
    monkeypatch.setattr(spark_engine, "SLICE_ROWS", 4)
    real_save = spark_engine._save
    saves: list[int] = []

    def stopped_in_third(result: Any, out: Path, fmt: str) -> None:
        if len(saves) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the third slice is scored
        saves.append(1)
        real_save(result, out, fmt)

    monkeypatch.setattr(spark_engine, "_save", stopped_in_third)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_spark(folder, out, partitions=2)
    err = capsys.readouterr().err
    assert (f"batch interrupted: the 8 rows of the slices this run committed are kept in {out}; "
            "the slice in progress (up to 4 input rows) is not, and is scored again from its "
            "start: run the same command again to score it and the rest") in err
    assert len(read_output(out)) == 8

    # what a killed job leaves of its slice in progress: a task's committed part in _temporary
    stale = out / "_temporary" / "0" / "task_202612070000_0003_m_000000"
    stale.mkdir(parents=True)
    shutil.copyfile(part_files(out)[0], stale / "part-00000-stale.zstd.parquet")
    monkeypatch.setattr(spark_engine, "_save", real_save)
    again = run_spark(folder, out, partitions=2)
    err = capsys.readouterr().err
    assert (f"resuming {out}: the 8 rows it holds are kept; the slice the last run was scoring "
            "when it stopped was not committed (only whole slices of up to 4 input rows are), so "
            "its images are scored again from the start of that slice") in err
    assert (again.skipped, again.scored, again.errors) == (8, 2, 0)
    done = read_output(out)
    assert sorted(done["id"]) == sorted(p.stem for p in images)
    assert done["id"].is_unique
    assert not (out / "_temporary").exists()

    last = run_spark(folder, out, partitions=2)
    err = capsys.readouterr().err
    assert (last.skipped, last.scored) == (10, 0)
    assert "resuming" not in err
    assert "interrupted" not in err
