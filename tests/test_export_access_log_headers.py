"""A patient's export lists the audit events about the patient, and the security headers
``Permissions-Policy`` and (over HTTPS only) ``Strict-Transport-Security``.

1. ``GET /patients/{id}/export`` had ``patient.json`` and ``images/`` only: who viewed, changed
   or exported the patient's records (asked for in a subject access request) was not in it. It
   now has ``access_log.json``: every audit event carrying the patient's id (all pages of
   ``audit.query``), oldest first, with time, user name, action and object; no other patient's
   events; ``README.txt`` lists it and says the export's own event is not in it.
2. No response carried ``Permissions-Policy`` or ``Strict-Transport-Security``. Every response
   now carries a ``Permissions-Policy`` denying the browser features the UI does not use (the
   camera only for its own pages: the "Take photo" input), and HSTS when the request arrived
   over HTTPS (the scheme, or ``X-Forwarded-Proto: https`` as for the session cookie's
   ``Secure`` flag), never over plain http.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinic_support import API, ClinicHarness, harness, served_clinic  # noqa: F401

ACCESS_LOG = "access_log.json"


def _export(h: ClinicHarness, pid: int) -> zipfile.ZipFile:
    r = h.get(f"/patients/{pid}/export")
    assert r.status_code == 200, r.text
    return zipfile.ZipFile(io.BytesIO(r.content))


def _events(zf: zipfile.ZipFile) -> list[dict[str, Any]]:
    doc = json.loads(zf.read(ACCESS_LOG))
    events: list[dict[str, Any]] = doc["events"]
    return events


def test_the_patient_export_lists_the_patients_audit_events_only(
        harness: ClinicHarness, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from dermsight.clinic import audit

    h = harness
    h.add_user("ana")
    h.login("ana")
    mine, other = h.patient("LOG-MINE"), h.patient("LOG-OTHER")
    lm, lo = h.lesion(mine), h.lesion(other)
    for pid in (mine, other, mine, other):  # a view is logged at each request
        assert h.get(f"/patients/{pid}").status_code == 200
    assert h.get(f"/lesions/{lo}").status_code == 200
    monkeypatch.setattr(audit, "PAGE_MAX", 2)  # several pages of events: all of them listed

    with h.clinic.db.session() as s:
        logged = audit.query(s, 1000, where=audit.Filter(patient_id=mine))
    zf = _export(h, mine)
    assert ACCESS_LOG in zf.namelist()
    events = _events(zf)
    assert json.loads(zf.read(ACCESS_LOG))["patient_id"] == mine
    assert len(events) == len(logged) >= 4  # create patient, create lesion, two views
    assert [e["at"] for e in events] == [e["at"] for e in reversed(logged)]  # oldest first
    views = [e for e in events if e["action"] == "view"]
    assert [(e["object_type"], e["object_id"], e["user"]) for e in views] == \
        [("patient", mine, "ana")] * 2
    assert ("create", "lesion", lm) in {(e["action"], e["object_type"], e["object_id"])
                                        for e in events}
    for e in events:
        assert set(e) == {"at", "user", "action", "object_type", "object_id"}
        assert e["at"]
        assert (e["object_type"], e["object_id"]) not in {("patient", other), ("lesion", lo)}
    assert b"LOG-OTHER" not in b"".join(zf.read(n) for n in zf.namelist())

    readme = zf.read("README.txt").decode()
    assert ACCESS_LOG in readme
    assert f"{len(events)} events" in readme
    assert "this export itself" in readme

    # the export is audited after the zip is made: the next export lists it
    again = _events(_export(h, mine))
    assert again[:len(events)] == events
    [exported] = again[len(events):]
    assert (exported["action"], exported["object_type"], exported["object_id"],
            exported["user"]) == ("export", "patient", mine, "ana")
    # the other patient's export has the other patient's events only
    theirs = _events(_export(h, other))
    assert ("view", "lesion", lo) in {(e["action"], e["object_type"], e["object_id"])
                                      for e in theirs}
    assert all((e["object_type"], e["object_id"]) not in {("patient", mine), ("lesion", lm)}
               for e in theirs)


def _headers_ok(r: Any, path: str) -> None:
    policy = r.headers.get("permissions-policy")
    assert policy is not None, path
    features = {f.strip() for f in policy.split(",")}
    # the UI's "Take photo" input (capture="environment") may use the camera; nothing else
    assert "camera=(self)" in features, policy
    for denied in ("microphone=()", "geolocation=()", "payment=()", "usb=()"):
        assert denied in features, (path, policy)
    # the headers there were keep coming
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"]


HSTS = "max-age=31536000"


def test_permissions_policy_on_pages_api_answers_and_errors(tmp_path: Path) -> None:
    with served_clinic(tmp_path) as h:
        page = h.client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        api = h.client.get(f"{API}/auth/me")
        assert api.status_code == 200
        missing = h.client.get(f"{API}/patients/999999")
        assert missing.status_code == 404
        for path, r in (("/", page), ("/auth/me", api), ("404", missing)):
            _headers_ok(r, path)
        with TestClient(h.client.app, base_url="https://clinic.test") as tls:
            _headers_ok(tls.get("/"), "/ over https")


def test_hsts_only_when_the_request_arrived_over_https(tmp_path: Path) -> None:
    with served_clinic(tmp_path) as h:
        for path in ("/", f"{API}/auth/me", f"{API}/patients/999999"):
            assert "strict-transport-security" not in h.client.get(path).headers, path
        # a proxy that says plain http: none either
        r = h.client.get(f"{API}/health", headers={"X-Forwarded-Proto": "http"})
        assert "strict-transport-security" not in r.headers

        app = h.client.app
        with TestClient(app, base_url="https://clinic.test") as tls:
            for path in ("/", f"{API}/health", f"{API}/patients/999999"):
                r = tls.get(path)
                assert r.headers.get_list("strict-transport-security") == [HSTS], path
        with TestClient(app) as proxied:  # TLS ended by a proxy that says so (as for the
            # session cookie's Secure flag)
            r = proxied.get(f"{API}/health", headers={"X-Forwarded-Proto": "https"})
            assert r.headers.get_list("strict-transport-security") == [HSTS]
