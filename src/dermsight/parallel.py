"""Small concurrency helpers shared by readers, data summary, batch scoring, the gate and the web
app."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers(most: int | None = None) -> int:
    """Worker threads: one per core this process may run on (its CPU affinity, else the CPU
    count), at least 1 and at most ``most`` when given."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, n if most is None else min(most, n))


def _scan_blas() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finds the thread-pool libraries loaded now


_cached_blas = cache(_scan_blas)


def limit_blas(threads: int, *, cached: bool = False) -> AbstractContextManager[Any]:
    """Limit numpy's BLAS to ``threads`` threads, process-wide, from this call on
    (``threadpoolctl``). Used as a context manager, the previous setting is restored at exit;
    called alone, the limit stays. The loaded libraries are looked up on each call (a library
    loaded later is covered too); ``cached=True`` reuses the first lookup, for a limit set on
    every call of a hot path. Not thread-safe against another caller's restore: a caller that
    needs that holds its own lock (``gate.one_blas_thread``)."""
    controller = _cached_blas() if cached else _scan_blas()
    return controller.limit(limits=threads, user_api="blas")


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    window: int,
    executor: Executor | None = None,
    workers: int = 1,
    name: str = "dermsight",
) -> Iterator[R]:
    """``map(fn, items)`` on threads, in input order, with at most ``window`` tasks in flight
    (the input is consumed lazily, so memory stays flat on any size). Uses ``executor`` if given,
    else a pool of ``workers`` threads; with neither (workers <= 1) it runs inline."""
    if executor is None and workers <= 1:
        yield from map(fn, items)
        return
    pool = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        if executor is None:
            pool.shutdown(wait=True, cancel_futures=True)
