"""Post-hoc calibration on the validation split: temperature scaling, risk thresholds, OOD gate."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from dermsight import gate as gate_mod

#: the temperature search's bounds
T_MIN, T_MAX = 0.05, 20.0
#: the search's absolute tolerance on the temperature
T_XATOL = 1e-4
#: a fitted temperature this close to a bound (relative to the bound, at least ten times the
#: search's tolerance) is taken to be on it: the search stopped there, not at a minimum
BOUND_REL_TOL = 1e-3


def _nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    z = logits / t
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def temperature_bound(temperature: float) -> str | None:
    """``"lower"`` / ``"upper"`` when ``temperature`` sits on (within a small tolerance of) a
    bound of the search, else None."""
    for name, bound in (("lower", T_MIN), ("upper", T_MAX)):
        if abs(temperature - bound) <= max(BOUND_REL_TOL * bound, 10 * T_XATOL):
            return name
    return None


def temperature_warning(temperature: float, n_classes: int) -> str | None:
    """What a temperature on a bound of the search means (None when it is not on one): the
    validation NLL was still falling there, so the fit is the search's limit, not a minimum."""
    bound = temperature_bound(temperature)
    if bound is None:
        return None
    where = (f"temperature scaling stopped at the {bound} bound of its search "
             f"(T = {temperature:.6g}, bounds {T_MIN:g} to {T_MAX:g}): the validation NLL was "
             "still falling there")
    if bound == "upper":
        return (f"{where}, so the validation logits predict the labels no better than a "
                f"uniform guess and every calibrated probability is close to 1/{n_classes} "
                f"({100 / max(n_classes, 1):.0f} %): the probabilities and risk tiers carry "
                "almost no information (too little training or data for this model)")
    return (f"{where}, as it does when (almost) every validation image's label already has the "
            "largest logit: the calibrated probabilities are pushed towards 0 and 1 and are "
            "likely overconfident on other images (too few or too easy validation images to "
            "calibrate on)")


def temperature_limitation(temperature: float, n_classes: int) -> str | None:
    """The model card's line for a temperature on a bound of the search (None otherwise)."""
    said = temperature_warning(temperature, n_classes)
    return None if said is None else f"Calibration: {said[0].upper()}{said[1:]}."


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and the bound of the search it sits on (None: inside them)."""

    temperature: float
    at_bound: str | None


def fit_temperature_checked(logits: np.ndarray, labels: np.ndarray, *,
                            warn: Callable[[str], None] | None = _to_stderr) -> TemperatureFit:
    """The temperature minimising validation NLL (bounded search over [``T_MIN``, ``T_MAX``])
    and whether it sits on a bound; on one, ``warn`` gets a ``warning: ...`` line (stderr by
    default; None: said nowhere)."""
    res = minimize_scalar(lambda t: _nll(logits, labels, t), bounds=(T_MIN, T_MAX),
                          method="bounded", options={"xatol": T_XATOL})
    t = float(res.x)
    said = temperature_warning(t, int(np.shape(logits)[1]))
    if said is not None and warn is not None:
        warn(f"warning: {said}")
    return TemperatureFit(t, temperature_bound(t))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation NLL (bounded search over [0.05, 20]); a fit on a
    bound is warned of on stderr (``fit_temperature_checked``; ``temperature_limitation`` gives
    the card's line for it)."""
    return fit_temperature_checked(logits, labels).temperature


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
