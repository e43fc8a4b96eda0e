"""Cross-source validation tables: does the model work on each data source, and on a source it
never saw?

Two protocols, one row shape:

* ``test_split_by_source``: the held-out test split scored by the shipped model, one row per
  data source (``ham10000``, ``isic2017``, ``isic2020``, ...);
* ``leave_one_source_out``: a model trained on all *other* sources, scored on every image of the
  left-out source (``trained_on`` lists the sources it was trained on).

The card carries the section as ``cross_source`` (type :class:`CrossSource`)::

    {
      "schema": "dermsight.cross_source/1",
      "metrics": ["balanced_accuracy", "mel_auc", "malignant_auc",
                  "refer_sensitivity", "refer_specificity"],
      "min_n": 30, "min_cases": 5, "ci_level": 0.95,
      "rows": [
        {"protocol": "test_split_by_source", "source": "ham10000",
         "n_images": 1477, "n_groups": 1180, "n_malignant": 265, "n_mel": 159,
         "classes_present": ["MEL", "NV", ...],
         "metrics": {"balanced_accuracy": {"value": 0.58, "lo": 0.53, "hi": 0.64}, ...},
         "note": null,                      # why metrics were withheld, or what else a
                                            # reader must know (e.g. other draws' spread)
         "n_boot": 200, "trained_on": null, # LOSO: the training sources
         "run": {"config": "configs/default.yaml", "seed": 42, "command": "make train"}},
        ...
      ],
      "generated_by": "python tools/card_tables.py ...",   # optional
    }

Each metric is ``{"value", "lo", "hi"}`` (95 % group-bootstrap percentile interval); all three
are ``null`` when withheld under the subgroup rule (:mod:`dermsight.evaluate.subgroups`: under 30
images every metric, under 5 positives or negatives that AUC / sensitivity / specificity) or
undefined (e.g. no malignant image). Balanced accuracy is over the classes present in that
source (ISIC 2017/2019 hold only MEL/NV/BKL), so it is not comparable across sources with
different class mixes; ``classes_present`` says which.

Predictions frames (input of :func:`source_rows` / :func:`add_loso_row`) have one row per
image: ``label`` (class code), ``source``, optional ``group`` (bootstrap unit, e.g. lesion or
patient id; missing = the image itself) and one probability column ``p_<CODE>`` per class, as
``dermsight batch`` writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import cache
from typing import Any, Final, Literal, NotRequired

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from dermsight.evaluate.bootstrap import group_codes
from dermsight.evaluate.metrics import validate_inputs
from dermsight.evaluate.settings import DEFAULTS, MIN_CASES, MIN_N, EvalSettings
from dermsight.evaluate.subgroups import subgroup_metrics

__all__ = [
    "CROSS_SOURCE_METRICS",
    "CROSS_SOURCE_SCHEMA",
    "LOSO",
    "TEST_BY_SOURCE",
    "CrossSource",
    "CrossSourceRow",
    "Estimate",
    "RunInfo",
    "add_loso_row",
    "cross_source_section",
    "source_row",
    "source_rows",
    "validate_cross_source",
]

CROSS_SOURCE_SCHEMA = "dermsight.cross_source/1"
TEST_BY_SOURCE: Final = "test_split_by_source"
LOSO: Final = "leave_one_source_out"
Protocol = Literal["test_split_by_source", "leave_one_source_out"]

#: Row metric -> key of :func:`dermsight.evaluate.metrics.key_metrics`.
_KEY_METRIC: dict[str, str] = {
    "balanced_accuracy": "balanced_accuracy",
    "mel_auc": "mel_auc",
    "malignant_auc": "malignant_auc",
    "refer_sensitivity": "sensitivity",
    "refer_specificity": "specificity",
}
CROSS_SOURCE_METRICS: tuple[str, ...] = tuple(_KEY_METRIC)


class Estimate(TypedDict):
    value: float | None
    lo: float | None
    hi: float | None


class RunInfo(TypedDict):
    """Which run produced the scores: config file, seed, and the command that reproduces it."""

    config: str | None
    seed: int | None
    command: str | None


class CrossSourceRow(TypedDict):
    protocol: Protocol
    source: str
    n_images: int
    n_groups: int
    n_malignant: int
    n_mel: int
    classes_present: list[str]
    metrics: dict[str, Estimate]
    note: str | None
    n_boot: int
    trained_on: list[str] | None
    run: RunInfo


class CrossSource(TypedDict):
    schema: str
    metrics: list[str]
    min_n: int
    min_cases: int
    ci_level: float
    rows: list[CrossSourceRow]
    #: the command that computed the rows, when not the training run itself
    generated_by: NotRequired[str]


@cache
def _adapter() -> TypeAdapter[CrossSource]:
    return TypeAdapter(CrossSource)


def validate_cross_source(obj: Any) -> CrossSource:
    """Check a ``cross_source`` section (e.g. read back from a card); raises
    ``pydantic.ValidationError`` on a bad shape."""
    return _adapter().validate_python(obj)


def _frame_arrays(
    frame: pd.DataFrame, classes: Sequence[str]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    label_col, group_col = "label", "group"
    prob_cols = [f"p_{c}" for c in classes]
    missing = [c for c in (label_col, *prob_cols) if c not in frame.columns]
    if missing:
        raise ValueError(f"predictions frame lacks column(s): {', '.join(missing)}")
    labels = frame[label_col].astype(str).to_numpy()
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels outside the model's classes: {', '.join(unknown)} "
                         "(drop or map those rows first)")
    y, p, _ = validate_inputs(labels, frame[prob_cols].to_numpy(np.float64), classes)
    groups = frame[group_col].to_numpy(dtype=object) if group_col in frame.columns else None
    return y, p, group_codes(groups, y.shape[0])


def source_row(
    frame: pd.DataFrame,
    classes: Sequence[str],
    source: str,
    protocol: Protocol,
    run: RunInfo,
    *,
    settings: EvalSettings = DEFAULTS,
    trained_on: Sequence[str] | None = None,
) -> CrossSourceRow:
    """One row from the predictions of one source (every row of ``frame`` is used)."""
    classes = list(classes)
    if frame.empty:
        raise ValueError(f"no predictions for source {source!r}")
    y, p, codes = _frame_arrays(frame, classes)
    # the same figures, withholding rules and group bootstrap as a subgroup row
    body = subgroup_metrics(y, p, codes, classes, settings)
    metrics: dict[str, Estimate] = {
        name: {"value": _float(body[key]), "lo": _float(body[f"{key}_lo"]),
               "hi": _float(body[f"{key}_hi"])}
        for name, key in _KEY_METRIC.items()}
    present = set(y.tolist())
    return {
        "protocol": protocol,
        "source": str(source),
        "n_images": int(y.shape[0]),
        "n_groups": int(np.unique(codes).size),
        "n_malignant": int(body["n_malignant"] or 0),
        "n_mel": int(body["n_mel"] or 0),
        "classes_present": [c for i, c in enumerate(classes) if i in present],
        "metrics": metrics,
        "note": body["note"],
        "n_boot": int(settings.n_boot),
        "trained_on": None if trained_on is None else [str(s) for s in trained_on],
        "run": run,
    }


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def source_rows(
    frame: pd.DataFrame,
    classes: Sequence[str],
    run: RunInfo,
    *,
    source_col: str = "source",
    protocol: Protocol = "test_split_by_source",
    settings: EvalSettings = DEFAULTS,
) -> list[CrossSourceRow]:
    """Per-source rows from a predictions frame (e.g. the test split), sources in name order,
    each scored with ``settings`` (:func:`source_row`)."""
    if source_col not in frame.columns:
        raise ValueError(f"predictions frame lacks the {source_col!r} column")
    sources = frame[source_col].fillna("unknown").astype(str)
    return [source_row(frame[sources == s], classes, s, protocol, run, settings=settings)
            for s in sorted(sources.unique())]


def cross_source_section(
    rows: Iterable[CrossSourceRow],
    min_n: int = MIN_N,
    min_cases: int = MIN_CASES,
    generated_by: str | None = None,
) -> CrossSource:
    """Wrap rows into the card's ``cross_source`` section (test-split rows first)."""
    ordered = sorted(rows, key=lambda r: (r["protocol"] != TEST_BY_SOURCE, r["source"]))
    section: CrossSource = {
        "schema": CROSS_SOURCE_SCHEMA,
        "metrics": list(CROSS_SOURCE_METRICS),
        "min_n": int(min_n),
        "min_cases": int(min_cases),
        "ci_level": 0.95,
        "rows": ordered,
    }
    if generated_by:
        section["generated_by"] = generated_by
    return section


def add_loso_row(
    section: CrossSource | None,
    frame: pd.DataFrame,
    classes: Sequence[str],
    left_out: str,
    trained_on: Sequence[str],
    run: RunInfo,
    *,
    source_col: str = "source",
    settings: EvalSettings | None = None,
) -> CrossSource:
    """Score a left-out source and add its ``leave_one_source_out`` row to ``section``.

    ``frame`` holds the predictions of a model trained on ``trained_on`` (which must not include
    ``left_out``) for the left-out images; rows of other sources in ``frame`` are ignored. An
    earlier LOSO row for the same source is replaced. Returns a new section. The row is scored
    with ``settings`` (:func:`source_row`); without them, with the defaults and the section's own
    withholding limits.
    """
    if left_out in trained_on:
        raise ValueError(f"{left_out!r} cannot be both left out and trained on")
    if source_col in frame.columns:
        frame = frame[frame[source_col].astype(str) == left_out]
    if settings is None:
        settings = DEFAULTS if section is None else replace(
            DEFAULTS, min_n=section["min_n"], min_cases=section["min_cases"])
    row = source_row(frame, classes, left_out, LOSO, run, settings=settings,
                     trained_on=trained_on)
    old = [] if section is None else list(section["rows"])
    kept = [r for r in old if not (r["protocol"] == LOSO and r["source"] == left_out)]
    generated_by = None if section is None else section.get("generated_by")
    return cross_source_section([*kept, row], min_n=settings.min_n,
                                min_cases=settings.min_cases, generated_by=generated_by)
