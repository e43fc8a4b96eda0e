"""What a newcomer met on a first try of the command line and the facade (audit): ``--version``,
too many ``--threads`` (a traceback, exit 1), the evaluation report's path said twice, decoder
limit messages (a Python warning with a source line; "0.0 MB (limit 0 MB)"), and
``Dermsight.adapt`` refusing a small folder that sometimes aborted the process at exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from api_support import dermsight_command
from cli_support import run
from dermsight.io import decode
from dermsight.io.errors import ImageDecodeError
from dermsight.onnxsession import max_threads

REPO = Path(__file__).resolve().parents[1]


def _folder(tmp: Path, data_dir: Path, metadata: pd.DataFrame, ids: list[str]) -> Path:
    """A labelled folder + CSV of copies of the shared images ``ids``."""
    folder = tmp / "cases"
    (folder / "images").mkdir(parents=True)
    metadata[metadata["image_id"].isin(ids)].to_csv(folder / "metadata.csv", index=False)
    for i in ids:
        shutil.copy(data_dir / "images" / f"{i}.jpg", folder / "images" / f"{i}.jpg")
    return folder


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# --- --version ---------------------------------------------------------------------------------


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--version")
    assert code == 0, err
    assert out == f"dermsight {version('dermsight')}\n"


# --- too many threads: one line, exit 2 --------------------------------------------------------


def test_batch_refuses_too_many_threads_in_one_line(
        capsys: pytest.CaptureFixture[str], data_dir: Path, metadata: pd.DataFrame,
        sample_ids: list[str], tmp_path: Path) -> None:
    folder = _folder(tmp_path, data_dir, metadata, sample_ids[:2])
    too_many = max_threads() + 1
    code, _, err = run(capsys, "batch", str(folder), "--out", str(tmp_path / "out"),
                       "--threads", str(too_many))
    assert code == 2, err
    line = _one_error_line(err)
    assert f"--threads: threads={too_many} is more than the {max_threads()}" in line
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_reference_build_refuses_too_many_threads_in_one_line(
        capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path) -> None:
    import dermsight

    bundle = tmp_path / "bundle"  # a copy: the command writes the bundle in place
    shutil.copytree(Path(dermsight.__file__).parent / "assets" / "default", bundle)
    code, _, err = run(capsys, "reference", "build", str(bundle), "--data", str(data_dir),
                       "--split", str(REPO / "configs" / "default-split.csv"),
                       "--threads", "1000", "-q")
    assert code == 2, err
    assert "--threads: threads=1000 is more than" in _one_error_line(err)


# --- evaluate: the report's path once ----------------------------------------------------------


def test_evaluate_says_the_report_path_once(
        capsys: pytest.CaptureFixture[str], data_dir: Path, metadata: pd.DataFrame,
        sample_ids: list[str], tmp_path: Path) -> None:
    import dermsight

    folder = _folder(tmp_path, data_dir, metadata, sample_ids[:4])
    ev = tmp_path / "ev"
    code, out, err = run(capsys, "evaluate",
                         str(Path(dermsight.__file__).parent / "assets" / "default"),
                         str(folder), "--out", str(ev), "-q")
    assert code == 0, err
    report = str(ev / "scores.report.html")
    assert out.count(report) == 1, out
    assert out.rstrip().splitlines()[-1] == f"report: {report}"
    assert f"evaluation json: {ev / 'scores.evaluation.json'}" in out


# --- decoder limits: sizes never "0 MB"; an invalid variable one plain line ---------------------


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 bytes"), (1, "1 byte"), (1000, "1,000 bytes"), (1024, "1 KB"), (1500, "1.4 KB"),
    (1024 * 1024 - 1, "1023.9 KB"), (1024 * 1024, "1 MB"), (int(259.3 * 1024 * 1024), "259 MB"),
    (20 * 1024 * 1024, "20 MB"), (20 * 1024 * 1024 + 1, "20 MB"),
])
def test_size_text(n: int, text: str) -> None:
    assert decode.size_text(n) == text


def test_too_large_text_never_reads_as_within_the_limit() -> None:
    assert decode.too_large_text(5000, 1000) == "file too large: 4.8 KB (limit 1,000 bytes)"
    mib = 1024 * 1024
    assert decode.too_large_text(20 * mib + 1, 20 * mib) == (
        "file too large: 20,971,521 bytes (limit 20,971,520 bytes)")


def test_a_small_file_limit_is_said_in_bytes_not_as_0_mb(data_dir: Path,
                                                         sample_ids: list[str]) -> None:
    data = (data_dir / "images" / f"{sample_ids[0]}.jpg").read_bytes()
    with pytest.raises(ImageDecodeError) as exc:
        decode.decode_image(data, decode.DecodeLimits(max_bytes=1000))
    assert str(exc.value) == f"file too large: {decode.size_text(len(data))} (limit 1,000 bytes)"
    assert "0 MB" not in str(exc.value)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DERMSIGHT_")}
    full.update(env)
    return subprocess.run([*dermsight_command(), *args], env=full, capture_output=True,
                          text=True, timeout=120, check=False)


def test_an_invalid_image_bytes_limit_is_one_plain_warning_line(
        data_dir: Path, sample_ids: list[str]) -> None:
    """README: outside ``serve`` an invalid decoder limit is warned of once, at the first
    decode, and the default is used: one line naming the default, not a Python warning."""
    r = _cli(["predict", str(data_dir / "images" / f"{sample_ids[0]}.jpg")],
             {"DERMSIGHT_MAX_IMAGE_BYTES": "abc"})
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [
        "warning: DERMSIGHT_MAX_IMAGE_BYTES='abc' is not a positive number: using the default, "
        "20 MB (20,971,520 bytes)"], r.stderr


# --- Dermsight.adapt: a refusal ends the process cleanly ---------------------------------------


def _adapt_cases(tmp: Path, data_dir: Path, metadata: pd.DataFrame) -> Path:
    """30 labelled nevi and keratoses: too few for an update (refused quickly)."""
    rows = (metadata[metadata["diagnosis"].isin(["NV", "BKL"])].sort_values("image_id")
            .groupby("diagnosis").head(15))
    return _folder(tmp, data_dir, metadata, rows["image_id"].tolist())


SNIPPET = textwrap.dedent("""
    import sys
    from dermsight import Dermsight
    from dermsight.local_update import UpdateRefused
    try:
        Dermsight.load().adapt(sys.argv[1], out=sys.argv[2], name="Clinic A")
    except UpdateRefused as exc:
        print("refused:", str(exc).partition(";")[0])
        sys.exit(1)
""")


def test_adapt_reads_the_scores_from_their_paths(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The last read of ``adapt``, just before an ``UpdateRefused``, hands pyarrow a path, not a
    Python file object (what ``pd.read_parquet`` gives it for a local file): pyarrow's threads
    let go of such an object after the read returned, taking the GIL; at interpreter exit that
    aborted the process now and then ("terminate called without an active exception", exit
    code 134)."""
    import pyarrow.parquet as pq

    from dermsight import Dermsight
    from dermsight.local_update import UpdateRefused

    cases = _adapt_cases(tmp_path, data_dir, metadata)
    sources: list[Any] = []
    read_table = pq.read_table

    def recording(source: Any, *args: Any, **kwargs: Any) -> Any:
        sources.append(source)
        return read_table(source, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", recording)
    with pytest.raises(UpdateRefused, match="30 usable labelled cases"):
        Dermsight.load().adapt(cases, out=tmp_path / "clinic-a", name="Clinic A")
    assert sources
    assert isinstance(sources[-1], (str, os.PathLike)), sources[-1]


@pytest.mark.slow
def test_the_readme_adapt_snippet_exits_cleanly_every_time(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> None:
    """The README's snippet, refused (too few cases), run as a script: exit code 1 with the
    refusal caught, never an abort at exit (134). Runs after the first resume the scores,
    the path on which 3 runs in a hundred aborted."""
    cases = _adapt_cases(tmp_path, data_dir, metadata)
    script = tmp_path / "snippet.py"
    script.write_text(SNIPPET, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DERMSIGHT_")}
    for _ in range(8):
        r = subprocess.run([sys.executable, str(script), str(cases), str(tmp_path / "clinic-a")],
                           env=env, capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
        assert r.stdout.startswith("refused: 30 usable labelled cases"), r.stdout
        assert "terminate called" not in r.stderr
