"""A report of ``dermsight evaluate`` (and ``batch --evaluate``) shows the model card's figures
for the evaluated images — ROC, confusion matrix and risk tiers — as the shipped report does (it
had tables only); a core install without matplotlib says why there are none instead."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli_support import labelled_subset
from dermsight.bundle import default_bundle_path
from dermsight.cli import app as cli_app

PER_CLASS = 4


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
             metadata: pd.DataFrame) -> Path:
    return labelled_subset(tmp_path_factory.mktemp("data") / "labelled", data_dir, metadata,
                           PER_CLASS)


def _report(labelled: Path, out: Path) -> str:
    res = CliRunner().invoke(cli_app, ["evaluate", str(default_bundle_path()), str(labelled),
                                       "--out", str(out)])
    assert res.exit_code == 0, res.output
    return (out / "scores.report.html").read_text(encoding="utf-8")


def test_the_report_shows_the_cards_figures(labelled: Path, tmp_path: Path) -> None:
    html = _report(labelled, tmp_path / "with")
    assert "<h2>Figures</h2>" in html
    figures = re.findall(r'<img[^>]+src="data:image/png;base64,', html)
    assert len(figures) >= 3  # ROC and confusion under Figures, the others in their sections
    assert "need matplotlib" not in html


def test_without_matplotlib_the_report_says_why(labelled: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "dermsight.evaluate.plots", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    html = _report(labelled, tmp_path / "without")
    assert "<h2>Figures</h2>" not in html
    assert "No figures: they need matplotlib" in html
    assert "data:image/png" not in html
