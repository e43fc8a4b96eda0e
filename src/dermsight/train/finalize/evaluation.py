"""The one evaluation on the held-out TEST split (``evaluate_test``), through the calibrated
serving path: metrics with group bootstrap CIs and subgroups, the plain arg-max and uncalibrated
figures beside them, per source and by skin tone, without metadata, the source check, validation
figures, and held-out sources (leave-one-source-out) when configured."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from dermsight.evaluate import EvalSettings, evaluate_predictions
from dermsight.evaluate.bootstrap import WILSON
from dermsight.evaluate.card_tables import CrossSource, ScoredSet, card_tables
from dermsight.evaluate.metrics import HEADLINE_METRICS
from dermsight.evaluate.source_check import single_source_classes, source_check
from dermsight.predict import Dermsight, softmax
from dermsight.train.config import Provenance, TrainConfig
from dermsight.train.finalize.calibration import Calibration
from dermsight.train.finalize.scoring import Part, infer
from dermsight.train.table import EXTERNAL


@dataclass
class Evaluation:
    """Everything measured once on test (and the validation / held-out figures beside it)."""

    test: dict[str, Any]
    test_argmax: dict[str, Any]
    uncalibrated: dict[str, Any]
    validation: dict[str, Any]
    without_metadata: dict[str, Any]
    external: dict[str, Any] | None
    source_check: dict[str, Any]
    cross_source: CrossSource

    def metrics_section(self, parity: float) -> dict[str, Any]:
        """The card's ``metrics``."""
        return {"test": self.test,
                "test_uncalibrated": headline(self.uncalibrated),
                "test_argmax_decision": headline(self.test_argmax),
                "source_check": self.source_check,
                "external": self.external,
                "test_without_metadata": headline(self.without_metadata),
                "validation": headline(self.validation),
                "onnx_parity_max_abs_logit_diff": parity}


def headline(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: ev["metrics"].get(k) for k in HEADLINE_METRICS if k in ev["metrics"]}


def _meta_frame(part: Part) -> pd.DataFrame:
    return pd.DataFrame({"sex": [m.sex for m in part.metas], "age": [m.age for m in part.metas],
                         "site": [m.site for m in part.metas], "source": part.sources})


def evaluate_test(cfg: TrainConfig, model: Dermsight, parts: dict[str, Part], calib: Calibration,
                  offsets: np.ndarray | None, *, provenance: Provenance, trained_on: list[str]
                  ) -> Evaluation:
    """Evaluate once on test (``offsets``: the decision rule's, None = plain arg-max)."""
    classes, seed, n_boot = list(cfg.data.classes), cfg.seed, cfg.evaluation.n_boot
    test, val = parts["test"], parts["val"]
    excl = calib.excluded
    pt = calib.probs(test.logits)
    groups_t = test.groups(cfg.data.group_col)
    # the rule's decisions with the refer / monitor thresholds and intervals; the figures beside
    # it drop what they do not report
    # (intervals as dermsight evaluate gives them: Wilson for a proportion, n = its cases; the
    # percentile bootstrap, n = resamples, stays only in the shipped card's stored figures)
    full = EvalSettings(refer_threshold=calib.refer, monitor_threshold=calib.monitor,
                        offsets=offsets, malignant_excluded=excl, n_boot=n_boot, seed=seed,
                        intervals=WILSON)
    test_eval = evaluate_predictions(test.labels, pt, classes, groups_t, _meta_frame(test), full)
    # the plain arg-max figures beside the rule's (the same evaluation when the rule is arg-max)
    plain = EvalSettings(malignant_excluded=excl, n_boot=0, seed=seed, intervals=WILSON)
    test_argmax = test_eval if offsets is None else evaluate_predictions(
        test.labels, pt, classes, groups_t, settings=plain)
    uncal = evaluate_predictions(test.labels, softmax(test.logits, 1.0), classes, groups_t,
                                 settings=replace(plain, offsets=offsets))
    val_eval = evaluate_predictions(val.labels, calib.probs(val.logits), classes, None,
                                    settings=replace(full, n_boot=0))
    external = parts.get(EXTERNAL)
    external_eval: dict[str, Any] | None = None
    held_out: ScoredSet | None = None
    if external is not None:  # leave-one-source-out: sources never seen in training
        pe = calib.probs(external.logits)
        external_eval = evaluate_predictions(
            external.labels, pe, classes, external.groups(cfg.data.group_col), settings=full)
        external_eval["sources"] = sorted(set(external.sources))
        held_out = ScoredSet(external.labels, pe, external.sources,
                             external.groups(cfg.data.group_col))
    # per-source test rows, leave-one-source-out rows and metrics by skin tone (ITA)
    cross_source, test_eval["by_ita"] = card_tables(
        classes, ScoredSet(test.labels, pt, test.sources, groups_t), test.images,
        {"config": provenance.config, "seed": seed, "command": provenance.command},
        settings=full, held_out=held_out, trained_on=trained_on)
    # without metadata: the model must stay useful when a user gives none
    no_meta = infer(model, test.images, [None] * len(test.images),
                    desc="score test, no metadata")
    test_nometa = evaluate_predictions(test.labels, calib.probs(no_meta["logits"]), classes,
                                       groups_t, settings=replace(full, monitor_threshold=None,
                                                                  n_boot=0))
    train = parts["train"]
    watch = single_source_classes(train.labels, train.sources, classes)
    return Evaluation(
        test=test_eval, test_argmax=test_argmax, uncalibrated=uncal, validation=val_eval,
        without_metadata=test_nometa, external=external_eval,
        source_check=source_check(test.labels, pt, test.sources, classes, watch,
                                  offsets=offsets),
        cross_source=cross_source)
