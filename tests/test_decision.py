"""The balanced decision rule (post-hoc logit adjustment and per-class margins): fitting, the
arithmetic, the card round trip, the evaluation metrics that honour it, and the facade that
applies it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dermsight.bundle import Card, load_bundle
from dermsight.decision import (
    ARGMAX,
    LOGIT_ADJUSTED,
    DecisionRule,
    balanced_accuracy_of,
    class_prior,
    decide,
    fit_decision_rule,
    fit_margins,
    source_mean_balanced_accuracy,
)
from dermsight.evaluate import EvalSettings, evaluate_predictions
from dermsight.evaluate.metrics import compute_metrics

CLASSES = ["MEL", "NV", "DF"]


def _imbalanced(seed: int = 0, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated-ish classifier on 80 % NV / 15 % MEL / 5 % DF data: arg-max favours NV."""
    rng = np.random.default_rng(seed)
    prior = np.array([0.15, 0.80, 0.05])
    y = rng.choice(3, size=n, p=prior)
    signal = np.eye(3)[y] * 1.2 + rng.normal(0, 1.0, (n, 3))
    logits = signal + np.log(prior)  # Bayes posterior shape: likelihood x prior
    p = np.exp(logits - logits.max(1, keepdims=True))
    return y, p / p.sum(1, keepdims=True)


def test_decide_is_argmax_without_offsets_and_shifts_with_them() -> None:
    p = np.array([[0.5, 0.4, 0.1], [0.1, 0.8, 0.1]])
    assert decide(p).tolist() == [0, 1]
    rule = DecisionRule(LOGIT_ADJUSTED, 1.0, {"MEL": 0.5, "NV": 0.1, "DF": 0.4})
    # log p - log prior: row 0 -> [0, 1.39, -1.39] -> NV
    assert rule.choose(p, CLASSES).tolist() == [1, 1]
    off = rule.offsets(CLASSES)
    assert off is not None
    assert np.allclose(off, -np.log([0.5, 0.1, 0.4]))
    assert DecisionRule().offsets(CLASSES) is None
    # a class never seen in training is not boosted (its prior would be 0 -> infinite offset)
    unseen = DecisionRule(LOGIT_ADJUSTED, 1.0, {"MEL": 0.2, "NV": 0.8, "DF": 0.0})
    off2 = unseen.offsets(CLASSES)
    assert off2 is not None
    assert off2[2] == 0.0
    assert np.isfinite(off2).all()
    assert unseen.choose(np.array([[0.3, 0.4, 0.3]]), CLASSES).tolist() == [0]
    assert DecisionRule(LOGIT_ADJUSTED, 0.0, {"MEL": 1.0}).offsets(CLASSES) is None


def test_fitted_tau_raises_validation_balanced_accuracy_and_transfers() -> None:
    y, p = _imbalanced(0)
    prior = class_prior(y, CLASSES)
    rule, curve = fit_decision_rule(p, y, CLASSES, prior)
    assert rule.rule == LOGIT_ADJUSTED
    assert 0.3 <= rule.tau <= 1.5
    plain = balanced_accuracy_of(y, p.argmax(1), 3)
    assert curve["0"] == pytest.approx(plain, abs=1e-4)
    assert max(curve.values()) == pytest.approx(balanced_accuracy_of(y, rule.choose(p, CLASSES),
                                                                     3), abs=1e-4)
    # on fresh data from the same distribution the rule still beats arg-max
    y2, p2 = _imbalanced(1)
    assert balanced_accuracy_of(y2, rule.choose(p2, CLASSES), 3) > \
        balanced_accuracy_of(y2, p2.argmax(1), 3) + 0.03


def test_source_mean_balanced_accuracy_weighs_each_source_once_and_skips_small_classes() -> None:
    # source "a": MEL 20 (15 right), NV 20 (all right), DF 3 (below 10 images: left out, and a
    # DF guess on an "a" MEL counts as wrong); source "b": 30 NV, 10 right
    y = np.array([0] * 20 + [1] * 20 + [2] * 3 + [1] * 30)
    pred = np.array([0] * 15 + [2] * 5 + [1] * 20 + [2] * 3 + [1] * 10 + [0] * 20)
    src = np.array(["a"] * 43 + ["b"] * 30)
    expected = np.mean([np.mean([15 / 20, 1.0]), 10 / 30])
    assert source_mean_balanced_accuracy(y, pred, src, 3) == pytest.approx(expected)
    # pooled, the 30 "b" nevi are a small part of one class's recall, and DF counts
    assert balanced_accuracy_of(y, pred, 3) == pytest.approx(np.mean([15 / 20, 30 / 50, 1.0]))
    # a lower bar lets DF in; no source with a large enough class: 0
    assert source_mean_balanced_accuracy(y, pred, src, 3, min_class_images=3) == pytest.approx(
        np.mean([np.mean([15 / 20, 1.0, 1.0]), 10 / 30]))
    assert source_mean_balanced_accuracy(y, pred, src, 3, min_class_images=100) == 0.0
    with pytest.raises(ValueError, match="same length"):
        source_mean_balanced_accuracy(y, pred, src[:-1], 3)


def test_tau_by_source_does_not_trade_one_collections_nevi_for_anothers_rare_class() -> None:
    """Pooled balanced accuracy pulls tau up for a rare class of one collection; a second
    collection (nevi and melanomas only, the nevi read as less certain) loses its nevi to that
    rare class. The by-source criterion chooses a smaller tau and scores better by its own
    measure; with one source and every class large enough it is the pooled fit."""
    y1, p1 = _imbalanced(0)
    rng = np.random.default_rng(5)
    y2 = rng.choice([0, 1], size=600, p=[0.2, 0.8])
    p2 = np.where(y2[:, None] == 1, [0.25, 0.6, 0.15], [0.6, 0.3, 0.1])
    p2 = p2 * rng.uniform(0.8, 1.2, p2.shape)
    p2 /= p2.sum(1, keepdims=True)
    y, p = np.concatenate([y1, y2]), np.concatenate([p1, p2])
    src = np.array(["ham"] * len(y1) + ["clinic"] * len(y2))
    prior = class_prior(y1, CLASSES)
    pooled, _ = fit_decision_rule(p, y, CLASSES, prior)
    by_source, curve = fit_decision_rule(p, y, CLASSES, prior, sources=src)
    assert by_source.tau < pooled.tau
    assert max(curve.values()) == pytest.approx(source_mean_balanced_accuracy(
        y, by_source.choose(p, CLASSES), src, 3), abs=1e-4)
    def clinic_nv_recall(rule: DecisionRule) -> float:
        return float(np.mean(rule.choose(p2, CLASSES)[y2 == 1] == 1))

    assert clinic_nv_recall(by_source) > clinic_nv_recall(pooled) + 0.1
    one, _ = fit_decision_rule(p1, y1, CLASSES, prior, sources=np.array(["ham"] * len(y1)))
    assert one.tau == fit_decision_rule(p1, y1, CLASSES, prior)[0].tau
    # the class-size bar reaches the criterion: with no class large enough every tau scores 0
    none, flat = fit_decision_rule(p, y, CLASSES, prior, sources=src, min_class_images=10**6)
    assert set(flat.values()) == {0.0}
    assert none.tau == 0.0


def test_balanced_data_keeps_plain_argmax() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 400)
    logits = np.eye(3)[y] * 2 + rng.normal(0, 1, (1200, 3))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    rule, _ = fit_decision_rule(p, y, CLASSES, class_prior(y, CLASSES))
    # equal priors: every tau gives the same decisions, ties go to tau = 0
    assert rule.rule == ARGMAX
    assert rule.tau == 0.0


def test_metrics_use_the_rule_for_decisions_only() -> None:
    y, p = _imbalanced(0)
    rule, _ = fit_decision_rule(p, y, CLASSES, class_prior(y, CLASSES))
    off = rule.offsets(CLASSES)
    plain = compute_metrics(y, p, CLASSES)
    adjusted = compute_metrics(y, p, CLASSES, offsets=off)
    assert adjusted["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_of(y, rule.choose(p, CLASSES), 3))
    assert adjusted["balanced_accuracy"] > plain["balanced_accuracy"]  # type: ignore[operator]
    for k in ("mel_auc", "auc_DF", "ece", "nll", "malignant_auc"):
        assert adjusted[k] == plain[k]
    ev = evaluate_predictions(y, p, CLASSES, None, settings=EvalSettings(n_boot=20, offsets=off))
    assert ev["metrics"]["balanced_accuracy"] == adjusted["balanced_accuracy"]
    counts = np.array(ev["confusion"]["counts"])
    plain_ev = evaluate_predictions(y, p, CLASSES, None, settings=EvalSettings(n_boot=0))
    assert counts[2, 2] > np.array(plain_ev["confusion"]["counts"])[2, 2]  # more DF found


def test_card_round_trip_and_unknown_rule() -> None:
    card = load_bundle().card
    rule = DecisionRule(LOGIT_ADJUSTED, 0.7, {c: 1 / len(card.classes) for c in card.classes})
    d = replace(card, decision=rule).to_dict()
    assert d["decision"]["rule"] == LOGIT_ADJUSTED
    assert "logit adjustment" in \
        d["decision"]["description"]
    assert Card.from_dict(d).decision == rule
    with pytest.raises(ValueError, match="unknown decision rule"):
        DecisionRule.from_dict({"rule": "coin_flip"})


def test_facade_names_the_rule_and_applies_it(data_dir: Path, sample_ids: list[str]) -> None:
    from dermsight import Dermsight

    model = Dermsight.load()
    image = data_dir / "images" / f"{sample_ids[0]}.jpg"
    before = model.predict(image, heatmap=False)
    assert before.to_dict()["decision_rule"] == model.card.decision.description
    # a prior that makes the current top class look very common: the rule must move away from it
    prior = {c: 0.001 for c in model.classes}
    prior[before.prediction] = 0.99
    model.card = replace(model.card, decision=DecisionRule(LOGIT_ADJUSTED, 2.0, prior))
    after = model.predict(image, heatmap=False)
    assert after.probabilities == before.probabilities  # probabilities untouched
    assert after.prediction != before.prediction
    assert "logit adjustment" in after.to_dict()["decision_rule"]


def test_a_margin_names_its_class_only_when_it_leads_by_more() -> None:
    # UNK (index 2) leads NV by log(0.6/0.3) = 0.69 in row 0 and by log(0.9/0.05) = 2.89 in row 1
    p = np.array([[0.1, 0.3, 0.6], [0.05, 0.05, 0.9]])
    classes = ["MEL", "NV", "UNK"]
    assert decide(p).tolist() == [2, 2]
    rule = DecisionRule(LOGIT_ADJUSTED, 0.0, None, {"UNK": 1.0})
    assert not rule.plain  # tau 0 but a margin: not the plain arg-max
    off = rule.offsets(classes)
    assert off is not None
    assert off.tolist() == [0.0, 0.0, -1.0]
    assert rule.choose(p, classes).tolist() == [1, 2]  # row 0 falls back to NV
    assert "UNK named only when it leads the next class by more than 1" in rule.description
    # margins add to the logit adjustment
    both = DecisionRule(LOGIT_ADJUSTED, 1.0, {"MEL": 0.2, "NV": 0.4, "UNK": 0.4}, {"UNK": 1.0})
    off2 = both.offsets(classes)
    assert off2 is not None
    assert np.allclose(off2, -np.log([0.2, 0.4, 0.4]) - np.array([0, 0, 1.0]))
    # a zero margin is no margin
    assert DecisionRule(ARGMAX, 0.0, None, {"UNK": 0.0}).plain


def _confounded(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Class 2 is found with near certainty (like UNK on its own collection): margin is cheap."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.3, 0.5, 0.2])
    logits = np.eye(3)[y] * np.array([1.5, 1.5, 6.0]) + rng.normal(0, 1.0, (n, 3))
    p = np.exp(logits - logits.max(1, keepdims=True))
    return y, p / p.sum(1, keepdims=True)


def test_fitted_margin_is_the_largest_within_the_tolerance() -> None:
    y, p = _confounded(0)
    base_rule = DecisionRule()
    base = balanced_accuracy_of(y, base_rule.choose(p, CLASSES), 3)
    rule, curves = fit_margins(base_rule, p, y, CLASSES, ["DF"], tolerance=0.01)
    m = (rule.margins or {})["DF"]
    assert m >= 2.0  # the confident class affords a large margin
    curve = curves["DF"]
    assert curve["0"] == pytest.approx(base, abs=1e-4)
    assert curve[f"{m:g}"] >= base - 0.01 - 1e-4
    assert all(v < base - 0.01 for k, v in curve.items() if float(k) > m)
    assert balanced_accuracy_of(y, rule.choose(p, CLASSES), 3) >= base - 0.01 - 1e-9
    # the margin only ever takes decisions away from its class
    assert np.all((rule.choose(p, CLASSES) == 2) <= (base_rule.choose(p, CLASSES) == 2))
    # a stricter tolerance never gives a larger margin; a class not in the model is an error
    strict, _ = fit_margins(base_rule, p, y, CLASSES, ["DF"], tolerance=0.0)
    assert (strict.margins or {}).get("DF", 0.0) <= m
    with pytest.raises(ValueError, match="not one of the model's classes"):
        fit_margins(base_rule, p, y, CLASSES, ["UNK"], tolerance=0.01)


def test_card_round_trip_with_margins_and_bad_margins() -> None:
    from dermsight.cardschema import DecisionCard

    card = load_bundle().card
    prior = {c: 1 / len(card.classes) for c in card.classes}
    rule = DecisionRule(LOGIT_ADJUSTED, 0.3, prior, {card.classes[-1]: 2.5})
    d = replace(card, decision=rule).to_dict()
    assert d["decision"]["margins"] == {card.classes[-1]: 2.5}
    assert "log-probability" in d["decision"]["description"]
    assert Card.from_dict(d).decision == rule
    with pytest.raises(ValueError, match="greater than 0"):
        DecisionCard.model_validate({"rule": "logit_adjusted", "tau": 0.3, "prior": prior,
                                     "margins": {card.classes[-1]: -1.0}})
    with pytest.raises(ValueError, match="without a prior"):
        DecisionCard.model_validate({"rule": "logit_adjusted", "tau": 0.3, "prior": prior,
                                     "margins": {"XYZ": 1.0}})


def test_config_margin_classes_must_be_model_classes() -> None:
    from dermsight.train.config import ConfigError, load_config

    cfg = load_config(None, ["calibration.margin_classes=[MEL]"])
    assert cfg.calibration.margin_classes == ["MEL"]
    with pytest.raises(ConfigError, match="margin_classes"):
        load_config(None, ["calibration.margin_classes=[UNK]", "data.classes=[MEL, NV]"])
    with pytest.raises(ConfigError, match="margin_tolerance"):
        load_config(None, ["calibration.margin_tolerance=0.5"])
    assert load_config(None).calibration.tau_metric == "pooled"
    assert load_config(None, ["calibration.tau_metric=source_mean"]
                       ).calibration.tau_metric == "source_mean"
    with pytest.raises(ConfigError, match=r"tau_metric must be pooled\|source_mean"):
        load_config(None, ["calibration.tau_metric=per_source"])


def test_facade_applies_a_margin(data_dir: Path, sample_ids: list[str]) -> None:
    from dermsight import Dermsight

    model = Dermsight.load()
    image = data_dir / "images" / f"{sample_ids[0]}.jpg"
    before = model.predict(image, heatmap=False)
    model.card = replace(model.card, decision=DecisionRule(
        LOGIT_ADJUSTED, 0.0, None, {before.prediction: 20.0}))
    after = model.predict(image, heatmap=False)
    assert after.probabilities == before.probabilities
    assert after.prediction != before.prediction
    assert f"{before.prediction} named only when it leads" in after.to_dict()["decision_rule"]
