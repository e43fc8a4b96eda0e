"""TFRecord shards in the SIIM-ISIC 2020 schema -> ``LesionRecord`` stream (no TensorFlow).

Each ``tf.train.Example`` holds ``image`` (JPEG bytes), ``image_name``, ``patient_id``, ``sex``,
``age_approx``, ``anatom_site_general_challenge``, ``diagnosis`` and ``target``. The widely
shared 2020 shards store the categorical fields as integer codes (pandas ``factorize`` order of
the 2020 ``train.csv``, -1 = missing); other exports store strings. Both are read: integer codes
go through ``SEX_CODES`` / ``SITE_CODES`` / ``DIAGNOSIS_CODES``, which a caller may replace when
their shards were encoded differently. An integer diagnosis is only trusted when it agrees with
``target`` (melanoma <=> 1).

As in a CSV, only a record without an image to read is an error record. A metadata value that
cannot be used (age ``400``, a sex or site code the tables do not hold) is left out and noted
(the ``metadata_ignored`` flag of a batch row); a label that cannot be used (an unknown
diagnosis code, a diagnosis that disagrees with ``target``) leaves the record unlabelled, and
``on_warning`` is told of those records. The image is read and scored in both cases.

Records are framed and checksummed (masked CRC32C) as TensorFlow writes them; a checksum
mismatch, a truncated shard or an empty one becomes an error record, never an exception
mid-stream (an empty shard gives one error record, so a batch row says why nothing was scored).
A reference (``<shard>#<offset>``) at which no record starts is refused as a wrong or stale
reference, found by walking the record headers before it, not as a damaged shard.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dermsight import taxonomy
from dermsight.io.decode import DecodeLimits, decode_image, sniff
from dermsight.io.errors import ImageDecodeError, ReaderError
from dermsight.records import IGNORED, LesionRecord, Metadata

TFRECORD_EXTS = (".tfrec", ".tfrecord", ".tfrecords")

#: Integer codes in the shared SIIM-ISIC 2020 shards (-1 = not given: ``factorize`` gives
#: missing values -1). A code not in a table is not guessed at: the field is left out, noted.
SEX_CODES: dict[int, str] = {0: "male", 1: "female"}
SITE_CODES: dict[int, str] = {
    0: "head/neck",
    1: "upper extremity",
    2: "lower extremity",
    3: "torso",
    4: "palms/soles",
    5: "oral/genital",
}
DIAGNOSIS_CODES: dict[int, str] = {
    0: "unknown",
    1: "nevus",
    2: "melanoma",
    3: "seborrheic keratosis",
    4: "lentigo NOS",
    5: "lichenoid keratosis",
    6: "solar lentigo",
    7: "cafe-au-lait macule",
    8: "atypical melanocytic proliferation",
}
MISSING_CODE = -1

#: A lazy record's ``path`` is ``<shard>#<byte offset>``; ``load_image`` reads it back.
REF_SEP = "#"

_MAX_RECORD_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Codes:
    """How integer-coded fields map to strings (defaults: the shared 2020 shards)."""

    sex: Mapping[int, str] = field(default_factory=lambda: dict(SEX_CODES))
    site: Mapping[int, str] = field(default_factory=lambda: dict(SITE_CODES))
    diagnosis: Mapping[int, str] = field(default_factory=lambda: dict(DIAGNOSIS_CODES))


def _tfrecord() -> Any:
    """The ``tfrecord`` package, imported without its optional torch DataLoader.

    ``tfrecord/__init__`` tries ``from tfrecord import torch``, which imports PyTorch (seconds,
    and absent on serving installs); marking that submodule unavailable for the duration of the
    import makes the package skip it. Nothing else is changed.
    """
    if "tfrecord" not in sys.modules:
        blocked = "tfrecord.torch" not in sys.modules
        if blocked:
            sys.modules["tfrecord.torch"] = None  # type: ignore[assignment]
        try:
            import tfrecord
        finally:
            if blocked and sys.modules.get("tfrecord.torch", 0) is None:
                del sys.modules["tfrecord.torch"]
    import tfrecord

    return tfrecord


def _masked_crc(data: bytes) -> bytes:
    return bytes(_tfrecord().writer.TFRecordWriter.masked_crc(data))


def _open(path: Path) -> BinaryIO:
    """The shard's records: a GZIP-compressed shard (TensorFlow's ``compression_type="GZIP"``,
    often still named ``.tfrec``) is recognised by its magic bytes, not only by ``.gz``."""
    fh = path.open("rb")
    if path.suffix.lower() == ".gz" or fh.read(2) == b"\x1f\x8b":
        fh.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    fh.seek(0)
    return fh


def _header_problem(index: int, header: bytes) -> str | None:
    """Why a record's 12-byte length header is unusable (None when it is fine)."""
    if len(header) < 12:
        return "truncated shard: incomplete record header"
    if _masked_crc(header[:8]) == header[8:]:
        (length,) = struct.unpack("<Q", header[:8])
        return (f"record of {length} bytes is larger than allowed"
                if length > _MAX_RECORD_BYTES else None)
    kind = sniff(header) if index == 0 else None
    if kind is not None:
        return (f"not a TFRecord file: it is a {kind} file (give images as files in a folder, "
                "or shards written by TensorFlow)")
    return "not a TFRecord file, or corrupt (record length checksum mismatch)"


def iter_raw(path: str | os.PathLike[str]) -> Iterator[tuple[int, int, bytes | None, str | None]]:
    """Yield ``(index, byte offset, payload or None, problem or None)`` for each framed record.

    A damaged length header cannot be skipped past, so it ends the shard with one problem.
    """
    p = Path(path)
    try:
        fh = _open(p)
    except FileNotFoundError as exc:
        raise ReaderError(f"TFRecord file not found: {p}") from exc
    except OSError as exc:
        raise ReaderError(f"cannot read {p}: {exc.strerror or exc}") from exc
    with fh:
        index = 0
        while True:
            offset = fh.tell()
            data, problem, more = _read_frame(fh, index)
            if data is None and problem is None:
                return
            yield index, offset, data, problem
            if not more:
                return
            index += 1


def _read_frame(fh: BinaryIO, index: int) -> tuple[bytes | None, str | None, bool]:
    """The next record: ``(payload, None, True)``; ``(None, problem, go on?)``; ``(None, None,
    False)`` at the clean end. A damaged or truncated gzip stream is a problem, not an error."""
    try:
        header = fh.read(12)
        if not header:
            return None, ("empty shard: it holds no records" if index == 0 else None), False
        problem = _header_problem(index, header)
        if problem is not None:
            return None, problem, False
        (length,) = struct.unpack("<Q", header[:8])
        data = fh.read(length)
        footer = fh.read(4)
    except (gzip.BadGzipFile, EOFError, zlib.error):
        return None, "unreadable shard: the compressed data is corrupt or truncated", False
    except OSError as exc:
        return None, f"unreadable shard ({exc.strerror or 'read error'})", False
    if len(data) < length or len(footer) < 4 or _masked_crc(data) != footer:
        complete = len(data) == length and len(footer) == 4
        problem = ("corrupt record (data checksum mismatch)" if complete
                   else "truncated shard: the last record is incomplete")
        return None, problem, complete
    return data, None, True


def parse_example(data: bytes) -> dict[str, list[Any]]:
    """A serialized ``tf.train.Example`` -> {feature name: list of values (bytes/int/float)}."""
    ex = _tfrecord().example_pb2.Example()
    ex.ParseFromString(data)
    out: dict[str, list[Any]] = {}
    for key, feat in ex.features.feature.items():
        kind = feat.WhichOneof("kind")
        if kind is None:
            out[key] = []
        else:
            out[key] = list(getattr(feat, kind).value)
    return out


def _scalar(features: Mapping[str, list[Any]], key: str) -> Any:
    values = features.get(key)
    if not values:
        return None
    value = values[0]
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace").strip()
        return text or None
    return value


def _coded(value: Any, table: Mapping[int, str], what: str) -> str | None:
    """An int code through ``table``; a string passes through; -1 / None = missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not value.is_integer():
        raise taxonomy.TaxonomyError(f"{what} code {value!r} is not a whole number")
    code = int(value)
    if code == MISSING_CODE:
        return None
    if code not in table:
        raise taxonomy.TaxonomyError(f"unknown {what} code {code}")
    return table[code]


def _metadata(features: Mapping[str, list[Any]], codes: Codes) -> Metadata:
    """The record's age, sex and site. A value that cannot be used (age ``400``, a sex or site
    code that ``codes`` does not hold) is left out and noted IGNORED, as a CSV cell is
    (``Metadata.lenient``): the batch row gets the ``metadata_ignored`` flag and the image is
    scored. -1 (and an absent feature) is "not given", without a note."""
    raw_age = _scalar(features, "age_approx")
    if isinstance(raw_age, (int, float)) and raw_age == MISSING_CODE:
        raw_age = None
    given: dict[str, object] = {"age": raw_age}
    bad: list[str] = []
    for name, key, table in (("sex", "sex", codes.sex),
                             ("site", "anatom_site_general_challenge", codes.site)):
        try:
            given[name] = _coded(_scalar(features, key), table, name)
        except taxonomy.TaxonomyError:
            given[name] = None
            bad.append(name)
    return Metadata.lenient(**given).noted(*((name, IGNORED) for name in bad))


def _label(features: Mapping[str, list[Any]], codes: Codes) -> tuple[str | None, list[str]]:
    """The record's class and, when it cannot be used, why (the record is then read without a
    label, as a CSV row is): an unknown diagnosis (code), a ``target`` that is not 0 or 1, or a
    diagnosis that disagrees with ``target`` (melanoma <=> 1). ``target`` alone gives MEL when
    no diagnosis is given."""
    raw_dx = _scalar(features, "diagnosis")
    try:
        dx = _coded(raw_dx, codes.diagnosis, "diagnosis")
        label = taxonomy.normalize_diagnosis(dx) if dx else None
    except taxonomy.TaxonomyError as exc:
        return None, [str(exc)]
    raw_target = _scalar(features, "target")
    if raw_target is None:
        return label, []
    try:
        target = int(float(raw_target))
        if target not in (0, 1):
            raise ValueError(raw_target)
    except (ValueError, OverflowError):
        return None, [f"target {raw_target!r} is not 0 or 1"]
    if label is None and raw_dx is None:
        return ("MEL" if target == 1 else None), []
    if label is not None and (label == "MEL") != (target == 1):
        hint = " (are the diagnosis codes those of this shard?)" if isinstance(raw_dx, int) else ""
        return None, [f"diagnosis {label} disagrees with target {target}{hint}"]
    return label, []


def _record_from(
    features: Mapping[str, list[Any]], codes: Codes, fallback_id: str
) -> tuple[LesionRecord, bytes | None, list[str]]:
    """The record, its image bytes and why its label cannot be used (empty when it can). Only
    a record without an image is an error record: metadata and labels never make one."""
    rid = str(_scalar(features, "image_name") or fallback_id)
    label, label_problems = _label(features, codes)
    patient = _scalar(features, "patient_id")
    group = None if patient is None or patient == MISSING_CODE else str(patient)
    source = _scalar(features, "source")
    image_bytes = _scalar_bytes(features, "image")
    rec = LesionRecord(
        id=rid,
        image=None,
        meta=_metadata(features, codes),
        label=label,
        source=str(source) if source is not None else "tfrecord",
        group=group,
        error=_no_image(features) if image_bytes is None else None,
        label_invalid="; ".join(label_problems) or None,  # why the label cannot be used
    )
    return rec, image_bytes, label_problems


#: feature names shown in a "no image feature" message, and their longest shown length
_SHOWN_FEATURES, _FEATURE_NAME_CHARS = 8, 40


def _no_image(features: Mapping[str, list[Any]]) -> str:
    """Why a record has no image, naming the layout read and the record's own feature names
    (a shard of another schema then says so at once)."""
    names = sorted(features)
    shown = ", ".join(repr(n[:_FEATURE_NAME_CHARS]) for n in names[:_SHOWN_FEATURES])
    more = f" and {len(names) - _SHOWN_FEATURES} more" if len(names) > _SHOWN_FEATURES else ""
    found = f"it has {shown}{more}" if names else "it has no features"
    return ("record has no image feature (SIIM-ISIC records hold the encoded image in 'image' "
            f"and the id in 'image_name'; {found})")


def _scalar_bytes(features: Mapping[str, list[Any]], key: str) -> bytes | None:
    values = features.get(key)
    if not values or not isinstance(values[0], bytes) or not values[0]:
        return None
    return bytes(values[0])


def iter_tfrecord(
    path: str | os.PathLike[str],
    *,
    decode: bool = True,
    limits: DecodeLimits | None = None,
    codes: Codes | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[LesionRecord]:
    """Records of one shard. ``decode=False`` leaves ``image`` None and ``path`` as
    ``<shard>#<offset>`` so that :func:`load_tfrecord_image` can decode it later.

    Only a record without an image to read is an error record. A metadata value that cannot
    be used is left out and noted (``_metadata``); a record whose label cannot be used is read
    without one, and ``on_warning`` (when given) is told of those records after the shard, in
    one line, in the words a CSV's reader uses (``csvfolder.unusable_labels_message``)."""
    p = Path(path)
    codes = codes or Codes()
    limits = limits or DecodeLimits()
    unlabelled: list[str] = []  # records read without their label: where, and why
    for index, offset, data, problem in iter_raw(p):
        where = f"{p.name} record {index}"
        if data is None:
            yield LesionRecord(
                id=f"{p.stem}:{index}", image=None, path=f"{p}{REF_SEP}{offset}",
                error=f"{where}: {problem}",
            )
            continue
        try:
            features = parse_example(data)
        except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
            yield LesionRecord(
                id=f"{p.stem}:{index}", image=None, path=f"{p}{REF_SEP}{offset}",
                error=f"{where}: not a tf.train.Example ({exc})",
            )
            continue
        rec, image_bytes, label_problems = _record_from(features, codes, f"{p.stem}:{index}")
        rec.path = f"{p}{REF_SEP}{offset}"
        where = f"{where} ({rec.id})"
        if rec.error:
            rec.error = f"{where}: {rec.error}"
        else:
            if label_problems:  # the image is read all the same: unlabelled
                unlabelled.append(f"record {index} ({rec.id}): {'; '.join(label_problems)}")
            if decode and image_bytes is not None:
                try:
                    rec.image = decode_image(image_bytes, limits)
                except ImageDecodeError as exc:
                    rec.error = f"{where}: {exc.reason}"
        yield rec
    if unlabelled and on_warning is not None:
        from dermsight.io.csvfolder import unusable_labels_message  # it imports this module

        on_warning(unusable_labels_message(p.name, unlabelled))


def iter_tfrecords(
    paths: Iterable[str | os.PathLike[str]],
    *,
    decode: bool = True,
    limits: DecodeLimits | None = None,
    codes: Codes | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[LesionRecord]:
    for p in paths:
        yield from iter_tfrecord(p, decode=decode, limits=limits, codes=codes,
                                 on_warning=on_warning)


def split_ref(path: str) -> tuple[str, int] | None:
    """``"<shard>#<offset>"`` -> (shard, offset); None if ``path`` is no TFRecord reference."""
    base, sep, tail = path.rpartition(REF_SEP)
    if not sep or not tail.isdigit():
        return None
    if not base.lower().endswith(TFRECORD_EXTS + tuple(e + ".gz" for e in TFRECORD_EXTS)):
        return None
    return base, int(tail)


#: The end of a reference's message when its offset starts no record of a readable shard.
WRONG_REFERENCE = "the reference is wrong or stale; the shard itself may be fine"


@dataclass(frozen=True)
class _Layout:
    """Where a shard's records start, walked once from its length headers: ``starts`` (each a
    whole record, so record ``i`` ends where the next starts, the last at ``stop``) and
    whether ``stop`` is the shard's clean end (``clean``) or a damaged or cut record there."""

    starts: tuple[int, ...]
    stop: int
    clean: bool


def _walk(fh: BinaryIO) -> _Layout:
    """``_Layout`` of an open shard (read from byte 0, pixels skipped)."""
    starts: list[int] = []
    start = 0
    try:
        fh.seek(0)
        while True:
            header = fh.read(12)
            if not header:
                return _Layout(tuple(starts), start, clean=True)
            if _header_problem(1, header) is not None:
                break
            (length,) = struct.unpack("<Q", header[:8])
            end = start + 12 + length + 4
            fh.seek(end - 1)
            if not fh.read(1):  # a cut record
                break
            starts.append(start)
            start = end
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError):
        pass
    return _Layout(tuple(starts), start, clean=False)


@functools.lru_cache(maxsize=8)
def _layout(shard: str, mtime_ns: int, size: int) -> _Layout | None:
    """``_walk`` of a shard, cached by its path, modification time and size: many wrong
    references into one rewritten shard walk it once (a gzip shard is decompressed once), and
    a shard changed since is walked again. None when it cannot be opened."""
    del mtime_ns, size  # the cache key only
    try:
        with _open(Path(shard)) as fh:
            return _walk(fh)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError):
        return None


def _misplaced(shard: str, offset: int) -> str | None:
    """Why no record starts at byte ``offset`` of a shard whose records before it are sound,
    found from their length headers (``_layout``): ``"it is inside the record at byte N"`` or
    ``"the shard ends at byte N"``. None when a record does start there, or when a damaged or
    cut record before it hides where records start: then the shard is at fault."""
    try:
        st = os.stat(shard)
    except OSError:
        return None
    layout = _layout(shard, st.st_mtime_ns, st.st_size)
    if layout is None:
        return None
    i = bisect.bisect_right(layout.starts, offset) - 1
    if i >= 0 and layout.starts[i] == offset:
        return None
    if offset < layout.stop:  # i >= 0: the first record starts at byte 0
        return f"it is inside the record at byte {layout.starts[i]}"
    if layout.clean and layout.stop:  # an empty shard: nothing a reference could point into
        return f"the shard ends at byte {layout.stop}"
    return None


def load_tfrecord_image(ref: str, limits: DecodeLimits | None = None) -> Any:
    """Decode the image of the record at ``<shard>#<offset>``; raises ``ImageDecodeError``.
    An offset at which no record of the shard starts is named as a wrong reference
    (``WRONG_REFERENCE``), not as a damaged shard."""
    parts = split_ref(ref)
    if parts is None:
        raise ImageDecodeError(f"not a TFRecord reference: {ref}")
    shard, offset = parts
    name = Path(shard).name
    try:
        with _open(Path(shard)) as fh:
            fh.seek(offset)
            # index 0 only at byte 0: past the last record is "no record", not "empty shard"
            data, problem, _more = _read_frame(fh, 0 if offset == 0 else 1)
            misplaced = _misplaced(shard, offset) if data is None else None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # seeking a damaged gzip shard
        raise ImageDecodeError(f"{name}: the compressed data is corrupt or truncated") from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {shard}: {exc.strerror or exc}") from exc
    if misplaced is not None:
        raise ImageDecodeError(f"{name}: no record starts at byte {offset} ({misplaced}): "
                               f"{WRONG_REFERENCE}")
    if data is None:
        raise ImageDecodeError(f"{name}, record at byte {offset}: {problem}" if problem
                               else f"{name}: no record at byte {offset}")
    try:
        features = parse_example(data)
    except Exception as exc:
        raise ImageDecodeError(f"{name}: the record at byte {offset} is not a "
                               "tf.train.Example") from exc
    image = _scalar_bytes(features, "image")
    if image is None:
        raise ImageDecodeError(f"{name}: the record at byte {offset} has no image feature")
    return decode_image(image, limits)


# --- writing (used by tests and by anyone converting a folder to shards) ------------------------


def _inverse(table: Mapping[int, str], value: str | None, normalise: Any) -> int:
    if value is None:
        return MISSING_CODE
    wanted = normalise(value)
    for code, text in table.items():
        if normalise(text) == wanted:
            return code
    raise ValueError(f"{value!r} has no integer code")


def write_tfrecord(
    path: str | os.PathLike[str],
    examples: Iterable[Mapping[str, Any]],
    *,
    int_codes: bool = False,
    codes: Codes | None = None,
) -> Path:
    """Write SIIM-ISIC-schema examples. Each mapping has ``image`` (encoded bytes),
    ``image_name`` and optionally ``patient_id``, ``sex``, ``age_approx``,
    ``anatom_site_general_challenge``, ``diagnosis``, ``target`` (strings/numbers as in the
    2020 CSV; ``None`` = missing). ``int_codes=True`` stores sex/site/diagnosis/patient as
    integer codes the way the shared 2020 shards do."""
    codes = codes or Codes()
    p = Path(path)
    writer = _tfrecord().writer.TFRecordWriter(str(p))
    patients: dict[str, int] = {}
    try:
        for ex in examples:
            datum: dict[str, tuple[Any, str]] = {
                "image": (bytes(ex["image"]), "byte"),
                "image_name": (str(ex["image_name"]).encode(), "byte"),
            }
            sex, site, dx = ex.get("sex"), ex.get("anatom_site_general_challenge"), ex.get(
                "diagnosis"
            )
            age, target, patient = ex.get("age_approx"), ex.get("target"), ex.get("patient_id")
            if int_codes:
                datum["sex"] = (_inverse(codes.sex, sex, taxonomy.normalize_sex), "int")
                datum["anatom_site_general_challenge"] = (
                    _inverse(codes.site, site, taxonomy.normalize_site),
                    "int",
                )
                datum["diagnosis"] = (
                    _inverse(codes.diagnosis, dx, lambda v: str(v).strip().lower()),
                    "int",
                )
                datum["age_approx"] = (MISSING_CODE if age is None else int(age), "int")
                if patient is not None:
                    datum["patient_id"] = (patients.setdefault(str(patient), len(patients)), "int")
            else:
                for key, value in (
                    ("sex", sex),
                    ("anatom_site_general_challenge", site),
                    ("diagnosis", dx),
                    ("patient_id", patient),
                ):
                    if value is not None:
                        datum[key] = (str(value).encode(), "byte")
                if age is not None:
                    datum["age_approx"] = (float(age), "float")
            if target is not None:
                datum["target"] = (int(target), "int")
            writer.write(datum)
    finally:
        writer.close()
    return p
