"""Group-level bootstrap confidence intervals, and the Wilson score interval of a proportion.

Lesions from one patient (or near-duplicate images of one lesion) are not independent, so the
bootstrap resamples *groups* (``group_id``) with replacement and keeps every item of a drawn group.
A resample is expressed as integer item weights (how many times the item's group was drawn); every
metric in :mod:`dermsight.evaluate.metrics` accepts ``sample_weight`` and, with integer weights,
equals the metric on the materialised resample. No arrays are copied per resample.

:func:`bootstrap` gives percentile intervals (2.5 % / 97.5 % by default). A resample in which a
metric is undefined (e.g. no melanoma drawn, so no MEL AUC) is skipped for that metric only; ``n``
reports how many resamples contributed. It is what the shipped cards' figures were computed with
(the ``"bootstrap"`` interval method of :func:`interval_method`).

A percentile interval collapses on a proportion at 0 or 1: 24 of 24 referred gives 1.000 in
every resample, "1.000 to 1.000". :func:`case_intervals` (the ``"wilson"`` method, what
``dermsight evaluate`` reports) therefore gives a proportion (``k`` of ``n`` cases, see
:func:`~dermsight.evaluate.metrics.is_proportion`) the Wilson score interval
(:func:`wilson_interval`; 24 of 24: 0.862 to 1.000), widened to the group-bootstrap percentile
interval where that reaches further (items of one patient or lesion are not independent, which
the Wilson interval assumes). Every other figure (AUCs, balanced accuracy, calibration) keeps the
group bootstrap; where the middle 95 % of its resamples all gave one value it shows no interval
and says so in ``note``. Its entries name the cases behind a figure ``n`` and the resamples
``draws``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.evaluate.metrics import (
    auc_sides,
    cases_behind,
    compute_metrics,
    is_proportion,
    validate_inputs,
)
from dermsight.evaluate.settings import DEFAULTS, EvalSettings

__all__ = [
    "BOOTSTRAP",
    "CI",
    "WILSON",
    "CaseCI",
    "bootstrap",
    "bootstrap_difference",
    "bootstrap_metrics",
    "case_intervals",
    "group_codes",
    "group_weights",
    "interval_method",
    "is_count_key",
    "wilson_interval",
]

#: One metric with its :func:`bootstrap` interval: ``{"value", "lo", "hi", "n"}`` (``n`` =
#: resamples used).
CI = dict[str, float | int | None]
#: One metric with its :func:`case_intervals` interval: ``{"value", "lo", "hi", "n", "draws",
#: "method"}`` (``n`` = cases; for an AUC the smaller of its ``positives`` and ``negatives``,
#: given too), a proportion with ``k`` too, and ``note`` where a bootstrap shows no interval.
CaseCI = dict[str, float | int | str | None]
#: Interval methods (:func:`interval_method`): the percentile group bootstrap for every figure
#: (the shipped cards'), or proportions by Wilson widened to the bootstrap (:func:`case_intervals`).
BOOTSTRAP = "bootstrap"
WILSON = "wilson"
#: ``method`` of a :func:`case_intervals` entry
PROPORTION_METHOD = "wilson+bootstrap"
RESAMPLED_METHOD = "bootstrap"
#: resampled values closer than this are one value (an AUC of 1 sums to 0.9999999999999999)
_SAME = 1e-9
MetricFn = Callable[[npt.NDArray[np.float64] | None], Mapping[str, float | int | None]]


def is_count_key(key: str) -> bool:
    """Counts (``n``, ``n_*``) and given thresholds are data, not estimates: no interval."""
    return key == "n" or key.startswith("n_") or key in ("refer_threshold", "monitor_threshold")


def _missing(v: object) -> bool:
    return v is None or (pd.api.types.is_scalar(v) and bool(pd.isna(v))) or v == ""


def group_codes(groups: npt.ArrayLike | None, n: int) -> npt.NDArray[np.int64]:
    """Map group labels to ``0..G-1``; ``None`` (or missing labels) make each item its own group."""
    if groups is None:
        return np.arange(n, dtype=np.int64)
    g = np.asarray(groups, dtype=object)
    if g.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {g.shape}")
    labels = [f"\x00item{i}" if _missing(v) else str(v) for i, v in enumerate(g)]
    _, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    return codes.astype(np.int64)


def group_weights(
    codes: npt.NDArray[np.int64], n_boot: int, seed: int | np.random.Generator = 0
) -> Iterator[npt.NDArray[np.float64]]:
    """Yield ``n_boot`` item-weight vectors, each one group-level resample with replacement."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n_groups = int(codes.max()) + 1 if codes.size else 0
    for _ in range(n_boot):
        drawn = rng.integers(0, n_groups, size=n_groups)
        per_group = np.bincount(drawn, minlength=n_groups).astype(np.float64)
        yield per_group[codes]


def wilson_interval(k: float, n: float, alpha: float = 0.05) -> tuple[float, float] | None:
    """Wilson score interval of ``k`` successes in ``n`` cases, two-sided level ``1 - alpha``
    (Wilson 1927; ``statsmodels`` ``proportion_confint(method="wilson")``); ``None`` when
    ``n`` is 0. It stays inside [0, 1] and does not collapse at 0 or 1: 24 of 24 gives
    0.862 to 1.000."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n], got k={k}, n={n}")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p, z2n = k / n, z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def interval_method(settings: EvalSettings) -> str:
    """``settings.intervals``: :data:`BOOTSTRAP` (the default: the frozen shipped card's
    figures) or :data:`WILSON` (``dermsight evaluate`` and new cards)."""
    method = settings.intervals
    if method not in (BOOTSTRAP, WILSON):
        raise ValueError(f"intervals must be {BOOTSTRAP!r} or {WILSON!r}, got {method!r}")
    return method


def _resample(
    metric_fn: MetricFn,
    n_items: int,
    groups: npt.ArrayLike | None,
    n_boot: int,
    seed: int,
    keys: Sequence[str] | None,
) -> tuple[dict[str, Any], list[str], dict[str, npt.NDArray[np.float64]]]:
    """The point estimates, the keys with intervals, and per key the values of the resamples
    that defined it."""
    point = dict(metric_fn(None))
    if keys is None:
        keys = [k for k, v in point.items() if not is_count_key(k) and not isinstance(v, bool)]
    keys = list(keys)
    codes = group_codes(groups, n_items)
    draws: dict[str, list[float]] = {k: [] for k in keys}
    for w in group_weights(codes, n_boot, seed):
        m = metric_fn(w)
        for k in keys:
            v = m.get(k)
            if v is not None:
                draws[k].append(float(v))
    return point, keys, {k: np.asarray(draws[k], dtype=np.float64) for k in keys}


def _percentile(vals: npt.NDArray[np.float64], alpha: float) -> tuple[float, float] | None:
    if not vals.size:
        return None
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def bootstrap(
    metric_fn: MetricFn,
    n_items: int,
    groups: npt.ArrayLike | None = None,
    *,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    keys: Sequence[str] | None = None,
) -> dict[str, CI]:
    """Percentile CIs for every non-count numeric key that ``metric_fn`` returns.

    ``metric_fn(sample_weight)`` computes the flat metric dict (``sample_weight=None`` is the full
    data, the point estimate). Returns ``{key: {"value", "lo", "hi", "n"}}``; ``lo``/``hi`` are
    ``None`` when no resample defined the metric (or ``n_boot`` is 0).
    """
    point, keys, draws = _resample(metric_fn, n_items, groups, n_boot, seed, keys)
    out: dict[str, CI] = {}
    for k in keys:
        value = point.get(k)
        ci = _percentile(draws[k], alpha) if value is not None else None
        out[k] = {
            "value": None if value is None else float(value),
            "lo": None if ci is None else ci[0],
            "hi": None if ci is None else ci[1],
            "n": int(draws[k].size),
        }
    return out


def case_intervals(
    metric_fn: MetricFn,
    n_items: int,
    groups: npt.ArrayLike | None = None,
    *,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    keys: Sequence[str] | None = None,
) -> dict[str, CaseCI]:
    """Like :func:`bootstrap` (same resamples), with the cases behind each figure and an
    interval that does not collapse at 0 or 1 (the :data:`WILSON` method).

    ``metric_fn`` returns a :func:`~dermsight.evaluate.metrics.compute_metrics` or
    :func:`~dermsight.evaluate.metrics.key_metrics` dict (its counts give the cases). Entry:
    ``value``; ``lo``/``hi`` (``None`` when ``n_boot`` is 0, or see ``note``); ``n``: the cases
    the figure is computed on (:func:`~dermsight.evaluate.metrics.cases_behind`); ``draws``:
    the resamples that defined it; ``method``: ``"wilson+bootstrap"`` for a proportion (then
    also ``k``, its successes: the Wilson score interval of ``k`` of ``n``, widened to the
    percentile interval of the group bootstrap where that reaches further) or ``"bootstrap"``
    (the percentile interval). A bootstrap interval of zero width is not shown: ``lo``/``hi``
    are ``None`` and ``note`` says how many resamples gave the one value.
    """
    point, keys, draws = _resample(metric_fn, n_items, groups, n_boot, seed, keys)
    return {k: _case_entry(k, point, draws[k], alpha, n_boot > 0) for k in keys}


def _case_entry(key: str, point: Mapping[str, Any], vals: npt.NDArray[np.float64], alpha: float,
                with_interval: bool) -> CaseCI:
    """One :func:`case_intervals` entry."""
    value = point.get(key)
    n = cases_behind(key, point)
    entry: CaseCI = {"value": None if value is None else float(value), "lo": None, "hi": None,
                     "n": n, "draws": int(vals.size), "method": RESAMPLED_METHOD}
    sides = auc_sides(key, point)
    if sides is not None:  # an AUC's n is its smaller side: say both
        entry.update(positives=sides[0], negatives=sides[1])
    if value is None or not with_interval:
        return entry
    boot = _percentile(vals, alpha)
    k = int(round(float(value) * n)) if n else 0
    wilson = wilson_interval(k, n, alpha) if n and is_proportion(key) else None
    if wilson is not None:
        lo, hi = wilson if boot is None else (min(wilson[0], boot[0]), max(wilson[1], boot[1]))
        entry.update(k=k, lo=lo, hi=hi, method=PROPORTION_METHOD)
    elif boot is not None and math.isclose(boot[0], boot[1], rel_tol=0.0, abs_tol=_SAME):
        same = int(np.count_nonzero(np.abs(vals - boot[1]) <= _SAME))
        entry["note"] = (f"{same} of the {vals.size} resamples gave {boot[1]:.3f}: too few "
                         "cases for the bootstrap to show an interval")
    elif boot is not None:
        entry.update(lo=boot[0], hi=boot[1])
    return entry


def bootstrap_metrics(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    groups: npt.ArrayLike | None = None,
    settings: EvalSettings = DEFAULTS,
) -> dict[str, CaseCI]:
    """CIs for everything :func:`compute_metrics` returns (counts excluded): :func:`bootstrap`,
    or with the :data:`WILSON` method (:func:`interval_method`) :func:`case_intervals`."""
    y, p, _ = validate_inputs(y_true, probs, classes)
    decisions = settings.decisions()

    def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        return compute_metrics(y, p, classes, w, **decisions)

    if interval_method(settings) == WILSON:
        return case_intervals(fn, y.shape[0], groups, **settings.resampling())
    cis: dict[str, CaseCI] = {
        k: {**v} for k, v in bootstrap(fn, y.shape[0], groups, **settings.resampling()).items()}
    return cis


def bootstrap_difference(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    baseline_probs: npt.ArrayLike,
    classes: Sequence[str],
    groups: npt.ArrayLike | None = None,
    settings: EvalSettings = DEFAULTS,
) -> dict[str, CI]:
    """Paired group bootstrap of ``metric(model) - metric(baseline)`` on the same resamples.

    Both models are scored on each resample, so the interval reflects the paired difference
    (narrower and more honest than comparing two separate intervals). The monitor threshold is
    not compared (``settings.monitor_threshold`` is ignored).
    """
    y, p, _ = validate_inputs(y_true, probs, classes)
    _, pb, _ = validate_inputs(y, baseline_probs, classes)
    decisions = {**settings.decisions(), "monitor_threshold": None}

    def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        a = compute_metrics(y, p, classes, w, **decisions)
        b = compute_metrics(y, pb, classes, w, **decisions)
        out: dict[str, Any] = {}
        for k, va in a.items():
            vb = b.get(k)
            if not is_count_key(k) and not k.endswith("_threshold_at_95sens"):
                out[k] = None if va is None or vb is None else float(va) - float(vb)
        return out

    return bootstrap(fn, y.shape[0], groups, **settings.resampling())
