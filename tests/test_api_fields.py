"""Unknown form fields and query parameters on the upload routes are a 422 that names them (a
misspelt ``agee`` must not silently drop the patient's age), while every documented field and the
exact field set the real frontend sends are still accepted. ``/api/v1/predict`` against the real
``dermsight serve``; the clinic visit upload (same parser) on the clinic harness."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

import api_support as support
from clinic_support import ClinicHarness, image_bytes, image_ids
from test_api_errors import assert_error

FRONTEND = support.REPO / "frontend" / "src"
PREDICT = "/api/v1/predict"
#: a valid value for each metadata field the API documents
VALUES = {"age": "55", "sex": "female", "site": "posterior torso", "note": "raised edge",
          "taken_at": "2026-01-02"}


def frontend_form(source: Path) -> tuple[set[str], set[str]]:
    """(form field names, query parameter names) of the upload in one frontend API module."""
    text = source.read_text(encoding="utf-8")
    fields = set(re.findall(r"form\.append\('([^']+)'", text))
    query = set(re.findall(r"/(?:predict|visits)\?([^`'\"]+)", text))
    params = {pair.split("=")[0] for q in query for pair in q.split("&")}
    assert "image" in fields, f"no FormData upload found in {source}"
    return fields, params


def upload(fields: set[str], image: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    """(text fields, files) for ``fields``, with a valid value for each."""
    unknown = fields - {"image", *VALUES}
    assert not unknown, f"no test value for field(s) {unknown}: add one to VALUES"
    data = {f: VALUES[f] for f in fields if f != "image"}
    return data, {"image": ("lesion.jpg", image, "image/jpeg")}


@pytest.fixture(scope="module")
def openapi(api: support.Server) -> dict[str, Any]:
    r = httpx.get(f"{api.base}/api/v1/openapi.json", timeout=30)
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def predict_form(openapi: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    op = openapi["paths"][PREDICT]["post"]
    schema = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    return schema, {p["name"] for p in op["parameters"] if p["in"] == "query"}


# --- /api/v1/predict ----------------------------------------------------------------------------


def test_misspelt_field_is_422_naming_it_and_the_right_name(client: httpx.Client,
                                                            jpeg: bytes) -> None:
    r = client.post(PREDICT, data={"agee": "30", "sex": "male"},
                    files={"image": ("lesion.jpg", jpeg, "image/jpeg")})
    detail = assert_error(r, 422, "unknown form field 'agee'", "did you mean 'age'?")
    for name in ("image", "age", "sex", "site"):
        assert name in detail.split("accepted form fields:")[1], detail


def test_several_unknown_fields_are_all_named(client: httpx.Client, jpeg: bytes) -> None:
    r = client.post(PREDICT, data={"Sex": "male", "anatom_site": "torso", "comment": "hi"},
                    files={"image": ("lesion.jpg", jpeg, "image/jpeg")})
    detail = assert_error(r, 422, "unknown form fields", "'Sex' (did you mean 'sex'?)",
                          "'anatom_site'", "'comment'")
    assert "'comment' (did you mean" not in detail


def test_misspelt_field_without_an_image_names_the_field(client: httpx.Client) -> None:
    body, ctype = support.multipart([("agee", b"30", None, None)])
    r = client.post(PREDICT, content=body, headers={"content-type": ctype})
    assert_error(r, 422, "'agee'", "did you mean 'age'?")


def test_misspelt_query_parameter_is_422(client: httpx.Client, jpeg: bytes) -> None:
    r = client.post(f"{PREDICT}?heatmp=false", data={"age": "30"},
                    files={"image": ("lesion.jpg", jpeg, "image/jpeg")})
    assert_error(r, 422, "unknown query parameter 'heatmp'", "did you mean 'heatmap'?", "tta")


def test_openapi_documents_exactly_the_accepted_names(openapi: dict[str, Any]) -> None:
    from dermsight.web.routes.predict import PREDICT_FIELDS, PREDICT_QUERY

    schema, query = predict_form(openapi)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(PREDICT_FIELDS) == {"image", "age", "sex", "site"}
    assert query == set(PREDICT_QUERY)
    assert "unknown form field" in openapi["paths"][PREDICT]["post"]["responses"]["422"][
        "description"]


def test_every_documented_field_and_parameter_is_accepted(
        client: httpx.Client, jpeg: bytes, openapi: dict[str, Any]) -> None:
    schema, query = predict_form(openapi)
    data, files = upload(set(schema["properties"]), jpeg)
    params = {q: "false" for q in query}  # tta=true is a 403 unless the operator allows it
    r = client.post(PREDICT, params=params, data=data, files=files)
    assert r.status_code == 200, r.text
    assert r.json()["input"] == {"age": 55.0, "sex": "female", "site": "posterior torso"}


def test_the_frontends_exact_field_set_is_accepted(client: httpx.Client, jpeg: bytes) -> None:
    fields, params = frontend_form(FRONTEND / "api.ts")
    assert fields == {"image", "age", "sex", "site"}
    assert params == {"heatmap"}
    data, files = upload(fields, jpeg)
    r = client.post(PREDICT, params={"heatmap": "true"}, data=data, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["input"] == {"age": 55.0, "sex": "female", "site": "posterior torso"}
    assert body.get("heatmap") or body["risk"] == "cannot_assess"


# --- the clinic visit upload (same parser) ------------------------------------------------------


@pytest.fixture
def lesion(harness: ClinicHarness) -> int:
    harness.add_user("ana")
    harness.login("ana")
    return harness.lesion(harness.patient("P-FIELDS"))


@pytest.fixture
def nv(data_dir: Path, metadata: Any) -> bytes:
    return image_bytes(data_dir, image_ids(metadata, "NV", 1)[0])


def test_visit_frontend_fields_accepted_and_typos_refused(harness: ClinicHarness, lesion: int,
                                                          nv: bytes) -> None:
    from dermsight.web.clinic.cases import VISIT_FIELDS

    fields, params = frontend_form(FRONTEND / "clinic" / "api.ts")
    assert fields == {"image", "age", "sex", "site", "note", "taken_at"} == set(VISIT_FIELDS)
    assert not params
    data, files = upload(fields, nv)
    r = harness.post(f"/lesions/{lesion}/visits", data=data, files=files)
    assert r.status_code == 201, r.text
    visit = r.json()
    assert (visit["age"], visit["sex"], visit["note"]) == (55.0, "female", "raised edge")
    assert visit["taken_at"].startswith("2026-01-02")

    r = harness.post(f"/lesions/{lesion}/visits", data={"notes": "x", "age": "40"}, files=files)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "unknown form field 'notes' (did you mean 'note'?)" in detail
    assert "taken_at" in detail
    r = harness.post(f"/lesions/{lesion}/visits?age=40", files=files)
    assert r.status_code == 422, r.text
    assert "unknown query parameter 'age'" in r.json()["detail"]
    assert len(harness.get(f"/lesions/{lesion}").json()["visits"]) == 1  # nothing stored
