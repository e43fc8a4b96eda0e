"""Where a visit upload's blocking work runs: no database session on the event loop, and the
storage step (image files with fsync + the row) outside the inference workers' slots."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clinic_support import ClinicHarness, image_bytes, image_ids


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_visit_upload_keeps_db_and_disk_off_the_loop_and_out_of_inference(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,
        monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    lesion = h.lesion(h.patient("P-1"))
    workers = h.client.app.state.workers
    sessions: list[bool] = []  # per session opened: on the event loop?
    puts: list[tuple[bool, int]] = []  # per image write: on the loop?, inference slots held
    open_session = h.clinic.db.session
    put = h.clinic.images.put

    @contextlib.contextmanager
    def watched_session() -> Iterator[Any]:
        sessions.append(_on_event_loop())
        with open_session() as s:
            yield s

    def watched_put(data: bytes, ext: str) -> str:
        puts.append((_on_event_loop(), workers.normal.borrowed_tokens))
        return str(put(data, ext))

    monkeypatch.setattr(h.clinic.db, "session", watched_session)
    monkeypatch.setattr(h.clinic.images, "put", watched_put)
    r = h.visit(lesion, image_bytes(data_dir, image_ids(metadata, "NV", 1)[0]))
    assert r.status_code == 201, r.text
    assert r.json()["lesion_id"] == lesion
    # authentication, the lesion check, the row and the response each open one
    assert len(sessions) >= 4
    assert not any(sessions)
    # image + heatmap, then both again once the row is committed (clinic.visits.store_visit)
    assert [on_loop for on_loop, _ in puts] == [False] * 4
    assert [held for _, held in puts] == [0] * 4
    # a lesion that does not exist: still a clear 404 from the worker thread, nothing stored
    sessions.clear()
    puts.clear()
    r = h.visit(lesion + 1000, image_bytes(data_dir, image_ids(metadata, "NV", 1)[0]))
    assert r.status_code == 404
    assert "lesion" in r.json()["detail"]
    assert not any(sessions)
    assert puts == []
