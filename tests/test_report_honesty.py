"""The HTML evaluation report does not say more than its numbers carry (auditor's findings):
a model-baseline difference names a winner only when its 95% interval excludes 0, the
thresholds say what sensitivity they were chosen for and whether the test images reached it,
a collapsed bootstrap interval is not printed as ``1.000 (1.000 to 1.000)``, the natural
frequencies say they were counted on the images the cut-offs were fitted on, and a per-source
row resting on a handful of patients says its interval is unreliable. Rendered from the shipped
card, as ``tools/card_tables.py`` renders the shipped report.html."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dermsight.evaluate import report as report_mod
from dermsight.evaluate.report import render_report

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "src" / "dermsight" / "assets" / "default"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("card_tables", REPO / "tools" / "card_tables.py")
    assert spec is not None
    assert spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.fixture(scope="module")
def card() -> dict[str, Any]:
    return json.loads((BUNDLE / "card.json").read_text())


@pytest.fixture(scope="module")
def results(card: dict[str, Any]) -> dict[str, Any]:
    """The shipped report's input (tools/card_tables.py), no plots (faster, same tables)."""
    out = _tool().report_results(card, BUNDLE)
    out["cross_source"] = card.get("cross_source")
    out["plots"] = {}
    return dict(out)


def _with_card_design(results: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """``results`` plus the card's threshold design and natural frequencies, built here (not by
    the report module) so the old renderer is handed the same input."""
    calibration = card["training"]["config"]["calibration"]
    return {**results,
            "threshold_fit": {
                "fit_on": "validation", "thresholds": dict(card["thresholds"]),
                "target_sensitivity": {"refer": calibration["refer_sensitivity"],
                                       "monitor": calibration["monitor_sensitivity"]},
                "reached_sensitivity": {
                    "refer": card["metrics"]["validation"]["refer_sensitivity"]}},
            "natural_frequencies": card["natural_frequencies"]}


def _section(html: str, heading: str) -> str:
    start = html.index(heading)
    end = html.find("<h2>", start + len(heading))
    return html[start:end if end >= 0 else len(html)]


def _row(html: str, label: str) -> str:
    """The ``<tr>`` whose first cell is ``label``."""
    m = re.search(r"<tr[^>]*><td>" + re.escape(label) + r"</td>.*?</tr>", html)
    assert m is not None, f"no row {label!r}"
    return m.group(0)


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)).replace("&amp;", "&")


# --- 1. model vs baseline: a winner only when the interval excludes 0 -----------------------------


def test_comparison_names_a_winner_only_where_the_interval_excludes_zero(
        results: dict[str, Any]) -> None:
    comp = _section(render_report(results), "<h2>Comparison with")
    ece = _row(comp, "Expected calibration error (15 bins)")  # -0.013 (-0.031 to +0.008)
    assert "no clear difference" in ece
    assert "model better" not in ece
    assert "baseline better" not in ece
    assert 'class="better"' not in ece
    assert 'class="worse"' not in ece
    brier = _row(comp, "Brier score (multiclass, 0-2)")  # -0.136 (-0.157 to -0.117): lower wins
    assert "model better" in brier
    assert 'class="better"' in brier
    bal = _row(comp, "Balanced multiclass accuracy (the ISIC 2019 challenge&#x27;s metric, "
                     "over all test items)")
    assert "model better" in bal
    # no paired interval for these: a point difference names no winner and is not coloured
    for label in ("Malignant sensitivity at refer threshold", "Specificity at refer threshold"):
        row = _row(comp, label)
        assert "better" not in row.replace("no interval: neither is shown better", "")
        assert "no interval" in row
        assert 'class="worse"' not in row
        assert 'class="better"' not in row


def test_comparison_lower_is_better_both_ways() -> None:
    ev = {"metrics": {"n": 100}, "ci": {"ece": {"value": 0.05, "lo": 0.04, "hi": 0.06}}}
    base = {"metrics": {"n": 100}, "ci": {"ece": {"value": 0.02, "lo": 0.01, "hi": 0.03}}}
    html = render_report({"test": ev, "baseline": {
        "name": "b", "test": base,
        "difference": {"ece": {"value": 0.03, "lo": 0.01, "hi": 0.05}}}})
    row = _row(_section(html, "<h2>Comparison with"), "Expected calibration error (15 bins)")
    assert "baseline better" in row
    assert 'class="worse"' in row


def test_a_collapsed_difference_says_no_interval_once() -> None:
    ev = {"metrics": {"n": 100}, "ci": {"refer_sensitivity": {"value": 1.0, "lo": 1.0, "hi": 1.0}}}
    html = render_report({"test": ev, "baseline": {
        "name": "b", "test": ev,
        "difference": {"refer_sensitivity": {"value": 0.0, "lo": 0.0, "hi": 0.0}}}})
    row = _text(_row(_section(html, "<h2>Comparison with"),
                     "Malignant sensitivity at refer threshold"))
    assert "+0.000 (no interval: neither is shown better)" in row
    assert row.count("no interval") == 3  # the model's, the baseline's and the difference's


# --- 2. thresholds: the rule, the design sensitivity and whether test reached it ----------------


def test_thresholds_say_how_they_were_chosen_and_that_test_missed(
        results: dict[str, Any], card: dict[str, Any]) -> None:
    table = _section(render_report(_with_card_design(results, card)),
                     "<h2>Thresholds on P(malignant)</h2>")
    refer, monitor = _text(_row(table, "refer")), _text(_row(table, "monitor"))
    assert "95 % malignant sensitivity on the validation images" in refer
    assert "99 % malignant sensitivity on the validation images" in monitor
    text = _text(table)
    assert "on test it reached 0.940, below that target" in text
    assert "on test it reached 0.982, below that target" in text


def test_thresholds_without_a_recorded_rule_say_so(results: dict[str, Any]) -> None:
    bare = {k: v for k, v in results.items() if k != "threshold_fit"}  # e.g. an evaluate run
    table = _section(render_report(bare), "<h2>Thresholds on P(malignant)</h2>")
    assert "<td></td>" not in table  # the "how chosen" cell is never blank
    assert "not recorded in these results" in _row(table, "refer")


def test_card_report_extras_carry_the_design(card: dict[str, Any]) -> None:
    extras = report_mod.card_report_extras(card)
    fit = extras["threshold_fit"]
    assert fit["target_sensitivity"] == {"refer": 0.95, "monitor": 0.99}
    assert fit["fit_on"] == "validation"
    assert extras["natural_frequencies"] == card["natural_frequencies"]


# --- 3. collapsed intervals ---------------------------------------------------------------------


def test_a_collapsed_interval_is_not_printed_as_one(results: dict[str, Any]) -> None:
    html = render_report(results)
    assert "1.000 (1.000 to 1.000)" not in _text(html)
    vasc = _text(_row(_section(html, "<h2>Per-class results</h2>"), "VASC"))
    assert "22 of 22; the bootstrap gives no interval; Wilson 0.851 to 1.000" in vasc
    # ISIC 2019: 20 of 20 malignant referred, in the per-source and cross-source tables
    assert "20 of 20; the bootstrap gives no interval; Wilson 0.839 to 1.000" in _text(
        _section(html, "<h2>Per data source</h2>"))
    assert "20 of 20; the bootstrap gives no interval; Wilson 0.839 to 1.000" in _text(
        _section(html, "<h2>Cross-source validation</h2>"))


def test_a_collapsed_interval_without_a_count_says_there_is_none() -> None:
    ev = {"metrics": {"n": 40, "n_malignant": 10},
          "ci": {"malignant_auc": {"value": 1.0, "lo": 1.0, "hi": 1.0, "n": 200}}}
    text = _text(render_report({"test": ev}))
    assert "1.000 (1.000 to 1.000)" not in text
    assert "no interval (every resample gave the same value)" in text


# --- 4. natural frequencies -------------------------------------------------------------------


def test_natural_frequencies_say_the_cut_offs_were_fitted_on_the_same_images(
        results: dict[str, Any], card: dict[str, Any]) -> None:
    section = _section(render_report(_with_card_design(results, card)),
                       "<h2>Natural frequencies")
    text = _text(section)
    assert "the same images the refer and monitor cut-offs were fitted on" in text
    assert "may flatter" in text
    # the test images' counts beside them (from the sensitivity / specificity at the cut-offs)
    assert "1,057 319 about 30 1,053 316 about 30" in _text(_row(section, "high"))
    assert "718 3 fewer than 1 757 6 about 1" in _text(_row(section, "low"))


# --- 5. per-source rows on few patients -----------------------------------------------------------


def test_per_source_rows_show_their_groups_and_mark_few_patients(
        results: dict[str, Any]) -> None:
    html = render_report(results)
    per_source = _section(html, "<h2>Per data source</h2>")

    def source_row(name: str) -> str:
        m = re.search(r"<tr[^>]*><td>source</td><td>" + name + r"</td>.*?</tr>", per_source)
        assert m is not None
        return m.group(0)

    isic2020 = _text(source_row("isic2020"))
    assert "194 (7 groups)" in isic2020
    assert "few patients: interval unreliable" in isic2020
    assert "few patients" not in source_row("ham10000")
    cross = _section(html, "<h2>Cross-source validation</h2>")
    held = cross[:cross.index("<h3>Leave one source out</h3>")]
    assert "few patients: interval unreliable" in _row(held, "isic2020")
    assert "few patients" not in _row(held, "ham10000")
    loso = cross[cross.index("<h3>Leave one source out</h3>"):]
    assert "few patients" not in _row(loso, "isic2020")  # 65 patients


def test_groups_are_put_beside_a_source_row_only_for_the_same_images(
        results: dict[str, Any]) -> None:
    changed = json.loads(json.dumps(results))
    for r in changed["cross_source"]["rows"]:
        if r["protocol"] == "test_split_by_source" and r["source"] == "isic2020":
            r["n_images"] = 999  # another set of images than the subgroup row's 194
    per_source = _section(render_report(changed), "<h2>Per data source</h2>")
    m = re.search(r"<tr[^>]*><td>source</td><td>isic2020</td>.*?</tr>", per_source)
    assert m is not None
    assert "groups)" not in m.group(0)
    assert "few patients" not in m.group(0)


# --- 6, 7. the UNK description and the decision rule's wording --------------------------------


def test_the_unk_description_does_not_overstate() -> None:
    from dermsight.taxonomy import BY_CODE

    lay = BY_CODE["UNK"].lay
    assert not lay.startswith("A lesion that belongs to none of the other eight groups")
    assert "ISIC 2020" in lay
    assert "not a group for every lesion outside the other eight" in lay
    # served for any bundle (/api/v1/classes): no facts about one model's training data
    assert "65" not in lay
    assert "The model learned" not in lay


def test_the_margin_is_described_as_a_lead_in_adjusted_log_probability() -> None:
    from dermsight.decision import LOGIT_ADJUSTED, DecisionRule

    prior = {"MEL": 0.2, "NV": 0.7, "UNK": 0.1}
    text = DecisionRule(LOGIT_ADJUSTED, 0.5, prior, {"UNK": 4.0}).description
    assert "log-odds" not in text
    assert "UNK named only when it leads the next class by more than 4 in adjusted " \
           "log-probability" in text
