"""A run whose own test figures do not show that it works (a 1-epoch, 32-px smoke run tested on 24
images: balanced accuracy 0.146, chance 0.25) is marked so: its card's status is "not validated",
its intended use research only, its first limitation says why, finalize ends with a warning, and
loading it (``bundle verify``, ``predict``, ``serve``) says one warning line. The shipped model's
card is unchanged. And a bundle copied out of its run folder (``export --out``, ``train
--bundle``) takes the run's split.csv along, so ``dermsight evaluate`` can still check which
evaluated images trained it."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dermsight.bundle import default_bundle_path, load_bundle, write_manifest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = default_bundle_path()
#: the card status of such a run, and how its limitation that says why starts
#: (``bundle.NOT_VALIDATED``, ``bundle.NOT_VALIDATED_LIMITATION_START``)
NOT_VALIDATED = "not validated"
NOT_VALIDATED_LIMITATION_START = "Not for clinical use: "
#: the smoke run's settings (a 1-epoch, 32-px run of four classes)
TINY = ["train.epochs=1", "input.size=32", "data.classes=[MEL, NV, BCC, BKL]",
        "calibration.margin_classes=[]", "model.unspecified_head=false"]


def _ci(value: float | None, lo: float | None, hi: float | None) -> dict[str, Any]:
    return {"value": value, "lo": lo, "hi": hi, "n": 24, "draws": 200, "method": "bootstrap"}


def _tiny_test() -> dict[str, Any]:
    """The card's ``metrics.test`` of the 1-epoch, 32-px run (its headline figures)."""
    return {
        "schema": "dermsight.evaluation/1", "classes": ["MEL", "NV", "BCC", "BKL"], "n": 24,
        "ci_level": 0.95,
        "metrics": {"n": 24, "n_MEL": 6, "n_NV": 12, "n_BCC": 2, "n_BKL": 4, "n_malignant": 8,
                    "balanced_accuracy": 0.14583333333333334, "mel_auc": 0.3333333333333333,
                    "malignant_auc": 0.40625},
        "ci": {"balanced_accuracy": _ci(0.14583333333333334, 0.075, 0.26714285714285724),
               "mel_auc": _ci(0.3333333333333333, 0.022727272727272707, 0.85),
               "malignant_auc": _ci(0.40625, 0.15625, 0.6140625)},
    }


# --- the card finalize writes ---------------------------------------------------------------------


def test_a_smoke_runs_card_says_it_is_not_validated_and_why() -> None:
    pytest.importorskip("torch")
    from dermsight import bundle
    from dermsight.train.config import load_config
    from dermsight.train.finalize.card import (
        intended_use,
        not_validated_limitation,
        validation_concerns,
    )

    assert (bundle.NOT_VALIDATED, bundle.NOT_VALIDATED_LIMITATION_START) == (
        NOT_VALIDATED, NOT_VALIDATED_LIMITATION_START)
    cfg = load_config(REPO / "configs" / "default.yaml", TINY)
    concerns = validation_concerns(cfg, _tiny_test())
    line = not_validated_limitation(concerns)
    assert line is not None
    assert line.startswith(NOT_VALIDATED_LIMITATION_START)
    assert "trained for 1 epoch at 32 px (the shipped recipe: 14 epochs at 160 px)" in line
    assert "tested on 24 images only (fewer than 100)" in line
    assert ("test balanced accuracy 0.146 (95 % CI 0.075-0.267) is at or below chance "
            "(0.25 for 4 classes)") in line
    assert "test melanoma AUC 0.333 (95 % CI 0.023-0.850) is at or below chance (0.5)" in line
    assert "test malignant AUC 0.406" in line
    assert "research use only" in line
    use = intended_use(4, validated=False)
    assert use.startswith("Research use only, not for clinical use")
    assert "Decision support" not in use
    assert "4 ISIC diagnostic classes" in use


def test_each_concern_alone_and_a_figure_not_shown_above_chance() -> None:
    pytest.importorskip("torch")
    from dermsight.train.config import load_config
    from dermsight.train.finalize.card import validation_concerns

    # v1: the eight-class recipe of 10 epochs (a real, evaluated model): only the figures count
    cfg = load_config(REPO / "configs" / "v1.yaml")
    good = {"n": 500, "ci_level": 0.95,
            "metrics": {"balanced_accuracy": 0.6, "mel_auc": 0.85, "malignant_auc": 0.9},
            "ci": {"balanced_accuracy": _ci(0.6, 0.55, 0.65), "mel_auc": _ci(0.85, 0.8, 0.9)}}
    assert validation_concerns(cfg, good) == []
    # a point above chance whose interval reaches down to it is not shown above chance
    weak = json.loads(json.dumps(good))
    weak["ci"]["mel_auc"] = _ci(0.58, 0.49, 0.67)
    weak["metrics"]["mel_auc"] = 0.58
    assert validation_concerns(cfg, weak) == [
        "test melanoma AUC 0.580 (95 % CI 0.490-0.670) is not shown to be above chance (0.5)"]
    # without an interval, the point decides; a withheld figure (None) is no concern
    bare = {"n": 500, "metrics": {"balanced_accuracy": 0.6, "mel_auc": None,
                                  "malignant_auc": 0.5}}
    assert validation_concerns(cfg, bare) == [
        "test malignant AUC 0.500 is at or below chance (0.5)"]
    # too few test images alone
    assert validation_concerns(cfg, {**good, "n": 99}) == [
        "tested on 99 images only (fewer than 100)"]


def test_a_short_run_whose_test_figures_hold_is_not_marked_for_its_length() -> None:
    """6 epochs at 224 px (under half the recipe's 14 epochs) with test figures like the shipped
    model's (2,020 test images, balanced accuracy 0.69, melanoma AUC 0.90, CI 0.88-0.92): no
    concern. Its length is named only beside another concern, or for a subsample run
    (data.limit)."""
    pytest.importorskip("torch")
    from dermsight.train.config import load_config
    from dermsight.train.finalize.card import validation_concerns

    shipped = json.loads((SHIPPED / "card.json").read_text(encoding="utf-8"))["metrics"]["test"]
    short = ["train.epochs=6", "input.size=224"]
    cfg = load_config(REPO / "configs" / "default.yaml", short)
    assert validation_concerns(cfg, shipped) == []
    length = "trained for 6 epochs at 224 px (the shipped recipe: 14 epochs at 160 px)"
    # beside thin test evidence: named first
    assert validation_concerns(cfg, {**shipped, "n": 40}) == [
        length, "tested on 40 images only (fewer than 100)"]
    # a subsample run: named on its own
    limited = load_config(REPO / "configs" / "default.yaml", [*short, "data.limit=50"])
    assert validation_concerns(limited, shipped) == [
        f"{length} on at most 50 images per split (data.limit)"]
    # the 1-epoch, 32-px smoke run tested on 24 images: still marked, its length among the why
    tiny = validation_concerns(load_config(REPO / "configs" / "default.yaml", TINY),
                               _tiny_test())
    assert tiny[0] == "trained for 1 epoch at 32 px (the shipped recipe: 14 epochs at 160 px)"
    assert "tested on 24 images only (fewer than 100)" in tiny


def test_the_shipped_card_is_what_finalize_would_write_for_it() -> None:
    """The shipped model (14 epochs at 160 px, 2,020 test images, figures far above chance) has
    no concern: status "trained", the decision-support intended use, no such limitation; and
    the recipe values the rule names are those of configs/default.yaml."""
    pytest.importorskip("torch")
    from dermsight.train.config import load_config
    from dermsight.train.finalize.card import (
        RECIPE_EPOCHS,
        RECIPE_INPUT_SIZE,
        intended_use,
        validation_concerns,
    )

    cfg = load_config(REPO / "configs" / "default.yaml")
    assert (cfg.train.epochs, cfg.input.size) == (RECIPE_EPOCHS, RECIPE_INPUT_SIZE)
    card = json.loads((SHIPPED / "card.json").read_text(encoding="utf-8"))
    assert validation_concerns(cfg, card["metrics"]["test"]) == []
    assert card["status"] == "trained"
    assert intended_use(len(cfg.data.classes)) == card["intended_use"]
    assert not any(x.startswith(NOT_VALIDATED_LIMITATION_START) for x in card["limitations"])


def test_finalize_ends_with_a_warning_for_a_run_it_marked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    import dermsight.train.finalize as fin
    from dermsight.train.config import Provenance, load_config

    cfg = load_config(REPO / "configs" / "default.yaml", TINY)
    concerns = ["tested on 24 images only (fewer than 100)"]

    def made(*_: Any, **__: Any) -> dict[str, Any]:  # the steps that need a trained network
        return {"temperature": 1.0, "refer": 0.5, "monitor": 0.3, "parity": 0.0,
                "not_validated": concerns}

    monkeypatch.setattr(fin, "_make_bundle", made)
    out = tmp_path / "run"
    out.mkdir()
    summary = fin.finalize(cfg, None, out, None, Provenance.of(cfg.name, out))  # type: ignore[arg-type]
    assert summary["not_validated"] == concerns
    err = capsys.readouterr().err
    warnings = [x for x in err.splitlines() if x.startswith("warning:")]
    assert warnings == [f"warning: the bundle {out / 'bundle'} is marked 'not validated': "
                        "tested on 24 images only (fewer than 100). Its card says research use "
                        "only: do not use it for patients."]


# --- loading a bundle so marked -------------------------------------------------------------------


def _marked(folder: Path) -> Path:
    """A copy of the shipped bundle whose card is marked as finalize marks a smoke run's."""
    shutil.copytree(SHIPPED, folder)
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    card["status"] = NOT_VALIDATED
    card["limitations"].insert(0, f"{NOT_VALIDATED_LIMITATION_START}tested on 24 images only "
                                  "(fewer than 100). The model is not validated: research use "
                                  "only.")
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    write_manifest(folder)
    return folder


def test_loading_a_marked_bundle_warns_once_and_the_shipped_one_not_at_all(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    marked = _marked(tmp_path / "marked")
    with caplog.at_level(logging.WARNING, logger="dermsight.bundle"):
        load_bundle()  # the shipped bundle: nothing said
        assert caplog.records == []
        assert run_guarded(app, ["bundle", "verify", str(marked)]) == 0  # still verifies
        assert capsys.readouterr().out.startswith("ok:")
        load_bundle(marked)  # the same bundle again in this process: said once
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert f"{marked}: model " in said[0]
    assert "is marked 'not validated' by its card: Not for clinical use: tested on 24" in said[0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dermsight.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_verify_and_predict_say_one_warning_line_for_a_marked_bundle(
        tmp_path: Path, sample_image: Path) -> None:
    marked = _marked(tmp_path / "marked")
    verify = _cli("bundle", "verify", str(marked))
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith("ok:")
    predict = _cli("predict", str(sample_image), "--model", str(marked))
    assert predict.returncode == 0, predict.stderr
    assert "risk:" in predict.stdout
    for r in (verify, predict):
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith(f"warning: {marked}: model ")
        assert "'not validated'" in lines[0]
        assert "research use only" in lines[0]
    shipped = _cli("bundle", "verify")
    assert shipped.returncode == 0
    assert "not validated" not in shipped.stderr


def test_predict_json_gives_the_cards_status(
        tmp_path: Path, sample_image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``predict --json`` carries the card's status at the top level of each answer (not in
    ``model``, which ``similar`` compares between predictions)."""
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    marked = _marked(tmp_path / "marked")
    for bundle, status in ((marked, NOT_VALIDATED), (SHIPPED, "trained")):
        code = run_guarded(app, ["predict", str(sample_image), "--model", str(bundle), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        (answer,) = json.loads(out)
        assert answer["model_status"] == status
        assert set(answer["model"]) == {"name", "version"}


# --- the split file travels with a copied bundle --------------------------------------------------


def test_a_bundle_copied_out_of_its_run_takes_the_runs_split_along(tmp_path: Path) -> None:
    from dermsight.bundle import card_sha256
    from dermsight.cli.model import copy_bundle
    from dermsight.splits import recorded_split_file

    run = tmp_path / "run"
    shutil.copytree(SHIPPED, run / "bundle")
    shutil.copy2(REPO / "configs" / "default-split.csv", run / "split.csv")  # its own split
    exported = tmp_path / "exported"
    copy_bundle(run / "bundle", exported)
    assert (exported / "split.csv").read_bytes() == (run / "split.csv").read_bytes()
    data = json.loads((exported / "card.json").read_text(encoding="utf-8"))["data"]
    # what evaluate's overlap check looks for beside the bundle (before any fallback)
    assert recorded_split_file(data, exported) == exported / "split.csv"
    # not a bundle file: the copy loads and verifies, its card (identity) is the run's
    assert load_bundle(exported).card.name
    assert card_sha256(exported) == card_sha256(run / "bundle")
    # a split.csv that is not the one the card records stays behind
    (run / "split.csv").write_text("image_id,split\nx,train\n", encoding="utf-8")
    other = tmp_path / "other"
    copy_bundle(run / "bundle", other)
    assert not (other / "split.csv").exists()
    # the shipped bundle has no split beside it: copied as it is
    plain = tmp_path / "plain"
    copy_bundle(SHIPPED, plain)
    assert sorted(p.name for p in plain.iterdir()) == sorted(p.name for p in SHIPPED.iterdir())
