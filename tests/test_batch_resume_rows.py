"""Resuming a batch job row by row: error rows are retried (and replaced) when the same command
runs again, and an image listed twice is scored once per listing, never twice, never lost."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from dermsight.batch.local import run_local
from dermsight.batch.options import ScoreOptions
from dermsight.batch.resume import pending, retry_keys
from dermsight.batch.store import part_files, read_output
from dermsight.cli import main as cli_main

SITE = "anterior torso"


@pytest.fixture(scope="module")
def four(metadata: pd.DataFrame) -> list[str]:
    """Four real image ids (sorted)."""
    return sorted(metadata["image_id"])[:4]


def _copy(data_dir: Path, image_id: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_dir / "images" / f"{image_id}.jpg", dest)
    return dest


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        cli_main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _isic_rows(ids: Sequence[str], sex: dict[str, str] | None = None) -> list[list[object]]:
    sex = sex or {}
    return [[i, "NV", 40 + 5 * n, sex.get(i, "female"), SITE] for n, i in enumerate(ids)]


ISIC_HEADER = ["image_id", "diagnosis", "age_approx", "sex", "anatom_site"]


# --- the rule, without a model ------------------------------------------------------------------


def test_the_nth_listing_of_a_key_is_done_when_the_output_holds_n_rows_of_it() -> None:
    rows = [{"id": "a", "path": "/x/a.jpg", "age": 45}, {"id": "b", "path": "/x/b.jpg"},
            {"id": "a", "path": "/x/a.jpg", "age": 50}, {"id": "a", "path": "/y/a.jpg"}]
    done = {("a", "/x/a.jpg"): 1, ("b", "/x/b.jpg"): 1}
    assert [r.get("age") for r in pending(rows, done)] == [50, None]
    assert [r["path"] for r in pending(rows, done, limit=1)] == ["/x/a.jpg"]
    assert list(pending(rows, {("a", "/x/a.jpg"): 2, ("b", "/x/b.jpg"): 1,
                               ("a", "/y/a.jpg"): 1})) == []


def test_error_rows_are_retried_only_for_inputs_still_listed() -> None:
    rows = [{"id": "a", "path": "/x/a.jpg"}, {"id": "c", "path": "/x/c.jpg"},
            {"id": "d", "path": "/x/d.jpg"}]
    ok = {("a", "/x/a.jpg"): 1}
    errors = {("c", ""): 1, ("gone", "/x/gone.jpg"): 1, ("d", "/x/d.jpg"): 1}
    # a path-less error row (file missing, id-only CSV) is retried by the row with its id
    assert retry_keys(rows, ok, errors) == {("c", ""), ("d", "/x/d.jpg")}
    # --limit 1: the first pending row is c's, so d is not reached and keeps its error row
    assert retry_keys(rows, ok, errors, limit=1) == {("c", "")}
    assert retry_keys(rows, ok, {}) == set()


# --- real runs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_missing_file_added_later_is_scored_once(
    data_dir: Path, four: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    """An ISIC CSV naming images by id: the last image is missing, then added."""
    root = tmp_path / "ds"
    for i in four[:3]:
        _copy(data_dir, i, root / "images" / f"{i}.jpg")
    _write_csv(root / "metadata.csv", ISIC_HEADER, _isic_rows(four))
    out = tmp_path / "out"
    argv = ["batch", str(root), "--out", str(out), "--format", fmt, "--quiet",
            "--chunk-size", "2"]
    code, text = _cli(argv, capsys)
    assert code == 1, text
    first = read_output(out)
    assert len(first) == 4
    missing = first.set_index("id").loc[four[3]]
    assert "image file not found" in missing["error"]

    _copy(data_dir, four[3], root / "images" / f"{four[3]}.jpg")
    code, text = _cli(argv, capsys)
    assert code == 0, text
    assert "retried: 1 error rows" in text
    assert "3 already done" in text
    df = read_output(out)
    assert sorted(df["id"]) == four  # one row per input: the error row was replaced
    assert df["error"].isna().all()
    assert df.set_index("id").loc[four[3], "path"] == str(root / "images" / f"{four[3]}.jpg")
    assert not list(out.glob(".tmp-*"))
    # and a third run has nothing left to do
    code, text = _cli(argv, capsys)
    assert code == 0
    assert "0 rows" in text
    assert "4 already done" in text
    assert len(read_output(out)) == 4


def test_an_error_row_fixed_later_is_scored_once(
    data_dir: Path, four: list[str], tmp_path: Path,
) -> None:
    """A truncated image in an id-only CSV (the error row keeps the image's path), replaced by
    the good file; a manifest with paths whose image is missing, then added; the same command
    re-run each time. (A metadata value that cannot be used is no error: it is left out.)"""
    root = tmp_path / "ds"
    for i in four:
        _copy(data_dir, i, root / "images" / f"{i}.jpg")
    bad_file = root / "images" / f"{four[1]}.jpg"
    good = bad_file.read_bytes()
    bad_file.write_bytes(good[: len(good) // 3])
    csv_path = root / "metadata.csv"
    _write_csv(csv_path, ISIC_HEADER, _isic_rows(four, {four[1]: "male"}))
    out = tmp_path / "out"
    s1 = run_local(root, out, progress=False, chunk_size=1)
    assert (s1.scored, s1.errors) == (4, 1)
    bad = read_output(out).set_index("id").loc[four[1]]
    assert "truncated JPEG" in bad["error"]
    assert bad["path"] == str(bad_file)  # kept, for resuming
    assert len(part_files(out)) == 4

    bad_file.write_bytes(good)
    s2 = run_local(root, out, progress=False, chunk_size=1)
    assert (s2.retried, s2.skipped, s2.scored, s2.errors) == (1, 3, 1, 0)
    df = read_output(out).set_index("id")
    assert sorted(df.index) == four
    assert df["error"].isna().all()
    assert df.loc[four[1], "sex"] == "male"  # scored with its row's metadata
    assert len(part_files(out)) == 4  # the error row's part, all of it an error, is gone

    # the same with a manifest that gives paths, parts mixing good and error rows
    late = tmp_path / "late" / f"{four[2]}.jpg"
    manifest = _write_csv(tmp_path / "manifest.csv", ["id", "path", "age", "sex", "site"], [
        [i, "late/" + late.name if n == 2 else f"ds/images/{i}.jpg", 50, "female", SITE]
        for n, i in enumerate(four)])
    out2 = tmp_path / "out2"
    assert run_local(manifest, out2, progress=False).errors == 1
    assert len(part_files(out2)) == 1
    _copy(data_dir, four[2], late)
    s3 = run_local(manifest, out2, progress=False)
    assert (s3.retried, s3.scored, s3.errors) == (1, 1, 0)
    df2 = read_output(out2)
    assert sorted(df2["id"]) == four
    assert df2["error"].isna().all()
    assert (df2["sex"] == "female").all()
    assert df2.set_index("id").loc[four[2], "path"] == str(late)


def test_an_image_listed_twice_is_scored_once_per_listing(
    data_dir: Path, four: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The same image twice with ages 45 and 50, interrupted after the first row."""
    img = _copy(data_dir, four[0], tmp_path / "imgs" / "lesion.jpg")
    manifest = _write_csv(tmp_path / "manifest.csv", ["id", "path", "age", "sex", "site"], [
        ["lesion", str(img), 45, "female", SITE],
        ["lesion", str(img), 50, "female", SITE],
    ])
    out = tmp_path / "out"
    argv = ["batch", str(manifest), "--out", str(out), "--quiet"]
    code, text = _cli([*argv, "--limit", "1"], capsys)
    assert code == 0, text
    assert read_output(out)["age"].tolist() == [45.0]
    code, text = _cli(argv, capsys)
    assert code == 0, text
    assert "1 rows in" in text
    assert "1 already done" in text
    df = read_output(out)
    assert sorted(df["age"]) == [45.0, 50.0]
    assert (df["path"] == str(img)).all()
    assert df["error"].isna().all()
    code, text = _cli(argv, capsys)
    assert code == 0
    assert "2 already done" in text
    assert len(read_output(out)) == 2


def test_a_repeated_listing_with_an_error_is_rescored_in_order(
    data_dir: Path, four: list[str], tmp_path: Path,
) -> None:
    """One listing good, the other bad (its file gone when it was reached); once fixed, every
    listing of that image is scored again so that each row carries its own listing's
    metadata."""
    img = _copy(data_dir, four[0], tmp_path / "imgs" / "lesion.jpg")
    other = _copy(data_dir, four[1], tmp_path / "imgs" / "other.jpg")
    header = ["id", "path", "age", "sex", "site"]
    manifest = tmp_path / "manifest.csv"
    _write_csv(manifest, header, [["lesion", str(img), 45, "male", SITE],
                                  ["other", str(other), 60, "male", SITE],
                                  ["lesion", str(img), 50, "female", SITE]])
    out = tmp_path / "out"
    assert run_local(manifest, out, ScoreOptions(limit=1), progress=False).errors == 0
    img.unlink()  # the second listing of lesion.jpg becomes an error row
    s1 = run_local(manifest, out, progress=False)
    assert (s1.skipped, s1.scored, s1.errors) == (1, 2, 1)
    _copy(data_dir, four[0], img)
    s = run_local(manifest, out, progress=False)
    assert (s.retried, s.skipped, s.scored, s.errors) == (1, 1, 2, 0)
    df = read_output(out)
    got = sorted(zip(df["id"], df["age"], df["sex"], strict=True))
    assert got == [("lesion", 45.0, "male"), ("lesion", 50.0, "female"), ("other", 60.0, "male")]
    assert df["error"].isna().all()


def test_a_bad_image_replaced_by_a_good_one_is_retried_and_a_persisting_error_stays_one_row(
    data_dir: Path, four: list[str], tmp_path: Path,
) -> None:
    folder = tmp_path / "imgs"
    for i in four[:2]:
        _copy(data_dir, i, folder / f"{i}.jpg")
    good = (data_dir / "images" / f"{four[2]}.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(good[: len(good) // 3])
    (folder / "text.jpg").write_text("not an image\n")
    out = tmp_path / "out"
    s1 = run_local(folder, out, progress=False)
    assert s1.errors == 2
    (folder / "cut.jpg").write_bytes(good)  # replaced; text.jpg stays broken
    s2 = run_local(folder, out, progress=False)
    assert (s2.retried, s2.skipped, s2.scored, s2.errors) == (2, 2, 2, 1)
    df = read_output(out).set_index("id")
    assert sorted(df.index) == sorted([*four[:2], "cut", "text"])
    assert pd.isna(df.loc["cut", "error"])
    assert "not an image" in df.loc["text", "error"]
    assert s2.total["rows"] == 4
    assert s2.total["errors"] == 1


def test_error_rows_of_inputs_no_longer_listed_are_kept(
    data_dir: Path, four: list[str], tmp_path: Path,
) -> None:
    img = _copy(data_dir, four[0], tmp_path / "imgs" / "a.jpg")
    header = ["id", "path", "age", "sex", "site"]
    manifest = tmp_path / "manifest.csv"
    _write_csv(manifest, header, [["a", str(img), 45, "female", SITE],
                                  ["ghost", str(tmp_path / "ghost.jpg"), 45, "male", SITE]])
    out = tmp_path / "out"
    run_local(manifest, out, progress=False)
    _write_csv(manifest, header, [["a", str(img), 45, "female", SITE]])
    s = run_local(manifest, out, progress=False)
    assert (s.retried, s.scored) == (0, 0)
    assert sorted(read_output(out)["id"]) == ["a", "ghost"]  # nothing lost


def test_a_retry_run_that_dies_is_completed_by_the_next_run(
    data_dir: Path, four: list[str], tmp_path: Path,
) -> None:
    """Killed after the error rows were removed and one part was written: the next run scores
    the rest; one row per input in the end."""
    root = tmp_path / "ds"
    for i in four:
        _copy(data_dir, i, root / "images" / f"{i}.jpg")
    for i in four[1:]:  # truncated: error rows that keep their paths
        f = root / "images" / f"{i}.jpg"
        f.write_bytes(f.read_bytes()[:2000])
    _write_csv(root / "metadata.csv", ISIC_HEADER, _isic_rows(four))
    out = tmp_path / "out"
    assert run_local(root, out, progress=False).errors == 3
    for i in four[1:]:
        _copy(data_dir, i, root / "images" / f"{i}.jpg")

    def boom(part: Path) -> None:
        raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected"):
        run_local(root, out, ScoreOptions(batch_size=1, workers=1), chunk_size=1,
                  progress=False, on_part=boom)
    partial = read_output(out)
    assert len(partial) == 2  # the good row kept, one retried row written, two pending
    assert partial["error"].isna().all()
    s = run_local(root, out, progress=False)
    assert (s.retried, s.skipped, s.scored) == (0, 2, 2)
    df = read_output(out)
    assert sorted(df["id"]) == four
    assert df["error"].isna().all()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_resumes_and_retries_like_the_local_runner(
    data_dir: Path, four: list[str], tmp_path: Path,
) -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")
    from dermsight.batch.spark import run_spark

    img = _copy(data_dir, four[0], tmp_path / "imgs" / "lesion.jpg")
    late = tmp_path / "imgs" / "late.jpg"  # missing on the first run: an error row
    ghost = tmp_path / "imgs" / "ghost.jpg"  # missing too, but past the --limit
    header = ["id", "path", "age", "sex", "site"]
    manifest = tmp_path / "manifest.csv"
    _write_csv(manifest, header, [["lesion", str(img), 45, "female", SITE],
                                  ["lesion", str(img), 50, "female", SITE],
                                  ["late", str(late), 55, "male", SITE],
                                  ["ghost", str(ghost), 50, "male", SITE]])
    out = tmp_path / "out"
    s1 = run_spark(manifest, out, ScoreOptions(limit=3), master="local[1]", stop_session=False)
    assert (s1.scored, s1.errors) == (3, 1)
    assert "image file not found" in read_output(out).set_index("id").loc["late", "error"]
    _copy(data_dir, four[1], late)
    _copy(data_dir, four[2], ghost)
    s2 = run_spark(manifest, out, master="local[1]", stop_session=True)
    assert (s2.retried, s2.skipped, s2.scored, s2.errors) == (1, 2, 2, 0)
    df = read_output(out)
    assert sorted(zip(df["id"], df["age"], strict=True)) == [
        ("ghost", 50.0), ("late", 55.0), ("lesion", 45.0), ("lesion", 50.0)]
    assert df["error"].isna().all()
