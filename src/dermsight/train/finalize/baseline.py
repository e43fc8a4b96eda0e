"""The fine-tuning baseline (``baseline``): frozen ImageNet features + metadata -> logistic
regression (``linear_probe``), evaluated on test beside the model, with the paired difference."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dermsight.evaluate import EvalSettings, compare_predictions, evaluate_predictions
from dermsight.evaluate.bootstrap import WILSON
from dermsight.predict import softmax
from dermsight.preprocess import InputSpec, MetaSpec, encode_meta, preprocess
from dermsight.quiet_warnings import sklearn_notes
from dermsight.train.calibrate import fit_temperature_checked, threshold_for_sensitivity
from dermsight.train.config import TrainConfig
from dermsight.train.finalize.calibration import Calibration
from dermsight.train.finalize.scoring import Part

#: the scikit-learn notes the baseline has printed in this process (each said once)
_TOLD: set[str] = set()
NAME = "linear probe: frozen ImageNet features + metadata, logistic regression"


def _probe_features(backbone: torch.nn.Module, images: list[np.ndarray], spec: InputSpec,
                    desc: str) -> np.ndarray:
    feats = []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), 64), desc=desc, mininterval=5):
            x = torch.from_numpy(np.stack([preprocess(im, spec) for im in images[i : i + 64]]))
            feats.append(backbone(x).numpy())
    return np.concatenate(feats)


def linear_probe(cfg: TrainConfig, parts: dict[str, Part]) -> dict[str, Any]:
    """Frozen ImageNet features (+ metadata) -> logistic regression; the fine-tuning baseline.

    Also compares the two imbalance strategies on this cheap model (validation only).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    from dermsight.train.network import load_imagenet_classifier

    spec = cfg.input.spec()
    bb = load_imagenet_classifier(cfg.model.backbone, cfg.model.weights)
    bb.reset_classifier(0)
    bb.eval()
    feats = {}
    for s in ("train", "val", "test"):
        f = _probe_features(bb, parts[s].images, spec, f"probe features {s}")
        m = np.stack([encode_meta(mt, MetaSpec()) for mt in parts[s].metas])
        feats[s] = np.concatenate([f, m], axis=1)
    scaler = StandardScaler().fit(feats["train"])
    xs = {s: scaler.transform(v) for s, v in feats.items()}
    y = {s: parts[s].labels for s in feats}
    comparison: dict[str, float] = {}
    best: tuple[float, Any, str, float] | None = None
    rng = np.random.default_rng(cfg.seed)
    for strategy in ("weighted_loss", "balanced_sampler"):
        for c in (0.01, 0.1):
            if strategy == "weighted_loss":
                clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
                clf.fit(xs["train"], y["train"])
            else:  # resample each class to the same count
                counts = np.bincount(y["train"])
                idx = np.concatenate([rng.choice(np.flatnonzero(y["train"] == k),
                                                 counts.max(), replace=True)
                                      for k in range(len(counts)) if counts[k]])
                clf = LogisticRegression(C=c, max_iter=2000)
                clf.fit(xs["train"][idx], y["train"][idx])
            with sklearn_notes(told=_TOLD):  # a validation split without some class
                bacc = float(balanced_accuracy_score(y["val"], clf.predict(xs["val"])))
            comparison[f"{strategy}_C{c}"] = bacc
            if best is None or bacc > best[0]:
                best = (bacc, clf, strategy, c)
    assert best is not None
    clf = best[1]
    n_classes = len(cfg.data.classes)

    def logits(x: np.ndarray) -> np.ndarray:
        # classes absent from the training subset get a logit that gives them ~0 probability
        full = np.full((len(x), n_classes), -1e4)
        full[:, clf.classes_] = clf.decision_function(x).reshape(len(x), -1)
        return full

    val_logits, test_logits = logits(xs["val"]), logits(xs["test"])
    t = fit_temperature_checked(  # its warning, if any, must not read as the model's
        val_logits, y["val"],
        warn=lambda line: print(f"{line} (the linear-probe baseline)", file=sys.stderr)
    ).temperature
    return {
        "val_logits": val_logits, "test_logits": test_logits, "temperature": t,
        "chosen": {"imbalance": best[2], "C": best[3], "val_balanced_accuracy": best[0]},
        "imbalance_comparison_val_balanced_accuracy": comparison,
    }


def baseline(cfg: TrainConfig, parts: dict[str, Part], calib: Calibration,
             offsets: np.ndarray | None) -> dict[str, Any] | None:
    """The card's ``baseline`` section (None when ``evaluation.linear_probe`` is off): the probe
    calibrated and thresholded on validation like the model, its test figures and the paired
    difference to the model on the same test images."""
    if not cfg.evaluation.linear_probe:
        return None
    classes, seed, n_boot = list(cfg.data.classes), cfg.seed, cfg.evaluation.n_boot
    test, val = parts["test"], parts["val"]
    groups_t = test.groups(cfg.data.group_col)
    lp = linear_probe(cfg, parts)
    probe_probs = softmax(lp["test_logits"], lp["temperature"])
    probe_val = calib.malignant_of(softmax(lp["val_logits"], lp["temperature"]))
    probe_refer = threshold_for_sensitivity(probe_val, calib.is_malignant(val.labels),
                                            cfg.calibration.refer_sensitivity)
    # the intervals of the card's other test figures (``evaluation.evaluate_test``): Wilson for
    # a proportion, n = its cases; the paired difference is a bootstrap either way
    rule = EvalSettings(offsets=offsets, malignant_excluded=calib.excluded, n_boot=n_boot,
                        seed=seed, intervals=WILSON)
    return {
        "name": NAME,
        "chosen": lp["chosen"],
        "imbalance_comparison_val_balanced_accuracy":
            lp["imbalance_comparison_val_balanced_accuracy"],
        "test": evaluate_predictions(test.labels, probe_probs, classes, groups_t,
                                     settings=replace(rule, refer_threshold=probe_refer)),
        "difference": compare_predictions(test.labels, calib.probs(test.logits), probe_probs,
                                          classes, groups_t, rule),
    }
