"""How the suggested class is chosen from calibrated probabilities.

The probabilities themselves (temperature-scaled) stay untouched: AUCs, the malignant probability
and the risk tiers use them as they are. Only the *suggested class* may use a balanced rule:
post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021),

    suggested = argmax_c  log p_c - tau * log prior_c

with ``prior`` the training class frequencies and ``tau`` fitted on validation balanced accuracy:
pooled over the validation split, or (``sources`` given) the mean over validation sources of each
source's balanced accuracy, which keeps a few dozen rare images of one collection from pulling
tau up at the expense of another collection's nevi (``source_mean_balanced_accuracy``).
``tau = 0`` is the plain "most probable class" rule. Rare classes (dermatofibroma, AK, SCC) get a
fairer chance of being named; the shown probabilities do not change.

A class may also carry a **margin** m (``margins``, in natural-log units): it is named only when
its log-probability, after the prior adjustment above, leads the best other class's by more than
m (not a log-odds). It is meant for a class whose training images all come from one
collection (UNK: only ISIC 2020), where the network's certainty partly means "looks like that
collection"; m is fitted on validation as the largest value that costs at most a set tolerance of
balanced accuracy (``fit_margins``).

A bundle adapted to one clinic (``dermsight bundle adapt``, :mod:`dermsight.local_update`) also
carries a **local update** (``LocalUpdate``): a multinomial logistic regression from the
log-probabilities to the classes the clinic's labelled cases cover. When the rule above suggests
one of those classes that is not a kept (malignant) class, the update's first-ranked class among
them is suggested instead; any other suggestion stands, so a suggestion of melanoma (BCC, SCC) is
never taken away. Probabilities, the malignant probability and the tiers are never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

ARGMAX = "argmax"
LOGIT_ADJUSTED = "logit_adjusted"

#: tau values tried when fitting the rule on validation
TAU_GRID: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(0, 21))
#: a source's class counts in the by-source criterion only with at least this many images
MIN_SOURCE_CLASS_IMAGES = 10
#: margins (leads in adjusted log-probability) tried when fitting a class's margin on validation
MARGIN_GRID: tuple[float, ...] = tuple(0.5 * k for k in range(0, 13))
#: probabilities are floored here before the log a local update reads (fitting and serving alike)
LOG_FLOOR = 1e-12


def log_probs(probs: npt.ArrayLike) -> np.ndarray:
    """``log(max(p, LOG_FLOOR))``: what a local update is fitted on and applied to."""
    return np.log(np.maximum(np.asarray(probs, np.float64), LOG_FLOOR))


@dataclass(frozen=True)
class LocalUpdate:
    """A clinic's update of the suggested class: ``classes`` (the classes its labelled cases
    cover), scores ``weights @ log p + bias`` (one row per class of ``classes``, one column per
    model class). ``evaluation`` holds its own cross-fitted figures (written for the card)."""

    classes: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    #: whose cases (a clinic or collection name, as given to ``dermsight bundle adapt``)
    name: str
    n_images: int
    created: str
    evaluation: dict[str, Any] | None = field(default=None, compare=False)
    #: suggestions of these classes are never changed (the model's malignant classes)
    kept: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError("a local update needs at least two distinct classes")
        if not len(self.weights) == len(self.bias) == len(self.classes):
            raise ValueError("a local update needs one weight row and one bias per class")
        if len({len(r) for r in self.weights}) != 1:
            raise ValueError("a local update's weight rows must have the same length")

    def redecide(self, probs: npt.ArrayLike, top: npt.ArrayLike,
                 classes: Sequence[str]) -> np.ndarray:
        """``top`` (suggested class indices) with each suggestion among ``self.classes`` and
        not among ``self.kept`` replaced by the update's first-ranked class among ``classes``."""
        missing = [c for c in (*self.classes, *self.kept) if c not in classes]
        if missing or len(self.weights[0]) != len(classes):
            raise ValueError(f"the local update does not fit the model's classes {list(classes)}")
        idx = np.array([list(classes).index(c) for c in self.classes], np.int64)
        kept = np.array([list(classes).index(c) for c in self.kept], np.int64)
        score = log_probs(probs) @ np.asarray(self.weights, np.float64).T
        score += np.asarray(self.bias, np.float64)[None, :]
        t = np.asarray(top, np.int64)
        changes = np.isin(t, idx) & ~np.isin(t, kept)
        return np.where(changes, idx[np.argmax(score, axis=1)], t)

    @property
    def description(self) -> str:
        changed = [c for c in self.classes if c not in self.kept]
        text = (f"then, when that class is {' or '.join(changed)}, re-decided among "
                f"{', '.join(self.classes)} by a local update fitted on {self.n_images} labelled "
                f"cases of {self.name} ({self.created[:10]})")
        if self.kept:
            text += f"; a suggestion of {', '.join(self.kept)} is never changed by it"
        return text

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"classes": list(self.classes),
                             "weights": [list(r) for r in self.weights],
                             "bias": list(self.bias), "name": self.name,
                             "n_images": self.n_images, "created": self.created,
                             "kept": list(self.kept)}
        if self.evaluation is not None:
            d["evaluation"] = self.evaluation
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LocalUpdate:
        return cls(classes=tuple(str(c) for c in d["classes"]),
                   weights=tuple(tuple(float(v) for v in r) for r in d["weights"]),
                   bias=tuple(float(v) for v in d["bias"]), name=str(d["name"]),
                   n_images=int(d["n_images"]), created=str(d["created"]),
                   evaluation=d.get("evaluation"),
                   kept=tuple(str(c) for c in d.get("kept") or ()))


@dataclass(frozen=True)
class DecisionRule:
    """``offsets[c] = -tau * log(prior[c]) - margins[c]`` is added to ``log p``, then arg-max."""

    rule: str = ARGMAX
    tau: float = 0.0
    prior: dict[str, float] | None = None
    #: per-class handicap on the adjusted log-probability (a class is named only when it leads
    #: by more than this)
    margins: dict[str, float] | None = None
    #: a clinic's local update, applied after the rule above (``dermsight bundle adapt``)
    local: LocalUpdate | None = None

    @property
    def adjusts_prior(self) -> bool:
        return self.rule == LOGIT_ADJUSTED and bool(self.tau) and bool(self.prior)

    @property
    def active_margins(self) -> dict[str, float]:
        return {c: m for c, m in (self.margins or {}).items() if m > 0}

    @property
    def plain(self) -> bool:
        """True when the rule is the plain arg-max (no adjustment to apply)."""
        return not self.adjusts_prior and not self.active_margins

    def offsets(self, classes: Sequence[str]) -> np.ndarray | None:
        """Per-class additive offsets on log-probabilities (``None`` for plain arg-max)."""
        if self.plain:
            return None
        out = np.zeros(len(classes), np.float64)
        if self.adjusts_prior and self.prior is not None:
            prior = np.array([float(self.prior.get(c, 0.0)) for c in classes])
            # a class absent from training (e.g. UNK when its only source is held out): no boost
            safe = np.where(prior > 0, prior, 1.0)
            out += np.where(prior > 0, -self.tau * np.log(safe), 0.0)
        margins = self.active_margins
        out -= np.array([margins.get(c, 0.0) for c in classes], np.float64)
        return out

    def decider(self, classes: Sequence[str]) -> np.ndarray | Callable[..., np.ndarray] | None:
        """What an evaluation's ``offsets`` take: the offsets (``None``: plain arg-max), or with
        a local update the whole rule as a function of the probabilities."""
        if self.local is None:
            return self.offsets(classes)
        return partial(self.choose, classes=list(classes))

    def choose(self, probs: npt.ArrayLike, classes: Sequence[str]) -> np.ndarray:
        """Index of the suggested class per row of (N, C) probabilities."""
        top = decide(probs, self.offsets(classes))
        return top if self.local is None else self.local.redecide(probs, top, classes)

    @property
    def description(self) -> str:
        text = self._base_description
        return text if self.local is None else f"{text}; {self.local.description}"

    @property
    def _base_description(self) -> str:
        if self.plain:
            return "most probable class"
        text = ("balanced: most probable class after dividing by the training class frequency "
                f"to the power {self.tau:g} (logit adjustment)" if self.adjusts_prior
                else "most probable class")
        scale = "adjusted log-probability" if self.adjusts_prior else "log-probability"
        for c, m in sorted(self.active_margins.items()):
            text += (f"; {c} named only when it leads the next class by more than {m:g} in "
                     f"{scale} (natural log; its training images come from one collection)")
        return text

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": self.rule, "tau": self.tau, "prior": self.prior}
        if self.active_margins:
            d["margins"] = self.active_margins
        if self.local is not None:
            d["local_update"] = self.local.to_dict()
        d["description"] = self.description
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DecisionRule:
        if not d:
            return cls()
        rule = str(d.get("rule", ARGMAX))
        if rule not in (ARGMAX, LOGIT_ADJUSTED):
            raise ValueError(f"unknown decision rule {rule!r}")
        prior, margins, local = d.get("prior"), d.get("margins"), d.get("local_update")
        return cls(rule=rule, tau=float(d.get("tau", 0.0)),
                   prior=None if prior is None else {str(k): float(v) for k, v in prior.items()},
                   margins=None if not margins else {str(k): float(v)
                                                     for k, v in margins.items()},
                   local=None if not local else LocalUpdate.from_dict(local))


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


def balanced_accuracy_of(y: npt.ArrayLike, pred: npt.ArrayLike, n_classes: int,
                         sample_weight: npt.ArrayLike | None = None) -> float:
    """Mean recall over the classes present in ``y`` (with ``sample_weight``: weighted recalls
    over the classes with weight, e.g. a bootstrap resample's item counts)."""
    yy, pp = np.asarray(y, np.int64), np.asarray(pred, np.int64)
    w = np.ones(len(yy)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    recalls = [float(w[(yy == c) & (pp == c)].sum() / w[yy == c].sum())
               for c in range(n_classes) if w[yy == c].sum() > 0]
    return float(np.mean(recalls)) if recalls else 0.0


def source_mean_balanced_accuracy(
    y: npt.ArrayLike, pred: npt.ArrayLike, sources: npt.ArrayLike, n_classes: int,
    min_class_images: int = MIN_SOURCE_CLASS_IMAGES,
) -> float:
    """Mean over sources of each source's balanced accuracy, over that source's classes with at
    least ``min_class_images`` images (a prediction of any other class counts as wrong); sources
    without such a class are left out (0.0 when none is left)."""
    yy, pp = np.asarray(y, np.int64), np.asarray(pred, np.int64)
    src = np.asarray(sources).astype(str)
    if not yy.shape == pp.shape == src.shape:
        raise ValueError("labels, predictions and sources must have the same length")
    scores = []
    for s in sorted(set(src.tolist())):
        m = src == s
        counts = np.bincount(yy[m], minlength=n_classes)
        keep = m & np.isin(yy, np.flatnonzero(counts >= min_class_images))
        if keep.any():
            scores.append(balanced_accuracy_of(yy[keep], pp[keep], n_classes))
    return float(np.mean(scores)) if scores else 0.0


def fit_decision_rule(
    probs: npt.ArrayLike, labels: npt.ArrayLike, classes: Sequence[str],
    prior: dict[str, float], grid: Sequence[float] = TAU_GRID, *,
    sources: npt.ArrayLike | None = None, min_class_images: int = MIN_SOURCE_CLASS_IMAGES,
) -> tuple[DecisionRule, dict[str, float]]:
    """Choose tau on (validation) data by balanced accuracy; ties go to the smaller tau.

    With ``sources`` (one per row) the criterion is ``source_mean_balanced_accuracy`` (classes
    with at least ``min_class_images`` images of a source) instead of the pooled balanced
    accuracy. Returns the rule and the criterion per tau tried (for the card).
    """
    curve: dict[str, float] = {}
    best_tau, best = 0.0, -1.0
    for tau in grid:
        rule = DecisionRule(LOGIT_ADJUSTED, float(tau), prior)
        pred = rule.choose(probs, classes)
        score = (balanced_accuracy_of(labels, pred, len(classes)) if sources is None
                 else source_mean_balanced_accuracy(labels, pred, sources, len(classes),
                                                    min_class_images))
        curve[f"{tau:g}"] = round(score, 4)
        if score > best + 1e-9:
            best_tau, best = float(tau), score
    rule = DecisionRule(LOGIT_ADJUSTED if best_tau else ARGMAX, best_tau, prior)
    return rule, curve


def fit_margins(
    rule: DecisionRule, probs: npt.ArrayLike, labels: npt.ArrayLike, classes: Sequence[str],
    margin_classes: Sequence[str], tolerance: float, *, grid: Sequence[float] = MARGIN_GRID,
) -> tuple[DecisionRule, dict[str, dict[str, float]]]:
    """Give each of ``margin_classes`` the largest margin on ``grid`` at which the (validation)
    balanced accuracy stays within ``tolerance`` of the rule's own (margin 0).

    Classes are fitted one after another, each on top of the margins already chosen. Returns the
    rule (``rule`` unchanged when no class is given) and the balanced accuracy per margin tried.
    """
    curves: dict[str, dict[str, float]] = {}
    n = len(classes)
    base = balanced_accuracy_of(labels, rule.choose(probs, classes), n)
    margins = dict(rule.margins or {})
    for cls_name in margin_classes:
        if cls_name not in classes:
            raise ValueError(f"margin class {cls_name!r} is not one of the model's classes")
        curve: dict[str, float] = {}
        chosen = 0.0
        for m in sorted(grid):
            trial = replace(rule, rule=LOGIT_ADJUSTED, margins={**margins, cls_name: float(m)})
            score = balanced_accuracy_of(labels, trial.choose(probs, classes), n)
            curve[f"{m:g}"] = round(score, 4)
            if score >= base - tolerance - 1e-9:
                chosen = float(m)
        margins[cls_name] = chosen
        curves[cls_name] = curve
    active = {c: m for c, m in margins.items() if m > 0}
    if not active:
        return rule, curves
    return replace(rule, rule=LOGIT_ADJUSTED, margins=active), curves
