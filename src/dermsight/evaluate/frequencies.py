"""Natural frequencies per risk tier: "of 100 lesions that get this result, about N turned out to
be cancer", counted on the VALIDATION split and stored in the card (``natural_frequencies``).

These are counts in the validation images, whose mix of diagnoses and sources is that of the
public collections, not of any clinic: they are not the risk of a particular patient.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

TIERS = ("high", "moderate", "low")

def limits_text(n: int, malignant: int) -> str:
    """What the counts are not: the validation images' mix, with its malignant share as the
    nearest "1 in N" of ``malignant`` of ``n`` (335 of 1,996: about 1 in 6)."""
    if not malignant:
        share = "none of them malignant"
    elif 2 * malignant > n:  # "1 in 1" would say all of them: a percentage instead
        share = f"about {round(100 * malignant / n)} % malignant"
    else:
        share = f"about 1 in {round(n / malignant)} malignant"
    return (
        "Counted on the validation images of the public dermoscopic collections the model was "
        f"built from, whose mix of diagnoses ({share}) and sources is not that of any clinic "
        "or population. It describes how often this result went with cancer in those images; "
        "it is not this patient's own risk, which depends on who is examined and why."
    )


class _Tiering(Protocol):
    def tier(self, p_malignant: float) -> str: ...


def natural_frequencies(
    p_malignant: np.ndarray, malignant: np.ndarray, thresholds: _Tiering,
    sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per risk tier: images, malignant among them, and that per 100 (rounded)."""
    p = np.asarray(p_malignant, np.float64)
    y = np.asarray(malignant, bool)
    tiers = np.array([thresholds.tier(float(v)) for v in p])
    per_tier: dict[str, Any] = {}
    for t in TIERS:
        mask = tiers == t
        n, k = int(mask.sum()), int(y[mask].sum())
        per_tier[t] = {"n": n, "malignant": k,
                       "per_100": None if n == 0 else int(round(100.0 * k / n))}
    out: dict[str, Any] = {
        "split": "validation",
        "n": int(len(p)),
        "malignant": int(y.sum()),
        "per_tier": per_tier,
        "malignant_means": "MEL, BCC or SCC (histopathology or expert consensus in the source "
                           "data)",
        "limits": limits_text(int(len(p)), int(y.sum())),
    }
    if sources is not None:
        out["source_mix"] = dict(sorted(Counter(sources).items()))
    return out
