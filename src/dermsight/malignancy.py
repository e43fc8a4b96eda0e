"""The malignant probability that the risk tier, the refer threshold and the malignant AUC use.

It is the sum of the bundle's malignant classes (MEL, BCC, SCC). A bundle may name classes that
are **left out of the denominator** (``excluded``): its malignant probability is then the
malignant share of the remaining classes, ``sum(malignant) / (1 - sum(excluded))``. A nine-class
bundle whose UNK ("no specific diagnosis") class was learned from one collection leaves UNK out,
so that UNK can name a lesion but never lower its risk (docs/experiments, "Model v2.4").
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

from dermsight import taxonomy

__all__ = ["malignant_probability"]


def malignant_probability(
    probs: npt.ArrayLike,
    classes: Sequence[str],
    malignant: Collection[str] | None = None,
    excluded: Collection[str] = (),
) -> npt.NDArray[np.float64] | None:
    """Per row: the ``malignant`` columns' sum (default: the taxonomy's malignant classes) over
    the sum of every column not in ``excluded``; ``None`` when no malignant class is present.

    A row whose probability sits entirely on excluded classes (numerically 0 elsewhere) gets the
    malignant classes' share of the remaining classes, as if those were equally likely.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise ValueError(f"probabilities of shape {p.shape} do not match {len(classes)} classes")
    wanted = taxonomy.MALIGNANT if malignant is None else frozenset(malignant)
    cols = [i for i, c in enumerate(classes) if c in wanted]
    if not cols:
        return None
    total: npt.NDArray[np.float64] = p[:, cols].sum(axis=1)
    if not excluded:
        return total
    if any(c in excluded for c in wanted if c in classes):
        raise ValueError("a malignant class cannot be left out of the malignant probability")
    keep = [i for i, c in enumerate(classes) if c not in excluded]
    denom = p[:, keep].sum(axis=1)
    flat = len(cols) / len(keep)
    share: npt.NDArray[np.float64] = np.divide(total, denom, out=np.full_like(total, flat),
                                               where=denom > 0)
    return share
