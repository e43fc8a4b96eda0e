"""The "cannot assess" gate step (``fit_gate``): gate v1 (deep-kNN on pooled features, threshold
on validation, quality checks) measured on dermoscopic test images against an offline
non-dermoscopic set (``measure_gate``), then gate v2 (outlier exposure, ``gate_refit``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dermsight import gate as gate_mod
from dermsight.predict import Dermsight
from dermsight.train.calibrate import fit_gate as fit_knn_gate
from dermsight.train.config import TrainConfig
from dermsight.train.finalize.scoring import Part, infer

#: validation percentiles of each image-quality statistic recorded on the card
QUALITY_PERCENTILES = (0.5, 50, 99.5)


def fit_gate(cfg: TrainConfig, model: Dermsight, parts: dict[str, Part]
             ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The card's ``gate`` section and the arrays of ``gate.npz``."""
    gate_cfg, arrays = fit_knn_gate(parts["train"].embedding, parts["val"].embedding,
                                    cfg.calibration.gate_false_reject, seed=cfg.seed)
    quality = np.array([gate_mod.quality_stats(im).as_vector() for im in parts["val"].images])
    gate_cfg["val_quality_percentiles"] = {
        name: [float(np.percentile(quality[:, i], q)) for q in QUALITY_PERCENTILES]
        for i, name in enumerate(["mean", "std", "clipped", "sharpness", "saturation"])
    }
    gate_cfg["quality"] = dict(gate_mod.DEFAULT_GATE)
    test = parts["test"]
    gate_cfg["evaluation"] = measure_gate(model, gate_cfg, arrays, test.images, test.embedding,
                                          cfg.seed)
    # gate v2: outlier exposure on offline non-dermoscopic images of many kinds, threshold on
    # validation; measured on held-out kinds of images and on test images per source
    from dermsight.train.gate_refit import fit_for_run

    v2_cfg, v2_arrays, v2_eval = fit_for_run(model, gate_cfg, arrays, parts["train"],
                                             parts["val"], test, seed=cfg.seed)
    gate_cfg["v1_evaluation"] = gate_cfg.pop("evaluation")
    gate_cfg.update(v2_cfg)
    gate_cfg["v2_evaluation"] = v2_eval
    arrays.update(v2_arrays)
    return gate_cfg, arrays


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
    res = infer(model, ood_imgs, [None] * len(ood_imgs), bs=16, desc="score OOD set")
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
