"""Evaluation: ISIC-challenge metrics, group-bootstrap CIs, subgroups, plots and the HTML report.

Pure functions over arrays (numpy + pandas; no torch, no scikit-learn). ``plots`` needs
matplotlib (the ``[train]`` extra) and is imported only when used.

:func:`evaluate_predictions` returns the *evaluation* dict (JSON-serialisable)::

    {
      "schema": "dermsight.evaluation/1",
      "classes": ["MEL", "NV", ...],           # column order of probs
      "n": 1830, "n_groups": 1502,              # items and bootstrap groups
      "n_boot": 200, "seed": 0, "ci_level": 0.95,
      "refer_threshold": 0.31 | None, "monitor_threshold": 0.12 | None,
      "metrics": {...},                         # flat point estimates, see metrics.compute_metrics
      "ci": {"malignant_auc": {"value", "lo", "hi", "n", "draws", ...}, ...},  # every
                                                # non-count metric; n = cases (an AUC: the
                                                # smaller of its positives / negatives, which
                                                # it gives too; withheld under min_cases)
      "per_class": [{"code", "name", "n", "auc", "sensitivity", "specificity"}, ...],
                                                # auc/sensitivity/specificity are CI dicts
      "confusion": {"classes": [...], "counts": [[...], ...]},   # rows truth, cols predicted,
                                                # last column = undecided (tied arg-max)
      "reliability": {"edges", "count", "confidence", "accuracy", "ece"},   # 15 bins
      "subgroups": [row, ...],                  # see subgroups.subgroup_table ([] w/o meta_df)
    }

The HTML report's ``results`` schema (which embeds this dict) is documented in
:mod:`dermsight.evaluate.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.evaluate.bootstrap import (
    WILSON,
    bootstrap,
    bootstrap_difference,
    bootstrap_metrics,
    case_intervals,
    group_codes,
    interval_method,
)
from dermsight.evaluate.metrics import (
    HEADLINE_METRICS,
    auc_sides,
    binary_auc,
    compute_metrics,
    confusion_counts,
    reliability_bins,
    unknown_label_warnings,
    validate_inputs,
)
from dermsight.evaluate.settings import DEFAULTS, MIN_CASES, EvalSettings
from dermsight.evaluate.subgroups import subgroup_table
from dermsight.taxonomy import BY_CODE

__all__ = [
    "EVALUATION_SCHEMA",
    "HEADLINE_METRICS",
    "EvalSettings",
    "bootstrap",
    "bootstrap_difference",
    "bootstrap_metrics",
    "compare_predictions",
    "compute_metrics",
    "evaluate_predictions",
    "subgroup_table",
    "unknown_label_warnings",
    "withhold_thin_aucs",
]

EVALUATION_SCHEMA = "dermsight.evaluation/1"


def evaluate_predictions(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    groups: npt.ArrayLike | None,
    meta_df: pd.DataFrame | None = None,
    settings: EvalSettings = DEFAULTS,
    *,
    subgroup_n_boot: int | None = None,
) -> dict[str, Any]:
    """Metrics + group-bootstrap CIs + subgroups in one call (see the module docstring).

    ``groups`` (e.g. ``group_id`` / patient id per item, ``None`` = independent items) defines the
    resampling unit. ``meta_df`` (rows aligned with ``y_true``) enables the subgroup table.
    ``settings`` (:class:`~dermsight.evaluate.settings.EvalSettings`): the thresholds, the
    per-class decision offsets (:mod:`dermsight.decision`) used for accuracy, balanced accuracy,
    per-class sensitivity and the confusion matrix, the classes left out of the malignant
    probability's denominator (:mod:`dermsight.malignancy`), and the resampling.
    ``subgroup_n_boot`` defaults to ``settings.n_boot``; use 0 to skip subgroup intervals.
    """
    classes = list(classes)
    y, p, _ = validate_inputs(y_true, probs, classes)
    codes = group_codes(groups, y.shape[0])
    ci = bootstrap_metrics(y, p, classes, codes, settings)
    metrics = compute_metrics(y, p, classes, **settings.decisions())
    if interval_method(settings) == WILSON:  # a card's stored bootstrap figures stay as made
        withhold_thin_aucs(metrics, ci, settings.min_cases)
        _macro_without_withheld(metrics, ci, y, p, classes, codes, settings=settings)
    empty = {"value": None, "lo": None, "hi": None, "n": 0}
    per_class = [
        {
            "code": code,
            "name": BY_CODE[code].name if code in BY_CODE else code,
            "n": metrics[f"n_{code}"],
            "auc": ci.get(f"auc_{code}", empty),
            "sensitivity": ci.get(f"sensitivity_{code}", empty),
            "specificity": ci.get(f"specificity_{code}", empty),
        }
        for code in classes
    ]
    subgroups: list[dict[str, Any]] = []
    if meta_df is not None:
        n_sub = settings.n_boot if subgroup_n_boot is None else subgroup_n_boot
        subgroups = subgroup_table(y, p, classes, meta_df, groups=codes,
                                   settings=replace(settings, n_boot=n_sub))
    return {
        "schema": EVALUATION_SCHEMA,
        "classes": classes,
        "n": int(y.shape[0]),
        "n_groups": int(codes.max()) + 1 if codes.size else 0,
        "n_boot": int(settings.n_boot),
        "seed": int(settings.seed),
        "ci_level": 0.95,
        "refer_threshold": _float_or_none(settings.refer_threshold),
        "monitor_threshold": _float_or_none(settings.monitor_threshold),
        "metrics": metrics,
        "ci": ci,
        "per_class": per_class,
        "confusion": {"classes": classes,
                      "counts": confusion_counts(y, p, offsets=settings.offsets).tolist()},
        "reliability": reliability_bins(y, p),
        "subgroups": subgroups,
    }


def withhold_thin_aucs(metrics: dict[str, Any], ci: dict[str, Any],
                       min_cases: int = MIN_CASES) -> list[str]:
    """Withhold (value ``None``, no interval, ``withheld`` and a ``note``) every AUC / pAUC of
    one class against the rest whose positives or negatives are fewer than ``min_cases``, in
    ``metrics`` and in its :func:`~dermsight.evaluate.bootstrap.case_intervals` entry of
    ``ci`` (which keeps ``n``, ``positives`` and ``negatives``), as a subgroup's are withheld:
    an AUC over one UNK image only says how that image ranks, and its bootstrap interval looks
    far narrower than what is known. Returns what was withheld, one phrase each."""
    said: list[str] = []
    for key, entry in ci.items():
        sides = auc_sides(key, metrics)
        if sides is None or min(sides) >= min_cases or not isinstance(entry, dict):
            continue
        if metrics.get(key) is None and entry.get("value") is None:
            continue  # undefined (a class absent), not withheld
        pos, neg = sides
        why = f"{pos} positive, {neg} negative (< {min_cases} on a side): withheld"
        metrics[key] = None
        entry.update(value=None, lo=None, hi=None, withheld=True, note=why)
        entry.pop("k", None)
        said.append(f"{key} ({pos} positive, {neg} negative)")
    return said


def _macro_without_withheld(metrics: dict[str, Any], ci: dict[str, Any],
                            y: npt.NDArray[np.int64], p: npt.NDArray[np.float64],
                            classes: Sequence[str], codes: npt.NDArray[np.int64], *,
                            settings: EvalSettings) -> None:
    """After :func:`withhold_thin_aucs`: ``auc_macro`` (value and interval, same resamples) as
    the mean over the classes whose AUC was not withheld, its entry naming those left out
    (``left_out`` and ``note``). Nothing changes when no class AUC was withheld."""
    left_out = [c for c in classes
                if isinstance(ci.get(f"auc_{c}"), dict) and ci[f"auc_{c}"].get("withheld")]
    if not left_out:
        return
    kept = [i for i, c in enumerate(classes) if c not in left_out]

    def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        vals = [binary_auc(y == i, p[:, i], w) for i in kept]
        defined = [v for v in vals if v is not None]
        return {"n": int(y.shape[0]) if w is None else int(round(float(w.sum()))),
                "auc_macro": float(np.mean(defined)) if defined else None}

    entry: dict[str, Any] = dict(case_intervals(fn, int(y.shape[0]), codes, keys=["auc_macro"],
                                **settings.resampling())["auc_macro"])
    named = ", ".join(left_out)
    entry["left_out"] = left_out
    entry["note"] = (f"mean over the classes whose AUC is shown; left out (AUC withheld): "
                     f"{named}")
    metrics["auc_macro"] = entry["value"]
    ci["auc_macro"] = entry


def compare_predictions(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    baseline_probs: npt.ArrayLike,
    classes: Sequence[str],
    groups: npt.ArrayLike | None,
    settings: EvalSettings = DEFAULTS,
) -> dict[str, dict[str, float | int | None]]:
    """Paired group-bootstrap CIs of ``model - baseline`` for every metric (same resamples).

    Put the result in ``results["baseline"]["difference"]`` for the report.
    """
    y = np.asarray(y_true)
    return bootstrap_difference(y, probs, baseline_probs, classes, groups, settings)


def _float_or_none(x: float | None) -> float | None:
    return None if x is None else float(x)
