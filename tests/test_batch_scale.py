"""Resume bookkeeping at scale: what is held per input row while a large input is read.

Counts and object lifetimes, not timings (those are in ``benchmarks/bench_batch_scale.py``).
"""

from __future__ import annotations

import gc
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

from dermsight.batch.overlays import plan_names
from dermsight.batch.resume import pending
from dermsight.batch.sources import row_key
from dermsight.batch.store import Key

N = 30_000


def _rows(n: int) -> Iterator[dict[str, Any]]:
    """``n`` rows; every 10th image is listed twice in a row (same id and path)."""
    for i in range(n):
        row = {"id": f"IMG_{i:07d}", "path": f"/data/d{i // 10_000}/IMG_{i:07d}.jpg",
               "error": None}
        yield row
        if i % 10 == 0:
            yield dict(row)


def _reference(rows: Iterator[Mapping[str, Any]], done: Mapping[Key, int],
               limit: int | None) -> list[Mapping[str, Any]]:
    """``pending`` as documented: the n-th listing of a key is done when the output holds at
    least n rows with that key."""
    seen: Counter[Key] = Counter()
    out = []
    for row in rows:
        k = row_key(row["id"], row["path"])
        seen[k] += 1
        if seen[k] > done.get(k, 0):
            out.append(row)
    return out[:limit] if limit is not None else out


def _done(n_done: int) -> Counter[Key]:
    """The keys of the first ``n_done`` listings of ``_rows``."""
    return Counter(row_key(r["id"], r["path"]) for r in islice(_rows(N), n_done))


def test_pending_consume_empties_done_as_the_input_is_read() -> None:
    listings = sum(1 for _ in _rows(N))
    done = _done(listings - 50)
    expected = _reference(_rows(N), done, None)
    assert len(expected) == 50
    work: Counter[Key] = Counter(done)
    got = list(pending(_rows(N), work, consume=True))
    assert got == expected
    # every done key was dropped once its listings were passed: nothing per row is left
    assert len(work) == 0


def test_pending_consume_with_limit_and_repeats_matches_reference() -> None:
    done = _done(N // 2 + 1)  # ends between the two listings of a repeated image
    for limit in (0, 1, 100, None):
        work = Counter(done)
        got = list(pending(_rows(N), work, limit, consume=True))
        assert got == _reference(_rows(N), done, limit)


def test_pending_without_consume_leaves_done_untouched() -> None:
    done = _done(N // 3)
    before = dict(done)
    got = list(pending(_rows(N), done, 500))
    assert got == _reference(_rows(N), before, 500)
    assert dict(done) == before


class _Names(set[str]):
    """A set that can be weakly referenced."""


def test_plan_names_does_not_keep_the_taken_names() -> None:
    taken = _Names(f"IMG_{i:07d}.png" for i in range(N))
    ref = weakref.ref(taken)
    planned = plan_names(_rows(N), taken)
    first = next(planned)
    assert first["heatmap"] == "IMG_0000000-2.png"  # the name in use is still avoided
    del taken
    gc.collect()
    # the names live on casefolded in the planner only, not twice for the whole run
    assert ref() is None
    rest = list(islice(planned, 3))
    assert [r["heatmap"] for r in rest] == ["IMG_0000000-3.png", "IMG_0000001-2.png",
                                            "IMG_0000002-2.png"]
