"""What an evaluation's figures rest on, said plainly (a researcher's audit of the shipped model on
their own cohort).

* New cards (``dermsight train``'s finalize) use the intervals ``dermsight evaluate`` uses:
  Wilson for a proportion, ``n`` counting cases, not resamples.
* An AUC's ``n`` is the smaller of its positives and negatives (both given); under
  ``MIN_CASES`` on a side it is withheld, in the JSON, the per-class table and the report.
* The training-overlap check says that it matches image ids only (renamed copies are missed).
* A label "Unknown" (read as UNK) is warned of once, with counts, by ``dermsight evaluate`` and
  ``data summary``; the report names the thin classes inside the balanced accuracy.
* Per-source subgroups keep the spelling of the source (``clinicA``, not ``clinica``), group its
  case variants, and call only a blank source missing (a source named ``none`` is a name).

Real images: the shared isic-subset (``conftest.DATA``) and the shipped bundle.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cli_support import run
from dermsight.batch.summary import sidecar
from dermsight.bundle import default_bundle_path
from dermsight.cli import main
from dermsight.evaluate import EvalSettings, evaluate_predictions
from dermsight.evaluate.subgroups import MISSING, subgroup_labels

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "configs" / "default-split.csv"
#: test-split images per class in the cohort (no image of the bundle's training split)
COHORT = {"NV": 12, "MEL": 6, "BKL": 4, "DF": 2}
#: sources given to the cohort's rows, in turn (case variants of one clinic, and a source whose
#: name is a word that often means "missing")
SOURCES = ("clinicA", "clinicB", "CLINICA", "none")


def _cohort(root: Path, data_dir: Path, metadata: pd.DataFrame) -> pd.DataFrame:
    """A folder of real test-split images, one NV relabelled "Unknown", four named sources."""
    split = pd.read_csv(SPLIT, dtype=str, keep_default_na=False)
    test_ids = set(split.loc[split["split"] == "test", "image_id"])
    rows = metadata[metadata["image_id"].isin(test_ids)].sort_values("image_id")
    picked = pd.concat([rows[rows["diagnosis"] == d].head(k) for d, k in COHORT.items()])
    picked = picked.reset_index(drop=True)
    picked.loc[0, "diagnosis"] = "Unknown"  # a clinic's "not known yet"
    picked["source"] = [SOURCES[i % len(SOURCES)] for i in range(len(picked))]
    (root / "images").mkdir(parents=True)
    for i in picked["image_id"]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", root / "images" / f"{i}.jpg")
    picked[["image_id", "diagnosis", "age_approx", "sex", "anatom_site", "source",
            "group_id"]].to_csv(root / "metadata.csv", index=False)
    return picked


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
              metadata: pd.DataFrame) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cohort")
    cohort = _cohort(root / "data", data_dir, metadata)
    out = root / "ev"
    err = io.StringIO()  # capsys is function-scoped: the command's stderr is captured here
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(["evaluate", str(default_bundle_path()), str(root / "data"), "--out", str(out),
              "-q"])
    assert int(exc.value.code or 0) == 0, err.getvalue()
    evaluation = json.loads(sidecar(out / "scores", "evaluation.json").read_text("utf-8"))
    html = sidecar(out / "scores", "report.html").read_text(encoding="utf-8")
    return {"cohort": cohort, "evaluation": evaluation, "html": html, "err": err.getvalue()}


def test_auc_n_is_its_smaller_side_and_thin_aucs_are_withheld(evaluated: dict[str, Any]
                                                              ) -> None:
    ev = evaluated["evaluation"]
    m, ci = ev["metrics"], ev["ci"]
    n = ev["n"]
    assert m["n_UNK"] == 1
    unk = ci["auc_UNK"]
    # one UNK image: its AUC only says how that image ranks; withheld, its sides kept
    assert unk["positives"] == 1
    assert unk["negatives"] == n - 1
    assert unk["n"] == 1
    assert unk["value"] is None
    assert unk["lo"] is None
    assert unk["withheld"] is True
    assert "withheld" in unk["note"]
    assert m["auc_UNK"] is None
    dfc = ci["auc_DF"]
    assert dfc["positives"] == m["n_DF"] < 5
    assert dfc["withheld"] is True
    mel = ci["mel_auc"]
    assert mel["positives"] == m["n_MEL"] == 6
    assert mel["negatives"] == n - 6
    assert mel["n"] == 6
    assert mel["value"] is not None
    assert "withheld" not in mel
    assert ci["malignant_auc"]["n"] == min(m["n_malignant"], n - m["n_malignant"])
    # the per-class table carries the same entries
    per_class = {pc["code"]: pc for pc in ev["per_class"]}
    assert per_class["UNK"]["auc"] == unk
    assert per_class["NV"]["auc"]["n"] == min(m["n_NV"], n - m["n_NV"])
    html = evaluated["html"]
    assert "withheld <span class=\"note\">(1 positive," in html
    assert "6 positive, " in html
    assert "small sample" in html
    assert "Too few cases for the AUC of " in html
    assert "No test cases for: UNK" not in html


def test_unknown_label_warned_once_and_thin_classes_named(evaluated: dict[str, Any]) -> None:
    err = evaluated["err"]
    lines = [ln for ln in err.splitlines() if "labels are UNK" in ln]
    assert len(lines) == 1, err
    n = evaluated["evaluation"]["n"]
    assert f"1 of {n} labels are UNK (Other / unknown)" in lines[0]
    assert "'unknown'" in lines[0]
    assert "leave the label empty" in lines[0]
    html = evaluated["html"]
    assert "Balanced accuracy is the mean recall of the" in html
    assert "UNK (1 item)" in html
    assert "DF (2 items)" in html
    assert "read as UNK" in html


def test_training_overlap_says_it_matches_ids_only(evaluated: dict[str, Any]) -> None:
    overlap = evaluated["evaluation"]["training_overlap"]
    assert overlap["checked"] is True
    assert overlap["matched_by"] == "image id"
    assert overlap["renamed_copies_detected"] is False
    assert "renamed" in overlap["limit"]
    html = evaluated["html"]
    assert "matched by image id only: renamed copies are not detected" in html
    assert "compares image ids only" in html


def test_source_subgroups_keep_their_spelling(evaluated: dict[str, Any]) -> None:
    ev = evaluated["evaluation"]
    shown = {r["subgroup"]: r["n"] for r in ev["subgroups"] if r["attribute"] == "source"}
    cohort = evaluated["cohort"]
    n_a = int(cohort["source"].str.casefold().eq("clinica").sum())
    # the evaluated rows: the gate may refuse a few
    assert set(shown) == {"clinicA", "clinicB", "none"}, shown
    assert shown["clinicA"] <= n_a
    assert shown["clinicA"] > shown["clinicB"]
    assert "clinica" not in evaluated["html"]


def test_subgroup_labels_group_case_variants_and_keep_named_sources() -> None:
    frame = pd.DataFrame({
        "source": ["clinicA", "CLINICA", " clinicA ", "clinicB", "none", "NA", "", None],
        "sex": ["Male", "male", "FEMALE", "unknown", None, "female", "male", "male"],
    })
    labels = subgroup_labels(frame)
    src, order = labels["source"]
    assert list(src) == ["clinicA", "clinicA", "clinicA", "clinicB", "none", "NA", MISSING,
                         MISSING]
    assert order == ["NA", "clinicA", "clinicB", "none", MISSING]
    sex, _ = labels["sex"]  # a vocabulary's own spelling; "unknown" sex stays missing
    assert list(sex) == ["male", "male", "female", MISSING, MISSING, "female", "male", "male"]


def _scores(n_neg: int, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.array(["MEL"] * 12 + ["NV"] * n_neg + ["UNK"])
    p = rng.dirichlet(np.ones(len(classes)), size=len(y))
    p[:12, 0] += 5.0  # every melanoma scored far above the rest: referred
    return y, p / p.sum(1, keepdims=True)


def test_card_bootstrap_method_is_unchanged() -> None:
    """The shipped card's method (the default): ``n`` counts resamples, nothing withheld."""
    classes = ["MEL", "NV", "UNK"]
    y, p = _scores(30, classes)
    ev = evaluate_predictions(y, p, classes, None, settings=EvalSettings(n_boot=50))
    assert "draws" not in ev["ci"]["auc_UNK"]  # n: the resamples that drew the UNK image
    assert ev["ci"]["auc_NV"]["n"] == 50
    assert "positives" not in ev["ci"]["auc_UNK"]
    assert ev["metrics"]["auc_UNK"] is not None


def test_new_cards_use_wilson_intervals_with_case_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """``evaluate_test`` (finalize): 12 of 12 melanomas referred is not 1.000 to 1.000 over 50
    resamples, but Wilson over 12 cases; 0 of 20 NV has a Wilson upper bound."""
    from dermsight.train.finalize import evaluation as finalize_eval

    classes = ["MEL", "NV", "UNK"]
    y, p = _scores(20, classes)
    p[12:32] = [0.5, 0.0, 0.5]  # no NV is called NV
    logits = np.log(np.clip(p, 1e-9, None))
    df = pd.DataFrame({"source": ["a"] * len(y), "group_id": [f"g{i}" for i in range(len(y))]})
    part = SimpleNamespace(labels=y, logits=logits, images=[None] * len(y), df=df,
                           metas=[SimpleNamespace(sex=None, age=None, site=None)] * len(y),
                           sources=df["source"].tolist(),
                           groups=lambda col: df[col].to_numpy())
    cfg = SimpleNamespace(data=SimpleNamespace(classes=classes, group_col="group_id"), seed=0,
                          evaluation=SimpleNamespace(n_boot=50))
    calib = SimpleNamespace(excluded=("UNK",), refer=0.5, monitor=0.3,
                            probs=lambda logits: np.exp(logits) / np.exp(logits).sum(
                                1, keepdims=True))
    monkeypatch.setattr(finalize_eval, "infer", lambda *a, **k: {"logits": logits})
    monkeypatch.setattr(finalize_eval, "card_tables", lambda *a, **k: (None, None))
    monkeypatch.setattr(finalize_eval, "source_check", lambda *a, **k: {})
    monkeypatch.setattr(finalize_eval, "single_source_classes", lambda *a, **k: [])
    result = finalize_eval.evaluate_test(
        cfg, SimpleNamespace(), {"test": part, "val": part, "train": part}, calib, None,
        provenance=SimpleNamespace(config="c", command="x"), trained_on=["a"])
    ci = result.test["ci"]
    refer = ci["refer_sensitivity"]
    assert refer["value"] == 1.0
    assert refer["n"] == 12
    assert refer["k"] == 12
    assert refer["lo"] == pytest.approx(0.7575, abs=1e-3)  # Wilson, 12 of 12
    assert refer["draws"] == 50
    nv = ci["sensitivity_NV"]
    assert nv["value"] == 0.0
    assert nv["n"] == 20
    assert nv["hi"] > 0.1
    assert ci["auc_UNK"]["withheld"] is True
    assert ci["auc_UNK"]["positives"] == 1


def test_data_summary_warns_of_unknown_labels_once(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = metadata[metadata["diagnosis"] != ""].sort_values("image_id").head(4).copy()
    rows["diagnosis"] = ["Unknown", "unknown", "NV", "MEL"]
    (tmp_path / "images").mkdir()
    for i in rows["image_id"]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", tmp_path / "images" / f"{i}.jpg")
    rows[["image_id", "diagnosis"]].to_csv(tmp_path / "metadata.csv", index=False)
    code, _, err = run(capsys, "data", "summary", str(tmp_path))
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "labels are UNK" in ln]
    assert lines == ["warning: 2 of 4 labels are UNK (Other / unknown), the class a label "
                     "written 'unknown' is read as: where it means the diagnosis is not known "
                     "yet, leave the label empty (it is then counted as missing)"], err
