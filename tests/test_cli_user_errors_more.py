"""Outputs that would replace or pollute an input, and inputs read the way the docs say.

``data split --out`` naming its own input CSV (also through a link) wiped the labels;
``gate fit --out`` deleted whatever folder it named; ``batch --heatmaps`` inside the input folder
fed the overlays back in as new images on every re-run, inside ``--out`` broke reading the
output, and an empty input path scored the current folder; ``data summary --plot`` crashed on a
file in the way or a suffix matplotlib cannot write; ``predict`` refused every image when one
was unreadable; the facade scored a transparent RGBA array; ``predict_batch`` counted from 0;
``gate fit nope`` outside the repository named the default data instead of the bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cli_support import assert_bundle_error_line
from dermsight import Dermsight
from dermsight.bundle import default_bundle_path
from dermsight.cli import app
from dermsight.cli.errors import EXIT_USER, run_guarded
from dermsight.io.errors import ImageDecodeError
from dermsight.taxonomy import TaxonomyError

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "configs" / "default-split.csv"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run_guarded(app, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, err: str, *parts: str) -> str:
    """Exit code 2 and one ``error: ...`` line on stderr holding each of ``parts``."""
    assert code == EXIT_USER, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def lab(tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> Path:
    """``lab/``: 12 real images (4 lesion groups of each of 3 classes) and their metadata.csv."""
    rows = metadata[metadata["diagnosis"].isin(["NV", "MEL", "BKL"])]
    rows = rows.sort_values("image_id").groupby("diagnosis").head(4)
    root = tmp_path / "lab"
    (root / "images").mkdir(parents=True)
    for i in rows["image_id"]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", root / "images" / f"{i}.jpg")
    rows[["image_id", "diagnosis", "source", "group_id"]].to_csv(root / "metadata.csv",
                                                                  index=False)
    return root


@pytest.fixture
def plain(tmp_path: Path, data_dir: Path, sample_ids: list[str]) -> Path:
    """A folder of three real images, no CSV."""
    root = tmp_path / "plain"
    root.mkdir()
    for i in sample_ids[:3]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", root / f"{i}.jpg")
    return root


# --- data split --out ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "dotted"])
def test_split_never_writes_over_its_input_csv(capsys: pytest.CaptureFixture[str], lab: Path,
                                               how: str) -> None:
    csv = lab / "metadata.csv"
    before = csv.read_bytes()
    out = {"same": csv, "symlink": lab / "link.csv", "hardlink": lab / "hard.csv",
           "dotted": lab / "." / "images" / ".." / "metadata.csv"}[how]
    if how == "symlink":
        out.symlink_to(csv.name)
    elif how == "hardlink":
        os.link(csv, out)
    code, out_text, err = run(capsys, "data", "split", str(csv), "--folds", "2",
                              "--group-col", "group_id", "--out", str(out))
    one_error(code, err, f"--out {out}", "is the input CSV", "give --out a new file name")
    assert out_text == ""
    assert csv.read_bytes() == before  # the labels are still there


def test_split_to_a_new_file_still_works(capsys: pytest.CaptureFixture[str], lab: Path) -> None:
    code, _, err = run(capsys, "data", "split", str(lab / "metadata.csv"), "--folds", "2",
                       "--group-col", "group_id", "--out", str(lab / "folds.csv"))
    assert code == 0, err
    assert list(pd.read_csv(lab / "folds.csv").columns) == ["image_id", "fold"]


# --- data summary --plot -------------------------------------------------------------------------


def test_summary_plot_with_a_file_in_the_way_is_one_line(capsys: pytest.CaptureFixture[str],
                                                         lab: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"mine")
    code, out, err = run(capsys, "data", "summary", str(lab), "--no-progress",
                         "--plot", str(tmp_path / "bad.jpg" / "x.png"))
    one_error(code, err, "cannot write --plot", f"{tmp_path / 'bad.jpg'} is a file")
    assert out == ""
    assert (tmp_path / "bad.jpg").read_bytes() == b"mine"


@pytest.mark.parametrize("name", ["sum.txt", "metadata.csv", "chart"])
def test_summary_plot_needs_a_chart_suffix(capsys: pytest.CaptureFixture[str], lab: Path,
                                           name: str) -> None:
    plot = lab / name
    before = plot.read_bytes() if plot.exists() else None
    code, out, err = run(capsys, "data", "summary", str(lab), "--no-progress",
                         "--plot", str(plot))
    one_error(code, err, f"--plot {plot}", ".png, .svg, .pdf, .jpg, ")
    assert out == ""
    assert (plot.read_bytes() if plot.exists() else None) == before


def test_summary_plot_as_svg(capsys: pytest.CaptureFixture[str], lab: Path,
                             tmp_path: Path) -> None:
    plot = tmp_path / "charts" / "sum.SVG"
    code, out, err = run(capsys, "data", "summary", str(lab), "--no-progress", "--json",
                         "--plot", str(plot))
    assert code == 0, err
    assert json.loads(out)["plot"] == str(plot)
    assert plot.read_bytes().lstrip().startswith(b"<?xml")


# --- batch: where the overlays go, and an empty input ----------------------------------------


def test_batch_heatmaps_inside_the_input_folder_are_refused(
        capsys: pytest.CaptureFixture[str], plain: Path, tmp_path: Path) -> None:
    link = tmp_path / "plain-link"
    link.symlink_to(plain)
    for given, hm in ((plain, plain / "hm"), (plain, plain), (link, plain / "hm")):
        code, out, err = run(capsys, "batch", str(given), "--out", str(tmp_path / "out"),
                             "--heatmaps", str(hm), "-q")
        one_error(code, err, f"--heatmaps {hm} is inside the input folder",
                  "a folder outside it")
        assert out == ""
    assert not (tmp_path / "out").exists()  # refused before any scoring
    assert sorted(p.name for p in plain.iterdir()) == sorted(
        p.name for p in plain.glob("*.jpg"))


@pytest.mark.parametrize("sub", ["", "hm"])
def test_batch_heatmaps_inside_out_are_refused(capsys: pytest.CaptureFixture[str], plain: Path,
                                               tmp_path: Path, sub: str) -> None:
    out = tmp_path / "out"
    hm = out / sub if sub else out
    code, text, err = run(capsys, "batch", str(plain), "--out", str(out), "--heatmaps", str(hm),
                          "-q")
    one_error(code, err, f"--heatmaps {hm} is inside --out {out}", "a folder outside it")
    assert text == ""
    assert not out.exists()


def test_batch_empty_input_path_is_refused(capsys: pytest.CaptureFixture[str], plain: Path,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(plain)  # the folder an empty path would have meant
    code, text, err = run(capsys, "batch", "", "--out", str(tmp_path / "o3"), "-q")
    one_error(code, err, "the input path is empty", ". for the current folder")
    assert text == ""
    assert not (tmp_path / "o3").exists()


def test_batch_reruns_with_heatmaps_beside_the_input_keep_their_rows(
        capsys: pytest.CaptureFixture[str], plain: Path, tmp_path: Path) -> None:
    """The way out the refusals name: --out inside the input folder holds only part files
    (never read as images), overlays outside it; a re-run scores nothing new."""
    out, hm = plain / "out", tmp_path / "hm"
    for _ in range(2):
        code, _, err = run(capsys, "batch", str(plain), "--out", str(out), "--heatmaps", str(hm),
                           "-q")
        assert code == 0, err
    rows = pd.read_parquet(out)
    assert len(rows) == 3
    assert sorted(p.name for p in hm.iterdir()) == sorted(rows["heatmap"])


# --- gate fit --out and its bundle -------------------------------------------------------------


def _gate(capsys: pytest.CaptureFixture[str], data_dir: Path, out: Path,
          bundle: Path | None = None) -> tuple[int, str, str]:
    return run(capsys, "gate", "fit", str(bundle or default_bundle_path()), "--data",
               str(data_dir), "--split", str(SPLIT), "--out", str(out), "-q")


def test_gate_fit_never_deletes_a_folder_that_is_not_a_bundle(
        capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    code, _, err = _gate(capsys, data_dir, work)
    one_error(code, err, f"--out {work} exists and is not a model bundle", "a new or empty folder")
    assert (work / "notes.txt").read_text() == "mine"


def test_gate_fit_out_may_not_hold_or_be_an_input(capsys: pytest.CaptureFixture[str],
                                                  data_dir: Path, tmp_path: Path) -> None:
    bundle = default_bundle_path()
    code, _, err = _gate(capsys, data_dir, bundle.parent)
    one_error(code, err, f"--out {bundle.parent} holds the bundle")
    code, _, err = _gate(capsys, data_dir, data_dir)
    one_error(code, err, f"--out {data_dir} is the --data path")
    code, _, err = _gate(capsys, data_dir, bundle / "copy")
    one_error(code, err, "is inside the bundle")
    assert not (bundle / "copy").exists()
    code, _, err = _gate(capsys, data_dir, SPLIT)
    one_error(code, err, f"cannot write --out {SPLIT}: it is a file, not a folder")


def test_gate_fit_names_a_missing_bundle_first(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # outside the repository: no ../shared/data here
    code, _, err = run(capsys, "gate", "fit", "nope")
    assert_bundle_error_line(code, err, "model bundle not found: nope")


# --- predict: one unreadable image among good ones --------------------------------------------


def test_predict_reports_an_unreadable_image_and_scores_the_others(
        data_dir: Path, sample_ids: list[str], tmp_path: Path) -> None:
    good, locked = tmp_path / "good.jpg", tmp_path / "unreadable.jpg"
    shutil.copy(data_dir / "images" / f"{sample_ids[0]}.jpg", good)
    shutil.copy(data_dir / "images" / f"{sample_ids[1]}.jpg", locked)
    locked.chmod(0)
    cmd = [sys.executable, "-c", "from dermsight.cli import main; main()", "predict",
           str(good), str(locked), "--json"]
    if os.geteuid() == 0:  # root reads any file: drop the capabilities that let it
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run as root without file-permission override")
        drop = "-dac_override,-dac_read_search"
        cmd = ["setpriv", "--bounding-set", drop, "--inh-caps", drop, *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 1, r.stderr
    results = json.loads(r.stdout)
    assert "probabilities" in results[0]
    assert results[1]["file"] == str(locked)
    assert "Permission denied" in results[1]["error"]
    assert f"error: {locked}: cannot read" in r.stderr
    assert "Usage" not in r.stderr


# --- the facade: RGBA arrays and predict_batch's numbering ------------------------------------


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


def test_a_transparent_rgba_array_is_refused_as_its_pillow_image_is(
        model: Dermsight, sample_image: Path) -> None:
    rgb = np.asarray(Image.open(sample_image).convert("RGB"))
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])  # fully transparent
    with pytest.raises(ImageDecodeError) as from_pil:
        model.predict(Image.fromarray(rgba, "RGBA"))
    with pytest.raises(ImageDecodeError) as from_array:
        model.predict(rgba)
    assert str(from_array.value) == str(from_pil.value)
    assert "transparent areas (100% of its pixels)" in str(from_array.value)


def test_an_opaque_rgba_array_is_its_rgb_pixels(model: Dermsight, sample_image: Path) -> None:
    rgb = np.asarray(Image.open(sample_image).convert("RGB"))
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[0, :3] = 0  # a few stray transparent pixels are fine, as in a file
    rgba = np.dstack([rgb, alpha])
    assert np.array_equal(model.load_image(rgba), rgb)
    assert model.predict(rgba, heatmap=False).probabilities == pytest.approx(
        model.predict(rgb, heatmap=False).probabilities, abs=1e-6)


def test_predict_batch_counts_its_images_from_one(model: Dermsight, sample_image: Path,
                                                  tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture")
    with pytest.raises(ImageDecodeError, match=r"^predict_batch: image 2 of 2 \(.*bad\.jpg\)"):
        model.predict_batch([sample_image, bad])
    with pytest.raises(ImageDecodeError, match=r"^predict_batch: image 1 of 2 \(.*bad\.jpg\)"):
        model.predict_batch([bad, sample_image])
    with pytest.raises(TaxonomyError, match=r"^predict_batch: meta 2: unknown sex"):
        model.predict_batch([sample_image, sample_image], [None, {"sex": "x"}])
