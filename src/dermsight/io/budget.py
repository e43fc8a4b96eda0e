"""A process-wide bound on the memory that image decodes may use at the same time.

Every decode first estimates, from the header, how many bytes it will need (see
``decode.py``) and then holds that many bytes of a shared :class:`DecodeBudget` while it runs.
Small images (a 256 px JPEG needs ~1 MB) pass straight through; only when several large images
would be decoded at once do the later ones wait until memory is free again, so N concurrent
uploads at the largest allowed size can never add up beyond the budget.

The budget is ``DERMSIGHT_DECODE_MEMORY_MB`` (default 256 MiB: two decodes at the largest
allowed size). The web app and batch scoring share the one budget of their process;
:func:`set_decode_memory` changes it (e.g. from a server setting).

An invalid ``DERMSIGHT_*`` number read here or by ``decode.py`` at import (``env_number``) does
not warn then: ``dermsight serve`` refuses it with one line and exit code 2 (``Settings``), and
any other use gets one warning per variable at its first decode (``decode_budget``), with the
default in force.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

MIB = 1024 * 1024


#: the variables ``env_number`` found invalid (name -> one-line message), until warned about
ENV_ERRORS: dict[str, str] = {}


def env_number(name: str, default: float) -> float:
    """A positive, finite number from the environment; a bad value gives ``default`` and is
    recorded in ``ENV_ERRORS`` (a library import must not fail with a traceback over it, nor
    print a warning before ``dermsight serve`` can refuse it with one line)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        ENV_ERRORS[name] = (f"{name}={raw[:40]!r} is not a positive number: "
                            f"using {default:g}")
        return default
    return value


def warn_env_errors() -> None:
    """One warning per invalid variable recorded by ``env_number`` (once)."""
    while ENV_ERRORS:
        _, message = ENV_ERRORS.popitem()
        warnings.warn(message, stacklevel=3)


DEFAULT_DECODE_MEMORY = int(env_number("DERMSIGHT_DECODE_MEMORY_MB", 256) * MIB)


class DecodeBudget:
    """A counting semaphore in bytes. A request larger than the whole budget is clamped to it
    (it then runs alone), so a single decode never waits forever."""

    def __init__(self, total_bytes: int) -> None:
        if total_bytes <= 0:
            raise ValueError("the decode memory budget must be positive")
        self.total = int(total_bytes)
        self.used = 0
        self.waiting = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        n = max(0, min(int(nbytes), self.total))
        with self._cond:
            if self.used + n > self.total:
                self.waiting += 1
                try:
                    self._cond.wait_for(lambda: self.used + n <= self.total)
                finally:
                    self.waiting -= 1
            self.used += n
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


_BUDGET = DecodeBudget(DEFAULT_DECODE_MEMORY)


def decode_budget() -> DecodeBudget:
    """The budget every decode of this process draws from (the first call also warns about
    invalid limits in the environment: ``warn_env_errors``)."""
    if ENV_ERRORS:
        warn_env_errors()
    return _BUDGET


def set_decode_memory(total_bytes: int) -> None:
    """Resize the shared budget (decodes already running keep their reservation)."""
    global _BUDGET
    _BUDGET = DecodeBudget(total_bytes)
