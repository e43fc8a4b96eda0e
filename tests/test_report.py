"""dermsight.evaluate: plots (PNG bytes) and the self-contained HTML report."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from dermsight.evaluate import EvalSettings, compare_predictions, evaluate_predictions
from dermsight.evaluate.plots import (
    confusion_matrix_png,
    make_plots,
    risk_tier_png,
    roc_curves_png,
)
from dermsight.evaluate.report import render_report
from dermsight.taxonomy import CLASS_CODES

CLASSES8 = list(CLASS_CODES[:8])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}


def _data(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.choice(8, size=n, p=[0.2, 0.45, 0.1, 0.05, 0.1, 0.04, 0.03, 0.03])
    logits = rng.normal(size=(n, 8))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    groups = rng.integers(0, n // 2, size=n)
    meta = pd.DataFrame({
        "age_approx": rng.choice(["25", "40", "55", "70", "85", ""], n),
        "sex": rng.choice(["male", "female", ""], n),
        "anatom_site": rng.choice(["torso", "head/neck", "palms/soles"], n, p=[0.6, 0.35, 0.05]),
        "source": rng.choice(["ham10000", "isic2019"], n),
    })
    return y, p, groups, meta


@pytest.fixture(scope="module")
def plots() -> dict[str, bytes]:
    y, p, _, _ = _data()
    before = p**2 / (p**2).sum(axis=1, keepdims=True)
    return make_plots(y, p, CLASSES8, probs_uncalibrated=before,
                      thresholds={"refer": 0.35, "monitor": 0.15})


@pytest.fixture(scope="module")
def results(plots: dict[str, bytes]) -> dict:
    y, p, g, meta = _data()
    test = evaluate_predictions(y, p, CLASSES8, g, meta,
                                settings=EvalSettings(refer_threshold=0.35, n_boot=20,
                                                      monitor_threshold=0.15))
    flat = np.full_like(p, 1 / 8) + np.random.default_rng(1).normal(0, 1e-3, p.shape)
    baseline = evaluate_predictions(y, flat, CLASSES8, g,
                                    settings=EvalSettings(refer_threshold=0.35, n_boot=20))
    return {
        "title": "Test report",
        "model": {"name": "dermsight-<script>alert(1)</script>", "version": "1.2.3",
                  "backbone": "efficientnet_lite0", "image size": 256},
        "generated": "2025-01-01T00:00Z",
        "intended_use": "Decision support for clinicians reviewing dermoscopic images.",
        "data": {
            "summary": {"test images": 300, "source repo": "https://example.org/should-be-text"},
            "splits": {"train": {"MEL": np.int64(900), "NV": np.int64(4000)},
                       "test": {"MEL": 60, "NV": 135}},
            "notes": ["Group-aware split on group_id."],
        },
        "test": test,
        "baseline": {
            "name": "linear probe",
            "test": baseline,
            "difference": compare_predictions(y, p, flat, CLASSES8, g,
                                              settings=EvalSettings(refer_threshold=0.35,
                                                                    n_boot=20)),
        },
        "thresholds": [{"name": "refer", "value": 0.35,
                        "rule": "highest threshold with >= 95% sensitivity on validation"}],
        "calibration": {"temperature": 1.43, "fit_on": "validation", "ece_before": 0.08,
                        "ece_after": 0.02, "nll_before": None},
        "plots": plots,
        "limitations": ["No ISIC 2020 images; no UNK class.", "Low image resolution."],
    }


class _Checker(HTMLParser):
    """Collects tags, attributes and checks that non-void tags are properly nested."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _check(html: str) -> _Checker:
    c = _Checker()
    c.feed(html)
    c.close()
    assert not c.errors, c.errors[:5]
    assert not c.stack, c.stack
    return c


# --- plots -----------------------------------------------------------------------------------


def test_plots_return_png_bytes(plots: dict[str, bytes]) -> None:
    assert set(plots) == {"roc", "confusion", "reliability", "risk_tiers"}
    for name, png in plots.items():
        assert isinstance(png, bytes), name
        assert png.startswith(PNG_MAGIC), name
        assert len(png) > 5_000, name


def test_individual_plots_with_absent_classes() -> None:
    y = np.array([1, 1, 4, 4, 1, 4])  # NV and BKL only: no ROC for the others, no crash
    p = np.full((6, 8), 0.05)
    p[np.arange(6), y] = 0.65
    assert roc_curves_png(y, p, CLASSES8).startswith(PNG_MAGIC)
    assert confusion_matrix_png(y, p, CLASSES8).startswith(PNG_MAGIC)
    assert risk_tier_png(p[:, 0], y == 0, refer=0.5).startswith(PNG_MAGIC)


# --- report ----------------------------------------------------------------------------------


def test_report_is_valid_self_contained_html(results: dict) -> None:
    html = render_report(results)
    assert html.startswith("<!DOCTYPE html>")
    c = _check(html)
    assert c.tags[0] == "html"
    assert "head" in c.tags
    assert "body" in c.tags
    # no external resources: every src/href is a data: URI, and no scripts/links/iframes
    for tag, attr, value in c.attrs:
        if attr in ("src", "href", "srcset", "action", "poster", "data"):
            assert value is not None, (tag, value)
            assert value.startswith("data:image/png;base64,"), (tag, value)
            assert "http" not in value.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html
    assert "<link" not in html
    assert "<iframe" not in html
    assert "url(" not in html
    assert "@import" not in html
    # images are the plots, embedded
    imgs = [v for t, a, v in c.attrs if t == "img" and a == "src"]
    assert len(imgs) == 4
    for uri in imgs:
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_report_content(results: dict, test_output) -> None:
    html = render_report(results)
    (test_output / "evaluation_report_example.html").write_text(html, encoding="utf-8")
    text = " ".join(_check(html).text)
    assert "4,000" in text  # numpy ints formatted like ints
    assert "4,900" in text
    assert "None" not in text  # missing values render as a dash
    # user text is escaped, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "1.2.3" in text
    assert "Test report" in text
    assert "efficientnet_lite0" in text
    for heading in ("Data", "Test metrics", "Comparison with linear probe", "Per-class results",
                    "Thresholds on P(malignant)", "Subgroups (sex, age, anatomic site)",
                    "Per data source", "Calibration", "Figures", "Limitations",
                    "Intended use"):
        assert f"<h2>{heading}</h2>" in html, heading
    ci = results["test"]["ci"]["malignant_auc"]
    assert f"{ci['value']:.3f}" in text
    assert f"{ci['lo']:.3f}" in text
    assert "Melanoma" in text
    assert "Squamous cell carcinoma" in text
    assert "palms/soles" in text
    assert "too few to report" in text
    assert "No ISIC 2020 images" in text
    assert "ISIC 2024 convention" in text
    assert "Green: model better" in text
    assert "paired bootstrap" in text
    # refer threshold row with test sensitivity from the evaluation's CI
    sens = results["test"]["ci"]["refer_sensitivity"]["value"]
    assert f"{sens:.3f}" in text


def test_report_survives_json_round_trip(results: dict) -> None:
    """Plots as base64 text (what a JSON file holds) render the same as bytes."""
    as_json = dict(results)
    as_json["plots"] = {k: base64.b64encode(v).decode() for k, v in results["plots"].items()}
    loaded = json.loads(json.dumps(as_json, default=lambda o: o.item()))  # numpy scalars
    assert render_report(loaded) == render_report(results)


def test_report_drops_non_png_plots() -> None:
    html = render_report({"plots": {"roc": "https://evil.example/x.png",
                                    "confusion": "data:image/svg+xml;base64,PHN2Zz4=",
                                    "other": b"GIF89a"}})
    _check(html)
    assert "http" not in html  # not even as text
    assert "<img" not in html
    assert html.count("omitted: not PNG data") == 3


def test_minimal_results_render() -> None:
    html = render_report({})
    _check(html)
    assert "No test evaluation" in html
    y, p, g, _ = _data(80, seed=3)
    html = render_report({"model": {"name": "m", "version": "0"},
                          "test": evaluate_predictions(y, p, CLASSES8, g,
                                                       settings=EvalSettings(n_boot=5))})
    _check(html)
    assert "Per-class results" in html
    assert "Subgroups" not in html
    assert "Comparison" not in html


def test_report_ita_and_cross_source_sections() -> None:
    from dermsight.evaluate.cross_source import add_loso_row, cross_source_section, source_rows
    from dermsight.evaluate.skin_tone import ita_table

    y, p, g, _meta = _data(400, seed=5)
    test = evaluate_predictions(y, p, CLASSES8, g,
                                settings=EvalSettings(n_boot=10, refer_threshold=0.35))
    ita = [70.0] * 350 + [20.0] * 20 + [None] * 30
    test["by_ita"] = ita_table(y, p, CLASSES8, ita, groups=g,
                               settings=EvalSettings(refer_threshold=0.35, n_boot=10))
    frame = pd.DataFrame({f"p_{c}": p[:, i] for i, c in enumerate(CLASSES8)})
    frame["label"] = [CLASSES8[k] for k in y]
    frame["group"] = g
    frame["source"] = ["ham10000"] * 380 + ["isic2016"] * 20
    run = {"config": "configs/default.yaml", "seed": 42, "command": "make train"}
    section = cross_source_section(source_rows(frame, CLASSES8, run,
                                               settings=EvalSettings(n_boot=10,
                                                                     refer_threshold=0.35)))
    loso_run = {"config": "configs/loso.yaml", "seed": 1, "command": "dermsight train <x>"}
    section = add_loso_row(section, frame.assign(source="isic2020"), CLASSES8, "isic2020",
                           ["ham10000"], loso_run, settings=EvalSettings(n_boot=10))
    html = render_report({"test": test, "cross_source": section})
    c = _check(html)
    text = " ".join(c.text)
    assert "<h2>By skin tone (ITA, estimated from the image)</h2>" in html
    assert "Of 400 images, a skin tone (ITA) could be estimated for 370" in text
    assert "tan 20, brown 0, dark 0" in text
    for band in ("very light", "light", "intermediate", "tan", "brown", "dark",
                 "not estimable"):
        assert f"<td>{band}</td>" in html, band
    assert "&gt; 55°" in html
    assert "no images" in text
    assert "<h2>Cross-source validation</h2>" in html
    assert "<h3>Held-out test split, per data source</h3>" in html
    assert "<h3>Leave one source out</h3>" in html
    assert "withheld (n &lt; 30)" in html  # isic2016: 20 images
    assert "trained on ham10000" in text
    assert "dermsight train &lt;x&gt;" in html
    assert "Model run: config configs/default.yaml; seed 42; reproduce: make train." in text
    ham = section["rows"][0]
    assert f"{ham['metrics']['mel_auc']['value']:.3f}" in text
    # a note explaining withheld figures greys its row out; a note beside full figures (the
    # spread of other training draws, tools/add_loso_rows.py --note) is shown, not greyed
    assert '<tr class="withheld"><td>isic2016</td>' in html
    section["rows"][0]["note"] = "one training draw of several"  # ham10000: every figure
    html = render_report({"test": test, "cross_source": section})
    assert "one training draw of several" in html
    assert "<tr><td>ham10000</td>" in html
    assert '<tr class="withheld"><td>isic2016</td>' in html
    # absent sections render nothing
    plain = render_report({"test": evaluate_predictions(y, p, CLASSES8, g,
                                                        settings=EvalSettings(n_boot=0))})
    assert "Cross-source" not in plain
    assert "skin tone" not in plain


def test_the_shipped_report_is_its_cards_rendering() -> None:
    """The shipped report.html says what the shipped card says: rendered from the card and its
    plots (``tools/card_tables.py --report-only`` rewrites it after a change to the card)."""
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("card_tables", repo / "tools" / "card_tables.py")
    assert spec is not None
    assert spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    bundle = repo / "src" / "dermsight" / "assets" / "default"
    card = json.loads((bundle / "card.json").read_text())
    shipped = (bundle / "report.html").read_text(encoding="utf-8")
    assert tool.rendered_report(card, bundle) == shipped
    assert "Training images by compression (JPEG 90: 9,344)" in shipped
