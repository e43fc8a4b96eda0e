"""Key metrics by skin-tone band (ITA, Del Bino categories), with image counts for every band.

The tone is estimated from the image (:mod:`dermsight.skintone`): there are no skin-type labels.
The table has one row per Del Bino band, lightest first, then ``not estimable``, **always all
seven rows**: a band with no image shows ``n = 0`` so the reader sees how few darker-skin images
there are. Rows carry the same keys as :func:`dermsight.evaluate.subgroups.subgroup_table` rows
(``attribute`` = ``"ita_band"``) plus ``ita_range``, and follow the same withholding rule: under
``min_n`` (30) images every metric is withheld, under ``min_cases`` (5) positives or negatives
that AUC / sensitivity / specificity is withheld; the counts are always given.

:func:`ita_table` returns (JSON-serialisable; stored in the card as ``metrics.test.by_ita``)::

    {
      "method": "...",                       # how ITA was estimated, one sentence
      "bands": [row, ...],                   # 7 rows: very light ... dark, not estimable
      "n": 1826, "n_estimable": 1200,
      "darker_bands": ["tan", "brown", "dark"], "n_darker": 31,
      "statement": "Of 1,826 test images ...",   # the plain sentence for card, report and UI
      "min_n": 30, "min_cases": 5, "n_boot": 200,
    }
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from dermsight.evaluate.bootstrap import group_codes
from dermsight.evaluate.metrics import validate_inputs
from dermsight.evaluate.settings import NO_INTERVALS, EvalSettings
from dermsight.evaluate.subgroups import (
    MIN_N,
    SUBGROUP_METRICS,
    subgroup_metrics,
)
from dermsight.skintone import BAND_LIMITS, BANDS, DARKER_BANDS, NOT_ESTIMABLE, ita_band

__all__ = ["ITA_ATTRIBUTE", "ITA_METHOD", "band_ranges", "ita_statement", "ita_table"]

ITA_ATTRIBUTE = "ita_band"
ITA_METHOD = (
    "Individual typology angle ITA = arctan((L* - 50) / b*) from the median CIELAB L* and b* of "
    "the non-lesion skin pixels of each image (dark vignette, hair, glare and the darker lesion "
    "excluded; dermsight.skintone), banded as in Del Bino et al. 2006. Estimated from dermoscopic "
    "colour, not measured: an image whose skin shows a blue/purple cast (b* <= 0) is 'not "
    "estimable', and dim exposures push light skin into the darker bands, so their counts are "
    "an upper bound (docs/skin-tone.md)."
)


def band_ranges() -> dict[str, str]:
    """``{band: "41 to 55°"}`` for the six Del Bino bands."""
    out: dict[str, str] = {}
    upper: float | None = None
    for band, lower in zip(BANDS, (*BAND_LIMITS, None), strict=True):
        if upper is None:
            out[band] = f"> {lower:g}°"
        elif lower is None:
            out[band] = f"≤ {upper:g}°"
        else:
            out[band] = f"{lower:g} to {upper:g}°"
        upper = lower
    return out


def ita_statement(
    counts: dict[str, int], n: int, min_n: int = MIN_N, noun: str = "images"
) -> str:
    """The plain sentence on how few darker-skin images there are (``noun``: "test images")."""
    n_est = n - counts.get(NOT_ESTIMABLE, 0)
    n_dark = sum(counts.get(b, 0) for b in DARKER_BANDS)
    parts = ", ".join(f"{b} {counts.get(b, 0):,}" for b in DARKER_BANDS)
    share = f" ({100.0 * n_dark / n_est:.1f} % of those)" if n_est else ""
    text = (f"Of {n:,} {noun}, a skin tone (ITA) could be estimated for {n_est:,}; only "
            f"{n_dark:,}{share} fall in the tan, brown or dark bands ({parts}).")
    thin = [b for b in DARKER_BANDS if counts.get(b, 0) < min_n]
    if thin:
        text += (f" Bands with fewer than {min_n} images ({', '.join(thin)}) get no metrics: "
                 "performance on darker skin is not measured here, which does not mean it is "
                 "good.")
    return text


def ita_table(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    ita: Sequence[float | None],
    *,
    groups: npt.ArrayLike | None = None,
    settings: EvalSettings = NO_INTERVALS,
    noun: str = "images",
) -> dict[str, Any]:
    """Metrics per ITA band (``ita[i]`` in degrees or ``None``, aligned with ``y_true``).

    ``groups`` is the bootstrap's resampling unit (``None`` = independent images), ``settings``
    the threshold, resamples and withholding limits that every band's row is computed with
    (:class:`~dermsight.evaluate.settings.EvalSettings`; default: no refer threshold, no
    intervals). ``noun`` names the items in the statement (e.g. ``"test images"``).
    """
    classes = list(classes)
    y, p, _ = validate_inputs(y_true, probs, classes)
    if len(ita) != y.shape[0]:
        raise ValueError(f"ita has {len(ita)} values but y_true has {y.shape[0]}")
    codes = group_codes(groups, y.shape[0])
    labels = np.asarray([ita_band(v) for v in ita], dtype=str)
    ranges = band_ranges()
    rows: list[dict[str, Any]] = []
    for band in (*BANDS, NOT_ESTIMABLE):
        idx = np.flatnonzero(labels == band)
        row: dict[str, Any] = {"attribute": ITA_ATTRIBUTE, "subgroup": band,
                               "ita_range": ranges.get(band, "")}
        if idx.size == 0:
            row.update({"n": 0, "n_malignant": 0, "n_mel": 0})
            row.update({f"{k}{s}": None for k in SUBGROUP_METRICS for s in ("", "_lo", "_hi")})
            row["note"] = "no images"
            rows.append(row)
            continue
        row.update(subgroup_metrics(y[idx], p[idx], codes[idx], classes, settings))
        rows.append(row)
    counts = {r["subgroup"]: int(r["n"]) for r in rows}
    n = int(y.shape[0])
    return {
        "method": ITA_METHOD,
        "bands": rows,
        "n": n,
        "n_estimable": n - counts[NOT_ESTIMABLE],
        "darker_bands": list(DARKER_BANDS),
        "n_darker": sum(counts[b] for b in DARKER_BANDS),
        "statement": ita_statement(counts, n, settings.min_n, noun),
        "min_n": int(settings.min_n),
        "min_cases": int(settings.min_cases),
        "n_boot": int(settings.n_boot),
    }
