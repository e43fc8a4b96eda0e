"""Follow-ups of a review of the batch, facade, data and TFRecord changes.

* ``batch --evaluate`` does not read its input again when every output row is its own, and a
  failed second read (the input moved) makes the evaluation "unavailable" with the reason, after
  the rows and ``_summary.json`` are written, instead of escaping after all the scoring.
* The summary's line about output rows the input does not list says they may be this input's
  own images no longer listed, with the right plural.
* ``benchmarks/bench_batch_resume.py`` runs (it read a removed attribute).
* An RGBA array's alpha is read on its own scale: an opaque float alpha of 1.0 beside float RGB
  0-255 is accepted; an alpha out of range is named as the alpha.
* ``data summary --plot`` writes the file types matplotlib writes (.jpg, .tif, ...).
* Many wrong references into one shard walk its record headers once, and a rewritten shard is
  walked again.

Real images: the shared isic-subset (labelled, ``metadata.csv``).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cli_support import run
from dermsight.batch.local import run_local
from dermsight.batch.options import ScoreOptions
from dermsight.batch.store import read_output
from dermsight.batch.summary import sidecar
from dermsight.io import tfrecord
from dermsight.io.decode import ImageDecodeError
from dermsight.io.tfrecord import iter_tfrecord, load_tfrecord_image, write_tfrecord
from dermsight.predict import Dermsight

REPO = Path(__file__).resolve().parents[1]
WRONG = "the reference is wrong or stale; the shard itself may be fine"


def _labelled(root: Path, data: Path, meta: pd.DataFrame) -> Path:
    """``root``: the images of ``meta``'s rows beside their own ``metadata.csv`` (labels)."""
    root.mkdir(parents=True)
    for i in meta["image_id"]:
        shutil.copyfile(data / "images" / f"{i}.jpg", root / f"{i}.jpg")
    meta.to_csv(root / "metadata.csv", index=False)
    return root


@pytest.fixture
def two_labelled(tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> tuple[Path, Path]:
    """Two labelled inputs of 6 real images each, no image in common."""
    rows = metadata.sort_values("image_id")
    return (_labelled(tmp_path / "A", data_dir, rows.iloc[:6]),
            _labelled(tmp_path / "B", data_dir, rows.iloc[6:12]))


# --- 1. --evaluate and the input read once more ----------------------------------------------


def test_evaluate_of_an_output_that_is_all_its_own_counts_its_rows(
        tmp_path: Path, two_labelled: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    # (it used to skip a second read of the input here; the evaluation now reads the input's
    # labels as they are now in any case: tests/test_evaluate_honesty.py)
    a, _ = two_labelled
    out = tmp_path / "out"
    code, text, err = run(capsys, "batch", str(a), "--out", str(out), "--evaluate", "-q")
    assert code == 0, err
    # the images the gate refused ("cannot assess") are not evaluated
    assessed = 6 - int((read_output(out)["risk"] == "cannot_assess").sum())
    assert json.loads(sidecar(out, "evaluation.json").read_text())["n"] == assessed
    assert json.loads((out / "_summary.json").read_text())["not_listed"] == 0
    assert "does not list" not in text
    # a re-run with everything done reads the input once through ``pending`` and still knows
    code, text, err = run(capsys, "batch", str(a), "--out", str(out), "--evaluate", "-q")
    assert code == 0, err
    assert "0 scored, 0 errors, 6 already done (skipped)" in text
    assert json.loads(sidecar(out, "evaluation.json").read_text())["n"] == assessed
    html = sidecar(out, "report.html").read_text(encoding="utf-8")
    assert "output rows of this input</th><td>6<" in html
    assert "output rows of other inputs (left out)</th><td>0<" in html


def test_an_input_gone_before_its_evaluation_keeps_the_run_and_says_why(
        tmp_path: Path, two_labelled: tuple[Path, Path]) -> None:
    """The output also holds another input's rows, so the input is read again to find its own:
    it was moved away after its last part was written (``on_part``)."""
    a, b = two_labelled
    out = tmp_path / "out"
    run_local(a, out, ScoreOptions(workers=1), progress=False)
    moved = tmp_path / "B-moved"

    def move_input(_part: Path) -> None:
        b.rename(moved)

    summary = run_local(b, out, ScoreOptions(workers=1, evaluate=True), progress=False,
                        on_part=move_input)
    assert not b.exists()
    assert summary.scored == 6
    reason = summary.evaluation["unavailable"]
    assert reason.startswith("--evaluate: the input could not be read again to find its rows "
                             "in the output (")
    assert str(b) in reason
    assert reason.endswith("); the scores are kept: run the same command again to evaluate "
                           "them")
    assert "\n" not in reason
    saved = json.loads((out / "_summary.json").read_text())
    assert saved["evaluation"] == {"unavailable": reason}
    assert saved["scored"] == 6
    assert len(read_output(out)) == 12
    assert not sidecar(out, "evaluation.json").exists()
    # put back, the same command evaluates this input's rows alone
    moved.rename(b)
    again = run_local(b, out, ScoreOptions(workers=1, evaluate=True), progress=False)
    assert (again.scored, again.skipped, again.not_listed) == (0, 6, 6)
    assert json.loads(sidecar(out, "evaluation.json").read_text())["n"] == 6


# --- 2. the summary line about rows the input does not list ----------------------------------


def test_an_image_no_longer_listed_is_not_called_another_inputs(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ids = sorted(metadata["image_id"])[:4]
    for i in ids:
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(folder), "--out", str(out), "-q")
    assert code == 0, err
    (folder / f"{ids[0]}.jpg").unlink()
    code, text, err = run(capsys, "batch", str(folder), "--out", str(out), "-q")
    assert code == 0, err
    assert ("\nthe output also holds 1 row this input does not list (another input's, or images "
            "no longer listed)\n") in text
    for i in ids[1:3]:
        (folder / f"{i}.jpg").unlink()
    code, text, err = run(capsys, "batch", str(folder), "--out", str(out), "-q")
    assert code == 0, err
    assert "the output also holds 3 rows this input does not list (another input's" in text


# --- 3. the resume benchmark runs -------------------------------------------------------------


def test_the_resume_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_batch_resume.py"), "--n", "1100",
         "--repeat", "1", "--results", str(results)],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run0 = json.loads(results.read_text())["runs"]["after"][0]
    assert run0["skipped"] == 1100  # every row of the output is already done
    assert run0["output_total"]["rows"] == 1100
    assert run0["part_reads"] == 2  # 1,024-row parts


# --- 4. an RGBA array's alpha on its own scale -------------------------------------------------


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.fixture(scope="module")
def rgb(sample_image: Path) -> np.ndarray:
    with Image.open(sample_image) as img:
        return np.asarray(img.convert("RGB").resize((96, 72)))


def test_an_opaque_float_alpha_of_one_is_accepted(model: Dermsight, rgb: np.ndarray) -> None:
    ones = np.ones(rgb.shape[:2])
    got = model.load_image(np.dstack([rgb.astype(np.float64), ones]))
    np.testing.assert_array_equal(got, rgb)
    np.testing.assert_array_equal(
        model.load_image(np.dstack([rgb.astype(np.float32), 255 * ones])), rgb)
    np.testing.assert_array_equal(
        model.load_image(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])), rgb)


def test_a_transparent_float_alpha_is_refused_on_its_scale(model: Dermsight,
                                                           rgb: np.ndarray) -> None:
    alpha = np.ones(rgb.shape[:2])
    alpha[: rgb.shape[0] // 2] = 0.5  # half the pixels half transparent, on 0-1
    with pytest.raises(ImageDecodeError, match=r"transparent areas \(50% of its pixels\)"):
        model.load_image(np.dstack([rgb.astype(np.float64), alpha]))


def test_an_alpha_out_of_range_is_named_as_the_alpha(model: Dermsight, rgb: np.ndarray) -> None:
    alpha = np.full(rgb.shape[:2], 300.0)
    with pytest.raises(ValueError, match=r"alpha values 0-255 \(or 0-1 in a float array\) in "
                                         r"the array's 4th channel, got 300 to 300"):
        model.load_image(np.dstack([rgb.astype(np.float64), alpha]))
    alpha[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"the alpha channel \(the array's 4th\) holds NaN"):
        model.load_image(np.dstack([rgb.astype(np.float64), alpha]))
    # RGB scaled to 0-1 is still refused as before, naming the array's scale
    with pytest.raises(ValueError, match="looks scaled to 0-1"):
        model.load_image(np.dstack([rgb / 255.0, np.ones(rgb.shape[:2])]))


# --- 5. data summary --plot in the file types matplotlib writes --------------------------------


@pytest.fixture
def three_images(tmp_path: Path, data_dir: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for src in sorted((data_dir / "images").glob("*.jpg"))[:3]:
        shutil.copyfile(src, folder / src.name)
    return folder


@pytest.mark.parametrize(("name", "magic"), [("sum.jpg", b"\xff\xd8\xff"),
                                             ("sum.tif", b"II*\x00"),
                                             ("sum.webp", b"RIFF")])
def test_summary_plot_in_other_matplotlib_formats(
        capsys: pytest.CaptureFixture[str], three_images: Path, tmp_path: Path, name: str,
        magic: bytes) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "charts" / name
    code, out, err = run(capsys, "data", "summary", str(three_images), "--no-progress",
                         "--plot", str(plot))
    assert code == 0, err
    assert f"chart written to {plot}" in out
    assert plot.read_bytes().startswith(magic)


def test_summary_plot_refusal_lists_what_matplotlib_writes(
        capsys: pytest.CaptureFixture[str], three_images: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "sum.txt"
    code, out, err = run(capsys, "data", "summary", str(three_images), "--no-progress",
                         "--plot", str(plot))
    assert code == 2
    assert out == ""
    line = err.strip()
    assert "\n" not in line
    assert line.startswith(f"error: cannot write --plot {plot}: the chart is written as "
                           ".png, .svg, .pdf, .jpg, ")
    for suffix in (".tif", ".eps", ".webp"):
        assert suffix in line
    assert ".pgf" not in line  # needs LaTeX
    assert not plot.exists()


# --- 6. wrong references into one shard: its records walked once --------------------------------


@pytest.mark.parametrize("gzipped", [False, True])
def test_many_wrong_references_walk_a_shard_once(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gzipped: bool) -> None:
    files = sorted((data_dir / "images").glob("*.jpg"))[:4]
    shard = write_tfrecord(tmp_path / "s.tfrec",
                           [{"image": f.read_bytes(), "image_name": f.stem} for f in files])
    starts = [int(str(r.path).rpartition("#")[2]) for r in iter_tfrecord(shard, decode=False)]
    end = shard.stat().st_size
    if gzipped:
        shard.write_bytes(gzip.compress(shard.read_bytes()))
    checks = {"n": 0}
    real = tfrecord._header_problem

    def counting(index: int, header: bytes) -> str | None:
        checks["n"] += 1
        return real(index, header)

    monkeypatch.setattr(tfrecord, "_header_problem", counting)
    # 300 stale references, most inside the last record (each walk passes all four headers)
    wrong = [starts[3] + 1 + k for k in range(250)] + [end + k for k in range(50)]
    for offset in wrong:
        with pytest.raises(ImageDecodeError) as info:
            load_tfrecord_image(f"{shard}#{offset}")
        where = (f"it is inside the record at byte {starts[3]}" if offset < end
                 else f"the shard ends at byte {end}")
        assert str(info.value) == f"s.tfrec: no record starts at byte {offset} ({where}): {WRONG}"
    # one header check per reference read at its offset (250: the past-the-end ones read no
    # header), and one walk of the four records; walking per reference made it 250 + 4 x 300
    assert checks["n"] <= 250 + 4 + 1

    # the shard rewritten (two records): walked again, the messages follow its new layout
    shard.unlink()
    shard = write_tfrecord(tmp_path / "s.tfrec",
                           [{"image": f.read_bytes(), "image_name": f.stem} for f in files[:2]])
    new_end = shard.stat().st_size
    if gzipped:
        shard.write_bytes(gzip.compress(shard.read_bytes()))
    with pytest.raises(ImageDecodeError, match=rf"\(the shard ends at byte {new_end}\)"):
        load_tfrecord_image(f"{shard}#{starts[3] + 1}")
