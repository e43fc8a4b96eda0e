"""The bundle's evaluation report step (``render_report``): the test plots written to
``bundle/plots/`` and the one-file HTML report of the held-out test evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dermsight.evaluate.plots import make_plots
from dermsight.evaluate.report import card_report_extras
from dermsight.evaluate.report import render_report as render_html
from dermsight.predict import softmax
from dermsight.train.config import TrainConfig
from dermsight.train.finalize.calibration import Calibration
from dermsight.train.finalize.evaluation import Evaluation
from dermsight.train.finalize.scoring import Part
from dermsight.train.table import SPLITS


def render_report(cfg: TrainConfig, bundle_dir: Path, test: Part, *, calib: Calibration,
                  offsets: np.ndarray | None, evaluation: Evaluation,
                  sections: dict[str, Any]) -> tuple[str, list[str]]:
    """Write the plots, return the report's HTML and the plot names. ``sections``: the card's
    ``created``, ``intended_use``, ``limitations``, ``data``, ``baseline``, ``training``,
    ``metrics`` and ``natural_frequencies``."""
    classes = list(cfg.data.classes)
    pt, pt_uncal = calib.probs(test.logits), softmax(test.logits, 1.0)
    plots = make_plots(test.labels, pt, classes, probs_uncalibrated=pt_uncal,
                       thresholds={"refer": calib.refer, "monitor": calib.monitor},
                       decision_offsets=offsets, malignant_excluded=calib.excluded)
    (bundle_dir / "plots").mkdir(exist_ok=True)
    for name, png in plots.items():
        (bundle_dir / "plots" / f"{name}.png").write_bytes(png)
    data = sections["data"]
    test_eval, uncal = evaluation.test, evaluation.uncalibrated
    html = render_html({
        "title": "dermsight model evaluation (held-out test split)",
        "model": {"name": cfg.name, "version": cfg.version, "backbone": cfg.model.backbone,
                  "input": f"{cfg.input.size} px", "temperature": round(calib.temperature, 4)},
        "generated": sections["created"],
        "intended_use": sections["intended_use"],
        "data": {
            "summary": {"images used": data["n_images"], "test images": len(test.labels),
                        "test groups": len(set(test.groups(cfg.data.group_col)))},
            "splits": {s: data["by_split"][s]["by_diagnosis"] for s in SPLITS},
            "notes": [f"Group-disjoint split on {_grouping(cfg, data)} (seed "
                      f"{cfg.data.split_seed}); test never used for training, early stopping, "
                      "temperature, thresholds or the gate.",
                      f"Excluded source repos: {', '.join(cfg.data.exclude_source_repos)}"],
        },
        "test": test_eval,
        "baseline": sections["baseline"],
        "calibration": {"temperature": calib.temperature, "fit_on": "validation",
                        "ece_before": uncal["metrics"].get("ece"),
                        "ece_after": test_eval["metrics"].get("ece"),
                        "nll_before": uncal["metrics"].get("nll"),
                        "nll_after": test_eval["metrics"].get("nll")},
        "plots": plots,
        "limitations": sections["limitations"],
        "cross_source": evaluation.cross_source,
        # the thresholds' design sensitivities and the natural frequencies, as from the card
        **card_report_extras({
            "training": sections["training"], "metrics": sections["metrics"],
            "thresholds": {"refer": calib.refer, "monitor": calib.monitor},
            "natural_frequencies": sections["natural_frequencies"]}),
    })
    return html, sorted(plots)


def _grouping(cfg: TrainConfig, data: dict[str, Any]) -> str:
    """The group column the split used: ``data.group_col``, or per data folder where one of
    them had to fall back to its own id column (the card's ``data.group_col_by_folder``)."""
    by_folder = data.get("group_col_by_folder")
    if not by_folder:
        return cfg.data.group_col
    return "each data folder's group column (" + "; ".join(
        f"{root}: {col}" for root, col in by_folder.items()) + ")"
