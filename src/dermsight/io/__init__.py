"""Readers that turn any supported input into a stream of ``LesionRecord``.

``iter_records(path)`` accepts a dataset folder (CSV + images, or images only, or TFRecord
shards, or images and TFRecord shards), a CSV file, a DICOM file, a TFRecord shard, or a single
image file, and yields one record per lesion without ever holding the dataset in memory. A bad
row or file becomes a record with ``error`` set; only an input that cannot be read at all raises
``ReaderError``. A folder without a CSV is read whole: its image files (in it and below) and the
TFRecord shards at its top; shards further down are not read, and said so (``on_warning``).

``iter_records(path, decode=False)`` yields the same records with ``image=None`` (only the CSV,
headers and file names are read), so that images can be decoded in parallel workers with
``load_image`` / ``load_images``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermsight.io.decode import DecodeLimits, decode_image, sniff
from dermsight.io.errors import ImageDecodeError, ReaderError
from dermsight.parallel import ordered_map
from dermsight.records import LesionRecord

if TYPE_CHECKING:
    from dermsight.io.csvfolder import UnlistedImages

__all__ = [
    "DICOM_EXTS",
    "DecodeLimits",
    "ImageDecodeError",
    "ReadSummary",
    "ReaderError",
    "decode_image",
    "detect_kind",
    "estimate_count",
    "iter_records",
    "load_image",
    "load_images",
]

DICOM_EXTS = (".dcm", ".dicom")


def detect_kind(path: str | os.PathLike[str]) -> str:
    """What ``iter_records`` will read: 'folder', 'csv', 'tfrecord', 'tfrecord-folder',
    'mixed-folder' (image files and, at its top, TFRecord shards: both are read), 'dicom' or
    'image'. Raises ``ReaderError`` for a missing path or an unknown file."""
    from dermsight.io.csvfolder import IMAGE_EXTS, classify_csvs, iter_image_files
    from dermsight.io.tfrecord import TFRECORD_EXTS

    p = Path(path)
    try:
        if not p.exists():
            raise ReaderError(f"not found: {p}")
        is_dir = p.is_dir()
    except OSError as exc:  # a folder above it that may not be looked into
        raise ReaderError(f"cannot read {p}: {exc.strerror or exc}") from exc
    if is_dir:
        primary, _ = classify_csvs(p)
        if primary is None and _shards(p):
            # any image file (or refused one, or unreadable folder: an error row) is read too
            return "mixed-folder" if next(iter_image_files(p), None) else "tfrecord-folder"
        return "folder"
    from dermsight.io.files import not_regular_reason

    reason = not_regular_reason(p)  # a FIFO / device given as input must not block
    if reason is not None:
        raise ReaderError(reason)
    name = p.name.lower()
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith(TFRECORD_EXTS) or name.endswith(tuple(e + ".gz" for e in TFRECORD_EXTS)):
        return "tfrecord"
    try:
        with p.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ReaderError(f"cannot read {p}: {exc.strerror or exc}") from exc
    if name.endswith(DICOM_EXTS) or sniff(head) == "DICOM":
        return "dicom"
    if name.endswith(IMAGE_EXTS) or sniff(head) is not None or not head:
        return "image"
    raise ReaderError(
        f"{p.name}: not a dataset this reader knows (expected a folder, .csv, .dcm, .tfrec or an "
        "image file)"
    )


def _shards(folder: Path) -> list[Path]:
    """The TFRecord shards at the top of ``folder``, sorted."""
    from dermsight.io.csvfolder import folder_error
    from dermsight.io.tfrecord import TFRECORD_EXTS

    try:
        return sorted(
            f for f in folder.iterdir() if f.name.lower().endswith(TFRECORD_EXTS) and f.is_file()
        )
    except OSError as exc:
        raise folder_error(folder, exc) from exc


def _nested_shards(folder: Path) -> list[str]:
    """The TFRecord shards in the folders below ``folder`` (a folder of shards is read at its
    top only)."""
    from dermsight.io.csvfolder import is_shard_name, walk_tree

    top = str(folder)
    return [os.path.join(dirpath, fn) for dirpath, _dirs, files in walk_tree(folder)
            if dirpath != top for fn in sorted(files)
            if is_shard_name(fn) and not fn.startswith(".")]


def iter_records(
    path: str | os.PathLike[str],
    decode: bool = True,
    *,
    limits: DecodeLimits | None = None,
    on_unlisted: Callable[[UnlistedImages], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[LesionRecord]:
    """Stream the lesions of ``path`` (see module doc). ``decode=False``: no pixels decoded.

    For a folder with a CSV, the image files the CSV does not list get no record. With
    ``on_unlisted`` (e.g. ``csvfolder.warn_unlisted`` with what the caller does not do with
    them), they are looked for once the rows are read and handed to it, when there are any;
    without (the default), they are not looked for: the folder is not walked for them.

    ``on_warning`` gets one line for each other thing of the input a user must be told of: a
    CSV without an age, sex or site column (and its columns not read), CSV rows read without
    their label (it cannot be used), TFRecord shards below a folder input (not read). Without
    it, these lines are printed (``csvfolder.warn``) on a pass given ``on_unlisted``, the pass
    that tells the user, and on no other (a job that lists its input several times says them
    once)."""
    from dermsight.io import csvfolder, dicom, tfrecord

    p = Path(path)
    kind = detect_kind(p)
    limits = limits or DecodeLimits()
    say = on_warning or (csvfolder.warn if on_unlisted is not None else None)
    if kind == "folder":
        yield from csvfolder.iter_folder(p, decode=decode, limits=limits,
                                         on_unlisted=on_unlisted, on_warning=say)
    elif kind == "mixed-folder":
        yield from csvfolder.iter_image_folder(p, decode=decode, limits=limits, on_warning=say)
        yield from tfrecord.iter_tfrecords(_shards(p), decode=decode, limits=limits,
                                           on_warning=say)
    elif kind == "csv":
        yield from csvfolder.iter_csv(p, decode=decode, limits=limits, on_warning=say)
    elif kind == "tfrecord":
        yield from tfrecord.iter_tfrecord(p, decode=decode, limits=limits, on_warning=say)
    elif kind == "tfrecord-folder":
        yield from tfrecord.iter_tfrecords(_shards(p), decode=decode, limits=limits,
                                           on_warning=say)
        nested = _nested_shards(p) if say is not None else []
        if nested and say is not None:
            say(csvfolder.nested_shards_message(p, nested))
    elif kind == "dicom":
        yield dicom.read_dicom(p, limits, decode=decode)
    else:
        rec = LesionRecord(id=p.stem, image=None, path=str(p))
        yield load_image(rec, limits) if decode else rec


def estimate_count(path: str | os.PathLike[str]) -> int | None:
    """How many records ``iter_records`` will yield, when cheap to know (progress bars): a
    CSV's rows, a folder's images, a shard's records (``_count_shard_records``; a folder of
    images and shards: both); None when not (a GZIP shard, an input it cannot read)."""
    from dermsight.io import csvfolder

    p = Path(path)
    try:
        kind = detect_kind(p)
    except ReaderError:
        return None
    if kind == "folder":
        primary, _ = csvfolder.classify_csvs(p)
        if primary is None:
            return sum(1 for _ in csvfolder.iter_image_files(p))
        p, kind = primary, "csv"
    if kind == "csv":
        return csvfolder.count_rows(p)
    if kind in ("dicom", "image"):
        return 1
    records = _count_shard_records([p] if kind == "tfrecord" else _shards(p))
    if records is None or kind != "mixed-folder":
        return records
    return sum(1 for _ in csvfolder.iter_image_files(p)) + records  # images, then shards


def _count_shard_records(shards: Iterable[Path]) -> int | None:
    """The rows ``iter_tfrecords`` yields for ``shards`` (``estimate_count``): each shard's
    records, counted from their length headers (payloads skipped), and one error row for an
    empty shard or a damaged or cut record at its end. None for a GZIP shard (it would have to
    be decompressed whole) or one that cannot be read."""
    from dermsight.io import tfrecord

    n = 0
    try:
        for shard in shards:
            with shard.open("rb") as fh:
                if shard.suffix.lower() == ".gz" or fh.read(2) == b"\x1f\x8b":
                    return None
                layout = tfrecord._walk(fh)
            n += len(layout.starts) + (0 if layout.clean and layout.starts else 1)
    except (OSError, ReaderError):
        return None
    return n


def load_image(record: LesionRecord, limits: DecodeLimits | None = None) -> LesionRecord:
    """Decode a lazy record's image from ``record.path`` in place (sets ``error`` on failure).

    Records that already have an image or an error are returned unchanged.
    """
    from dermsight.io.tfrecord import load_tfrecord_image, split_ref

    if record.image is not None or record.error is not None or record.path is None:
        return record
    try:
        if split_ref(record.path) is not None:
            record.image = load_tfrecord_image(record.path, limits)
        else:
            record.image = decode_image(record.path, limits)
    except ImageDecodeError as exc:
        record.error = f"{record.id}: {Path(record.path.split('#')[0]).name}: {exc.reason}"
    return record


def load_images(
    records: Iterable[LesionRecord],
    workers: int | None = None,
    limits: DecodeLimits | None = None,
    *,
    prefetch: int = 64,
) -> Iterator[LesionRecord]:
    """Decode lazy records in a thread pool (Pillow releases the GIL), keeping input order and
    at most ``prefetch`` records in flight, so memory stays flat on any dataset size."""
    workers = workers or min(8, os.cpu_count() or 1)
    yield from ordered_map(lambda rec: load_image(rec, limits), records, prefetch,
                           workers=workers, name="dermsight-decode")


@dataclass
class ReadSummary:
    """Running counts over a record stream: ok / errors, with the first few error messages."""

    n: int = 0
    n_ok: int = 0
    n_errors: int = 0
    errors: list[str] = field(default_factory=list)
    max_errors_kept: int = 50

    def add(self, record: LesionRecord) -> LesionRecord:
        self.n += 1
        if record.error is not None:
            self.n_errors += 1
            if len(self.errors) < self.max_errors_kept:
                self.errors.append(record.error)
        else:
            self.n_ok += 1
        return record

    def track(self, records: Iterable[LesionRecord]) -> Iterator[LesionRecord]:
        """Pass records through while counting them."""
        for rec in records:
            yield self.add(rec)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_ok": self.n_ok,
            "n_errors": self.n_errors,
            "errors": list(self.errors),
        }

    def __str__(self) -> str:
        return f"{self.n} records: {self.n_ok} ok, {self.n_errors} with errors"

