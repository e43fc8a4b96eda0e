"""After training, as named steps: export ONNX with a parity check, then — through the exact
serving path (ONNX Runtime + the shared preprocessing) — ``calibrate`` (temperature, risk
thresholds), ``fit_decision`` and ``fit_gate`` on VALIDATION, ``evaluate_test`` once on the held-out
TEST split, the linear-probe ``baseline``, and ``write_card`` / ``render_report`` (model.onnx,
card.json, gate.npz, report.html, plots/), all in a partial folder that replaces ``RUN/bundle``
in one rename at the end (an interrupted finalize leaves the earlier bundle, or none).

Modules: ``scoring`` (splits, export, serving model, scores), ``calibration``, ``gating``,
``evaluation``, ``baseline``, ``card``, ``report``.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dermsight.bundle import NOT_VALIDATED, RUN_BUNDLE_DIR, staged_bundle
from dermsight.compression import note_limits, survey
from dermsight.evaluate.frequencies import natural_frequencies
from dermsight.preprocess import MetaSpec
from dermsight.train.calibrate import temperature_limitation
from dermsight.train.config import Provenance, TrainConfig
from dermsight.train.finalize.baseline import baseline
from dermsight.train.finalize.calibration import calibrate, fit_decision
from dermsight.train.finalize.card import (
    collapsed_tiers_limitation,
    compression_limitation,
    data_section,
    intended_use,
    licence_section,
    limitations,
    not_validated_limitation,
    thin_figures_limitation,
    training_section,
    validation_concerns,
    withhold_thin_figures,
    write_card,
)
from dermsight.train.finalize.evaluation import evaluate_test
from dermsight.train.finalize.gating import fit_gate
from dermsight.train.finalize.report import render_report
from dermsight.train.finalize.scoring import (
    export_checked,
    load_network,
    load_parts,
    score,
    serving_model,
)
from dermsight.train.loop import DistInfo

__all__ = ["finalize"]


def finalize(cfg: TrainConfig, df: pd.DataFrame, out: Path, info: DistInfo,
             provenance: Provenance | None = None) -> dict[str, Any]:
    """Turn the run in ``out`` (best.pt, logs) into the bundle ``out/bundle``; ``df`` is the
    table with its ``split`` column. Returns (and writes) ``finalize_summary.json``.

    The bundle is built in ``out/bundle.partial-<pid>`` (the provisional bundle finalize scores
    through included) and put at ``out/bundle`` in one rename once it is whole
    (``bundle.staged_bundle``): an interrupted or failed finalize leaves the bundle that was
    there before untouched, or no bundle, never a provisional one."""
    t_start = time.perf_counter()
    provenance = provenance or Provenance.of(cfg.name, out)
    bundle_dir = out / RUN_BUNDLE_DIR
    def note(line: str) -> None:  # what tidying an interrupted run's leftovers did
        print(f"note: {line}", file=sys.stderr, flush=True)

    with staged_bundle(bundle_dir, note) as stage:
        summary = _make_bundle(cfg, df, out, stage, provenance, t_start)
    summary = {"bundle": str(bundle_dir), **summary}
    (out / "finalize_summary.json").write_text(json.dumps(summary, indent=2))
    if summary.get("not_validated"):  # said once the bundle is in place
        print(f"warning: the bundle {bundle_dir} is marked {NOT_VALIDATED!r}: "
              f"{'; '.join(summary['not_validated'])}. Its card says research use only: do not "
              "use it for patients.", file=sys.stderr, flush=True)
    return summary


def _make_bundle(cfg: TrainConfig, df: pd.DataFrame, out: Path, bundle_dir: Path,
                 provenance: Provenance, t_start: float) -> dict[str, Any]:
    """Every finalize step, writing the bundle into ``bundle_dir`` (finalize's partial folder);
    the summary's figures."""
    spec, meta_spec = cfg.input.spec(), MetaSpec()
    parts = load_parts(cfg, df)
    onnx_bytes, parity = export_checked(load_network(cfg, out, meta_spec), spec, meta_spec,
                                        parts["test"])
    model = serving_model(cfg, bundle_dir, onnx_bytes, spec, meta_spec)
    score(model, parts)

    calib = calibrate(cfg, parts["val"])
    decision, decision_fit = fit_decision(cfg, df, calib, parts["val"])
    offsets = decision.offsets(list(cfg.data.classes))
    gate = fit_gate(cfg, model, parts)
    # the compressed note applies only to networks trained on files like those it was measured for
    train_rows = df[df["split"] == "train"]
    files = survey(train_rows["path"])
    gate[0]["quality"] = note_limits(files, gate[0]["quality"])
    evaluation = evaluate_test(
        cfg, model, parts, calib, offsets, provenance=provenance,
        trained_on=sorted(train_rows["source"].astype(str).unique()))
    # headline figures over fewer than MIN_CASES cases on a side are withheld, as for subgroups
    withheld = withhold_thin_figures(evaluation.test)
    for ev in (evaluation.test_argmax, evaluation.uncalibrated, evaluation.validation,
               evaluation.without_metadata, evaluation.external):
        if ev is not None:
            withhold_thin_figures(ev)
    figure_notes = [line for line in (thin_figures_limitation(withheld),
                                      collapsed_tiers_limitation(calib.refer, calib.monitor),
                                      temperature_limitation(calib.temperature,
                                                             len(cfg.data.classes)))
                    if line is not None]
    # a run whose own test figures do not show that it works says so (status, intended use,
    # first limitation) instead of a trained model's decision-support claim
    concerns = validation_concerns(cfg, evaluation.test)
    val = parts["val"]
    extra: dict[str, Any] = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": NOT_VALIDATED if concerns else "trained",
        "metrics": evaluation.metrics_section(parity),
        "baseline": baseline(cfg, parts, calib, offsets),
        "cross_source": evaluation.cross_source,
        "training": training_section(cfg, out, provenance),
        "data": {**data_section(cfg, df), "train_compression": files},
        "intended_use": intended_use(len(cfg.data.classes), validated=not concerns),
        "limitations": [*filter(None, [not_validated_limitation(concerns)]), *limitations(cfg, df),
                        compression_limitation(files, gate[0]["quality"]), *figure_notes],
        "licence": licence_section(cfg, df),
        "natural_frequencies": natural_frequencies(
            calib.malignant_probability(val.logits), calib.is_malignant(val.labels),
            calib.thresholds, val.sources,
            malignant_classes=[calib.classes[i] for i in calib.malignant]),
        "decision_fit": decision_fit,
    }
    html, extra["plots"] = render_report(cfg, bundle_dir, parts["test"], calib=calib,
                                         offsets=offsets, evaluation=evaluation, sections=extra)
    extra["training"]["finalize_seconds"] = round(time.perf_counter() - t_start, 1)
    write_card(cfg, bundle_dir, onnx_bytes, calib=calib, decision=decision, gate=gate,
               extra=extra, report_html=html)
    return {"temperature": calib.temperature, "refer": calib.refer, "monitor": calib.monitor,
            "parity": parity, **({"not_validated": concerns} if concerns else {})}
