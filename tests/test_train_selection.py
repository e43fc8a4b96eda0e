"""Which epoch becomes ``best.pt`` (``train.select_metric``, needs the [train] extra): the config
check, ``last``, and the validation malignant AUC the training log records, which must rank by
the malignant probability the bundle will use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from dermsight.malignancy import malignant_probability
from dermsight.train.config import SELECT_METRICS, ConfigError, load_config
from dermsight.train.loop import quick_metrics, select_score

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[1]
NINE = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def test_a_misspelt_select_metric_fails_before_training() -> None:
    cfg = REPO / "configs" / "default.yaml"
    for name in SELECT_METRICS:
        assert load_config(cfg, [f"train.select_metric={name}"]).train.select_metric == name
    with pytest.raises(ConfigError, match=r"train\.select_metric must be one of .*last"):
        load_config(cfg, ["train.select_metric=malignant_AUC"])


def test_last_always_takes_the_newest_epoch_and_nll_is_lower_is_better() -> None:
    good, bad = {"balanced_accuracy": 0.9, "nll": 0.2}, {"balanced_accuracy": 0.1, "nll": 2.0}
    assert select_score(bad, "last", 5) > select_score(good, "last", 4)
    assert select_score(good, "nll", 0) > select_score(bad, "nll", 1)
    assert select_score(good, "balanced_accuracy", 0) > select_score(bad, "balanced_accuracy", 1)
    # an epoch whose validation split has no melanoma has no AUC: it can never be selected by it
    assert select_score(good, "mel_auc", 3) == float("-inf")


def test_the_logged_malignant_auc_uses_the_bundles_malignant_probability() -> None:
    """With UNK left out of the denominator (``model.unspecified_head``), a lesion's risk is its
    malignant share among the specific diagnoses. Build logits where the plain sum and the share
    rank the lesions in opposite orders, and check the log follows the share."""
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 8, n)  # specific diagnoses only
    malignant_rows = np.isin(labels, [0, 2, 7])
    p = np.full((n, 9), 0.01)
    # malignant lesions: a clear malignant share but most mass on UNK (small plain sum);
    # benign ones: a lower malignant share and little UNK (larger plain sum)
    p[malignant_rows, 0], p[malignant_rows, 1], p[malignant_rows, 8] = 0.06, 0.02, 0.85
    p[~malignant_rows, 0], p[~malignant_rows, 1], p[~malignant_rows, 8] = 0.10, 0.80, 0.03
    p /= p.sum(1, keepdims=True)
    logits = np.log(p).astype(np.float32)
    plain = quick_metrics(labels, logits, NINE)["malignant_auc"]
    share = quick_metrics(labels, logits, NINE, ["UNK"])["malignant_auc"]
    assert plain < 0.1
    assert share > 0.9
    expected = malignant_probability(p, NINE, excluded=["UNK"])
    assert expected is not None
    assert expected[malignant_rows].min() > expected[~malignant_rows].max()
