"""Natural frequencies per risk tier (``evaluate.frequencies``): the counts, and the limits text
whose malignant share is the one of the counted images (the shipped card said "about 1 in 5"
of its 335 malignant in 1,996 validation images, which is about 1 in 6)."""

from __future__ import annotations

import json

import numpy as np

from dermsight.bundle import default_bundle_path
from dermsight.cardschema import Thresholds
from dermsight.evaluate.frequencies import limits_text, natural_frequencies


def test_counts_per_tier_and_the_share_named_in_the_limits() -> None:
    thresholds = Thresholds(refer=0.3, monitor=0.1)
    p = np.array([0.9, 0.8, 0.2, 0.05, 0.01, 0.02])
    y = np.array([1, 0, 0, 0, 0, 0], bool)
    nf = natural_frequencies(p, y, thresholds, sources=["a", "a", "b", "a", "b", "b"])
    assert nf["per_tier"] == {"high": {"n": 2, "malignant": 1, "per_100": 50},
                              "moderate": {"n": 1, "malignant": 0, "per_100": 0},
                              "low": {"n": 3, "malignant": 0, "per_100": 0}}
    assert (nf["n"], nf["malignant"], nf["source_mix"]) == (6, 1, {"a": 3, "b": 3})
    assert "(about 1 in 6 malignant)" in nf["limits"]
    assert "(about 1 in 5 malignant)" in limits_text(100, 20)
    assert "(none of them malignant)" in limits_text(10, 0)
    assert "(about 70 % malignant)" in limits_text(10, 7)  # not "about 1 in 1"


def test_the_shipped_card_states_the_share_of_its_own_validation_images() -> None:
    card = json.loads((default_bundle_path() / "card.json").read_text(encoding="utf-8"))
    nf = card["natural_frequencies"]
    assert (nf["n"], nf["malignant"]) == (1996, 335)
    assert nf["limits"] == limits_text(nf["n"], nf["malignant"])
    assert "about 1 in 6 malignant" in nf["limits"]
