"""Size messages of every reader in one unit (KB and MB of 1024, as ``io/decode.py`` says them),
never ``0 MB`` for a non-zero size: the regular-file reader (``dermsight predict IMG`` with a
small ``DERMSIGHT_MAX_IMAGE_BYTES`` said ``file too large: 0.0 MB (limit 0 MB)``, and a 20 MiB
limit as ``21 MB``) and DICOM. Also: a batch output's Parquet parts are read by path (no Python
file object for pyarrow's threads to let go of at exit), and the advice for a missing
``fsspec`` names both extras that install it."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer

from api_support import dermsight_command
from dermsight.cli.errors import EXIT_USER, run_guarded
from dermsight.io import decode, dicom, files
from dermsight.io.decode import DecodeLimits
from dermsight.io.errors import ImageDecodeError

MIB = 1024 * 1024
#: what the old messages said: "0.0 MB", "0 MB" (a non-zero size), MB of 10^6
ZERO_MB = re.compile(r"\b0(\.0)? MB\b")


def _refusal(fn: Any, *args: Any) -> str:
    with pytest.raises(ImageDecodeError) as exc:
        fn(*args)
    return str(exc.value)


def test_the_decoder_names_are_the_shared_helpers() -> None:
    from dermsight.io import sizes

    assert decode.size_text is sizes.size_text
    assert decode.too_large_text is sizes.too_large_text
    assert decode.MIB == sizes.MIB == MIB


def test_a_file_over_a_small_limit_is_said_in_bytes_not_as_0_mb(sample_image: Path) -> None:
    size = sample_image.stat().st_size
    reason = _refusal(files.read_regular_file, sample_image, 1000)
    assert reason == f"file too large: {decode.size_text(size)} (limit 1,000 bytes)"
    assert not ZERO_MB.search(reason), reason
    # by path, as decode_image (and predict) reads a file
    assert _refusal(decode.decode_image, sample_image, DecodeLimits(max_bytes=1000)) == reason


def test_the_file_limit_is_said_in_mb_of_1024(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with big.open("wb") as fh:
        fh.truncate(25 * MIB)
    # before: "file too large: 26.2 MB (limit 21 MB)" (MB of 10^6; the decoder says 20 MB)
    assert _refusal(files.read_regular_file, big, 20 * MIB) == (
        "file too large: 25 MB (limit 20 MB)")


def test_a_file_that_grows_while_read_names_the_limit_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "grows.jpg"
    p.write_bytes(b"x" * 5000)
    real = os.fstat

    def smaller(fd: int) -> os.stat_result:  # the size when it was opened
        st = real(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid,
                               st.st_gid, 10, st.st_atime, st.st_mtime, st.st_ctime))

    monkeypatch.setattr(files.os, "fstat", smaller)
    assert _refusal(files.read_regular_file, p, 1000) == (
        "file too large: more than the limit of 1,000 bytes")


def test_predict_with_a_small_byte_limit_says_the_sizes(sample_image: Path) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("DERMSIGHT_")}
    env["DERMSIGHT_MAX_IMAGE_BYTES"] = "1000"
    r = subprocess.run([*dermsight_command(), "predict", str(sample_image)], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    text = r.stdout + r.stderr
    assert "Traceback" not in text, text
    size = decode.size_text(sample_image.stat().st_size)
    assert f"file too large: {size} (limit 1,000 bytes)" in text, text
    assert not ZERO_MB.search(text), text


def test_dicom_sizes_are_said_as_the_decoder_says_them(tmp_path: Path) -> None:
    rgb = np.full((600, 600, 3), (150, 90, 60), np.uint8)
    data = dicom.write_dicom(tmp_path / "a.dcm", rgb, jpeg=False).read_bytes()
    # before: "file too large: 0.0 MB (limit 0 MB)"
    reason = _refusal(dicom.decode_dicom_upload, data, DecodeLimits(max_bytes=1000))
    assert reason == f"file too large: {decode.size_text(len(data))} (limit 1,000 bytes)"
    # the pixels need 3 x 1,080,000 bytes; before: a 100 KB limit was said as "(limit 0 MB)"
    reason = _refusal(dicom.decode_dicom_upload, data,
                      DecodeLimits(max_decode_bytes=100 * 1024))
    assert reason.endswith("needs about 3 MB to decode (limit 100 KB)"), reason


def test_a_cost_just_over_its_limit_is_said_in_bytes() -> None:
    """Not ``needs about 128 MB to decode (limit 128 MB)``: a refusal that reads as within."""
    limits = DecodeLimits(max_decode_bytes=128 * MIB)
    reason = _refusal(decode._check_cost, 8000, 6000, 128 * MIB + 4096, limits, "JPEG")
    assert reason == ("image too large: this 8000x6000 JPEG needs about 134,221,824 bytes to "
                      "decode (limit 134,217,728 bytes)")


# --- batch output parts: read by path -----------------------------------------------------------


def test_output_parts_are_handed_to_pyarrow_by_path(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``pd.read_parquet`` with a bare local path hands pyarrow a Python file object, which
    pyarrow's threads let go of after the read returned, needing the GIL: a process ending
    right after could abort ("terminate called without an active exception")."""
    import pyarrow.parquet as pq

    from dermsight.batch.store import read_output

    out = tmp_path / "out"
    out.mkdir()
    frame = pd.DataFrame({"id": ["a", "b"], "path": ["a.jpg", "b.jpg"], "p_mel": [0.1, 0.2]})
    frame.to_parquet(out / "part-00000.parquet")
    frame.iloc[:1].to_parquet(out / "part-00001.parquet")
    sources: list[Any] = []
    read_table = pq.read_table

    def recording(source: Any, *args: Any, **kwargs: Any) -> Any:
        sources.append(source)
        return read_table(source, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", recording)
    got = read_output(out)
    assert got["id"].tolist() == ["a", "b", "a"]
    assert got["p_mel"].tolist() == [0.1, 0.2, 0.1]
    assert read_output(out, ["id"]).columns.tolist() == ["id"]
    assert len(sources) == 4
    assert all(isinstance(s, (str, os.PathLike)) for s in sources), sources


def test_a_damaged_part_is_still_named(tmp_path: Path) -> None:
    from dermsight.batch.store import OutputFailure, read_output

    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(OutputFailure) as exc:
        read_output(out)
    assert f"cannot read the part file {out / 'part-00000.parquet'} as Parquet" in str(exc.value)


# --- a missing fsspec: both extras that install it ------------------------------------------------


def test_a_missing_fsspec_names_the_clinic_extra_and_s3(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)
    app = typer.Typer()

    @app.command()
    def store() -> None:
        import fsspec  # noqa: F401

    @app.command()
    def other() -> None:  # two commands: typer keeps the command name in argv
        pass

    assert run_guarded(app, ["store"]) == EXIT_USER
    assert capsys.readouterr().err.strip() == (
        "error: this needs the optional package 'fsspec', which is not installed: "
        "pip install 'dermsight[clinic]' (or 'dermsight[s3]' for s3:// paths)")


def test_a_missing_s3fs_names_the_s3_extra(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)
    app = typer.Typer()

    @app.command()
    def store() -> None:
        import s3fs  # noqa: F401

    @app.command()
    def other() -> None:
        pass

    assert run_guarded(app, ["store"]) == EXIT_USER
    assert capsys.readouterr().err.strip().endswith("pip install 'dermsight[s3]'")


def test_a_remote_file_over_the_limit_names_the_limit_in_the_shared_wording() -> None:
    """A remote (fsspec) read over a 1,000-byte limit said "more than 0 MB"."""
    fsspec = pytest.importorskip("fsspec")
    from dermsight.batch.references import read_remote
    from dermsight.io.errors import ImageDecodeError

    with fsspec.open("memory://sizes/big.jpg", "wb") as fh:
        fh.write(b"x" * 5000)
    with pytest.raises(ImageDecodeError) as err:
        read_remote("memory://sizes/big.jpg", None, 1000)
    assert str(err.value) == "file too large: more than the limit of 1,000 bytes"
