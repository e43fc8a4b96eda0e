"""The local batch runner: stream any input through the scoring core on all cores, resumably.

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
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from dermsight.batch.options import ScoreOptions
from dermsight.batch.overlays import plan_names
from dermsight.batch.resume import pending, prepare_resume
from dermsight.batch.schema import rows_to_frame
from dermsight.batch.scorer import score_rows
from dermsight.batch.sources import DuplicateIds, Source, open_source
from dermsight.batch.store import BATCH_COMMAND, Key, OutputCommand, PartStore
from dermsight.batch.summary import RunSummary, run_evaluation
from dermsight.parallel import default_workers, limit_blas
from dermsight.progress import counting, progress_bars


def pending_rows(source: Source, done: Mapping[Key, int],
                 limit: int | None = None,
                 duplicates: DuplicateIds | None = None,
                 heatmaps_taken: Collection[str] | None = None, *,
                 consume: bool = False) -> Iterator[Mapping[str, Any]]:
    """The source's rows that are not in the output yet (at most ``limit``; see
    ``resume.pending``); ``duplicates`` counts repeated ids over the whole input (done rows
    included). With ``heatmaps_taken`` (the overlay names the output's rows hold), each row
    gets the file name of its overlay, planned in input order (``overlays.plan_names``).
    ``consume=True``: ``done`` (a dict) is emptied as its rows are passed (``resume.pending``)."""
    every = source.rows() if duplicates is None else duplicates.watch(source.rows())
    rows = pending(every, done, limit, consume=consume)
    return rows if heatmaps_taken is None else plan_names(rows, heatmaps_taken)


def run_local(
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: ScoreOptions | None = None,
    *,
    bundle: str | os.PathLike[str] | None = None,
    chunk_size: int = 1024,
    progress: bool = True,
    on_part: Callable[[Path], None] | None = None,
    command: OutputCommand = BATCH_COMMAND,
) -> RunSummary:
    """Score ``input`` into the part-file dataset ``out``; skips rows already there and
    retries the error rows the input still lists (see ``resume.py``).

    ``options`` (``ScoreOptions``): ``workers`` scoring threads (default: one per core);
    ``parallel="batches"`` (default): each worker decodes, preprocesses and infers whole batches,
    with ``threads`` ONNX Runtime threads per call (default 1); ``parallel="pipeline"``: the
    workers decode while the calling thread infers with ``threads`` intra-op threads (default:
    one per core); ``limit``: stop after that many new rows (a partial run that a later run
    resumes). ``chunk_size``: rows per part file. Raises ``ReaderError`` / ``BundleError`` /
    ``OutputError`` for inputs that cannot be used at all (an ``out`` holding rows of another
    model or bundle, or scored the other way with respect to TTA, included: ``PartStore``,
    whose refusals name a way out that ``command`` offers: the option that names ``out``, and
    ``--format`` / ``--tta`` only where they are the user's choice); bad images and bad rows
    become error rows.
    """
    from dermsight.predict import Dermsight

    options = options or ScoreOptions()
    t0 = time.perf_counter()
    source = open_source(input, options.storage_options)
    threads = options.threads
    if threads is None:
        threads = 1 if options.parallel == "batches" else default_workers()
    model = Dermsight.load(Path(bundle) if bundle is not None else None, threads=threads)
    summary = RunSummary(input=source.input, out=str(out), engine="local", model=model.info,
                         fmt=options.fmt, tta=options.tta)
    workers = options.workers or default_workers()
    limit = options.limit
    with PartStore(out, options.fmt, model.classes, model=model.info,
                   bundle=model.bundle.card_sha256, tta=options.tta,
                   heatmaps=options.heatmaps is not None, command=command) as store:
        # the output is read once, here (``store.contents``); the summary's totals are kept up
        # to date as parts are written
        resume = prepare_resume(store, source.rows, limit)
        # the keys of the done rows are handed to ``pending``, which drops each one once its
        # listings are passed: no second per-row table grows while a large input is read
        summary.skipped, summary.retried = resume.skipped, resume.retried
        done, resume.done = resume.done, Counter()
        total = None
        if source.estimate is not None:
            total = max(source.estimate - summary.skipped, 0)
            if limit is not None:
                total = min(total, limit)
        duplicates = DuplicateIds()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dermsight-score")
        # the scoring threads' numpy calls: no BLAS threads of their own
        with counting(progress_bars(progress), total, "scoring") as done_rows, limit_blas(1):
            try:
                scored = score_rows(
                    pending_rows(source, done, limit, duplicates,
                                 store.contents.take_heatmaps()
                                 if options.heatmaps is not None else None,
                                 consume=True), model,
                    replace(options, storage_options=source.storage_options),
                    executor=pool if workers > 1 else None,
                    prefetch=max(4 * options.batch_size, 8 * workers), progress=done_rows,
                )
                while True:
                    chunk = list(islice(scored, chunk_size))
                    if not chunk:
                        break
                    df = rows_to_frame(chunk, model.classes)
                    part = store.write(df)
                    summary.add(df["risk"].tolist(), df["error"].tolist(), df["flags"].tolist())
                    if on_part is not None:
                        on_part(part)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        summary.duplicate_ids = duplicates.count
        summary.elapsed_s = time.perf_counter() - t0
        summary.total = store.contents.tally()
        summary.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if options.evaluate:
            summary.evaluation = run_evaluation(out, model.card, source.input)
        store.write_summary(summary.to_dict())
    return summary
