"""``dermsight batch``: score a folder, CSV manifest, DICOM file or TFRecord shard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dermsight.batch.options import SLICE_ROWS
from dermsight.cli.errors import EXIT_SOME_ERRORS, UserError, check_threads

if TYPE_CHECKING:
    from dermsight.batch.options import ScoreOptions
    from dermsight.batch.summary import RunSummary

#: rows per part file of the local engine (``--chunk-size``)
DEFAULT_CHUNK = 1024
#: the exit code after a SIGTERM (128 + 15, as a shell reports a process it ended)
EXIT_TERMINATED = 143


def _check_engine(engine: str, master: str | None, partitions: int | None,
                  chunk_size: int | None) -> None:
    """Refuse an unknown ``--engine``, and an option of the other engine than the one chosen
    (one line, exit 2): never silently ignored."""
    if engine not in ("local", "spark"):
        raise UserError("--engine must be local or spark")
    if engine == "local":
        spark_only = [name for name, value in (("--master", master),
                                               ("--partitions", partitions)) if value is not None]
        if spark_only:
            raise UserError(f"{' and '.join(spark_only)} "
                            f"{'are options' if len(spark_only) > 1 else 'is an option'} of the "
                            "Spark engine: add --engine spark, or leave "
                            f"{'them' if len(spark_only) > 1 else 'it'} out")
    elif chunk_size is not None:
        raise UserError("--chunk-size is an option of the local engine (Spark commits slices of "
                        f"{SLICE_ROWS:,} input rows, split by --partitions): leave it out, or "
                        "use --engine local")


def _warn_oversubscribed(workers: int | None, threads: int | None) -> None:
    """One line on stderr when the local engine would run more ONNX Runtime threads (``workers``
    x ``threads``, defaults: one worker per core, one thread each) than this process has CPU
    cores: they then take turns on the cores, and the run is slower, not faster."""
    from dermsight.parallel import default_workers

    cores = default_workers()
    n_workers, n_threads = workers or cores, threads or 1
    if n_workers * n_threads <= cores:
        return
    typer.echo(f"warning: --workers {n_workers} x --threads {n_threads} = "
               f"{n_workers * n_threads} inference threads on {cores} CPU "
               f"core{'s' if cores != 1 else ''}: more threads than cores take turns on them "
               "and can make the run much slower; the defaults (one worker per core, one "
               "thread each) use every core", err=True)


def _storage_options(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (VALUE parsed as JSON when it is JSON) -> fsspec storage options."""
    opts: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--storage-option takes KEY=VALUE, got {item!r}")
        try:
            opts[key] = json.loads(value)
        except ValueError:
            opts[key] = value
    return opts


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or below it (links resolved, as far as they exist)."""
    path, folder = path.expanduser().resolve(), folder.expanduser().resolve()
    return path == folder or folder in path.parents


def _check_paths(input: str, out: Path, heatmaps: Path | None, fmt: str = "parquet") -> None:
    """Refuse, before any scoring, an empty input path (it would be the current folder), CSV
    parts written into the input folder (``_check_out``) and a
    ``--heatmaps`` folder that a later read would take for data: inside the input folder (a
    re-run would score the overlays as new images) or inside ``--out`` (the output dataset
    would hold PNG files beside its part files)."""
    from dermsight.batch.references import is_remote, local_path

    if not input.strip():
        raise UserError("the input path is empty: give a folder of images, a CSV manifest, "
                        "a DICOM file, a TFRecord shard or a folder of shards (. for the "
                        "current folder)")
    local = None if is_remote(input) else Path(local_path(input)).expanduser()
    folder = local if local is not None and local.is_dir() else None
    _check_out(input, out, folder, fmt)
    if heatmaps is None:
        return
    if _inside(heatmaps, out):
        raise UserError(f"--heatmaps {heatmaps} is inside --out {out}, which must hold only the "
                        "output's part files: give --heatmaps a folder outside it")
    if folder is not None and _inside(heatmaps, folder):
        raise UserError(f"--heatmaps {heatmaps} is inside the input folder {input}: a re-run "
                        "would score the overlays as new images; give --heatmaps a folder "
                        "outside it")


def _check_out(input: str, out: Path, folder: Path | None, fmt: str) -> None:
    """Refuse ``--format csv`` into the input folder itself (``folder``: the input, when it is
    a local folder): a folder's CSV files at its top are read as its listing, so a re-run would
    take a part file for the listing (the images then "not listed", none scored). Parquet
    parts, and CSV parts in a folder below it, are never read as input (the reader looks for
    images below the top, and for CSVs only at the top); nor is anything beside a CSV manifest,
    DICOM file or shard, where only that file is read."""
    if folder is not None and fmt == "csv" and out.expanduser().resolve() == folder.resolve():
        raise UserError(f"--out {out} is the input folder {input}: its CSV parts would be read "
                        "as the folder's listing on a re-run; give --out another folder (one "
                        "inside it is fine), or leave out --format csv")


# ruff noqa below: one parameter per CLI option (typer); they become one ScoreOptions.
def batch(  # noqa: PLR0913
    input: Annotated[str, typer.Argument(
        help="one input: a folder of images, a CSV manifest (ISIC layouts too), a DICOM file, "
             "a TFRecord shard (several shards: their folder), or an s3:// / gs:// prefix or "
             "manifest (needs the s3 extra)",
        show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="output folder: a dataset of part files (re-run to resume)",
        show_default=False)],
    model: Annotated[Path | None, typer.Option(
        "--model", "-m", help="model bundle folder (default: the bundled model)")] = None,
    engine: Annotated[str, typer.Option(help="local | spark")] = "local",
    master: Annotated[str | None, typer.Option(
        help="Spark master, e.g. local[2] or spark://host:7077 (spark engine; default: the "
             "active session's, else local[*])")] = None,
    workers: Annotated[int | None, typer.Option(
        help="scoring threads, each decoding and inferring whole batches (local: default one "
             "per core; spark: per task, default 1)")] = None,
    threads: Annotated[int | None, typer.Option(
        help="ONNX Runtime threads per inference call (default 1: the parallelism comes from "
             "--workers / Spark tasks)")] = None,
    chunk_size: Annotated[int | None, typer.Option(
        help=f"rows per output part file (local engine; default {DEFAULT_CHUNK:,})",
        min=1, show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(
        help="images per inference call; the ~0.4 GB peak memory of a local run holds for the "
             "default, larger batches take more memory (and were not faster on 2 cores)",
        min=1)] = 8,
    partitions: Annotated[int | None, typer.Option(
        help=f"Spark tasks per slice of {SLICE_ROWS:,} input rows, each slice committed as a "
             "whole (default: 4 x the cluster's cores)",
        min=1)] = None,
    tta: Annotated[bool, typer.Option(
        "--tta", help="average over 8 flips/rotations (8x slower)")] = False,
    heatmaps: Annotated[Path | None, typer.Option(
        help="also write a heatmap overlay PNG per assessed image into this folder (its file "
             "name is in the heatmap column)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet | csv")] = "parquet",
    evaluate: Annotated[bool, typer.Option(
        "--evaluate", help="if the input has labels, write OUT.report.html + "
                           "OUT.evaluation.json")] = False,
    limit: Annotated[int | None, typer.Option(
        help="stop after this many new rows (a partial run; re-run to continue)", min=0)] = None,
    storage_option: Annotated[list[str] | None, typer.Option(
        "--storage-option",
        help="fsspec option for remote paths, KEY=VALUE (repeatable), e.g. "
             "endpoint_url=http://127.0.0.1:9000 or anon=true")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="no progress on stderr (a bar on a terminal; elsewhere, e.g. a "
                              "log, the bar's state at most every 10 s; --engine spark: a "
                              "line per committed slice)")] = False,
) -> None:
    """Score many lesion images into Parquet/CSV: one row per input, errors as rows.

    Resumable: re-running with the same --out skips rows already written (an output scored by
    another model or bundle, or the other way with respect to --tta, is refused: exit code 2).

    Exit code 1 when the job finished and some inputs could not be scored (the error column
    says why); 2 when it stopped: a usage error, an input that cannot be read, an output that is
    refused, cannot be written (e.g. a full disk) or holds a damaged part file (the rows written
    before are kept: re-run to resume); 130 after Ctrl-C and 143 after SIGTERM (the rows scored
    so far are kept: re-run to resume).
    """
    from dermsight.batch.options import ScoreOptions

    _check_engine(engine, master, partitions, chunk_size)
    check_threads(threads)  # one line, exit 2: not the ValueError of the model's loading
    _check_paths(input, out, heatmaps, fmt)
    storage_options = _storage_options(storage_option)
    try:
        options = ScoreOptions(
            batch_size=batch_size, tta=tta, workers=workers, threads=threads, heatmaps=heatmaps,
            fmt=fmt, evaluate=evaluate, limit=limit, storage_options=storage_options,
        )
    except ValueError as exc:  # e.g. --format
        raise UserError(str(exc)) from exc
    from dermsight.batch.local import Terminated

    try:
        summary = _run(engine, input, out, options, model=model, master=master,
                       partitions=partitions, chunk_size=chunk_size, quiet=quiet)
    except Terminated:  # a SIGTERM: the rows and the summary are written, and it said so
        raise SystemExit(EXIT_TERMINATED) from None
    typer.echo(summary.render(warnings=False))  # said on stderr, below
    for line in summary.input_warnings():  # repeated ids, changed metadata, the evaluation's
        typer.echo(f"warning: {line}", err=True)
    if summary.tta_unknown:
        typer.echo(f"warning: {summary.tta_unknown} scored rows of {out} were written before "
                   "dermsight recorded test-time augmentation: whether they were scored with "
                   "--tta is unknown (their tta column is empty); this run scored "
                   + ("with" if tta else "without") + " it", err=True)
    if summary.bundle_unknown:
        typer.echo(f"warning: {summary.bundle_unknown} rows of {out} were written before "
                   "dermsight recorded the bundle that scored them (their card_sha256 column "
                   "is empty): whether this bundle scored them is unknown", err=True)
    if "unavailable" in summary.evaluation:
        typer.echo(f"warning: {summary.evaluation['unavailable']}", err=True)
    if summary.errors:
        raise SystemExit(EXIT_SOME_ERRORS)


def _run(engine: str, input: str, out: Path, options: ScoreOptions, *,  # noqa: PLR0913
         model: Path | None,
         master: str | None, partitions: int | None, chunk_size: int | None,
         quiet: bool) -> RunSummary:
    """Score with the chosen engine (``batch``'s options checked)."""
    if engine == "local":
        from dermsight.batch.local import run_local

        _warn_oversubscribed(options.workers, options.threads)
        # progress on stderr unless --quiet: a bar on a terminal, else (a log: nohup, cron, a
        # cluster's) the same bar redrawn at most every 10 s (``progress.progress_bars``)
        return run_local(input, out, options, bundle=model,
                         chunk_size=chunk_size or DEFAULT_CHUNK, progress=not quiet)
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise UserError(
            "--engine spark needs the [spark] extra: pip install 'dermsight[spark]' "
            "(and Java 17+)"
        ) from exc
    from dermsight.batch.spark import run_spark

    return run_spark(input, out, options, bundle=model, master=master, partitions=partitions,
                     progress=not quiet)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command("batch")(batch)
