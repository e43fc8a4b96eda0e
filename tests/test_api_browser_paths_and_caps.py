"""What a person meets at the edges of the HTTP service, on a real server with a small upload cap:

* one 413 wording (``upload too large: the limit is <n> MB per image``) whether the body-size
  middleware refuses (Content-Length, or while a chunked body streams) or the form parser does
  (the image part alone over the cap), with the cap as the operator set it: 0.05 MB was shown as
  "0 MB" (and 1.5 MB would have been shown as "2 MB", a limit larger than it is);
* a browser asking for a page without the ``#`` (``/learn``) is sent to the UI page, and any other
  missing page is an HTML "page not found", not ``{"detail": "Not Found"}``; API clients and
  ``/api/...`` keep their JSON 404.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import api_support as support
from api_support import multipart, request_head, to_jpeg
from dermsight.web.settings import MIB, megabytes

CAP_MB = "0.05"
CAP_TEXT = "upload too large: the limit is 0.05 MB per image"
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture(scope="module")
def small_cap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    server = support.start_server(tmp_path_factory.mktemp("small-cap"),
                                  env={"DERMSIGHT_MAX_UPLOAD_MB": CAP_MB})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(small_cap: support.Server) -> Iterator[httpx.Client]:
    with small_cap.client() as c:
        yield c


def _jpeg_between(path: Path, low: int, high: int) -> bytes:
    """A real image re-encoded to a size in (low, high) bytes."""
    for side in range(256, 2049, 32):
        data = to_jpeg(path, size=side, quality=95)
        if low < len(data) < high:
            return data
    raise AssertionError(f"no re-encoding of {path.name} between {low} and {high} bytes")


def test_megabytes_never_shows_a_cap_larger_than_set() -> None:
    assert megabytes(20 * MIB) == "20 MB"
    assert megabytes(int(0.05 * MIB)) == "0.05 MB"
    assert megabytes(int(1.5 * MIB)) == "1.5 MB"
    assert megabytes(int(0.5 * MIB)) == "0.5 MB"


def test_image_part_over_the_cap_names_the_cap_as_set(http: httpx.Client, sample_image: Path
                                                      ) -> None:
    """The whole body is under the middleware's room (cap + 64 kB for the form), so the form
    parser refuses the image part itself."""
    cap = int(float(CAP_MB) * MIB)
    image = _jpeg_between(sample_image, cap + 1024, cap + 40 * 1024)
    r = http.post("/api/v1/predict", files={"image": ("big.jpg", image, "image/jpeg")})
    assert r.status_code == 413
    assert r.json()["detail"] == CAP_TEXT


def test_declared_body_over_the_cap_same_wording(small_cap: support.Server, http: httpx.Client,
                                                 sample_image: Path) -> None:
    image = to_jpeg(sample_image, size=2048, quality=98)
    assert len(image) > 0.05 * MIB + 64 * 1024
    r = http.post("/api/v1/predict", files={"image": ("big.jpg", image, "image/jpeg")})
    assert r.status_code == 413
    assert r.json()["detail"] == CAP_TEXT


def test_chunked_body_over_the_cap_same_wording(small_cap: support.Server,
                                                sample_image: Path) -> None:
    body, ctype = multipart([("image", to_jpeg(sample_image, size=2048, quality=98), "big.jpg",
                              "image/jpeg")])
    head = request_head("POST", "/api/v1/predict", small_cap.port,
                        {"Content-Type": ctype, "Transfer-Encoding": "chunked"})
    with socket.create_connection(("127.0.0.1", small_cap.port), timeout=30) as s:
        s.sendall(head)
        try:
            for i in range(0, len(body), 16 * 1024):
                piece = body[i:i + 16 * 1024]
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and stopped reading
        r = support.read_response(s, timeout=30)
    assert r.status == 413
    assert r.json()["detail"] == CAP_TEXT


@pytest.mark.parametrize("page", ["learn", "model", "clinic", "clinic/admin", "model/"])
def test_browser_page_without_hash_is_sent_to_the_ui_page(http: httpx.Client, page: str) -> None:
    r = http.get(f"/{page}", headers=HTML, follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == f"/#/{page.strip('/')}"


def test_browser_missing_page_is_html_not_found(http: httpx.Client) -> None:
    r = http.get("/no-such-page/<script>alert(1)</script>", headers=HTML)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Page not found" in r.text
    assert "&lt;script&gt;" in r.text  # the path is escaped
    assert "<script>" not in r.text
    assert 'href="/"' in r.text
    assert "content-security-policy" in r.headers  # the security headers still apply


@pytest.mark.parametrize(("path", "headers"), [
    ("/no-such-page", {}),  # no Accept: an API client
    ("/no-such-page", {"Accept": "application/json"}),
    ("/learn", {"Accept": "application/json"}),
    ("/api/v1/no-such-route", HTML),  # the API keeps JSON even for a browser
])
def test_api_clients_keep_json_404(http: httpx.Client, path: str,
                                   headers: dict[str, str]) -> None:
    r = http.get(path, headers=headers, follow_redirects=False)
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}


def test_post_to_a_missing_page_is_not_redirected(http: httpx.Client) -> None:
    r = http.post("/learn", headers=HTML, follow_redirects=False)
    assert r.status_code in (404, 405)
    assert r.headers["content-type"].startswith("application/json")
