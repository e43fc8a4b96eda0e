"""Group-level bootstrap confidence intervals.

Lesions from one patient (or near-duplicate images of one lesion) are not independent, so the
bootstrap resamples *groups* (``group_id``) with replacement and keeps every item of a drawn group.
A resample is expressed as integer item weights (how many times the item's group was drawn); every
metric in :mod:`dermsight.evaluate.metrics` accepts ``sample_weight`` and, with integer weights,
equals the metric on the materialised resample. No arrays are copied per resample.

CIs are percentile intervals (2.5 % / 97.5 % by default). A resample in which a metric is
undefined (e.g. no melanoma drawn, so no MEL AUC) is skipped for that metric only; ``n`` reports
how many resamples contributed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.evaluate.metrics import compute_metrics, validate_inputs
from dermsight.evaluate.settings import DEFAULTS, EvalSettings

__all__ = [
    "CI",
    "bootstrap",
    "bootstrap_difference",
    "bootstrap_metrics",
    "group_codes",
    "group_weights",
    "is_count_key",
]

#: One metric with its interval: ``{"value", "lo", "hi", "n"}`` (``n`` = resamples used).
CI = dict[str, float | int | None]
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
    out: dict[str, CI] = {}
    for k in keys:
        vals = np.asarray(draws[k], dtype=np.float64)
        value = point.get(k)
        lo = hi = None
        if vals.size and value is not None:
            lo_f, hi_f = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            lo, hi = float(lo_f), float(hi_f)
        out[k] = {
            "value": None if value is None else float(value),
            "lo": lo,
            "hi": hi,
            "n": int(vals.size),
        }
    return out


def bootstrap_metrics(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    groups: npt.ArrayLike | None = None,
    settings: EvalSettings = DEFAULTS,
) -> dict[str, CI]:
    """Group-bootstrap CIs for everything :func:`compute_metrics` returns (counts excluded)."""
    y, p, _ = validate_inputs(y_true, probs, classes)
    decisions = settings.decisions()

    def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        return compute_metrics(y, p, classes, w, **decisions)

    return bootstrap(fn, y.shape[0], groups, **settings.resampling())


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
