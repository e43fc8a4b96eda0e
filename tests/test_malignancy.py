"""The malignant probability (dermsight.malignancy): the plain sum, and the share of the specific
diagnoses when a bundle leaves a class (UNK) out of the denominator."""

from __future__ import annotations

import numpy as np
import pytest

from dermsight.malignancy import malignant_probability

NINE = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def _probs(n: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(len(NINE)) * 0.5, size=n)
    return np.asarray(p)


def test_without_exclusion_it_is_the_sum_of_the_malignant_columns() -> None:
    p = _probs()
    got = malignant_probability(p, NINE)
    assert got is not None
    np.testing.assert_allclose(got, p[:, [0, 2, 7]].sum(1))
    only_mel = malignant_probability(p, NINE, ["MEL"])
    assert only_mel is not None
    np.testing.assert_allclose(only_mel, p[:, 0])
    assert malignant_probability(p[:, [1, 4]], ["NV", "BKL"]) is None  # no malignant class


def test_an_excluded_class_is_left_out_of_the_denominator() -> None:
    p = _probs()
    got = malignant_probability(p, NINE, excluded=["UNK"])
    assert got is not None
    np.testing.assert_allclose(got, p[:, [0, 2, 7]].sum(1) / (1 - p[:, 8]))
    # the same as the malignant share of the eight specific diagnoses renormalised on their own
    eight = p[:, :8] / p[:, :8].sum(1, keepdims=True)
    np.testing.assert_allclose(got, eight[:, [0, 2, 7]].sum(1))
    # UNK cannot lower it: probability moved from NV to UNK raises the share, the plain sum stays
    q = p.copy()
    q[:, 8] += q[:, 1] * 0.9
    q[:, 1] *= 0.1
    moved = malignant_probability(q, NINE, excluded=["UNK"])
    plain = malignant_probability(q, NINE)
    assert moved is not None
    assert plain is not None
    assert np.all(moved >= got - 1e-12)
    assert np.all(plain <= moved + 1e-12)


def test_a_row_with_everything_on_the_excluded_class_gets_the_uninformed_share() -> None:
    p = np.zeros((2, len(NINE)))
    p[0, 8] = 1.0
    p[1, 0] = p[1, 8] = 0.5
    got = malignant_probability(p, NINE, excluded=["UNK"])
    assert got is not None
    assert got[0] == pytest.approx(3 / 8)  # MEL, BCC, SCC among the eight others
    assert got[1] == pytest.approx(1.0)


def test_bad_arguments_are_refused() -> None:
    p = _probs()
    with pytest.raises(ValueError, match="cannot be left out"):
        malignant_probability(p, NINE, excluded=["MEL"])
    with pytest.raises(ValueError, match="do not match 8 classes"):
        malignant_probability(p, NINE[:8])
