"""Intervals of figures on few cases (an audit of ``dermsight evaluate`` on 8 images per class:
melanoma sensitivity 8/8 shown as "1.000 (1.000 to 1.000)", malignant sensitivity 24/24 the same,
and ``ci.*.n`` = 200, the bootstrap resamples, where a reader expects the cases).

With the ``"wilson"`` interval method a proportion (k of n cases) gets the Wilson score interval,
widened to the group-bootstrap interval where that reaches further; ``n`` is the cases behind a
figure and ``draws`` the resamples; a bootstrap interval of zero width (an AUC of 1 in every
resample) is not shown, and a note says why. The shipped card's figures keep the percentile
bootstrap (the ``"bootstrap"`` method, the default), so a card computed again is the same.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from typer.testing import CliRunner

from cli_support import labelled_subset
from dermsight.batch.store import read_output
from dermsight.bundle import default_bundle_path, load_bundle
from dermsight.cli import app as cli_app
from dermsight.evaluate import EvalSettings, evaluate_predictions
from dermsight.evaluate.report import render_report

#: 7 real images of each of the 8 diagnoses in isic-subset: 56 images, 21 malignant
PER_CLASS = 7
MALIGNANT = ("MEL", "BCC", "SCC")
N_BOOT = 200


@dataclasses.dataclass(frozen=True)
class WilsonSettings(EvalSettings):
    """Evaluation settings with the ``"wilson"`` interval method."""

    intervals: str = "wilson"


def wilson(k: int, n: int) -> tuple[float, float]:
    """The reference: SciPy's Wilson score interval (no continuity correction), 95 %."""
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
              metadata: pd.DataFrame) -> Path:
    """``dermsight evaluate`` of the shipped bundle on 56 real labelled images: its --out."""
    root = tmp_path_factory.mktemp("small-n")
    data = labelled_subset(root / "labelled", data_dir, metadata, PER_CLASS)
    out = root / "ev"
    res = CliRunner().invoke(cli_app, ["evaluate", str(default_bundle_path()), str(data),
                                       "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    return out


def _scores(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], pd.DataFrame]:
    """Labels, probabilities, groups, classes and metadata of the evaluated rows."""
    card = load_bundle().card
    classes = list(card.classes)
    df = read_output(out / "scores", ["id", "label", "group", "error", "age", "sex", "site",
                                      *(f"p_{c}" for c in classes)])
    df = df[df["error"].isna() & df["label"].isin(classes)].reset_index(drop=True)
    groups = df["group"].where(df["group"].notna(), df["id"]).astype(str).to_numpy()
    probs = df[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    return df["label"].astype(str).to_numpy(), probs, groups, classes, df[["age", "sex", "site"]]


def _settings(cls: type[EvalSettings]) -> EvalSettings:
    """The settings ``dermsight evaluate`` scores with: the bundle's rule and thresholds."""
    card = load_bundle().card
    return cls(refer_threshold=card.thresholds.refer, monitor_threshold=card.thresholds.monitor,
               offsets=card.decision.decider(list(card.classes)),
               malignant_excluded=tuple(card.malignant_excluded), n_boot=N_BOOT)


def _check_small_n(ev: dict[str, Any], n_malignant: int = 3 * PER_CLASS,
                   n_mel: int = PER_CLASS) -> None:
    """What an evaluation with the ``wilson`` method says of its 100 % figures (of
    ``n_malignant`` malignant images, ``n_mel`` of them melanomas)."""
    m, ci = ev["metrics"], ev["ci"]
    assert m["n_malignant"] == n_malignant  # MEL, BCC, SCC
    sens = ci["refer_sensitivity"]
    assert sens["value"] == 1.0  # every malignant image referred: 21 of 21
    assert sens["lo"] < 1.0
    assert math.isclose(sens["lo"], wilson(n_malignant, n_malignant)[0],
                        abs_tol=1e-12)  # 0.845 for 21
    assert sens["hi"] == 1.0
    assert sens["n"] == m["n_malignant"]  # the cases, not the resamples
    assert sens["k"] == m["n_malignant"]
    assert sens["draws"] == N_BOOT
    spec = ci["refer_specificity"]  # a proportion inside (0, 1): Wilson, or the wider bootstrap
    assert spec["n"] == m["n"] - m["n_malignant"]
    w_lo, w_hi = wilson(spec["k"], spec["n"])
    assert spec["lo"] <= w_lo + 1e-12
    assert spec["hi"] >= w_hi - 1e-12
    assert spec["lo"] < spec["value"] < spec["hi"]
    mel = next(pc for pc in ev["per_class"] if pc["code"] == "MEL")
    assert mel["n"] == n_mel
    assert mel["sensitivity"]["value"] == 1.0
    assert mel["sensitivity"]["n"] == n_mel
    assert math.isclose(mel["sensitivity"]["lo"], wilson(n_mel, n_mel)[0], abs_tol=1e-12)
    entries = [*ci.values(), *(pc[k] for pc in ev["per_class"]
                               for k in ("auc", "sensitivity", "specificity"))]
    for e in entries:  # no interval of zero width anywhere; a missing one says why
        if e["lo"] is not None:
            assert e["hi"] - e["lo"] > 1e-9, e
        elif e["value"] is not None:
            assert e["note"].startswith(f"{N_BOOT} of the {N_BOOT} resamples gave 1.000"), e
    assert any(e.get("note") for e in entries)  # some one-vs-rest AUC is 1 in every resample


def test_wilson_interval_known_values() -> None:
    """Newcombe (1998, Stat Med 17:857, table I, method 3) and the closed forms at 0 and n."""
    from dermsight.evaluate.bootstrap import wilson_interval

    for (k, n), (lo, hi) in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                             (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}.items():
        got = wilson_interval(k, n)
        assert got is not None
        assert (round(got[0], 4), round(got[1], 4)) == (lo, hi), (k, n, got)
    z2 = 1.959963984540054 ** 2
    assert wilson_interval(24, 24) == pytest.approx((24 / (24 + z2), 1.0), abs=1e-12)  # 0.862
    assert wilson_interval(0, 8) == pytest.approx((0.0, z2 / (8 + z2)), abs=1e-12)
    for k, n in [(8, 8), (5, 10), (316, 336), (2, 7)]:
        assert wilson_interval(k, n) == pytest.approx(wilson(k, n), abs=1e-12)
    assert wilson_interval(3, 10, alpha=0.1) == pytest.approx(
        tuple(binomtest(3, 10).proportion_ci(0.9, method="wilson")), abs=1e-12)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="k must lie"):
        wilson_interval(5, 4)


def test_small_n_intervals_on_real_images(evaluated: Path) -> None:
    """The images ``dermsight evaluate`` scored, evaluated with the ``wilson`` method: a 100 %
    proportion has a Wilson lower bound below 1 and ``n`` its cases; the report says "21 of 21".
    With the default method (the card's) the figures are as they were."""
    y, p, groups, classes, meta = _scores(evaluated)
    assert len(y) == 8 * PER_CLASS
    ev = evaluate_predictions(y, p, classes, groups, meta, _settings(WilsonSettings))
    _check_small_n(ev)
    html = render_report({"test": ev})
    assert "1.000 <span class=\"note\">(0.845 to 1.000; 21 of 21, small sample)</span>" in html
    assert "Wilson score interval" in html
    assert "no interval: 200 of the 200 resamples gave 1.000" in html

    card_way = evaluate_predictions(y, p, classes, groups, meta, _settings(EvalSettings))
    assert card_way["ci"]["refer_sensitivity"] == {"value": 1.0, "lo": 1.0, "hi": 1.0,
                                                   "n": N_BOOT}
    # the card's way collapses at 1.0 (every resample refers every malignant case): the report
    # does not print that as an interval but puts the Wilson interval on its k of n, named so
    card_html = render_report({"test": card_way})
    assert "1.000 <span class=\"note\">(1.000 to 1.000)" not in card_html
    assert "the bootstrap gives no interval; Wilson" in card_html


def test_dermsight_evaluate_shows_small_n_intervals(evaluated: Path) -> None:
    """The evaluation JSON and report that ``dermsight evaluate`` writes: of the images the
    gate did not refuse ("cannot assess": left out of the figures, and counted)."""
    ev = json.loads((evaluated / "scores.evaluation.json").read_text(encoding="utf-8"))
    scores = read_output(evaluated / "scores", ["label", "risk"])
    refused = scores[scores["risk"] == "cannot_assess"]
    assert ev["gate_refused"] == {"images": len(refused),
                                  "malignant": int(refused["label"].isin(MALIGNANT).sum())}
    n_malignant = 3 * PER_CLASS - ev["gate_refused"]["malignant"]
    _check_small_n(ev, n_malignant, PER_CLASS - int((refused["label"] == "MEL").sum()))
    html = (evaluated / "scores.report.html").read_text(encoding="utf-8")
    lo = wilson(n_malignant, n_malignant)[0]
    assert f"({lo:.3f} to 1.000; {n_malignant} of {n_malignant}, small sample)" in html
