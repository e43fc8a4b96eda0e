"""``dermsight serve`` caps glibc's malloc arenas: threads that allocate share 2 arenas instead of
getting one each (measured with glibc's own malloc_info in a fresh interpreter)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from dermsight.web import server

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")

#: 8 threads each allocating (blocks below the mmap threshold come from an arena), then
#: malloc_info's count of heaps (arenas)
PROBE = """
import ctypes, re, sys, threading
from dermsight.web.server import limit_malloc_arenas
print(limit_malloc_arenas() if sys.argv[1] == "limit" else None)
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    keep = [bytearray(50_000) for _ in range(20)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
fp = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
print(len(re.findall(r"<heap nr=", open(sys.argv[2]).read())))
"""


def _arenas(mode: str, out: Path) -> tuple[str, int]:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", PROBE, mode, str(out)], capture_output=True,
                       text=True, timeout=60, env=env, check=True)
    first, count = r.stdout.split()
    return first, int(count)


@glibc_only
def test_serve_limits_malloc_arenas_to_two(tmp_path: Path) -> None:
    set_, limited = _arenas("limit", tmp_path / "limited.xml")
    assert set_ == "True"
    assert limited <= server.MALLOC_ARENAS
    _, default = _arenas("default", tmp_path / "default.xml")
    assert default > server.MALLOC_ARENAS  # the probe does create arenas without the limit


def test_left_alone_when_the_operator_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert server.limit_malloc_arenas() is False


def test_no_op_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setattr(server.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert server.limit_malloc_arenas() is False
