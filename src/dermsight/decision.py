"""How the suggested class is chosen from calibrated probabilities.

The probabilities themselves (temperature-scaled) stay untouched: AUCs, the malignant probability
and the risk tiers use them as they are. Only the *suggested class* may use a balanced rule:
post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021),

    suggested = argmax_c  log p_c - tau * log prior_c

with ``prior`` the training class frequencies and ``tau`` fitted on validation balanced accuracy.
``tau = 0`` is the plain "most probable class" rule. Rare classes (dermatofibroma, AK, SCC) get a
fairer chance of being named; the shown probabilities do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

ARGMAX = "argmax"
LOGIT_ADJUSTED = "logit_adjusted"

#: tau values tried when fitting the rule on validation
TAU_GRID: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(0, 21))


@dataclass(frozen=True)
class DecisionRule:
    """``offsets[c] = -tau * log(prior[c])`` is added to ``log p`` before the arg-max."""

    rule: str = ARGMAX
    tau: float = 0.0
    prior: dict[str, float] | None = None

    @property
    def plain(self) -> bool:
        """True when the rule is the plain arg-max (no adjustment to apply)."""
        return self.rule == ARGMAX or not self.tau or not self.prior

    def offsets(self, classes: Sequence[str]) -> np.ndarray | None:
        """Per-class additive offsets on log-probabilities (``None`` for plain arg-max)."""
        if self.plain or self.prior is None:
            return None
        prior = np.array([float(self.prior.get(c, 0.0)) for c in classes])
        # a class absent from training (e.g. UNK when its only source is held out) gets no boost
        safe = np.where(prior > 0, prior, 1.0)
        return np.asarray(np.where(prior > 0, -self.tau * np.log(safe), 0.0), np.float64)

    def choose(self, probs: npt.ArrayLike, classes: Sequence[str]) -> np.ndarray:
        """Index of the suggested class per row of (N, C) probabilities."""
        return decide(probs, self.offsets(classes))

    @property
    def description(self) -> str:
        if self.plain:
            return "most probable class"
        return (f"balanced: most probable class after dividing by the training class frequency "
                f"to the power {self.tau:g} (logit adjustment)")

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "tau": self.tau, "prior": self.prior,
                "description": self.description}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DecisionRule:
        if not d:
            return cls()
        rule = str(d.get("rule", ARGMAX))
        if rule not in (ARGMAX, LOGIT_ADJUSTED):
            raise ValueError(f"unknown decision rule {rule!r}")
        prior = d.get("prior")
        return cls(rule=rule, tau=float(d.get("tau", 0.0)),
                   prior=None if prior is None else {str(k): float(v) for k, v in prior.items()})


def decide(probs: npt.ArrayLike, offsets: npt.ArrayLike | None = None) -> np.ndarray:
    """Arg-max of ``log p + offsets`` per row (plain arg-max of ``p`` without offsets)."""
    p = np.asarray(probs, np.float64)
    if offsets is None:
        return np.asarray(np.argmax(p, axis=1), np.int64)
    score = np.log(np.maximum(p, 1e-300)) + np.asarray(offsets, np.float64)[None, :]
    return np.asarray(np.argmax(score, axis=1), np.int64)


def class_prior(labels: npt.ArrayLike, classes: Sequence[str]) -> dict[str, float]:
    """Class frequencies of integer ``labels`` (the training split)."""
    y = np.asarray(labels, np.int64)
    counts = np.bincount(y, minlength=len(classes)).astype(np.float64)
    return {c: float(n / counts.sum()) for c, n in zip(classes, counts, strict=True)}


def balanced_accuracy_of(y: npt.ArrayLike, pred: npt.ArrayLike, n_classes: int) -> float:
    """Mean recall over the classes present in ``y``."""
    yy, pp = np.asarray(y, np.int64), np.asarray(pred, np.int64)
    recalls = [float(np.mean(pp[yy == c] == c)) for c in range(n_classes) if np.any(yy == c)]
    return float(np.mean(recalls)) if recalls else 0.0


def fit_decision_rule(
    probs: npt.ArrayLike, labels: npt.ArrayLike, classes: Sequence[str],
    prior: dict[str, float], grid: Sequence[float] = TAU_GRID,
) -> tuple[DecisionRule, dict[str, float]]:
    """Choose tau on (validation) data by balanced accuracy; ties go to the smaller tau.

    Returns the rule and the balanced accuracy per tau tried (for the card).
    """
    curve: dict[str, float] = {}
    best_tau, best = 0.0, -1.0
    for tau in grid:
        rule = DecisionRule(LOGIT_ADJUSTED, float(tau), prior)
        score = balanced_accuracy_of(labels, rule.choose(probs, classes), len(classes))
        curve[f"{tau:g}"] = round(score, 4)
        if score > best + 1e-9:
            best_tau, best = float(tau), score
    rule = DecisionRule(LOGIT_ADJUSTED if best_tau else ARGMAX, best_tau, prior)
    return rule, curve
