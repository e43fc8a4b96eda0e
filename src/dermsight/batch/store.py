"""The output folder of a batch job: a dataset of part files, written atomically, resumable.

``OUT/`` holds ``part-*.parquet`` (or ``part-*.csv``) files, each a complete, immutable chunk of
output rows with the schema of ``schema.arrow_schema``. A part is written to a hidden temporary
file, flushed to disk and renamed into place, so a killed job leaves only whole parts behind (and
perhaps a temporary file, removed by the next run). A re-run reads the ``(id, path)`` keys of the
existing parts and skips the input rows they hold (``resume.py``: one output row per input row,
repeated listings included); error rows that the input still lists are removed (``drop``: each
part rewritten atomically in place) and scored again. No duplicates, no gaps. The Spark engine
writes the same layout (Spark's own ``part-*`` names) and resumes the same way.

A run reads the existing output once, when it opens it (``PartStore.open``: each part's
header or Parquet schema for the column check, then only the columns it needs, in one pass):
``OutputContents`` gathers the keys of the rows done, the overlay names they hold, the models,
bundles and TTA settings they were scored with and the counts of the summary's "output total"
column; the store keeps it up to date as it removes rows (``drop``) and writes parts, so neither
resume nor the summary reads the output again.

``pd.read_parquet(OUT)`` reads the whole result; files starting with ``_`` or ``.`` (the lock,
the summary) are ignored by Parquet readers.

An output folder written by an older dermsight whose parts lack only some of
``schema.ADDED_COLUMNS`` (``heatmap``, ``tta``, ``card_sha256``) is upgraded when a run opens
it: each such part is rewritten atomically with those columns added, null. Parts with any other
columns (another model's classes, or a folder written before the ``ita`` columns) are refused
with the difference named.

A run also refuses, before it writes anything, an output whose rows another model scored
(``model_name`` / ``model_version``), another bundle of the same name and version scored (the
``card_sha256`` column: the sha256 of the bundle's ``card.json``, which differs for every
``dermsight train`` run and for a copy with other decision margins, thresholds or gate), or that
were scored the other way with respect to test-time augmentation (the ``tta`` column): the rows
kept as done would otherwise mix two models', two bundles' or two scoring modes' answers in one
output. Rows whose ``card_sha256`` or ``tta`` is null (written before dermsight recorded it)
are unknown: they do not refuse a run, and the run summary counts them. Every caller that
scores into an output (``dermsight batch``, ``evaluate``, ``bundle adapt``) gets these checks
from here. Each refusal names a way out that the running command offers (``OutputCommand``: the
option that names the output folder, and whether the part format and TTA are the user's choice,
as in ``dermsight batch``, or fixed by the command, as in ``evaluate`` and ``bundle adapt``).

A part file, the summary or a report that cannot be written (a full disk, a file size limit) or
a part file that cannot be read (damaged, or not a part file) stops the run with one
``OutputFailure`` (an ``OutputError``: one line and exit code 2 from the CLI) naming the file
and the cause. The parts written before are kept, and a temporary file is removed, so the same
command resumes once the cause is fixed. ``OUT/_summary.json`` is removed then (``PartStore``,
on leaving its ``with`` block): it described the folder before this run.

``OUT/_summary.json`` is the last finished (or Ctrl-C'd) run's: a run removes it just before
its first write into the folder (``PartStore.starts_writing``: the store's first part file
written, upgraded or rewritten, or the Spark engine's first slice), and writes it again at its
end; so once a run has started writing, and after one was killed (``kill -9``, a crash) since,
there is none. A run refused, or failing before it writes (e.g. Spark refusing its workers'
Python), leaves it as it was.

``read_output`` gives the same frame for Parquet and CSV parts (``flags`` ``""`` on a scored
row without flags, null on an error row; every other empty cell null) and refuses a path that
is not an output folder (``OutputNotFound``) and a column the output lacks (``UnknownColumns``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from itertools import compress
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from dermsight.batch.schema import (
    ADDED_COLUMNS,
    HEAD_COLUMNS,
    RISK_TIERS,
    TAIL_COLUMNS,
    TTA_FALSE,
    TTA_TRUE,
    TTA_UNKNOWN,
    arrow_schema,
    is_float,
)
from dermsight.batch.sources import row_key
from dermsight.io.errors import (  # OutputError: raised here, defined beside the readers' errors
    DISK_ERRNOS,
    OutputError,
)
from dermsight.io.files import IS_A_FILE, unwritable_reason

FORMATS = ("parquet", "csv")
LOCK_FILE = "_lock"
SUMMARY_FILE = "_summary.json"
_TMP_PREFIX = ".tmp-"



class OutputNotFound(OutputError, FileNotFoundError):
    """``read_output`` was given a path that holds no batch output: nothing there, a file, or
    a folder without part files that is not a dermsight output folder (no ``_summary.json``
    or ``_lock``). A ``FileNotFoundError`` too; ``str()`` says why (and, for the folder of
    ``dermsight evaluate``, where its scores are)."""


class UnknownColumns(OutputError, ValueError):
    """``read_output(columns=...)`` named a column the output does not have; ``str()`` names
    it and lists the output's columns."""


class OutputFailure(OutputError):
    """The output folder could not be written or read while a run used it: a part, the summary
    or a report that could not be written (a full disk, a file size limit), or a part file that
    could not be read (damaged, not a part file, or permission denied). The message names the
    file and the cause; the parts written before are kept."""


def _reason(exc: BaseException) -> str:
    """An exception's cause in one line: an ``OSError``'s ``strerror`` (``No space left on
    device``), else its message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _is_read_error(exc: BaseException) -> bool:
    """Whether ``exc``, raised by reading a part file, says the file cannot be read (the file
    system's errors, pandas' parser errors (``ValueError`` subclasses) and pyarrow's),
    rather than a bug."""
    return (isinstance(exc, (OSError, ValueError))
            or type(exc).__module__.partition(".")[0] == "pyarrow")


def _is_permission_error(exc: BaseException) -> bool:
    """Whether ``exc`` says that the file may not be read (no read permission), not that it
    is damaged."""
    return isinstance(exc, PermissionError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM))


@contextmanager
def _reading(part: Path) -> Iterator[None]:
    """Turn an error of reading the part file ``part`` into one ``OutputFailure`` naming it."""
    try:
        yield
    except OutputError:
        raise
    except Exception as exc:
        if not _is_read_error(exc):
            raise
        if _is_permission_error(exc):  # not damaged: readable once access is given
            raise OutputFailure(
                f"cannot read the part file {part}: permission denied. Give the user running "
                "the job read access to it, then run the same command again") from exc
        kind = "CSV" if part.name.endswith(".csv") else "Parquet"
        raise OutputFailure(
            f"cannot read the part file {part} as {kind} ({_reason(exc)}): it is damaged or "
            f"not a part file. Move it out of {part.parent} and run the same command again: "
            "the rows it held are scored again if the input lists them") from exc


def part_files(out: str | os.PathLike[str], fmt: str | None = None) -> list[Path]:
    """The finished part files in ``out`` (both formats unless ``fmt`` is given), sorted."""
    root = Path(out)
    if not root.is_dir():
        return []
    exts = (f".{fmt}",) if fmt else tuple(f".{f}" for f in FORMATS)
    return sorted(
        p for p in root.iterdir()
        if p.is_file() and p.name.startswith("part-") and p.name.endswith(exts)
    )


def _read_part(path: Path, columns: Sequence[str] | None) -> pd.DataFrame:
    """The rows of one part file (``columns`` only, when given); ``OutputFailure`` naming it
    when it cannot be read.

    A Parquet part is read through pyarrow's own local file system, by its path: given a bare
    local path, ``pd.read_parquet`` opens a Python file object and pyarrow's threads let go of
    it after the read has returned, needing the GIL to do so; a process that ends right after
    (an exception raised and not caught) can then abort ("terminate called without an active
    exception", exit code 134). A file pyarrow opened itself is let go of without the GIL."""
    with _reading(path):
        if path.name.endswith(".csv"):
            return _read_csv_part(path, columns)
        from pyarrow.fs import LocalFileSystem

        return pd.read_parquet(path, columns=list(columns) if columns is not None else None,
                               filesystem=LocalFileSystem())


def _read_csv_part(path: Path, columns: Sequence[str] | None) -> pd.DataFrame:
    """The rows of a CSV part as a Parquet part of the same rows reads back: an empty cell is
    null, except the ``flags`` of a scored row (no ``error``), which is ``""`` when it has no
    flag, as the scorer writes it (a CSV cell cannot tell ``""`` from null)."""
    use = None if columns is None else list(columns)
    extra = use is not None and "flags" in use and "error" not in use
    if extra:
        assert use is not None
        use.append("error")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=use)
    if "flags" in df.columns and "error" in df.columns:
        scored = (df["error"] == "").to_numpy()
        df = df.replace({"": None})
        df.loc[scored & df["flags"].isna().to_numpy(), "flags"] = ""
    else:
        df = df.replace({"": None})
    return df.drop(columns=["error"]) if extra else df


def iter_output(out: str | os.PathLike[str],
                columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """Stream the parts of an output folder as frames (only ``columns`` when given)."""
    for p in part_files(out):
        yield _read_part(p, columns)


def read_output(out: str | os.PathLike[str],
                columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The whole output (or ``columns`` of it, in that order) as one frame, the same for
    Parquet and CSV parts: numbers as floats, a missing value null, and ``flags`` ``""`` on a
    scored row without flags (null on an error row).

    Raises ``OutputNotFound`` (a ``FileNotFoundError`` too) when ``out`` is not a batch output:
    missing, a file, or a folder without part files that no run wrote (one with ``scores/``
    below it, as ``dermsight evaluate`` writes, is named in the message); a dermsight output
    folder in which no row was written yet (a run that scored nothing) gives an empty frame
    with the output's columns, less the model's ``p_*`` ones, which only a part records (or
    with ``columns``). ``UnknownColumns`` when ``columns`` names a column the output does not
    have; ``OutputFailure`` when a part file cannot be read."""
    root = Path(out)
    parts = _output_parts(root)
    known = [*HEAD_COLUMNS, *TAIL_COLUMNS]
    if not parts:  # a dermsight output folder with no row yet
        held = list(columns) if columns is not None else known
        _check_columns(root, [c for c in held if not c.startswith("p_")], known)
        return pd.DataFrame({c: pd.Series(dtype=float if is_float(c) else object)
                             for c in held})
    if columns is None:
        frames = [_read_part(p, None) for p in parts]
    else:
        columns = list(columns)
        # a column the first part lacks is unknown, unless an older dermsight's parts lack it
        # (``ADDED_COLUMNS``: null in them, as after the upgrade a run gives them)
        _check_columns(root, columns, [*part_columns(parts[0]), *ADDED_COLUMNS])
        # each part's own columns (its schema, no rows read): a folder can mix parts of both
        frames = [_read_columns(p, columns, set(part_columns(p))) for p in parts]
    df = pd.concat(frames, ignore_index=True)
    for c in df.columns:
        if is_float(c):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def _output_parts(root: Path) -> list[Path]:
    """The part files of the output folder ``root``; ``OutputNotFound`` when ``root`` is not
    one (missing, a file, or a folder with no part file that no run wrote)."""
    if not root.exists():
        raise OutputNotFound(f"no batch output at {root}: it does not exist")
    if not root.is_dir():
        raise OutputNotFound(f"{root} is a file, not a batch output folder (a folder of "
                             "part files)")
    parts = part_files(root)
    if parts or (root / SUMMARY_FILE).exists() or (root / LOCK_FILE).exists():
        return parts
    scores = root / "scores"
    if part_files(scores):
        raise OutputNotFound(f"{root} holds no part files: did you mean {scores}? (dermsight "
                             "evaluate keeps its scores there)")
    raise OutputNotFound(f"{root} holds no part files (part-*.parquet or part-*.csv): it is "
                         "not a batch output folder")


def _check_columns(root: Path, columns: Sequence[str], held: Sequence[str]) -> None:
    """``UnknownColumns`` naming the ``columns`` not in ``held`` (and listing those)."""
    unknown = [c for c in columns if c not in held]
    if unknown:
        real = list(dict.fromkeys(held))
        raise UnknownColumns(
            f"{root} has no column {', '.join(map(repr, unknown))}; its columns are: "
            f"{', '.join(real)}")


def part_columns(part: Path) -> list[str]:
    """The column names of one part file (its header or Parquet schema; no rows read);
    ``OutputFailure`` naming it when it cannot be read."""
    with _reading(part):
        if part.name.endswith(".csv"):
            return list(pd.read_csv(part, nrows=0).columns)
        import pyarrow.parquet as pq

        return list(pq.read_schema(part).names)


def stored_columns(out: str | os.PathLike[str], fmt: str | None = None) -> list[str] | None:
    """The column names of the first part file in ``out`` (``None`` when it has none yet)."""
    parts = part_files(out, fmt)
    return part_columns(parts[0]) if parts else None


def _read_columns(part: Path, columns: Sequence[str], held: Collection[str]) -> pd.DataFrame:
    """``columns`` of one part whose columns are ``held`` (read only those); a column the part
    lacks (written by an older dermsight, not upgraded yet) is null."""
    use = [c for c in columns if c in held]
    # none of them held: one column it holds, for its rows (a CSV read of no column has none)
    df = _read_part(part, use or sorted(held)[:1])
    for c in columns:
        if c not in held:
            df[c] = None
    return df[list(columns)]


def count_tta(df: pd.DataFrame) -> Counter[str]:
    """A frame's scored rows (error rows left out: they hold no probabilities) per ``tta``
    value (its ``error`` and ``tta`` columns), a null cell counted as ``unknown``."""
    cells = df["tta"].to_numpy(object)[df["error"].isna().to_numpy()]
    return Counter(TTA_UNKNOWN if null else str(cell)
                   for cell, null in zip(cells, pd.isna(cells), strict=True))


def tta_dict(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts per ``tta`` value with every key (``true``, ``false``, ``unknown``)."""
    return {k: counts.get(k, 0) for k in (TTA_TRUE, TTA_FALSE, TTA_UNKNOWN)}


def flag_counts(flags: Iterable[Any]) -> Counter[str]:
    """Rows per flag code from ``flags`` cells (codes joined with ``;``; empty or missing: none).
    Each distinct cell is split once (a column holds few distinct ones)."""
    counts: Counter[str] = Counter()
    for cell, n in Counter(c for c in flags if isinstance(c, str) and c).items():
        for code in set(cell.split(";")):
            counts[code] += n
    return counts


Key = tuple[str, str]
#: The columns ``OutputContents`` reads: the keys, the tallies, the models and bundles, the
#: overlay names.
KEY_COLUMNS: tuple[str, ...] = ("id", "path", "error")
TALLY_COLUMNS: tuple[str, ...] = ("risk", "error", "flags", "tta")
MODEL_COLUMNS: tuple[str, ...] = ("model_name", "model_version", "card_sha256")
#: ``(model_name, model_version, card_sha256)`` of a row; the sha256 None where not recorded
BundleKey = tuple[str, str, str | None]
#: what ``tally()`` calls rows that do not record their bundle (``bundle_dict``)
BUNDLE_UNKNOWN = "unknown"
HEATMAP_COLUMNS: tuple[str, ...] = ("heatmap",)


def _count(counter: Counter[Any], items: Iterable[Any], sign: int) -> None:
    """Count ``items`` (``sign`` 1), or uncount them (-1: a count that reaches 0 is removed,
    as if the rows had never been counted)."""
    if sign > 0:
        counter.update(items)
        return
    for k, n in Counter(items).items():
        left = counter[k] - n
        if left > 0:
            counter[k] = left
        else:
            del counter[k]


@dataclass
class OutputContents:
    """What an output folder holds, as a run needs it, gathered by one read of its parts
    (``scan_output``: only the columns needed) and kept up to date by the ``PartStore`` that
    writes and drops its rows (so a run reads the folder once, when it opens it):

    * ``ok`` / ``errors``: rows per ``(id, path)`` key, scored rows and error rows (``keys``;
      ``take_keys`` hands them over and stops counting them);
    * ``names``: rows per overlay file name in the ``heatmap`` column (``heatmaps``;
      ``take_heatmaps``);
    * ``bundles``: rows per ``(model_name, model_version, card_sha256)`` (``BundleKey``; the
      sha256 None in rows that do not record it), and ``models()``: rows per name and version;
    * the tallies of ``tally()``: rows, error rows, rows per risk tier and per flag code,
      scored rows per ``tta`` value (``count_tta``) and rows per bundle (``bundle_dict``).
    """

    keys: bool = True
    heatmaps: bool = False
    ok: Counter[Key] = dataclass_field(default_factory=Counter)
    errors: Counter[Key] = dataclass_field(default_factory=Counter)
    names: Counter[str] = dataclass_field(default_factory=Counter)
    bundles: Counter[BundleKey] = dataclass_field(default_factory=Counter)
    rows: int = 0
    error_rows: int = 0
    risk: Counter[str] = dataclass_field(default_factory=Counter)
    flags: Counter[str] = dataclass_field(default_factory=Counter)
    tta: Counter[str] = dataclass_field(default_factory=Counter)

    def columns(self) -> list[str]:
        """The output columns this gathers from."""
        wanted = [*(KEY_COLUMNS if self.keys else ()), *TALLY_COLUMNS, *MODEL_COLUMNS,
                  *(HEATMAP_COLUMNS if self.heatmaps else ())]
        return list(dict.fromkeys(wanted))

    def add(self, df: pd.DataFrame, sign: int = 1) -> None:
        """Count the rows of ``df`` (a frame with ``columns()``, null cells as None/NaN), or
        uncount them (``sign`` -1: rows removed from the output). Counted column by column
        (numpy arrays and C-level counters: a part costs little more than reading it)."""
        error = df["error"].to_numpy(object)
        failed = ~pd.isna(error)
        self.rows += sign * len(df)
        self.error_rows += sign * int(failed.sum())
        risk = df["risk"].to_numpy(object)
        _count(self.risk, map(str, risk[~pd.isna(risk)]), sign)
        _count(self.flags, flag_counts(df["flags"]).elements(), sign)
        _count(self.tta, count_tta(df).elements(), sign)
        # str() as ``astype(str)``: a null name or version counts as "None"; a null sha256 None
        sha = df["card_sha256"].to_numpy(object)
        _count(self.bundles, zip(map(str, df["model_name"]), map(str, df["model_version"]),
                                 np.where(pd.isna(sha), None, sha), strict=True), sign)
        if self.keys:
            keys = list(map(row_key, df["id"], df["path"]))
            scored = ~failed | (error == "")  # as ``_missing``: no error
            _count(self.ok, compress(keys, scored), sign)
            _count(self.errors, compress(keys, ~scored), sign)
        if self.heatmaps:
            _count(self.names, (v for v in df["heatmap"] if isinstance(v, str) and v), sign)

    def remove(self, df: pd.DataFrame) -> None:
        """Uncount the rows of ``df`` (removed from the output)."""
        self.add(df, -1)

    def models(self) -> Counter[tuple[str, str]]:
        """Rows per ``(model_name, model_version)``."""
        models: Counter[tuple[str, str]] = Counter()
        for (name, version, _), n in self.bundles.items():
            models[name, version] += n
        return models

    def tally(self) -> dict[str, Any]:
        """Counts over the output: rows, errors, rows per risk tier, rows per flag code,
        scored rows per TTA setting (``count_tta``) and rows per bundle (``bundle_dict``)."""
        return {"rows": self.rows, "errors": self.error_rows,
                "risk": {t: self.risk.get(t, 0) for t in RISK_TIERS},
                "flags": dict(sorted(self.flags.items())), "tta": tta_dict(self.tta),
                "card_sha256": bundle_dict(self.bundles)}

    def take_keys(self) -> tuple[Counter[Key], Counter[Key]]:
        """Hand over ``(ok, errors)`` and stop counting keys (the rows written next are not
        held twice)."""
        ok, errors = self.ok, self.errors
        self.ok, self.errors, self.keys = Counter(), Counter(), False
        return ok, errors

    def take_heatmaps(self) -> Collection[str]:
        """Hand over the overlay names the rows hold (not copied) and stop counting them."""
        names = self.names
        self.names, self.heatmaps = Counter(), False
        return names.keys()


def bundle_dict(bundles: Mapping[BundleKey, int]) -> dict[str, int]:
    """Rows per ``card_sha256`` (error rows included), sorted, and those that do not record
    it under ``unknown`` (always there, 0 when none)."""
    counts: Counter[str] = Counter()
    for (_, _, sha), n in bundles.items():
        counts[BUNDLE_UNKNOWN if sha is None else sha] += n
    return {**dict(sorted((k, n) for k, n in counts.items() if k != BUNDLE_UNKNOWN)),
            BUNDLE_UNKNOWN: counts[BUNDLE_UNKNOWN]}


class RowsReader(Protocol):
    """Given the rows of each part as ``scan_output`` reads them, its ``COLUMNS`` included
    (e.g. ``resume.MetadataCheck``), so that they need no second read of the output."""

    COLUMNS: ClassVar[tuple[str, ...]]

    def add(self, df: pd.DataFrame) -> object: ...


def scan_output(out: str | os.PathLike[str], *, keys: bool = True, heatmaps: bool = False,
                parts: Mapping[Path, Sequence[str]] | None = None,
                reader: RowsReader | None = None) -> OutputContents:
    """``OutputContents`` of ``out``: each part read once, only the columns needed. ``parts``:
    the part files to read with their column names, when already known (else every part of
    ``out``, its columns read from its header or Parquet schema). ``reader`` (optional) is
    given each part's rows, its columns read too."""
    contents = OutputContents(keys=keys, heatmaps=heatmaps)
    wanted = list(dict.fromkeys([*contents.columns(),
                                 *(reader.COLUMNS if reader is not None else ())]))
    if parts is None:
        parts = {p: part_columns(p) for p in part_files(out)}
    for part, held in parts.items():
        df = _read_columns(part, wanted, set(held))
        contents.add(df)
        if reader is not None:
            reader.add(df)
    return contents


def tally(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts over an output folder (``OutputContents.tally``), read from its parts."""
    return scan_output(out, keys=False).tally()


@dataclass(frozen=True)
class OutputCommand:
    """What the command that scores into a ``PartStore`` lets its user change, so that a
    refusal names only a way out the command offers: ``option``, the option that names the
    output folder; ``format_option`` / ``tta_option``, whether the part format and test-time
    augmentation are the user's choice (``--format`` / ``--tta``, as in ``dermsight batch``) or
    fixed by the command (``evaluate``, ``bundle adapt``: an output of the other kind can only
    be left for another folder, or removed); ``tta_reason``, why a fixed TTA setting is what it
    is (``"as the served model does"``), said in that refusal."""

    option: str = "--out"
    format_option: bool = True
    tta_option: bool = True
    tta_reason: str = ""


#: ``dermsight batch`` (and the Python runners): ``--out``, ``--format`` and ``--tta``
BATCH_COMMAND = OutputCommand()


def _missing(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and value != value)


def _bundle_named(key: BundleKey) -> str:
    """A bundle in a refusal: its name, version and the start of its card's sha256."""
    name, version, sha = key
    return f"{name} {version} (card.json sha256 {str(sha)[:12]}…)"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PartStore:
    """Exclusive, resumable writer of part files into ``out`` (use as a context manager)."""

    def __init__(self, out: str | os.PathLike[str], fmt: str, classes: Sequence[str],
                 model: Mapping[str, str] | None = None, *, bundle: str | None = None,
                 tta: bool | None = None, heatmaps: bool = False,
                 command: OutputCommand = BATCH_COMMAND) -> None:
        """``model``: the ``name`` and ``version`` of the model this run scores with; an
        output holding rows of another model is refused (its rows would be skipped as done).
        ``bundle``: the identity of the bundle this run scores with (``Bundle.card_sha256``); an
        output holding rows of another bundle is refused likewise, and ``tta``: whether this run
        scores with test-time augmentation; an output holding rows scored the other way too
        (rows that do not record the one or the other are accepted). ``None`` (any of them):
        not checked. ``heatmaps``: gather the overlay names the output's rows hold too
        (``contents.take_heatmaps``), for a run that writes overlays. ``command``: what the
        running command lets its user change (``OutputCommand``: the option that names ``out``,
        whether ``--format`` and ``--tta`` are options of it), for the way out the refusals
        name.

        ``open`` reads the output once (``contents``: its keys, tallies, models, bundles and
        overlay names); ``write`` and ``drop`` keep ``contents`` up to date, so that the run's
        summary needs no second read."""
        if fmt not in FORMATS:
            raise OutputError(f"unknown format {fmt!r}: use parquet or csv")
        self.out = Path(out)
        self.fmt = fmt
        self.classes = list(classes)
        self.model = dict(model) if model is not None else None
        self.bundle = bundle
        self.tta = tta
        self.command = command
        self.option = command.option
        self.schema = arrow_schema(self.classes)
        self.run = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"
        self._seq = 0
        self._lock: IO[str] | None = None
        self._writing = False  # ``starts_writing`` called: the last run's summary removed
        self.contents = OutputContents(heatmaps=heatmaps)
        #: set before ``open``: also given the rows ``open`` reads (``scan_output``)
        self.reader: RowsReader | None = None

    def __enter__(self) -> PartStore:
        try:
            self.open()
        except BaseException as exc:
            self._stopped(exc)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        self._stopped(exc)

    def _stopped(self, exc: BaseException | None) -> None:
        """End the run (``close``); one stopped by an ``OutputFailure`` (or a disk error:
        ``DISK_ERRNOS``) first removes ``_summary.json``, which describes the folder before
        this run (only while the lock is held: never another job's)."""
        try:
            failed = isinstance(exc, OutputFailure) or (
                isinstance(exc, OSError) and exc.errno in DISK_ERRNOS)
            if failed and self._lock is not None:
                self._remove_summary()
        finally:
            self.close()

    def starts_writing(self) -> None:
        """Before the run's first write into ``out`` (a part file, through the store or not,
        as Spark's): remove the last run's ``_summary.json``, which from then on no longer
        describes the folder (a killed run would leave it, ``"interrupted": false``, with the
        old totals); a normal end (or a Ctrl-C) writes it again. Only once per run."""
        if not self._writing:
            self._writing = True
            self._remove_summary()

    def _remove_summary(self) -> None:
        """Remove ``OUT/_summary.json`` (only while the lock is held: never another job's)."""
        if self._lock is None:
            return
        with suppress(OSError):
            (self.out / SUMMARY_FILE).unlink(missing_ok=True)
            _fsync_dir(self.out)

    def open(self) -> None:
        why = unwritable_reason(self.out, folder=True)
        if why == IS_A_FILE:
            raise OutputError(
                f"{self.option} must be a folder (a dataset of part files): {self.out}")
        if why is not None:  # a file or a broken link above it, a folder it may not write
            raise OutputError(f"cannot write {self.option} {self.out}: {why}")
        try:  # access() can say yes where the file system says no (e.g. /sys, a read-only
            # mount, an ACL): the refusal is the same one line
            self.out.mkdir(parents=True, exist_ok=True)
            self._check_format()
            fh = (self.out / LOCK_FILE).open("a+")
        except OSError as exc:
            raise OutputError(f"cannot write {self.option} {self.out}: "
                              f"{exc.strerror or exc}") from exc
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputError(f"another batch job is writing to {self.out}") from exc
            raise
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        except OSError as exc:  # e.g. a full disk: nothing of the output changed yet
            fh.close()
            raise OutputError(f"cannot write {self.option} {self.out}: cannot write "
                              f"{self.out / LOCK_FILE}: {_reason(exc)}") from exc
        self._lock = fh
        for tmp in self.out.glob(f"{_TMP_PREFIX}*"):  # left by a killed run: never complete
            tmp.unlink(missing_ok=True)
        parts = self._check_schema()
        # the one read of the rows: keys, tallies, models and bundles (and overlay names), the
        # parts as they are (a column an older part lacks is null, as after its upgrade)
        self.contents = scan_output(self.out, heatmaps=self.contents.heatmaps, parts=parts,
                                    reader=self.reader)
        # every refusal comes before anything is written, the upgrade of older parts included
        self._check_model(self.contents.models())
        self._check_bundle(self.contents.bundles)
        self._check_tta(tta_dict(self.contents.tta))
        # the run is accepted; the last run's summary is removed at its first write
        # (``starts_writing``), not before: a run that fails before it writes leaves the folder
        # as it was, summary included
        want = list(self.schema.names)
        for part, names in parts.items():
            if list(names) != want:
                self._replace(part, self._with_added_columns(part))

    def _check_format(self) -> None:
        """Refuse an output that holds parts of the other format (a run writes one format;
        a folder of both would be read as one output)."""
        other = [f for f in FORMATS if f != self.fmt]
        if not any(part_files(self.out, f) for f in other):
            return
        held = f"{self.out} already holds {other[0]} parts"
        if self.command.format_option:
            raise OutputError(f"{held}: use --format {other[0]} to resume it, or another "
                              f"{self.option}")
        raise OutputError(f"{held}, and this command writes {self.fmt} parts only: use another "
                          f"{self.option}, or remove this one to score everything again")

    def _check_model(self, held: Counter[tuple[str, str]]) -> None:
        """Refuse to resume an output scored by another model (name or version; ``held``: rows
        per pair): the rows it holds would count as done, and one output would mix two models'
        answers unnoticed."""
        if self.model is None:
            return
        want = (self.model["name"], self.model["version"])
        other = sorted(k for k in held if k != want)
        if other:
            name, version = other[0]
            raise OutputError(
                f"{self.out} holds {held[other[0]]} rows scored by {name} {version}"
                + (f" (and {len(other) - 1} other models)" if len(other) > 1 else "")
                + f"; this run uses {want[0]} {want[1]}: resuming would keep those rows as "
                f"done, mixing two models' answers in one output. Use another {self.option} (or "
                "remove this one to score everything again with this model)")

    def _check_bundle(self, held: Counter[BundleKey]) -> None:
        """Refuse to resume an output scored by another bundle (``card_sha256``: another
        card, though perhaps of the same name and version; ``held``: rows per ``BundleKey``):
        the rows it holds would count as done, and one output would mix two bundles' answers
        unnoticed. Rows that do not record it (written before the column) do not refuse it."""
        if self.bundle is None:
            return
        other = sorted((k for k in held if k[2] is not None and k[2] != self.bundle), key=str)
        if not other:
            return
        n, more = sum(held[k] for k in other), len(other) - 1
        this = f"card.json sha256 {self.bundle[:12]}…"
        if self.model is not None:
            this = f"{self.model['name']} {self.model['version']} ({this})"
        raise OutputError(
            f"{self.out} holds {n} row{'s' if n != 1 else ''} scored by another bundle, "
            + _bundle_named(other[0])
            + (f" (and {more} other bundle{'s' if more > 1 else ''})" if more else "")
            + f"; this run uses {this}: resuming would "
            "keep those rows as done, mixing two bundles' answers in one output. Use another "
            f"{self.option} (or remove this one to score everything again with this bundle)")

    def _check_tta(self, counts: Mapping[str, int]) -> None:
        """Refuse to resume an output whose scored rows were scored the other way with respect
        to TTA (``counts``: scored rows per ``tta`` value): they would count as done, and one
        output would mix two scoring modes unnoticed. Rows that do not record it (``unknown``:
        written before the ``tta`` column) and error rows (no probabilities; retried when the
        input still lists them) do not refuse it."""
        if self.tta is None:
            return
        this, other = (TTA_TRUE, TTA_FALSE) if self.tta else (TTA_FALSE, TTA_TRUE)
        if not counts[other]:
            return
        way = {TTA_TRUE: "with TTA", TTA_FALSE: "without TTA"}
        n = counts[other]
        held = [f"{n} row{'s' if n != 1 else ''} scored {way[other]}"]
        if counts[this]:
            held.append(f"{counts[this]} {way[this]}")
        if counts[TTA_UNKNOWN]:
            held.append(f"{counts[TTA_UNKNOWN]} not recorded")
        mixing = "resuming would keep those rows as done, mixing two scoring modes in one output"
        if not self.command.tta_option:
            reason = f", {self.command.tta_reason}" if self.command.tta_reason else ""
            raise OutputError(
                f"{self.out} holds {', '.join(held)}; this command scores {way[this]}{reason}: "
                f"{mixing}. Use another {self.option}, or remove this one to score everything "
                f"again {way[this]}")
        flag = "--tta" if self.tta else "no --tta"
        again = "without --tta" if self.tta else "with --tta"
        raise OutputError(
            f"{self.out} holds {', '.join(held)}; this run uses {flag}: {mixing}. Run it "
            f"{again} to resume this output, or use another {self.option} (or remove this one "
            f"to score everything again {way[this]})")

    def _check_schema(self) -> dict[Path, list[str]]:
        """The column names of every part (from its header or Parquet schema: no rows read),
        each this schema's columns; a part that lacks only some of ``ADDED_COLUMNS`` (written
        by an older dermsight) is accepted, to be given them (null) once the run is accepted.
        Any other difference is refused."""
        want = list(self.schema.names)
        parts: dict[Path, list[str]] = {}
        for part in part_files(self.out, self.fmt):
            names = parts[part] = part_columns(part)
            if names == want:
                continue
            held = set(names)
            if names == [n for n in want if n in held] and held >= set(want) - set(ADDED_COLUMNS):
                continue
            missing = [n for n in want if n not in names]
            extra = [n for n in names if n not in want]
            diff = "; ".join(f"{what}: {', '.join(cols)}" for what, cols in
                             (("missing", missing), ("not expected", extra)) if cols)
            raise OutputError(
                f"{self.out} holds results with other columns ({diff or 'another order'}), "
                "written for another model's classes or by an older dermsight (from before the "
                f"ita columns): use another {self.option}"
            )
        return parts

    def _with_added_columns(self, part: Path) -> Callable[[Path], None]:
        """Writes ``part`` with the ``ADDED_COLUMNS`` it lacks inserted (null) to a given
        file."""
        if part.name.endswith(".csv"):
            def write_csv(tmp: Path) -> None:
                with _reading(part):
                    df = pd.read_csv(part, dtype=str, keep_default_na=False)
                for name in ADDED_COLUMNS:
                    if name not in df.columns:
                        df[name] = ""
                df[self.schema.names].to_csv(tmp, index=False)

            return write_csv

        def write_parquet(tmp: Path) -> None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            with _reading(part):
                table = pq.read_table(part)
            for i, field in enumerate(self.schema):
                if field.name in ADDED_COLUMNS and field.name not in table.column_names:
                    table = table.add_column(i, field, pa.nulls(table.num_rows, field.type))
            pq.write_table(table, tmp, compression="zstd")

        return write_parquet

    def close(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def write(self, df: pd.DataFrame) -> Path:
        """Write one part atomically; returns its final path."""
        if self._lock is None:
            raise OutputError("PartStore is not open")
        name = f"part-{self.run}-{self._seq:05d}.{self.fmt}"
        self._seq += 1
        final = self.out / name
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df[self.schema.names], schema=self.schema,
                                         preserve_index=False)

            def write(tmp: Path) -> None:
                pq.write_table(table, tmp, compression="zstd")
        else:
            def write(tmp: Path) -> None:
                df[self.schema.names].to_csv(tmp, index=False)
        self._replace(final, write)
        self.contents.add(self._as_read(df[self.contents.columns()]))
        return final

    def _as_read(self, df: pd.DataFrame) -> pd.DataFrame:
        """The cells of a written frame as its part reads them back: a missing value null (and
        in CSV parts, an empty cell too)."""
        df = df.astype(object).where(df.notna(), None)
        return df.replace({"": None}) if self.fmt == "csv" else df

    def drop(self, keys: Collection[Key], *, errors: bool) -> int:
        """Remove the rows whose ``(id, path)`` is in ``keys`` and that are error rows
        (``errors=True``) or not (``errors=False``). Each part that holds some is rewritten
        atomically in place (deleted when none of its rows is left); returns the rows removed."""
        if self._lock is None:
            raise OutputError("PartStore is not open")
        wanted = set(keys)
        removed = 0
        columns = list(dict.fromkeys([*KEY_COLUMNS, *self.contents.columns()]))
        for part in part_files(self.out, self.fmt):
            df = _read_part(part, columns)
            drop = [row_key(i, p) in wanted and _missing(e) != errors
                    for i, p, e in zip(df["id"], df["path"], df["error"], strict=True)]
            n = sum(drop)
            if not n:
                continue
            if n == len(drop):
                part.unlink()
            else:
                self._rewrite(part, [not d for d in drop])
            _fsync_dir(self.out)
            self.contents.remove(df[drop])  # uncounted once they are gone from the folder
            removed += n
        return removed

    def _rewrite(self, part: Path, keep: list[bool]) -> None:
        """Replace ``part`` by its rows where ``keep`` is true, unchanged otherwise."""
        def write(tmp: Path) -> None:
            if part.name.endswith(".csv"):  # the cells as written, text in, text out
                with _reading(part):
                    df = pd.read_csv(part, dtype=str, keep_default_na=False)
                df[keep].to_csv(tmp, index=False)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                with _reading(part):
                    table = pq.read_table(part)
                pq.write_table(table.filter(pa.array(keep)), tmp, compression="zstd")

        self._replace(part, write)

    def _replace(self, part: Path, write: Callable[[Path], object],
                 then: str | None = None) -> None:
        """Write ``part`` (new, or replacing the one there) atomically: what ``write`` writes
        to a temporary file, flushed, then renamed over it. A write that fails (a full disk, a
        file size limit) leaves ``part`` as it was and no temporary file: ``OutputFailure``,
        saying ``then`` (default: the part files written before are kept, run again to
        resume)."""
        if part.name != SUMMARY_FILE:
            self.starts_writing()
        tmp = self.out / f"{_TMP_PREFIX}{part.name}"
        try:
            write(tmp)
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, part)
        except OSError as exc:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            then = then or (f"The part files written before are kept in {self.out}: once the "
                            "cause is fixed (e.g. disk space freed), run the same command "
                            "again to resume")
            raise OutputFailure(f"cannot write {part}: {_reason(exc)}. {then}") from exc
        except BaseException:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.out)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``OUT/_summary.json`` atomically; ``OutputFailure`` when it cannot be (the old
        one is removed by the store on leaving: it describes the folder before this run)."""
        text = json.dumps(summary, indent=2, default=str) + "\n"
        self._replace(self.out / SUMMARY_FILE, lambda tmp: tmp.write_text(text),
                      then=f"The rows are written (in {self.out}); once the cause is fixed, "
                           "run the same command again to write the summary")
