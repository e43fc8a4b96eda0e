"""Resuming a batch job: which input rows a re-run still scores, and which error rows it retries.

An input row is identified by its key ``(id, source path)`` *and* how many rows with that key came
before it in the input: the n-th listing of a key is done when the output holds at least n rows
with that key. So an image listed twice (say with ages 45 and 50) is scored twice, once per
listing, and a re-run after an interruption scores exactly the listings still missing. The
runners write rows in input order and a ``--limit`` takes the first pending rows, so the rows of
a key in the output are always its first listings.

Error rows do not count as done for an input that still lists them: a re-run **retries** them.
Before scoring, every row (error or not) of a key that has an error row and that the input still
lists is removed from the output (each part file rewritten atomically, in place), and all
listings of that key are scored again, in order. The output therefore never holds two rows for
one listing, and a fixed CSV row, a file added later or a bad image replaced by a good one is
picked up by simply running the same command again. An error row without a path (a CSV that names
images by id only, whose file was missing) is retried by any input row with the same id. Error
rows of inputs no longer listed are kept. With ``--limit`` only the keys the run reaches are
retried. A run killed after removing rows leaves them pending: the next run scores them.

A row already done is not scored again when the input's metadata for it changed (a corrected
age, sex or site): its key is ``(id, path)``. ``MetadataCheck`` counts such rows as ``pending``
passes them, so that the run can say so (they keep the scores of the metadata they were scored
with; a new ``--out`` scores them again).

An output may also hold rows that this input does not list (another input scored into the same
folder). They are kept, but they are neither "already done" for this run (``Listings``: only the
listings of this input that the output holds are counted, as ``pending`` passes them) nor part of
its evaluation (``listed_rows``: the output rows this input lists, as many per key as it lists).
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from pathlib import PurePath
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from dermsight.batch.sources import row_key
from dermsight.batch.store import Key, PartStore
from dermsight.io import DICOM_EXTS
from dermsight.records import Metadata
from dermsight.taxonomy import TaxonomyError

__all__ = ["Listings", "MetadataCheck", "Resume", "listed_keys",
           "listed_rows", "pending", "prepare_resume", "retry_keys"]


@dataclass
class Resume:
    """What a run resumes from: the keys of the rows kept in the output (a multiset) and how
    many error rows of earlier runs it removed to score again."""

    done: Counter[Key] = field(default_factory=Counter)
    retried: int = 0


@dataclass
class Listings:
    """What ``pending`` found while it read the input: ``skipped``, the listings of this input
    that the output already holds (passed over: "already done"), and ``not_listed``, the rows of
    the output that no listing of this input matches (rows of other inputs scored into the same
    folder), known only once the whole input was read (``None`` before, and when a ``limit``
    stopped the reading early). ``on_skip`` (optional) is called with how many listings were
    passed over (a progress bar's total shrinks with it), in runs: before each row ``pending``
    yields, every ``_SKIP_RUN`` rows, and at the end. ``on_done`` (optional) is called with
    each row passed over (``MetadataCheck.see``)."""

    skipped: int = 0
    not_listed: int | None = None
    on_skip: Callable[[int], object] | None = None
    on_done: Callable[[Mapping[str, Any]], object] | None = None


#: ``pending`` counts the rows it passes over in runs of at most this many (and before each row
#: it yields), so ``Listings.on_skip`` is called with a run's length, not once per row
_SKIP_RUN = 4096


def pending(rows: Iterable[Mapping[str, Any]], done: Mapping[Key, int],
            limit: int | None = None, *, consume: bool = False,
            listings: Listings | None = None) -> Iterator[Mapping[str, Any]]:
    """The input rows the output does not hold yet, in order (at most ``limit``): the n-th row
    with a key is pending when the output holds fewer than n rows with that key.

    Memory does not grow with the input: instead of counting every key seen, the count of done
    rows left for a key is decremented and dropped at zero, so the bookkeeping shrinks as the
    input is read. ``consume=True`` (``done`` must then be a mutable dict or ``Counter``, which
    is emptied as it goes) avoids even the copy of ``done``. ``listings`` (optional) counts the
    rows passed over as done and, once the input is read to its end, the output's rows that it
    does not list (what is left of ``done``)."""
    left: dict[Key, int] = (done if consume and isinstance(done, dict)
                            else {k: n for k, n in done.items() if n > 0})
    seen = listings if listings is not None else Listings()
    on_done = seen.on_done

    def passed(run: int) -> None:  # counted in runs: a call per row costs ~1 s at 400k
        seen.skipped += run
        if seen.on_skip is not None:
            seen.on_skip(run)

    def todo() -> Iterator[Mapping[str, Any]]:
        run = 0  # rows passed over since the last count
        try:
            for row in rows:
                k = row_key(row.get("id"), row.get("path"))
                n = left.get(k, 0)
                if n > 0:
                    if n == 1:
                        del left[k]
                    else:
                        left[k] = n - 1
                    run += 1
                    if on_done is not None:
                        on_done(row)
                    if run == _SKIP_RUN:
                        passed(run)
                        run = 0
                    continue
                if run:
                    passed(run)
                    run = 0
                yield row
            seen.not_listed = sum(left.values())
        finally:
            if run:
                passed(run)

    return islice(todo(), limit) if limit is not None else todo()


#: the metadata of a row as the output holds it: (age, sex, site), None for a missing value
_Meta = tuple[float | None, str | None, str | None]
#: ``_input_meta`` of a row whose metadata cannot be read now (the run would make it an error)
_UNREADABLE = (float("inf"), "", "")


def _cell(value: object) -> object:
    """An output cell as a value: None for a missing one (null, NaN, or "" in a CSV part)."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    return value


def _stored_meta(age: object, sex: object, site: object) -> _Meta:
    """The metadata an output row holds (a Parquet part's floats or a CSV part's text)."""
    a, x, s = _cell(age), _cell(sex), _cell(site)
    return (None if a is None else float(str(a)), None if x is None else str(x),
            None if s is None else str(s))


@lru_cache(maxsize=4096)  # few distinct values in a collection: each parsed once
def _parsed_meta(age: object, sex: object, site: object) -> _Meta:
    try:
        meta = Metadata.parse(age=age, sex=sex, site=site)
    except TaxonomyError:
        return _UNREADABLE
    return meta.age, meta.sex, meta.site


def _input_meta(row: Mapping[str, Any]) -> _Meta:
    """An input row's metadata as the run would store it (``Metadata.parse``, as the scorer
    reads it)."""
    try:
        return _parsed_meta(row.get("age"), row.get("sex"), row.get("site"))
    except TypeError:  # a value that cannot be hashed: not cached
        return _parsed_meta.__wrapped__(row.get("age"), row.get("sex"), row.get("site"))


def _fingerprint(key: Key, meta: _Meta) -> int:
    return hash((key, meta))


@dataclass
class MetadataCheck:
    """Counts the input rows passed over as already done whose metadata (age, sex, site, as
    ``Metadata.parse`` reads the input now) no row of the output holds for their key: rows
    whose metadata was corrected after they were scored (a key is ``(id, path)``: such a row is
    done, and keeps its scores). ``add`` takes the output's rows (frames with ``COLUMNS``: 8
    bytes a row are kept), ``see`` (``Listings.on_done``) each input row passed over, and
    ``changed()`` gives the count. A row of a DICOM file that leaves a field empty is not
    compared: the file's tags filled it when it was scored."""

    #: the output columns ``add`` reads
    COLUMNS: ClassVar[tuple[str, ...]] = ("id", "path", "age", "sex", "site")

    stored: array = field(default_factory=lambda: array("q"))
    passed: array = field(default_factory=lambda: array("q"))

    def add(self, df: pd.DataFrame) -> None:
        """Take the output rows of ``df`` (a frame with ``COLUMNS``)."""
        self.stored.extend(_fingerprint(row_key(i, p), _stored_meta(a, x, s))
                           for i, p, a, x, s in zip(df["id"], df["path"], df["age"],
                                                    df["sex"], df["site"], strict=True))

    def see(self, row: Mapping[str, Any]) -> None:
        """Take an input row passed over as done."""
        key = row_key(row.get("id"), row.get("path"))
        meta = _input_meta(row)
        if None in meta and PurePath(key[1]).suffix.lower() in DICOM_EXTS:
            return
        self.passed.append(_fingerprint(key, meta))

    def changed(self) -> int:
        """How many rows passed over hold metadata that the output holds for no row of their
        key (0 when none was passed)."""
        if not len(self.passed):
            return 0
        stored = np.array(self.stored, dtype=np.int64)
        seen = np.array(self.passed, dtype=np.int64)
        return int((~np.isin(seen, stored)).sum())


def listed_keys(rows: Iterable[Mapping[str, Any]]) -> Counter[Key]:
    """How many times the input lists each key (``row_key``)."""
    return Counter(row_key(row.get("id"), row.get("path")) for row in rows)


def listed_rows(ids: Sequence[Any], paths: Sequence[Any],
                listed: Mapping[Key, int]) -> np.ndarray:
    """Which output rows (their ``id`` and ``path`` cells, in output order) an input lists: a
    key's first n rows when the input lists it n times (``listed_keys``), as ``pending`` counts
    them done. The others belong to other inputs scored into the same folder."""
    left = dict(listed)
    keep = np.zeros(len(ids), dtype=bool)
    for i, k in enumerate(map(row_key, ids, paths)):
        n = left.get(k, 0)
        if n > 0:
            left[k] = n - 1
            keep[i] = True
    return keep


def retry_keys(rows: Iterable[Mapping[str, Any]], ok: Mapping[Key, int],
               errors: Mapping[Key, int], limit: int | None = None) -> set[Key]:
    """The keys of error rows that the input still lists (up to the ``limit``-th pending row):
    a key ``(id, path)`` listed again, or ``(id, "")`` (no path) when any row has that id."""
    if not errors or limit == 0:
        return set()
    pathless = {rid for rid, p in errors if p == ""}
    retry: set[Key] = set()
    seen: Counter[Key] = Counter()
    n_pending = 0
    for row in rows:
        k = row_key(row.get("id"), row.get("path"))
        if errors.get(k, 0):
            retry.add(k)
        if k[0] in pathless:
            retry.add((k[0], ""))
        seen[k] += 1
        if k in retry or seen[k] > ok.get(k, 0):
            n_pending += 1
            if limit is not None and n_pending >= limit:
                break
    return retry


def prepare_resume(store: PartStore, rows: Callable[[], Iterator[Mapping[str, Any]]],
                   limit: int | None = None) -> Resume:
    """Remove the error rows the input retries, and every other row of their keys; returns
    the keys left in the output. ``rows()`` lists the input (without pixels); it is only
    called when the output holds error rows. The keys are the ones ``store`` gathered when it
    opened the output (``PartStore.contents``, kept up to date by its ``drop``): the output is
    not read again; they are handed over to the ``Resume`` (the store stops counting them)."""
    contents = store.contents
    retried = 0
    if contents.errors:
        listing = rows()
        try:
            retry = retry_keys(listing, contents.ok, contents.errors, limit)
        finally:
            close = getattr(listing, "close", None)
            if close is not None:
                close()
        if retry:
            # rows that are not errors first: a run killed in between still has the error rows,
            # so the next run retries the same keys
            store.drop(retry, errors=False)
            retried = store.drop(retry, errors=True)
    ok, errors = contents.take_keys()
    ok.update(errors)  # in place: no second table of every key
    return Resume(done=ok, retried=retried)
