"""Steps fitted on the VALIDATION split only: temperature and risk thresholds (``calibrate``)
and the rule that picks the suggested class (``fit_decision``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from dermsight import taxonomy
from dermsight.bundle import Thresholds
from dermsight.decision import (
    MIN_SOURCE_CLASS_IMAGES,
    DecisionRule,
    class_prior,
    fit_decision_rule,
    fit_margins,
)
from dermsight.malignancy import malignant_probability
from dermsight.predict import softmax
from dermsight.train.calibrate import fit_temperature, threshold_for_sensitivity
from dermsight.train.config import TrainConfig
from dermsight.train.finalize.scoring import Part


@dataclass(frozen=True)
class Calibration:
    """Temperature and the refer / monitor thresholds on the malignant probability."""

    temperature: float
    refer: float
    monitor: float
    #: indices of the malignant classes, whose probabilities are summed
    malignant: tuple[int, ...]
    #: the class codes in output order, and those left out of the malignant probability's
    #: denominator (:mod:`dermsight.malignancy`; the card's ``malignant_excluded``)
    classes: tuple[str, ...]
    excluded: tuple[str, ...]

    def probs(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits, self.temperature)

    def malignant_of(self, probs: np.ndarray) -> np.ndarray:
        """The malignant probability of rows of class probabilities (as serving computes it)."""
        out = malignant_probability(probs, self.classes, [self.classes[i] for i in self.malignant],
                                    self.excluded)
        assert out is not None  # ``malignant`` is never empty here
        return out

    def malignant_probability(self, logits: np.ndarray) -> np.ndarray:
        return self.malignant_of(self.probs(logits))

    def is_malignant(self, labels: np.ndarray) -> np.ndarray:
        return np.isin(labels, list(self.malignant))

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(refer=self.refer, monitor=self.monitor)


def malignant_indices(classes: list[str]) -> tuple[int, ...]:
    return tuple(i for i, c in enumerate(classes) if c in taxonomy.MALIGNANT)


def calibrate(cfg: TrainConfig, val: Part) -> Calibration:
    """Temperature minimising validation NLL; refer / monitor = the largest thresholds that keep
    the configured sensitivities for malignant lesions on validation (monitor <= refer)."""
    malignant = malignant_indices(list(cfg.data.classes))
    temperature = fit_temperature(val.logits, val.labels)
    scale = Calibration(temperature, 1.0, 1.0, malignant, tuple(cfg.data.classes),
                        tuple(cfg.malignant_excluded()))
    p_mal = scale.malignant_probability(val.logits)
    positive = scale.is_malignant(val.labels)
    refer = threshold_for_sensitivity(p_mal, positive, cfg.calibration.refer_sensitivity)
    monitor = threshold_for_sensitivity(p_mal, positive, cfg.calibration.monitor_sensitivity)
    return replace(scale, refer=refer, monitor=min(monitor, refer))


def fit_decision(cfg: TrainConfig, df: pd.DataFrame, calib: Calibration, val: Part
                 ) -> tuple[DecisionRule, dict[str, Any]]:
    """The suggested class: logit adjustment by the training prior, tau fitted on validation
    (balanced accuracy, pooled or the mean over sources: ``calibration.tau_metric``), then the
    margins of ``calibration.margin_classes`` (those present in training); also the validation
    curves (for the card's ``decision_fit``)."""
    classes = list(cfg.data.classes)
    prior = class_prior(df.loc[df["split"] == "train", "label"].to_numpy(), classes)
    probs = calib.probs(val.logits)
    by_source = cfg.calibration.tau_metric == "source_mean"
    rule, tau_curve = fit_decision_rule(probs, val.labels, classes, prior,
                                        sources=val.sources if by_source else None)
    fit: dict[str, Any] = (
        {"fit_on": "validation", "metric": "source_mean_balanced_accuracy",
         "min_source_class_images": MIN_SOURCE_CLASS_IMAGES,
         "val_source_mean_balanced_accuracy_by_tau": tau_curve} if by_source else
        {"fit_on": "validation", "metric": "balanced_accuracy",
         "val_balanced_accuracy_by_tau": tau_curve})
    margin_classes = [c for c in cfg.calibration.margin_classes if prior.get(c, 0.0) > 0]
    if margin_classes:
        rule, margin_curves = fit_margins(rule, probs, val.labels, classes, margin_classes,
                                          cfg.calibration.margin_tolerance)
        fit["margin_tolerance"] = cfg.calibration.margin_tolerance
        fit["val_balanced_accuracy_by_margin"] = margin_curves
    return rule, fit
