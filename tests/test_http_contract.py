"""The HTTP contract against a REAL ``dermsight serve`` process: what the server sends is what the
OpenAPI document and the README say it sends.

* a busy server (connection or request limit) answers the documented JSON 503 with
  ``Retry-After``, not uvicorn's plain-text one;
* a request that is not valid HTTP gets a JSON 400 from the server's HTTP layer;
* a CORS preflight may ask for ``X-Request-ID``, and a page may read it;
* every response the app sends carries ``X-Request-ID`` (the client's when usable), and the log
  line names it;
* real responses (success and each error class) validate against the served OpenAPI document,
  whose request body takes the spellings the server accepts;
* an image over the pixel cap is refused with exact pixel counts.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource

import api_support as support

API = "/api/v1"
PREDICT = f"{API}/predict"
ORIGIN = "http://ui.example.test"
GENERATED_ID = re.compile(r"[0-9a-f]{16}")


def bundle_without_report(root: Path) -> Path:
    """The shipped bundle (ONNX symlinked) without its report.html and plots."""
    root.mkdir(parents=True)
    for name in ("card.json", "gate.npz"):
        shutil.copyfile(support.DEFAULT_BUNDLE / name, root / name)
    (root / "model.onnx").symlink_to(support.DEFAULT_BUNDLE / "model.onnx")
    if (support.DEFAULT_BUNDLE / "reference").is_dir():
        shutil.copytree(support.DEFAULT_BUNDLE / "reference", root / "reference")
    from dermsight.bundle import write_manifest

    write_manifest(root)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    """The shipped model without report or plots, 3 connections, a 1 MB cap, CORS for one
    origin."""
    work = tmp_path_factory.mktemp("contract")
    s = support.start_server(
        work,
        model=bundle_without_report(work / "bundle"),
        env={
            "DERMSIGHT_MAX_CONNECTIONS": "3",
            "DERMSIGHT_MAX_UPLOAD_MB": "1",
            "DERMSIGHT_CORS_ORIGINS": ORIGIN,
        },
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def spec(server: support.Server) -> dict[str, Any]:
    """The OpenAPI document the server serves."""
    r = httpx.get(f"{server.base}{API}/openapi.json", timeout=30)
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def _connect(server: support.Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def _raw(server: support.Server, data: bytes) -> support.RawResponse:
    with _connect(server) as sock:
        sock.sendall(data)
        return support.read_response(sock, timeout=10)


# --- validation against the served OpenAPI document ----------------------------------------------


def _with_refs(node: Any) -> Any:
    """``node`` with its local ``$ref``s pointing into the registry's copy of the document."""
    if isinstance(node, dict):
        return {k: ("urn:spec" + v if k == "$ref" else _with_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_with_refs(v) for v in node]
    return node


def check_contract(
    spec: dict[str, Any],
    path: str,
    method: str,
    status: int,
    content_type: str,
    body: bytes,
    headers: dict[str, str],
) -> None:
    """The response is documented for this operation (status and media type), its JSON body
    validates against the documented schema, and the documented headers are present."""
    operation = spec["paths"][path][method]
    documented = operation["responses"].get(str(status))
    assert documented is not None, f"{method.upper()} {path}: {status} is not documented"
    media = content_type.split(";")[0].strip()
    content = documented.get("content", {})
    assert media in content, f"{method.upper()} {path} {status}: {media} not in {list(content)}"
    for name in documented.get("headers", {}):
        assert name.lower() in {k.lower() for k in headers}, (path, status, name)
    schema = content[media].get("schema")
    if schema is None or media != "application/json":
        return
    registry = Registry().with_resource(
        "urn:spec",
        Resource.from_contents({**spec, "$schema": "https://json-schema.org/draft/2020-12/schema"}),
    )
    validator = jsonschema.Draft202012Validator(_with_refs(schema), registry=registry)
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(json.loads(body))
    ]
    assert not errors, f"{method.upper()} {path} {status}: {errors[:3]}"


def check(spec: dict[str, Any], path: str, method: str, r: httpx.Response) -> None:
    check_contract(
        spec,
        path,
        method,
        r.status_code,
        r.headers.get("content-type", ""),
        r.content,
        dict(r.headers),
    )


# --- 1. busy: JSON 503 + Retry-After -------------------------------------------------------------


def test_a_busy_server_answers_the_documented_json_503_with_retry_after(
    server: support.Server, spec: dict[str, Any]
) -> None:
    idle = [_connect(server) for _ in range(3)]
    try:
        time.sleep(0.3)
        for path in (f"{API}/health", f"{API}/classes"):
            r = _raw(server, support.request_head("GET", path, server.port, {}))
            assert r.status == 503, r.body
            assert r.headers["content-type"] == "application/json"
            assert r.headers["retry-after"].isdigit()
            assert "busy" in r.json()["detail"]  # type: ignore[index]
            assert GENERATED_ID.fullmatch(r.headers["x-request-id"])
            check_contract(
                spec, path, "get", r.status, r.headers["content-type"], r.body, r.headers
            )
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.base}{API}/health", timeout=30).status_code == 200
    assert "503" in server.log()


def test_requests_over_the_running_limit_get_the_json_503() -> None:
    """The request half of the limit, on the middleware alone: with one request running and a
    limit of 1, the next gets the JSON 503; once it ends, requests pass again."""
    from dermsight.web.middleware import BusyMiddleware

    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    busy = BusyMiddleware(slow_app, max_requests=1)

    async def call() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        await busy({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
        return sent

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        first = asyncio.create_task(call())
        await asyncio.sleep(0.05)
        second = await call()
        release.set()
        return await first, second, await call()

    first, second, third = asyncio.run(scenario())
    assert first[0]["status"] == third[0]["status"] == 200
    assert second[0]["status"] == 503
    headers = dict(second[0]["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"retry-after"].isdigit()
    assert json.loads(second[1]["body"])["detail"].startswith("server busy")


# --- 2. malformed HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000,  # never ends
    ],
    ids=["request-line", "header", "content-length", "headers-past-16k"],
)
def test_malformed_http_gets_a_json_400(server: support.Server, request_bytes: bytes) -> None:
    r = _raw(server, request_bytes)
    assert r.status == 400
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"detail": r.json()["detail"]}  # type: ignore[index]
    assert str(r.json()["detail"]).startswith("invalid HTTP request")  # type: ignore[index]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["connection"] == "close"
    assert server.alive()


def test_the_documents_say_what_malformed_http_gets(spec: dict[str, Any]) -> None:
    described = spec["paths"][PREDICT]["post"]["responses"]["400"]["description"]
    assert "malformed HTTP" in described
    assert "malformed HTTP" in spec["info"]["description"]
    readme = (support.REPO / "README.md").read_text(encoding="utf-8")
    assert "cannot parse as HTTP" in readme


# --- 3. CORS -------------------------------------------------------------------------------------


def test_a_cors_preflight_may_ask_for_x_request_id_and_the_page_may_read_it(
    server: support.Server,
) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as c:
        pre = c.options(
            PREDICT,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-request-id, content-type",
            },
        )
        assert pre.status_code == 200, pre.text
        allowed = pre.headers["access-control-allow-headers"].lower()
        assert "x-request-id" in allowed
        r = c.get(f"{API}/classes", headers={"Origin": ORIGIN, "X-Request-ID": "page-7"})
        assert r.headers["access-control-allow-origin"] == ORIGIN
        exposed = r.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed
        assert "retry-after" in exposed
        assert r.headers["x-request-id"] == "page-7"
        # what a preflight still refuses (the README says so): another header, method, origin
        other = c.options(
            PREDICT,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-custom",
            },
        )
        assert (other.status_code, other.text) == (400, "Disallowed CORS headers")


# --- 5. request ids ------------------------------------------------------------------------------


def test_a_clients_request_id_is_echoed_and_logged(server: support.Server, jpeg: bytes) -> None:
    watch = support.LogWatch(server)
    with httpx.Client(base_url=server.base, timeout=120) as c:
        r = c.get(f"{API}/health", headers={"X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        # error responses too: 404, 422, 413 (answered before routing)
        miss = c.get(f"{API}/model/plots/nope.png", headers={"X-Request-ID": "abc-404"})
        assert (miss.status_code, miss.headers["x-request-id"]) == (404, "abc-404")
        bad = c.post(
            PREDICT,
            data={"age": "old"},
            headers={"X-Request-ID": "abc-422"},
            files={"image": ("a.jpg", jpeg, "image/jpeg")},
        )
        assert (bad.status_code, bad.headers["x-request-id"]) == (422, "abc-422")
        big = c.post(
            PREDICT,
            content=b"x" * (2 * 1024 * 1024),
            headers={"X-Request-ID": "abc-413", "Content-Type": "multipart/form-data"},
        )
        assert (big.status_code, big.headers["x-request-id"]) == (413, "abc-413")
        # none sent, or one that cannot be used: the server makes one
        for sent in (None, "", "has space", "x" * 129, "caf\u00e9"):
            headers = {} if sent is None else {"X-Request-ID": sent.encode("utf-8")}
            r = c.get(f"{API}/health", headers=headers)  # type: ignore[arg-type]
            assert GENERATED_ID.fullmatch(r.headers["x-request-id"]), (sent, r.headers)
        ids = {c.get(f"{API}/health").headers["x-request-id"] for _ in range(3)}
        assert len(ids) == 3
    log = watch.new()
    for rid in ("abc-123", "abc-404", "abc-422", "abc-413"):
        assert f"(request {rid})" in log, log[-2000:]
    assert f"GET {API}/health 200" in log


# --- 4. real responses against the served OpenAPI document ---------------------------------------


def test_real_responses_validate_against_the_served_openapi_document(
    server: support.Server, spec: dict[str, Any], jpeg: bytes
) -> None:
    image = {"image": ("a.jpg", jpeg, "image/jpeg")}
    with httpx.Client(base_url=server.base, timeout=120) as c:
        ok = c.post(
            PREDICT,
            params={"heatmap": "false"},
            files=image,
            data={"age": "55", "sex": "female", "site": "back"},
        )
        assert ok.status_code == 200, ok.text
        check(spec, PREDICT, "post", ok)
        for path in ("/health", "/classes", "/examples", "/model/plots"):
            r = c.get(f"{API}{path}")
            assert r.status_code == 200
            check(spec, f"{API}{path}", "get", r)
        errors = {
            400: c.post(
                PREDICT, content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}
            ),
            403: c.post(PREDICT, params={"tta": "true"}, files=image),
            413: c.post(
                PREDICT, files={"image": ("a.jpg", b"\xff" * (2 * 1024 * 1024), "image/jpeg")}
            ),
            415: c.post(PREDICT, files={"image": ("a.txt", b"hello, not an image", "text/plain")}),
            422: c.post(PREDICT, files=image, data={"age": "200"}),
        }
        for status, r in errors.items():
            assert r.status_code == status, (status, r.text)
            check(spec, PREDICT, "post", r)
        for template, path in [
            (f"{API}/model/plots/{{name}}.png", f"{API}/model/plots/nope.png"),
            (f"{API}/examples/{{file}}", f"{API}/examples/nope.jpg"),
            (f"{API}/reference/{{image_id}}.webp", f"{API}/reference/nope.webp"),
            (f"{API}/model/report", f"{API}/model/report"),  # the shipped bundle has none
        ]:
            r = c.get(path)
            assert r.status_code == 404, (path, r.text)
            check(spec, template, "get", r)
        # 405 is not an operation of the document: the README's error list names it
        wrong = c.put(PREDICT)
        assert wrong.status_code == 405
        assert wrong.json() == {"detail": "Method Not Allowed"}
    assert '405 `{"detail": "Method Not Allowed"}`' in (support.REPO / "README.md").read_text(
        encoding="utf-8"
    )


def test_the_document_declares_the_apps_error_shape_only(spec: dict[str, Any]) -> None:
    """No FastAPI list-shaped 422 (the app's handler sends sentences), none where nothing can
    fail validation, errors of an HTML route as JSON, and every operation's busy 503."""
    text = json.dumps(spec)
    assert "HTTPValidationError" not in text
    for path in (
        f"{API}/model/plots/{{name}}.png",
        f"{API}/examples/{{file}}",
        f"{API}/reference/{{image_id}}.webp",
    ):
        assert "422" not in spec["paths"][path]["get"]["responses"], path
    report_404 = spec["paths"][f"{API}/model/report"]["get"]["responses"]["404"]
    assert list(report_404["content"]) == ["application/json"]
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            busy = operation["responses"].get("503")
            assert busy is not None, (method, path)
            assert "Retry-After" in busy["headers"], (method, path)
    assert "HEAD" in spec["paths"][f"{API}/health"]["get"]["description"]


ACCEPTED = {
    "sex": ["F", "M", "male", "FEMALE", "unknown"],
    "site": ["back", "head_neck", "Posterior Torso", "palms/soles", "unknown"],
    "age": ["55", "45.5", "55Y", "1e2", ""],
}


def test_the_request_schema_takes_what_the_server_accepts(
    server: support.Server, spec: dict[str, Any], jpeg: bytes
) -> None:
    """A client generated from the document must not refuse values the server takes."""
    form = spec["paths"][PREDICT]["post"]["requestBody"]["content"]["multipart/form-data"]
    props = form["schema"]["properties"]
    from dermsight import taxonomy

    assert props["sex"]["examples"] == list(taxonomy.SEXES)
    assert props["site"]["examples"] == list(taxonomy.SITES)
    for alias in ("'back'", "'M'", "'045Y'"):
        assert (
            alias
            in props["sex"]["description"]
            + props["site"]["description"]
            + props["age"]["description"]
        ), alias
    with httpx.Client(base_url=server.base, timeout=120) as c:
        for field, values in ACCEPTED.items():
            for value in values:
                jsonschema.Draft202012Validator(props[field]).validate(value)
                r = c.post(
                    PREDICT,
                    params={"heatmap": "false"},
                    data={field: value},
                    files={"image": ("a.jpg", jpeg, "image/jpeg")},
                )
                assert r.status_code == 200, (field, value, r.text)


# --- 6. the pixel cap's message ------------------------------------------------------------------


def test_an_image_over_the_pixel_cap_is_refused_with_exact_counts() -> None:
    from dermsight.io.decode import DecodeLimits, check_dimensions
    from dermsight.io.errors import ImageDecodeError

    with pytest.raises(ImageDecodeError) as err:
        check_dimensions(5001, 5000, DecodeLimits())
    assert err.value.reason == ("image too large: 5001x5000 (25,005,000 pixels, limit 25,000,000)")
