"""The service's internals on the real app (``create_app``): one measurement per request shared
by the request log and the metrics, route labels for requests answered before routing (every
route, also those left out of the OpenAPI document), and 422 details as sentences naming the
field."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import DATA
from dermsight.clinic.accounts import create_user
from dermsight.clinic.config import ClinicConfig
from dermsight.web.app import create_app
from dermsight.web.middleware import LOG_LINE
from dermsight.web.settings import Settings

API = "/api/v1"
PASSWORD = "correct horse battery"
DURATION = "dermsight_http_request_duration_seconds_sum"
REQUESTS = "dermsight_http_requests_total"

def _image(name: str = "ISIC_0012464.jpg") -> bytes:
    """A real lesion image of the shared isic-subset (``conftest.DATA``; a missing one fails)."""
    return (DATA / "images" / name).read_bytes()


def _sample(app: FastAPI, name: str, **labels: str) -> float | None:
    value: float | None = app.state.metrics.registry.get_sample_value(name, labels)
    return value


def _log_lines(caplog: pytest.LogCaptureFixture, path: str) -> list[logging.LogRecord]:
    """The request log's lines (``METHOD PATH STATUS MS ms (request ID)``) for ``path``."""
    return [r for r in caplog.records if r.name == "dermsight.web" and r.msg == LOG_LINE
            and r.args and r.args[1] == path]


# --- 1. one measurement for the log line and the metrics -----------------------------------------


def test_the_log_line_and_the_metrics_report_one_duration(
        caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings())
    caplog.set_level(logging.INFO, logger="dermsight.web")
    with TestClient(app) as client:  # no lifespan: the document needs no model
        r = client.get(f"{API}/openapi.json")
    assert r.status_code == 200
    [line] = _log_lines(caplog, f"{API}/openapi.json")
    assert isinstance(line.args, tuple)
    method, _, status, ms, _ = line.args
    assert (method, status) == ("GET", 200)
    seconds = _sample(app, DURATION, route=f"{API}/openapi.json")
    assert seconds is not None
    assert seconds > 0
    assert ms == seconds * 1000.0  # the same number, not two timers that nearly agree
    assert _sample(app, REQUESTS, method="GET", route=f"{API}/openapi.json", status="200") == 1


def test_a_catch_all_500_is_one_measurement_too(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings())

    async def broken() -> None:
        raise RuntimeError("a bug, with a message that must not reach the log")

    app.add_api_route(f"{API}/broken", broken, methods=["GET"])
    caplog.set_level(logging.INFO, logger="dermsight.web")
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get(f"{API}/broken")
    assert r.status_code == 500
    assert r.json()["detail"].startswith("internal server error (request ")
    [line] = _log_lines(caplog, f"{API}/broken")
    assert isinstance(line.args, tuple)
    assert line.args[2] == 500
    assert line.args[3] == _sample(app, DURATION, route=f"{API}/broken") * 1000.0  # type: ignore[operator]
    assert _sample(app, REQUESTS, method="GET", route=f"{API}/broken", status="500") == 1
    assert "must not reach" not in caplog.text


# --- 2. route labels of requests answered before routing -----------------------------------------


def _too_large(client: TestClient, path: str, method: str = "POST") -> None:
    """Three real photos (82 kB) over a 1 KiB upload cap (a 65 kB body): BodyLimit's 413, sent
    before routing."""
    body = b"".join(_image(n) for n in ("ISIC_0012464.jpg", "ISIC_0013315.jpg",
                                        "ISIC_0012464.jpg"))
    assert len(body) > 1024 + 64 * 1024
    r = client.request(method, path, content=body, headers={"content-type": "image/jpeg"})
    assert r.status_code == 413, (path, r.text)


@pytest.mark.parametrize(("path", "method", "label"), [
    (f"{API}/openapi.json", "GET", f"{API}/openapi.json"),   # not in the OpenAPI document
    (f"{API}/docs", "GET", f"{API}/docs"),                   # not in it either
    ("/", "GET", "/{path}"),                                 # the web UI's mount
    ("/learn", "GET", "/{path}"),
    (f"{API}/predict", "POST", f"{API}/predict"),            # in the document: as before
    (f"{API}/health", "POST", f"{API}/health"),              # the router's 405 route
    (f"{API}/reference/ISIC_0012464.webp", "GET", f"{API}/reference/{{image_id}}.webp"),
    (f"{API}/nothing-here", "POST", "unmatched"),            # the UI never answers /api/...
])
def test_a_refused_body_is_labelled_with_its_route(path: str, method: str, label: str) -> None:
    settings = Settings(max_upload_bytes=1024)
    if not (settings.static_dir / "index.html").is_file():  # a bare "/" page, no mount
        label = {"/": "/", "/learn": "unmatched"}.get(path, label)
    app = create_app(settings)
    with TestClient(app) as client:
        _too_large(client, path, method)
    assert _sample(app, REQUESTS, method=method, route=label, status="413") == 1
    if label != "unmatched":
        assert _sample(app, REQUESTS, method=method, route="unmatched", status="413") is None
    if label == f"{API}/predict":
        assert _sample(app, "dermsight_uploads_refused_total", reason="too_large") == 1


def test_templates_do_not_build_the_openapi_document() -> None:
    app = create_app(Settings(max_upload_bytes=1024))
    with TestClient(app) as client:
        _too_large(client, f"{API}/predict")
    assert app.openapi_schema is None  # FastAPI caches the document once it is built


# --- 3. 422 details a clinician or API user can act on -------------------------------------------


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The whole service with clinic storage on SQLite (lifespan: model and database), and an
    admin signed in."""
    tmp = tmp_path_factory.mktemp("clinic")
    config = ClinicConfig(database_url=f"sqlite:///{tmp / 'clinic.db'}",
                          images=str(tmp / "images"))
    app = create_app(replace(Settings(), workers=1, clinic=config))
    with TestClient(app) as client:
        with app.state.clinic.db.session() as s:
            create_user(s, "root", PASSWORD, "admin")
        r = client.post(f"{API}/auth/login", json={"username": "root", "password": PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        yield client


def _detail(r: Any) -> str:
    assert r.status_code == 422, r.text
    body = r.json()
    assert list(body) == ["detail"]
    assert isinstance(body["detail"], str)
    detail: str = body["detail"]
    return detail


_refs = itertools.count(1)


def _lesion_url(client: TestClient) -> str:
    """The lesions URL of a new patient."""
    r = client.post(f"{API}/patients", json={"ref": f"V-{next(_refs)}"})
    assert r.status_code == 201, r.text
    return f"{API}/patients/{r.json()['id']}/lesions"


def test_a_missing_field_is_named(clinic: TestClient) -> None:
    assert _detail(clinic.post(f"{API}/patients", json={})) == "ref is required"


def test_a_wrong_type_in_the_query_says_what_is_expected(clinic: TestClient) -> None:
    assert _detail(clinic.get(f"{API}/admin/audit", params={"limit": "abc"})) == (
        "limit must be a whole number (got 'abc')")
    assert _detail(clinic.get(f"{API}/admin/audit", params={"limit": "0"})) == (
        "limit must be at least 1 (got '0')")


def test_a_wrong_type_in_a_predict_query_parameter(clinic: TestClient) -> None:
    r = clinic.post(f"{API}/predict", params={"heatmap": "maybe"},
                    files={"image": ("lesion.jpg", _image(), "image/jpeg")})
    assert _detail(r) == "heatmap must be true or false (got 'maybe')"


def test_a_wrong_type_in_the_json_body_names_the_nested_field(clinic: TestClient) -> None:
    url = _lesion_url(clinic)
    r = clinic.post(url, json={"map": {"view": "front", "x": "left", "y": 0.5}})
    assert _detail(r) == "map.x must be a number (got 'left')"
    r = clinic.post(url, json={"side": "up"})
    assert _detail(r) == "side must be 'left', 'right' or 'midline' (got 'up')"
    assert _detail(clinic.post(f"{API}/patients", json={"ref": 42})) == (
        "ref must be text (got 42)")


def test_a_too_long_or_empty_string_gives_the_limit(clinic: TestClient) -> None:
    assert _detail(clinic.post(f"{API}/patients", json={"ref": "P" * 80})) == (
        "ref must be at most 64 characters long (got 80)")
    assert _detail(clinic.post(f"{API}/patients", json={"ref": "   "})) == (
        "ref must not be empty")
    assert _detail(clinic.post(f"{API}/patients", json={"ref": "P-1\nP-2"})) == (
        "ref must be one line of text, without tabs, line breaks or other control characters")


def test_an_extra_field_is_named(clinic: TestClient) -> None:
    r = clinic.post(f"{API}/patients", json={"ref": "E-1", "name": "Jane Doe"})
    assert _detail(r) == "name is not a field this request takes (check its spelling)"
    assert "Jane" not in r.text


def test_more_than_five_errors_are_counted(clinic: TestClient) -> None:
    body = {f"extra{i}": i for i in range(7)}
    detail = _detail(clinic.post(_lesion_url(clinic), json=body))
    parts = detail.split("; ")
    assert parts[:5] == [f"extra{i} is not a field this request takes (check its spelling)"
                         for i in range(5)]
    assert parts[5:] == ["and 2 more problems"]


def test_a_body_that_is_not_json_or_not_an_object(clinic: TestClient) -> None:
    r = clinic.post(f"{API}/patients", content=b'{"ref": ', headers={
        "content-type": "application/json"})
    assert _detail(r).startswith("the request body is not valid JSON (")
    assert _detail(clinic.post(f"{API}/patients", json=["P-1"])) == (
        "the request body must be a JSON object (got a list)")


def test_clinic_routes_are_labelled_with_their_full_template(clinic: TestClient) -> None:
    """The clinic's routers are included with the /api/v1 prefix: their labels carry it (they
    were "/patients", "/lesions/{lesion_id}/visits"), so a refused visit upload counts."""
    metrics = clinic.app.state.metrics  # type: ignore[attr-defined]
    refused = metrics.registry.get_sample_value("dermsight_uploads_refused_total",
                                                {"reason": "invalid"})
    url = _lesion_url(clinic)
    lesion = clinic.post(url, json={"body_site": "posterior torso"})
    assert lesion.status_code == 201, lesion.text
    visits = f"{API}/lesions/{lesion.json()['id']}/visits"
    r = clinic.post(visits, files={"image": ("notes.txt", b"not an image", "text/plain")},
                    data={"age": "55", "sex": "female", "site": "posterior torso"})
    assert r.status_code == 422, r.text
    labels = {s.labels["route"] for fam in metrics.registry.collect() for s in fam.samples
              if s.name == REQUESTS}
    assert {f"{API}/patients", f"{API}/patients/{{patient_id}}/lesions",
            f"{API}/lesions/{{lesion_id}}/visits", f"{API}/auth/login"} <= labels
    assert not {"/patients", "/auth/login"} & labels
    assert metrics.registry.get_sample_value("dermsight_uploads_refused_total",
                                             {"reason": "invalid"}) == refused + 1


def test_a_request_that_is_not_an_upload_is_not_counted_as_a_refused_upload(
        clinic: TestClient) -> None:
    """A PUT on the visits route refused for its size (before routing, labelled with that route)
    uploaded nothing: the refused-upload counter is for POSTs; the request itself is counted."""
    metrics = clinic.app.state.metrics  # type: ignore[attr-defined]
    url = _lesion_url(clinic)
    lesion = clinic.post(url, json={"body_site": "posterior torso"})
    assert lesion.status_code == 201, lesion.text
    visits = f"{API}/lesions/{lesion.json()['id']}/visits"
    big = b"x" * (21 * 1024 * 1024)  # over the default 20 MB cap
    before = metrics.registry.get_sample_value("dermsight_uploads_refused_total",
                                               {"reason": "too_large"}) or 0.0
    r = clinic.put(visits, content=big, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 413, r.text
    assert metrics.registry.get_sample_value(
        REQUESTS, {"method": "PUT", "route": f"{API}/lesions/{{lesion_id}}/visits",
                   "status": "413"}) == 1.0
    assert (metrics.registry.get_sample_value("dermsight_uploads_refused_total",
                                              {"reason": "too_large"}) or 0.0) == before
    r = clinic.post(visits, content=big, headers={"content-type": "multipart/form-data; "
                                                  "boundary=x"})
    assert r.status_code == 413, r.text  # the same size as a POST: a refused upload
    assert metrics.registry.get_sample_value("dermsight_uploads_refused_total",
                                             {"reason": "too_large"}) == before + 1


def test_a_decoded_newline_in_the_path_cannot_forge_a_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings())
    caplog.set_level(logging.INFO, logger="dermsight.web")
    forged = "INFO dermsight.web: GET /api/v1/admin 200"
    with TestClient(app) as client:
        r = client.get(f"{API}/nothing%0A{forged.replace(' ', '%20')}")
    assert r.status_code == 404
    messages = [rec.getMessage() for rec in caplog.records if rec.name == "dermsight.web"]
    # the log names the route template, never the raw path (a path no route matches:
    # "unmatched"), so nothing the client put in the path reaches the log
    [line] = [m for m in messages if m.startswith("GET unmatched 404")]
    assert "\n" not in line
    assert "admin" not in " ".join(messages)
    assert "nothing" not in " ".join(messages)
