"""τ of the logit adjustment fitted on the mean of each validation source's balanced accuracy
instead of the pooled one, on the stored held-out runs ("τ chosen by each validation source's
balanced accuracy" in docs/experiments/README.md; the criterion is
``dermsight.decision.source_mean_balanced_accuracy``, ``calibration.tau_metric: source_mean``).
No training: each run's bundle scores its own
validation split and the held-out clinic (its ``split.csv``; never the test split); τ and the
UNK margin are refitted both ways and compared on the clinic.

    .venv/bin/python docs/experiments/v2.27/tau_by_source.py \
        --run loso-wise-s42=runs/loso-wise-s42-isic2017 ... \
        --out docs/experiments/v2.27/tau_by_source.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight import Dermsight
from dermsight.decision import (
    MIN_SOURCE_CLASS_IMAGES,
    DecisionRule,
    balanced_accuracy_of,
    fit_decision_rule,
    fit_margins,
    source_mean_balanced_accuracy,
)
from dermsight.evaluate.bootstrap import bootstrap
from dermsight.evaluate.metrics import balanced_accuracy
from dermsight.io.decode import decode_image
from dermsight.train.config import TrainConfig, load_config
from dermsight.train.table import load_table, row_meta

CACHE = "tau_by_source_cache.npz"


def _parts(split_csv: Path, cfg: TrainConfig, names: tuple[str, ...]
           ) -> dict[str, pd.DataFrame]:
    """The split's images of each part in ``names``, read through the training loader."""
    split = pd.read_csv(split_csv)
    df = load_table(cfg.data).set_index("image_id")
    return {part: df.loc[split.loc[split["split"] == part, "image_id"]].reset_index()
            for part in names}


def _probs(model: Dermsight, df: pd.DataFrame) -> np.ndarray:
    probs: list[list[float]] = []
    for i in range(0, len(df), 64):
        part = df.iloc[i:i + 64]
        out = model.predict_batch([decode_image(p) for p in part["path"]],
                                  [row_meta(r) for _, r in part.iterrows()])
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
    return np.array(probs)


def _scored(cache: Path | None, model: Dermsight, parts: dict[str, pd.DataFrame]
            ) -> dict[str, np.ndarray]:
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        if all(list(z[f"{k}_ids"]) == list(parts[k]["image_id"]) for k in parts):
            return {k: z[k] for k in parts}
    probs = {k: _probs(model, df) for k, df in parts.items()}
    if cache is not None:
        np.savez_compressed(cache, **probs, **{f"{k}_ids": np.array(df["image_id"], dtype=str)
                                               for k, df in parts.items()})
    return probs


def _per_source(y: np.ndarray, pred: np.ndarray, sources: np.ndarray, n: int) -> dict[str, float]:
    return {s: round(balanced_accuracy_of(y[sources == s], pred[sources == s], n), 4)
            for s in sorted(set(sources))}


def _clinic(y: np.ndarray, p: np.ndarray, groups: np.ndarray, classes: list[str],
            rules: dict[str, DecisionRule]) -> dict[str, Any]:
    off = {k: r.offsets(classes) for k, r in rules.items()}

    def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        a = {k: balanced_accuracy(y, p, w, o) for k, o in off.items()}
        return {**a, "difference": a["by_source"] - a["pooled"]}  # type: ignore[operator]

    ci = bootstrap(fn, len(y), groups, n_boot=1000, seed=0)
    present = sorted(set(y))
    out: dict[str, Any] = {"balanced_accuracy": {k: {kk: None if vv is None else round(vv, 4)
                                                     for kk, vv in v.items()}
                                                 for k, v in ci.items()}}
    for k, r in rules.items():
        pred = r.choose(p, classes)
        out[k] = {"recall": {classes[c]: round(float(np.mean(pred[y == c] == c)), 4)
                             for c in present},
                  "share_UNK": round(float(np.mean(pred == classes.index("UNK"))), 4),
                  "share_absent_class": round(float(np.mean(~np.isin(pred, present))), 4)}
    return out


@dataclass
class Scored:
    """One stored run's bundle, card, config and calibrated probabilities on its validation and
    held-out images, with the labels as class indices."""

    card: dict[str, Any]
    cfg: TrainConfig
    classes: list[str]
    parts: dict[str, pd.DataFrame]
    probs: dict[str, np.ndarray]

    @property
    def prior(self) -> dict[str, float]:
        return dict(self.card["decision"]["prior"])

    def labels(self, part: str) -> npt.NDArray[np.int64]:
        return np.array([self.classes.index(c) for c in self.parts[part]["diagnosis"]], np.int64)

    def refit(self, sources: npt.NDArray[np.str_] | None,
              min_class_images: int = MIN_SOURCE_CLASS_IMAGES
              ) -> tuple[DecisionRule, dict[str, float]]:
        """τ on validation (pooled, or by source), then the UNK margin as the trainer fits it."""
        p, y = self.probs["val"], self.labels("val")
        rule, curve = fit_decision_rule(p, y, self.classes, self.prior, sources=sources,
                                        min_class_images=min_class_images)
        margin_classes = [c for c in self.cfg.calibration.margin_classes
                          if self.prior.get(c, 0.0) > 0]
        if margin_classes:
            rule, _ = fit_margins(rule, p, y, self.classes, margin_classes,
                                  self.cfg.calibration.margin_tolerance)
        return rule, curve


    def summary(self, rule: DecisionRule) -> dict[str, Any]:
        """The rule and its validation figures: pooled, mean over sources, per source."""
        y, n = self.labels("val"), len(self.classes)
        sources = self.parts["val"]["source"].to_numpy(str)
        pred = rule.choose(self.probs["val"], self.classes)
        return {"tau": rule.tau, "margins": rule.active_margins,
                "val_balanced_accuracy": round(balanced_accuracy_of(y, pred, n), 4),
                "val_source_mean": round(source_mean_balanced_accuracy(y, pred, sources, n), 4),
                "val_by_source": _per_source(y, pred, sources, n)}


def load(bundle: Path, config: Path, split_csv: Path, cache: Path | None,
         names: tuple[str, ...] = ("val", "external")) -> Scored:
    """A bundle scored on the parts ``names`` of a split (probabilities cached in ``cache``)."""
    model = Dermsight.load(bundle)
    card = json.loads((bundle / "card.json").read_text(encoding="utf-8"))
    cfg = load_config(config)
    parts = _parts(split_csv, cfg, names)
    return Scored(card, cfg, list(model.classes), parts, _scored(cache, model, parts))


def load_run(run: Path) -> Scored:
    """A stored run: its bundle on its own validation and held-out images."""
    return load(run / "bundle", run / "config.json", run / "split.csv", run / CACHE)


def analyse(run: Path) -> dict[str, Any]:
    s = load_run(run)
    sv = s.parts["val"]["source"].to_numpy(str)
    rules: dict[str, DecisionRule] = {}
    curves: dict[str, Any] = {}
    rules["pooled"], curves["pooled"] = s.refit(None)
    rules["by_source"], curves["by_source"] = s.refit(sv)
    ext = s.parts["external"]
    clinic = _clinic(s.labels("external"), s.probs["external"], ext["group_id"].to_numpy(str),
                     s.classes, rules)
    card_row = next(r for r in s.card["cross_source"]["rows"]
                    if r["protocol"] == "leave_one_source_out")["metrics"]
    doc: dict[str, Any] = {
        "card": {"tau": s.card["decision"]["tau"], "margins": s.card["decision"].get("margins"),
                 "clinic_balanced_accuracy": round(card_row["balanced_accuracy"]["value"], 4)},
        "val_curves": curves, "clinic": clinic}
    for name, rule in rules.items():
        doc[name] = s.summary(rule)
    return doc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    doc: dict[str, Any] = {"min_class_images": MIN_SOURCE_CLASS_IMAGES, "runs": {}}
    for spec in args.run:
        name, run = spec.split("=", 1)
        r = analyse(Path(run))
        doc["runs"][name] = r
        ba = r["clinic"]["balanced_accuracy"]
        print(name, "card", r["card"], "| pooled", r["pooled"]["tau"], ba["pooled"]["value"],
              "| by_source", r["by_source"]["tau"], ba["by_source"]["value"],
              "| diff", ba["difference"], flush=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
