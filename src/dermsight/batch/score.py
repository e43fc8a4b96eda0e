"""The one scoring core shared by the local runner and the Spark runner.

``score_frame(df, model)`` takes a pandas frame with one row per lesion and returns one output row
per input row, in the same order. Input columns:

==========  =====================================================================================
``id``      required: the lesion/image id
``image``   encoded image bytes (JPEG, PNG, ..., or DICOM); used when present and not null
``path``    where the image is: a local file, a TFRecord reference ``<shard>#<offset>`` (from the
            readers), or a remote URL (``s3://``, ``gs://``, ... through fsspec, the ``[s3]``
            extra). Always copied to the output as the source of the row.
``age``     optional metadata in any form ``Metadata.parse`` accepts
``sex``
``site``
``label``   optional ground truth (9-class code) and grouping (lesion/patient) for ``--evaluate``;
``group``   copied through unchanged
``error``   optional: a reason set by a reader (bad CSV row, missing file); such rows are not
            scored and keep the reason
==========  =====================================================================================

Nothing here re-implements the model: decoding is ``io.decode_image`` (or the TFRecord / DICOM
reader functions), preprocessing is ``Dermsight.prepare``, inference is ``Dermsight.run_arrays``,
quality flags come from ``gate.assess``. A bad file or bad metadata becomes an output row whose
``error`` says why; it never raises.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dermsight import gate, heatmap, taxonomy
from dermsight.io.decode import decode_image, sniff
from dermsight.io.errors import ImageDecodeError
from dermsight.metaflags import metadata_flags
from dermsight.parallel import ordered_map
from dermsight.records import Metadata

if TYPE_CHECKING:
    import pyarrow as pa

    from dermsight.predict import Dermsight

#: Output columns before and after the per-class probabilities ``p_<CODE>``.
HEAD_COLUMNS: tuple[str, ...] = ("id", "path")
TAIL_COLUMNS: tuple[str, ...] = (
    "prediction",
    "malignant_probability",
    "risk",
    "flags",
    "ood_score",
    "error",
    "age",
    "sex",
    "site",
    "label",
    "group",
    "model_name",
    "model_version",
)
_FLOAT_TAIL = frozenset({"malignant_probability", "ood_score", "age"})
RISK_TIERS: tuple[str, ...] = ("high", "moderate", "low", "cannot_assess")

#: Images per ONNX Runtime call. With one intra-op thread per call, 8-16 cost the same CPU per
#: image as 32 or 64 but need far less memory (ONNX Runtime's arena grows with the batch).
DEFAULT_BATCH = 8

#: Largest side of the image copy kept for ``heatmaps`` overlays (bounds memory per row).
HEATMAP_MAX_SIDE = 512
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def output_columns(classes: Sequence[str]) -> list[str]:
    """Column order of ``score_frame``'s output for a model with ``classes``."""
    return [*HEAD_COLUMNS, *(f"p_{c}" for c in classes), *TAIL_COLUMNS]


def arrow_schema(classes: Sequence[str]) -> pa.Schema:
    """The Arrow schema of the output (Parquet parts of every engine use exactly this)."""
    import pyarrow as pa

    fields = []
    for name in output_columns(classes):
        is_float = name.startswith("p_") or name in _FLOAT_TAIL
        fields.append(pa.field(name, pa.float64() if is_float else pa.string()))
    return pa.schema(fields)


def spark_ddl(classes: Sequence[str]) -> str:
    """The same schema as a Spark DDL string (for ``mapInPandas``)."""
    parts = []
    for name in output_columns(classes):
        is_float = name.startswith("p_") or name in _FLOAT_TAIL
        parts.append(f"`{name}` {'double' if is_float else 'string'}")
    return ", ".join(parts)


def is_remote(path: str) -> bool:
    """True for URLs that need fsspec (``s3://``, ``gs://``, ...); ``file://`` is local."""
    return bool(_REMOTE.match(path)) and not path.startswith("file://")


def local_path(path: str) -> str:
    """Strip a ``file:`` URI prefix (as Spark writes paths) to a plain local path."""
    if path.startswith("file://"):
        return path[len("file://"):]
    if path.startswith("file:"):
        return path[len("file:"):]
    return path


# --- one row: decode + metadata + preprocess (runs in worker threads) ---------------------------


@dataclass
class Prepared:
    """One input row after decoding and preprocessing (before inference)."""

    id: str
    path: str | None
    meta: Metadata = field(default_factory=Metadata)
    label: str | None = None
    group: str | None = None
    x: np.ndarray | None = None
    m: np.ndarray | None = None
    flags: list[gate.Flag] = field(default_factory=list)
    quality: np.ndarray | None = None  # gate.QualityStats vector (gate v2 uses it)
    thumb: np.ndarray | None = None  # small RGB copy, only when heatmaps are wanted
    error: str | None = None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    return text or None


def _read_remote(url: str, storage_options: Mapping[str, Any] | None, max_bytes: int) -> bytes:
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - depends on the install profile
        raise ImageDecodeError(
            f"cannot read {url}: remote paths need the [s3] extra (pip install 'dermsight[s3]')"
        ) from exc
    try:
        with fsspec.open(url, "rb", **dict(storage_options or {})) as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"file not found: {url}") from exc
    except ImportError as exc:
        raise ImageDecodeError(f"cannot read {url}: {exc}") from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {url}: {exc}") from exc
    if len(data) > max_bytes:
        raise ImageDecodeError(f"file too large: more than {max_bytes / 1e6:.0f} MB")
    return bytes(data)


def _decode(
    model: Dermsight, image: bytes | None, path: str | None,
    storage_options: Mapping[str, Any] | None,
) -> tuple[np.ndarray, Metadata | None]:
    """Pixels of a row (and the metadata a DICOM header carries). Raises ImageDecodeError."""
    from dermsight.io.tfrecord import load_tfrecord_image, split_ref

    limits = model.limits
    if image is None and path is not None and is_remote(path):
        image = _read_remote(path, storage_options, limits.max_bytes)
    if image is not None:
        if sniff(image[:132]) == "DICOM":
            from dermsight.io.dicom import decode_dicom_bytes

            rec = decode_dicom_bytes(image, limits)
            assert rec.image is not None
            return rec.image, rec.meta
        return decode_image(image, limits), None
    if path is None:
        raise ImageDecodeError("row has neither image bytes nor a path")
    if split_ref(path) is not None:
        return load_tfrecord_image(path, limits), None
    return decode_image(local_path(path), limits), None


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max(h, w) <= HEATMAP_MAX_SIDE:
        return rgb
    from PIL import Image

    scale = HEATMAP_MAX_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def prepare_row(
    model: Dermsight,
    row: Mapping[str, Any],
    *,
    keep_thumb: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Prepared:
    """Decode, validate metadata, preprocess and run the quality gate for one input row.

    Never raises: any problem becomes ``Prepared.error``.
    """
    path = _text(row.get("path"))
    if path is not None:
        path = local_path(path)
    rid = _text(row.get("id")) or (Path(path.split("#")[0]).stem if path else "?")
    prep = Prepared(id=rid, path=path, label=_text(row.get("label")),
                    group=_text(row.get("group")))
    given_error = _text(row.get("error"))
    if given_error is not None:
        prep.error = given_error
        return prep
    try:
        meta = Metadata.parse(age=row.get("age"), sex=row.get("sex"), site=row.get("site"))
    except taxonomy.TaxonomyError as exc:
        prep.error = f"bad metadata: {exc}"
        return prep
    prep.meta = meta
    raw = row.get("image")
    image = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else None
    where = Path(path.split("#")[0]).name if path else rid
    try:
        rgb, header_meta = _decode(model, image, path, storage_options)
        prep.meta = meta if header_meta is None else meta.fill_from(header_meta)
        prep.x, prep.m = model.prepare(rgb, prep.meta)
        # Quality part of the gate (no embedding yet: the OOD part runs after inference).
        prep.flags, prep.quality = gate.quality_gate(rgb, model.card.gate)
        if keep_thumb:
            prep.thumb = _thumbnail(rgb)
    except ImageDecodeError as exc:
        prep.error = f"{where}: {exc.reason}"
    except taxonomy.TaxonomyError as exc:
        prep.error = f"{where}: bad metadata: {exc}"
    except MemoryError:
        prep.error = f"{where}: out of memory while decoding"
    except Exception as exc:  # noqa: BLE001 - a bad input must never stop a batch job
        prep.error = f"{where}: cannot process image ({type(exc).__name__}: {exc})"
    return prep


# --- inference on a batch of prepared rows ------------------------------------------------------


def _ood(model: Dermsight, embeddings: np.ndarray, batch: Sequence[Prepared]
         ) -> list[tuple[list[gate.Flag], float | None]]:
    """The out-of-distribution part of the gate for a batch (same score, rule and flags)."""
    rows = [p.quality for p in batch if p.quality is not None]
    quality = np.stack(rows) if len(rows) == len(batch) else None
    return gate.ood_flags(embeddings, model.card.gate, model.bundle.gate_arrays, quality)


def _base_row(p: Prepared, model: Dermsight) -> dict[str, Any]:
    return {
        "id": p.id,
        "path": p.path,
        "age": p.meta.age,
        "sex": p.meta.sex,
        "site": p.meta.site,
        "label": p.label,
        "group": p.group,
        "model_name": model.info["name"],
        "model_version": model.info["version"],
    }


def error_row(p: Prepared, model: Dermsight) -> dict[str, Any]:
    row = _base_row(p, model)
    row["error"] = p.error or "unknown error"
    return row


def _safe_name(rid: str) -> str:
    name = _UNSAFE.sub("_", rid).strip("._") or "image"
    return name[:180]


class HeatmapWriter:
    """Writes ``<id>.png`` overlays into a folder (from worker threads when given a pool)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, rid: str, thumb: np.ndarray, cam: np.ndarray) -> None:
        png = heatmap.png_bytes(heatmap.overlay(thumb, heatmap.normalize_cam(cam)))
        final = self.folder / f"{_safe_name(rid)}.png"
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, final)


def infer_batch(
    model: Dermsight,
    batch: Sequence[Prepared],
    *,
    tta: bool = False,
    heatmaps: HeatmapWriter | None = None,
    executor: Executor | None = None,
    pending: list[Future[None]] | None = None,
) -> list[dict[str, Any]]:
    """Run the network on prepared rows (all without error) and build their output rows."""
    if not batch:
        return []
    x = np.stack([p.x for p in batch])  # type: ignore[misc]
    m = np.stack([p.m for p in batch])  # type: ignore[misc]
    try:
        out = model.run_arrays(x, m, tta=tta)
    except Exception as exc:  # noqa: BLE001 - isolate the row that breaks the batch
        if len(batch) == 1:
            p = batch[0]
            p.error = f"inference failed: {type(exc).__name__}: {exc}"
            return [error_row(p, model)]
        return [r for p in batch for r in infer_batch(model, [p], tta=tta, heatmaps=heatmaps,
                                                       executor=executor, pending=pending)]
    probs = model.probabilities(out["logits"])
    p_mal = model.malignant(probs)
    tops = model.card.decision.choose(probs, model.classes)  # the whole batch at once
    rows = []
    ood = _ood(model, out["embedding"], batch)
    for i, p in enumerate(batch):
        ood_flags, score = ood[i]
        flags = [*p.flags, *ood_flags, *metadata_flags(p.meta)]  # same order as the facade
        top = int(tops[i])
        blocking = any(f.blocking for f in flags)
        row = _base_row(p, model)
        row.update({f"p_{c}": float(v) for c, v in zip(model.classes, probs[i], strict=True)})
        row.update({
            "prediction": model.classes[top],
            "malignant_probability": float(p_mal[i]),
            "risk": "cannot_assess" if blocking else model.card.thresholds.tier(float(p_mal[i])),
            "flags": ";".join(f.code for f in flags),
            "ood_score": score,
            "error": None,
        })
        rows.append(row)
        if heatmaps is not None and p.thumb is not None and not blocking:
            # no heatmap for a refused image (as Dermsight.predict): it would look valid
            cam = np.array(out["cam"][i, top])
            if executor is not None and pending is not None:
                pending.append(executor.submit(heatmaps.write, p.id, p.thumb, cam))
            else:
                heatmaps.write(p.id, p.thumb, cam)
        p.thumb = None
    return rows


# --- the stream and the frame -------------------------------------------------------------------


def _batched(rows: Iterable[Mapping[str, Any]], n: int) -> Iterator[list[Mapping[str, Any]]]:
    it = iter(rows)
    while chunk := list(islice(it, n)):
        yield chunk


def score_batch(
    model: Dermsight,
    rows: Sequence[Mapping[str, Any]],
    *,
    tta: bool = False,
    heatmaps: HeatmapWriter | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Prepare and infer one batch of input rows; output rows in input order."""
    prepared = [prepare_row(model, r, keep_thumb=heatmaps is not None,
                            storage_options=storage_options) for r in rows]
    return _finish(model, prepared, tta=tta, heatmaps=heatmaps)


def _finish(
    model: Dermsight, prepared: Sequence[Prepared], *, tta: bool,
    heatmaps: HeatmapWriter | None, executor: Executor | None = None,
    pending: list[Future[None]] | None = None,
) -> list[dict[str, Any]]:
    is_ok = [p.error is None for p in prepared]  # before inference, which may add errors
    scored = iter(infer_batch(model, [p for p, ok in zip(prepared, is_ok, strict=True) if ok],
                              tta=tta, heatmaps=heatmaps, executor=executor, pending=pending))
    return [next(scored) if ok else error_row(p, model)
            for p, ok in zip(prepared, is_ok, strict=True)]


# ruff noqa below: known debt (issue 11): batch scoring tail.
def score_rows(  # noqa: C901, PLR0913
    rows: Iterable[Mapping[str, Any]],
    model: Dermsight,
    *,
    batch_size: int = DEFAULT_BATCH,
    tta: bool = False,
    executor: Executor | None = None,
    prefetch: int | None = None,
    heatmaps: str | os.PathLike[str] | HeatmapWriter | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    parallel: str = "batches",
) -> Iterator[dict[str, Any]]:
    """Score a stream of input rows; yields output rows in input order.

    With an ``executor`` (a thread pool: Pillow, numpy and ONNX Runtime release the GIL), work
    runs in the pool with at most ``prefetch`` rows in flight (memory stays bounded):

    * ``parallel="batches"`` (default): each task decodes, preprocesses *and* infers one batch,
      so with N threads N batches progress at once. Best with one ONNX Runtime thread per
      session (no intra-op spinning competing with decoding).
    * ``parallel="pipeline"``: the pool decodes and preprocesses rows while the calling thread
      runs inference (for an ONNX Runtime session with several intra-op threads).
    """
    writer = HeatmapWriter(heatmaps) if isinstance(heatmaps, (str, os.PathLike)) else heatmaps
    prefetch = max(prefetch or 4 * batch_size, batch_size)
    if parallel not in ("batches", "pipeline"):
        raise ValueError(f"parallel must be 'batches' or 'pipeline', not {parallel!r}")

    def done(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if progress is not None:
            progress(len(out))
        return out

    if executor is None:
        for chunk in _batched(rows, batch_size):
            yield from done(score_batch(model, chunk, tta=tta, heatmaps=writer,
                                        storage_options=storage_options))
        return
    if parallel == "batches":
        def batch(chunk: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
            return score_batch(model, chunk, tta=tta, heatmaps=writer,
                               storage_options=storage_options)

        window = max(2, prefetch // batch_size)
        for out in ordered_map(batch, _batched(rows, batch_size), window, executor=executor):
            yield from done(out)
        return

    keep = writer is not None
    hm_pending: list[Future[None]] = []

    def prep(row: Mapping[str, Any]) -> Prepared:
        return prepare_row(model, row, keep_thumb=keep, storage_options=storage_options)

    queue: list[Prepared] = []
    n_ok = 0
    for p in ordered_map(prep, rows, prefetch, executor=executor):
        queue.append(p)
        n_ok += p.error is None
        if n_ok >= batch_size or len(queue) >= 4 * batch_size:
            yield from done(_finish(model, queue, tta=tta, heatmaps=writer, executor=executor,
                                    pending=hm_pending))
            queue, n_ok = [], 0
    if queue:
        yield from done(_finish(model, queue, tta=tta, heatmaps=writer, executor=executor,
                                pending=hm_pending))
    for fut in hm_pending:
        fut.result()


def frame_rows(df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Input frame -> row dicts (only the columns ``score_frame`` reads)."""
    if "id" not in df.columns and "path" not in df.columns:
        raise ValueError("score_frame needs an 'id' column (and 'image' bytes or 'path')")
    wanted = [c for c in ("id", "image", "path", "age", "sex", "site", "label", "group", "error")
              if c in df.columns]
    cols = [df[c].tolist() for c in wanted]
    for values in zip(*cols, strict=True):
        # nullable dtypes give pd.NA / pd.NaT for missing values: the readers expect None
        yield {k: None if v is pd.NA or v is pd.NaT else v
               for k, v in zip(wanted, values, strict=True)}


def rows_to_frame(rows: Iterable[Mapping[str, Any]], classes: Sequence[str]) -> pd.DataFrame:
    """Output rows -> a frame with exactly ``output_columns(classes)`` and stable dtypes."""
    cols = output_columns(classes)
    df = pd.DataFrame.from_records(list(rows), columns=cols)
    for c in cols:
        if c.startswith("p_") or c in _FLOAT_TAIL:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        else:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


# ruff noqa below: known debt (issue 11): batch options.
def score_frame(  # noqa: PLR0913
    df: pd.DataFrame,
    model: Dermsight,
    *,
    batch_size: int = DEFAULT_BATCH,
    tta: bool = False,
    workers: int | None = None,
    executor: Executor | None = None,
    heatmaps: str | os.PathLike[str] | HeatmapWriter | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    parallel: str = "batches",
) -> pd.DataFrame:
    """Score a frame of lesions (see the module doc); one output row per input row, same order.

    ``workers`` > 1 decodes in a private thread pool of that size; pass ``executor`` to reuse one.
    """
    rows = frame_rows(df)
    own: ThreadPoolExecutor | None = None
    if executor is None and workers is not None and workers > 1:
        own = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dermsight-score")
        executor = own
    try:
        out = score_rows(
            rows, model, batch_size=batch_size, tta=tta, executor=executor, heatmaps=heatmaps,
            storage_options=storage_options, progress=progress, parallel=parallel,
        )
        return rows_to_frame(out, model.classes)
    finally:
        if own is not None:
            own.shutdown(wait=True)
