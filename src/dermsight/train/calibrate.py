"""Post-hoc calibration on the validation split: temperature scaling, risk thresholds, OOD gate."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from dermsight import gate as gate_mod


def _nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    z = logits / t
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation NLL (bounded search over [0.05, 20])."""
    res = minimize_scalar(lambda t: _nll(logits, labels, t), bounds=(0.05, 20.0),
                          method="bounded", options={"xatol": 1e-4})
    return float(res.x)


def threshold_for_sensitivity(scores: np.ndarray, positive: np.ndarray, sensitivity: float
                              ) -> float:
    """Largest threshold t with P(score >= t | positive) >= ``sensitivity``."""
    pos = np.sort(scores[positive.astype(bool)])
    if len(pos) == 0:
        raise ValueError("no positive cases to set a sensitivity threshold")
    k = int(np.floor((1 - sensitivity) * len(pos) + 1e-9))  # may miss at most k positives
    return float(pos[min(k, len(pos) - 1)])


def fit_gate(
    train_emb: np.ndarray, val_emb: np.ndarray, false_reject: float, n_components: int = 64,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """PCA-whitened Mahalanobis score on pooled features; threshold = validation quantile."""
    mean = train_emb.mean(axis=0)
    centred = train_emb - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(n_components, vt.shape[0])
    comps = vt[:k]
    scale = s[:k] / np.sqrt(max(len(train_emb) - 1, 1)) + 1e-6
    arrays = {"mean": mean.astype(np.float64), "components": comps.astype(np.float64),
              "scale": scale.astype(np.float64)}
    val_scores = gate_mod.ood_score(val_emb, arrays)
    threshold = float(np.quantile(val_scores, 1 - false_reject))
    cfg = {"ood_threshold": threshold, "ood_components": k,
           "ood_fit": f"PCA({k}) Mahalanobis on pooled features of {len(train_emb)} training "
                      f"images; threshold = {100 * (1 - false_reject):.1f}th percentile of "
                      f"{len(val_emb)} validation images"}
    return cfg, arrays
