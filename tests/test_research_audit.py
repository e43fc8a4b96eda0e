"""What a research engineer retraining on a new cohort met: a reference set refused for its
cohort's licences as if the bundle were broken, a temperature fit stuck on its search bound
without a word, config errors that named the wrong setting (or none), and a refused local update
that drew a progress bar from the facade and left its scores folder unexplained."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_support import run
from dermsight.bundle import default_bundle_path
from dermsight.train.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "configs" / "default.yaml"
SPLIT = REPO / "configs" / "default-split.csv"


# --- config: each setting's own range before the relations between settings -------------------


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.epochs=-1"], "train.epochs must be >= 1, got -1"),
    (["train.epochs=0", "train.swa_from=0"], "train.epochs must be >= 1, got 0"),
    (["train.batch_size=1"], "train.batch_size must be >= 2, got 1"),
    (["train.epochs=1", "train.warmup_epochs=5"],
     "train.warmup_epochs (5) must not exceed train.epochs (1)"),
    (["train.epochs=2", "train.warmup_epochs=2.5"],
     "train.warmup_epochs (2.5) must not exceed train.epochs (2)"),
])
def test_a_config_error_names_the_setting_that_is_wrong(overrides: list[str], message: str
                                                        ) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT, overrides)
    assert str(err.value).startswith(message), str(err.value)


def test_a_warmup_as_long_as_the_run_is_still_accepted() -> None:
    """The tiny runs (``train.epochs=1`` with the default one-epoch warmup) keep working."""
    assert load_config(DEFAULT, ["train.epochs=1"]).train.warmup_epochs == 1
    assert load_config(DEFAULT, ["train.epochs=3", "train.warmup_epochs=0"]).train.epochs == 3
    with pytest.raises(ConfigError, match="swa_from"):  # the relation is still checked
        load_config(DEFAULT, ["train.epochs=3", "train.swa_from=4"])


def test_train_cli_names_epochs_not_swa_from(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, _, err = run(capsys, "train", "--config", str(DEFAULT), "--set", "train.epochs=-1",
                       "--out", str(tmp_path / "run"))
    assert code == 2, err
    assert "error: train.epochs must be >= 1, got -1" in err
    assert "swa_from" not in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


# --- calibration: a temperature on a bound of its search is said ------------------------------


def _uninformative(n: int = 400, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, classes)), rng.integers(0, classes, n)


def test_a_temperature_on_the_upper_bound_is_warned_of(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Logits that say nothing about the labels: the NLL falls all the way to T = 20, where
    every probability is about 1/4. Training's own call (``fit_temperature``) warns on stderr."""
    from dermsight.train.calibrate import fit_temperature

    logits, labels = _uninformative()
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(20.0, abs=1e-3)
    err = capsys.readouterr().err
    assert err.startswith("warning: temperature scaling stopped at the upper bound")
    assert "close to 1/4 (25 %)" in err


def test_the_bound_is_returned_and_gives_a_card_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.train.calibrate import (
        fit_temperature_checked,
        temperature_bound,
        temperature_limitation,
    )

    logits, labels = _uninformative()
    said: list[str] = []
    fit = fit_temperature_checked(logits, labels, warn=said.append)
    assert fit.at_bound == "upper"
    assert len(said) == 1
    assert capsys.readouterr().err == ""  # the caller's warn, not stderr
    # every validation image right: sharpening only helps, down to the lower bound
    right = fit_temperature_checked(logits * 5, logits.argmax(axis=1), warn=said.append)
    assert right.at_bound == "lower"
    assert "lower bound" in said[-1]
    # a real fit inside the bounds: nothing said
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    informative = rng.normal(size=(400, 4))
    informative[np.arange(400), y] += 2
    inside = fit_temperature_checked(informative, y, warn=said.append)
    assert inside.at_bound is None
    assert len(said) == 2
    # the auditor's run: 19.99993 is on the bound; the card's line says what it means
    assert temperature_bound(19.99993) == "upper"
    assert temperature_bound(1.3) is None
    line = temperature_limitation(19.99993, 4)
    assert line is not None
    assert line.startswith("Calibration: Temperature scaling stopped at the upper bound")
    assert temperature_limitation(1.3, 4) is None


# --- reference build: a cohort's licences ----------------------------------------------------


def _train_rows(source: str, **extra: str) -> pd.DataFrame:
    rows = [{"image_id": f"C_{i:03d}", "diagnosis": code, "source": source, "root": "cohort",
             "source_path": "", **extra}
            for i, code in enumerate(["MEL", "NV"] * 4)]
    return pd.DataFrame(rows)


def test_reference_without_licences_is_a_data_error_naming_the_column() -> None:
    from dermsight.reference_build import ReferenceDataError, select_reference

    with pytest.raises(ReferenceDataError) as err:
        select_reference(_train_rows("clinic-x"), ["MEL", "NV"], per_class=3, seed=0)
    said = str(err.value)
    assert "MEL (4 training images), NV (4 training images)" in said
    assert "thumbnail" in said
    assert "'licence' column" in said
    assert "metadata.csv" in said


def test_a_licence_column_lets_a_cohort_into_the_reference_set(tmp_path: Path) -> None:
    from dermsight import similar
    from dermsight.reference_build import DATASETS, select_reference, thumbnail, write_reference

    rows = _train_rows("clinic-x", License="CC BY 4.0", attribution="Clinic X, 2026")
    rows.loc[rows.index[-1], "License"] = ""  # one image without: left out
    picked, datasets = select_reference(rows, ["MEL", "NV"], per_class=3, seed=0)
    assert len(picked) == 6
    assert rows.iloc[-1]["image_id"] not in set(picked["image_id"])
    assert list(datasets[: len(DATASETS)]) == [dict(d) for d in DATASETS]
    assert set(picked["dataset"]) == {len(DATASETS)}
    stated = datasets[len(DATASETS)]
    assert (stated["name"], stated["licence"], stated["attribution"]) == (
        "clinic-x", "CC BY 4.0", "Clinic X, 2026")
    # written and read back as serving reads it: each case carries the stated licence
    rng = np.random.default_rng(0)
    thumbs = [thumbnail(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
              for _ in range(len(picked))]
    write_reference(tmp_path, picked, rng.normal(size=(len(picked), 8)), thumbs, {},
                    datasets)
    ref = similar.ReferenceSet.load(tmp_path)
    assert ref is not None
    case = ref.nearest(rng.normal(size=8), k=1)[0]
    assert (case.licence, case.attribution) == ("CC BY 4.0", "Clinic X, 2026")
    from PIL import Image

    assert Image.open(io.BytesIO(ref.thumbnail(case.image_id) or b"")).format == "WEBP"


def test_credits_keep_non_commercial_while_cc_by_nc_images_are_in_the_set(
        tmp_path: Path) -> None:
    """A set with a cohort's own images (licence column) and ISIC-archive images under
    CC BY-NC still says non-commercial use for the latter; a set of the cohort's alone does
    not."""
    import json

    from dermsight import similar
    from dermsight.reference_build import DATASETS, select_reference, thumbnail, write_reference

    picked, datasets = select_reference(_train_rows("clinic-x", License="CC BY 4.0"),
                                        ["MEL", "NV"], per_class=3, seed=0)
    nc = next(i for i, d in enumerate(DATASETS) if "NC" in d["licence"])
    rng = np.random.default_rng(0)
    thumbs = [thumbnail(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
              for _ in range(len(picked))]

    def description(picked: pd.DataFrame, root: Path) -> str:
        write_reference(root, picked, rng.normal(size=(len(picked), 8)), thumbs, {}, datasets)
        credits = json.loads((root / similar.REFERENCE_CREDITS).read_text(encoding="utf-8"))
        return str(credits["description"])

    mixed = picked.copy()
    mixed.loc[mixed.index[0], "dataset"] = nc
    said = description(mixed, tmp_path / "mixed")
    assert ("Non-commercial research use for the ISIC-archive images (CC BY-NC); other images "
            "under their stated licence.") in said
    assert "Non-commercial" not in description(picked, tmp_path / "own")


def test_reference_build_of_a_cohort_without_licences_exits_2(
        tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped model's own training images, relabelled as a cohort of another source (no
    licence known): a data error (exit 2) that says what to add, not a broken bundle (exit 3);
    nothing is written to the bundle."""
    others = sorted(f for f in data_dir.parent.iterdir()
                    if f != data_dir and (f / "metadata.csv").exists())
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    md = pd.read_csv(data_dir / "metadata.csv", dtype=str, keep_default_na=False)
    md["source"] = "clinic-x"
    md["source_path"] = ""
    md.to_csv(cohort / "metadata.csv", index=False)
    (cohort / "images").symlink_to(data_dir / "images")
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), bundle, ignore=shutil.ignore_patterns("model.onnx"))
    (bundle / "model.onnx").symlink_to(default_bundle_path() / "model.onnx")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in bundle.rglob("*"))
    code, _, err = run(capsys, "reference", "build", str(bundle), "--data", str(cohort),
                       *[a for f in others for a in ("--data", str(f))],
                       "--split", str(SPLIT), "-q")
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert "model bundle" not in errors[0]
    assert "no training image with a known licence for class" in errors[0]
    assert "'licence' column" in errors[0]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in bundle.rglob("*")) == before


# --- a refused local update from the facade ---------------------------------------------------


def test_facade_adapt_refused_draws_no_bar_and_says_why_scores_stay(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    from dermsight import Dermsight
    from dermsight.local_update import UpdateRefused, scores_path

    split = pd.read_csv(SPLIT)
    val = set(split.loc[split["split"] == "val", "image_id"])
    rows = metadata[(metadata["source"] == "ham10000") & metadata["diagnosis"].isin(["NV", "BKL"])
                    & metadata["image_id"].isin(val)]
    clinic = tmp_path / "cohort"
    clinic.mkdir()
    rows.sort_values("image_id").groupby("diagnosis").head(12).to_csv(
        clinic / "metadata.csv", index=False)
    (clinic / "images").symlink_to(data_dir / "images")
    out = tmp_path / "bundles" / "clinic-a"
    out.parent.mkdir()
    capsys.readouterr()
    with pytest.raises(UpdateRefused) as refused:
        Dermsight.load().adapt(clinic, out=out, name="Clinic A")
    err = capsys.readouterr().err
    assert "scoring" not in err  # the facade draws no bar, as its other calls do not
    assert "img/s" not in err
    said = str(refused.value)
    assert "an update needs at least 100" in said
    assert f"kept in {scores_path(out)}" in said
    assert "re-run" in said
    assert not out.exists()
    assert scores_path(out).is_dir()  # kept on purpose: a re-run resumes them
