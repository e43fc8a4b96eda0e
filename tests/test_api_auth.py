"""A server with the optional settings on: bearer token, CORS for one origin, a 1 MB cap, a 2 s
upload timeout and no built UI. (The default server, without them, is in test_api.py.)"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

import api_support as support
from api_support import STRICT_ORIGIN, STRICT_TOKEN, multipart, request_head
from dermsight.web.middleware import CSP


@pytest.fixture(scope="session")
def strict(tmp_path_factory: pytest.TempPathFactory) -> support.Server:
    return support.strict_server(tmp_path_factory.mktemp("strict"))


@pytest.fixture
def anon(strict: support.Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=strict.base, timeout=120) as c:
        yield c


@pytest.fixture
def authed(strict: support.Server) -> Iterator[httpx.Client]:
    with strict.client() as c:
        yield c



def post(c: httpx.Client, data: bytes, **headers: str) -> httpx.Response:
    return c.post("/api/v1/predict", files={"image": ("a.jpg", data, "image/jpeg")},
                  headers=headers)


@pytest.mark.parametrize(
    "path", ["/api/v1/model", "/api/v1/classes", "/api/v1/examples", "/api/v1/model/plots"])
def test_token_required(anon: httpx.Client, path: str) -> None:
    r = anon.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["detail"]
    assert r.headers["content-security-policy"] == CSP


def test_predict_needs_the_token(anon: httpx.Client, jpeg: bytes) -> None:
    assert post(anon, jpeg).status_code == 401
    assert post(anon, jpeg, Authorization="Bearer wrong").status_code == 401
    assert post(anon, jpeg, Authorization=f"Basic {STRICT_TOKEN}").status_code == 401
    assert post(anon, jpeg, Authorization=STRICT_TOKEN).status_code == 401
    assert post(anon, jpeg, Authorization=f"Bearer {STRICT_TOKEN}x").status_code == 401
    r = post(anon, jpeg, Authorization=f"Bearer {STRICT_TOKEN}")
    assert r.status_code == 200, r.text


def test_token_checked_before_the_body_is_parsed(anon: httpx.Client) -> None:
    r = anon.post("/api/v1/predict", json={"x": 1})
    assert r.status_code == 401


def test_with_token_everything_works(authed: httpx.Client, jpeg: bytes) -> None:
    for path in ("/api/v1/model", "/api/v1/classes", "/api/v1/examples"):
        assert authed.get(path).status_code == 200
    assert post(authed, jpeg).status_code == 200


def test_open_without_token(anon: httpx.Client) -> None:
    assert anon.get("/api/v1/health").status_code == 200
    assert anon.get("/api/v1/openapi.json").status_code == 200
    assert anon.get("/api/v1/docs").status_code == 200


def test_openapi_declares_the_bearer_scheme(anon: httpx.Client) -> None:
    doc = anon.get("/api/v1/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    assert "security" in doc["paths"]["/api/v1/predict"]["post"]
    assert "security" not in doc["paths"]["/api/v1/health"]["get"]


def test_cors_only_for_the_configured_origin(anon: httpx.Client) -> None:
    pre = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization"}
    r = anon.options("/api/v1/predict", headers={"Origin": STRICT_ORIGIN, **pre})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == STRICT_ORIGIN
    assert r.headers["content-security-policy"] == CSP
    r = anon.options("/api/v1/predict", headers={"Origin": "http://evil.example", **pre})
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    r = anon.get("/api/v1/health", headers={"Origin": STRICT_ORIGIN})
    assert r.headers["access-control-allow-origin"] == STRICT_ORIGIN


def test_cors_off_by_default(tmp_path_factory: pytest.TempPathFactory) -> None:
    api = support.main_server(tmp_path_factory.mktemp("api"))
    r = httpx.options(f"{api.base}/api/v1/predict", headers={
        "Origin": STRICT_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(f"{api.base}/api/v1/health", headers={"Origin": STRICT_ORIGIN})
    assert "access-control-allow-origin" not in r.headers


def test_configured_cap_is_413(authed: httpx.Client) -> None:
    data = support.noise_png(700)  # ~1.5 MB > 1 MB cap
    assert len(data) > 1024 * 1024
    r = authed.post("/api/v1/predict", files={"image": ("big.png", data, "image/png")})
    assert r.status_code == 413
    assert "too large" in r.json()["detail"]


def test_upload_timeout_is_408(strict: support.Server, jpeg: bytes) -> None:
    body, ctype = multipart([("image", jpeg, "slow.jpg", None)])
    head = request_head("POST", "/api/v1/predict", strict.port, {
        "Content-Type": ctype, "Content-Length": str(len(body)),
        "Authorization": f"Bearer {STRICT_TOKEN}"})
    with socket.create_connection(("127.0.0.1", strict.port), timeout=30) as s:
        s.sendall(head + body[:100])
        t0 = time.monotonic()
        r = support.read_response(s, timeout=30)
    assert r.status == 408
    assert "too slow" in r.json()["detail"]  # type: ignore[index]
    assert 1.5 < time.monotonic() - t0 < 20
    assert httpx.get(f"{strict.base}/api/v1/health").status_code == 200


def test_ui_not_built_page(anon: httpx.Client) -> None:
    r = anon.get("/")
    assert r.status_code == 200
    assert "not built" in r.text
    assert r.headers["content-security-policy"] == CSP
    assert anon.get("/api/v1/nothing").json() == {"detail": "Not Found"}


def test_require_token_is_a_dependency_any_router_can_use() -> None:
    """The token check reads the settings from the app it runs in: a router of another feature
    gets the same 401 (and no check at all when no token is set)."""
    from fastapi import APIRouter, Depends, FastAPI
    from fastapi.testclient import TestClient

    from dermsight.web.deps import require_token
    from dermsight.web.settings import Settings

    router = APIRouter(dependencies=[Depends(require_token)])

    @router.get("/feature")
    async def feature() -> dict[str, bool]:
        return {"ok": True}

    def app_with(token: str | None) -> FastAPI:
        app = FastAPI()
        app.state.settings = Settings(api_token=token)
        app.include_router(router)
        return app

    with TestClient(app_with(STRICT_TOKEN)) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": STRICT_TOKEN}):
            r = c.get("/feature", headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"] == "Bearer"
            assert "API token" in r.json()["detail"]
        r = c.get("/feature", headers={"Authorization": f"Bearer {STRICT_TOKEN}"})
        assert (r.status_code, r.json()) == (200, {"ok": True})
    with TestClient(app_with(None)) as c:
        assert c.get("/feature").status_code == 200
