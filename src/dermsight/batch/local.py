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

A Ctrl-C keeps the rows scored so far: the chunk in progress is written as a part (the store's
usual atomic write) before the ``KeyboardInterrupt`` goes on, with one line on stderr saying how
many rows the run kept. While a full chunk is being written a Ctrl-C waits for the write to end
(on the main thread), so the chunk is written exactly once; a second Ctrl-C during the last
write abandons it (those rows are scored again), never leaving a partial part: its hidden
temporary file is removed then, or by the next run if the process is killed.

A SIGTERM (what Slurm, Kubernetes, systemd and ``timeout`` send first) is treated as a Ctrl-C:
while a run scores on the main thread of a process that left SIGTERM to its default (which would
end it at once, losing the chunk in progress and the summary), it raises ``Terminated`` (a
``KeyboardInterrupt``), so the chunk and the summary are written the same way, with a line saying
the run was stopped by SIGTERM; ``dermsight batch`` then exits with code 143 (128 + 15).

A part that cannot be written (a full disk, a file size limit) or a part of the output that
cannot be read (damaged) stops the run with one ``OutputFailure`` naming the file (``store.py``;
exit code 2 from the CLI, not 1): the parts written before are kept, for the same command to
resume, and ``OUT/_summary.json`` is removed, since it described the folder before the run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermsight.batch.options import ScoreOptions
from dermsight.batch.overlays import plan_names, taken_names
from dermsight.batch.resume import Listings, MetadataCheck, pending, prepare_resume
from dermsight.batch.schema import rows_to_frame
from dermsight.batch.scorer import score_rows
from dermsight.batch.sources import DuplicateIds, Source, open_source
from dermsight.batch.store import BATCH_COMMAND, Key, OutputCommand, PartStore
from dermsight.batch.summary import RunSummary, run_evaluation
from dermsight.parallel import default_workers, limit_blas
from dermsight.progress import ProgressMaker, counting, progress_bars

if TYPE_CHECKING:
    from dermsight.predict import Dermsight


class Terminated(KeyboardInterrupt):
    """A SIGTERM stopped the run (``run_local``, on the main thread): handled as a Ctrl-C (the
    rows scored so far and the summary written), then raised on."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` in the block, if this is the main thread and SIGTERM was
    left to its default (a handler of the caller's own is left alone); put back after."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pending_rows(source: Source, done: Mapping[Key, int],
                 limit: int | None = None,
                 duplicates: DuplicateIds | None = None,
                 heatmaps_taken: Iterable[str] | None = None, *,
                 consume: bool = False,
                 listings: Listings | None = None) -> Iterator[Mapping[str, Any]]:
    """The source's rows that are not in the output yet (at most ``limit``; see
    ``resume.pending``); ``duplicates`` counts repeated ids over the whole input (done rows
    included). With ``heatmaps_taken`` (the overlay names the output's rows hold and those of
    the files already in the folder: ``overlays.taken_names``), each row gets the file name of
    its overlay, planned in input order (``overlays.plan_names``).
    ``consume=True``: ``done`` (a dict) is emptied as its rows are passed (``resume.pending``).
    ``listings``: counts the input's rows found done, and the output's rows it does not list."""
    every = source.rows() if duplicates is None else duplicates.watch(source.rows())
    rows = pending(every, done, limit, consume=consume, listings=listings)
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
    store = PartStore(out, options.fmt, model.classes, model=model.info,
                      bundle=model.bundle.card_sha256, tta=options.tta,
                      heatmaps=options.heatmaps is not None, command=command)
    # the output rows' metadata, from the store's one read of the output, to tell which done
    # rows the input now gives other metadata
    check = store.reader = MetadataCheck()
    with store:
        # the output is read once, here (``store.contents``); the summary's totals are kept up
        # to date as parts are written
        resume = prepare_resume(store, source.rows, limit)
        # the keys of the done rows are handed to ``pending``, which drops each one once its
        # listings are passed: no second per-row table grows while a large input is read
        summary.retried = resume.retried
        done, resume.done = resume.done, Counter()
        had_done = bool(done)  # an output empty of other rows holds only this input's
        bar = _Bar(progress_bars(progress), source.estimate, limit)
        listings = Listings(on_skip=bar.skip, on_done=check.see if had_done else None)
        duplicates = DuplicateIds()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dermsight-score")
        # a SIGTERM (a cluster's or service manager's stop, ``timeout``) as a Ctrl-C
        with _sigterm_as_interrupt():
            try:
                # the scoring threads' numpy calls: no BLAS threads of their own
                with counting(bar.make if bar.maker is not None else None, bar.left,
                              "scoring") as done_rows, limit_blas(1):
                    scored = score_rows(
                        pending_rows(source, done, limit, duplicates,
                                     taken_names(options.heatmaps,
                                                 store.contents.take_heatmaps())
                                     if options.heatmaps is not None else None,
                                     consume=True, listings=listings), model,
                        replace(options, storage_options=source.storage_options),
                        executor=pool if workers > 1 else None,
                        prefetch=max(4 * options.batch_size, 8 * workers), progress=done_rows,
                    )
                    _write_parts(scored, store, model, summary, chunk_size, on_part)
            except KeyboardInterrupt as exc:
                how = ("stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted")
                print(f"batch {how}: {summary.scored} rows scored by this run are kept in "
                      f"{out}; run the same command again to score the rest", file=sys.stderr,
                      flush=True)
                summary.interrupted = True
                # what the output holds now, as a normal end writes it (no evaluation: the job
                # is not done); the usual atomic write, so a second Ctrl-C leaves the old one
                _finish(summary, store, listings, duplicates, check, t0, had_done=had_done)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        _finish(summary, store, listings, duplicates, check, t0, had_done=had_done,
                evaluate=(lambda: run_evaluation(summary, model.card, source.rows,
                                                 model.bundle.path))
                if options.evaluate else None)
    return summary


def _finish(summary: RunSummary, store: PartStore, listings: Listings,
            duplicates: DuplicateIds, check: MetadataCheck | None, t0: float, *,
            had_done: bool, evaluate: Callable[[], None] | None = None) -> None:
    """Fill in ``summary``'s counts of the run and of the output, run ``evaluate`` (the
    ``--evaluate`` report), then write ``OUT/_summary.json``. At a Ctrl-C, what the input's
    reading found so far (``listings``: ``not_listed`` unknown, None, when the output held
    rows before the run; 0 when it held none, since every row then is this input's)."""
    summary.skipped = listings.skipped
    summary.not_listed = listings.not_listed if had_done else 0
    summary.duplicate_ids = duplicates.count
    summary.metadata_changed = check.changed() if check is not None else 0
    summary.elapsed_s = time.perf_counter() - t0
    summary.total = store.contents.tally()
    summary.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if evaluate is not None:
        evaluate()
    store.write_summary(summary.to_dict())


class _Bar:
    """The progress bar's total: the input's estimated rows (``estimate``; None: unknown) less
    the rows found already done as the input is read (``skip``), at most ``limit``."""

    def __init__(self, maker: ProgressMaker | None, estimate: int | None,
                 limit: int | None) -> None:
        self.maker, self.estimate, self.limit = maker, estimate, limit
        self.bar: Any = None

    @property
    def left(self) -> int | None:
        if self.estimate is None:
            return None
        left = max(self.estimate, 0)
        return left if self.limit is None else min(left, self.limit)

    def make(self, total: int | None, desc: str) -> Any:
        """``maker``, keeping the bar whose total ``skip`` lowers (only with a ``maker``)."""
        assert self.maker is not None
        self.bar = self.maker(total, desc)
        return self.bar

    def skip(self, n: int) -> None:
        """``n`` more input rows found in the output: not to be scored."""
        if self.estimate is None:
            return
        self.estimate -= n
        if self.bar is not None:
            self.bar.total = self.left


def _write_parts(scored: Iterable[dict[str, Any]], store: PartStore, model: Dermsight,
                 summary: RunSummary, chunk_size: int,
                 on_part: Callable[[Path], None] | None) -> None:
    """Write the scored rows as parts of ``chunk_size`` rows, counted in ``summary``. At a
    Ctrl-C the rows of the chunk in progress are written first (a last, shorter part), then
    the ``KeyboardInterrupt`` goes on; a Ctrl-C while a full chunk is written waits for it."""
    chunk: list[dict[str, Any]] = []

    def write() -> Path:
        df = rows_to_frame(chunk, model.classes)
        part = store.write(df)
        summary.add(df["risk"].tolist(), df["error"].tolist(), df["flags"].tolist())
        chunk.clear()
        return part

    try:
        for row in scored:
            chunk.append(row)
            if len(chunk) >= chunk_size:
                with _ctrl_c_after():  # written and counted exactly once
                    part = write()
                if on_part is not None:
                    on_part(part)
        if chunk:
            with _ctrl_c_after():
                part = write()
            if on_part is not None:
                on_part(part)
    except KeyboardInterrupt:
        if chunk:  # the rows scored before it: a second Ctrl-C here abandons the (atomic) write
            write()
        raise


@contextmanager
def _ctrl_c_after() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that comes during the block until the block ends, then deliver
    it; a SIGTERM too while the run handles it (``_sigterm_as_interrupt``). Only on the main
    thread, whose handler Python runs (elsewhere: nothing held)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = [signal.SIGINT]
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        held.append(signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum))
                for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # None: a handler not set from Python, which cannot be put back; Python's own
            signal.signal(signum, signal.default_int_handler if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])
