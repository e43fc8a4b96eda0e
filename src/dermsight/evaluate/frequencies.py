"""Natural frequencies per risk tier: "of 100 lesions that get this result, about N turned out to
be cancer", counted on the VALIDATION split and stored in the card (``natural_frequencies``).

These are counts in the validation images, whose mix of diagnoses and sources is that of the
collections the model was built from, not of any clinic: they are not the risk of a particular
patient. The words name the model's own malignant classes, and call the images' collections
public only when every source is one of :data:`PUBLIC_SOURCES` (for the shipped model, HAM10000
and the ISIC challenges: its card's text).

A tier with fewer than :data:`~dermsight.evaluate.settings.MIN_N` images gets no frequency where
one is shown (:func:`too_few`): "0 of 2" says nothing about how often a result goes with cancer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from dermsight.evaluate.settings import MIN_N

TIERS = ("high", "moderate", "low")

#: the ``source`` values of the public dermoscopic collections (as the data readers name them)
PUBLIC_SOURCES = frozenset({"ham10000", "isic2016", "isic2017", "isic2018", "isic2019",
                            "isic2020", "isic_archive"})
#: the shipped model's malignant classes, which :func:`natural_frequencies` names when its
#: caller names none
DEFAULT_MALIGNANT = ("MEL", "BCC", "SCC")


def from_public_collections(sources: Iterable[str] | None) -> bool:
    """Whether every source is a public collection (:data:`PUBLIC_SOURCES`); ``False`` when no
    source is known."""
    names = {str(s) for s in sources or ()}
    return bool(names) and names <= PUBLIC_SOURCES


def or_list(codes: Sequence[str]) -> str:
    """``MEL, BCC or SCC``; ``MEL or BCC``; ``MEL``."""
    items = [str(c) for c in codes]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} or {items[-1]}"


def malignant_means_text(classes: Sequence[str] = DEFAULT_MALIGNANT, public: bool = True) -> str:
    """What "malignant" counts: the model's malignant classes, and how the public collections
    labelled them (for other data, how its labels were made is not recorded)."""
    how = ("histopathology or expert consensus in the source data" if public
           else "as labelled in the data the model was built from")
    return f"{or_list(classes)} ({how})"


def too_few(n: object, min_n: int = MIN_N) -> bool:
    """Whether a tier of ``n`` images is too small to show a frequency for (under ``min_n``,
    the subgroup tables' limit)."""
    return not isinstance(n, int | float) or isinstance(n, bool) or n < min_n


def limits_text(n: int, malignant: int, public: bool = True) -> str:
    """What the counts are not: the validation images' mix, with its malignant share as the
    nearest "1 in N" of ``malignant`` of ``n`` (335 of 1,996: about 1 in 6). ``public``: the
    images come from the public collections (else they are not called so)."""
    if not malignant:
        share = "none of them malignant"
    elif 2 * malignant > n:  # "1 in 1" would say all of them: a percentage instead
        share = f"about {round(100 * malignant / n)} % malignant"
    else:
        share = f"about 1 in {round(n / malignant)} malignant"
    tail = ("It describes how often this result went with cancer in those images; it is not "
            "this patient's own risk, which depends on who is examined and why.")
    if not public:
        return ("Counted on the validation images the model was built from, whose mix of "
                f"diagnoses ({share}) and sources need not be that of the patients it is used "
                f"on. {tail}")
    return (
        "Counted on the validation images of the public dermoscopic collections the model was "
        f"built from, whose mix of diagnoses ({share}) and sources is not that of any clinic "
        f"or population. {tail}"
    )


class _Tiering(Protocol):
    def tier(self, p_malignant: float) -> str: ...


def natural_frequencies(
    p_malignant: np.ndarray, malignant: np.ndarray, thresholds: _Tiering,
    sources: Sequence[str] | None = None, *,
    malignant_classes: Sequence[str] = DEFAULT_MALIGNANT, public: bool | None = None,
) -> dict[str, Any]:
    """Per risk tier: images, malignant among them, and that per 100 (rounded; shown only for a
    tier of at least :data:`MIN_N` images, :func:`too_few`). ``malignant_classes``: the model's
    (the card's ``malignant``), named in ``malignant_means``; ``public``: whether the images
    come from the public collections (``None``: every one of ``sources`` is one of them)."""
    public = from_public_collections(sources) if public is None else public
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
        "malignant_means": malignant_means_text(malignant_classes, public),
        "limits": limits_text(int(len(p)), int(y.sum()), public),
    }
    if sources is not None:
        out["source_mix"] = dict(sorted(Counter(sources).items()))
    return out
