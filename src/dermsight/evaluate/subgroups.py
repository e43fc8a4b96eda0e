"""Key metrics per subgroup: sex, age band, anatomic site and data source.

Each subgroup row holds counts, malignant AUC, MEL AUC, balanced accuracy and the malignant
sensitivity / specificity at the refer threshold, optionally with group-bootstrap 95 % CIs.

Numbers that would mislead are withheld (``None``) and the row's ``note`` says why:

* the subgroup has fewer than ``min_n`` (default 30) items: every metric is withheld;
* fewer than ``min_cases`` (default 5) positives or negatives for a metric: that AUC, sensitivity
  or specificity is withheld (an AUC over two melanomas is noise, not evidence).

With the ``"wilson"`` interval method (:func:`~dermsight.evaluate.bootstrap.interval_method`) the
sensitivity and specificity get the Wilson score interval widened to the group bootstrap, and a
bootstrap interval of zero width (every resample of a subgroup gave the same AUC, say) is not
shown: its ``<metric>_lo`` / ``<metric>_hi`` are ``None`` and the ``note`` says so.

``meta_df`` rows must be aligned with ``y_true``. Column names are looked up in this order:
age ``age``/``age_approx``; sex ``sex``; site ``site``/``anatom_site``/``anatom_site_general``/
``anatom_site_general_challenge``; source ``source``/``data_source``. An attribute whose column is
absent is left out of the table. Empty, NaN, ``none``, ``null`` and ``unknown`` count as missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.evaluate.bootstrap import (
    WILSON,
    CaseCI,
    bootstrap,
    case_intervals,
    group_codes,
    interval_method,
)
from dermsight.evaluate.metrics import key_metrics, validate_inputs
from dermsight.evaluate.settings import MIN_CASES, MIN_N, NO_INTERVALS, EvalSettings
from dermsight.taxonomy import SEXES, SITES

__all__ = [
    "AGE_BANDS",
    "ATTRIBUTE_COLUMNS",
    "MIN_CASES",
    "MIN_N",
    "MISSING",
    "SUBGROUP_METRICS",
    "age_band",
    "subgroup_labels",
    "subgroup_table",
]

MISSING = "missing"
AGE_BANDS: tuple[str, ...] = ("<30", "30-44", "45-59", "60-74", "75+")

ATTRIBUTE_COLUMNS: dict[str, tuple[str, ...]] = {
    "sex": ("sex",),
    "age": ("age", "age_approx"),
    "site": ("site", "anatom_site", "anatom_site_general", "anatom_site_general_challenge"),
    "source": ("source", "data_source"),
}

#: The metrics each row carries (each with ``<name>_lo`` / ``<name>_hi``).
SUBGROUP_METRICS: tuple[str, ...] = (
    "malignant_auc",
    "mel_auc",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
)

_MISSING_STRINGS = frozenset({"", "nan", "none", "null", "unknown", "na", "n/a"})


def _missing(value: object) -> bool:
    if value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value))):
        return True
    return str(value).strip().lower() in _MISSING_STRINGS


def age_band(age: object) -> str:
    """``<30``, ``30-44``, ``45-59``, ``60-74``, ``75+`` or ``missing``."""
    if _missing(age):
        return MISSING
    try:
        a = float(str(age).strip())
    except ValueError:
        return MISSING
    if a != a:
        return MISSING
    for upper, band in zip((30, 45, 60, 75), AGE_BANDS, strict=False):
        if a < upper:
            return band
    return AGE_BANDS[-1]


def _blank(value: object) -> bool:
    """Really missing: ``None``, NaN or only whitespace (a data source named ``none``, ``na``
    or ``unknown`` is a name, not a missing value)."""
    if value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value))):
        return True
    return not str(value).strip()


def _category(value: object, *, names_only: bool = False) -> str:
    """A row's subgroup key: the value with its spaces collapsed, case folded (``clinicA`` and
    ``CLINICA`` are one group), or :data:`MISSING`; ``names_only``: only a blank value is
    missing (:func:`_blank`), as for a data source."""
    if _blank(value) if names_only else _missing(value):
        return MISSING
    return " ".join(str(value).split()).casefold()


def _categories(values: Sequence[object], vocabulary: Sequence[str], *,
                names_only: bool = False) -> list[str]:
    """The rows' subgroup names: case variants of one value are one group, shown as the
    vocabulary spells it (``SEXES``, ``SITES``) or else as the first row spelt it
    (``clinicA``, not ``clinica``)."""
    keys = [_category(v, names_only=names_only) for v in values]
    shown: dict[str, str] = {MISSING: MISSING, **{v.casefold(): v for v in vocabulary}}
    for key, value in zip(keys, values, strict=True):
        if key not in shown:
            shown[key] = " ".join(str(value).split())
    return [shown[k] for k in keys]


def _ordered(labels: Sequence[str], preferred: Sequence[str]) -> list[str]:
    present = set(labels)
    head = [v for v in preferred if v in present]
    rest = sorted(present - set(head) - {MISSING})
    return head + rest + ([MISSING] if MISSING in present else [])


def subgroup_labels(meta_df: pd.DataFrame) -> dict[str, tuple[npt.NDArray[np.str_], list[str]]]:
    """``{attribute: (label per row, subgroup order)}`` for the attributes ``meta_df`` has."""
    out: dict[str, tuple[npt.NDArray[np.str_], list[str]]] = {}
    for attr, candidates in ATTRIBUTE_COLUMNS.items():
        col = next((c for c in candidates if c in meta_df.columns), None)
        if col is None:
            continue
        values = meta_df[col].tolist()
        if attr == "age":
            labels = [age_band(v) for v in values]
            order = _ordered(labels, AGE_BANDS)
        else:
            vocabulary = SEXES if attr == "sex" else SITES if attr == "site" else ()
            labels = _categories(values, vocabulary, names_only=attr == "source")
            order = _ordered(labels, vocabulary)
        out[attr] = (np.asarray(labels, dtype=str), order)
    return out


def _withheld(
    m: dict[str, Any], min_n: int, min_cases: int, has_threshold: bool
) -> tuple[set[str], list[str]]:
    """Which metrics to withhold for this subgroup, and the notes saying why."""
    n, n_mal, n_mel = int(m["n"]), int(m["n_malignant"]), int(m["n_mel"])
    if n < min_n:
        return set(SUBGROUP_METRICS), [f"n={n} < {min_n}: too few to report"]
    drop: set[str] = set()
    notes: list[str] = []
    if n_mal < min_cases:
        drop |= {"malignant_auc", "sensitivity"}
        notes.append(f"{n_mal} malignant (< {min_cases}): malignant AUC/sensitivity withheld")
    if n - n_mal < min_cases:
        drop |= {"malignant_auc", "specificity"}
        notes.append(f"{n - n_mal} benign (< {min_cases}): malignant AUC/specificity withheld")
    if n_mel < min_cases or n - n_mel < min_cases:
        drop.add("mel_auc")
        notes.append(f"{n_mel} MEL of {n} (< {min_cases} either side): MEL AUC withheld")
    if not has_threshold:
        drop |= {"sensitivity", "specificity"}
    return drop, notes


def subgroup_table(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    meta_df: pd.DataFrame,
    *,
    groups: npt.ArrayLike | None = None,
    settings: EvalSettings = NO_INTERVALS,
) -> list[dict[str, Any]]:
    """One row per (attribute, subgroup); see the module docstring for the withholding rules.
    ``groups``: the bootstrap's resampling unit (``None`` = independent items; labels, or integer
    codes as :func:`~dermsight.evaluate.bootstrap.group_codes` gives them: a source's row then
    has the intervals of its ``cross_source`` row on the same predictions); ``settings``:
    see :class:`~dermsight.evaluate.settings.EvalSettings` (default: no refer threshold, no
    intervals; ``monitor_threshold`` and ``alpha`` are not read).

    Row keys: ``attribute``, ``subgroup``, ``n``, ``n_malignant``, ``n_mel``, each metric in
    :data:`SUBGROUP_METRICS` with ``<metric>_lo`` / ``<metric>_hi`` (``None`` when ``n_boot`` is
    0 or the metric is withheld), and ``note`` (``None`` when nothing was withheld).
    """
    classes = list(classes)
    y, p, _ = validate_inputs(y_true, probs, classes)
    if len(meta_df) != y.shape[0]:
        raise ValueError(f"meta_df has {len(meta_df)} rows but y_true has {y.shape[0]}")
    codes = _group_codes(groups, y.shape[0])
    rows: list[dict[str, Any]] = []
    for attr, (labels, order) in subgroup_labels(meta_df.reset_index(drop=True)).items():
        for sub in order:
            idx = np.flatnonzero(labels == sub)
            row: dict[str, Any] = {"attribute": attr, "subgroup": sub}
            row.update(subgroup_metrics(y[idx], p[idx], codes[idx], classes, settings))
            rows.append(row)
    return rows


def _group_codes(groups: npt.ArrayLike | None, n: int) -> npt.NDArray[np.int64]:
    """Integer ``groups`` as they are (the codes that ``evaluate_predictions`` hands over, which
    :func:`~dermsight.evaluate.bootstrap.group_codes` would renumber in the text order of their
    digits), other labels through ``group_codes``; :func:`subgroup_metrics` renumbers each
    subgroup's codes in their order."""
    g = None if groups is None else np.asarray(groups)
    if g is not None and g.dtype.kind in "iu" and g.shape == (n,):
        return g.astype(np.int64)
    return group_codes(groups, n)


def subgroup_metrics(
    y: npt.NDArray[np.int64],
    p: npt.NDArray[np.float64],
    group_codes_: npt.NDArray[np.int64],
    classes: Sequence[str],
    settings: EvalSettings = NO_INTERVALS,
) -> dict[str, Any]:
    """One subgroup's row body: counts, each metric of :data:`SUBGROUP_METRICS` with its
    group-bootstrap interval (``None`` where withheld), and the withholding ``note``.

    ``group_codes_`` may be codes of a larger set (``codes[idx]``): they are renumbered
    ``0..G-1`` in their own order here, so the same rows give the same resamples, and the same
    intervals, whether their codes came from the whole set (a subgroup row) or from these rows
    alone (a :mod:`~dermsight.evaluate.cross_source` row)."""
    group_codes_ = np.unique(np.asarray(group_codes_), return_inverse=True)[1].astype(np.int64)

    def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        return key_metrics(y, p, classes, w, settings.refer_threshold, settings.offsets,
                           malignant_excluded=settings.malignant_excluded)

    m = fn(None)
    drop, notes = _withheld(m, settings.min_n, settings.min_cases,
                            settings.refer_threshold is not None)
    keep = [k for k in SUBGROUP_METRICS if k not in drop]
    row: dict[str, Any] = {"n": m["n"], "n_malignant": m["n_malignant"], "n_mel": m["n_mel"]}
    method = case_intervals if interval_method(settings) == WILSON else bootstrap
    cis: dict[str, CaseCI] = {k: {**v} for k, v in method(
        fn, y.shape[0], group_codes_, n_boot=settings.n_boot, seed=settings.seed, keys=keep
    ).items()} if keep else {}
    for k in SUBGROUP_METRICS:
        ci = cis.get(k)
        row[k] = None if ci is None else ci["value"]
        row[f"{k}_lo"] = None if ci is None else ci["lo"]
        row[f"{k}_hi"] = None if ci is None else ci["hi"]
        if ci is not None and ci.get("note"):
            notes.append(f"{k}: {ci['note']}")
    row["note"] = "; ".join(notes) or None
    return row
