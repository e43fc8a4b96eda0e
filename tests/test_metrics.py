"""dermsight.evaluate: metrics (hand-computed cases), bootstrap CIs and subgroups."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from dermsight.evaluate import compare_predictions, evaluate_predictions
from dermsight.evaluate.bootstrap import bootstrap, bootstrap_metrics, group_codes, group_weights
from dermsight.evaluate.metrics import (
    balanced_accuracy,
    binary_auc,
    brier_score,
    compute_metrics,
    confusion_counts,
    expected_calibration_error,
    key_metrics,
    negative_log_likelihood,
    partial_auc_above_tpr,
    predicted_labels,
    rates_at_threshold,
    reliability_bins,
    specificity_at_sensitivity,
)
from dermsight.evaluate.settings import EvalSettings
from dermsight.evaluate.subgroups import age_band, subgroup_table
from dermsight.taxonomy import CLASS_CODES

CLASSES8 = list(CLASS_CODES[:8])  # MEL NV BCC AK BKL DF VASC SCC
MEL, NV, BCC, AK, BKL, DF, VASC, SCC = range(8)


def synthetic(n: int = 600, seed: int = 0, signal: float = 1.5, n_groups: int | None = None):
    """Class-imbalanced 8-class predictions with some signal, and groups of 1-3 items."""
    rng = np.random.default_rng(seed)
    y = rng.choice(8, size=n, p=[0.18, 0.5, 0.1, 0.04, 0.1, 0.03, 0.03, 0.02])
    logits = rng.normal(size=(n, 8))
    logits[np.arange(n), y] += signal
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    groups = rng.integers(0, n_groups or max(1, n * 2 // 3), size=n)
    return y, p, groups


# --- binary building blocks, by hand ---------------------------------------------------------


def test_auc_hand_cases() -> None:
    assert binary_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # one tied positive/negative pair counts one half: (1 + 1 + 0.5 + 1) / 4
    assert binary_auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    assert binary_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert binary_auc([0, 1, 1], [0.9, 0.2, 0.1]) == pytest.approx(0.0)
    # 5 vs 5 with a tie block of 2 positives + 2 negatives: 21 of 25 pairs
    y = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.7, 0.5, 0.5, 0.6, 0.5, 0.5, 0.2, 0.1]
    assert binary_auc(y, s) == pytest.approx(0.84)


def test_auc_undefined_is_none() -> None:
    assert binary_auc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert binary_auc([0, 0], [0.1, 0.2]) is None
    assert binary_auc([], []) is None
    assert partial_auc_above_tpr([0, 0], [0.1, 0.2]) is None


def test_auc_matches_sklearn_with_weights() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 2)  # plenty of ties
    w = rng.integers(0, 4, 300).astype(float)
    assert binary_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s))
    assert binary_auc(y, s, w) == pytest.approx(metrics.roc_auc_score(y, s, sample_weight=w))


def test_pauc_hand_cases() -> None:
    # ROC (0,0)(0,.5)(.5,.5)(.5,1)(1,1): band TPR in [.8, 1] right of the curve = 0.2 * 0.5
    assert partial_auc_above_tpr([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.1)
    # the curve crosses TPR 0.8 inside a tied (diagonal) segment (.2,.6)-(.6,1): fpr = t - .4,
    # area = integral_{.8}^{1} (1.4 - t) dt = 0.10
    y = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.7, 0.5, 0.5, 0.6, 0.5, 0.5, 0.2, 0.1]
    assert partial_auc_above_tpr(y, s) == pytest.approx(0.10)
    # perfect ranking = 0.2, perfectly wrong ranking = 0
    assert partial_auc_above_tpr([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.2)
    assert partial_auc_above_tpr([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.0)
    # the last positive ranks below every negative: TPR > 2/3 only at FPR 1
    assert partial_auc_above_tpr([1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.5]) == pytest.approx(0)


def _kaggle_isic2024_pauc(y: np.ndarray, p: np.ndarray, min_tpr: float = 0.8) -> float:
    """The ISIC 2024 Kaggle metric, as published (sklearn)."""
    metrics = pytest.importorskip("sklearn.metrics")
    v_gt = np.abs(np.asarray(y) - 1)
    v_pred = np.array([1.0 - x for x in p])
    max_fpr = abs(1 - min_tpr)
    fpr, tpr, _ = metrics.roc_curve(v_gt, v_pred, sample_weight=None)
    stop = np.searchsorted(fpr, max_fpr, "right")
    x_interp = [fpr[stop - 1], fpr[stop]]
    y_interp = [tpr[stop - 1], tpr[stop]]
    tpr = np.append(tpr[:stop], np.interp(max_fpr, x_interp, y_interp))
    fpr = np.append(fpr[:stop], max_fpr)
    return float(metrics.auc(fpr, tpr))


def _isic2020_auc_sens_80(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """isic-challenge-scoring 5.6 ``auc_above_sensitivity(.., 0.80)`` and FPR at TPR 0.8."""
    metrics = pytest.importorskip("sklearn.metrics")
    fpr, tpr, _ = metrics.roc_curve(y, p, drop_intermediate=False)
    i = tpr.searchsorted(0.8, side="left")
    f0 = float(np.interp(0.8, tpr[i - 1 : i + 1], fpr[i - 1 : i + 1]))
    return float(metrics.auc(np.insert(fpr[i:], 0, f0), np.insert(tpr[i:], 0, 0.8))), f0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pauc_matches_isic2024_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.random(200) * 0.8, 0, 1).round(2)  # ties included
    ours = partial_auc_above_tpr(y, p)
    assert ours == pytest.approx(_kaggle_isic2024_pauc(y, p))
    assert 0.0 <= ours <= 0.2
    # documented relation to the 2019/2020 scorer's auc_sens_80
    a20, f0 = _isic2020_auc_sens_80(y, p)
    assert ours == pytest.approx(a20 - 0.8 * (1 - f0))


def test_rates_at_threshold_uses_greater_equal() -> None:
    sens, spec = rates_at_threshold([1, 1, 0, 0], [0.5, 0.2, 0.5, 0.1], 0.5)
    assert (sens, spec) == (pytest.approx(0.5), pytest.approx(0.5))
    assert rates_at_threshold([0, 0], [0.1, 0.9], 0.5) == (None, pytest.approx(0.5))


def test_specificity_at_95_sensitivity_hand_case() -> None:
    pos = [0.50 + 0.02 * i for i in range(20)]  # 0.50 .. 0.88
    neg = [0.1, 0.2, 0.3, 0.55, 0.6, 0.95]
    y = [1] * 20 + [0] * 6
    op = specificity_at_sensitivity(y, pos + neg, 0.95)
    # 19 of 20 positives need threshold 0.52; negatives >= 0.52: 0.55, 0.6, 0.95 -> spec 3/6
    assert op["threshold"] == pytest.approx(0.52)
    assert op["sensitivity"] == pytest.approx(0.95)
    assert op["specificity"] == pytest.approx(0.5)
    assert specificity_at_sensitivity([1, 1], [0.2, 0.3])["specificity"] is None


# --- multiclass metrics by hand --------------------------------------------------------------


def test_balanced_accuracy_and_per_class_hand_case() -> None:
    # argmax predictions: [0, 0, 1, 1, 2, 0]; recalls 2/3, 1, 1/2
    y = np.array([0, 0, 0, 1, 2, 2])
    p = np.array([
        [0.8, 0.1, 0.1, 0.0],
        [0.6, 0.3, 0.1, 0.0],
        [0.2, 0.7, 0.1, 0.0],
        [0.1, 0.8, 0.1, 0.0],
        [0.1, 0.1, 0.8, 0.0],
        [0.5, 0.1, 0.4, 0.0],
    ])
    assert balanced_accuracy(y, p) == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    m = compute_metrics(y, p, ["MEL", "NV", "BCC", "AK"])
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)  # AK absent: skipped
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["sensitivity_MEL"] == pytest.approx(2 / 3)
    assert m["specificity_MEL"] == pytest.approx(2 / 3)  # rows 3-5: one predicted MEL
    assert m["sensitivity_NV"] == pytest.approx(1.0)
    assert m["specificity_NV"] == pytest.approx(4 / 5)
    assert m["auc_AK"] is None
    assert m["sensitivity_AK"] is None
    assert m["specificity_AK"] == pytest.approx(1.0)
    assert m["n"] == 6
    assert m["n_MEL"] == 3
    assert m["n_AK"] == 0
    assert m["n_malignant"] == 5  # MEL + BCC
    # MEL-vs-rest AUC: MEL scores .8 .6 .2 vs .1 .1 .5 -> (3 + 2 + 1) / 9 + 0 ties
    assert m["mel_auc"] == pytest.approx(8 / 9)
    # malignant = MEL + BCC columns: .9 .7 .3 .9 .9 vs NV .2 -> 5 of 5 pairs
    assert m["malignant_auc"] == pytest.approx(1.0)


def test_tied_argmax_is_undecided_like_isic_scorer() -> None:
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.7, 0.1]])
    assert predicted_labels(p).tolist() == [-1, 1]
    y = np.array([0, 1])
    assert balanced_accuracy(y, p) == pytest.approx(0.5)
    cm = confusion_counts(y, p)
    assert cm.tolist() == [[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert compute_metrics(y, p, ["MEL", "NV", "BCC"])["n_undecided"] == 1


def test_calibration_hand_cases() -> None:
    p = np.array([[0.9, 0.1], [0.6, 0.4]])
    y = np.array([0, 1])
    # bins: 0.9 -> bin 13 (correct), 0.6 -> bin 8, (8/15, 9/15] (wrong)
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.1 + 0.5 * 0.6)
    bins = reliability_bins(y, p)
    assert bins["count"][13] == 1
    assert bins["count"][8] == 1
    assert sum(bins["count"]) == 2
    assert bins["accuracy"][8] == 0.0
    assert bins["confidence"][13] == pytest.approx(0.9)
    assert bins["accuracy"][0] is None
    assert len(bins["edges"]) == 16
    assert brier_score(y, p) == pytest.approx((0.02 + 0.72) / 2)
    assert negative_log_likelihood(y, p) == pytest.approx(-(math.log(0.9) + math.log(0.4)) / 2)
    # zero probability on the truth is clipped, not infinite
    assert negative_log_likelihood([1], [[1.0, 0.0]]) == pytest.approx(-math.log(1e-15))


def test_ece_bin_edges_are_right_closed() -> None:
    # confidence exactly 0.6 = 9/15 belongs to bin 8 = (8/15, 9/15]
    bins = reliability_bins([0], [[0.6, 0.4]])
    assert bins["count"][8] == 1


def test_perfect_classifier() -> None:
    y = np.repeat(np.arange(8), 10)
    p = np.eye(8)[y]
    m = compute_metrics(y, p, CLASSES8, refer_threshold=0.5)
    assert m["balanced_accuracy"] == 1.0
    assert m["accuracy"] == 1.0
    for key in ("mel_auc", "malignant_auc", "auc_macro", *(f"auc_{c}" for c in CLASSES8)):
        assert m[key] == pytest.approx(1.0), key
    assert m["mel_pauc80"] == pytest.approx(0.2)
    assert m["malignant_pauc80"] == pytest.approx(0.2)
    assert m["malignant_spec_at_95sens"] == pytest.approx(1.0)
    assert m["refer_sensitivity"] == 1.0
    assert m["refer_specificity"] == 1.0
    assert m["ece"] == pytest.approx(0.0)
    assert m["brier"] == pytest.approx(0.0)
    assert m["nll"] == pytest.approx(0.0)


def test_random_classifiers() -> None:
    y = np.repeat(np.arange(8), 25)
    uniform = np.full((200, 8), 1 / 8)
    m = compute_metrics(y, uniform, CLASSES8)
    assert m["balanced_accuracy"] == 0.0  # every row tied -> undecided (ISIC semantics)
    assert m["mel_auc"] == pytest.approx(0.5)
    assert m["malignant_auc"] == pytest.approx(0.5)
    assert m["mel_pauc80"] == pytest.approx(0.02)  # random ranking: 0.2^2 / 2
    assert m["brier"] == pytest.approx(1 - 1 / 8)
    assert m["nll"] == pytest.approx(math.log(8))
    rng = np.random.default_rng(0)
    n = 20000
    yr = rng.integers(0, 8, n)
    pr = rng.dirichlet(np.ones(8), n)
    m = compute_metrics(yr, pr, CLASSES8)
    assert m["mel_auc"] == pytest.approx(0.5, abs=0.02)
    assert m["mel_pauc80"] == pytest.approx(0.02, abs=0.005)
    assert m["balanced_accuracy"] == pytest.approx(1 / 8, abs=0.02)


def test_absent_classes_and_missing_columns() -> None:
    y = np.array([NV, NV, BKL, BKL, NV])
    p = np.full((5, 8), 0.05)
    p[np.arange(5), y] = 0.65
    m = compute_metrics(y, p, CLASSES8, refer_threshold=0.3)
    for key in ("mel_auc", "mel_pauc80", "malignant_auc", "malignant_pauc80",
                "malignant_spec_at_95sens", "refer_sensitivity", "auc_MEL", "auc_SCC",
                "sensitivity_MEL"):
        assert m[key] is None, key
    assert m["refer_specificity"] == pytest.approx(1.0)  # malignant sum .15 < .3
    assert m["balanced_accuracy"] == 1.0
    json.dumps(m, allow_nan=False)
    # no MEL column at all (e.g. a benign-only head) -> None, not a crash
    m2 = compute_metrics([0, 1], [[0.7, 0.3], [0.2, 0.8]], ["NV", "BKL"], refer_threshold=0.5)
    assert m2["mel_auc"] is None
    assert m2["malignant_auc"] is None
    assert m2["refer_sensitivity"] is None


def test_integer_weights_equal_repetition() -> None:
    y, p, _ = synthetic(200, seed=5)
    w = np.random.default_rng(1).integers(0, 3, 200)
    a = compute_metrics(y, p, CLASSES8, w, refer_threshold=0.4)
    b = compute_metrics(np.repeat(y, w), np.repeat(p, w, axis=0), CLASSES8, refer_threshold=0.4)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] is None and b[k] is None) or a[k] == pytest.approx(b[k]), k


def test_agrees_with_sklearn_on_synthetic() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    y, p, _ = synthetic(500, seed=2)
    m = compute_metrics(y, p, CLASSES8)
    assert m["balanced_accuracy"] == pytest.approx(
        metrics.balanced_accuracy_score(y, p.argmax(1))
    )
    assert m["mel_auc"] == pytest.approx(metrics.roc_auc_score(y == MEL, p[:, MEL]))
    mal = np.isin(y, [MEL, BCC, SCC])
    assert m["malignant_auc"] == pytest.approx(
        metrics.roc_auc_score(mal, p[:, [MEL, BCC, SCC]].sum(1))
    )
    onehot = np.eye(8)[y]
    assert m["brier"] == pytest.approx(((p - onehot) ** 2).sum(1).mean())
    assert m["nll"] == pytest.approx(metrics.log_loss(y, p, labels=range(8)))


def test_string_labels_and_validation() -> None:
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    m = compute_metrics(np.array(["MEL", "NV"]), p, ["MEL", "NV"])
    assert m["balanced_accuracy"] == 1.0
    with pytest.raises(ValueError, match="columns"):
        compute_metrics([0, 1], p, ["MEL"])
    with pytest.raises(ValueError, match="indices"):
        compute_metrics([0, 2], p, ["MEL", "NV"])
    with pytest.raises(ValueError, match="not in classes"):
        compute_metrics(["MEL", "SCC"], p, ["MEL", "NV"])
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics([0, 1], [[np.nan, 1.0], [0.2, 0.8]], ["MEL", "NV"])


def test_key_metrics() -> None:
    y, p, _ = synthetic(300, seed=4)
    k = key_metrics(y, p, CLASSES8, refer_threshold=0.4)
    m = compute_metrics(y, p, CLASSES8, refer_threshold=0.4)
    assert k["malignant_auc"] == m["malignant_auc"]
    assert k["mel_auc"] == m["mel_auc"]
    assert k["sensitivity"] == m["refer_sensitivity"]
    assert k["n_mel"] == m["n_MEL"]


# --- bootstrap -------------------------------------------------------------------------------


def test_group_resampling_keeps_groups_together() -> None:
    groups = np.array(["a", "a", "a", "b", "c", "c", None, pd.NA], dtype=object)
    codes = group_codes(groups, 8)
    assert codes[0] == codes[1] == codes[2] != codes[3]
    assert codes[6] != codes[7]  # missing group label -> own group
    n_groups = int(codes.max()) + 1
    assert n_groups == 5
    for w in group_weights(codes, 50, seed=1):
        for g in range(n_groups):
            assert len(set(w[codes == g])) == 1  # every item of a group shares its weight
        # G groups drawn per resample (each group's weight counted once)
        assert sum(w[codes == g][0] for g in range(n_groups)) == n_groups


def test_bootstrap_resamples_whole_groups() -> None:
    """A metric that sees a group split would report a fractional within-group share."""
    groups = np.repeat(np.arange(10), 3)

    def frac_of_first_item_weights(w: np.ndarray | None) -> dict[str, float | None]:
        if w is None:
            return {"ok": 1.0}
        blocks = w.reshape(10, 3)
        return {"ok": float(np.all(blocks == blocks[:, :1]))}

    ci = bootstrap(frac_of_first_item_weights, 30, groups, n_boot=100, seed=0)
    assert ci["ok"] == {"value": 1.0, "lo": 1.0, "hi": 1.0, "n": 100}


def test_bootstrap_ci_contains_point_and_is_reproducible() -> None:
    y, p, g = synthetic(500, seed=7)
    a = bootstrap_metrics(y, p, CLASSES8, g,
                          settings=EvalSettings(refer_threshold=0.4, n_boot=60, seed=3))
    b = bootstrap_metrics(y, p, CLASSES8, g,
                          settings=EvalSettings(refer_threshold=0.4, n_boot=60, seed=3))
    c = bootstrap_metrics(y, p, CLASSES8, g,
                          settings=EvalSettings(refer_threshold=0.4, n_boot=10, seed=4))
    assert a == b
    assert a["malignant_auc"] != c["malignant_auc"]
    for key in ("balanced_accuracy", "malignant_auc", "mel_auc", "auc_macro", "brier", "nll",
                "refer_sensitivity", "refer_specificity", "malignant_pauc80"):
        ci = a[key]
        assert ci["lo"] <= ci["value"] <= ci["hi"], key
        assert ci["hi"] > ci["lo"]
        assert ci["n"] == 60
    assert "n" not in a
    assert "n_MEL" not in a
    assert "refer_threshold" not in a
    json.dumps(a, allow_nan=False)


def test_bootstrap_skips_resamples_where_metric_undefined() -> None:
    # one SCC in one group of 40: most resamples have no SCC -> AUC undefined there
    y, p, _ = synthetic(120, seed=1)
    y[y == SCC] = NV
    y[0] = SCC
    groups = np.arange(120) // 3
    ci = bootstrap_metrics(y, p, CLASSES8, groups, settings=EvalSettings(n_boot=60, seed=0))
    assert 0 < ci["auc_SCC"]["n"] < 60
    assert ci["balanced_accuracy"]["n"] == 60
    # AK absent entirely: value None and no interval, not a crash
    y[y == AK] = NV
    ci = bootstrap_metrics(y, p, CLASSES8, groups, settings=EvalSettings(n_boot=20, seed=0))
    assert ci["auc_AK"] == {"value": None, "lo": None, "hi": None, "n": 0}


def test_bootstrap_speed_1800_items() -> None:
    y, p, g = synthetic(1800, seed=0, n_groups=1500)
    t0 = time.process_time()
    bootstrap_metrics(y, p, CLASSES8, g,
                      settings=EvalSettings(refer_threshold=0.4, n_boot=200, seed=0))
    assert time.process_time() - t0 < 30  # about 1-2 s in practice


def test_paired_difference() -> None:
    y, p, g = synthetic(400, seed=2)
    d = compare_predictions(y, p, p, CLASSES8, g,
                            settings=EvalSettings(refer_threshold=0.4, n_boot=30))
    assert d["malignant_auc"] == {"value": 0.0, "lo": 0.0, "hi": 0.0, "n": 30}
    flat = np.full_like(p, 1 / 8)
    d = compare_predictions(y, p, flat, CLASSES8, g, settings=EvalSettings(n_boot=30))
    assert d["malignant_auc"]["lo"] > 0  # any signal beats a constant


# --- subgroups -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "band"),
    [(0, "<30"), (29.9, "<30"), (30, "30-44"), ("44", "30-44"), (45, "45-59"), (59, "45-59"),
     (60, "60-74"), (74.5, "60-74"), (75, "75+"), (110, "75+"), (None, "missing"),
     ("", "missing"), (float("nan"), "missing"), (pd.NA, "missing"), (np.nan, "missing"),
     ("unknown", "missing"), ("abc", "missing")],
)
def test_age_band(age: object, band: str) -> None:
    assert age_band(age) == band


def _meta(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age_approx": rng.choice(["20", "35", "50", "65", "80", ""], n),
        "sex": rng.choice(["male", "female", "", "Male"], n),
        "anatom_site": rng.choice(["torso", "head/neck", "palms/soles"], n, p=[0.6, 0.37, 0.03]),
        "source": rng.choice(["ham10000", "isic2019"], n),
    })


def test_subgroup_table_rows_and_withholding() -> None:
    y, p, g = synthetic(600, seed=3)
    meta = _meta(600)
    rows = subgroup_table(y, p, CLASSES8, meta, groups=g,
                          settings=EvalSettings(refer_threshold=0.4, n_boot=20))
    attrs = [r["attribute"] for r in rows]
    assert attrs == sorted(attrs, key=["sex", "age", "site", "source"].index)
    sexes = [r["subgroup"] for r in rows if r["attribute"] == "sex"]
    assert sexes == ["male", "female", "missing"]  # "Male" normalised
    ages = [r["subgroup"] for r in rows if r["attribute"] == "age"]
    assert ages == ["<30", "30-44", "45-59", "60-74", "75+", "missing"]
    for attr in ("sex", "age", "site", "source"):
        assert sum(r["n"] for r in rows if r["attribute"] == attr) == 600
    small = next(r for r in rows if r["subgroup"] == "palms/soles")
    assert small["n"] < 30
    assert all(small[k] is None for k in ("malignant_auc", "mel_auc", "balanced_accuracy",
                                         "sensitivity", "specificity", "malignant_auc_lo"))
    assert "too few" in small["note"]
    torso = next(r for r in rows if r["subgroup"] == "torso")
    assert torso["note"] is None
    assert torso["malignant_auc"] is not None
    assert torso["malignant_auc_lo"] <= torso["malignant_auc"] <= torso["malignant_auc_hi"]
    direct = key_metrics(y[meta.anatom_site == "torso"], p[meta.anatom_site == "torso"],
                         CLASSES8, refer_threshold=0.4)
    assert torso["malignant_auc"] == pytest.approx(direct["malignant_auc"])
    json.dumps(rows, allow_nan=False)


def test_subgroup_without_positives_reports_none_with_note() -> None:
    y, p, _ = synthetic(200, seed=6)
    meta = pd.DataFrame({"sex": ["male"] * 100 + ["female"] * 100})
    y[:100] = NV  # no malignant (and no MEL) among men
    rows = subgroup_table(y, p, CLASSES8, meta,
                          settings=EvalSettings(refer_threshold=0.4, n_boot=0))
    male = next(r for r in rows if r["subgroup"] == "male")
    assert male["n_malignant"] == 0
    assert male["malignant_auc"] is None
    assert male["mel_auc"] is None
    assert male["sensitivity"] is None
    assert male["specificity"] is not None
    assert male["balanced_accuracy"] is not None
    assert "malignant" in male["note"]
    assert "MEL" in male["note"]
    with pytest.raises(ValueError, match="rows"):
        subgroup_table(y, p, CLASSES8, meta.iloc[:10])


# --- evaluate_predictions --------------------------------------------------------------------


def test_evaluate_predictions_end_to_end() -> None:
    y, p, g = synthetic(500, seed=8)
    meta = _meta(500, seed=1)
    ev = evaluate_predictions(y, p, CLASSES8, g, meta, subgroup_n_boot=10,
                              settings=EvalSettings(refer_threshold=0.4, n_boot=20, seed=1))
    assert ev["schema"] == "dermsight.evaluation/1"
    assert ev["n"] == 500
    assert ev["n_groups"] == len(set(g.tolist()))
    assert ev["metrics"]["refer_threshold"] == 0.4
    assert ev["refer_threshold"] == 0.4
    assert ev["ci"]["malignant_auc"]["value"] == ev["metrics"]["malignant_auc"]
    assert [pc["code"] for pc in ev["per_class"]] == CLASSES8
    assert ev["per_class"][0]["name"] == "Melanoma"
    assert np.asarray(ev["confusion"]["counts"]).shape == (8, 9)
    assert len(ev["reliability"]["count"]) == 15
    assert ev["ci"]["mel_auc"]["n"] == 20
    assert ev["subgroups"]
    assert {r["attribute"] for r in ev["subgroups"]} == {
        "sex", "age", "site", "source"}
    round_trip = json.loads(json.dumps(ev, allow_nan=False))
    assert round_trip == ev
    ev2 = evaluate_predictions(y, p, CLASSES8, g, meta, subgroup_n_boot=10,
                               settings=EvalSettings(refer_threshold=0.4, n_boot=20, seed=1))
    assert ev2 == ev
    bare = evaluate_predictions(y, p, CLASSES8, None, settings=EvalSettings(n_boot=5))
    assert bare["subgroups"] == []
    assert bare["n_groups"] == 500


def test_the_malignant_metrics_follow_the_bundles_malignant_probability() -> None:
    """With ``malignant_excluded`` every malignant figure (AUC, refer rates, subgroup rows, the
    bootstrap) uses the share of the specific diagnoses, as serving does."""
    nine = list(CLASS_CODES[:9])
    rng = np.random.default_rng(3)
    n = 400
    y = rng.integers(0, 9, n)
    p = rng.dirichlet(np.ones(9), size=n)
    p[np.arange(n), y] += 0.5
    p[:, 8] += rng.uniform(0, 3, n)  # UNK takes a varying share, unrelated to the label
    p /= p.sum(1, keepdims=True)
    share = p[:, [0, 2, 7]].sum(1) / (1 - p[:, 8])
    t = float(np.median(share))
    mal = np.isin(y, [0, 2, 7])
    plain = compute_metrics(y, p, nine, refer_threshold=t)
    m = compute_metrics(y, p, nine, refer_threshold=t, malignant_excluded=["UNK"])
    assert m["refer_sensitivity"] == pytest.approx((share[mal] >= t).mean())
    assert m["refer_specificity"] == pytest.approx((share[~mal] < t).mean())
    assert m["malignant_auc"] != pytest.approx(plain["malignant_auc"])
    assert m["mel_auc"] == plain["mel_auc"]  # per-class figures use the probabilities as they are
    ev = evaluate_predictions(y, p, nine, None,
                              settings=EvalSettings(refer_threshold=t, n_boot=5,
                                                    malignant_excluded=["UNK"]))
    assert ev["metrics"]["malignant_auc"] == pytest.approx(m["malignant_auc"])
    assert ev["ci"]["malignant_auc"]["value"] == pytest.approx(m["malignant_auc"])
