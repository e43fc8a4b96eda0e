"""Helpers for the API tests (no tests here): a REAL ``dermsight serve`` process on a free
loopback port, shared by all test modules of a session, plus raw-socket HTTP and file builders.

The servers are started once per session (cached in this module) and stopped at exit.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "src" / "dermsight" / "assets" / "default"
STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dermsight_command() -> list[str]:
    exe = Path(sys.executable).with_name("dermsight")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from dermsight.cli import main; main()"]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    tmpdir: Path
    token: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=timeout, headers=self.headers())

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def start_server(
    workdir: Path, *, model: Path | None = None, env: dict[str, str] | None = None,
    extra_args: Iterable[str] = (),
) -> Server:
    """Start ``dermsight serve`` and wait until /api/v1/health answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    tmpdir = workdir / "tmp"  # TMPDIR of the server: must stay empty (uploads live in memory)
    tmpdir.mkdir(exist_ok=True)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DERMSIGHT_")}
    for keep in ("DERMSIGHT_SHARED_DATA",):
        if keep in os.environ:
            full_env[keep] = os.environ[keep]
    full_env.update({"TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    cmd = [*dermsight_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if model is not None:
        cmd += ["--model", str(model)]
    cmd += list(extra_args)
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                cwd=str(workdir))
    server = Server(proc=proc, port=port, log_path=log_path, tmpdir=tmpdir,
                    token=full_env.get("DERMSIGHT_API_TOKEN"), env=full_env)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dermsight serve exited with {proc.returncode}:\n{server.log()}")
        try:
            r = httpx.get(f"{server.base}/api/v1/health", timeout=2.0)
            if r.status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"dermsight serve did not answer within {STARTUP_TIMEOUT_S:.0f} s:\n"
                       f"{server.log()}")


#: what the shared server must never log: a traceback, an error line, a 500 answer
LOG_FAILURES = ("Traceback", "ERROR", " 500 ")


class LogWatch:
    """What a server logs from now on: lets a test (or a fixture around it) check the log lines
    its own requests caused, whatever ran before it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.offset = self._size()

    def _size(self) -> int:
        try:
            return self.server.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def new(self, settle_s: float = 2.0) -> str:
        """The log written since this watch began, once the server (still running) has answered
        a health check and the log has stopped growing (at most ``settle_s``)."""
        assert self.server.alive(), f"the server exited:\n{self.server.log()[-3000:]}"
        assert httpx.get(f"{self.server.base}/api/v1/health", timeout=30).status_code == 200
        size, deadline = self._size(), time.monotonic() + settle_s
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if (now := self._size()) == size:
                break
            size = now
        start = self.offset if size >= self.offset else 0  # a restarted server: a new log
        with open(self.server.log_path, "rb") as f:
            f.seek(start)
            return f.read().decode("utf-8", errors="replace")


def assert_log_clean(text: str) -> None:
    for bad in LOG_FAILURES:
        hits = [line for line in text.splitlines() if bad in line]
        assert not hits, f"{bad!r} in the server log:\n" + "\n".join(hits[:20])


_SERVERS: dict[str, Server] = {}


def _stop_all() -> None:
    for s in _SERVERS.values():
        s.stop()


atexit.register(_stop_all)


def shared_server(key: str, factory: Callable[[], Server]) -> Server:
    """One server per key for the whole session (several test modules share it)."""
    server = _SERVERS.get(key)
    if server is None or not server.alive():
        server = factory()
        _SERVERS[key] = server
    return server


# --- bundles ----------------------------------------------------------------------------------


def make_report_bundle(root: Path) -> Path:
    """The shipped bundle (ONNX symlinked, reference set copied) plus a report.html and a plots/
    folder."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("card.json", "gate.npz"):
        if (DEFAULT_BUNDLE / name).exists():
            shutil.copyfile(DEFAULT_BUNDLE / name, root / name)
    onnx = root / "model.onnx"
    if not onnx.exists():
        onnx.symlink_to(DEFAULT_BUNDLE / "model.onnx")
    if (DEFAULT_BUNDLE / "reference").is_dir():  # the similar-cases reference set
        shutil.copytree(DEFAULT_BUNDLE / "reference", root / "reference", dirs_exist_ok=True)
    (root / "report.html").write_text(
        "<!doctype html><html><body><h1>Evaluation report (test)</h1></body></html>\n",
        encoding="utf-8")
    (root / "plots").mkdir(exist_ok=True)
    Image.new("RGB", (40, 30), (10, 120, 200)).save(root / "plots" / "roc.png")
    from dermsight.bundle import write_manifest

    write_manifest(root)  # the report and plot are new files: cover them
    return root


def main_server(workdir: Path) -> Server:
    """Default settings, a bundle with report + plots."""
    return shared_server(
        "main", lambda: start_server(workdir / "main", model=make_report_bundle(workdir / "bundle"))
    )


STRICT_TOKEN = "s3cret-test-token"
STRICT_ORIGIN = "http://ui.example.test"


def strict_server(workdir: Path) -> Server:
    """Token auth, CORS for one origin, a 1 MB cap, a 2 s upload timeout and no built UI."""
    empty_static = workdir / "no-ui"
    empty_static.mkdir(parents=True, exist_ok=True)
    env = {
        "DERMSIGHT_API_TOKEN": STRICT_TOKEN,
        "DERMSIGHT_CORS_ORIGINS": STRICT_ORIGIN,
        "DERMSIGHT_MAX_UPLOAD_MB": "1",
        "DERMSIGHT_UPLOAD_TIMEOUT_S": "2",
        "DERMSIGHT_STATIC_DIR": str(empty_static),
    }
    return shared_server("strict", lambda: start_server(workdir / "strict", env=env))


# --- raw HTTP ---------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def read_response(sock: socket.socket, timeout: float = 60.0) -> RawResponse:
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {buf[:200]!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return RawResponse(status, headers, rest[:length])


def request_head(method: str, path: str, port: int, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def multipart(
    parts: Iterable[tuple[str, bytes, str | None, str | None]], boundary: str = "dermsightTEST42"
) -> tuple[bytes, str]:
    """(name, value, filename, content_type) parts -> (body, content-type header)."""
    out = io.BytesIO()
    for name, value, filename, ctype in parts:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out.write(disp.encode() + b"\r\n")
        if ctype:
            out.write(f"Content-Type: {ctype}\r\n".encode())
        out.write(b"\r\n" + value + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


# --- files ------------------------------------------------------------------------------------


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bomb(width: int = 40000, height: int = 40000) -> bytes:
    """A tiny, well-formed PNG whose header claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def noise_png(side: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
        buf, format="PNG", compress_level=0)
    return buf.getvalue()


def to_jpeg(path: Path, size: int | None = None, quality: int = 90) -> bytes:
    img = Image.open(path).convert("RGB")
    if size is not None:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
       b'<circle cx="5" cy="5" r="4" fill="brown"/></svg>\n')
PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
       b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
       b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
