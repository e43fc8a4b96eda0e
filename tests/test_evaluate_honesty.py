"""``dermsight evaluate`` reports what the input says now, and says what its figures leave out.

* Labels corrected in the input after scoring are the labels the metrics use when the same
  --out is evaluated again (the changed ones counted and warned of); changed age/sex/site are
  warned of as ``dermsight batch`` warns of them; a label column renamed away is refused.
* Rows that share an id are left out of the metrics, with a warning (``data summary`` counts
  them too).
* A cohort labelled by a binary SIIM-ISIC ``target`` only: the target 0 rows are counted as
  unusable, and no metric needing two classes is shown over the melanomas alone.
* Input without labels, or not there, is refused before anything is scored or written, naming
  the accepted label columns; ``data summary`` says a dataset has no labels.
* Evaluated images of the bundle's training / validation split are counted and warned of.
* ``batch --out`` where the file system refuses a folder: one line, exit 2.

Real images: the shared isic-subset (``conftest.DATA``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from cli_support import labelled_subset, run
from dermsight.batch.summary import sidecar
from dermsight.bundle import default_bundle_path, load_bundle
from dermsight.io.csvfolder import LABEL_COLS


def _evaluation(out: Path) -> dict:
    return json.loads(sidecar(out / "scores", "evaluation.json").read_text(encoding="utf-8"))


def _class_n(evaluation: dict, code: str) -> int:
    return next(int(c["n"]) for c in evaluation["per_class"] if c["code"] == code)


def _images(root: Path, data_dir: Path, ids: list[str]) -> None:
    (root / "images").mkdir(parents=True)
    for i in ids:
        shutil.copy(data_dir / "images" / f"{i}.jpg", root / "images" / f"{i}.jpg")


def test_labels_corrected_after_scoring_are_used(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = labelled_subset(tmp_path / "data", data_dir, metadata, per_class=2)
    out = tmp_path / "ev"
    bundle = str(default_bundle_path())
    code, _, err = run(capsys, "evaluate", bundle, str(data), "--out", str(out), "-q")
    assert code == 0, err
    before = _evaluation(out)
    md = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    nv = md.index[md["diagnosis"] == "NV"][:2]
    md.loc[nv, "diagnosis"] = "MEL"  # two labels corrected after scoring
    md.loc[md.index[0], "age_approx"] = "85"  # and one age
    md.to_csv(data / "metadata.csv", index=False)

    code, _, err = run(capsys, "evaluate", bundle, str(data), "--out", str(out), "-q")
    assert code == 0, err
    after = _evaluation(out)
    assert _class_n(after, "MEL") == _class_n(before, "MEL") + 2
    assert _class_n(after, "NV") == _class_n(before, "NV") - 2
    assert after["input_labels"]["relabelled"] == 2
    assert "2 labels of the input differ from those stored with the scores" in err
    assert f"{md.loc[nv[0], 'image_id']}: NV -> MEL" in err
    assert "differ from the input's metadata now (age/sex/site)" in err

    # the label column renamed: refused before anything is scored, naming the accepted ones
    md.rename(columns={"diagnosis": "histo_dx"}).to_csv(data / "metadata.csv", index=False)
    code, _, err = run(capsys, "evaluate", bundle, str(data), "--out", str(out), "-q")
    assert code == 2, err
    assert "Traceback" not in err
    assert "nothing to evaluate" in err
    assert all(c in err for c in LABEL_COLS)


def test_repeated_ids_are_left_out_and_counted(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = labelled_subset(tmp_path / "data", data_dir, metadata, per_class=2)
    md = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    twin = md.iloc[[0]].assign(diagnosis="MEL" if md.iloc[0]["diagnosis"] != "MEL" else "NV")
    pd.concat([md, twin]).to_csv(data / "metadata.csv", index=False)  # one id, two labels
    out = tmp_path / "ev"
    code, _, err = run(capsys, "evaluate", str(default_bundle_path()), str(data),
                       "--out", str(out), "-q")
    assert code == 0, err
    assert "repeat an id of an earlier row" in err
    assert "left out of the metrics" in err
    evaluation = _evaluation(out)
    # both rows of the repeated id are left out (as the images the gate refused)
    assert evaluation["n"] + evaluation["gate_refused"]["images"] == len(md) - 1
    assert evaluation["input_labels"]["repeated"] == 2

    code, printed, err = run(capsys, "data", "summary", str(data), "--no-verify",
                             "--no-progress")
    assert code == 0, err
    assert "rows repeating an id of an earlier row: 1" in printed
    code, printed, err = run(capsys, "data", "summary", str(data), "--no-verify",
                             "--no-progress", "--json")
    assert json.loads(printed)["n_duplicate_ids"] == 1


def test_binary_target_cohort(tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
                              capsys: pytest.CaptureFixture[str]) -> None:
    rows = metadata.sort_values("image_id")
    mel = rows[rows["diagnosis"] == "MEL"].head(4)
    other = rows[rows["diagnosis"] == "NV"].head(5)
    data = tmp_path / "siim"
    _images(data, data_dir, [*mel["image_id"], *other["image_id"]])
    pd.DataFrame({"image_name": [*mel["image_id"], *other["image_id"]],
                  "target": [1] * len(mel) + [0] * len(other)}).to_csv(
        data / "metadata.csv", index=False)
    out = tmp_path / "ev"
    code, _, err = run(capsys, "evaluate", str(default_bundle_path()), str(data),
                       "--out", str(out), "-q")
    assert code == 0, err
    assert "5 rows without a usable label" in err
    assert "target 0 (benign, diagnosis unknown)" in err
    evaluation = _evaluation(out)
    assert evaluation["input_labels"]["no_label"] == 5
    assert evaluation["metrics"]["balanced_accuracy"] is None
    assert evaluation["withheld"]["reason"] == "one class only (MEL)"
    html = sidecar(out / "scores", "report.html").read_text(encoding="utf-8")
    assert "rows without a usable label (left out)</th><td>5<" in html
    assert "balanced and overall accuracy and the mean AUC are withheld" in html


def test_unlabelled_or_missing_input_is_refused_before_scoring(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = labelled_subset(tmp_path / "data", data_dir, metadata, per_class=1)
    md = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    md.drop(columns=["diagnosis"]).to_csv(data / "metadata.csv", index=False)
    bundle = str(default_bundle_path())
    out = tmp_path / "ev"
    code, _, err = run(capsys, "evaluate", bundle, str(data), "--out", str(out), "-q")
    assert code == 2, err
    assert "Traceback" not in err
    assert "nothing to evaluate" in err
    assert all(c in err for c in LABEL_COLS)
    assert not out.exists()  # nothing scored, nothing written

    code, _, err = run(capsys, "evaluate", bundle, str(tmp_path / "nonexist"),
                       "--out", str(out), "-q")
    assert code == 2, err
    assert not out.exists()

    code, printed, err = run(capsys, "data", "summary", str(data), "--no-verify",
                             "--no-progress")
    assert code == 0, err
    assert "no labels" in printed
    assert all(c in printed for c in LABEL_COLS)


def test_images_of_the_bundles_training_split_are_counted(
        tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split = pd.read_csv(Path(__file__).resolve().parents[1] / "configs" / "default-split.csv",
                        dtype=str, keep_default_na=False)
    md = pd.read_csv(data_dir / "metadata.csv", dtype=str, keep_default_na=False)
    md = md.merge(split[["image_id", "split"]], on="image_id").sort_values("image_id")
    md = md[md["diagnosis"].isin(["MEL", "NV"])]
    picked = pd.concat([md[(md["split"] == s) & (md["diagnosis"] == d)].head(n)
                        for s, n in (("train", 2), ("val", 1), ("test", 3))
                        for d in ("MEL", "NV")])
    data = tmp_path / "data"
    _images(data, data_dir, list(picked["image_id"]))
    picked.drop(columns=["split"]).to_csv(data / "metadata.csv", index=False)
    out = tmp_path / "ev"
    code, _, err = run(capsys, "evaluate", str(default_bundle_path()), str(data),
                       "--out", str(out), "-q")
    assert code == 0, err
    evaluation = _evaluation(out)
    overlap = evaluation["training_overlap"]
    assert overlap["checked"] is True
    # 4 train, 2 val and 6 test images picked; an image the gate refused is not evaluated
    assert overlap["train"] + overlap["val"] + overlap["test"] == evaluation["n"]
    assert 12 - evaluation["gate_refused"]["images"] == evaluation["n"]
    assert overlap["train"] >= 3
    assert overlap["val"] >= 1
    assert overlap["test"] >= 5
    used = overlap["train"] + overlap["val"]
    assert f"{used} evaluated images were used to train / calibrate this model" in err
    assert "optimistic" in overlap["caveat"]
    assert evaluation["held_out"]["n"] == overlap["test"]
    html = sidecar(out / "scores", "report.html").read_text(encoding="utf-8")
    assert "used to train or calibrate this model" in html

    # a card whose split is nowhere to be found: said, not passed over
    from dermsight.batch.summary import training_overlap

    card = load_bundle(default_bundle_path()).card
    other = replace(card, extra={**card.extra, "data": {"split_sha256": {"train": "0" * 64}}})
    unknown = training_overlap(other, tmp_path, ["ISIC_0000000"])
    assert not unknown.checked
    assert "could not be checked" in unknown.warning()


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs /sys")
def test_batch_out_the_file_system_refuses(tmp_path: Path, data_dir: Path,
                                           metadata: pd.DataFrame,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = labelled_subset(tmp_path / "data", data_dir, metadata, per_class=1)
    code, _, err = run(capsys, "batch", str(data), "--out", "/sys/dermsight-x", "-q")
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: cannot write --out /sys/dermsight-x")
