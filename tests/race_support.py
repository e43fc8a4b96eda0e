"""Two real transactions racing for one unique row, for the clinic storage tests (no tests here).

``race_two_sessions`` runs the winner A and the loser B on two sessions of one database: A
inserts and does not commit; B, in a thread, checks (and finds nothing, A's row not being
committed) and goes on to its insert, which waits on A (PostgreSQL: the unique index; SQLite:
the write lock); A then commits and B's insert is refused. What B made of the refusal (a value
or an exception) is what the test checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import pytest
from sqlalchemy.orm import Session as DbSession

if TYPE_CHECKING:
    from dermsight.clinic.db import Database

T = TypeVar("T")

#: how long B may take to reach its insert, and to finish once A committed (seconds)
REACH_S, FINISH_S = 30, 60
#: how long B is left at its insert before A commits: B must be waiting on A by then
WAIT_S = 0.3


def race_two_sessions(
    db: Database,
    winner: Callable[[DbSession], object],
    loser: Callable[[DbSession], T],
    *,
    monkeypatch: pytest.MonkeyPatch,
    at: tuple[object, str] | None = None,
    past: tuple[object, str] | None = None,
) -> T | BaseException:
    """Run ``winner`` (A) and then ``loser`` (B) on two sessions of ``db`` and return what
    ``loser`` returned or raised. B is at its insert when it calls the function ``at`` names
    (``(module, name)``: the function that inserts), or once it returned from the one ``past``
    names (the check before the insert); give exactly one. That function is patched with
    ``monkeypatch`` only after A's insert, which may call it too. Fails the test when B does
    not get there, is not waiting on A there, or does not finish."""
    target = at or past
    if target is None or (at is not None and past is not None):
        raise TypeError("give exactly one of at= and past=")
    owner, name = target
    real: Callable[..., object] = getattr(owner, name)
    reached = threading.Event()

    def marked(*args: object, **kwargs: object) -> object:
        if at is not None:
            reached.set()  # before the call: it blocks
        result = real(*args, **kwargs)
        reached.set()
        return result

    outcome: list[T | BaseException] = []

    def request_b() -> None:
        try:
            with db.session() as s:
                outcome.append(loser(s))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    with db.session() as a:
        winner(a)  # inserted, not committed
        monkeypatch.setattr(owner, name, marked)
        b = threading.Thread(target=request_b)
        b.start()
        assert reached.wait(REACH_S)
        time.sleep(WAIT_S)  # B is at its insert, waiting for A
        assert b.is_alive()
    b.join(FINISH_S)
    assert len(outcome) == 1
    return outcome[0]
