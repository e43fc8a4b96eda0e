"""The Spark batch runner (extra ``[spark]``): the scoring core inside ``mapInPandas``.

* Every input (image folders, CSV manifests and ISIC layouts, DICOM, TFRecord shards, ``s3://``
  prefixes) is listed on the driver by the same readers, and the same pending-row logic, as the
  local runner (``local.pending_rows``), into a manifest of ids, paths and metadata (no pixels);
  so both engines score the same files and write one row per input row. The workers read the
  images themselves (local/shared paths, TFRecord references, or remote URLs through fsspec).
  (Spark's ``binaryFile`` source is not used: it hides ``_``-prefixed names, matches extensions
  case-sensitively, skips empty files, and cannot see a DICOM file's tags.)
* The manifest is written in slices of ``SLICE_ROWS`` input rows, one Spark job (and one commit)
  each: a killed job loses the slice in progress (up to ``SLICE_ROWS`` rows, scored again from
  its start: only whole slices commit), and a re-run resumes after the slices already committed
  (``resume.py``); it says so (``resuming_message``), as a Ctrl-C does
  (``interrupted_message``).
* Progress: one line on stderr per committed slice (``progress_line``: rows committed of the
  rows this run scores, and about how long is left), since Spark's console progress bar is off.
* A Ctrl-C or SIGTERM (``_Stop``): dermsight's own handler replaces PySpark's during the run
  (whose handler calls ``cancelAllJobs`` inside the interrupted py4j call: pages of Python
  tracebacks and Java ERROR lines). It only notes the signal; another thread turns the JVM's log
  off and cancels the jobs; the run then stops the session and says last what it kept
  (``interrupted_message``), then raises ``KeyboardInterrupt`` (SIGTERM: ``Terminated``).
* Before the first slice, one tiny task checks that the workers' Python can import dermsight
  (``check_workers``): a wrong ``PYSPARK_PYTHON`` is one line, not pages of task failures.
* A ``local[...]`` session logs WARN and up, without Spark's start-up banner and the
  NativeCodeLoader WARN (``_LOG4J2``): ``dermsight batch -q`` prints only dermsight's lines.
* The model bundle is shipped with ``SparkContext.addFile`` and opened once per Python worker
  (one ONNX Runtime session, cached in a module global; Spark reuses Python workers).
* Output: the part-file dataset of ``store.py`` (Parquet or CSV), appended to, so a re-run skips
  rows already written and retries error rows, exactly like the local runner (``resume.py``).
* Heatmaps (``options.heatmaps``): the names of the overlay files are planned on the driver, in
  input order, over the whole job (``overlays.plan_names``, a ``heatmap`` column of the
  manifest), so two tasks never write the same file whatever the partitioning, and apart from
  the files already in the folder (listed once, on the driver), so none is replaced.

Reading ``s3a://`` paths natively needs the hadoop-aws connector jars on the cluster (EMR,
Dataproc and Databricks ship them); this runner does not need them, because ``s3://`` inputs are
listed and read through fsspec.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from dermsight.batch.local import Terminated, pending_rows
from dermsight.batch.options import SLICE_ROWS as _SLICE_ROWS
from dermsight.batch.options import ScoreOptions
from dermsight.batch.overlays import taken_names
from dermsight.batch.references import local_path
from dermsight.batch.resume import Listings, MetadataCheck, prepare_resume
from dermsight.batch.schema import spark_ddl
from dermsight.batch.scorer import score_frame
from dermsight.batch.sources import ROW_KEYS, DuplicateIds, open_source
from dermsight.batch.store import PartStore, tally
from dermsight.batch.summary import RunSummary, run_evaluation
from dermsight.bundle import default_bundle_path, load_bundle
from dermsight.parallel import limit_blas

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from dermsight.predict import Dermsight

_T = TypeVar("_T")

#: Images per Arrow batch handed to a Python worker.
ARROW_BATCH = 256
#: Input rows per Spark job (one commit each): what a killed job can lose (``options.py``).
SLICE_ROWS = _SLICE_ROWS

# One model per Python worker process and bundle: loaded on first use, reused by later tasks.
_MODELS: dict[tuple[str, int], Dermsight] = {}


def worker_model(bundle_name: str, threads: int) -> Dermsight:
    """The model of a shipped bundle, loaded once per Python worker process."""
    from pyspark import SparkFiles

    from dermsight.predict import Dermsight

    key = (bundle_name, threads)
    model = _MODELS.get(key)
    if model is None:
        model = Dermsight.load(SparkFiles.get(bundle_name), threads=threads)
        _MODELS[key] = model
    return model


def make_scorer(
    bundle_name: str, options: ScoreOptions | None = None,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function: Arrow batches of input rows -> ``score_frame`` output.

    ``options.threads`` (ONNX Runtime threads) and ``options.workers`` (scoring threads) are per
    Spark task, default 1 each; ``options.heatmaps`` must be a folder every executor can write.
    Overlay names are unique over the whole job only when the input rows carry them (a
    ``heatmap`` column from ``overlays.plan_names``, as ``run_spark`` plans them); without it,
    only within one Arrow batch (and apart from the files in the folder when it starts).
    """
    options = options or ScoreOptions()
    threads = options.threads or 1

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = worker_model(bundle_name, threads)
        with limit_blas(1):  # the scoring threads' numpy calls: no BLAS threads of their own
            yield from _score_batches(model, batches, options)

    return score_partition


def _score_batches(model: Dermsight, batches: Iterator[pd.DataFrame], options: ScoreOptions,
                   ) -> Iterator[pd.DataFrame]:
    for pdf in batches:
        if "path" in pdf.columns:
            pdf = pdf.assign(path=[None if p is None else local_path(str(p))
                                   for p in pdf["path"]])
        yield score_frame(pdf, model, options)


def get_session(master: str | None, conf: Mapping[str, str] | None = None) -> SparkSession:
    """The active SparkSession, or a new one on ``master`` (default ``local[*]``).

    Python workers run this interpreter (``PYSPARK_PYTHON``) unless the environment says
    otherwise, so they see the same installed packages.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # One BLAS/OpenMP thread per Python worker: Spark already runs one task per core.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    builder = SparkSession.builder.appName("dermsight-batch")
    if master is not None or active is None:
        master = master or "local[*]"
        builder = builder.master(master)
    settings: dict[str, str] = {}
    if master is not None and master.startswith("local"):
        # A local session serves nothing to the network: driver on loopback, no web UI.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings.update({
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.host": "127.0.0.1",
            "spark.ui.enabled": "false",
            # The driver JVM is also the executor here and shares the few cores with the Python
            # workers: C1-only JIT and the serial GC cut its CPU use by about half (measured:
            # JVM CPU per 2,000 images 18.8 s -> 10.1 s, warm throughput unchanged or better).
            # Its log4j settings (``_LOG4J2``): no start-up banner, no NativeCodeLoader WARN.
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
                                             f"-Dlog4j2.configurationFile={_log4j_config()}",
        })
    settings = {
        **settings,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH),
        "spark.python.worker.reuse": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",
        "spark.executorEnv.OMP_NUM_THREADS": "1",
        # the output's 40-odd columns: no "Truncated the string representation of a plan" WARN
        "spark.sql.debug.maxToStringFields": "1000",
        **(conf or {}),
    }
    for k, v in settings.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


#: log4j 2 settings of a local session: what PySpark logs by default (WARN and up, on stderr),
#: without the NativeCodeLoader WARN that every machine without Hadoop's native library prints
#: and without Spark's banner about its default profile; every ERROR (a failed task) is shown
_LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
logger.parquet.name = org.apache.parquet.CorruptStatistics
logger.parquet.level = error
"""


def _log4j_config() -> str:
    """A file holding ``_LOG4J2`` for this process's Spark JVM (removed when Python exits)."""
    fd, name = tempfile.mkstemp(prefix="dermsight-log4j2-", suffix=".properties")
    with os.fdopen(fd, "w") as fh:
        fh.write(_LOG4J2)
    atexit.register(Path(name).unlink, missing_ok=True)
    return name


def check_workers(spark: SparkSession) -> None:
    """One tiny task on a worker: ``UserError`` (one line, exit code 2) when its Python cannot
    import dermsight, before any scoring task fails with pages of Java and Python tracebacks."""
    def probe(_: object) -> tuple[bool, str]:  # nested: pickled by value, runs without dermsight
        import importlib.util
        import sys

        return importlib.util.find_spec("dermsight") is not None, sys.executable

    found, python = spark.sparkContext.parallelize([0], 1).map(probe).collect()[0]
    if not found:
        raise _workers_error(python)


def _workers_error(python: str | None = None) -> Exception:
    from dermsight.cli.errors import UserError

    theirs = f"the workers run {python}, " if python else ""
    return UserError(
        f"the Spark workers cannot import dermsight: set PYSPARK_PYTHON to a Python that has it "
        f"installed ({theirs}dermsight runs in {sys.executable}), or install dermsight on every "
        "worker (docs/batch.md, 'Spark')")


def _manifest_frame(spark: SparkSession, rows: list[Mapping[str, Any]]) -> DataFrame:
    """Driver-side manifest rows (ids, paths, metadata; no pixels) -> a Spark DataFrame."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    schema = StructType([
        StructField(c, DoubleType() if c == "age" else StringType())
        for c in (*ROW_KEYS, "heatmap")
    ])
    pdf = pd.DataFrame.from_records(rows, columns=schema.fieldNames())
    pdf["age"] = pd.to_numeric(pdf["age"], errors="coerce").astype("float64")
    for c in schema.fieldNames():
        if c != "age":
            pdf[c] = pdf[c].astype(object).where(pdf[c].notna(), None)
    return spark.createDataFrame(pdf, schema=schema)


def _slices(rows: Iterable[Mapping[str, Any]], size: int,
            ) -> Iterator[tuple[list[Mapping[str, Any]], bool]]:
    """``rows`` in lists of at most ``size``, read lazily, each with whether it is the last
    (a full list is handed on once the row after it is read: one row read ahead)."""
    chunk: list[Mapping[str, Any]] = []
    for row in rows:
        if len(chunk) >= size:
            yield chunk, False
            chunk = []
        chunk.append(row)
    if chunk:
        yield chunk, True


def _save(result: DataFrame, out: Path, fmt: str) -> None:
    """One slice's scored rows appended to ``out``: one Spark job, one commit."""
    writer = result.write.mode("append").format(fmt)
    if fmt == "csv":
        writer = writer.option("header", "true")
    else:
        writer = writer.option("compression", "zstd")
    try:
        writer.save(f"file://{out.resolve()}")
    except Exception as exc:  # a worker that check_workers did not reach (another node)
        if "No module named 'dermsight'" in str(exc):
            raise _workers_error() from None
        raise


def _clear_stopped_slice(out: Path) -> bool:
    """Remove what a stopped job left of its slice in progress (``out/_temporary``): True when
    there was some. A killed Spark job leaves its committed tasks in ``_temporary``; the next
    job commit would merge them into the output (rows the resume logic never saw: duplicates).
    The caller holds the lock, so nothing else is writing: start clean. That slice is then
    scored again from its start (``resuming_message`` says so)."""
    temporary = out / "_temporary"
    stopped = temporary.exists()
    shutil.rmtree(temporary, ignore_errors=True)
    return stopped


def _score_slices(  # noqa: PLR0913 - keyword-only settings and hooks of the run
    spark: SparkSession, rows: Iterator[Mapping[str, Any]],
    scorer: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]], *,
    classes: Sequence[str], out: Path, fmt: str, n_parts: int,
    on_commit: Callable[[int, int, bool], None] | None = None,
    on_start: Callable[[], None] | None = None,
) -> int:
    """Score ``rows`` in slices of ``SLICE_ROWS``, one Spark job and commit each, into
    ``out``; the number of rows committed. ``on_commit(slices, rows, last)`` after each commit
    (``last``: no row is left to score; ``_Stop.on_commit`` ends the loop after a signal);
    ``on_start()`` before the first slice's job writes into ``out`` (none: nothing to score)."""
    committed = 0
    for n, (chunk, last) in enumerate(_slices(rows, SLICE_ROWS), start=1):
        if n == 1 and on_start is not None:
            on_start()
        frame = _manifest_frame(spark, chunk).repartition(min(n_parts, len(chunk)))
        _save(frame.mapInPandas(scorer, schema=spark_ddl(classes)), out, fmt)
        committed += len(chunk)
        if on_commit is not None:
            on_commit(n, committed, last)
    return committed


class _Progress:
    """The line ``progress_line`` prints after each committed slice (``on_commit``): the rows
    this run scores are the input's rows (``estimate``; None: unknown, as for a remote input)
    less those the listing found done so far (``listings``), at most ``limit``; exact at the
    last slice. The time left: the time per row so far, times the rows left."""

    def __init__(self, estimate: int | None, limit: int | None, listings: Listings) -> None:
        self.estimate, self.limit, self.listings = estimate, limit, listings
        self.t0 = time.perf_counter()

    def total(self, committed: int, last: bool) -> int | None:
        if last:
            return committed
        if self.estimate is None:
            return None
        left = self.estimate - self.listings.skipped
        if self.limit is not None:
            left = min(left, self.limit)
        return left if left > committed else None  # more rows come: an estimate that is off

    def __call__(self, slices: int, committed: int, last: bool) -> None:
        total = self.total(committed, last)
        _say(progress_line(slices, committed, total, time.perf_counter() - self.t0))


def progress_line(slices: int, committed: int, total: int | None, elapsed_s: float) -> str:
    """One committed slice: ``slice 2/8 committed: 100,000 of 400,000 rows, about 38 min
    left``; ``total`` None (not known): ``slice 2 committed: 100,000 rows so far``."""
    if total is None:
        return f"slice {slices} committed: {committed:,} row{'s' if committed != 1 else ''} so far"
    line = (f"slice {slices}/{max(slices, math.ceil(total / SLICE_ROWS))} committed: "
            f"{committed:,} of {total:,} row{'s' if total != 1 else ''}")
    if committed >= total or committed <= 0:
        return line
    return f"{line}, {_time_left(elapsed_s / committed * (total - committed))} left"


def _time_left(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


class _Stopped(Exception):
    """A Ctrl-C or SIGTERM noted by ``_Stop``: ends its block."""


class _Stop:
    """dermsight's handling of a Ctrl-C (SIGINT), and of a SIGTERM left to its default, while a
    Spark run is in progress (on the main thread; elsewhere nothing is installed).

    PySpark's own SIGINT handler calls ``cancelAllJobs`` from inside the py4j call that the
    signal interrupted (a re-entrant call on the same connection): ``ERROR:root:Exception while
    sending command``, ``Py4JNetworkError`` and ``KeyboardInterrupt`` tracebacks, then a page of
    Java ERROR lines per task as the session goes down. This handler only notes the signal and
    starts a thread (its own py4j connection) that turns the JVM's log off, then cancels the
    jobs; the py4j and root Python loggers are silenced too. The main thread's call returns when
    its job is cancelled, and ``check`` raises ``_Stopped`` there (``on_commit``) or at the
    next row listed (``rows``). A second signal while stopping raises ``KeyboardInterrupt`` at
    once. The block ends there, quietly; after the session is stopped, ``close`` puts back the
    previous handlers (so a Ctrl-C while the session stops is still dermsight's) and the
    loggers' levels, and ``raise_if_stopped`` says what was kept and raises on. ``progress``:
    called with each committed slice (``_Progress``)."""

    def __init__(self, spark: SparkSession,
                 progress: Callable[[int, int, bool], None] | None = None) -> None:
        self.spark, self.progress = spark, progress
        self.signum: int | None = None
        self.committed = 0
        self._handlers: dict[int, Any] = {}
        self._levels: dict[str, int] = {}
        self._log_level: tuple[Any, str] | None = None  # the JVM, its root level before
        self._cancelling: threading.Thread | None = None
        #: set once the work is over (the session stopping, ``close`` coming): a signal then
        #: is only noted, so that ``close`` and ``raise_if_stopped`` still run
        self.stopping = False

    def __enter__(self) -> _Stop:
        if threading.current_thread() is not threading.main_thread():
            return self
        signums = [signal.SIGINT]
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # a caller's own: left alone
            signums.append(signal.SIGTERM)
        for signum in signums:
            self._handlers[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if self._cancelling is not None:  # its log level set before the session stops
            self._cancelling.join(timeout=30)
        if isinstance(exc, KeyboardInterrupt) and self.signum is None:  # not through _note
            self.signum = signal.SIGINT
        # whatever the cancelled job raised (a Py4JJavaError): the signal is the cause
        return self.signum is not None and exc is not None

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:  # the session stopping: nothing left to cancel or to stop waiting for
            if self.signum is None:
                self.signum = signum
            return
        if self.signum is not None:  # a second Ctrl-C: stop waiting for the cancel
            raise KeyboardInterrupt
        self.signum = signum
        for name in ("py4j", ""):  # "": the root logger, which py4j's errors reach too
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.CRITICAL + 1)
        self._cancelling = threading.Thread(target=self._cancel, name="dermsight-cancel",
                                            daemon=True)
        self._cancelling.start()

    def _cancel(self) -> None:
        try:
            sc = self.spark.sparkContext
            level = _jvm_log_level(sc)
            if level is not None:
                self._log_level = (sc._jvm, level)
            sc.setLogLevel("OFF")  # the killed tasks' and the aborted write's ERROR lines
            sc.cancelAllJobs()
        except Exception:  # noqa: BLE001 - the session already going down: nothing to cancel
            pass

    def check(self) -> None:
        """``_Stopped`` if a signal was noted."""
        if self.signum is not None:
            raise _Stopped

    def rows(self, rows: Iterable[_T]) -> Iterator[_T]:
        """``rows``, checked for a signal before each one and at their end (the driver's
        listing: before each slice's job starts)."""
        for row in rows:
            self.check()
            yield row
        self.check()

    def on_commit(self, slices: int, committed: int, last: bool) -> None:
        """After a slice's commit: counted, then ``_Stopped`` if a signal came while its job
        ran (and the job finished before the cancel), else the progress line."""
        self.committed = committed
        self.check()
        if self.progress is not None:
            self.progress(slices, committed, last)

    def raise_if_stopped(self, out: str | os.PathLike[str]) -> None:
        """After a signal: say what ``out`` kept (``interrupted_message``), then raise
        ``KeyboardInterrupt`` (SIGTERM: ``local.Terminated``, a ``KeyboardInterrupt``)."""
        if self.signum is None:
            return
        _say(interrupted_message(out, self.committed, signum=self.signum))
        raise Terminated if self.signum == signal.SIGTERM else KeyboardInterrupt

    def finish(self, out: str | os.PathLike[str], *, stop_session: bool) -> None:
        """The end of the run: stop the session (``stop_session``), ``close``, then
        ``raise_if_stopped``; a signal meanwhile is only noted (``stopping``), so none of these
        is cut short and the line of what ``out`` kept still comes last."""
        self.stopping = True
        try:
            if stop_session:
                self.spark.stop()
        finally:
            self.close()
            self.raise_if_stopped(out)

    def close(self) -> None:
        """Put back the signal handlers, the Python loggers' levels and the JVM's log level
        (the JVM outlives a stopped session: PySpark starts the next one in it). Call after the
        session stopped, or once the cancelled tasks are gone. A signal from here on is only
        noted (``stopping``); the handlers are put back last, so that one cannot cut this
        short."""
        self.stopping = True
        if self._cancelling is not None:
            self._cancelling.join(timeout=30)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._levels.clear()
        if self._log_level is not None:
            jvm, root_level = self._log_level
            with contextlib.suppress(Exception):  # the JVM gone: nothing to put back
                jvm.org.apache.spark.util.Utils.setLogLevel(
                    jvm.org.apache.logging.log4j.Level.toLevel(root_level))
            self._log_level = None
        for signum, handler in self._handlers.items():
            # None: a handler not set from Python, which cannot be put back; Python's own
            signal.signal(signum, handler if handler is not None else (
                signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL))
        self._handlers.clear()


def _jvm_log_level(sc: Any) -> str | None:
    """The JVM's root log level (log4j 2), to put back after a cancel; None if unknown."""
    try:
        return str(sc._jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel()
                   .name())
    except Exception:  # noqa: BLE001 - another logging backend: left as the cancel set it
        return None


def run_spark(  # noqa: PLR0913 - keyword-only settings of the run
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: ScoreOptions | None = None,
    *,
    bundle: str | os.PathLike[str] | None = None,
    master: str | None = None,
    partitions: int | None = None,
    spark_conf: Mapping[str, str] | None = None,
    stop_session: bool | None = None,
    progress: bool = True,
) -> RunSummary:
    """Score ``input`` with Spark into the part-file dataset ``out`` (skips rows already there).

    ``options``: see ``ScoreOptions`` (``workers`` and ``threads`` are per Spark task, default
    1). ``options.heatmaps`` must be a folder every executor can write to (local mode: any local
    folder). ``partitions``: tasks per slice (``SLICE_ROWS`` input rows, one Spark job and
    commit each), default 4 x the cluster's cores. ``stop_session``: stop the session at the end
    (default: only if this call started it). ``progress``: one line on stderr per committed
    slice (``progress_line``).

    A Ctrl-C (or a SIGTERM, where the process left it to its default) on the main thread cancels
    the Spark jobs quietly (``_Stop``), stops the session as at the end, says on stderr what the
    output kept (``interrupted_message``, the last line) and raises ``KeyboardInterrupt``
    (SIGTERM: ``local.Terminated``, a ``KeyboardInterrupt``).
    """
    options = options or ScoreOptions()
    t0 = time.perf_counter()
    bundle_dir = Path(bundle) if bundle is not None else default_bundle_path()
    loaded = load_bundle(bundle_dir)  # validate on the driver before starting anything
    card = loaded.card
    source = open_source(input, options.storage_options)
    summary = RunSummary(input=source.input, out=str(out), engine="spark",
                         model={"name": card.name, "version": card.version}, fmt=options.fmt,
                         tta=options.tta)
    had_session = _active_session() is not None
    # the executors load the bundle shipped by ``addFile``: the same card.json bytes, so their
    # rows' card_sha256 is this one
    store = PartStore(out, options.fmt, card.classes, model=summary.model,
                      bundle=loaded.card_sha256, tta=options.tta,
                      heatmaps=options.heatmaps is not None)
    # the output rows' metadata, from the store's one read, as the local runner keeps it
    check = store.reader = MetadataCheck()
    with store:
        stopped = _clear_stopped_slice(Path(out))
        resume = prepare_resume(store, source.rows, options.limit)
        summary.retried = resume.retried
        before = store.contents.tally()  # read when the store opened the output
        _say(resuming_message(out, before["rows"]) if stopped else None)
        spark = get_session(master, spark_conf)
        summary.startup_s = time.perf_counter() - t0
        # PySpark's SIGINT handler (set when the context starts) replaced by dermsight's
        stop = _Stop(spark)
        try:
            sc = spark.sparkContext
            with stop:  # a Ctrl-C / SIGTERM ends this block quietly
                check_workers(spark)
                bundle_dir = bundle_dir.resolve()
                sc.addFile(str(bundle_dir), recursive=True)
                taken = (taken_names(options.heatmaps, store.contents.take_heatmaps())
                         if options.heatmaps is not None else None)
                heatmaps = (Path(options.heatmaps).resolve() if options.heatmaps is not None
                            else None)
                scorer = make_scorer(bundle_dir.name, replace(
                    options, heatmaps=heatmaps, storage_options=source.storage_options))
                n_parts = partitions or 4 * sc.defaultParallelism
                duplicates = DuplicateIds()
                listings = Listings(on_done=check.see if resume.done else None)
                if progress:
                    stop.progress = _Progress(source.estimate, options.limit, listings)
                rows = pending_rows(source, resume.done, options.limit, duplicates, taken,
                                    listings=listings)
                _score_slices(spark, stop.rows(rows), scorer, classes=card.classes,
                              out=Path(out), fmt=options.fmt, n_parts=n_parts,
                              on_commit=stop.on_commit, on_start=store.starts_writing)
                summary.duplicate_ids, summary.skipped = duplicates.count, listings.skipped
                summary.not_listed = listings.not_listed if resume.done else 0
                summary.metadata_changed = check.changed()
        finally:  # the last line: what the output kept
            stop.finish(out, stop_session=stop_session if stop_session is not None
                        else not had_session)
        summary.elapsed_s = time.perf_counter() - t0
        _count_run(summary, before, tally(out))  # Spark wrote its parts outside the store
        if options.evaluate:
            run_evaluation(summary, card, source.rows, bundle_dir)
        store.write_summary(summary.to_dict())
    return summary


def _count_run(summary: RunSummary, before: dict[str, Any], after: dict[str, Any]) -> None:
    """``summary``'s counts of this run: the output's tally ``after`` less ``before``."""
    summary.total = after
    summary.scored = after["rows"] - before["rows"]
    summary.errors = after["errors"] - before["errors"]
    summary.risk = {k: after["risk"][k] - before["risk"][k] for k in after["risk"]}
    summary.flags = {k: n - before["flags"].get(k, 0) for k, n in after["flags"].items()
                     if n - before["flags"].get(k, 0)}
    summary.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")


def resuming_message(out: str | os.PathLike[str], kept: int) -> str:
    """What a run says when the last one stopped in the middle of a slice (``OUT/_temporary``
    was left): only whole slices are committed, so that slice is scored again from its start.
    ``kept``: the rows ``out`` holds."""
    return (f"resuming {out}: the {kept} row{'s' if kept != 1 else ''} it holds "
            f"{'are' if kept != 1 else 'is'} kept; the slice the last run was scoring when it "
            f"stopped was not committed (only whole slices of up to {SLICE_ROWS:,} input rows "
            "are), so its images are scored again from the start of that slice")


def interrupted_message(out: str | os.PathLike[str], committed: int, *,
                        signum: int = signal.SIGINT) -> str:
    """What a run stopped by Ctrl-C (``signum`` SIGINT) or SIGTERM says: the rows of the
    slices it committed are kept, not those of the slice in progress."""
    how = "stopped by SIGTERM" if signum == signal.SIGTERM else "interrupted"
    return (f"batch {how}: the {committed} row{'s' if committed != 1 else ''} of the "
            f"slices this run committed are kept in {out}; the slice in progress (up to "
            f"{SLICE_ROWS:,} input rows) is not, and is scored again from its start: run the "
            "same command again to score it and the rest")


def _say(line: str | None) -> None:
    """One line on stderr (None: nothing)."""
    if line is not None:
        print(line, file=sys.stderr, flush=True)


def _active_session() -> SparkSession | None:
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()
