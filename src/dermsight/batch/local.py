"""The local batch runner: stream any input through ``score_frame`` on all cores, resumably.

Memory stays flat whatever the input size: records are enumerated lazily (ids and paths only),
at most ``chunk_size`` output rows and a bounded window of decoded images are held at once, and
each chunk becomes one atomically written part file (see ``store.py``).

A pool of one thread per core scores whole batches (decode, preprocess, quality gate, ONNX
Runtime with one intra-op thread, OOD gate); Pillow, numpy and ONNX Runtime release the GIL, so
the batches really run in parallel and decoding of one overlaps inference of another. Measured on
2 vCPUs this costs less CPU per image than one multi-threaded ONNX Runtime call fed by decode
threads (``parallel="pipeline"``, kept as an option), and bounds ONNX Runtime's memory arena.
The calling thread only enumerates the input and writes parts.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

from dermsight.batch.score import (
    DEFAULT_BATCH,
    HeatmapWriter,
    rows_to_frame,
    score_rows,
)
from dermsight.batch.sources import DuplicateIds, Source, open_source, row_key
from dermsight.batch.store import PartStore, done_keys, tally
from dermsight.batch.summary import RunSummary, run_evaluation
from dermsight.parallel import default_workers, limit_blas


def pending_rows(source: Source, done: set[tuple[str, str]],
                 limit: int | None = None,
                 duplicates: DuplicateIds | None = None) -> Iterator[dict[str, Any]]:
    """The source's rows that are not in the output yet (at most ``limit``); ``duplicates``
    counts repeated ids over the whole input (done rows included)."""
    every = source.rows() if duplicates is None else duplicates.watch(source.rows())
    rows = (r for r in every if row_key(r["id"], r["path"]) not in done)
    return islice(rows, limit) if limit is not None else rows


def _progress_bar(total: int | None, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="scoring", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.05, mininterval=0.5)


# ruff noqa below: known debt (issue 11): batch options.
def run_local(  # noqa: PLR0913
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    bundle: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    threads: int | None = None,
    chunk_size: int = 1024,
    batch_size: int = DEFAULT_BATCH,
    tta: bool = False,
    heatmaps: str | os.PathLike[str] | None = None,
    fmt: str = "parquet",
    evaluate: bool = False,
    limit: int | None = None,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    on_part: Callable[[Path], None] | None = None,
    parallel: str = "batches",
) -> RunSummary:
    """Score ``input`` into the part-file dataset ``out``; skips rows already there.

    ``workers``: scoring threads (default: one per core). ``parallel="batches"`` (default): each
    worker decodes, preprocesses and infers whole batches, with ``threads`` ONNX Runtime threads
    per call (default 1). ``parallel="pipeline"``: the workers decode while the calling thread
    infers with ``threads`` intra-op threads (default: one per core). ``limit``: stop after that
    many new rows (a partial run that a later run resumes). Raises ``ReaderError`` /
    ``BundleError`` / ``OutputError`` for inputs that cannot be used at all; bad images and bad
    rows become error rows.
    """
    from dermsight.predict import Dermsight

    t0 = time.perf_counter()
    source = open_source(input, storage_options)
    if threads is None:
        threads = 1 if parallel == "batches" else default_workers()
    model = Dermsight.load(Path(bundle) if bundle is not None else None, threads=threads)
    summary = RunSummary(input=source.input, out=str(out), engine="local", model=model.info,
                         fmt=fmt)
    workers = workers or default_workers()
    writer = HeatmapWriter(heatmaps) if heatmaps is not None else None
    with PartStore(out, fmt, model.classes) as store:
        done = done_keys(out)
        summary.skipped = len(done)
        total = None
        if source.estimate is not None:
            total = max(source.estimate - len(done), 0)
            if limit is not None:
                total = min(total, limit)
        bar = _progress_bar(total, progress)
        duplicates = DuplicateIds()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dermsight-score")
        try:
            with limit_blas(1):  # the scoring threads' numpy calls: no BLAS threads of their own
                scored = score_rows(
                    pending_rows(source, done, limit, duplicates), model,
                    batch_size=batch_size, tta=tta,
                    executor=pool if workers > 1 else None,
                    prefetch=max(4 * batch_size, 8 * workers), heatmaps=writer,
                    storage_options=source.storage_options, progress=bar.update,
                    parallel=parallel,
                )
                while True:
                    chunk = list(islice(scored, chunk_size))
                    if not chunk:
                        break
                    df = rows_to_frame(chunk, model.classes)
                    part = store.write(df)
                    summary.add(df["risk"].tolist(), df["error"].tolist())
                    if on_part is not None:
                        on_part(part)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        summary.duplicate_ids = duplicates.count
        summary.elapsed_s = time.perf_counter() - t0
        summary.total = tally(out)
        summary.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if evaluate:
            summary.evaluation = run_evaluation(out, model.card, source.input)
        store.write_summary(summary.to_dict())
    return summary
