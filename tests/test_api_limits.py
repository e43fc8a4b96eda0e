"""Service-wide limits against a REAL ``dermsight serve`` process and real sockets: slow headers
(slowloris), the in-flight upload budget (503 + Retry-After), the connection limit, the
non-loopback bind refusal, the TTA switch, and 20 concurrent hostile uploads (RSS + latency)."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import api_support as support
from dermsight.web.schemas import PredictResponse

MIB = 1024 * 1024


def _connect(server: support.Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def _closed_after(sock: socket.socket, payload: bytes, step_s: float, limit_s: float) -> float:
    """Send ``payload`` one byte every ``step_s``; seconds until the server closed the socket."""
    t0 = time.monotonic()
    sock.settimeout(step_s)
    for b in payload:
        try:
            sock.sendall(bytes([b]))
        except OSError:
            return time.monotonic() - t0
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - t0
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit_s:
            break
    return float("inf")


def _hold_upload(server: support.Server, size: int, send: int) -> socket.socket:
    """Open a predict request declaring ``size`` body bytes and send only ``send`` of them."""
    sock = _connect(server)
    head = support.request_head("POST", "/api/v1/predict", server.port, {
        "Content-Type": "multipart/form-data; boundary=dermsightTEST42",
        "Content-Length": str(size),
    })
    sock.sendall(head + b"--dermsightTEST42\r\nContent-Disposition: form-data; name=\"image\"; "
                 b"filename=\"x.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n")
    sock.sendall(b"\xff" * send)
    return sock


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    """Small limits so they are reached quickly: 2 s header timeout, 4 MB uploads, a 10 MB
    in-flight budget (8.75 MB for large bodies), 8 connections."""
    server = support.start_server(tmp_path_factory.mktemp("limited"), env={
        "DERMSIGHT_HEADER_TIMEOUT_S": "2",
        "DERMSIGHT_MAX_UPLOAD_MB": "4",
        "DERMSIGHT_MAX_INFLIGHT_MB": "10",
        "DERMSIGHT_MAX_CONNECTIONS": "8",
    })
    yield server
    server.stop()


def test_slow_headers_are_cut_off(limited: support.Server) -> None:
    payload = support.request_head("GET", "/api/v1/health", limited.port, {"X-Pad": "a" * 400})
    with _connect(limited) as sock:
        took = _closed_after(sock, payload, step_s=0.2, limit_s=15)
    assert 1.8 <= took <= 5.0, f"slowloris connection closed after {took:.1f} s (limit 2 s)"
    # an idle connection that never sends a byte is closed too
    with _connect(limited) as sock:
        sock.settimeout(10)
        t0 = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - t0 <= 5.0
    # on a kept-alive connection, the next request's headers get the same deadline
    with _connect(limited) as sock:
        sock.sendall(support.request_head("GET", "/api/v1/health", limited.port, {}))
        assert support.read_response(sock, timeout=10).status == 200
        took = _closed_after(sock, payload, step_s=0.2, limit_s=15)
    assert 1.8 <= took <= 5.0, f"second request's slow headers cut after {took:.1f} s"
    # a client that is merely slow, but finishes its headers in time, is served
    with _connect(limited) as sock:
        head = support.request_head("GET", "/api/v1/health", limited.port, {})
        for i in range(0, len(head), 10):
            sock.sendall(head[i:i + 10])
            time.sleep(0.02)
        assert support.read_response(sock, timeout=10).status == 200
    assert limited.alive()


def test_inflight_budget_refuses_with_503_and_retry_after(
        limited: support.Server, jpeg: bytes) -> None:
    body, ctype = support.multipart([("image", jpeg, "a.jpg", "image/jpeg")])
    held = [_hold_upload(limited, 4 * MIB, 4 * MIB - 4096) for _ in range(2)]  # ~8 MB held
    try:
        time.sleep(1.0)
        with _hold_upload(limited, 4 * MIB, 0) as third:
            r = support.read_response(third, timeout=10)
        assert r.status == 503
        assert r.headers["retry-after"].isdigit()
        assert "busy" in str(r.json()), r.body  # type: ignore[operator]
        # an ordinary photo still gets through (the budget keeps room for small bodies)
        with limited.client() as c:
            ok = c.post("/api/v1/predict?heatmap=false", content=body,
                        headers={"Content-Type": ctype})
        assert ok.status_code == 200, ok.text
    finally:
        for s in held:
            s.close()
    # the budget is given back once those requests are gone: a large upload is accepted again
    deadline = time.monotonic() + 10
    while True:
        with _hold_upload(limited, 4 * MIB, 0) as again:
            again.settimeout(1.0)
            try:
                status = support.read_response(again, timeout=1.0).status
            except TimeoutError:
                status = 0  # no immediate answer: the server is waiting for the body, admitted
        if status != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status == 0, "the in-flight budget was not released after the uploads ended"


def test_declared_but_unsent_bytes_hold_no_budget(limited: support.Server) -> None:
    # a client that declares a large body and trickles it must not lock others out
    idle = [_hold_upload(limited, 4 * MIB, 0) for _ in range(4)]  # 16 MB declared, 0 sent
    try:
        time.sleep(0.5)
        with _hold_upload(limited, 4 * MIB, 0) as big:
            big.settimeout(1.5)
            with pytest.raises(TimeoutError):  # admitted: the server waits for its body
                support.read_response(big, timeout=1.5)
    finally:
        for s in idle:
            s.close()


def test_chunked_upload_over_the_budget_is_refused(limited: support.Server) -> None:
    held = [_hold_upload(limited, 4 * MIB, 3 * MIB) for _ in range(2)]  # 6 MB held
    try:
        time.sleep(0.5)
        with _connect(limited) as sock:
            sock.sendall(support.request_head("POST", "/api/v1/predict", limited.port, {
                "Content-Type": "multipart/form-data; boundary=dermsightTEST42",
                "Transfer-Encoding": "chunked",
            }))
            chunk = b"\xff" * (256 * 1024)
            try:
                for _ in range(16):  # 4 MB: more than the 2.75 MB left for large bodies
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except OSError:
                pass  # the server may answer and close before we finish
            r = support.read_response(sock, timeout=10)
        assert r.status == 503
        assert r.headers["retry-after"].isdigit()
    finally:
        for s in held:
            s.close()


def test_connection_limit_answers_503(limited: support.Server) -> None:
    idle = [_connect(limited) for _ in range(8)]
    try:
        time.sleep(0.3)
        with _connect(limited) as sock:
            sock.sendall(support.request_head("GET", "/api/v1/health", limited.port, {}))
            assert support.read_response(sock, timeout=10).status == 503
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    with limited.client() as c:
        assert c.get("/api/v1/health").status_code == 200


# --- serve: the bind check --------------------------------------------------------------------


def _serve(args: list[str], env: dict[str, str],
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DERMSIGHT_")}
    full.update(env)
    return subprocess.run([*support.dermsight_command(), "serve", *args], env=full,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org"])
def test_serve_refuses_a_public_bind_without_a_token(host: str) -> None:
    r = _serve(["--host", host, "--port", str(support.free_port())], {})
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "DERMSIGHT_API_TOKEN" in lines[0]
    assert "--insecure-no-auth" in lines[0]
    assert "Traceback" not in r.stderr


def test_bind_rules() -> None:
    from dermsight.web.server import bind_refusal, is_loopback

    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host)
        assert bind_refusal(host, None, False) is None
    for host in ("0.0.0.0", "::", "", "10.0.0.1", "lan-host"):
        assert not is_loopback(host)
        assert bind_refusal(host, None, False) is not None
        assert bind_refusal(host, "token", False) is None
        assert bind_refusal(host, None, True) is None


# --- TTA switch -------------------------------------------------------------------------------


def test_tta_is_refused_unless_the_server_allows_it(
        limited: support.Server, tmp_path: Path, jpeg: bytes) -> None:
    body, ctype = support.multipart([("image", jpeg, "a.jpg", "image/jpeg")])
    headers = {"Content-Type": ctype}
    with limited.client() as c:
        r = c.post("/api/v1/predict?tta=true&heatmap=false", content=body, headers=headers)
    assert r.status_code == 403
    assert "DERMSIGHT_ALLOW_TTA" in r.json()["detail"]
    server = support.start_server(tmp_path / "tta", env={"DERMSIGHT_ALLOW_TTA": "true"})
    try:
        with server.client() as c:
            plain = c.post("/api/v1/predict?heatmap=false", content=body, headers=headers)
            tta = c.post("/api/v1/predict?tta=true&heatmap=false", content=body,
                         headers=headers)
        assert plain.status_code == tta.status_code == 200
        PredictResponse.model_validate(tta.json())
        assert plain.json()["probabilities"] != tta.json()["probabilities"]
    finally:
        server.stop()


# --- 20 hostile uploads: memory and latency ---------------------------------------------------


def _rss_sampler(pid: int, stop: threading.Event, peak: list[int]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], proc.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.05)


def hostile_load(server: support.Server, jpeg: bytes, uploads: int = 20,
                 size: int = 19 * MIB, hold_s: float = 8.0,
                 slowloris: int = 20) -> dict[str, float]:
    """``uploads`` connections each declare and send ``size`` bytes but the last KB, then hold
    for ``hold_s``, and ``slowloris`` more connections send half a request head and stall;
    meanwhile one client times ordinary predict requests. Returns the numbers."""
    proc = psutil.Process(server.proc.pid)
    rss0 = proc.memory_info().rss
    stop, peak = threading.Event(), [rss0]
    sampler = threading.Thread(target=_rss_sampler, args=(server.proc.pid, stop, peak))
    sampler.start()
    socks: list[socket.socket] = []
    refused = [0]
    lock = threading.Lock()

    def attacker() -> None:
        try:
            s = _hold_upload(server, size, 0)
            with lock:
                socks.append(s)
            s.settimeout(30)
            block = b"\xff" * MIB
            sent = 0
            while sent < size - 1024:
                n = min(len(block), size - 1024 - sent)
                s.sendall(block[:n])
                sent += n
        except OSError:
            with lock:
                refused[0] += 1  # answered 503 and closed while we were sending

    body, ctype = support.multipart([("image", jpeg, "a.jpg", "image/jpeg"),
                                     ("age", b"55", None, None)])
    stalled = []
    for _ in range(slowloris):
        s = _connect(server)
        s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        stalled.append(s)
    threads = [threading.Thread(target=attacker) for _ in range(uploads)]
    for t in threads:
        t.start()
    times: list[float] = []
    statuses: list[int] = []
    t_end = time.monotonic() + hold_s
    with server.client(timeout=30) as c:
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            r = c.post("/api/v1/predict", content=body, headers={"Content-Type": ctype})
            times.append((time.perf_counter() - t0) * 1000)
            statuses.append(r.status_code)
            time.sleep(0.05)
    for t in threads:
        t.join(timeout=30)
    for s in socks + stalled:
        s.close()
    time.sleep(0.5)
    stop.set()
    sampler.join()
    slowest_at = times.index(max(times))  # which request (0 = the first, as the attack starts)
    times.sort()
    return {
        "rss_start_mb": rss0 / MIB, "rss_peak_mb": peak[0] / MIB,
        "requests": len(times), "ok": statuses.count(200),
        "p50_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))],
        "max_ms": times[-1], "slowest_request_no": slowest_at, "attackers_cut": refused[0],
    }


@pytest.mark.slow
def test_twenty_hostile_uploads_keep_memory_and_latency_bounded(
        tmp_path: Path, jpeg: bytes) -> None:
    server = support.start_server(tmp_path / "hostile")  # default limits
    try:
        res = hostile_load(server, jpeg)
        print("hostile load:", {k: round(v, 1) for k, v in res.items()})
        assert server.alive()
        assert res["ok"] == res["requests"] >= 10, res
        assert res["rss_peak_mb"] <= 800, res
        assert res["p90_ms"] <= 200, res
        with server.client() as c:
            assert c.get("/api/v1/health").status_code == 200
    finally:
        server.stop()


# --- API docs: served from the package, CSP script-src 'self' ---------------------------------


def test_docs_assets_are_local_and_csp_allows_only_self(api: support.Server) -> None:
    with api.client() as c:
        page = c.get("/api/v1/docs")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp
        assert "http" not in csp
        assert "unsafe-eval" not in csp
        assert "<script>" not in page.text
        assert "cdn" not in page.text.lower()
        for name, ctype in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css"),
                            ("docs-init.js", "javascript")):
            r = c.get(f"/api/v1/docs/assets/{name}")
            assert r.status_code == 200, name
            assert ctype in r.headers["content-type"], name
            assert f"/api/v1/docs/assets/{name}" in page.text
        assert c.get("/api/v1/docs/assets/LICENSE").status_code == 404  # only the listed files
        assert c.get("/api/v1/docs/assets/..%2F..%2Fsettings.py").status_code == 404


@pytest.mark.browser
def test_docs_page_renders_offline_in_chromium(api: support.Server) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path(os.environ.get("DERMSIGHT_CHROMIUM", "/usr/bin/chromium"))
    if not chromium.exists():
        pytest.skip(f"no Chromium at {chromium}")
    outside: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True,
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()

            def offline(route: Any) -> None:  # no network beyond the server itself
                if route.request.url.startswith(api.base):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{api.base}/api/v1/docs")
            page.locator(".opblock-summary-path", has_text="/api/v1/predict").first.wait_for(
                timeout=60_000)
            assert page.locator(".opblock").count() >= 8
        finally:
            browser.close()
    assert outside == [], outside
    assert problems == [], problems


def test_limit_settings_are_read_and_checked() -> None:
    from dermsight.web.settings import MIB, Settings, SettingsError

    s = Settings.from_env({})
    assert (s.max_inflight_bytes, s.max_connections, s.header_timeout_s, s.allow_tta) == (
        256 * MIB, 100, 10.0, False)
    s = Settings.from_env({"DERMSIGHT_MAX_INFLIGHT_MB": "64", "DERMSIGHT_MAX_CONNECTIONS": "7",
                           "DERMSIGHT_HEADER_TIMEOUT_S": "2.5", "DERMSIGHT_ALLOW_TTA": "yes"})
    assert (s.max_inflight_bytes, s.max_connections, s.header_timeout_s, s.allow_tta) == (
        64 * MIB, 7, 2.5, True)
    for env, needle in [({"DERMSIGHT_ALLOW_TTA": "maybe"}, "true or false"),
                        ({"DERMSIGHT_MAX_INFLIGHT_MB": "20"}, "too small"),
                        ({"DERMSIGHT_MAX_CONNECTIONS": "1"}, "at least 2"),
                        ({"DERMSIGHT_HEADER_TIMEOUT_S": "-1"}, "positive")]:
        with pytest.raises(SettingsError, match=needle):
            Settings.from_env(env)


def test_a_bad_limit_setting_stops_serve_with_one_line() -> None:
    r = _serve(["--port", str(support.free_port())], {"DERMSIGHT_MAX_INFLIGHT_MB": "10"})
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: DERMSIGHT_MAX_INFLIGHT_MB=10 is too small")
    assert len(r.stderr.strip().splitlines()) == 1


def test_serve_flags_win_over_the_environment_in_one_checked_settings_object() -> None:
    from dermsight.web.settings import MIB, Settings, SettingsError

    env = {"DERMSIGHT_WORKERS": "3", "DERMSIGHT_ORT_THREADS": "2", "DERMSIGHT_LOG_LEVEL": "DEBUG",
           "DERMSIGHT_MODEL": "from-env"}
    s = Settings.from_env(env, workers=5, ort_threads=None, log_level=None, model_path=None)
    assert (s.workers, s.ort_threads, s.log_level, s.model_path) == (5, 2, "debug",
                                                                     Path("from-env"))
    s = Settings.from_env(env, log_level="WARNING", model_path=Path("from-flag"))
    assert (s.log_level, s.model_path) == ("warning", Path("from-flag"))
    with pytest.raises(SettingsError, match="unknown log level 'loud'"):
        Settings.from_env({}, log_level="loud")
    with pytest.raises(SettingsError, match="too small"):  # checked however it is built
        Settings(max_inflight_bytes=16 * MIB)


def test_serve_stops_with_one_line_on_a_bad_flag_or_an_unusable_bundle(tmp_path: Path) -> None:
    r = _serve(["--port", str(support.free_port()), "--log-level", "loud"], {})
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().startswith("error: unknown log level 'loud'")
    assert len(r.stderr.strip().splitlines()) == 1
    # the lifespan loads the bundle before the port is bound: exit 3, no traceback
    r = _serve(["--port", str(support.free_port()), "--model", str(tmp_path)], {})
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.strip().startswith("error: model bundle:")
    assert "no card.json" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert "serving" not in r.stdout
