"""dermsight.parallel: the worker count every pool starts from, and the ordered bounded map."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from dermsight import parallel
from dermsight.batch import local
from dermsight.web.settings import MAX_DEFAULT_WORKERS, Settings


@pytest.mark.parametrize(("cores", "most", "expected"),
                         [(1, None, 1), (12, None, 12), (12, 8, 8), (3, 8, 3), (0, 8, 1)])
def test_default_workers_follows_the_cores_the_process_may_use(
        monkeypatch: pytest.MonkeyPatch, cores: int, most: int | None, expected: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 99)  # affinity wins over the machine's count
    assert parallel.default_workers(most) == expected


def test_web_and_batch_defaults_come_from_the_one_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    assert local.default_workers is parallel.default_workers
    assert Settings().workers == MAX_DEFAULT_WORKERS == 8
    assert Settings.from_env({}).workers == 8
    assert Settings.from_env({"DERMSIGHT_WORKERS": "3"}).workers == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert Settings().workers == 2


def test_ordered_map_keeps_order_and_bounds_the_window() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def work(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.002 * (i % 3))
        with lock:
            running -= 1
        return i * i

    consumed: list[int] = []

    def items() -> Iterator[int]:
        for i in range(40):
            consumed.append(i)
            yield i

    out: list[int] = []
    for r in parallel.ordered_map(work, items(), window=3, workers=4):
        out.append(r)
        assert len(consumed) <= len(out) + 3  # lazy: never more than the window ahead
    assert out == [i * i for i in range(40)]
    assert most <= 3


def test_limit_blas_limits_then_restores_in_a_with_block_and_stays_when_called_alone() -> None:
    import numpy as np  # noqa: F401 - loads the BLAS library to be limited
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    assert blas.info(), "numpy should come with a BLAS library"
    with blas.limit(limits=2):
        for cached in (False, True):  # a fresh lookup of the libraries, or the first one again
            with parallel.limit_blas(1, cached=cached):
                assert [lib["num_threads"] for lib in blas.info()] == [1] * len(blas.info())
            assert all(lib["num_threads"] == 2 for lib in blas.info())
        parallel.limit_blas(1)  # the web app's process-wide setting
        assert all(lib["num_threads"] == 1 for lib in blas.info())
