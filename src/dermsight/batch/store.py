"""The output folder of a batch job: a dataset of part files, written atomically, resumable.

``OUT/`` holds ``part-*.parquet`` (or ``part-*.csv``) files, each a complete, immutable chunk of
output rows with the schema of ``schema.arrow_schema``. A part is written to a hidden temporary
file, flushed to disk and renamed into place, so a killed job leaves only whole parts behind (and
perhaps a temporary file, removed by the next run). A re-run reads the ``(id, path)`` keys of the
existing parts and skips the input rows they hold (``resume.py``: one output row per input row,
repeated listings included); error rows that the input still lists are removed (``drop``: each
part rewritten atomically in place) and scored again. No duplicates, no gaps. The Spark engine
writes the same layout (Spark's own ``part-*`` names) and resumes the same way.

``pd.read_parquet(OUT)`` reads the whole result; files starting with ``_`` or ``.`` (the lock,
the summary) are ignored by Parquet readers.

An output folder written by an older dermsight whose parts lack only ``schema.ADDED_COLUMNS``
(the ``heatmap`` column) is upgraded when a run opens it: each such part is rewritten atomically
with those columns added, null. Parts with any other columns (another model's classes, or a
folder written before the ``ita`` columns) are refused with the difference named.
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
from pathlib import Path
from typing import IO, Any

import pandas as pd

from dermsight.batch.schema import ADDED_COLUMNS, RISK_TIERS, arrow_schema, is_float
from dermsight.batch.sources import row_key

FORMATS = ("parquet", "csv")
LOCK_FILE = "_lock"
SUMMARY_FILE = "_summary.json"
_TMP_PREFIX = ".tmp-"


class OutputError(Exception):
    """An output folder that cannot be used (locked, mixed formats, not a folder)."""


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
    if path.name.endswith(".csv"):
        df = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=columns)
        return df.replace({"": None})
    return pd.read_parquet(path, columns=list(columns) if columns is not None else None)


def iter_output(out: str | os.PathLike[str],
                columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """Stream the parts of an output folder as frames (only ``columns`` when given)."""
    for p in part_files(out):
        yield _read_part(p, columns)


def read_output(out: str | os.PathLike[str],
                columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The whole output (or some of its columns) as one frame; numbers as floats for CSV too."""
    frames = list(iter_output(out, columns))
    if not frames:
        return pd.DataFrame(columns=list(columns) if columns else [])
    df = pd.concat(frames, ignore_index=True)
    for c in df.columns:
        if is_float(c):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def part_columns(part: Path) -> list[str]:
    """The column names of one part file (its header or Parquet schema; no rows read)."""
    if part.name.endswith(".csv"):
        return list(pd.read_csv(part, nrows=0).columns)
    import pyarrow.parquet as pq

    return list(pq.read_schema(part).names)


def stored_columns(out: str | os.PathLike[str], fmt: str | None = None) -> list[str] | None:
    """The column names of the first part file in ``out`` (``None`` when it has none yet)."""
    parts = part_files(out, fmt)
    return part_columns(parts[0]) if parts else None


def flag_counts(flags: Iterable[Any]) -> Counter[str]:
    """Rows per flag code from ``flags`` cells (codes joined with ``;``; empty or missing: none)."""
    counts: Counter[str] = Counter()
    for cell in flags:
        if isinstance(cell, str) and cell:
            counts.update(set(cell.split(";")))
    return counts


def tally(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts over an output folder: rows, errors, rows per risk tier and rows per flag code."""
    risk: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    rows = errors = 0
    for df in iter_output(out, ["risk", "error", "flags"]):
        rows += len(df)
        errors += int(df["error"].notna().sum())
        risk.update(df["risk"].dropna().astype(str))
        flags.update(flag_counts(df["flags"]))
    return {"rows": rows, "errors": errors, "risk": {t: risk.get(t, 0) for t in RISK_TIERS},
            "flags": dict(sorted(flags.items()))}


Key = tuple[str, str]


def output_keys(out: str | os.PathLike[str]) -> tuple[Counter[Key], Counter[Key]]:
    """How many rows of each ``(id, path)`` key ``out`` holds: (scored rows, error rows)."""
    ok: Counter[Key] = Counter()
    errors: Counter[Key] = Counter()
    for df in iter_output(out, ["id", "path", "error"]):
        for i, p, e in zip(df["id"], df["path"], df["error"], strict=True):
            (ok if _missing(e) else errors)[row_key(i, p)] += 1
    return ok, errors


def output_heatmaps(out: str | os.PathLike[str]) -> set[str]:
    """The overlay file names the rows of ``out`` hold (its ``heatmap`` column): a resumed run
    gives these to no other row."""
    names: set[str] = set()
    for df in iter_output(out, ["heatmap"]):
        names.update(v for v in df["heatmap"] if isinstance(v, str) and v)
    return names


def _missing(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and value != value)


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
                 model: Mapping[str, str] | None = None) -> None:
        """``model``: the ``name`` and ``version`` of the model this run scores with; an
        output holding rows of another model is refused (its rows would be skipped as done)."""
        if fmt not in FORMATS:
            raise OutputError(f"unknown format {fmt!r}: use parquet or csv")
        self.out = Path(out)
        self.fmt = fmt
        self.classes = list(classes)
        self.model = dict(model) if model is not None else None
        self.schema = arrow_schema(self.classes)
        self.run = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"
        self._seq = 0
        self._lock: IO[str] | None = None

    def __enter__(self) -> PartStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise OutputError(f"--out must be a folder (a dataset of part files): {self.out}")
        self.out.mkdir(parents=True, exist_ok=True)
        other = [f for f in FORMATS if f != self.fmt]
        if any(part_files(self.out, f) for f in other):
            raise OutputError(
                f"{self.out} already holds {other[0]} parts: use --format {other[0]} to resume "
                "it, or another --out"
            )
        fh = (self.out / LOCK_FILE).open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputError(f"another batch job is writing to {self.out}") from exc
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lock = fh
        for tmp in self.out.glob(f"{_TMP_PREFIX}*"):  # left by a killed run: never complete
            tmp.unlink(missing_ok=True)
        self._check_schema()
        self._check_model()

    def _check_model(self) -> None:
        """Refuse to resume an output scored by another model (name or version): the rows it
        holds would count as done, and one output would mix two models' answers unnoticed."""
        if self.model is None:
            return
        want = (self.model["name"], self.model["version"])
        held: Counter[tuple[str, str]] = Counter()
        for df in iter_output(self.out, ["model_name", "model_version"]):
            # counted per part by pandas (a few distinct pairs), not row by row in Python
            pairs = df.astype(str).value_counts(sort=False)
            for (name, version), n in pairs.items():
                held[(str(name), str(version))] += int(n)
        other = sorted(k for k in held if k != want)
        if other:
            name, version = other[0]
            raise OutputError(
                f"{self.out} holds {held[other[0]]} rows scored by {name} {version}"
                + (f" (and {len(other) - 1} other models)" if len(other) > 1 else "")
                + f"; this run uses {want[0]} {want[1]}: resuming would keep those rows as "
                "done, mixing two models' answers in one output. Use another --out (or remove "
                "this one to score everything again with this model)")

    def _check_schema(self) -> None:
        """Every part has this schema's columns; a part that lacks only ``ADDED_COLUMNS``
        (written by an older dermsight) gets them, null. Any other difference is refused."""
        want = list(self.schema.names)
        older = [n for n in want if n not in ADDED_COLUMNS]
        for part in part_files(self.out, self.fmt):
            names = part_columns(part)
            if names == want:
                continue
            if names == older:
                self._replace(part, self._with_added_columns(part))
                continue
            missing = [n for n in want if n not in names]
            extra = [n for n in names if n not in want]
            diff = "; ".join(f"{what}: {', '.join(cols)}" for what, cols in
                             (("missing", missing), ("not expected", extra)) if cols)
            raise OutputError(
                f"{self.out} holds results with other columns ({diff or 'another order'}), "
                "written for another model's classes or by an older dermsight (from before the "
                "ita columns): use another --out"
            )

    def _with_added_columns(self, part: Path) -> Callable[[Path], None]:
        """Writes ``part`` with the ``ADDED_COLUMNS`` inserted (null) to a given file."""
        if part.name.endswith(".csv"):
            def write_csv(tmp: Path) -> None:
                df = pd.read_csv(part, dtype=str, keep_default_na=False)
                for name in ADDED_COLUMNS:
                    df[name] = ""
                df[self.schema.names].to_csv(tmp, index=False)

            return write_csv

        def write_parquet(tmp: Path) -> None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pq.read_table(part)
            for i, field in enumerate(self.schema):
                if field.name in ADDED_COLUMNS:
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
        tmp = self.out / f"{_TMP_PREFIX}{name}"
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df[self.schema.names], schema=self.schema,
                                         preserve_index=False)
            pq.write_table(table, tmp, compression="zstd")
        else:
            df[self.schema.names].to_csv(tmp, index=False)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.out)
        return final

    def drop(self, keys: Collection[Key], *, errors: bool) -> int:
        """Remove the rows whose ``(id, path)`` is in ``keys`` and that are error rows
        (``errors=True``) or not (``errors=False``). Each part that holds some is rewritten
        atomically in place (deleted when none of its rows is left); returns the rows removed."""
        if self._lock is None:
            raise OutputError("PartStore is not open")
        wanted = set(keys)
        removed = 0
        for part in part_files(self.out, self.fmt):
            df = _read_part(part, ["id", "path", "error"])
            drop = [row_key(i, p) in wanted and _missing(e) != errors
                    for i, p, e in zip(df["id"], df["path"], df["error"], strict=True)]
            n = sum(drop)
            if not n:
                continue
            removed += n
            if n == len(drop):
                part.unlink()
            else:
                self._rewrite(part, [not d for d in drop])
            _fsync_dir(self.out)
        return removed

    def _rewrite(self, part: Path, keep: list[bool]) -> None:
        """Replace ``part`` by its rows where ``keep`` is true, unchanged otherwise."""
        def write(tmp: Path) -> None:
            if part.name.endswith(".csv"):  # the cells as written, text in, text out
                df = pd.read_csv(part, dtype=str, keep_default_na=False)
                df[keep].to_csv(tmp, index=False)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pq.read_table(part)
                pq.write_table(table.filter(pa.array(keep)), tmp, compression="zstd")

        self._replace(part, write)

    def _replace(self, part: Path, write: Callable[[Path], None]) -> None:
        """Replace ``part`` atomically by what ``write`` writes (to a temporary file, flushed,
        then renamed over it)."""
        tmp = self.out / f"{_TMP_PREFIX}{part.name}"
        write(tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, part)
        _fsync_dir(self.out)

    def write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.out / f"{_TMP_PREFIX}{SUMMARY_FILE}"
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        os.replace(tmp, self.out / SUMMARY_FILE)
