"""Correcting what was filed wrongly, on SQLite and PostgreSQL:

* a visit can be deleted (its files go unless another visit uses them) and its date changed
  (the lesion's timeline follows the new order); a PATCH that names nothing is a 422 instead of
  silently removing the note;
* a diagnosis can be removed, and an overwrite made on an outdated page (``replaces`` is not what
  is recorded now) is a 409 naming what is recorded, never a silent overwrite;
* two concurrent first diagnoses of one lesion: one diagnosis, never a 500;
* ``taken_at`` is exactly YYYY-MM-DD (around spaces allowed), at upload and in a PATCH.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session as DbSession

from clinic_support import API, ClinicHarness
from dermsight.clinic import cases
from dermsight.clinic.models import Diagnosis, Lesion, User
from race_support import race_two_sessions

LOW = "ISIC_0013053"  # tier low (malignant probability ~0.01)
HIGH = "ISIC_0030403"  # tier high (~0.98)
REFRESH = "reload the lesion and check it before saving"


@pytest.fixture
def h(harness: ClinicHarness) -> ClinicHarness:
    harness.add_user("root", role="admin")
    harness.add_user("ana")
    harness.login("ana")
    return harness


def _jpeg(data_dir: Path, image_id: str) -> bytes:
    return (data_dir / "images" / f"{image_id}.jpg").read_bytes()


def _visit(h: ClinicHarness, lesion_id: int, image: bytes, taken_at: str,
           **fields: str) -> dict[str, Any]:
    r = h.visit(lesion_id, image, taken_at=taken_at, **fields)
    assert r.status_code == 201, r.text
    visit: dict[str, Any] = r.json()
    return visit


def _files(h: ClinicHarness) -> set[str]:
    """The files in the image store."""
    return set(h.clinic.images.keys())


def _audit(h: ClinicHarness, action: str, object_type: str) -> list[int]:
    h.login("root")
    events = h.get("/admin/audit", params={"limit": 500}).json()
    h.login("ana")
    return [e["object_id"] for e in events
            if (e["action"], e["object_type"]) == (action, object_type)]


def _put(h: ClinicHarness, lesion_id: int, **body: Any) -> Any:
    return h.client.put(f"{API}/lesions/{lesion_id}/diagnosis", json=body)


# --- deleting a visit ----------------------------------------------------------------------------


def test_a_wrongly_filed_visit_is_deleted_with_the_files_no_other_visit_uses(
        h: ClinicHarness, data_dir: Path) -> None:
    pid = h.patient("DEL-1")
    lid, other = h.lesion(pid), h.lesion(pid, side="right")
    low, high = _jpeg(data_dir, LOW), _jpeg(data_dir, HIGH)
    keep = _visit(h, lid, low, "2025-01-01")
    wrong = _visit(h, lid, high, "2025-02-01")  # the other lesion's photo, filed here
    shared = _visit(h, other, low, "2025-02-01")  # the same image elsewhere: same files
    before = _files(h)
    assert len(before) == 4  # the low and the high image, each with its heatmap

    r = h.client.delete(f"{API}/visits/{wrong['id']}")
    assert r.status_code == 204, r.text
    after = _files(h)
    assert len(after) == 2  # the high image and its heatmap are gone
    assert after < before
    assert h.get(f"/visits/{wrong['id']}/image").status_code == 404
    detail = h.get(f"/lesions/{lid}").json()
    assert [v["id"] for v in detail["visits"]] == [keep["id"]]
    assert detail["changes"] == []
    assert (detail["lesion"]["n_visits"], detail["lesion"]["latest_risk"]) == (1, "low")

    # a file another visit references stays; the lesion stays without visits
    assert h.client.delete(f"{API}/visits/{keep['id']}").status_code == 204
    assert _files(h) == after
    assert h.get(f"/visits/{shared['id']}/image").status_code == 200
    assert h.get(f"/visits/{shared['id']}/heatmap").status_code == 200
    assert h.get(f"/lesions/{lid}").json()["lesion"]["n_visits"] == 0
    assert h.client.delete(f"{API}/visits/{shared['id']}").status_code == 204
    assert _files(h) == set()

    r = h.client.delete(f"{API}/visits/{wrong['id']}")
    assert r.status_code == 404
    assert "no visit with id" in r.json()["detail"]
    assert _audit(h, "delete", "visit") == [shared["id"], keep["id"], wrong["id"]]


def test_an_upload_racing_the_deletion_of_a_visit_of_the_same_image_keeps_its_file(
        h: ClinicHarness, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are named by content: the wrong visit's file is the new visit's too. When the
    wrong visit is deleted between the new visit's file write and its row (the deletion then
    removes the file no row uses yet), the new visit still has its image."""
    image = _jpeg(data_dir, LOW)
    wrong = _visit(h, h.lesion(h.patient("RACE-W")), image, "2025-01-01")
    store = h.clinic.images
    put = store.put
    raced: list[int] = []

    def put_then_race(data: bytes, ext: str) -> str:
        key = put(data, ext)
        if not raced:  # the deletion commits and removes the file before this row commits
            raced.append(wrong["id"])
            assert h.client.delete(f"{API}/visits/{wrong['id']}").status_code == 204
            assert not store.exists(key)
        return key

    monkeypatch.setattr(store, "put", put_then_race)
    right = _visit(h, h.lesion(h.patient("RACE-R")), image, "2025-01-02")
    assert raced == [wrong["id"]]
    r = h.client.get(f"{API}/visits/{right['id']}/image")
    assert r.status_code == 200, r.text


def test_deleting_a_visit_needs_the_csrf_header(h: ClinicHarness, data_dir: Path) -> None:
    vid = _visit(h, h.lesion(h.patient("DEL-2")), _jpeg(data_dir, LOW), "2025-01-01")["id"]
    r = h.client.delete(f"{API}/visits/{vid}", headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert h.get(f"/visits/{vid}/image").status_code == 200


# --- changing a visit: note and date -------------------------------------------------------------


def test_a_visit_date_changed_reorders_the_timeline(h: ClinicHarness, data_dir: Path) -> None:
    pid = h.patient("DATE-1")
    lid = h.lesion(pid)
    low = _visit(h, lid, _jpeg(data_dir, LOW), "2025-01-01", note="first")
    high = _visit(h, lid, _jpeg(data_dir, HIGH), "2025-06-01")
    lesion = h.get(f"/lesions/{lid}").json()["lesion"]
    assert (lesion["latest_risk"], lesion["risk_rose"]) == ("high", True)

    # the high photo was in fact taken before the low one
    r = h.client.patch(f"{API}/visits/{high['id']}", json={"taken_at": " 2024-06-01 "})
    assert r.status_code == 200, r.text
    assert r.json()["taken_at"] == "2024-06-01"
    detail = h.get(f"/lesions/{lid}").json()
    assert [v["id"] for v in detail["visits"]] == [high["id"], low["id"]]
    [change] = detail["changes"]
    assert (change["from_visit"], change["to_visit"], change["days"]) == \
        (high["id"], low["id"], 214)
    assert (change["tier_from"], change["tier_to"], change["risk_rose"]) == \
        ("high", "low", False)
    assert change["malignant_delta"] < 0
    lesion = detail["lesion"]
    assert (lesion["latest_risk"], lesion["risk_rose"]) == ("low", False)
    assert lesion["latest_risk_taken_at"] == "2025-01-01"
    [row] = h.get("/patients", params={"q": "DATE-1"}).json()
    assert (row["latest_risk"], row["risk_rose"], row["last_visit_at"]) == \
        ("low", False, "2025-01-01")
    # the note was not part of the change: it stays
    assert detail["visits"][1]["note"] == "first"
    assert _audit(h, "update", "visit") == [high["id"]]


def test_a_patch_must_name_what_it_changes(h: ClinicHarness, data_dir: Path) -> None:
    vid = _visit(h, h.lesion(h.patient("NOTE-1")), _jpeg(data_dir, LOW), "2025-01-01",
                 note="keep me")["id"]
    r = h.client.patch(f"{API}/visits/{vid}", json={})
    assert r.status_code == 422
    assert r.json()["detail"] == ("give note or taken_at (or both): the request changes "
                                  "nothing")
    r = h.client.patch(f"{API}/visits/{vid}", json={"taken_at": None})
    assert r.status_code == 422
    assert "taken_at cannot be removed" in r.json()["detail"]
    [stored] = h.get(f"/lesions/{_lesion_of(h, vid)}").json()["visits"]
    assert (stored["note"], stored["taken_at"]) == ("keep me", "2025-01-01")
    # only the note: the date stays; an explicit null removes the note
    r = h.client.patch(f"{API}/visits/{vid}", json={"note": "excised", "taken_at": "2025-01-02"})
    assert (r.json()["note"], r.json()["taken_at"]) == ("excised", "2025-01-02")
    r = h.client.patch(f"{API}/visits/{vid}", json={"note": None})
    assert r.status_code == 200
    assert (r.json()["note"], r.json()["taken_at"]) == (None, "2025-01-02")
    assert h.client.patch(f"{API}/visits/999999", json={"note": "x"}).status_code == 404


def _lesion_of(h: ClinicHarness, visit_id: int) -> int:
    from dermsight.clinic.models import Visit

    with h.clinic.db.session() as s:
        v = s.get(Visit, visit_id)
        assert v is not None
        return v.lesion_id


BAD_DATES = ["2025-01-01garbage", "20250101", "2025-W01-1", "2025-1-01", "2025-02-30",
             "2025-01-01T10:00", "\uff12\uff10\uff12\uff15-01-01"]  # fullwidth digits


def test_taken_at_is_exactly_yyyy_mm_dd(h: ClinicHarness, data_dir: Path) -> None:
    lid = h.lesion(h.patient("STRICT-1"))
    image = _jpeg(data_dir, LOW)
    for raw in BAD_DATES:
        r = h.visit(lid, image, taken_at=raw)
        assert r.status_code == 422, (raw, r.text)
        assert r.json()["detail"] == (f"the date the image was taken (taken_at) {raw!r} is not "
                                      "a date written YYYY-MM-DD: write it like 2026-03-14")
    assert h.get(f"/lesions/{lid}").json()["visits"] == []  # nothing stored
    visit = _visit(h, lid, image, "  2025-03-04 ")
    assert visit["taken_at"] == "2025-03-04"
    for raw in BAD_DATES:
        r = h.client.patch(f"{API}/visits/{visit['id']}", json={"taken_at": raw})
        assert r.status_code == 422, (raw, r.text)
        assert "is not a date written YYYY-MM-DD" in r.json()["detail"]
    # the upload's other date rules hold in a PATCH too
    for raw, why in (("2999-01-01", "lies in the future"), ("1989-12-31", "before 1990-01-01")):
        r = h.client.patch(f"{API}/visits/{visit['id']}", json={"taken_at": raw})
        assert r.status_code == 422
        assert why in r.json()["detail"]
    assert h.get(f"/lesions/{lid}").json()["visits"][0]["taken_at"] == "2025-03-04"


# --- diagnoses: removal and conflicts ------------------------------------------------------------


def test_an_overwrite_on_an_outdated_page_is_a_409(h: ClinicHarness, data_dir: Path) -> None:
    lid = h.lesion(h.patient("DX-1"))
    _visit(h, lid, _jpeg(data_dir, HIGH), "2025-01-01")
    r = _put(h, lid, code="NV", method="clinical", replaces=None)
    assert r.status_code == 200, r.text
    # a second page that also saw no diagnosis
    r = _put(h, lid, code="MEL", method="histopathology", replaces=None)
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert detail.startswith(f"the diagnosis of lesion {lid} changed since you loaded it: it is "
                             "now NV (clinical), recorded ")
    assert detail.endswith(f" by ana; {REFRESH}")
    assert "\n" not in detail
    # the page that saw NV (clinical) may overwrite it; one that saw something else may not
    r = _put(h, lid, code="MEL", method="histopathology", note="pT1a",
             replaces={"code": "NV", "method": "clinical"})
    assert r.status_code == 200, r.text
    r = _put(h, lid, code="BKL", method="clinical", replaces={"code": "MEL", "method": "clinical"})
    assert r.status_code == 409
    assert "it is now MEL (histopathology)" in r.json()["detail"]
    stored = h.get(f"/lesions/{lid}").json()["diagnosis"]
    assert (stored["code"], stored["method"], stored["note"]) == ("MEL", "histopathology", "pT1a")
    # replaces is a diagnosis or null, nothing else
    for bad in ({"code": "MEL"}, {"code": "XYZ", "method": "clinical"}, "MEL"):
        assert _put(h, lid, code="NV", method="clinical", replaces=bad).status_code == 422
    # without replaces: overwritten unchecked, as API clients did before
    r = _put(h, lid, code="BKL", method="clinical")
    assert (r.status_code, r.json()["code"]) == (200, "BKL")
    spec = h.client.get("/openapi.json").json()
    assert "replaces" in spec["paths"][f"{API}/lesions/{{lesion_id}}/diagnosis"]["put"][
        "description"]


def test_a_diagnosis_is_removed(h: ClinicHarness, data_dir: Path) -> None:
    lid = h.lesion(h.patient("DX-2"))
    assert h.client.delete(f"{API}/lesions/{lid}/diagnosis").status_code == 404
    assert _put(h, lid, code="SCC", method="histopathology").status_code == 200
    r = h.client.delete(f"{API}/lesions/{lid}/diagnosis")
    assert r.status_code == 204, r.text
    assert h.get(f"/lesions/{lid}").json()["diagnosis"] is None
    r = h.client.delete(f"{API}/lesions/{lid}/diagnosis")
    assert r.status_code == 404
    assert r.json()["detail"] == (f"lesion {lid} has no diagnosis recorded: it may have been "
                                  "removed already")
    assert h.client.delete(f"{API}/lesions/999999/diagnosis").status_code == 404
    # a page that still shows the removed diagnosis cannot bring it back unchecked
    r = _put(h, lid, code="BCC", method="clinical",
             replaces={"code": "SCC", "method": "histopathology"})
    assert r.status_code == 409
    assert r.json()["detail"] == (f"the diagnosis of lesion {lid} changed since you loaded it: "
                                  f"it has no diagnosis now (it was removed); {REFRESH}")
    assert _put(h, lid, code="BCC", method="clinical", replaces=None).status_code == 200
    assert _audit(h, "delete", "diagnosis") == [lid]


# --- two first diagnoses at once -----------------------------------------------------------------


@pytest.fixture
def rival_first(h: ClinicHarness) -> Iterator[list[int]]:
    """Just before a request's first diagnosis is written, another request records one for the
    same lesion and commits (its check found none as well): the request then loses the race on
    the unique ``diagnoses.lesion_id``. Yields the list the lesion id goes into."""
    lesion: list[int] = []
    fired: list[bool] = []

    def rival(session: DbSession, *_: Any) -> None:
        if fired or not any(isinstance(o, Diagnosis) for o in session.new):
            return
        fired.append(True)
        with h.clinic.db.session() as other:
            other.add(Diagnosis(lesion_id=lesion[0], code="MEL", method="histopathology"))

    event.listen(DbSession, "before_flush", rival)
    try:
        yield lesion
    finally:
        event.remove(DbSession, "before_flush", rival)
    assert fired


def test_a_note_changed_meanwhile_is_not_overwritten_unseen(h: ClinicHarness) -> None:
    """``replaces`` with the note the page showed: a note corrected meanwhile ("margins
    involved") is a change too, so a page that showed the first note gets the 409."""
    lid = h.lesion(h.patient("DX-4"))
    shown = {"code": "MEL", "method": "histopathology", "note": "margins clear"}
    assert _put(h, lid, code="MEL", method="histopathology", note="margins clear",
                replaces=None).status_code == 200
    r = _put(h, lid, code="MEL", method="histopathology", note="margins involved: re-excise",
             replaces=shown)
    assert r.status_code == 200, r.text
    r = _put(h, lid, code="MEL", method="histopathology", note="ok", replaces=shown)  # stale
    assert r.status_code == 409, r.text
    assert h.get(f"/lesions/{lid}").json()["diagnosis"]["note"] == "margins involved: re-excise"
    # without the note in replaces, code and method alone are compared (older clients)
    r = _put(h, lid, code="MEL", method="histopathology", note="ok",
             replaces={"code": "MEL", "method": "histopathology"})
    assert r.status_code == 200, r.text


def test_a_removal_on_an_outdated_page_is_a_409(h: ClinicHarness) -> None:
    """A removal sent with what the page showed (code, method) removes nothing when the
    recorded diagnosis changed meanwhile: a histopathology melanoma recorded by someone else is
    never deleted by a page that showed a clinical nevus."""
    lid = h.lesion(h.patient("DX-3"))
    assert _put(h, lid, code="NV", method="clinical").status_code == 200
    assert _put(h, lid, code="MEL", method="histopathology").status_code == 200  # meanwhile
    url = f"{API}/lesions/{lid}/diagnosis"
    r = h.client.delete(url, params={"code": "NV", "method": "clinical"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"].startswith(
        f"the diagnosis of lesion {lid} changed since you loaded it: it is now MEL "
        "(histopathology), recorded ")
    assert h.get(f"/lesions/{lid}").json()["diagnosis"]["code"] == "MEL"
    r = h.client.delete(url, params={"code": "MEL"})  # half of what the page showed
    assert r.status_code == 422, r.text
    r = h.client.delete(url, params={"code": "MEL", "method": "histopathology"})
    assert r.status_code == 204, r.text
    assert h.get(f"/lesions/{lid}").json()["diagnosis"] is None
    r = h.client.delete(url, params={"code": "MEL", "method": "histopathology"})
    assert r.status_code == 404


def test_a_lost_first_diagnosis_race_with_replaces_is_a_409(
        h: ClinicHarness, rival_first: list[int]) -> None:
    lid = h.lesion(h.patient("RACE-1"))
    rival_first.append(lid)
    r = _put(h, lid, code="NV", method="clinical", replaces=None)
    assert r.status_code == 409, r.text
    assert "it is now MEL (histopathology)" in r.json()["detail"]
    assert h.get(f"/lesions/{lid}").json()["diagnosis"]["code"] == "MEL"


def test_a_lost_first_diagnosis_race_without_replaces_updates(
        h: ClinicHarness, rival_first: list[int]) -> None:
    lid = h.lesion(h.patient("RACE-3"))
    rival_first.append(lid)
    r = _put(h, lid, code="NV", method="clinical", note="dermoscopy")
    assert r.status_code == 200, r.text
    assert (r.json()["code"], r.json()["note"]) == ("NV", "dermoscopy")
    with h.clinic.db.session() as s:
        assert list(s.scalars(select(Diagnosis.code).where(Diagnosis.lesion_id == lid))) == ["NV"]


@pytest.mark.parametrize("saw_none", [False, True], ids=["unchecked", "replaces-null"])
def test_two_concurrent_first_diagnoses_make_one(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch, saw_none: bool) -> None:
    """Two real transactions: B checks while A's insert is not yet committed (it finds no
    diagnosis), then B's insert waits on A (PostgreSQL: the unique index; SQLite: the write
    lock) and, once A commits, is refused: B updates A's diagnosis, or with ``replaces`` (it saw
    none) is a 409 naming A's."""
    lid = h.lesion(h.patient("RACE-4"))
    replaces = cases.Seen(None) if saw_none else None

    def request_a(a: DbSession) -> None:
        lesion = a.get(Lesion, lid)
        assert lesion is not None
        cases.set_diagnosis(a, lesion, "MEL", "histopathology", None, _user(a))  # not committed

    def request_b(s: DbSession) -> str:
        lesion = s.get(Lesion, lid)
        assert lesion is not None
        return cases.set_diagnosis(s, lesion, "NV", "clinical", None, _user(s),
                                   replaces=replaces).code

    outcome = race_two_sessions(h.clinic.db, request_a, request_b, monkeypatch=monkeypatch,
                                at=(cases, "_add_first"))
    with h.clinic.db.session() as s:
        stored = list(s.scalars(select(Diagnosis.code).where(Diagnosis.lesion_id == lid)))
    if replaces is None:
        assert outcome == "NV"
        assert stored == ["NV"]
    else:
        assert isinstance(outcome, cases.Conflict), outcome
        assert "it is now MEL (histopathology)" in str(outcome)
        assert stored == ["MEL"]


def _user(s: DbSession) -> User:
    user = s.scalar(select(User).where(User.username == "ana"))
    assert user is not None
    return user
