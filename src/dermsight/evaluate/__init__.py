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
      "ci": {"malignant_auc": {"value", "lo", "hi", "n"}, ...},   # every non-count metric
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
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.evaluate.bootstrap import (
    bootstrap,
    bootstrap_difference,
    bootstrap_metrics,
    group_codes,
)
from dermsight.evaluate.metrics import (
    HEADLINE_METRICS,
    compute_metrics,
    confusion_counts,
    reliability_bins,
    validate_inputs,
)
from dermsight.evaluate.subgroups import SubgroupSettings, subgroup_table
from dermsight.taxonomy import BY_CODE

__all__ = [
    "EVALUATION_SCHEMA",
    "HEADLINE_METRICS",
    "SubgroupSettings",
    "bootstrap",
    "bootstrap_difference",
    "bootstrap_metrics",
    "compare_predictions",
    "compute_metrics",
    "evaluate_predictions",
    "subgroup_table",
]

EVALUATION_SCHEMA = "dermsight.evaluation/1"


# ruff noqa below: known debt (issue 11): evaluation options.
def evaluate_predictions(  # noqa: PLR0913, PLR0917
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    groups: npt.ArrayLike | None,
    meta_df: pd.DataFrame | None = None,
    refer_threshold: float | None = None,
    n_boot: int = 200,
    seed: int = 0,
    *,
    monitor_threshold: float | None = None,
    subgroup_n_boot: int | None = None,
    decision_offsets: npt.ArrayLike | None = None,
    malignant_excluded: Sequence[str] = (),
) -> dict[str, Any]:
    """Metrics + group-bootstrap CIs + subgroups in one call (see the module docstring).

    ``groups`` (e.g. ``group_id`` / patient id per item, ``None`` = independent items) defines the
    resampling unit. ``meta_df`` (rows aligned with ``y_true``) enables the subgroup table.
    ``subgroup_n_boot`` defaults to ``n_boot``; use 0 to skip subgroup intervals.
    ``decision_offsets`` (per class, :mod:`dermsight.decision`) set the class-decision rule used
    for accuracy, balanced accuracy, per-class sensitivity and the confusion matrix;
    ``malignant_excluded`` the classes left out of the malignant probability's denominator
    (:mod:`dermsight.malignancy`).
    """
    classes = list(classes)
    y, p, _ = validate_inputs(y_true, probs, classes)
    codes = group_codes(groups, y.shape[0])
    ci = bootstrap_metrics(
        y, p, classes, codes, refer_threshold=refer_threshold, n_boot=n_boot, seed=seed,
        monitor_threshold=monitor_threshold, offsets=decision_offsets,
        malignant_excluded=malignant_excluded,
    )
    metrics = compute_metrics(
        y, p, classes, refer_threshold=refer_threshold, monitor_threshold=monitor_threshold,
        offsets=decision_offsets, malignant_excluded=malignant_excluded,
    )
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
        subgroups = subgroup_table(y, p, classes, meta_df, groups=codes, settings=SubgroupSettings(
            refer_threshold=refer_threshold, seed=seed, offsets=decision_offsets,
            malignant_excluded=tuple(malignant_excluded),
            n_boot=n_boot if subgroup_n_boot is None else subgroup_n_boot))
    return {
        "schema": EVALUATION_SCHEMA,
        "classes": classes,
        "n": int(y.shape[0]),
        "n_groups": int(codes.max()) + 1 if codes.size else 0,
        "n_boot": int(n_boot),
        "seed": int(seed),
        "ci_level": 0.95,
        "refer_threshold": None if refer_threshold is None else float(refer_threshold),
        "monitor_threshold": None if monitor_threshold is None else float(monitor_threshold),
        "metrics": metrics,
        "ci": ci,
        "per_class": per_class,
        "confusion": {"classes": classes,
                      "counts": confusion_counts(y, p, offsets=decision_offsets).tolist()},
        "reliability": reliability_bins(y, p),
        "subgroups": subgroups,
    }


# ruff noqa below: known debt (issue 11): evaluation options.
def compare_predictions(  # noqa: PLR0913, PLR0917
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    baseline_probs: npt.ArrayLike,
    classes: Sequence[str],
    groups: npt.ArrayLike | None,
    refer_threshold: float | None = None,
    n_boot: int = 200,
    seed: int = 0,
    decision_offsets: npt.ArrayLike | None = None,
    malignant_excluded: Sequence[str] = (),
) -> dict[str, dict[str, float | int | None]]:
    """Paired group-bootstrap CIs of ``model - baseline`` for every metric (same resamples).

    Put the result in ``results["baseline"]["difference"]`` for the report.
    """
    y = np.asarray(y_true)
    return bootstrap_difference(
        y, probs, baseline_probs, classes, groups, refer_threshold=refer_threshold,
        n_boot=n_boot, seed=seed, offsets=decision_offsets, malignant_excluded=malignant_excluded,
    )
