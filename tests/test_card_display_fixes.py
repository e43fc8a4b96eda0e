"""Fixes from a referee-style audit of how the model card is shown and described.

* a per-source test figure gets the same 95 % interval in the card's subgroup table
  (``metrics.test.subgroups``, attribute ``source``) as in its ``cross_source`` table: both are
  ``subgroup_metrics`` on the same rows, and the group codes of the subgroup path (codes of the
  whole test split) no longer change the bootstrap resamples;
* README's leave-one-source-out paragraph does not claim the card's row note gives a range it
  does not give;
* the test-split description (README, ``dermsight evaluate --help``) says that the card's test
  figures include the images the gate refuses and ``dermsight evaluate`` leaves them out;
* the ``Thresholds`` docstring defines the malignant probability as the model computes it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dermsight.cardschema import Thresholds
from dermsight.evaluate import evaluate_predictions
from dermsight.evaluate.bootstrap import group_codes
from dermsight.evaluate.cross_source import _KEY_METRIC, RunInfo, source_rows
from dermsight.evaluate.settings import EvalSettings
from dermsight.evaluate.subgroups import subgroup_metrics, subgroup_table
from dermsight.taxonomy import CLASS_CODES

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "src" / "dermsight" / "assets" / "default" / "card.json"
CLASSES = list(CLASS_CODES[:8])
RUN: RunInfo = {"config": "configs/default.yaml", "seed": 42, "command": "make train"}


def _frame(seed: int = 3) -> pd.DataFrame:
    """Three interleaved sources, lesion groups of one to three images, labels that the whole
    split and one source sort differently (``l10`` < ``l9``)."""
    rng = np.random.default_rng(seed)
    n = 600
    y = rng.choice(8, size=n, p=[0.2, 0.45, 0.1, 0.05, 0.1, 0.04, 0.03, 0.03])
    logits = rng.normal(size=(n, 8))
    logits[np.arange(n), y] += 1.4
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    frame = pd.DataFrame({f"p_{c}": p[:, i] for i, c in enumerate(CLASSES)})
    frame["label"] = [CLASSES[k] for k in y]
    frame["source"] = rng.choice(["ham10000", "isic2017", "isic2019"], size=n, p=[.6, .25, .15])
    frame["group"] = [f"l{k}" for k in rng.integers(0, 380, size=n)]
    return frame


def _settings(intervals: str) -> EvalSettings:
    return EvalSettings(refer_threshold=0.3, n_boot=60, seed=42, intervals=intervals)


@pytest.mark.parametrize("intervals", ["bootstrap", "wilson"])
def test_source_subgroup_rows_and_cross_source_rows_give_the_same_intervals(
        intervals: str) -> None:
    """As finalize builds the card: ``evaluate_predictions`` (subgroup rows, groups coded over
    the whole split) and ``source_rows`` (groups coded per source), same predictions and seed."""
    frame, settings = _frame(), _settings(intervals)
    classes = CLASSES
    probs = frame[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    evaluation = evaluate_predictions(frame["label"].to_numpy(), probs, classes,
                                      frame["group"].to_numpy(dtype=object),
                                      frame[["source"]], settings)
    by_source = {r["subgroup"]: r for r in evaluation["subgroups"]
                 if r["attribute"] == "source"}
    rows = {r["source"]: r for r in source_rows(frame, classes, RUN, settings=settings)}
    assert set(by_source) == set(rows) == {"ham10000", "isic2017", "isic2019"}
    compared = 0
    for source, row in rows.items():
        sub = by_source[source]
        for name, key in _KEY_METRIC.items():
            est = row["metrics"][name]
            assert est["value"] == sub[key], (source, name)
            assert (est["lo"], est["hi"]) == (sub[f"{key}_lo"], sub[f"{key}_hi"]), (source, name)
            compared += est["lo"] is not None
    assert compared >= 10  # intervals, not only withheld figures, were compared


def test_subgroup_metrics_reads_the_grouping_not_the_code_numbers() -> None:
    """Codes of a larger set (gaps, another order of the same groups) give the intervals of the
    same grouping coded ``0..G-1``."""
    frame = _frame(5)
    part = frame[frame["source"] == "isic2017"]
    y = part["label"].map(CLASSES.index).to_numpy(np.int64)
    p = part[[f"p_{c}" for c in CLASSES]].to_numpy(np.float64)
    own = group_codes(part["group"].to_numpy(dtype=object), len(part))
    settings = _settings("bootstrap")
    want = subgroup_metrics(y, p, own, CLASSES, settings)
    assert subgroup_metrics(y, p, own * 7 + 3, CLASSES, settings) == want
    whole = group_codes(frame["group"].to_numpy(dtype=object), len(frame))
    assert subgroup_metrics(y, p, whole[part.index.to_numpy()], CLASSES, settings) == want
    table = subgroup_table(frame["label"].to_numpy(), frame[[f"p_{c}" for c in CLASSES]]
                           .to_numpy(np.float64), CLASSES, frame[["source"]],
                           groups=frame["group"].to_numpy(dtype=object), settings=settings)
    row = next(r for r in table if r["subgroup"] == "isic2017")
    assert {k: row[k] for k in want} == want


def test_readme_loso_paragraph_does_not_credit_the_card_note_with_balanced_accuracy() -> None:
    card = json.loads(CARD.read_text(encoding="utf-8"))
    note = next(r["note"] for r in card["cross_source"]["rows"]
                if r["protocol"] == "leave_one_source_out" and r["source"] == "isic2017")
    assert "balanced" not in note  # what the card's row note holds (the card is not changed)
    text = " ".join(REPO.joinpath("README.md").read_text(encoding="utf-8").split())
    assert "balanced accuracy 0.493–0.569 (the card's row says so in its note)" not in text
    assert "0.493–0.569" in text  # the range itself is still given, with where it comes from


def test_the_test_split_description_says_the_card_counts_refused_images() -> None:
    card = json.loads(CARD.read_text(encoding="utf-8"))
    assert card["metrics"]["test"]["n"] == 2020
    text = " ".join(REPO.joinpath("README.md").read_text(encoding="utf-8").split())
    held_out = text.split("**Held-out test split**", 1)[1].split("| metric |", 1)[0]
    assert "refuse" in held_out
    assert "dermsight evaluate" in held_out
    assert re.search(r"leaves? (them|those) out", held_out)


def test_evaluate_help_says_refused_images_are_left_out_unlike_the_card() -> None:
    from dermsight.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "gate refuses" in text
    assert "model card's test figures" in text


def test_thresholds_docstring_defines_the_malignant_share() -> None:
    doc = " ".join((Thresholds.__doc__ or "").split())
    assert "(the card's malignant classes summed)" not in doc  # the sum alone: not for UNK
    assert "malignant_excluded" in doc
    assert "(MEL+BCC+SCC)/(1 − P(UNK))" in doc


def test_the_model_pages_few_patients_limit_is_the_reports() -> None:
    """The Model page marks a per-source row as the report does, with the report's limit (the
    card does not carry it, so the front end keeps a copy)."""
    from dermsight.evaluate import report

    page = REPO.joinpath("frontend", "src", "pages", "ModelPage.tsx").read_text(encoding="utf-8")
    limit = re.search(r"^export const FEW_GROUPS = (\d+)$", page, re.MULTILINE)
    assert limit is not None
    assert int(limit.group(1)) == report.FEW_GROUPS
    assert f"export const FEW_GROUPS_NOTE = '{report.FEW_GROUPS_NOTE}'" in page
