"""``dermsight.io.files``: only regular files are read, never a FIFO / socket / device."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from dermsight.io.errors import ImageDecodeError
from dermsight.io.files import not_regular_reason, read_regular_file


def test_regular_files_are_read_up_to_the_cap(sample_image: Path, tmp_path: Path) -> None:
    data = sample_image.read_bytes()
    assert read_regular_file(sample_image, len(data)) == data
    assert not_regular_reason(sample_image) is None
    link = tmp_path / "link.jpg"
    link.symlink_to(sample_image)
    assert read_regular_file(link, len(data)) == data  # a link to a regular file is fine
    with pytest.raises(ImageDecodeError, match="too large"):
        read_regular_file(sample_image, len(data) - 1)


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "dir.jpg").mkdir()
    sock_path = Path(f"/tmp/dsf-{os.getpid()}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    expected = {"pipe.jpg": "named pipe", "zero.jpg": "character device",
                "broken.jpg": "broken link", "dir.jpg": "folder", str(sock_path): "socket"}
    errors: dict[str, str] = {}

    def read_all() -> None:
        for name in expected:
            try:
                read_regular_file(tmp_path / name, 1 << 20)
            except ImageDecodeError as exc:
                errors[name] = exc.reason

    try:
        worker = threading.Thread(target=read_all, daemon=True)  # a hang must fail, not block
        t0 = time.monotonic()
        worker.start()
        worker.join(timeout=20)
        assert not worker.is_alive(), "read_regular_file blocked on a special file"
        assert time.monotonic() - t0 < 20
        for name, needle in expected.items():
            assert needle in errors[name], (name, errors.get(name))
            reason = not_regular_reason(tmp_path / name)
            assert reason is not None
            assert needle in reason
    finally:
        sock.close()
        sock_path.unlink(missing_ok=True)
