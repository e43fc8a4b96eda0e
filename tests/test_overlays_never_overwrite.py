"""``--heatmaps DIR`` never replaces a file that no row of the output names as its overlay: the
user's own images (a manifest of PNGs named ``<id>.png`` in ``DIR``), an unrelated file, another
output's overlays, or the overlay a killed run wrote for a row it never committed. Such names
count as taken: the overlay gets ``<id>-2.png``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from batch_support import assessable_images, overlay_of, png_pixels
from cli_support import run
from dermsight.batch.options import ScoreOptions
from dermsight.batch.scorer import score_frame
from dermsight.batch.store import read_output
from dermsight.predict import Dermsight


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.fixture(scope="module")
def assessable(model: Dermsight, data_dir: Path, metadata: pd.DataFrame) -> list[Path]:
    """Three real images the gate accepts (each gets an overlay)."""
    return assessable_images(model, data_dir, metadata, 3, 89)


def _png_manifest(images: list[Path], folder: Path, manifest: Path) -> dict[str, bytes]:
    """The images as PNGs named ``<id>.png`` in ``folder``, listed by a CSV manifest; returns
    each file's bytes by id."""
    folder.mkdir(parents=True)
    ids = [p.stem for p in images]
    for i, src in zip(ids, images, strict=True):
        Image.open(src).convert("RGB").save(folder / f"{i}.png")
    pd.DataFrame({"id": ids, "path": [str(folder / f"{i}.png") for i in ids]}).to_csv(
        manifest, index=False)
    return {i: (folder / f"{i}.png").read_bytes() for i in ids}


def _heatmap_column(out: Path) -> dict[str, str]:
    return read_output(out).set_index("id")["heatmap"].to_dict()


def test_heatmaps_into_the_folder_of_a_manifests_png_images_keeps_them(
    model: Dermsight, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images = tmp_path / "images"
    originals = _png_manifest(assessable, images, tmp_path / "manifest.csv")
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(tmp_path / "manifest.csv"), "--out", str(out),
                      "--heatmaps", str(images), "--workers", "2", "-q")
    assert code == 0, err
    # the user's images are untouched ...
    for i, data in originals.items():
        assert (images / f"{i}.png").read_bytes() == data, i
    # ... and each overlay took the next free name, holding that image's own overlay
    assert _heatmap_column(out) == {i: f"{i}-2.png" for i in originals}
    assert sorted(p.name for p in images.iterdir()) == sorted(
        [f"{i}.png" for i in originals] + [f"{i}-2.png" for i in originals])
    for i in originals:
        assert np.array_equal(png_pixels(images / f"{i}-2.png"),
                              overlay_of(model, images / f"{i}.png"))


def test_an_unrelated_file_or_another_outputs_overlay_is_never_replaced(
    model: Dermsight, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(assessable[0], folder / "a.jpg")
    shutil.copyfile(assessable[1], folder / "b.jpg")
    heat = tmp_path / "heat"
    heat.mkdir()
    # the user's own files: one named like a's overlay, one like b's in another case (one
    # file on a case-insensitive file system), one that no overlay name could equal
    Image.open(assessable[2]).save(heat / "a.png")
    mine = (heat / "a.png").read_bytes()
    (heat / "B.PNG").write_bytes(b"not an overlay")
    (heat / "notes.txt").write_text("keep me")
    code, _, err = run(capsys, "batch", str(folder), "--out", str(tmp_path / "one"),
                      "--heatmaps", str(heat), "-q")
    assert code == 0, err
    assert (heat / "a.png").read_bytes() == mine
    assert (heat / "B.PNG").read_bytes() == b"not an overlay"
    assert (heat / "notes.txt").read_text() == "keep me"
    assert _heatmap_column(tmp_path / "one") == {"a": "a-2.png", "b": "b-2.png"}
    first = {name: (heat / name).read_bytes() for name in ("a-2.png", "b-2.png")}
    # a second output into the same folder: the first output's overlays are kept too
    code, _, err = run(capsys, "batch", str(folder), "--out", str(tmp_path / "two"),
                      "--heatmaps", str(heat), "-q")
    assert code == 0, err
    assert _heatmap_column(tmp_path / "two") == {"a": "a-3.png", "b": "b-3.png"}
    assert {name: (heat / name).read_bytes() for name in first} == first
    assert (heat / "a.png").read_bytes() == mine
    assert np.array_equal(png_pixels(heat / "a-3.png"), overlay_of(model, folder / "a.jpg"))


def test_a_resumed_run_keeps_the_overlay_a_killed_run_wrote_for_an_unwritten_row(
    model: Dermsight, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(assessable[0], folder / "a.jpg")
    shutil.copyfile(assessable[1], folder / "b.jpg")
    out, heat = tmp_path / "out", tmp_path / "heat"
    argv = ["batch", str(folder), "--out", str(out), "--heatmaps", str(heat), "-q"]
    code, _, err = run(capsys, *argv, "--limit", "1")
    assert code == 0, err
    assert _heatmap_column(out) == {"a": "a.png"}
    kept = (heat / "a.png").read_bytes()
    # what a run killed after writing b's overlay, before writing b's row, leaves behind
    # (here a file of other bytes, so that a replaced one shows)
    Image.open(assessable[2]).save(heat / "b.png")
    orphan = (heat / "b.png").read_bytes()
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert _heatmap_column(out) == {"a": "a.png", "b": "b-2.png"}
    assert (heat / "a.png").read_bytes() == kept
    assert (heat / "b.png").read_bytes() == orphan  # left in place, named by no row
    assert np.array_equal(png_pixels(heat / "b-2.png"), overlay_of(model, folder / "b.jpg"))


def test_score_frame_without_planned_names_keeps_the_folders_files(
    model: Dermsight, assessable: list[Path], tmp_path: Path,
) -> None:
    heat = tmp_path / "heat"
    heat.mkdir()
    Image.open(assessable[1]).save(heat / "lesion.png")
    mine = (heat / "lesion.png").read_bytes()
    df = pd.DataFrame({"id": ["lesion"], "path": [str(assessable[0])]})
    rows = score_frame(df, model, ScoreOptions(heatmaps=heat, workers=1))
    assert rows["heatmap"].tolist() == ["lesion-2.png"]
    assert (heat / "lesion.png").read_bytes() == mine
    assert np.array_equal(png_pixels(heat / "lesion-2.png"), overlay_of(model, assessable[0]))


@pytest.mark.spark
@pytest.mark.slow
def test_spark_keeps_a_manifests_png_images_in_the_heatmaps_folder(
    model: Dermsight, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")
    images = tmp_path / "images"
    originals = _png_manifest(assessable, images, tmp_path / "manifest.csv")
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(tmp_path / "manifest.csv"), "--out", str(out),
                      "--heatmaps", str(images), "--engine", "spark", "--master", "local[1]",
                      "--partitions", "2", "-q")
    assert code == 0, err
    for i, data in originals.items():
        assert (images / f"{i}.png").read_bytes() == data, i
    assert _heatmap_column(out) == {i: f"{i}-2.png" for i in originals}
    for i in originals:
        got = png_pixels(images / f"{i}-2.png").astype(np.int16)
        assert np.abs(got - overlay_of(model, images / f"{i}.png")).mean() < 1.0, i
