"""What the commands leave behind and how they end: Ctrl-C (exit 130, rows written so far kept),
one heatmap file per input even when file names repeat, heatmap destinations that cannot be
written (refused up front; a failed write loses no result), ``evaluate`` without labels or with
error rows, ``serve`` on a port in use."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import typer

from cli_support import run
from dermsight.batch.overlays import safe_name
from dermsight.batch.store import read_output
from dermsight.cli.errors import run_guarded

CLI = [sys.executable, "-c", "from dermsight.cli import main; main()"]


@pytest.fixture(scope="module")
def images(data_dir: Path, sample_ids: list[str]) -> list[Path]:
    """Two different real images the model assesses (so both get a heatmap)."""
    return [data_dir / "images" / f"{i}.jpg" for i in sample_ids[:2]]


@pytest.fixture
def same_names(images: list[Path], tmp_path: Path) -> list[Path]:
    """The two images as ``a/x.jpg`` and ``b/x.jpg`` (two patients, one file name)."""
    paths = [tmp_path / "in" / d / "x.jpg" for d in ("a", "b")]
    for src, dst in zip(images, paths, strict=True):
        dst.parent.mkdir(parents=True)
        shutil.copy(src, dst)
    return paths


# --- Ctrl-C -------------------------------------------------------------------------------------


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("part-*"))


def test_ctrl_c_exits_130_and_keeps_the_rows_written(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*CLI, "batch", str(data_dir), "--out", str(out), "--limit", "3000", "--chunk-size", "8",
         "--workers", "1", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not _parts(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert _parts(out), "no part written in time"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (stdout, stderr)
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    df = read_output(out)
    assert 8 <= len(df) < 3000
    assert df["id"].is_unique
    assert df.loc[df["error"].isna(), "risk"].isin(
        ["high", "moderate", "low", "cannot_assess"]).all()


def test_exit_codes_returned_by_typer_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    app = typer.Typer()

    @app.command()
    def stop(code: int) -> None:
        if code == -1:
            raise KeyboardInterrupt
        raise typer.Exit(code)

    assert run_guarded(app, ["5"]) == 5
    assert run_guarded(app, ["0"]) == 0
    assert capsys.readouterr().err == ""
    assert run_guarded(app, ["--", "-1"]) == 130
    assert "interrupted" in capsys.readouterr().err


# --- one heatmap per input ----------------------------------------------------------------------


def test_predict_heatmaps_of_same_named_images_are_two_files(
        capsys: pytest.CaptureFixture[str], same_names: list[Path], tmp_path: Path) -> None:
    hm = tmp_path / "hm" / "h.png"
    code, out, err = run(capsys, "predict", *map(str, same_names), "--heatmap", str(hm), "--json")
    assert code == 0, err
    files = [Path(r["heatmap_file"]) for r in json.loads(out)]
    assert files == [tmp_path / "hm" / "h_x.png", tmp_path / "hm" / "h_x-2.png"]
    assert files[0].read_bytes() != files[1].read_bytes()
    code, out, err = run(capsys, "predict", *map(str, same_names), "--heatmap", str(hm))
    assert code == 0, err
    assert [line.split("heatmap: ")[1] for line in out.splitlines() if "heatmap: " in line] == [
        str(f) for f in files]


def test_batch_heatmaps_of_same_named_images_are_two_files(
        capsys: pytest.CaptureFixture[str], same_names: list[Path], tmp_path: Path) -> None:
    heat = tmp_path / "heat"
    code, _, err = run(capsys, "batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                       "--heatmaps", str(heat), "--workers", "2", "--batch-size", "1", "-q")
    assert code == 0, err
    out = read_output(tmp_path / "out")
    assert out["id"].tolist() == ["x", "x"]
    assert "repeat an id" in err
    # each row names its own file (in input order)
    assert out["heatmap"].tolist() == ["x.png", "x-2.png"]
    files = sorted(heat.glob("*.png"))
    assert [f.name for f in files] == ["x-2.png", "x.png"]
    assert files[0].read_bytes() != files[1].read_bytes()


def test_long_ids_keep_apart() -> None:
    a, b = "l" * 300 + "a", "l" * 300 + "b"
    assert safe_name(a) != safe_name(b)
    assert len(safe_name(a)) == len(safe_name(b)) == 180
    assert safe_name("ISIC_0000000") == "ISIC_0000000"


# --- heatmap destinations that cannot be written ------------------------------------------------


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    f = tmp_path / "photo.jpg"
    f.write_text("not a folder")
    return f


@pytest.mark.parametrize("where", ["folder", "under_a_file"])
def test_predict_unwritable_heatmap_is_refused_before_scoring(
        capsys: pytest.CaptureFixture[str], images: list[Path], tmp_path: Path, a_file: Path,
        where: str) -> None:
    dest = tmp_path if where == "folder" else a_file / "out.png"
    code, out, err = run(capsys, "predict", str(images[0]), "--heatmap", str(dest), "--json")
    assert code == 2
    assert out == ""
    assert err.startswith("error: --heatmap"), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


def test_predict_failed_heatmap_write_keeps_the_results(
        capsys: pytest.CaptureFixture[str], images: list[Path], tmp_path: Path) -> None:
    (tmp_path / f"h_{images[0].stem}.png").mkdir()  # in the way of the first image's heatmap
    code, out, err = run(capsys, "predict", *map(str, images), "--heatmap",
                         str(tmp_path / "h.png"), "--json")
    assert code == 2
    results = json.loads(out)
    assert [r["file"] for r in results] == [str(p) for p in images]
    assert all("probabilities" in r for r in results)
    assert "heatmap_file" not in results[0]
    assert Path(results[1]["heatmap_file"]).is_file()
    assert f"error: {images[0]}: heatmap not written" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("where", ["a_file", "under_a_file"])
def test_batch_heatmaps_on_a_file_is_refused(
        capsys: pytest.CaptureFixture[str], same_names: list[Path], tmp_path: Path,
        a_file: Path, where: str) -> None:
    dest = a_file if where == "a_file" else a_file / "heat"
    code, _, err = run(capsys, "batch", str(same_names[0].parent), "--out",
                       str(tmp_path / "out"), "--heatmaps", str(dest), "-q")
    assert code == 2
    assert err.startswith(f"error: --heatmaps {dest}"), err
    assert err.count("\n") == 1, err
    assert a_file.read_text() == "not a folder"


# --- evaluate -----------------------------------------------------------------------------------


def test_evaluate_without_labels_exits_2_and_names_no_report(
        capsys: pytest.CaptureFixture[str], images: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for p in images:
        shutil.copy(p, folder / p.name)
    ev = tmp_path / "ev"
    code, out, err = run(capsys, "evaluate", str(bundle_dir()), str(folder), "--out", str(ev))
    assert code == 2
    assert "no labels" in err
    assert "report:" not in out
    assert not (ev / "scores.report.html").exists()
    assert not ev.exists()  # refused before any image is scored: nothing written


def test_evaluate_with_error_rows_exits_1_with_its_report(
        capsys: pytest.CaptureFixture[str], metadata: pd.DataFrame, data_dir: Path,
        sample_ids: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "labelled"
    (folder / "images").mkdir(parents=True)
    ids = sample_ids[:6]
    metadata[metadata["image_id"].isin(ids)].to_csv(folder / "metadata.csv", index=False)
    for i in ids[:-1]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", folder / "images" / f"{i}.jpg")
    (folder / "images" / f"{ids[-1]}.jpg").write_text("not an image")
    ev = tmp_path / "ev"
    code, out, err = run(capsys, "evaluate", str(bundle_dir()), str(folder), "--out", str(ev))
    assert code == 1, err
    report = [line.removeprefix("report: ") for line in out.splitlines()
              if line.startswith("report: ")]
    assert report == [str(ev / "scores.report.html")]
    assert Path(report[0]).is_file()


def bundle_dir() -> Path:
    import dermsight

    return Path(dermsight.__file__).parent / "assets" / "default"


# --- serve --------------------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_on_a_port_in_use_exits_2(capsys: pytest.CaptureFixture[str],
                                        busy_port: int) -> None:
    code, out, err = run(capsys, "serve", "--port", str(busy_port))
    assert code == 2
    assert err == f"error: port {busy_port} on 127.0.0.1 is already in use: stop what uses it " \
                  "or choose another --port\n"
    assert "serving" not in out


def test_serve_port_taken_after_the_check_is_not_a_bundle_error(busy_port: int) -> None:
    """uvicorn's own exit 3 (dermsight's code for a bad bundle) becomes a user error."""
    script = ("import dermsight.cli.serve as s; s._listen_refusal = lambda host, port: None; "
              "from dermsight.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", script, "serve", "--port", str(busy_port)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: cannot listen on 127.0.0.1")
    assert "Traceback" not in r.stderr
