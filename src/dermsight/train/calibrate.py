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
    train_emb: np.ndarray, val_emb: np.ndarray, false_reject: float, bank_size: int = 2000,
    k: int = 5, seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Deep-kNN gate (Sun et al., ICML 2022) on pooled features: a bank of L2-normalised training
    embeddings; threshold = the (1 - false_reject) quantile of validation scores."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(train_emb), min(bank_size, len(train_emb)), replace=False))
    bank = train_emb[idx] / np.maximum(np.linalg.norm(train_emb[idx], axis=1, keepdims=True),
                                       1e-12)
    arrays = {"bank": bank.astype(np.float16), "k": np.array(k)}
    val_scores = gate_mod.ood_score(val_emb, arrays)
    threshold = float(np.quantile(val_scores, 1 - false_reject))
    cfg = {"ood_threshold": threshold, "ood_method": "deep-knn",
           "ood_fit": f"1 - cosine similarity to the {k}th nearest of {len(idx)} training images "
                      f"(pooled features); threshold = {100 * (1 - false_reject):.1f}th "
                      f"percentile of {len(val_emb)} validation images"}
    return cfg, arrays
