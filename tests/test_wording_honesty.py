"""What the API says must be what it does, on the real app (``create_app`` with its lifespan:
the shipped model): the documented ``malignant_probability`` is the value served (the malignant
share among the specific diagnoses, not the plain sum), ``HEAD /api/v1/health`` answers like
``GET`` without a body (uptime checkers), and a query parameter given twice is a 422 naming it,
as a form field given twice already is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import DATA
from dermsight.web.app import create_app
from dermsight.web.settings import Settings

API = "/api/v1"
PREDICT = f"{API}/predict"
#: an SIIM-ISIC 2020 image the model puts almost wholly on UNK ("other / unknown")
UNK_IMAGE = DATA.parent / "isic2020-sample" / "images" / "ISIC_0612834.jpg"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(workers=1))) as c:
        yield c


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    r = client.get(f"{API}/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def _jpeg(path: Any = None) -> dict[str, Any]:
    p = path or DATA / "images" / "ISIC_0032591.jpg"
    return {"image": (p.name, p.read_bytes(), "image/jpeg")}


# --- malignant_probability: the description says what is served ---------------------------------


def test_the_documented_malignant_probability_is_the_served_share(
        client: TestClient, openapi: dict[str, Any]) -> None:
    text = openapi["components"]["schemas"]["PredictResponse"]["properties"][
        "malignant_probability"]["description"]
    assert "(P(MEL) + P(BCC) + P(SCC)) / (1 - P(UNK))" in text, text
    assert "among the specific diagnoses" in text, text
    assert "not an absolute probability" in text, text

    r = client.post(PREDICT, data={"age": "35", "sex": "female", "site": "torso"},
                    files=_jpeg(UNK_IMAGE), params={"heatmap": "false"})
    assert r.status_code == 200, r.text
    body = r.json()
    p = body["probabilities"]
    plain = p["MEL"] + p["BCC"] + p["SCC"]
    # the case the description warns about: UNK dominates, the plain sum is tiny, the share is not
    assert p["UNK"] > 0.9
    assert body["malignant_probability"] == pytest.approx(plain / (1 - p["UNK"]), rel=1e-3)
    assert body["malignant_probability"] > 10 * plain


# --- HEAD /api/v1/health -------------------------------------------------------------------------


def test_head_health_answers_like_get_without_a_body(client: TestClient) -> None:
    get = client.get(f"{API}/health")
    head = client.head(f"{API}/health")
    assert get.status_code == 200
    assert head.status_code == 200, head.text
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
    assert int(head.headers["content-length"]) == len(get.content)


def test_head_health_is_not_a_second_documented_operation(openapi: dict[str, Any]) -> None:
    assert set(openapi["paths"][f"{API}/health"]) == {"get"}


# --- a query parameter given twice ---------------------------------------------------------------


@pytest.mark.parametrize("query", ["heatmap=true&heatmap=false", "heatmap=false&heatmap=false"])
def test_a_repeated_query_parameter_is_422_naming_it(client: TestClient, query: str) -> None:
    r = client.post(f"{PREDICT}?{query}", data={"age": "30"}, files=_jpeg())
    assert r.status_code == 422, r.text
    assert r.json() == {"detail": "query parameter 'heatmap' is given more than once"}


def test_several_repeated_query_parameters_are_all_named(client: TestClient) -> None:
    r = client.post(f"{PREDICT}?tta=false&heatmap=true&tta=false&heatmap=false", files=_jpeg())
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "query parameters 'tta', 'heatmap' are given more than once"


def test_a_repeated_form_field_is_refused_in_the_same_words(client: TestClient) -> None:
    body = (b"--B\r\nContent-Disposition: form-data; name=\"age\"\r\n\r\n30\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"age\"\r\n\r\n40\r\n--B--\r\n")
    r = client.post(PREDICT, content=body,
                    headers={"content-type": "multipart/form-data; boundary=B"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "form field 'age' is given more than once"


def test_each_query_parameter_once_still_works(client: TestClient) -> None:
    r = client.post(f"{PREDICT}?heatmap=false&tta=false", files=_jpeg())
    assert r.status_code == 200, r.text
    assert "heatmap" not in r.json()
