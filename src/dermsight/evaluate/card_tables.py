"""The card's cross-source section and skin-tone table from one training run's predictions.

Called by :mod:`dermsight.train.finalize` (and usable for any scored run): per-source rows of the
test split, one leave-one-source-out row per held-out source, and the metrics by ITA band of the
test images (:mod:`dermsight.evaluate.cross_source`, :mod:`dermsight.evaluate.skin_tone`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.evaluate.cross_source import (
    CrossSource,
    RunInfo,
    add_loso_row,
    cross_source_section,
    source_rows,
)
from dermsight.evaluate.skin_tone import ita_table
from dermsight.evaluate.subgroups import SubgroupSettings
from dermsight.skintone import ita_for_images

__all__ = ["ScoredSet", "card_tables", "predictions_frame"]


@dataclass
class ScoredSet:
    """Images scored by one model: labels (indices into ``classes`` or codes), (N, C) calibrated
    probabilities, and per image its data source and bootstrap group."""

    labels: npt.ArrayLike
    probs: npt.ArrayLike
    sources: Sequence[Any]
    groups: Sequence[Any] | npt.ArrayLike


def predictions_frame(scored: ScoredSet, classes: Sequence[str]) -> pd.DataFrame:
    """The predictions-frame shape of :mod:`dermsight.evaluate.cross_source`."""
    classes = list(classes)
    p = np.asarray(scored.probs, dtype=np.float64)
    labels = np.asarray(scored.labels)
    if labels.dtype.kind in "iu":
        labels = np.asarray([classes[int(i)] for i in labels], dtype=object)
    frame = pd.DataFrame({f"p_{c}": p[:, i] for i, c in enumerate(classes)})
    frame["label"] = [str(v) for v in labels]
    frame["source"] = [str(s) for s in scored.sources]
    frame["group"] = list(np.asarray(scored.groups, dtype=object))
    return frame


# ruff noqa below: known debt (issue 11): evaluation options.
def card_tables(  # noqa: PLR0913
    classes: Sequence[str],
    test: ScoredSet,
    test_images: Sequence[npt.ArrayLike],
    run: RunInfo,
    *,
    refer_threshold: float | None,
    n_boot: int,
    seed: int,
    offsets: npt.ArrayLike | None = None,
    malignant_excluded: Sequence[str] = (),
    held_out: ScoredSet | None = None,
    trained_on: Sequence[str] = (),
) -> tuple[CrossSource, dict[str, Any]]:
    """``(cross_source section, metrics-by-ITA table)`` for a card.

    ``held_out``: images of sources left out of training (leave-one-source-out), scored by the
    same model; one LOSO row per source in it, ``trained_on`` naming the training sources.
    """
    kwargs: dict[str, Any] = {"refer_threshold": refer_threshold, "n_boot": n_boot,
                              "seed": seed, "offsets": offsets,
                              "malignant_excluded": tuple(malignant_excluded)}
    section = cross_source_section(source_rows(predictions_frame(test, classes), classes, run,
                                               **kwargs))
    if held_out is not None:
        frame = predictions_frame(held_out, classes)
        for source in sorted(frame["source"].unique()):
            section = add_loso_row(section, frame, classes, source, list(trained_on), run,
                                   **kwargs)
    by_ita = ita_table(test.labels, test.probs, classes, ita_for_images(test_images),
                       groups=test.groups, settings=SubgroupSettings(**kwargs),
                       noun="test images")
    return section, by_ita
