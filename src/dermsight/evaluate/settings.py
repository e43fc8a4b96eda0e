"""How predictions are scored: one settings object for every function of
:mod:`dermsight.evaluate` that computes metrics with group-bootstrap intervals.

:class:`EvalSettings` holds the decision settings the metrics read (refer / monitor thresholds,
the per-class decision offsets of :mod:`dermsight.decision`, the classes left out of the
malignant probability's denominator of :mod:`dermsight.malignancy`), the bootstrap's resampling
(resamples, seed, two-sided level) and the withholding limits of small groups (``min_n`` items,
``min_cases`` positives or negatives per metric). A card records the values its figures were
computed with, so anyone can recompute them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dermsight.evaluate.metrics import Offsets

__all__ = ["DEFAULTS", "MIN_CASES", "MIN_N", "NO_INTERVALS", "EvalSettings"]

#: Fewer items than this in a group (subgroup, source, ITA band): every metric is withheld.
MIN_N = 30
#: Fewer positives or negatives than this for one metric: that metric is withheld.
MIN_CASES = 5


@dataclass(frozen=True)
class EvalSettings:
    """Settings of one evaluation (defaults: arg-max decisions, no thresholds, 200 resamples).

    * ``refer_threshold`` / ``monitor_threshold``: malignant-probability thresholds whose
      sensitivity / specificity are reported (``None``: not computed);
    * ``offsets``: per-class decision offsets (``None`` = arg-max), or the whole rule as a
      function (``DecisionRule.decider``);
    * ``malignant_excluded``: classes left out of the malignant probability's denominator;
    * ``n_boot`` (0: no intervals), ``seed``, ``alpha`` (0.05: 95 % intervals);
    * ``min_n``, ``min_cases``: the withholding limits;
    * ``intervals``: ``"bootstrap"`` (the percentile group bootstrap for every figure, ``n``
      counting resamples: how the frozen shipped card's stored figures were made, kept as the
      default so that ``tools/card_tables.py`` and ``tools/add_loso_rows.py`` reproduce them)
      or ``"wilson"`` (``dermsight evaluate`` / ``batch --evaluate`` and the cards that
      ``dermsight train`` writes: a proportion gets the Wilson interval widened to the group
      bootstrap, so 24 of 24 is not shown as 1.000 to 1.000; entries name their cases ``n``
      and resamples ``draws``; an AUC's ``n`` is the smaller of its positives and negatives,
      both given, and it is withheld under ``min_cases``).
    """

    refer_threshold: float | None = None
    monitor_threshold: float | None = None
    offsets: Offsets = None
    malignant_excluded: Sequence[str] = ()
    n_boot: int = 200
    seed: int = 0
    alpha: float = 0.05
    min_n: int = MIN_N
    min_cases: int = MIN_CASES
    intervals: str = "bootstrap"

    def decisions(self) -> dict[str, Any]:
        """The keyword arguments of :func:`dermsight.evaluate.metrics.compute_metrics`."""
        return {"refer_threshold": self.refer_threshold,
                "monitor_threshold": self.monitor_threshold, "offsets": self.offsets,
                "malignant_excluded": self.malignant_excluded}

    def resampling(self) -> dict[str, Any]:
        """The keyword arguments of :func:`dermsight.evaluate.bootstrap.bootstrap`."""
        return {"n_boot": self.n_boot, "seed": self.seed, "alpha": self.alpha}


#: The settings of a call that passes none (arg-max, no thresholds, 200 resamples, seed 0).
DEFAULTS = EvalSettings()
#: Subgroup and ITA rows without given settings: no refer threshold, no intervals.
NO_INTERVALS = EvalSettings(n_boot=0)
