"""Progress bars for long passes over images, on stderr (never stdout, which may carry JSON).

``progress_bars(enabled)`` gives a maker ``make(total, desc)`` (or None: no bar) that the CLI
hands to the library calls that take one (``datasummary.summarize``,
``reference_build.build_reference``, ``train.gate_refit.refit_bundle``,
``train.distill.teacher_targets``); inside them ``counting`` opens and closes one bar per pass.
Off a terminal (a log) a bar redraws at most every 10 s and its final count stays; on one it is
cleared when done.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: ``make(total, desc)`` -> a tqdm-like bar (``update(n)``, ``close()``)
ProgressMaker = Callable[[int | None, str], Any]


def progress_bars(enabled: bool) -> ProgressMaker | None:
    """A maker of tqdm bars counting images on stderr; None when ``enabled`` is false."""
    if not enabled:
        return None
    from tqdm import tqdm

    def make(total: int | None, desc: str = "reading") -> Any:
        tty = sys.stderr.isatty()
        return tqdm(
            total=total, unit="img", desc=desc, file=sys.stderr,
            mininterval=0.5 if tty else 10.0, dynamic_ncols=True, leave=not tty,
        )

    return make


def _no_bar(n: int) -> None:
    """What ``counting`` yields without a maker: counting nothing."""


@contextmanager
def counting(progress: ProgressMaker | None, total: int | None, desc: str
             ) -> Iterator[Callable[[int], Any]]:
    """A bar from ``progress`` for ``total`` images, as its ``update`` (without a maker, a
    function that does nothing), closed on leaving."""
    if progress is None:
        yield _no_bar
        return
    bar = progress(total, desc)
    try:
        yield bar.update
    finally:
        bar.close()
