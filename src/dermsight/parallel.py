"""Small concurrency helpers shared by readers, data summary, batch scoring and the web app."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TypeVar

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
