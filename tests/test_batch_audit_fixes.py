"""Fixes from the audits of ``dermsight batch`` (local engine) and of the Python batch helpers.

* ``OUT/_summary.json`` is removed when a run first writes (a killed run no longer leaves the
  summary of an earlier run, ``"interrupted": false`` with old totals); a refused run keeps it.
* A SIGTERM is handled as a Ctrl-C: the rows scored so far and the summary are written, the run
  says it was stopped, exit code 143.
* ``read_output`` gives the same frame for Parquet and CSV parts (``flags`` ``""`` on a scored
  row without flags), refuses a path that is not an output and a column the output lacks, and
  gives an empty frame with the output's columns for an output folder with no row yet.
* ``RunSummary.render()`` ends with the warnings ``dermsight batch`` prints (not twice in the
  CLI); the repeated-id warning no longer says the path always tells the rows apart.
* ``ScoreOptions`` refuses a count that is not a whole number with a ``TypeError`` naming it.
* ``dermsight batch``: warns once when --workers x --threads exceeds the CPU cores, refuses
  --chunk-size with --engine spark.
* ``estimate_count`` counts a folder of images and TFRecord shards (a progress total).

Real images: the shared isic-subset.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from batch_support import image_folder, signal_a_batch_run, strip_columns
from cli_support import run
from dermsight.batch.local import run_local
from dermsight.batch.options import ScoreOptions
from dermsight.batch.schema import HEAD_COLUMNS, TAIL_COLUMNS, output_columns
from dermsight.batch.store import (
    SUMMARY_FILE,
    OutputError,
    PartStore,
    part_files,
    read_output,
)
from dermsight.batch.summary import RunSummary
from dermsight.io import estimate_count, iter_records
from dermsight.io.tfrecord import write_tfrecord

IDS = [f"ISIC_{i:07d}" for i in (0, 1, 2, 3, 4, 6, 7, 8)]  # (ISIC_0000005 has no image)
CLASSES = ["MEL", "NV"]


# --- 1. the summary of an earlier run ------------------------------------------------------------


def test_a_run_removes_the_last_summary_when_it_writes(tmp_path: Path, data_dir: Path) -> None:
    """Once a run has written to the folder (and after it is killed) there is no summary of an
    earlier run; a refused run leaves the folder, summary included, as it was; the end writes a
    new one."""
    folder = image_folder(tmp_path, data_dir, IDS[:2])
    out = tmp_path / "out"
    first = run_local(folder, out, ScoreOptions(workers=1), progress=False)
    summary = out / SUMMARY_FILE
    assert json.loads(summary.read_text())["rows"] == 2
    model = {"name": first.model["name"], "version": first.model["version"]}
    classes = [c.removeprefix("p_") for c in read_output(out).columns if c.startswith("p_")]

    other = PartStore(out, "parquet", classes, model={"name": "other", "version": "9"})
    with pytest.raises(OutputError, match="scored by"), other:  # another model: refused
        pass
    assert summary.exists()

    with PartStore(out, "parquet", classes, model=model) as store:
        assert summary.exists()  # accepted, nothing written yet: the folder is as it says
        store.write(read_output(out).iloc[:0])  # the run's first part
        assert not summary.exists()  # what a kill -9 here leaves: no stale summary
    assert not summary.exists()

    again = run_local(folder, out, ScoreOptions(workers=1), progress=False)
    assert (again.scored, again.skipped) == (0, 2)
    written = json.loads(summary.read_text())
    assert (written["rows"], written["skipped"], written["interrupted"]) == (0, 2, False)


# --- 2. SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_keeps_the_rows_scored_and_writes_the_summary(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> None:
    """SIGTERM to a real ``dermsight batch`` once its first batches are scored (their overlay
    PNGs exist), well inside its first chunk: the rows are kept, the summary says
    ``interrupted``, one line says it was stopped by SIGTERM, exit code 143."""
    chosen = sorted(metadata["image_id"])[:24]
    _, out, code, err = signal_a_batch_run(tmp_path, data_dir, chosen, signal.SIGTERM)
    assert code == 143, (code, err)
    assert "Traceback" not in err
    kept = read_output(out)
    assert 2 <= len(kept) < len(chosen)
    assert len(part_files(out)) == 1
    assert (f"batch stopped by SIGTERM: {len(kept)} rows scored by this run are kept in {out}; "
            "run the same command again to score the rest") in err
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["interrupted"] is True
    assert summary["rows"] == summary["total"]["rows"] == len(kept)
    assert not list(out.glob(".tmp-*"))


# --- 3-5. read_output ----------------------------------------------------------------------------


def _rows() -> pd.DataFrame:
    """Three output rows as the scorer makes them: a scored row without flags (``""``), a
    flagged one, an error row (no flags: null)."""
    base = {c: None for c in output_columns(CLASSES)}
    scored = {**base, "id": "a", "path": "/x/a.jpg", "p_MEL": 0.25, "p_NV": 0.75,
              "prediction": "NV", "malignant_probability": 0.25, "risk": "moderate",
              "flags": "", "ood_score": -3.5, "ita": 20.0, "ita_band": "intermediate",
              "model_name": "m", "model_version": "1", "tta": "false", "card_sha256": "ab"}
    flagged = {**scored, "id": "b", "path": "/x/b.jpg", "flags": "blurred;compressed",
               "age": 45.0, "sex": "female"}
    error = {**base, "id": "c", "path": "/x/c.jpg", "error": "c.jpg: not an image",
             "model_name": "m", "model_version": "1", "tta": "false", "card_sha256": "ab"}
    return pd.DataFrame([scored, flagged, error], columns=output_columns(CLASSES))


def _written(tmp_path: Path, fmt: str) -> Path:
    out = tmp_path / fmt
    with PartStore(out, fmt, CLASSES) as store:
        store.write(_rows())
    return out


def test_parquet_and_csv_outputs_read_back_alike(tmp_path: Path) -> None:
    parquet = read_output(_written(tmp_path, "parquet"))
    csv = read_output(_written(tmp_path, "csv"))
    pd.testing.assert_frame_equal(csv, parquet)
    assert csv["flags"].tolist() == ["", "blurred;compressed", None]
    assert csv["flags"].str.contains("blurred").tolist() == [False, True, None]
    # some columns, in the order asked, flags without the error column
    for out in (tmp_path / "parquet", tmp_path / "csv"):
        some = read_output(out, ["flags", "id"])
        assert list(some.columns) == ["flags", "id"]
        assert some["flags"].tolist() == ["", "blurred;compressed", None]


def test_read_output_refuses_what_is_not_an_output(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist") as missing:
        read_output(tmp_path / "nowhere")
    assert isinstance(missing.value, OutputError)
    afile = tmp_path / "afile.parquet"
    afile.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        read_output(afile)
    with pytest.raises(OutputError, match="holds no part files"):
        read_output(tmp_path)  # a folder, not an output
    evaluated = tmp_path / "ev"
    shutil.copytree(_written(tmp_path, "parquet"), evaluated / "scores")
    with pytest.raises(OutputError, match=f"did you mean {evaluated / 'scores'}"):
        read_output(evaluated)


def test_an_output_folder_with_no_row_reads_as_an_empty_frame(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    with PartStore(out, "parquet", CLASSES):
        pass  # a run that wrote no row: the lock, no part
    df = read_output(out)
    assert df.empty
    assert list(df.columns) == [*HEAD_COLUMNS, *TAIL_COLUMNS]
    assert df["malignant_probability"].dtype == float
    some = read_output(out, ["id", "p_MEL"])
    assert (list(some.columns), len(some)) == (["id", "p_MEL"], 0)
    with pytest.raises(OutputError, match="riskk"):
        read_output(out, ["riskk"])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_unknown_column_is_named_not_called_damage(tmp_path: Path, fmt: str) -> None:
    out = _written(tmp_path, fmt)
    with pytest.raises(OutputError) as exc:
        read_output(out, ["id", "riskk"])
    message = str(exc.value)
    assert "'riskk'" in message
    assert "risk" in message.replace("'riskk'", "")
    assert "damaged" not in message
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_column_an_older_dermsight_did_not_write_reads_as_null(tmp_path: Path,
                                                                 fmt: str) -> None:
    out = _written(tmp_path, fmt)
    strip_columns(out, ["tta", "card_sha256"])
    df = read_output(out, ["id", "tta"])
    assert list(df.columns) == ["id", "tta"]
    assert df["tta"].isna().all()
    assert len(df) == 3


# --- 6-7. the summary's text ---------------------------------------------------------------------


def _summary(**fields: Any) -> RunSummary:
    return RunSummary(input="in", out="out", engine="local", model={"name": "m", "version": "1"},
                      **fields)


def test_render_ends_with_the_warnings() -> None:
    optimistic = ("figures are optimistic: 3 evaluated images were used to train / calibrate "
                  "this model")
    s = _summary(duplicate_ids=2, evaluation_warnings=[optimistic])
    text = s.render()
    assert f"warning: {optimistic}" in text
    assert "warning: 2 input rows repeat an id of an earlier row" in text
    assert "warning:" not in s.render(warnings=False)
    assert "warning:" not in _summary().render()


def test_duplicate_id_warning_does_not_promise_the_path_tells_them_apart() -> None:
    (line,) = _summary(duplicate_ids=1).input_warnings()
    assert "tell them apart by the path column" not in line
    assert "only where their paths differ" in line


def test_cli_prints_the_warnings_once(tmp_path: Path, data_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest listing one image twice: the warning on stderr, not also on stdout."""
    image = data_dir / "images" / f"{IDS[0]}.jpg"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,path,age\nx,{image},40\nx,{image},50\n")
    code, out, err = run(capsys, "batch", str(manifest), "--out", str(tmp_path / "o"),
                         "--workers", "1", "-q")
    assert code == 0, err
    assert "warning:" not in out
    assert err.count("repeat an id of an earlier row") == 1


# --- 8. ScoreOptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [("batch_size", "16"), ("workers", 2.5),
                                              ("threads", "2"), ("limit", True)])
def test_score_options_refuse_a_count_that_is_not_a_whole_number(field: str,
                                                                 value: object) -> None:
    with pytest.raises(TypeError, match=f"{field} must be a whole number"):
        ScoreOptions(**{field: value})  # type: ignore[arg-type]


def test_docs_name_the_fmt_field() -> None:
    text = (Path(__file__).parents[1] / "docs" / "batch.md").read_text()
    held = text[text.index("`ScoreOptions` holds"):][:400]
    assert "`fmt`" in held


# --- 9. --threads and --chunk-size ---------------------------------------------------------------


def test_more_threads_than_cores_is_warned_once(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import dermsight.parallel

    monkeypatch.setattr(dermsight.parallel, "default_workers", lambda most=None: 2)
    missing = str(tmp_path / "nothing-here")  # stops the run right after the warning
    code, _, err = run(capsys, "batch", missing, "--out", str(tmp_path / "o"),
                       "--workers", "2", "--threads", "2")
    assert code == 2
    warned = [line for line in err.splitlines() if line.startswith("warning: --workers")]
    assert warned == ["warning: --workers 2 x --threads 2 = 4 inference threads on 2 CPU cores: "
                      "more threads than cores take turns on them and can make the run much "
                      "slower; the defaults (one worker per core, one thread each) use every "
                      "core"]
    code, _, err = run(capsys, "batch", missing, "--out", str(tmp_path / "o"), "--workers", "2")
    assert code == 2
    assert "warning: --workers" not in err


def test_chunk_size_with_spark_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "batch", str(tmp_path / "nothing-here"), "--out",
                       str(tmp_path / "o"), "--engine", "spark", "--chunk-size", "10")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "--chunk-size is an option of the local engine" in lines[0]


# --- 11. a folder of images and shards: a total ---------------------------------------------------


def test_a_folder_of_images_and_shards_is_counted(tmp_path: Path, data_dir: Path) -> None:
    folder = image_folder(tmp_path, data_dir, IDS[:2])
    write_tfrecord(folder / "train00-3.tfrec", [
        {"image": (data_dir / "images" / f"{i}.jpg").read_bytes(), "image_name": i}
        for i in IDS[2:5]])
    (folder / "empty.tfrec").write_bytes(b"")  # one error row
    n = sum(1 for _ in iter_records(folder, decode=False))
    assert n == 2 + 3 + 1
    assert estimate_count(folder) == n
    assert estimate_count(folder / "train00-3.tfrec") == 3
