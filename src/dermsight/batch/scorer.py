"""The one scoring core shared by the local runner and the Spark runner.

``score_frame(df, model)`` takes a pandas frame with one row per lesion and returns one output row
per input row, in the same order. Input columns:

==========  =====================================================================================
``id``      required: the lesion/image id
``image``   encoded image bytes (JPEG, PNG, ..., or DICOM); used when present and not null
``path``    where the image is: a local file, a TFRecord reference ``<shard>#<offset>`` (from the
            readers), or a remote URL (``s3://``, ``gs://``, ... through fsspec, the ``[s3]``
            extra). Always copied to the output as the source of the row.
``age``     optional metadata in any form ``Metadata.parse`` accepts (a DICOM file's tags fill
``sex``     the fields left empty)
``site``
``label``   optional ground truth (9-class code) and grouping (lesion/patient) for ``--evaluate``;
``group``   copied through unchanged
``source``  optional: the data source the input names (``LesionRecord.source``, e.g. ``ham10000``);
            copied through unchanged, for ``--evaluate``'s by-source table
``error``   optional: a reason set by a reader (bad CSV row, missing file); such rows are not
            scored and keep the reason
``heatmap`` optional: the file name planned for the row's overlay (``overlays.plan_names``; the
            runners plan names over the whole job). Without it, names are made unique among
            the rows of one call (``<id>.png``, ``<id>-2.png``, ...)
==========  =====================================================================================

An optional ``meta_notes`` column carries the readers' notes on the metadata they normalised
(``Metadata.notes_text``: a "NaN" read as missing, an age in other digits read as a number), so
that the row gets the flags ``Metadata.parse`` would give the values as written.

Every output row records whether it was scored with test-time augmentation (``options.tta``):
its ``tta`` column, ``"true"`` or ``"false"`` (``schema.tta_text``), error rows included; and
which bundle scored it: its ``card_sha256`` column (``Bundle.card_sha256``, the sha256 of the
model's ``card.json``), the same value whichever engine loads the bundle.

With ``options.heatmaps``, each assessed row's overlay PNG is written into that folder and the
output's ``heatmap`` column names its file (null for rows without one).

Nothing here re-implements the model: ``references.row_image`` finds a row's image, the facade
decodes it (``Dermsight.decode``, DICOM tags included) and prepares it
(``Dermsight.prepare_image``) in worker threads, and assesses a batch at a time
(``Dermsight.assess``: inference, calibration, decision rule, gate, tier); the output rows are read
from that ``Assessment``. The worker threads also estimate each image's skin tone on the same
decoded pixels (``ita`` / ``ita_band``: ``dermsight.skintone.ita_degrees``, the estimator of the
card's by-skin-tone table, on a <= 128 px subsample). A bad file or bad metadata becomes an
output row whose ``error`` says why; it never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dermsight import camgrid, taxonomy
from dermsight.batch.options import ScoreOptions
from dermsight.batch.overlays import HeatmapWriter, thumbnail
from dermsight.batch.references import row_image
from dermsight.batch.schema import cell_text, frame_rows, row_id, row_path, rows_to_frame, tta_text
from dermsight.io.errors import ImageDecodeError
from dermsight.parallel import ordered_map
from dermsight.records import Metadata
from dermsight.skintone import ita_band, ita_degrees

if TYPE_CHECKING:
    from dermsight.predict import Assessment, Dermsight, PreparedImage

Progress = Callable[[int], None]


# --- one row: decode + metadata + preprocess (runs in worker threads) ---------------------------


@dataclass
class PreparedRow:
    """One input row after decoding and preparing (before inference)."""

    id: str
    path: str | None
    meta: Metadata = field(default_factory=Metadata)
    label: str | None = None
    group: str | None = None
    source: str | None = None  # the data source the input names
    image: PreparedImage | None = None
    thumb: np.ndarray | None = None  # small RGB copy, only when heatmaps are wanted
    heatmap: str | None = None  # the overlay's planned file name (``overlays.plan_names``)
    ita: float | None = None  # skin tone of the decoded image (None: not estimable)
    error: str | None = None


def prepare_row(
    model: Dermsight,
    row: Mapping[str, Any],
    *,
    keep_thumb: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> PreparedRow:
    """Decode, validate metadata, preprocess, run the quality gate and estimate the skin tone
    (ITA, on the decoded pixels: the same estimator as the card's by-skin-tone table) for one
    input row.

    Never raises: any problem becomes ``PreparedRow.error``.
    """
    path = row_path(row)
    prep = PreparedRow(id=row_id(row), path=path, label=cell_text(row.get("label")),
                       group=cell_text(row.get("group")), source=cell_text(row.get("source")),
                       heatmap=cell_text(row.get("heatmap")))
    rid = prep.id
    given_error = cell_text(row.get("error"))
    if given_error is not None:  # a reader's error row (a missing file, a bad CSV row) keeps
        # the metadata its input gives, as any other error row does; a value that cannot be
        # used is left out (``Metadata.lenient``): the row's error is the reader's
        prep.error = given_error
        prep.meta = Metadata.lenient(age=row.get("age"), sex=row.get("sex"),
                                     site=row.get("site")).noted_from_text(row.get("meta_notes"))
        return prep
    try:
        prep.meta = Metadata.parse(age=row.get("age"), sex=row.get("sex"),
                                   site=row.get("site")).noted_from_text(row.get("meta_notes"))
    except taxonomy.TaxonomyError as exc:
        prep.error = f"bad metadata: {exc}"
        return prep
    raw = row.get("image")
    image = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else None
    where = Path(path.split("#")[0]).name if path else rid
    try:
        decoded = model.decode(row_image(image, path, storage_options, model.limits), prep.meta)
        rgb, prep.meta = decoded.rgb, decoded.meta
        prep.image = model.prepare_image(rgb, prep.meta, decoded.compression)
        prep.ita = ita_degrees(rgb)
        if keep_thumb:
            prep.thumb = thumbnail(rgb)
    except ImageDecodeError as exc:  # a TFRecord reader's reason names its shard already
        named = exc.reason.startswith((f"{where}:", f"{where},"))
        prep.error = exc.reason if named else f"{where}: {exc.reason}"
    except taxonomy.TaxonomyError as exc:
        prep.error = f"{where}: bad metadata: {exc}"
    except MemoryError:
        prep.error = f"{where}: out of memory while decoding"
    except Exception as exc:  # noqa: BLE001 - a bad input must never stop a batch job
        prep.error = f"{where}: cannot process image ({type(exc).__name__}: {exc})"
    return prep


# --- output rows ---------------------------------------------------------------------------------


def _base_row(p: PreparedRow, model: Dermsight, tta: bool) -> dict[str, Any]:
    """What every output row holds, error rows included: the input's fields (its data source
    too) and how the run scores (the model and its bundle's card sha256, and whether with TTA:
    ``schema.tta_text``)."""
    return {
        "id": p.id,
        "path": p.path,
        "age": p.meta.age,
        "sex": p.meta.sex,
        "site": p.meta.site,
        "label": p.label,
        "group": p.group,
        "source": p.source,
        "model_name": model.info["name"],
        "model_version": model.info["version"],
        "tta": tta_text(tta),
        "card_sha256": model.bundle.card_sha256,
    }


def error_row(p: PreparedRow, model: Dermsight, *, tta: bool) -> dict[str, Any]:
    row = _base_row(p, model, tta)
    row["error"] = p.error or "unknown error"
    row["heatmap"] = None
    return row


def scored_row(p: PreparedRow, model: Dermsight, result: Assessment, i: int, *,
               tta: bool) -> dict[str, Any]:
    """The output row of image ``i`` of an assessed batch (assessed with ``tta`` or not): the
    facade's answer, as columns."""
    row = _base_row(p, model, tta)
    row.update({f"p_{c}": float(v)
                for c, v in zip(result.classes, result.probabilities[i], strict=True)})
    row.update({
        "prediction": result.prediction(i),
        "malignant_probability": float(result.malignant[i]),
        "risk": result.risks[i],
        "flags": ";".join(f.code for f in result.flags[i]),
        "ood_score": result.ood_scores[i],
        "ita": p.ita,
        "ita_band": ita_band(p.ita),
        "heatmap": None,  # set when its overlay is written
        "error": None,
    })
    return row


# --- inference on a batch of prepared rows ------------------------------------------------------


@dataclass
class _Job:
    """What inference on prepared rows needs besides them (the same for every batch of a run)."""

    model: Dermsight
    tta: bool = False
    heatmaps: HeatmapWriter | None = None
    executor: Executor | None = None  # writes heatmaps in the background when given
    pending: list[Future[None]] = field(default_factory=list)

    def write_heatmap(self, p: PreparedRow, top: int, cam: np.ndarray) -> str:
        """The overlay of the whole-image map (``camgrid``, drawn on the thumbnail) of class
        ``top``; ``cam`` is that class's CAM from the classification run (reused when it can be).
        Returns its file name (chosen now; the file may be written in the background)."""
        heatmaps, thumb = self.heatmaps, p.thumb
        assert heatmaps is not None
        assert thumb is not None
        name = heatmaps.name_for(p.id, p.heatmap)

        def work() -> None:
            model = self.model
            whole = camgrid.class_map(model.session, thumb, model.card, p.meta, top, cam)
            heatmaps.write(p.id, thumb, whole, name)

        if self.executor is not None:
            self.pending.append(self.executor.submit(work))
        else:
            work()
        return name


def infer_batch(job: _Job, batch: Sequence[PreparedRow]) -> list[dict[str, Any]]:
    """Assess prepared rows (all without error) with the facade and build their output rows."""
    if not batch:
        return []
    model = job.model
    images = [p.image for p in batch if p.image is not None]  # all of them: no errors here
    try:
        result = model.assess(images, tta=job.tta)
    except Exception as exc:  # noqa: BLE001 - isolate the row that breaks the batch
        if len(batch) == 1:
            p = batch[0]
            p.error = f"inference failed: {type(exc).__name__}: {exc}"
            return [error_row(p, model, tta=job.tta)]
        return [r for p in batch for r in infer_batch(job, [p])]
    rows = []
    for i, p in enumerate(batch):
        row = scored_row(p, model, result, i, tta=job.tta)
        # no heatmap for a refused image (as Dermsight.predict): it would look valid
        if job.heatmaps is not None and p.thumb is not None and result.assessable(i):
            row["heatmap"] = job.write_heatmap(p, int(result.top[i]), np.array(result.cam(i)))
        rows.append(row)
        p.thumb = None
    return rows


def _finish(job: _Job, prepared: Sequence[PreparedRow]) -> list[dict[str, Any]]:
    """Output rows of prepared rows, in order: error rows as they are, the rest assessed."""
    is_ok = [p.error is None for p in prepared]  # before inference, which may add errors
    scored = iter(infer_batch(job, [p for p, ok in zip(prepared, is_ok, strict=True) if ok]))
    return [next(scored) if ok else error_row(p, job.model, tta=job.tta)
            for p, ok in zip(prepared, is_ok, strict=True)]


# --- the stream and the frame -------------------------------------------------------------------


def _batched(rows: Iterable[Mapping[str, Any]], n: int) -> Iterator[list[Mapping[str, Any]]]:
    it = iter(rows)
    while chunk := list(islice(it, n)):
        yield chunk


def _score_chunk(job: _Job, rows: Sequence[Mapping[str, Any]],
                 options: ScoreOptions) -> list[dict[str, Any]]:
    prepared = [prepare_row(job.model, r, keep_thumb=job.heatmaps is not None,
                            storage_options=options.storage_options) for r in rows]
    return _finish(job, prepared)


def _writer(options: ScoreOptions) -> HeatmapWriter | None:
    return HeatmapWriter(options.heatmaps) if options.heatmaps is not None else None


def _pipeline(job: _Job, rows: Iterable[Mapping[str, Any]], options: ScoreOptions,
              prefetch: int) -> Iterator[list[dict[str, Any]]]:
    """``parallel="pipeline"``: the pool prepares rows, the calling thread assesses batches."""
    assert job.executor is not None

    def prep(row: Mapping[str, Any]) -> PreparedRow:
        return prepare_row(job.model, row, keep_thumb=job.heatmaps is not None,
                           storage_options=options.storage_options)

    queue: list[PreparedRow] = []
    n_ok = 0
    for p in ordered_map(prep, rows, prefetch, executor=job.executor):
        queue.append(p)
        n_ok += p.error is None
        if n_ok >= options.batch_size or len(queue) >= 4 * options.batch_size:
            yield _finish(job, queue)
            queue, n_ok = [], 0
    if queue:
        yield _finish(job, queue)
    for fut in job.pending:
        fut.result()


def score_rows(
    rows: Iterable[Mapping[str, Any]],
    model: Dermsight,
    options: ScoreOptions | None = None,
    *,
    executor: Executor | None = None,
    prefetch: int | None = None,
    progress: Progress | None = None,
) -> Iterator[dict[str, Any]]:
    """Score a stream of input rows; yields output rows in input order.

    With an ``executor`` (a thread pool: Pillow, numpy and ONNX Runtime release the GIL), work
    runs in the pool with at most ``prefetch`` rows in flight (memory stays bounded):

    * ``options.parallel="batches"`` (default): each task decodes, preprocesses *and* infers one
      batch, so with N threads N batches progress at once. Best with one ONNX Runtime thread
      per session (no intra-op spinning competing with decoding).
    * ``options.parallel="pipeline"``: the pool decodes and preprocesses rows while the calling
      thread runs inference (for an ONNX Runtime session with several intra-op threads).
    """
    options = options or ScoreOptions()
    size = options.batch_size
    prefetch = max(prefetch or 4 * size, size)
    writer = _writer(options)
    if executor is None:
        outs: Iterable[list[dict[str, Any]]] = (
            _score_chunk(_Job(model, options.tta, writer), chunk, options)
            for chunk in _batched(rows, size))
    elif options.parallel == "batches":
        job = _Job(model, options.tta, writer)

        def batch(chunk: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
            return _score_chunk(job, chunk, options)

        outs = ordered_map(batch, _batched(rows, size), max(2, prefetch // size),
                           executor=executor)
    else:
        outs = _pipeline(_Job(model, options.tta, writer, executor), rows, options, prefetch)
    for out in outs:
        if progress is not None:
            progress(len(out))
        yield from out


def score_frame(
    df: pd.DataFrame,
    model: Dermsight,
    options: ScoreOptions | None = None,
    *,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Score a frame of lesions (see the module doc); one output row per input row, same order.

    ``options.workers`` > 1 scores in a private thread pool of that size; pass ``executor`` to
    reuse one.
    """
    options = options or ScoreOptions()
    rows = frame_rows(df)
    own: ThreadPoolExecutor | None = None
    if executor is None and options.workers is not None and options.workers > 1:
        own = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="dermsight-score")
        executor = own
    try:
        out = score_rows(rows, model, options, executor=executor, progress=progress)
        return rows_to_frame(out, model.classes)
    finally:
        if own is not None:
            own.shutdown(wait=True)
