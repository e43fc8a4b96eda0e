"""Everything a user can send wrong, against a real uvicorn server: each gets a clear JSON 4xx
(never a 5xx or a traceback), and the server keeps answering afterwards."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

import api_support as support
from api_support import RawResponse, multipart, request_head
from dermsight.web.middleware import CSP


def post(client: httpx.Client, data: bytes | None = None, filename: str = "x.jpg",
         **fields: str) -> httpx.Response:
    files = {"image": (filename, data, "application/octet-stream")} if data is not None else None
    return client.post("/api/v1/predict", data=fields, files=files)


def assert_error(r: httpx.Response | RawResponse, status: int, *words: str) -> str:
    code = r.status_code if isinstance(r, httpx.Response) else r.status
    body = r.content if isinstance(r, httpx.Response) else r.body
    headers = r.headers
    assert code == status, (code, body[:300])
    assert headers["content-type"].startswith("application/json")
    assert headers["content-security-policy"] == CSP
    assert headers["x-content-type-options"] == "nosniff"
    detail = r.json()["detail"]  # type: ignore[index]
    assert isinstance(detail, str)
    assert detail
    assert "Traceback" not in detail
    for w in words:
        assert w.lower() in detail.lower(), (w, detail)
    return detail


def assert_alive(api: support.Server) -> None:
    r = httpx.get(f"{api.base}/api/v1/health", timeout=10)
    assert r.status_code == 200


# --- the image --------------------------------------------------------------------------------


def test_zero_bytes(client: httpx.Client) -> None:
    assert_error(post(client, b""), 415, "empty")


def test_png_decompression_bomb(client: httpx.Client) -> None:
    bomb = support.png_bomb(40000, 40000)
    assert len(bomb) < 200
    assert_error(post(client, bomb, "bomb.png"), 422, "too large")


def test_truncated_jpeg(client: httpx.Client, jpeg: bytes) -> None:
    assert_error(post(client, jpeg[: len(jpeg) // 2]), 422, "truncated")


def test_corrupt_png_header(client: httpx.Client) -> None:
    assert_error(post(client, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "x.png"), 422, "PNG")


@pytest.mark.parametrize(
    ("data", "filename", "word"),
    [
        (support.SVG, "lesion.svg", "SVG"),
        (support.PDF, "report.pdf", "PDF"),
        (support.GIF, "anim.gif", "GIF"),
        (b"age,sex\n55,female\n", "notes.txt", "not an image"),
        (bytes(range(256)) * 4, "blob.bin", "not an image"),
    ],
)
def test_not_an_image_is_415(client: httpx.Client, data: bytes, filename: str, word: str) -> None:
    assert_error(post(client, data, filename), 415, word)


def test_file_name_and_declared_type_are_ignored(client: httpx.Client, jpeg: bytes) -> None:
    r = client.post("/api/v1/predict",
                    files={"image": ("evil.svg", jpeg, "image/svg+xml")})
    assert r.status_code == 200
    r = client.post("/api/v1/predict", files={"image": ("photo.jpg", support.SVG, "image/jpeg")})
    assert_error(r, 415, "SVG")


def test_two_images(client: httpx.Client, jpeg: bytes) -> None:
    r = client.post("/api/v1/predict", files=[("image", ("a.jpg", jpeg, "image/jpeg")),
                                               ("image", ("b.jpg", jpeg, "image/jpeg"))])
    assert_error(r, 422, "one image")


def test_missing_image(client: httpx.Client, jpeg: bytes) -> None:
    assert_error(client.post("/api/v1/predict", data={"age": "50"},
                             files={"photo": ("a.jpg", jpeg, "image/jpeg")}), 422, "'image'")
    body, ctype = multipart([("age", b"50", None, None)])
    r = client.post("/api/v1/predict", content=body, headers={"content-type": ctype})
    assert_error(r, 422, "no image")


# --- metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"age": "abc"}, ["age", "not a number"]),
        ({"age": "400"}, ["age", "0-120"]),
        ({"age": "-1"}, ["age", "0-120"]),
        ({"age": "inf"}, ["age"]),
        ({"sex": "x"}, ["sex"]),
        ({"site": "elbow of the moon"}, ["site"]),
        ({"age": "5" * 2000}, ["age", "too long"]),
    ],
)
def test_bad_metadata_is_422(client: httpx.Client, jpeg: bytes, fields: dict[str, str],
                             words: list[str]) -> None:
    assert_error(post(client, jpeg, **fields), 422, *words)


def test_one_megabyte_form_field(client: httpx.Client, jpeg: bytes) -> None:
    assert_error(post(client, jpeg, age="9" * (1024 * 1024)), 422, "too long")
    assert_error(post(client, jpeg, notes="x" * (1024 * 1024)), 422, "too long")


def test_repeated_and_too_many_fields(client: httpx.Client, jpeg: bytes) -> None:
    body, ctype = multipart([("age", b"50", None, None), ("age", b"60", None, None),
                             ("image", jpeg, "a.jpg", "image/jpeg")])
    r = client.post("/api/v1/predict", content=body, headers={"content-type": ctype})
    assert_error(r, 422, "more than once")
    many = [(f"f{i}", b"1", None, None) for i in range(40)] + [("image", jpeg, "a.jpg", None)]
    body, ctype = multipart(many)
    r = client.post("/api/v1/predict", content=body, headers={"content-type": ctype})
    assert_error(r, 422, "too many")


def test_field_that_is_not_utf8(client: httpx.Client, jpeg: bytes) -> None:
    body, ctype = multipart([("sex", b"\xff\xfe\xfa", None, None),
                             ("image", jpeg, "a.jpg", "image/jpeg")])
    r = client.post("/api/v1/predict", content=body, headers={"content-type": ctype})
    assert_error(r, 422, "UTF-8")


def test_metadata_aliases_work(client: httpx.Client, jpeg: bytes) -> None:
    # (an unknown field such as comment= is a 422 naming it: tests/test_api_fields.py)
    r = post(client, jpeg, sex="F", site="Head/Neck", age=" 45 ")
    assert r.status_code == 200, r.text
    assert r.json()["input"] == {"age": 45.0, "sex": "female", "site": "head/neck"}


def test_bad_query_parameter(client: httpx.Client, jpeg: bytes) -> None:
    r = client.post("/api/v1/predict?heatmap=maybe",
                    files={"image": ("a.jpg", jpeg, "image/jpeg")})
    assert_error(r, 422, "heatmap")


# --- the request itself -----------------------------------------------------------------------


def test_json_body_is_415(client: httpx.Client) -> None:
    r = client.post("/api/v1/predict", json={"image": "aGVsbG8=", "age": 50})
    assert_error(r, 415, "multipart/form-data")


def test_urlencoded_body_is_415(client: httpx.Client) -> None:
    r = client.post("/api/v1/predict", data={"image": "x", "age": "50"})
    assert_error(r, 415, "multipart/form-data")


def test_raw_image_body_and_no_content_type_are_415(client: httpx.Client, jpeg: bytes,
                                                    api: support.Server) -> None:
    r = client.post("/api/v1/predict", content=jpeg, headers={"content-type": "image/jpeg"})
    assert_error(r, 415)
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        s.sendall(request_head("POST", "/api/v1/predict", api.port,
                               {"Content-Length": str(len(jpeg)), "Connection": "close"}) + jpeg)
        assert_error(support.read_response(s), 415)


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("multipart/form-data", b"--x\r\n"),  # no boundary parameter
        ("multipart/form-data; boundary=abc", b"this is not multipart at all"),
        ("multipart/form-data; boundary=abc",
         b'--abc\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\nxx'),
        ("multipart/form-data; boundary=abc", b"--abc\r\nX-Nothing: 1\r\n\r\nxx\r\n--abc--\r\n"),
        ("multipart/form-data; boundary=abc",
         b'--abc\r\nContent-Disposition: form-data; filename="a"\r\n\r\nxx\r\n--abc--\r\n'),
        ("multipart/form-data; boundary=" + "b" * 300, b"--b\r\n"),
    ],
)
def test_malformed_multipart_is_400(client: httpx.Client, ctype: str, body: bytes) -> None:
    r = client.post("/api/v1/predict", content=body, headers={"content-type": ctype})
    assert_error(r, 400, "multipart")


def test_huge_part_headers(client: httpx.Client) -> None:
    body = (b'--abc\r\nContent-Disposition: form-data; name="image"; filename="'
            + b"a" * 20000 + b'"\r\n\r\nxx\r\n--abc--\r\n')
    r = client.post("/api/v1/predict", content=body,
                    headers={"content-type": "multipart/form-data; boundary=abc"})
    assert_error(r, 400)


def test_invalid_content_length(api: support.Server) -> None:
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        s.sendall(request_head("POST", "/api/v1/predict", api.port,
                               {"Content-Length": "abc", "Connection": "close"}))
        r = support.read_response(s)
    assert 400 <= r.status < 500
    assert_alive(api)


# --- size caps ---------------------------------------------------------------------------------


def test_oversize_declared_content_length_is_413_before_the_body(api: support.Server) -> None:
    """25 MB announced, nothing sent: the answer comes at once (the body is never read)."""
    body_len = 25 * 1024 * 1024
    head = request_head("POST", "/api/v1/predict", api.port, {
        "Content-Type": "multipart/form-data; boundary=abc", "Content-Length": str(body_len)})
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        s.sendall(head)
        t0 = time.monotonic()
        r = support.read_response(s, timeout=10)
    assert_error(r, 413, "too large")
    assert time.monotonic() - t0 < 5
    assert_alive(api)


def _send_chunked_until_answer(api: support.Server, total: int) -> RawResponse:
    head = request_head("POST", "/api/v1/predict", api.port, {
        "Content-Type": "multipart/form-data; boundary=abc", "Transfer-Encoding": "chunked"})
    prefix = (b'--abc\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
              b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff")
    chunk = b"\x00" * (256 * 1024)
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        s.sendall(head)
        s.sendall(b"%x\r\n%s\r\n" % (len(prefix), prefix))
        sent = 0
        s.settimeout(5)
        try:
            while sent < total:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server stopped reading: it has answered
        return support.read_response(s, timeout=30)


def test_oversize_chunked_upload_is_413_while_streaming(api: support.Server) -> None:
    """No Content-Length: the cap is enforced while the body streams in (24 MB > 20 MB)."""
    r = _send_chunked_until_answer(api, 24 * 1024 * 1024)
    assert_error(r, 413, "too large")
    assert_alive(api)


def test_upload_just_under_the_cap_is_read(client: httpx.Client) -> None:
    """A 5 MB PNG (well over Starlette's 1 MB spool threshold) is accepted and, like every
    upload, never written to the server's temporary folder."""
    data = support.noise_png(1400)
    assert len(data) > 5 * 1024 * 1024
    r = post(client, data, "noise.png")
    assert r.status_code == 200, r.text


def test_uploads_never_touch_the_disk(api: support.Server) -> None:
    """The server's TMPDIR holds nothing upload-sized (ONNX Runtime leaves a 51-byte ``.ses``)."""
    files = [p for p in api.tmpdir.rglob("*") if p.is_file()]
    assert [p for p in files if p.stat().st_size > 4096] == [], files


# --- slow, aborted and concurrent clients -----------------------------------------------------


@pytest.mark.slow
def test_slow_upload_still_works_and_others_are_served(api: support.Server, jpeg: bytes) -> None:
    body, ctype = multipart([("age", b"61", None, None), ("image", jpeg, "slow.jpg", None)])
    head = request_head("POST", "/api/v1/predict", api.port,
                        {"Content-Type": ctype, "Content-Length": str(len(body))})
    health_times: list[float] = []

    def poll_health() -> None:
        for _ in range(5):
            t0 = time.monotonic()
            assert httpx.get(f"{api.base}/api/v1/health", timeout=10).status_code == 200
            health_times.append(time.monotonic() - t0)
            time.sleep(0.2)

    with socket.create_connection(("127.0.0.1", api.port), timeout=60) as s:
        s.sendall(head)
        t = threading.Thread(target=poll_health)
        t.start()
        step = len(body) // 10 + 1
        for i in range(0, len(body), step):
            s.sendall(body[i:i + step])
            time.sleep(0.25)
        r = support.read_response(s)
        t.join()
    assert r.status == 200, r.body[:300]
    assert r.json()["input"]["age"] == 61.0  # type: ignore[index]
    assert len(health_times) == 5
    assert max(health_times) < 2.0


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.9])
def test_aborted_upload_leaves_the_server_answering(
        api: support.Server, jpeg: bytes, cut: float) -> None:
    body, ctype = multipart([("image", jpeg, "a.jpg", None)])
    head = request_head("POST", "/api/v1/predict", api.port,
                        {"Content-Type": ctype, "Content-Length": str(len(body))})
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        s.sendall(head + body[: int(len(body) * cut)])
        time.sleep(0.2)
    # half a header, then gone
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nContent-Ty")
    time.sleep(0.2)
    assert_alive(api)
    with api.client() as c:
        assert post(c, jpeg).status_code == 200


def test_keep_alive_connection_survives_an_error(api: support.Server, jpeg: bytes) -> None:
    with api.client() as c:
        assert post(c, b"not an image").status_code == 415
        assert post(c, jpeg).status_code == 200
        assert post(c, jpeg, age="abc").status_code == 422
        assert c.get("/api/v1/health").status_code == 200


# --- what the server writes -------------------------------------------------------------------


def test_logs_carry_no_demographics_or_file_names(api: support.Server, jpeg: bytes) -> None:
    marker = "zz-private-file-name-7731"
    with api.client() as c:
        r = post(c, jpeg, f"{marker}.jpg", age="93", sex="female", site="palms/soles")
        assert r.status_code == 200
        post(c, jpeg, f"{marker}.jpg", age="393", site="oral/genital")
    time.sleep(0.3)
    log = api.log()
    assert "POST /api/v1/predict 200" in log  # requests are logged ...
    for secret in (marker, "palms/soles", "oral/genital", "female"):
        assert secret not in log  # ... but not what was sent
