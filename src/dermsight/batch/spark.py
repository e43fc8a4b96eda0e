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
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from dermsight.batch.local import pending_rows
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


def _slices(rows: Iterator[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    """``rows`` in lists of at most ``size``, read lazily."""
    chunk: list[Mapping[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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


def _score_slices(spark: SparkSession, rows: Iterator[Mapping[str, Any]],
                  scorer: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]], *,
                  classes: Sequence[str], out: Path, fmt: str, n_parts: int) -> int:
    """Score ``rows`` in slices of ``SLICE_ROWS``, one Spark job and commit each, into
    ``out``; the number of rows committed. At a Ctrl-C, says what is kept
    (``interrupted_message``) before the ``KeyboardInterrupt`` goes on."""
    committed = 0
    try:
        for chunk in _slices(rows, SLICE_ROWS):
            frame = _manifest_frame(spark, chunk).repartition(min(n_parts, len(chunk)))
            _save(frame.mapInPandas(scorer, schema=spark_ddl(classes)), out, fmt)
            committed += len(chunk)
    except KeyboardInterrupt:
        _say(interrupted_message(out, committed))
        raise
    return committed


def run_spark(
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: ScoreOptions | None = None,
    *,
    bundle: str | os.PathLike[str] | None = None,
    master: str | None = None,
    partitions: int | None = None,
    spark_conf: Mapping[str, str] | None = None,
    stop_session: bool | None = None,
) -> RunSummary:
    """Score ``input`` with Spark into the part-file dataset ``out`` (skips rows already there).

    ``options``: see ``ScoreOptions`` (``workers`` and ``threads`` are per Spark task, default
    1). ``options.heatmaps`` must be a folder every executor can write to (local mode: any local
    folder). ``partitions``: tasks per slice (``SLICE_ROWS`` input rows, one Spark job and
    commit each), default 4 x the cluster's cores. ``stop_session``: stop the session at the end
    (default: only if this call started it).
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
        try:
            sc = spark.sparkContext
            check_workers(spark)
            bundle_dir = bundle_dir.resolve()
            sc.addFile(str(bundle_dir), recursive=True)
            taken = (taken_names(options.heatmaps, store.contents.take_heatmaps())
                     if options.heatmaps is not None else None)
            heatmaps = Path(options.heatmaps).resolve() if options.heatmaps is not None else None
            scorer = make_scorer(bundle_dir.name, replace(
                options, heatmaps=heatmaps, storage_options=source.storage_options))
            n_parts = partitions or 4 * sc.defaultParallelism
            duplicates = DuplicateIds()
            listings = Listings(on_done=check.see if resume.done else None)
            rows = pending_rows(source, resume.done, options.limit, duplicates, taken,
                                listings=listings)
            _score_slices(spark, rows, scorer, classes=card.classes, out=Path(out),
                          fmt=options.fmt, n_parts=n_parts)
            summary.duplicate_ids, summary.skipped = duplicates.count, listings.skipped
            summary.not_listed = listings.not_listed if resume.done else 0
            summary.metadata_changed = check.changed()
        finally:
            if stop_session if stop_session is not None else not had_session:
                spark.stop()
        summary.elapsed_s = time.perf_counter() - t0
        after = tally(out)  # Spark wrote its parts outside the store: read them
        summary.total = after
        summary.scored = after["rows"] - before["rows"]
        summary.errors = after["errors"] - before["errors"]
        summary.risk = {k: after["risk"][k] - before["risk"][k] for k in after["risk"]}
        summary.flags = {k: n - before["flags"].get(k, 0) for k, n in after["flags"].items()
                         if n - before["flags"].get(k, 0)}
        summary.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if options.evaluate:
            run_evaluation(summary, card, source.rows, bundle_dir)
        store.write_summary(summary.to_dict())
    return summary


def resuming_message(out: str | os.PathLike[str], kept: int) -> str:
    """What a run says when the last one stopped in the middle of a slice (``OUT/_temporary``
    was left): only whole slices are committed, so that slice is scored again from its start.
    ``kept``: the rows ``out`` holds."""
    return (f"resuming {out}: the {kept} row{'s' if kept != 1 else ''} it holds "
            f"{'are' if kept != 1 else 'is'} kept; the slice the last run was scoring when it "
            f"stopped was not committed (only whole slices of up to {SLICE_ROWS:,} input rows "
            "are), so its images are scored again from the start of that slice")


def interrupted_message(out: str | os.PathLike[str], committed: int) -> str:
    """What a run stopped by Ctrl-C says: the rows of the slices it committed are kept, not
    those of the slice in progress."""
    return (f"batch interrupted: the {committed} row{'s' if committed != 1 else ''} of the "
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
