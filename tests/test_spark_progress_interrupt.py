"""The Spark engine's progress and its Ctrl-C / SIGTERM, as an audit found them: no progress at
all (one job of 400k rows ran its slices silently), and a Ctrl-C that printed ~200 lines of
Python tracebacks (PySpark's own SIGINT handler calling ``cancelAllJobs`` inside the
interrupted py4j call) and Java ERROR lines, with dermsight's ``batch interrupted`` line
buried among them. Now: one line per committed slice on stderr, and a stop that says what was
kept, last, with exit code 130 (SIGTERM: 143); a re-run resumes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dermsight.batch.spark as spark_engine
from dermsight.batch.store import read_output

#: ``dermsight batch`` with slices of 4 input rows (several slices from a few images)
CLI_SLICES_OF_4 = [sys.executable, "-c",
                   "import dermsight.batch.spark as s; s.SLICE_ROWS = 4; "
                   "from dermsight.cli import main; main()", "batch"]
#: a log4j line of the JVM: "26/12/07 12:16:16 ERROR FileFormatWriter: Aborting job ..."
LOG4J_LINE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+ ", re.MULTILINE)


def _needs_spark() -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    _needs_spark()
    session = spark_engine.get_session("local[2]")
    yield session
    session.stop()


def _folder(data_dir: Path, folder: Path, n: int) -> list[str]:
    """``n`` real images copied into ``folder``: their ids."""
    folder.mkdir(parents=True)
    images = sorted((data_dir / "images").glob("*.jpg"))[:n]
    for image in images:
        shutil.copyfile(image, folder / image.name)
    return [p.stem for p in images]


def test_progress_line_says_slices_rows_and_about_how_long_is_left() -> None:
    line = spark_engine.progress_line
    # 100,000 rows in 760 s: the 300,000 left take about 2,280 s
    assert line(2, 100_000, 400_000, 760.0) == ("slice 2/8 committed: 100,000 of 400,000 rows, "
                                                "about 38 min left")
    assert line(1, 50_000, 400_000, 600.0) == ("slice 1/8 committed: 50,000 of 400,000 rows, "
                                               "about 1 h 10 min left")
    assert line(1, 50_000, 60_000, 30.0) == ("slice 1/2 committed: 50,000 of 60,000 rows, "
                                             "less than a minute left")
    assert line(8, 400_000, 400_000, 4000.0) == "slice 8/8 committed: 400,000 of 400,000 rows"
    # a total not known (a remote input): no "of", no time left
    assert line(2, 100_000, None, 760.0) == "slice 2 committed: 100,000 rows so far"


@pytest.mark.spark
@pytest.mark.slow
def test_spark_prints_one_line_per_committed_slice_unless_progress_is_off(
    spark: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    ids = _folder(data_dir, folder, 10)
    monkeypatch.setattr(spark_engine, "SLICE_ROWS", 4)
    summary = spark_engine.run_spark(folder, tmp_path / "out", partitions=2)
    assert summary.scored == len(ids)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("slice")]
    assert len(lines) == 3, lines
    assert re.fullmatch(r"slice 1/3 committed: 4 of 10 rows, (about \d+ min|less than a minute) "
                        r"left", lines[0]), lines
    assert re.fullmatch(r"slice 2/3 committed: 8 of 10 rows, (about \d+ min|less than a minute) "
                        r"left", lines[1]), lines
    assert lines[2] == "slice 3/3 committed: 10 of 10 rows"
    # progress off (``dermsight batch -q``): no line
    spark_engine.run_spark(folder, tmp_path / "quiet", progress=False, partitions=2)
    assert "slice" not in capsys.readouterr().err


def _run_and_signal(folder: Path, out: Path, signum: int, *, group: bool,
                    ) -> subprocess.CompletedProcess[str]:
    """``dermsight batch --engine spark`` in slices of 4, sent ``signum`` as soon as its first
    slice is committed (its part files appear in ``out``): to its process group as a terminal's
    Ctrl-C does (``group``), else to the process only (``kill PID``, ``timeout``)."""
    err = out.parent / f"{out.name}.stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [*CLI_SLICES_OF_4, str(folder), "--out", str(out), "--engine", "spark", "--master",
             "local[2]"], stdout=subprocess.DEVNULL, stderr=stderr, text=True,
            start_new_session=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable})
        try:
            deadline = time.monotonic() + 300
            while not list(out.glob("part-*")) and proc.poll() is None:
                assert time.monotonic() < deadline, err.read_text()[-3000:]
                time.sleep(0.1)
            assert proc.poll() is None, err.read_text()[-3000:]  # still scoring its slices
            (os.killpg if group else os.kill)(proc.pid, signum)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return subprocess.CompletedProcess(proc.args, code, "", err.read_text())


def _kept(stderr: str, how: str, out: Path) -> int:
    """The rows the stop line says ``out`` kept (it must be among the last two lines)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    said = [m for ln in lines[-2:]
            if (m := re.match(rf"batch {how}: the (\d+) rows of the slices this run committed "
                              rf"are kept in {re.escape(str(out))}; the slice in progress "
                              r"\(up to 4 input rows\) is not", ln))]
    assert len(said) == 1, stderr[-3000:]
    return int(said[0].group(1))


@pytest.mark.spark
@pytest.mark.slow
def test_ctrl_c_on_a_spark_run_is_quiet_says_what_was_kept_last_and_resumes(
    spark: Any, data_dir: Path, tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    ids = _folder(data_dir, folder, 16)  # 4 slices: the Ctrl-C comes during the second
    out = tmp_path / "out"
    run = _run_and_signal(folder, out, signal.SIGINT, group=True)
    assert run.returncode == 130, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "ERROR" not in run.stderr, run.stderr[-3000:]  # ERROR:root:..., log4j ERROR lines
    assert not LOG4J_LINE.search(run.stderr), run.stderr[-3000:]
    kept = _kept(run.stderr, "interrupted", out)
    assert run.stderr.rstrip().splitlines()[-1] == "interrupted"  # the CLI's own, exit 130
    assert kept in (4, 8, 12)
    assert len(read_output(out)) == kept  # the committed slices, nothing of the one cancelled
    again = spark_engine.run_spark(folder, out, partitions=2, progress=False)
    assert (again.skipped, again.scored) == (kept, len(ids) - kept)
    dist = read_output(out)
    assert sorted(dist["id"]) == sorted(ids)
    assert dist["id"].is_unique


@pytest.mark.spark
@pytest.mark.slow
def test_sigterm_on_a_spark_run_exits_143_saying_what_was_kept(
    data_dir: Path, tmp_path: Path,
) -> None:
    _needs_spark()
    folder = tmp_path / "in"
    _folder(data_dir, folder, 12)
    out = tmp_path / "out"
    run = _run_and_signal(folder, out, signal.SIGTERM, group=False)
    assert run.returncode == 143, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert not LOG4J_LINE.search(run.stderr), run.stderr[-3000:]
    assert run.stderr.rstrip().splitlines()[-1].startswith("batch stopped by SIGTERM: ")
    assert len(read_output(out)) == _kept(run.stderr, "stopped by SIGTERM", out)


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_process_keeps_the_session_and_puts_handlers_and_log_level_back(
    spark: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], signum: int,
) -> None:
    """A session the caller owns (a notebook's) is cancelled, not stopped: the handlers (PySpark's
    SIGINT one), the JVM's log level and the Python loggers' are put back, and it runs on."""
    import logging
    import threading

    from dermsight.batch.local import Terminated

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are set on the main thread only")
    if signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("this process handles SIGTERM itself: the run leaves it alone")
    folder = tmp_path / "in"
    ids = _folder(data_dir, folder, 10)
    monkeypatch.setattr(spark_engine, "SLICE_ROWS", 4)
    real_save = spark_engine._save
    saves: list[int] = []

    def signalled_at_the_second(result: Any, out: Path, fmt: str) -> None:
        saves.append(1)
        if len(saves) == 2:
            signal.raise_signal(signum)  # as if sent while the second slice is scored
        real_save(result, out, fmt)

    monkeypatch.setattr(spark_engine, "_save", signalled_at_the_second)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    levels = logging.getLogger().level, logging.getLogger("py4j").level
    jvm_level = spark_engine._jvm_log_level(spark.sparkContext)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt) as stopped:
        spark_engine.run_spark(folder, out, partitions=2, progress=False)
    assert isinstance(stopped.value, Terminated) == (signum == signal.SIGTERM)
    how = "stopped by SIGTERM" if signum == signal.SIGTERM else "interrupted"
    kept = _kept(capsys.readouterr().err, how, out)
    assert kept in (4, 8)  # the job of the second slice cancelled, or done before the cancel
    assert len(read_output(out)) == kept
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert (logging.getLogger().level, logging.getLogger("py4j").level) == levels
    assert spark_engine._jvm_log_level(spark.sparkContext) == jvm_level
    monkeypatch.setattr(spark_engine, "_save", real_save)
    again = spark_engine.run_spark(folder, out, partitions=2, progress=False)  # same session
    assert (again.skipped, again.scored) == (kept, len(ids) - kept)
    assert sorted(read_output(out)["id"]) == sorted(ids)


@pytest.mark.spark
@pytest.mark.slow
def test_quiet_leaves_the_slice_lines_out_of_a_spark_run(data_dir: Path, tmp_path: Path) -> None:
    _needs_spark()
    folder = tmp_path / "in"
    ids = _folder(data_dir, folder, 8)  # 2 slices of 4
    out = tmp_path / "out"
    run = subprocess.run(
        [*CLI_SLICES_OF_4, str(folder), "--out", str(out), "--engine", "spark", "--master",
         "local[2]", "-q"], capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "committed" not in run.stderr, run.stderr[-3000:]
    assert sorted(read_output(out)["id"]) == sorted(ids)
