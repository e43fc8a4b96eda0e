"""A 422 from the API's schema names each field as the client sent it and says what is wrong in
plain words (``web/validation.py``), on the real app (``create_app``, clinic storage on SQLite,
the shipped model loaded):

* the clinic's JSON routes: an optional text over its limit is "at most 64 characters long"
  (pydantic calls it a "Value" with "items"), NaN / Infinity in the body map is "a finite
  number", a form or text body where JSON is expected says to send JSON;
* bodies with lists, a date, a URL (no clinic route has them yet: a route with such a body is
  added to the same app, answered by its real 422 handler): "at least 1 item" / "at least 2
  items", nested list items named ``items[1].n``, pydantic's phrases turned into "must".

Every 422 keeps its shape: ``{"detail": "<sentences joined by '; '>"}``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Any

import pytest
from fastapi import Body, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from conftest import DATA
from dermsight.clinic.accounts import create_user
from dermsight.clinic.config import ClinicConfig
from dermsight.web.app import create_app
from dermsight.web.settings import Settings

API = "/api/v1"
PASSWORD = "correct horse battery"
PROBE = f"{API}/_wording_probe"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Item(_Strict):
    label: str = Field(min_length=2)
    n: int


class Batch(_Strict):
    """A body with what the clinic's bodies do not have yet: lists, a date, a URL."""

    items: list[Item] = Field(min_length=1, max_length=2)
    tags: list[str] = Field(default=[], min_length=2)
    code: str | None = Field(default=None, max_length=1)
    extra: dict[str, int] = Field(default={}, max_length=1)
    seen: dt.date | None = None
    link: HttpUrl | None = None


def _add_probe_routes(app: FastAPI) -> None:
    @app.post(PROBE)
    def probe(batch: Batch) -> dict[str, str]:
        return {}

    @app.post(f"{PROBE}/embedded")
    def embedded(patient: Annotated[Batch, Body(embed=True)],
                 ids: Annotated[list[int] | None, Query()] = None) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The whole service with clinic storage on SQLite (lifespan: model and database), an admin
    signed in, and the probe routes."""
    tmp = tmp_path_factory.mktemp("wording")
    config = ClinicConfig(database_url=f"sqlite:///{tmp / 'clinic.db'}",
                          images=str(tmp / "images"))
    app = create_app(replace(Settings(), workers=1, clinic=config))
    _add_probe_routes(app)
    with TestClient(app) as c:
        with app.state.clinic.db.session() as s:
            create_user(s, "root", PASSWORD, "admin")
        r = c.post(f"{API}/auth/login", json={"username": "root", "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        yield c


def _problems(r: Any) -> list[str]:
    """The 422's sentences; its body is exactly ``{"detail": "<text>"}``."""
    assert r.status_code == 422, r.text
    body = r.json()
    assert list(body) == ["detail"], body
    assert isinstance(body["detail"], str), body
    problems: list[str] = body["detail"].split("; ")
    for p in problems:  # no pydantic phrasing, location syntax or "1 items" left
        assert not re.search(r"should|->|\b1 (items|characters|entries)\b", p), p
    return problems


@pytest.fixture(scope="module")
def lesion(client: TestClient) -> dict[str, str]:
    """A patient with one lesion that has a visit from a real image: the URLs to refuse."""
    patient = client.post(f"{API}/patients", json={"ref": "W-1"})
    assert patient.status_code == 201, patient.text
    lesions = f"{API}/patients/{patient.json()['id']}/lesions"
    lesion = client.post(lesions, json={"body_site": "posterior torso"})
    assert lesion.status_code == 201, lesion.text
    lid = lesion.json()["id"]
    image = (DATA / "images" / "ISIC_0012464.jpg").read_bytes()
    visit = client.post(f"{API}/lesions/{lid}/visits", data={"age": "55", "sex": "female"},
                        files={"image": ("ISIC_0012464.jpg", image, "image/jpeg")})
    assert visit.status_code == 201, visit.text
    return {"lesions": lesions, "diagnosis": f"{API}/lesions/{lid}/diagnosis",
            "visit": f"{API}/visits/{visit.json()['id']}"}


# --- the clinic's own routes ---------------------------------------------------------------------


@pytest.mark.parametrize(("field", "limit"), [("body_site", 64), ("location", 200)])
def test_an_optional_text_over_its_limit_is_counted_in_characters(
        client: TestClient, lesion: dict[str, str], field: str, limit: int) -> None:
    r = client.post(lesion["lesions"], json={field: "x" * (limit + 5)})
    assert _problems(r) == [f"{field} must be at most {limit} characters long (got {limit + 5})"]


def test_a_query_text_over_its_limit_is_counted_in_characters(client: TestClient) -> None:
    r = client.get(f"{API}/patients", params={"q": "W" * 70})
    assert _problems(r) == ["q must be at most 64 characters long (got 70)"]


def test_nan_and_infinity_in_the_body_map_are_not_numbers_out_of_range(
        client: TestClient, lesion: dict[str, str]) -> None:
    r = client.post(lesion["lesions"], content=b'{"map": {"view": "front", "x": NaN, '
                    b'"y": -Infinity}}', headers={"content-type": "application/json"})
    assert _problems(r) == ["map.x must be a finite number (got NaN)",
                            "map.y must be a finite number (got -Infinity)"]


@pytest.mark.parametrize(("method", "where"), [
    ("post", "patients"), ("post", "auth/tokens"), ("put", "diagnosis"), ("patch", "visit")])
def test_a_form_or_text_body_where_json_is_expected_says_to_send_json(
        client: TestClient, lesion: dict[str, str], method: str, where: str) -> None:
    url = lesion.get(where, f"{API}/{where}")
    expected = ["the request body must be a JSON object, sent with Content-Type: "
                "application/json"]
    send = getattr(client, method)
    assert _problems(send(url, data={"ref": "W-2", "note": "x"})) == expected
    assert _problems(send(url, content=b'{"ref": "W-2"}',
                          headers={"content-type": "text/plain"})) == expected


# --- lists ----------------------------------------------------------------------------


def test_list_lengths_use_the_right_plural(client: TestClient) -> None:
    assert _problems(client.post(PROBE, json={"items": []})) == [
        "items must have at least 1 item (got 0)"]
    one = {"label": "ab", "n": 1}
    assert _problems(client.post(PROBE, json={"items": [one, one, one]})) == [
        "items must have at most 2 items (got 3)"]
    r = client.post(PROBE, json={"items": [one], "tags": ["a"], "extra": {"a": 1, "b": 2},
                                 "code": "AB"})
    assert _problems(r) == ["tags must have at least 2 items (got 1)",
                            "code must be at most 1 character long (got 2)",
                            "extra must have at most 1 entry (got 2)"]


def test_a_wrong_item_in_a_list_is_named_by_its_index(client: TestClient) -> None:
    r = client.post(PROBE, json={"items": [{"label": "ab", "n": 1}, {"label": "a", "n": "x"}]})
    assert _problems(r) == ["items[1].label must be at least 2 characters long (got 1)",
                            "items[1].n must be a whole number (got 'x')"]


def test_an_embedded_body_and_a_list_query_are_named_as_sent(client: TestClient) -> None:
    r = client.post(f"{PROBE}/embedded", params={"ids": ["1", "x"]},
                    json={"patient": {"items": [{"n": 1}]}})
    assert _problems(r) == ["ids[1] must be a whole number (got 'x')",
                            "patient.items[0].label is required"]


def test_pydantic_phrases_without_a_rule_are_turned_into_must(client: TestClient) -> None:
    one = {"label": "ab", "n": 1}
    r = client.post(PROBE, json={"items": [one], "seen": "31/05/2024", "link": "not a url"})
    [seen, link] = _problems(r)
    assert seen == "seen must be a date written YYYY-MM-DD (got '31/05/2024')"
    assert link.startswith("link must be a valid URL"), link
