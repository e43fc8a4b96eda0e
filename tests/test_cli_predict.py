"""``dermsight predict``: JSON and human output, bad images (exit 1, the good ones still printed),
bad metadata (exit 2), a missing bundle (exit 3), heatmap files, DICOM tags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_support import run


@pytest.fixture(scope="module")
def images(data_dir: Path, sample_ids: list[str]) -> list[Path]:
    return [data_dir / "images" / f"{i}.jpg" for i in sample_ids[:2]]


def test_predict_json(capsys: pytest.CaptureFixture[str], images: list[Path]) -> None:
    code, out, err = run(capsys, "predict", *map(str, images), "--json", "--age", "55",
                         "--sex", "female", "--site", "posterior torso")
    assert code == 0, err
    results = json.loads(out)
    assert [r["file"] for r in results] == [str(p) for p in images]
    for r in results:
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4
        assert r["risk"] in ("high", "moderate", "low", "cannot_assess")
        assert r["input"] == {"age": 55.0, "sex": "female", "site": "posterior torso"}
        assert "heatmap" not in r
        assert r["disclaimer"]


def test_predict_matches_the_library(capsys: pytest.CaptureFixture[str],
                                     images: list[Path]) -> None:
    from dermsight import Dermsight

    code, out, _ = run(capsys, "predict", str(images[0]), "--json")
    assert code == 0
    lib = Dermsight.load().predict(images[0], heatmap=False)
    got = json.loads(out)[0]["probabilities"]
    for c, p in lib.probabilities.items():
        assert abs(got[c] - p) < 1e-5


def test_bad_image_exit_1_good_ones_still_printed(
        capsys: pytest.CaptureFixture[str], images: list[Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a lesion\n")
    missing = tmp_path / "gone.jpg"
    code, out, err = run(capsys, "predict", str(images[0]), str(text), str(missing),
                         str(images[1]), "--json")
    assert code == 1
    results = json.loads(out)
    assert len(results) == 4
    assert results[1] == {"file": str(text), "error": "not an image (looks like a text file)"}
    assert "not found" in results[2]["error"]
    assert "probabilities" in results[0]
    assert "probabilities" in results[3]
    assert f"error: {text}: not an image" in err
    assert "Traceback" not in err


def test_human_output(capsys: pytest.CaptureFixture[str], images: list[Path],
                      tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(images[0].read_bytes()[: images[0].stat().st_size // 2])
    code, out, err = run(capsys, "predict", str(images[0]), str(bad))
    assert code == 1
    assert str(images[0]) in out
    assert "risk:" in out
    assert "not a diagnosis" in out
    # the UI's names: a suggested class, and the malignant figure as the share it is
    # ((MEL+BCC+SCC)/(1-UNK)), never "malignant: N %" as if it were their sum
    from dermsight.predict import Dermsight

    pred = Dermsight.load().predict(images[0], heatmap=False)
    assert f"suggested class {pred.to_dict(heatmap_png=False)['prediction_name']}" in out
    share = f"{100 * pred.malignant_probability:.1f} %"
    assert f"malignant share among the specific diagnoses: {share}" in out
    assert "malignant: " not in out
    assert f"error: {bad}: truncated JPEG" in err


@pytest.mark.parametrize(
    "args", [("--age", "abc"), ("--age", "400"), ("--sex", "x"), ("--site", "moon")])
def test_bad_metadata_exit_2(capsys: pytest.CaptureFixture[str], images: list[Path],
                             args: tuple[str, str]) -> None:
    code, out, err = run(capsys, "predict", str(images[0]), *args)
    assert code == 2
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert out == ""


def test_missing_bundle_exit_3(capsys: pytest.CaptureFixture[str], images: list[Path],
                               tmp_path: Path) -> None:
    code, _, err = run(capsys, "predict", str(images[0]), "--model", str(tmp_path / "nope"))
    assert code == 3
    assert "model bundle" in err


def test_heatmap_files(capsys: pytest.CaptureFixture[str], images: list[Path],
                       tmp_path: Path) -> None:
    out_png = tmp_path / "heat.png"
    code, out, _ = run(capsys, "predict", str(images[0]), "--heatmap", str(out_png), "--json")
    assert code == 0
    assert json.loads(out)[0]["heatmap_file"] == str(out_png)
    img = Image.open(out_png)
    assert img.size == Image.open(images[0]).size
    assert img.mode == "RGB"
    code, out, _ = run(capsys, "predict", *map(str, images), "--heatmap", str(out_png), "--json")
    assert code == 0
    for r, p in zip(json.loads(out), images, strict=True):
        assert r["heatmap_file"] == str(tmp_path / f"heat_{p.stem}.png")
        assert Path(r["heatmap_file"]).exists()
    code, _, err = run(capsys, "predict", str(images[0]), "--heatmap", str(tmp_path / "h.jpg"))
    assert code == 2
    assert ".png" in err


def test_tta(capsys: pytest.CaptureFixture[str], images: list[Path]) -> None:
    code, out, _ = run(capsys, "predict", str(images[0]), "--tta", "--json")
    assert code == 0
    assert json.loads(out)[0]["prediction"]


def test_dicom_tags_fill_missing_metadata(capsys: pytest.CaptureFixture[str],
                                          images: list[Path], tmp_path: Path) -> None:
    dicom = pytest.importorskip("dermsight.io.dicom")
    rgb = np.asarray(Image.open(images[0]).convert("RGB"))
    path = dicom.write_dicom(tmp_path / "x.dcm", rgb, age=70, sex="female", site="head/neck")
    code, out, err = run(capsys, "predict", str(path), "--json", "--sex", "male")
    assert code == 0, err
    assert json.loads(out)[0]["input"] == {"age": 70.0, "sex": "male", "site": "head/neck"}


@pytest.mark.slow
def test_console_script_json(images: list[Path], tmp_path: Path) -> None:
    """The installed ``dermsight`` command, as a user runs it."""
    exe = Path(sys.executable).with_name("dermsight")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                           "from dermsight.cli import main; main()"]
    text = tmp_path / "a.txt"
    text.write_text("hello")
    p = subprocess.run([*cmd, "predict", str(images[0]), str(text), "--json", "--age", "40"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    results = json.loads(p.stdout)
    assert results[0]["input"]["age"] == 40.0
    assert "error" in results[1]
    assert p.stderr.strip().splitlines()[-1].startswith(f"error: {text}")


def test_fifo_and_device_are_errors_not_hangs(images: list[Path], tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    cmd = [sys.executable, "-c", "from dermsight.cli import main; main()", "predict",
           str(tmp_path / "pipe.jpg"), str(tmp_path / "zero.png"), str(images[0]), "--json"]
    try:  # the bug was a process blocked forever in open(): fail instead of hanging
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("dermsight predict hung on a FIFO")
    assert r.returncode == 1, r.stderr
    results = json.loads(r.stdout)
    assert "named pipe" in results[0]["error"]
    assert "character device" in results[1]["error"]
    assert "probabilities" in results[2]
