"""Words of the evaluation report and the natural frequencies that were the shipped model's, said
of any model: balanced accuracy and the mean AUC over the classes present, said next to the figure
when some of the model's classes are absent; the malignant classes named as the model's own; "the
public collections" said only of images from them; no natural frequency on a handful of images.
The shipped card and report stay as they are (``test_report.py`` checks the report byte for byte).
"""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import numpy as np
import pytest

from dermsight.bundle import default_bundle_path
from dermsight.cardschema import Thresholds
from dermsight.evaluate import EvalSettings, evaluate_predictions
from dermsight.evaluate.frequencies import limits_text, natural_frequencies
from dermsight.evaluate.report import METRIC_LABELS, card_report_extras, render_report
from dermsight.evaluate.settings import MIN_N

NINE = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
FOUR = ["MEL", "NV", "BCC", "BKL"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
SHIPPED = json.loads((default_bundle_path() / "card.json").read_text(encoding="utf-8"))


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _evaluation(classes: list[str], present: list[str], n: int = 160,
                thresholds: bool = True) -> dict[str, Any]:
    """Scores of a model over ``classes`` on items whose labels are only ``present``
    (``thresholds``: with refer / monitor thresholds, so that the test images' tier counts are
    known)."""
    rng = np.random.default_rng(0)
    idx = [classes.index(c) for c in present]
    y = np.array([idx[i % len(idx)] for i in range(n)])
    logits = rng.normal(size=(n, len(classes)))
    logits[np.arange(n), y] += 2.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return evaluate_predictions(y, p, classes, np.arange(n),
                                settings=EvalSettings(refer_threshold=0.3 if thresholds else None,
                                                      monitor_threshold=0.1 if thresholds else None,
                                                      n_boot=20, intervals="wilson"))


def _headline_rows(html: str) -> dict[str, str]:
    start = html.index("<h2>Test metrics</h2>")
    table = html[start:html.index("</table>", start)]
    return {_text(label).strip(): _text(rest)
            for label, rest in re.findall(r"<tr><td>(.*?)</td>(.*?)</tr>", table)}


# --- A: figures averaged over the classes present -----------------------------------------------


def test_four_of_nine_classes_are_named_next_to_the_averaged_figures() -> None:
    html = render_report({"test": _evaluation(NINE, FOUR)})
    rows = _headline_rows(html)
    assert ("Balanced multiclass accuracy (the ISIC 2019 challenge's metric, over the 4 of 9 "
            "classes present in the test items)") in rows
    assert "Mean one-vs-rest AUC, over the 4 of 9 classes present" in rows
    section = _text(html[html.index("<h2>Test metrics</h2>"):html.index("<h2>Per-class")])
    assert ("These test items hold 4 of the model's 9 classes (MEL, NV, BCC, BKL); none of AK, "
            "DF, VASC, SCC, UNK.") in section
    assert ("Balanced accuracy and the mean one-vs-rest AUC average over the 4 classes present "
            "only, so they are not comparable with a figure over all 9 classes") in section


def test_every_class_present_keeps_the_labels() -> None:
    html = render_report({"test": _evaluation(NINE, NINE, n=270)})
    rows = _headline_rows(html)
    assert METRIC_LABELS["balanced_accuracy"] in rows
    assert METRIC_LABELS["auc_macro"] in rows
    assert "classes present" not in _text(html)


# --- B: the model's own malignant classes and sources -------------------------------------------


def test_a_four_class_models_report_names_its_own_malignant_classes() -> None:
    html = render_report({"test": _evaluation(FOUR, FOUR), "plots": {"roc": PNG}})
    text = _text(html)
    assert "Malignant (MEL or BCC) vs other AUC, on the malignant share" in _headline_rows(html)
    assert "The malignant share is P(MEL)+P(BCC) over the probability" in text
    assert "dashed: malignant = MEL or BCC, scored by the malignant share" in text
    assert "SCC" not in text


def test_the_shipped_models_classes_keep_the_words() -> None:
    html = render_report({"test": _evaluation(NINE, NINE, n=270), "plots": {"roc": PNG}})
    text = _text(html)
    assert METRIC_LABELS["malignant_auc"] in _headline_rows(html)
    assert "The malignant share is P(MEL)+P(BCC)+P(SCC) over the probability" in text
    assert "dashed: malignant = MEL, BCC or SCC, scored by the malignant share" in text


def test_frequencies_of_a_users_own_images_do_not_call_them_public() -> None:
    p = np.linspace(0, 1, 60)
    y = p > 0.7
    nf = natural_frequencies(p, y, Thresholds(refer=0.5, monitor=0.2), ["cohort3"] * 60,
                             malignant_classes=["MEL", "BCC"])
    assert nf["malignant_means"] == "MEL or BCC (as labelled in the data the model was built from)"
    assert "public" not in nf["limits"]
    assert nf["limits"].startswith("Counted on the validation images the model was built from")
    assert "not this patient's own risk" in nf["limits"]


def test_frequencies_of_the_public_collections_say_what_the_shipped_card_says() -> None:
    from dermsight.evaluate.frequencies import malignant_means_text

    stored = SHIPPED["natural_frequencies"]
    sources = [s for s, k in stored["source_mix"].items() for _ in range(k)]
    p = np.linspace(0, 1, len(sources))
    nf = natural_frequencies(p, p > 0.5, Thresholds(refer=0.5, monitor=0.2), sources,
                             malignant_classes=SHIPPED["malignant"])
    assert nf["malignant_means"] == stored["malignant_means"]
    assert limits_text(stored["n"], stored["malignant"]) == stored["limits"]
    assert malignant_means_text(SHIPPED["malignant"], True) == stored["malignant_means"]


def test_the_report_says_a_users_card_in_its_own_words() -> None:
    """A card written before (its text the shipped model's) is shown with its own classes."""
    card = {"malignant": ["MEL", "BCC"], "natural_frequencies": {
        **SHIPPED["natural_frequencies"], "n": 24, "malignant": 8, "source_mix": {"cohort3": 24},
        "per_tier": {"high": {"n": 22, "malignant": 8, "per_100": 36},
                     "moderate": {"n": 0, "malignant": 0, "per_100": None},
                     "low": {"n": 2, "malignant": 0, "per_100": 0}}}}
    nf = card_report_extras(card)["natural_frequencies"]
    assert nf["malignant_means"].startswith("MEL or BCC (")
    assert "public" not in nf["limits"]
    assert "about 1 in 3 malignant" in nf["limits"]
    # the shipped card's words are its own
    assert card_report_extras(SHIPPED)["natural_frequencies"] == SHIPPED["natural_frequencies"]


# --- C: no frequency on a handful of images -----------------------------------------------------


def test_a_tier_of_two_images_gets_no_frequency() -> None:
    nf = {"split": "validation", "n": 60, "malignant": 9,
          "per_tier": {"high": {"n": 40, "malignant": 9, "per_100": 22},
                       "moderate": {"n": 18, "malignant": 0, "per_100": 0},
                       "low": {"n": 2, "malignant": 0, "per_100": 0}}}
    html = render_report({"natural_frequencies": nf, "test": _evaluation(NINE, NINE, n=270)})
    section = html[html.index("<h2>Natural frequencies"):]
    rows = {_text(t).strip(): _text(r) for t, r in
            re.findall(r"<tr><td>(\w+)</td>(.*?)</tr>", section[:section.index("</table>")])}
    assert "about 22" in rows["high"]
    assert "withheld: too few images to count (2)" in rows["low"]
    assert "withheld: too few images to count (18)" in rows["moderate"]
    assert "about 0" not in rows["low"] + rows["moderate"]
    assert f"A tier with fewer than {MIN_N} images gets no figure" in _text(section)


def test_the_shipped_cards_tiers_are_all_large_enough() -> None:
    tiers = SHIPPED["natural_frequencies"]["per_tier"]
    assert all(t["n"] >= MIN_N for t in tiers.values())


@pytest.mark.parametrize("n", [0, 29, 30])
def test_the_withholding_limit_is_the_subgroup_tables(n: int) -> None:
    nf = {"per_tier": {"low": {"n": n, "malignant": 0, "per_100": 0 if n else None}}}
    test = _evaluation(NINE, NINE, n=270, thresholds=False)  # no test tier counts
    text = _text(render_report({"natural_frequencies": nf, "test": test}))
    assert ("too few images to count" in text) == (0 < n < MIN_N)
