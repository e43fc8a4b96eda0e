"""The Spark batch runner (extra ``[spark]``): the scoring core inside ``mapInPandas``.

* A plain folder of image files is read with Spark's ``binaryFile`` source (bytes travel in Arrow
  batches to the Python workers). Any other input (CSV manifests and ISIC layouts, DICOM,
  TFRecord shards, ``s3://`` prefixes) is enumerated on the driver by the same readers the local
  runner uses, into a manifest of ids, paths and metadata; the workers read the images
  themselves (local/shared paths, TFRecord references, or remote URLs through fsspec).
* The model bundle is shipped with ``SparkContext.addFile`` and opened once per Python worker
  (one ONNX Runtime session, cached in a module global; Spark reuses Python workers).
* Output: the part-file dataset of ``store.py`` (Parquet or CSV), appended to, so a re-run skips
  rows already written and retries error rows, exactly like the local runner (``resume.py``).
* Heatmaps (``options.heatmaps``): the names of the overlay files are planned on the driver, in
  input order, over the whole job (``overlays.plan_names``, a ``heatmap`` column of the
  manifest), so two tasks never write the same file whatever the partitioning, and apart from
  the files already in the folder (listed once, on the driver), so none is replaced; a folder input
  is then listed on the driver too (a manifest of paths) instead of read with ``binaryFile``.

Reading ``s3a://`` paths natively needs the hadoop-aws connector jars on the cluster (EMR,
Dataproc and Databricks ship them); this runner does not need them, because ``s3://`` inputs are
listed and read through fsspec.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from dermsight.batch.options import ScoreOptions
from dermsight.batch.overlays import plan_names, taken_names
from dermsight.batch.references import local_path
from dermsight.batch.resume import Listings, count_listings, pending, prepare_resume
from dermsight.batch.schema import spark_ddl
from dermsight.batch.scorer import score_frame
from dermsight.batch.sources import DuplicateIds, Source, open_source
from dermsight.batch.store import Key, PartStore, tally
from dermsight.batch.summary import RunSummary, run_evaluation
from dermsight.bundle import default_bundle_path, load_bundle
from dermsight.parallel import limit_blas

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from dermsight.predict import Dermsight

#: Images per Arrow batch handed to a Python worker.
ARROW_BATCH = 256
_MANIFEST_CHUNK = 50_000

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
        if "id" not in pdf.columns:
            pdf = pdf.assign(id=[Path(p).stem if p else None for p in pdf["path"]])
        yield score_frame(pdf, model, options)


def _image_glob() -> str:
    """The files of a folder input: accepted image formats, and refused ones (which become
    error rows saying what to send instead, as with the local engine)."""
    from dermsight.io.csvfolder import LISTED_EXTS

    exts = sorted({e.lstrip(".") for e in LISTED_EXTS}
                  | {e.lstrip(".").upper() for e in LISTED_EXTS})
    return "*.{" + ",".join(exts) + "}"


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
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        })
    settings = {
        **settings,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH),
        "spark.python.worker.reuse": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",
        "spark.executorEnv.OMP_NUM_THREADS": "1",
        "spark.sql.sources.ignoreMissingFiles": "false",
        **(conf or {}),
    }
    for k, v in settings.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


def _manifest_frame(spark: SparkSession,
                    rows: Iterator[Mapping[str, Any]]) -> DataFrame | None:
    """Driver-side manifest (ids, paths, metadata; no pixels) -> a Spark DataFrame."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    schema = StructType([
        StructField("id", StringType()), StructField("path", StringType()),
        StructField("age", DoubleType()), StructField("sex", StringType()),
        StructField("site", StringType()), StructField("meta_notes", StringType()),
        StructField("label", StringType()),
        StructField("group", StringType()), StructField("source", StringType()),
        StructField("error", StringType()),
        StructField("heatmap", StringType()),
    ])
    frames: list[DataFrame] = []
    chunk: list[Mapping[str, Any]] = []

    def flush() -> None:
        pdf = pd.DataFrame.from_records(chunk, columns=schema.fieldNames())
        pdf["age"] = pd.to_numeric(pdf["age"], errors="coerce").astype("float64")
        for c in schema.fieldNames():
            if c != "age":
                pdf[c] = pdf[c].astype(object).where(pdf[c].notna(), None)
        frames.append(spark.createDataFrame(pdf, schema=schema))
        chunk.clear()

    for r in rows:
        chunk.append(r)
        if len(chunk) >= _MANIFEST_CHUNK:
            flush()
    if chunk:
        flush()
    if not frames:
        return None
    df = frames[0]
    for f in frames[1:]:
        df = df.unionByName(f)
    return df


def _folder_frame(spark: SparkSession, folder: str, done: Mapping[Key, int],
                  limit: int | None, n_parts: int) -> DataFrame:
    """A plain folder of images through Spark's ``binaryFile`` source (bytes in Arrow batches),
    without the paths already done."""
    from pyspark.sql import functions as F

    # Small files: split by bytes into ~n_parts tasks instead of shuffling them.
    spark.conf.set("spark.sql.files.minPartitionNum", str(n_parts))
    spark.conf.set("spark.sql.files.openCostInBytes", str(8 * 1024))
    df = (spark.read.format("binaryFile")
          .option("recursiveFileLookup", "true")
          .option("pathGlobFilter", _image_glob())
          .load(f"file://{Path(folder).resolve()}")
          .select(F.regexp_replace("path", r"^file:(//)?", "").alias("path"),
                  F.col("content").alias("image")))
    if done:
        done_df = spark.createDataFrame(pd.DataFrame({"path": sorted({p for _, p in done})}))
        df = df.join(F.broadcast(done_df), on="path", how="left_anti")
    if limit is not None:
        df = df.orderBy("path").limit(limit).repartition(n_parts)
    return df


def _input_frame(spark: SparkSession, source: Source, done: Mapping[Key, int],
                 limit: int | None, n_parts: int, summary: RunSummary, *,
                 heatmaps_taken: Iterable[str] | None = None) -> DataFrame | None:
    """The rows still to score as a Spark DataFrame (None: nothing left). With
    ``heatmaps_taken`` (the overlay names the output's rows hold and the folder's files:
    ``overlays.taken_names``), the rows are listed on the driver, each with its overlay's file
    name planned over the whole job. ``summary`` gets the
    input's rows found done and the output's rows it does not list (``resume.Listings``)."""
    folder = source.image_folder() if heatmaps_taken is None else None
    if folder is not None:
        if done:  # Spark leaves out the done paths: the folder listed once more on the driver
            listings = count_listings(source.rows(), done)
            summary.skipped, summary.not_listed = listings.skipped, listings.not_listed
        else:  # an empty output: all its rows will be this input's
            summary.not_listed = 0
        return _folder_frame(spark, folder, done, limit, n_parts)
    duplicates = DuplicateIds()
    listings = Listings()
    rows: Iterator[Mapping[str, Any]] = pending(duplicates.watch(source.rows()), done, limit,
                                                listings=listings)
    if heatmaps_taken is not None:
        rows = plan_names(rows, heatmaps_taken)
    manifest = _manifest_frame(spark, rows)
    summary.duplicate_ids = duplicates.count
    summary.skipped = listings.skipped
    summary.not_listed = listings.not_listed if done else 0
    return manifest.repartition(n_parts) if manifest is not None else None


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
    folder). ``partitions``: default 4 x the cluster's cores. ``stop_session``: stop the session
    at the end (default: only if this call started it).
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
    with PartStore(out, options.fmt, card.classes, model=summary.model,
                   bundle=loaded.card_sha256, tta=options.tta,
                   heatmaps=options.heatmaps is not None) as store:
        # A killed Spark job leaves its committed tasks in _temporary; the next job commit would
        # merge them into the output (rows the resume logic never saw: duplicates). We hold the
        # lock, so nothing else is writing: start clean.
        shutil.rmtree(Path(out) / "_temporary", ignore_errors=True)
        resume = prepare_resume(store, source.rows, options.limit)
        summary.retried = resume.retried
        before = store.contents.tally()  # read when the store opened the output
        spark = get_session(master, spark_conf)
        summary.startup_s = time.perf_counter() - t0
        try:
            sc = spark.sparkContext
            bundle_dir = bundle_dir.resolve()
            sc.addFile(str(bundle_dir), recursive=True)
            taken = (taken_names(options.heatmaps, store.contents.take_heatmaps())
                     if options.heatmaps is not None else None)
            df = _input_frame(spark, source, resume.done, options.limit,
                              partitions or 4 * sc.defaultParallelism, summary,
                              heatmaps_taken=taken)
            if df is not None:
                heatmaps = (Path(options.heatmaps).resolve()
                            if options.heatmaps is not None else None)
                scorer = make_scorer(bundle_dir.name, replace(
                    options, heatmaps=heatmaps, storage_options=source.storage_options))
                result = df.mapInPandas(scorer, schema=spark_ddl(card.classes))
                writer = result.write.mode("append").format(options.fmt)
                if options.fmt == "csv":
                    writer = writer.option("header", "true")
                else:
                    writer = writer.option("compression", "zstd")
                writer.save(f"file://{Path(out).resolve()}")
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
            run_evaluation(summary, card, source.rows)
        store.write_summary(summary.to_dict())
    return summary


def _active_session() -> SparkSession | None:
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()
