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
from dermsight.evaluate.settings import EvalSettings
from dermsight.evaluate.skin_tone import ita_table
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


def card_tables(
    classes: Sequence[str],
    test: ScoredSet,
    test_images: Sequence[npt.ArrayLike],
    run: RunInfo,
    *,
    settings: EvalSettings,
    held_out: ScoredSet | None = None,
    trained_on: Sequence[str] = (),
) -> tuple[CrossSource, dict[str, Any]]:
    """``(cross_source section, metrics-by-ITA table)`` for a card.

    ``held_out``: images of sources left out of training (leave-one-source-out), scored by the
    same model; one LOSO row per source in it, ``trained_on`` naming the training sources.
    ``settings``: the refer threshold, decision offsets, malignant denominator, resampling and
    withholding limits of every row (the card's; ``monitor_threshold`` is not read).
    """
    section = cross_source_section(source_rows(predictions_frame(test, classes), classes, run,
                                               settings=settings),
                                   min_n=settings.min_n, min_cases=settings.min_cases)
    if held_out is not None:
        frame = predictions_frame(held_out, classes)
        for source in sorted(frame["source"].unique()):
            section = add_loso_row(section, frame, classes, source, list(trained_on), run,
                                   settings=settings)
    by_ita = ita_table(test.labels, test.probs, classes, ita_for_images(test_images),
                       groups=test.groups, settings=settings, noun="test images")
    return section, by_ita
