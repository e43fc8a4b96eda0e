"""The source-shortcut table: a class that only one source has, suggested per source."""

from __future__ import annotations

import numpy as np

from dermsight.evaluate.source_check import single_source_classes, source_check

CLASSES = ["MEL", "NV", "UNK"]


def test_single_source_classes_and_a_shortcut_shows_up() -> None:
    labels = np.array([0, 1, 0, 1, 2, 2, 0])
    sources = ["a", "a", "b", "b", "b", "b", "b"]
    assert single_source_classes(labels, sources, CLASSES) == {"UNK": "b"}
    rng = np.random.default_rng(0)
    n = 60
    y = np.r_[np.zeros(n), np.ones(n), np.zeros(n), np.ones(n)].astype(int)
    src = ["ham"] * (2 * n) + ["isic2020"] * (2 * n)
    p = np.full((4 * n, 3), 0.05)
    p[np.arange(4 * n), y] = 0.6
    p[2 * n:, 2] = 0.9  # a shortcut: every 2020 image looks like UNK
    p = p / p.sum(1, keepdims=True) + rng.uniform(0, 1e-6, p.shape)
    table = source_check(y, p, src, CLASSES, {"UNK": "isic2020"})
    rows = {(r["source"], r["true_class"]): r for r in table["rows"]}
    assert rows[("isic2020", "MEL")]["suggested_UNK"] == 1.0
    assert rows[("ham", "MEL")]["suggested_UNK"] == 0.0
    assert rows[("ham", "NV")]["mean_p_UNK"] < 0.1
    # with a strong enough decision offset against UNK the shortcut disappears from decisions
    off = np.array([0.0, 0.0, -5.0])
    t2 = source_check(y, p, src, CLASSES, {"UNK": "isic2020"}, offsets=off)
    assert all(r["suggested_UNK"] == 0.0 for r in t2["rows"])
    assert source_check(y[:5], p[:5], src[:5], CLASSES, {"UNK": "x"})["rows"] == []  # < min_n
