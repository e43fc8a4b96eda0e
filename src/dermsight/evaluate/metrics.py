"""ISIC-challenge classification metrics over plain arrays (numpy only: no torch, no sklearn).

Inputs, everywhere in this module:

* ``y_true``: shape ``(N,)`` integer class indices into ``classes`` (class codes are accepted too
  and mapped through ``classes``).
* ``probs``: shape ``(N, C)`` calibrated probabilities, column ``j`` belongs to ``classes[j]``.
* ``classes``: the ``C`` class codes (e.g. the eight ISIC codes without UNK).
* ``sample_weight``: optional shape ``(N,)`` non-negative weights. With integer weights every
  metric equals the metric computed on the data set with each row repeated ``weight`` times; the
  bootstrap uses this to resample groups without copying arrays.

Decision rules (chosen to match the ``isic-challenge-scoring`` package, v5.6, which scored ISIC
2018-2020):

* The predicted class is the arg-max of ``probs``. A row whose maximum is tied between classes is
  *undecided* (label ``-1``): it is wrong for every class, exactly as the ISIC scorer does it.
* Balanced multiclass accuracy is the mean per-class recall over the classes present in
  ``y_true`` (ISIC 2018/2019 main metric); absent classes are skipped, not counted as zero.
* Per-class sensitivity / specificity are one-vs-rest with the arg-max decision above.
* AUC is the trapezoidal area under the ROC curve with tied scores collapsed into one point
  (identical to ``sklearn.metrics.roc_auc_score``, with sample weights).
* Partial AUC above 80 % TPR (``*_pauc80``) follows the **ISIC 2024 (SLICE-3D) convention**: the
  labels are flipped and the scores negated, and the raw (not McClish-standardised) area under
  the flipped ROC curve for FPR in ``[0, 0.2]`` is returned. It lies in ``[0, 0.2]``: 0.2 is a
  perfect ranking, 0.02 a random one. It equals the area of the original ROC plot inside the
  band ``TPR in [0.8, 1]`` to the right of the curve. (The 2019/2020 scorer's ``auc_sens_80``
  integrates the whole area under the curve where TPR >= 0.8 and lies in ``[0, 1]``; subtract
  ``0.8 * (1 - FPR at TPR=0.8)`` from it to get this one. And ``sklearn``'s
  ``roc_auc_score(1 - y, -p, max_fpr=0.2)`` is McClish-standardised to ``[0.5, 1]``: not this.)
* A threshold decision is positive when ``score >= threshold``.
* "Specificity at 95 % sensitivity" sweeps the threshold down over the distinct scores and takes
  the first (highest) threshold at which sensitivity reaches >= 95 %.
* ECE: 15 equal-width bins on the top-class confidence, bin ``b`` = ``(b/15, (b+1)/15]``; a row
  is correct when its first arg-max equals the truth (the usual Guo et al. 2017 definition).
* Brier score: mean over rows of ``sum_c (p_c - onehot_c)^2`` (range ``[0, 2]``).
* NLL: mean of ``-log(p_true)``, with ``p_true`` clipped to ``>= 1e-15``.

Every metric that is undefined for the data (an AUC with no positives, a sensitivity with no
positives, ...) is ``None`` rather than NaN or an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from dermsight.malignancy import malignant_probability
from dermsight.taxonomy import BY_CODE, MALIGNANT, UNKNOWN_WORDS, UNSPECIFIED

__all__ = [
    "ECE_BINS",
    "HEADLINE_METRICS",
    "MIN_TPR",
    "SENS_TARGET",
    "auc_sides",
    "balanced_accuracy",
    "binary_auc",
    "brier_score",
    "cases_behind",
    "compute_metrics",
    "confusion_counts",
    "expected_calibration_error",
    "is_proportion",
    "key_metrics",
    "malignant_scores",
    "negative_log_likelihood",
    "partial_auc_above_tpr",
    "predicted_labels",
    "rates_at_threshold",
    "reliability_bins",
    "roc_curve",
    "specificity_at_sensitivity",
    "unknown_label_warnings",
    "validate_inputs",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: how the class is decided: per-class offsets on log p, the whole rule as a function of the
#: (N, C) probabilities (``DecisionRule.decider``), or None for the plain arg-max
Offsets = npt.ArrayLike | Callable[[FloatArray], npt.ArrayLike] | None
#: An ROC curve ``(fpr, tpr, thresholds)``, ``None`` where undefined (see :func:`roc_curve`).
Curve = tuple[FloatArray, FloatArray, FloatArray] | None

ECE_BINS = 15
MIN_TPR = 0.80
SENS_TARGET = 0.95
_EPS = 1e-12

#: The metrics a report leads with, in display order (keys of :func:`compute_metrics`).
HEADLINE_METRICS: tuple[str, ...] = (
    "balanced_accuracy",
    "malignant_auc",
    "malignant_pauc80",
    "mel_auc",
    "mel_pauc80",
    "malignant_spec_at_95sens",
    "refer_sensitivity",
    "refer_specificity",
    "auc_macro",
    "ece",
    "brier",
    "nll",
)


# --- input handling ----------------------------------------------------------------------------


def _weights(sample_weight: npt.ArrayLike | None, n: int) -> FloatArray:
    """Row weights as float64: all ones when none are given."""
    return np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)


# ruff noqa below: one check per input rule.
def validate_inputs(  # noqa: PLR0912
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    sample_weight: npt.ArrayLike | None = None,
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Check shapes and ranges; return ``(y int64, probs float64, weights float64)``."""
    classes = list(classes)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {p.shape}")
    if p.shape[1] != len(classes):
        raise ValueError(f"probs has {p.shape[1]} columns but {len(classes)} classes were given")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    y_raw = np.asarray(y_true)
    if y_raw.ndim != 1 or y_raw.shape[0] != p.shape[0]:
        raise ValueError(f"y_true must have shape ({p.shape[0]},), got {y_raw.shape}")
    if y_raw.dtype.kind in "USO":
        index = {c: i for i, c in enumerate(classes)}
        try:
            y = np.array([index[str(v)] for v in y_raw], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"y_true holds a label not in classes: {exc.args[0]!r}") from exc
    else:
        if y_raw.dtype.kind == "f" and not np.all(y_raw == np.round(y_raw)):
            raise ValueError("y_true must hold integer class indices")
        y = y_raw.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise ValueError(f"y_true indices must lie in [0, {len(classes) - 1}]")
    if sample_weight is None:
        w = np.ones(y.shape[0], dtype=np.float64)
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != y.shape:
            raise ValueError(f"sample_weight must have shape {y.shape}, got {w.shape}")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("sample_weight must be finite and non-negative")
    return y, p, w


def predicted_labels(probs: npt.ArrayLike, offsets: Offsets = None) -> IntArray:
    """Arg-max class per row; ``-1`` where the maximum is tied (ISIC scorer's 'undecided').

    With ``offsets`` (per class, see :mod:`dermsight.decision`) the arg-max is taken over
    ``log p + offsets``: the balanced decision rule a bundle may carry. A function instead is the
    whole rule (``DecisionRule.decider``: a bundle with a clinic's local update) and is used as is.
    """
    p = np.asarray(probs, dtype=np.float64)
    if callable(offsets):
        return np.asarray(offsets(p), dtype=np.int64)
    if offsets is not None:
        p = np.log(np.maximum(p, 1e-300)) + np.asarray(offsets, np.float64)[None, :]
    pred = np.argmax(p, axis=1).astype(np.int64)
    top = p[np.arange(p.shape[0]), pred]
    tied = (p == top[:, None]).sum(axis=1) > 1
    pred[tied] = -1
    return np.asarray(pred, dtype=np.int64)


def malignant_scores(probs: npt.ArrayLike, classes: Sequence[str],
                     excluded: Sequence[str] = ()) -> FloatArray | None:
    """P(malignant) = sum of the MEL/BCC/SCC columns present, as a share of the classes not in
    ``excluded`` (:mod:`dermsight.malignancy`); ``None`` if none is present."""
    return malignant_probability(probs, classes, None, excluded)


def _class_index(classes: Sequence[str], code: str) -> int | None:
    return list(classes).index(code) if code in classes else None


def _is_malignant(y: IntArray, classes: Sequence[str]) -> npt.NDArray[np.bool_]:
    cols = np.array([c in MALIGNANT for c in classes], dtype=bool)
    return cols[y]


# --- binary building blocks ----------------------------------------------------------------------


def roc_curve(
    y_bin: npt.ArrayLike, score: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """ROC curve ``(fpr, tpr, thresholds)`` over the distinct scores, highest threshold first.

    The first point is ``(0, 0)`` at threshold ``+inf``. Rows with weight 0 are ignored. Returns
    ``None`` when there are no positives or no negatives (the curve is undefined).
    """
    y = np.asarray(y_bin).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    w = _weights(sample_weight, y.shape[0])
    keep = w > 0
    if not keep.all():
        y, s, w = y[keep], s[keep], w[keep]
    order = np.argsort(-s)
    s, y, w = s[order], y[order], w[order]
    tps_all = np.cumsum(w * y)
    fps_all = np.cumsum(w * ~y)
    if tps_all.size == 0 or tps_all[-1] <= 0 or fps_all[-1] <= 0:
        return None
    last_of_run = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)
    tps = np.concatenate(([0.0], tps_all[last_of_run]))
    fps = np.concatenate(([0.0], fps_all[last_of_run]))
    thresholds = np.concatenate(([np.inf], s[last_of_run]))
    return fps / fps[-1], tps / tps[-1], thresholds


def binary_auc(
    y_bin: npt.ArrayLike, score: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
) -> float | None:
    """ROC AUC (ties count one half); ``None`` without both positives and negatives."""
    return _auc(roc_curve(y_bin, score, sample_weight))


def _auc(curve: tuple[FloatArray, FloatArray, FloatArray] | None) -> float | None:
    if curve is None:
        return None
    fpr, tpr, _ = curve
    return float(np.trapezoid(tpr, fpr))


def partial_auc_above_tpr(
    y_bin: npt.ArrayLike,
    score: npt.ArrayLike,
    sample_weight: npt.ArrayLike | None = None,
    min_tpr: float = MIN_TPR,
) -> float | None:
    """Partial AUC above ``min_tpr`` sensitivity, ISIC 2024 convention: range ``[0, 1 - min_tpr]``.

    Same computation as the ISIC 2024 Kaggle metric: flip the labels (``1 - y``) and negate the
    scores, compute that ROC curve, add a point at ``FPR = 1 - min_tpr`` by linear interpolation
    and take the raw trapezoidal area for ``FPR <= 1 - min_tpr``.
    """
    return _pauc(roc_curve(y_bin, score, sample_weight), min_tpr)


def _pauc(
    curve: tuple[FloatArray, FloatArray, FloatArray] | None, min_tpr: float = MIN_TPR
) -> float | None:
    if not 0.0 <= min_tpr < 1.0:
        raise ValueError(f"min_tpr must lie in [0, 1), got {min_tpr}")
    if curve is None:
        return None
    # The ROC curve of (1 - y, -score) visits the points (1 - tpr, 1 - fpr) of the original curve
    # in reverse order (same tie groups), so the flipped curve needs no second sort.
    fpr = 1.0 - curve[1][::-1]
    tpr = 1.0 - curve[0][::-1]
    max_fpr = 1.0 - min_tpr
    stop = int(np.searchsorted(fpr, max_fpr, side="right"))
    if stop >= fpr.size:  # max_fpr == 1: the whole curve
        return float(np.trapezoid(tpr, fpr))
    y_at = float(np.interp(max_fpr, fpr[stop - 1 : stop + 1], tpr[stop - 1 : stop + 1]))
    return float(np.trapezoid(np.r_[tpr[:stop], y_at], np.r_[fpr[:stop], max_fpr]))


def rates_at_threshold(
    y_bin: npt.ArrayLike,
    score: npt.ArrayLike,
    threshold: float,
    sample_weight: npt.ArrayLike | None = None,
) -> tuple[float | None, float | None]:
    """``(sensitivity, specificity)`` of the rule ``score >= threshold``; ``None`` if undefined."""
    y = np.asarray(y_bin).astype(bool)
    pos_pred = np.asarray(score, dtype=np.float64) >= threshold
    w = _weights(sample_weight, y.shape[0])
    return _ratio(w[y & pos_pred].sum(), w[y].sum()), _ratio(w[~y & ~pos_pred].sum(), w[~y].sum())


def specificity_at_sensitivity(
    y_bin: npt.ArrayLike,
    score: npt.ArrayLike,
    target: float = SENS_TARGET,
    sample_weight: npt.ArrayLike | None = None,
) -> dict[str, float | None]:
    """Specificity at the highest threshold whose sensitivity is ``>= target``.

    Returns ``{"specificity", "sensitivity" (achieved), "threshold"}``; all ``None`` if the ROC
    curve is undefined.
    """
    return _operating_point(roc_curve(y_bin, score, sample_weight), target)


def _operating_point(
    curve: tuple[FloatArray, FloatArray, FloatArray] | None, target: float
) -> dict[str, float | None]:
    if curve is None:
        return {"specificity": None, "sensitivity": None, "threshold": None}
    fpr, tpr, thr = curve
    idx = int(np.argmax(tpr >= target - _EPS))  # tpr ends at 1, so a hit always exists
    return {
        "specificity": float(1.0 - fpr[idx]),
        "sensitivity": float(tpr[idx]),
        "threshold": float(thr[idx]),
    }


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


# --- multiclass metrics ------------------------------------------------------------------------


def confusion_counts(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None,
    offsets: Offsets = None,
) -> FloatArray:
    """``(C, C+1)`` matrix: rows = truth, columns = predicted class, last column = undecided."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    n_classes = p.shape[1]
    w = _weights(sample_weight, y.shape[0])
    pred = predicted_labels(p, offsets)
    pred = np.where(pred < 0, n_classes, pred)
    flat = np.bincount(y * (n_classes + 1) + pred, weights=w, minlength=n_classes * (n_classes + 1))
    return flat.astype(np.float64).reshape(n_classes, n_classes + 1)


def balanced_accuracy(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None,
    offsets: Offsets = None,
) -> float | None:
    """Mean recall over the classes present in ``y_true`` (ISIC 2018/2019 main metric)."""
    cm = confusion_counts(y_true, probs, sample_weight, offsets)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return None
    recall = np.diag(cm[:, :-1])[present] / support[present]
    return float(recall.mean())


def reliability_bins(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    n_bins: int = ECE_BINS,
    sample_weight: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """Per-bin ``count``, mean ``confidence`` and ``accuracy`` (``None`` in empty bins) + ``ece``.

    Bins are equal-width on the top-class probability; bin ``b`` holds ``(b/n, (b+1)/n]`` (a
    confidence of exactly 0 falls into the first bin).
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    w = _weights(sample_weight, y.shape[0])
    conf = p.max(axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, weights=w, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=w * conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=w * correct, minlength=n_bins)
    total = count.sum()
    nonempty = count > 0
    mean_conf = np.divide(conf_sum, count, out=np.zeros(n_bins), where=nonempty)
    mean_acc = np.divide(acc_sum, count, out=np.zeros(n_bins), where=nonempty)
    ece = float((count * np.abs(mean_acc - mean_conf)).sum() / total) if total > 0 else None
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "count": [float(c) for c in count],
        "confidence": [float(v) if ne else None for v, ne in zip(mean_conf, nonempty, strict=True)],
        "accuracy": [float(v) if ne else None for v, ne in zip(mean_acc, nonempty, strict=True)],
        "ece": ece,
    }


def expected_calibration_error(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    n_bins: int = ECE_BINS,
    sample_weight: npt.ArrayLike | None = None,
) -> float | None:
    """ECE on the top-class confidence with ``n_bins`` equal-width bins (default 15)."""
    ece: float | None = reliability_bins(y_true, probs, n_bins, sample_weight)["ece"]
    return ece


def _mean_row_loss(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, sample_weight: npt.ArrayLike | None,
    loss: Callable[[FloatArray, FloatArray], FloatArray],
) -> float | None:
    """Weighted mean over rows of ``loss(probs, probability of the true class)``; ``None`` when
    the weights sum to 0."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    w = _weights(sample_weight, y.shape[0])
    if w.sum() <= 0:
        return None
    return float(np.dot(w, loss(p, p[np.arange(y.shape[0]), y])) / w.sum())


def brier_score(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
) -> float | None:
    """Multiclass Brier score: mean of ``sum_c (p_c - onehot_c)^2`` (0 best, 2 worst)."""
    return _mean_row_loss(y_true, probs, sample_weight,
                          lambda p, p_true: (p**2).sum(axis=1) - 2.0 * p_true + 1.0)


def negative_log_likelihood(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
) -> float | None:
    """Mean ``-log p(true class)``, probabilities clipped to ``>= 1e-15``."""
    return _mean_row_loss(y_true, probs, sample_weight,
                          lambda p, p_true: -np.log(np.clip(p_true, 1e-15, None)))


# --- the flat metric dicts ---------------------------------------------------------------------


def key_metrics(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    sample_weight: npt.ArrayLike | None = None,
    refer_threshold: float | None = None,
    offsets: Offsets = None,
    *,
    malignant_excluded: Sequence[str] = (),
) -> dict[str, float | int | None]:
    """The small set used per subgroup: counts, malignant/MEL AUC, balanced accuracy, refer rates.

    Keys: ``n``, ``n_malignant``, ``n_mel``, ``malignant_auc``, ``mel_auc``, ``balanced_accuracy``,
    ``sensitivity``, ``specificity`` (the last two at ``refer_threshold``, ``None`` without one).
    """
    y, p, w = validate_inputs(y_true, probs, classes, sample_weight)
    mal = _is_malignant(y, classes)
    mal_score = malignant_scores(p, classes, malignant_excluded)
    mel = _class_index(classes, "MEL")
    out: dict[str, float | int | None] = {
        "n": _count(w.sum()),
        "n_malignant": _count(w[mal].sum()),
        "n_mel": _count(w[y == mel].sum()) if mel is not None else 0,
        "malignant_auc": None if mal_score is None else binary_auc(mal, mal_score, w),
        "mel_auc": None if mel is None else binary_auc(y == mel, p[:, mel], w),
        "balanced_accuracy": balanced_accuracy(y, p, w, offsets),
        "sensitivity": None,
        "specificity": None,
    }
    if refer_threshold is not None and mal_score is not None:
        out["sensitivity"], out["specificity"] = rates_at_threshold(
            mal, mal_score, refer_threshold, w
        )
    return out


def compute_metrics(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    sample_weight: npt.ArrayLike | None = None,
    *,
    refer_threshold: float | None = None,
    monitor_threshold: float | None = None,
    offsets: Offsets = None,
    malignant_excluded: Sequence[str] = (),
) -> dict[str, float | int | None]:
    """Every metric as one flat, JSON-serialisable dict (``None`` = undefined on this data).

    Keys (``<C>`` = each class code):

    * counts: ``n``, ``n_<C>``, ``n_malignant``, ``n_undecided`` (tied arg-max rows);
    * ``accuracy``, ``balanced_accuracy``, ``auc_macro`` (mean of the defined per-class AUCs;
      :func:`dermsight.evaluate.evaluate_predictions` leaves out those it withholds);
    * one-vs-rest per class: ``auc_<C>``, ``sensitivity_<C>``, ``specificity_<C>``;
    * ``mel_auc``, ``mel_pauc80``, ``malignant_auc``, ``malignant_pauc80`` (pAUC: ISIC 2024
      convention, range [0, 0.2]);
    * ``malignant_spec_at_95sens``, ``malignant_sens_at_95sens`` (achieved, >= 0.95),
      ``malignant_threshold_at_95sens`` (the threshold chosen on these same scores);
    * ``refer_threshold``, ``refer_sensitivity``, ``refer_specificity`` (malignant, ``p >= t``),
      and the same three for ``monitor_`` when that threshold is given;
    * calibration: ``ece`` (15 bins), ``brier``, ``nll``.

    ``offsets`` (see :mod:`dermsight.decision`) change only the class decision (accuracy,
    balanced accuracy, per-class sensitivity/specificity); AUCs and calibration use ``probs``.
    ``malignant_excluded``: classes left out of the malignant probability's denominator (the
    bundle's, :mod:`dermsight.malignancy`).
    """
    classes = list(classes)
    y, p, w = validate_inputs(y_true, probs, classes, sample_weight)
    pred = predicted_labels(p, offsets)
    total = w.sum()
    out: dict[str, float | int | None] = {"n": _count(total)}
    counts, per_class, curves = _per_class(y, p, w, pred, classes)
    out.update(counts)
    mal = _is_malignant(y, classes)
    out["n_malignant"] = _count(w[mal].sum())
    out["n_undecided"] = _count(w[pred < 0].sum())

    aucs = [v for k, v in per_class.items() if k.startswith("auc_") and v is not None]
    out["accuracy"] = _ratio(w[pred == y].sum(), total)
    out["balanced_accuracy"] = balanced_accuracy(y, p, w, offsets)
    out["auc_macro"] = float(np.mean(aucs)) if aucs else None
    out.update(per_class)

    mel = _class_index(classes, "MEL")
    out["mel_auc"] = None if mel is None else per_class[f"auc_{classes[mel]}"]
    out["mel_pauc80"] = None if mel is None else _pauc(curves[mel])

    mal_score = malignant_scores(p, classes, malignant_excluded)
    out.update(_malignant_ranking(mal, mal_score, w))
    for name, thr in (("refer", refer_threshold), ("monitor", monitor_threshold)):
        if thr is None:
            continue
        out[f"{name}_threshold"] = float(thr)
        rates = (None, None) if mal_score is None else rates_at_threshold(mal, mal_score, thr, w)
        out[f"{name}_sensitivity"], out[f"{name}_specificity"] = rates

    out["ece"] = expected_calibration_error(y, p, ECE_BINS, w)
    out["brier"] = brier_score(y, p, w)
    out["nll"] = negative_log_likelihood(y, p, w)
    return out


def _per_class(
    y: npt.NDArray[np.int64],
    p: npt.NDArray[np.float64],
    w: npt.NDArray[np.float64],
    pred: npt.NDArray[np.int64],
    classes: Sequence[str],
) -> tuple[dict[str, float | int | None], dict[str, float | int | None], list[Curve]]:
    """Per class: the count ``n_<C>``; one-vs-rest AUC, sensitivity and specificity; and the ROC
    curve."""
    counts: dict[str, float | int | None] = {}
    per_class: dict[str, float | int | None] = {}
    curves = []
    for j, code in enumerate(classes):
        is_c = y == j
        counts[f"n_{code}"] = _count(w[is_c].sum())
        curves.append(roc_curve(is_c, p[:, j], w))
        per_class[f"auc_{code}"] = _auc(curves[j])
        hit = pred == j
        per_class[f"sensitivity_{code}"] = _ratio(w[is_c & hit].sum(), w[is_c].sum())
        per_class[f"specificity_{code}"] = _ratio(w[~is_c & ~hit].sum(), w[~is_c].sum())
    return counts, per_class, curves


def _malignant_ranking(
    mal: npt.NDArray[np.bool_],
    mal_score: npt.NDArray[np.float64] | None,
    w: npt.NDArray[np.float64],
) -> dict[str, float | int | None]:
    """Malignant AUC, pAUC and the operating point at >= 95 % sensitivity (``None`` without a
    malignant probability)."""
    if mal_score is None:
        return dict.fromkeys(("malignant_auc", "malignant_pauc80", "malignant_spec_at_95sens",
                              "malignant_sens_at_95sens", "malignant_threshold_at_95sens"))
    curve = roc_curve(mal, mal_score, w)
    op = _operating_point(curve, SENS_TARGET)
    return {"malignant_auc": _auc(curve), "malignant_pauc80": _pauc(curve),
            "malignant_spec_at_95sens": op["specificity"],
            "malignant_sens_at_95sens": op["sensitivity"],
            "malignant_threshold_at_95sens": op["threshold"]}


def _count(x: float) -> int:
    return int(round(float(x)))


def unknown_label_warnings(labels: Iterable[object], consequence: str) -> list[str]:
    """One plain line when some of ``labels`` (class codes; ``None`` for no label) are UNK,
    else none: the word "unknown" is read as that class (``taxonomy.UNKNOWN_WORDS``), and in a
    clinic's export it often means "not known yet". ``consequence``: what an empty label does
    instead. The readers keep the class, not the word, so every UNK label is counted."""
    given = [str(v) for v in labels if v is not None]
    n_unk, n_labelled = given.count(UNSPECIFIED), len(given)
    if n_unk <= 0:
        return []
    return [(f"{n_unk} of {n_labelled} labels are {UNSPECIFIED} ({BY_CODE[UNSPECIFIED].name}), "
            f"the class a label written {' or '.join(map(repr, UNKNOWN_WORDS))} is read as: "
            f"where it means the diagnosis is not known yet, leave the label empty "
            f"({consequence})")]


# --- what a metric is computed on --------------------------------------------------------------

#: Metrics that are ``k`` of ``n`` cases at a given rule (a proportion): the class decision or a
#: threshold fixed before the data were seen. The operating point at 95 % sensitivity is not one:
#: its threshold is chosen on the same cases, so only the bootstrap (which chooses it again in
#: every resample) sees that uncertainty.
_PROPORTION_SUFFIXES = ("sensitivity", "specificity")


def is_proportion(key: str) -> bool:
    """Whether a key of :func:`compute_metrics` / :func:`key_metrics` is ``k`` of ``n`` cases:
    ``accuracy``, per-class ``sensitivity_<C>`` / ``specificity_<C>``, and the malignant
    sensitivity / specificity at a given threshold (``refer_*``, ``monitor_*``, and
    :func:`key_metrics`' ``sensitivity`` / ``specificity``)."""
    return key == "accuracy" or key.endswith(_PROPORTION_SUFFIXES) or key.startswith(
        ("sensitivity_", "specificity_"))


#: The ranking figures of one positive class against the rest (an AUC or pAUC): their
#: positives are the class (``auc_<C>``), the melanomas or the malignant items.
_MEL_RANKING = ("mel_auc", "mel_pauc80")
_MALIGNANT_RANKING = ("malignant_auc", "malignant_pauc80")


def auc_sides(key: str, metrics: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(positives, negatives)`` behind a ranking figure of a :func:`compute_metrics` /
    :func:`key_metrics` dict (``auc_<C>``: class ``C`` against the rest; ``mel_auc`` /
    ``mel_pauc80``: MEL; ``malignant_auc`` / ``malignant_pauc80``: malignant), ``None`` for any
    other key (``auc_macro`` too) or when ``metrics`` lacks the counts. An AUC rests on its
    smaller side: over 1 UNK image it says how that one image ranks, whatever the total."""
    n = metrics.get("n")
    if key.startswith("auc_") and key != "auc_macro":
        pos = metrics.get(f"n_{key[len('auc_'):]}")
    elif key in _MEL_RANKING:
        pos = metrics.get("n_MEL", metrics.get("n_mel"))
    elif key in _MALIGNANT_RANKING:
        pos = metrics.get("n_malignant")
    else:
        return None
    if not isinstance(pos, int | float) or not isinstance(n, int | float):
        return None
    return int(pos), int(n) - int(pos)


def cases_behind(key: str, metrics: Mapping[str, Any]) -> int | None:
    """How many cases the figure ``key`` of a :func:`compute_metrics` / :func:`key_metrics` dict
    is computed on: the items of class ``C`` for ``sensitivity_<C>`` and all the others for
    ``specificity_<C>``; the malignant items for a malignant sensitivity and the non-malignant
    ones for its specificity; for an AUC or pAUC of one class against the rest the smaller of
    its positives and negatives (:func:`auc_sides`); every item for the rest (``auc_macro``,
    accuracies, calibration). ``None`` when ``metrics`` lacks the counts."""
    sides = auc_sides(key, metrics)
    if sides is not None:
        return min(sides)
    n, mal = metrics.get("n"), metrics.get("n_malignant")
    if key.startswith(("sensitivity_", "specificity_")):
        n_c = metrics.get(f"n_{key.split('_', 1)[1]}")
        if n_c is None or n is None:
            return None
        return int(n_c) if key.startswith("sensitivity_") else int(n) - int(n_c)
    if key.endswith(("sensitivity", "_sens_at_95sens")):
        return None if mal is None else int(mal)
    if key.endswith(("specificity", "_spec_at_95sens")):
        return None if mal is None or n is None else int(n) - int(mal)
    return None if n is None else int(n)
