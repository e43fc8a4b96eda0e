"""Progress bars on the long commands: each pass over many images shows a bar on stderr that
names its work, ``-q/--quiet`` turns it off, and stdout (JSON where the command prints JSON)
carries none of it. Run on small subsets of the real shared images."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_support import labelled_subset, run
from dermsight.bundle import default_bundle_path
from dermsight.splits import split_sha256

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "configs" / "default-split.csv"


@pytest.fixture
def clinic(tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> Path:
    return labelled_subset(tmp_path / "clinic", data_dir, metadata, per_class=1)


def test_data_summary_bar_is_on_stderr_and_quiet_removes_it(
        clinic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "data", "summary", str(clinic), "--json")
    assert code == 0, err
    assert "reading" in err
    assert json.loads(out)["n_images"] == len(list((clinic / "images").iterdir()))
    code, quiet_out, err = run(capsys, "data", "summary", str(clinic), "--json", "--no-progress")
    assert code == 0, err
    assert "reading" not in err
    assert json.loads(quiet_out) == json.loads(out)


def _small_split_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shipped bundle whose card records a small split of the bundle's own images
    (two training and one test image per class), and that split's CSV."""
    split = pd.read_csv(SPLIT, dtype=str, keep_default_na=False)
    small = pd.concat([split[split["split"] == "train"].groupby("diagnosis").head(2),
                       split[split["split"] == "test"].groupby("diagnosis").head(1)])
    csv = tmp_path / "split.csv"
    small.to_csv(csv, index=False)
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), bundle)
    card = json.loads((bundle / "card.json").read_text(encoding="utf-8"))
    card["data"]["split_sha256"] = {
        name: split_sha256(small.loc[small["split"] == name, "image_id"])
        for name in ("train", "test")}
    (bundle / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return bundle, csv


def test_reference_build_shows_both_scoring_passes_on_stderr(
        tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle, csv = _small_split_bundle(tmp_path)
    args = ["reference", "build", str(bundle), "--data", str(data_dir), "--data",
            str(data_dir.parent / "isic2020-sample"), "--split", str(csv), "--per-class", "2"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "scoring reference images" in err
    assert "scoring test images" in err
    assert "scoring" not in out  # the figures go to stdout, the bars never
    assert "classifier accuracy" in out
    assert re.search(r"scoring reference images: 100%.* (\d+)/\1 ", err)  # kept in a log
    with np.load(bundle / "reference" / "reference.npz") as z:
        first = z["embedding"].copy()
    code, quiet_out, err = run(capsys, *args, "--quiet")
    assert code == 0, err
    assert "scoring" not in err
    assert "classifier accuracy" in quiet_out
    with np.load(bundle / "reference" / "reference.npz") as z:
        assert np.array_equal(z["embedding"], first)  # the bar changes nothing computed


def test_gate_feature_passes_count_their_images(data_dir: Path, metadata: pd.DataFrame,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``gate fit`` refits one-folder bundles only (the shipped one is not): its passes are
    checked through the functions it runs, with the bars the command makes."""
    from dermsight.predict import Dermsight
    from dermsight.progress import progress_bars
    from dermsight.records import Metadata
    from dermsight.train.gate_fit import gate_features
    from dermsight.train.gate_refit import DermoSet, _dermo_features

    ids = metadata.sort_values("image_id")["image_id"].head(5).tolist()
    dset = DermoSet(ids=ids, paths=[str(data_dir / "images" / f"{i}.jpg") for i in ids],
                    metas=[Metadata.lenient(None, None, None)] * 5, sources=["x"] * 5,
                    labels=["NV"] * 5)
    model = Dermsight.load(None, threads=1)
    shown = _dermo_features(model, dset, "train", progress_bars(True))
    err = capsys.readouterr().err
    assert "decoding train images" in err
    assert "gate features: train images" in err
    assert "5/5" in err
    silent = _dermo_features(model, dset, "train", progress_bars(False))
    assert capsys.readouterr().err == ""
    assert np.array_equal(shown.embedding, silent.embedding)
    from dermsight.io.decode import decode_image

    plain = gate_features(model, [decode_image(p) for p in dset.paths], dset.metas)
    assert np.array_equal(plain.embedding, shown.embedding)
    assert np.array_equal(plain.quality_blocked, shown.quality_blocked)


def test_bundle_adapt_quiet_scores_without_a_bar(
        tmp_path: Path, clinic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bundle", "adapt", str(clinic), "--name", "Clinic Q"]
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "a"))
    assert code == 4, err  # too few cases: refused after scoring them
    assert "scoring" in err
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "b"), "-q")
    assert code == 4, err
    assert "scoring" not in err
    assert "an update needs at least 100" in err


def test_evaluate_quiet_scores_without_a_bar(
        tmp_path: Path, clinic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = str(default_bundle_path())
    code, out, err = run(capsys, "evaluate", bundle, str(clinic), "--out", str(tmp_path / "e"))
    assert code == 0, err
    assert "scoring" in err
    assert "scoring" not in out
    code, out, err = run(capsys, "evaluate", bundle, str(clinic), "--out", str(tmp_path / "q"),
                         "--quiet")
    assert code == 0, err
    assert "scoring" not in err
    assert "report:" in out


def test_distill_targets_bar_counts_the_training_images(
        tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    sets = [f"data.root={data_dir}", "data.limit=24"]
    args = ["distill-targets", "--bundle", str(default_bundle_path()),
            "--config", str(REPO / "configs" / "default.yaml")]
    for s in sets:
        args += ["--set", s]
    code, out, err = run(capsys, *args, "--out", str(tmp_path / "t.npz"))
    assert code == 0, err
    assert "scoring training images with 1 teacher(s)" in err
    assert "scoring" not in out
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "q.npz"), "-q")
    assert code == 0, err
    assert "scoring" not in err
    with np.load(tmp_path / "t.npz") as a, np.load(tmp_path / "q.npz") as b:
        assert np.array_equal(a["p"], b["p"])


def test_predict_json_of_several_images_counts_them_on_stderr(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data_dir: Path,
        sample_ids: list[str]) -> None:
    """--json prints only at the end: until then a bar on a terminal says how far it is (off a
    terminal, as in a log, none: batch does the same); stdout stays JSON."""
    files = [str(data_dir / "images" / f"{i}.jpg") for i in sample_ids[:3]]
    code, out, err = run(capsys, "predict", *files, "--json")  # captured: not a terminal
    assert code == 0, err
    assert "assessing images" not in err
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    code, out, err = run(capsys, "predict", *files, "--json")
    assert code == 0, err
    assert [r["file"] for r in json.loads(out)] == files
    assert "assessing images" in err
    assert "/3 [" in err  # counts the three (on a terminal the bar is cleared when done)
    code, quiet_out, err = run(capsys, "predict", *files, "--json", "-q")
    assert code == 0
    assert "assessing images" not in err
    assert [r["probabilities"] for r in json.loads(quiet_out)] == [
        r["probabilities"] for r in json.loads(out)]
    _, _, err = run(capsys, "predict", files[0], "--json")  # one image: no bar
    assert "assessing images" not in err
