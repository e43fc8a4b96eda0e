"""Evaluation figures as PNG bytes (matplotlib, Agg canvas; no pyplot global state).

Every function returns the PNG file's bytes, ready for :func:`dermsight.evaluate.report.
render_report` (``results["plots"]``) or for writing to disk.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dermsight.evaluate.metrics import (
    ECE_BINS,
    Offsets,
    binary_auc,
    confusion_counts,
    malignant_scores,
    reliability_bins,
    roc_curve,
    validate_inputs,
)
from dermsight.taxonomy import MALIGNANT

__all__ = [
    "confusion_matrix_png",
    "make_plots",
    "reliability_png",
    "risk_tier_png",
    "roc_curves_png",
]

_DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return buf.getvalue()


def roc_curves_png(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    include_malignant: bool = True,
    malignant_excluded: Sequence[str] = (),
) -> bytes:
    """One-vs-rest ROC curve per class present (AUC in the legend) + the malignant curve."""
    classes = list(classes)
    y, p, _ = validate_inputs(y_true, probs, classes)
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls=":")
    for j, code in enumerate(classes):
        curve = roc_curve(y == j, p[:, j])
        if curve is None:
            continue
        auc = binary_auc(y == j, p[:, j])
        ax.plot(curve[0], curve[1], lw=1.4, label=f"{code} (AUC {auc:.3f}, n={(y == j).sum()})")
    mal_score = malignant_scores(p, classes, malignant_excluded) if include_malignant else None
    if mal_score is not None:
        mal = np.isin(y, [j for j, c in enumerate(classes) if c in MALIGNANT])
        curve = roc_curve(mal, mal_score)
        if curve is not None:
            auc = binary_auc(mal, mal_score)
            ax.plot(curve[0], curve[1], lw=2.4, color="black", ls="--",
                    label=f"malignant (AUC {auc:.3f}, n={mal.sum()})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title("ROC curves, one-vs-rest")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def confusion_matrix_png(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, classes: Sequence[str],
    offsets: Offsets = None,
) -> bytes:
    """Row-normalised confusion matrix (the bundle's decision rule: arg-max, or arg-max after
    ``offsets``), each cell annotated with fraction and count."""
    classes = list(classes)
    y, p, _ = validate_inputs(y_true, probs, classes)
    # tied (undecided) rows are left out of the cells
    counts = confusion_counts(y, p, offsets=offsets)[:, :-1]
    support = np.bincount(y, minlength=len(classes)).astype(np.float64)
    frac = np.divide(counts, support[:, None], out=np.zeros_like(counts),
                     where=support[:, None] > 0)
    size = 1.0 + 0.7 * len(classes)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    for i in range(len(classes)):
        for j in range(len(classes)):
            color = "white" if frac[i, j] > 0.6 else "black"
            ax.text(j, i, f"{frac[i, j]:.2f}\n{int(counts[i, j])}", ha="center", va="center",
                    fontsize=7, color=color)
    ax.set_xticks(range(len(classes)), classes, rotation=45)
    ax.set_yticks(range(len(classes)), [f"{c} ({int(n)})" for c, n in zip(classes, support,
                                                                         strict=True)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (n)")
    ax.set_title("Confusion matrix (row-normalised)")
    return _png(fig)


def reliability_png(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    probs_uncalibrated: npt.ArrayLike | None = None,
    n_bins: int = ECE_BINS,
) -> bytes:
    """Reliability diagram on top-class confidence; before/after temperature when both given."""
    y = np.asarray(y_true, dtype=np.int64)
    series: list[tuple[str, npt.ArrayLike]] = []
    if probs_uncalibrated is not None:
        series.append(("before temperature", probs_uncalibrated))
    series.append(("after temperature" if probs_uncalibrated is not None else "model", probs))
    fig = Figure(figsize=(6.4, 6.4))
    ax, ax_hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="perfect calibration")
    width = 1.0 / n_bins
    for k, (label, pr) in enumerate(series):
        bins = reliability_bins(y, pr, n_bins)
        centers = np.asarray(bins["edges"][:-1]) + width / 2
        conf = [np.nan if v is None else v for v in bins["confidence"]]
        acc = [np.nan if v is None else v for v in bins["accuracy"]]
        ece = bins["ece"]
        ax.plot(conf, acc, marker="o", lw=1.5, label=f"{label} (ECE {ece:.3f})")
        offset = (k - (len(series) - 1) / 2) * width / len(series)
        ax_hist.bar(centers + offset, bins["count"], width=width / len(series), alpha=0.7,
                    label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability ({n_bins} equal-width bins, top-class confidence)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax_hist.set_xlabel("confidence")
    ax_hist.set_ylabel("count")
    return _png(fig)


def risk_tier_png(
    p_malignant: npt.ArrayLike,
    is_malignant: npt.ArrayLike,
    refer: float,
    monitor: float | None = None,
) -> bytes:
    """Items per risk tier (low / moderate / high), split into benign and malignant truth."""
    p = np.asarray(p_malignant, dtype=np.float64)
    mal = np.asarray(is_malignant).astype(bool)
    tier = np.zeros(p.shape[0], dtype=np.int64)
    if monitor is not None:
        tier[p >= monitor] = 1
    tier[p >= refer] = 2
    names = ["low", "moderate", "high"] if monitor is not None else ["low", "", "high"]
    idx = [0, 1, 2] if monitor is not None else [0, 2]
    benign = [int(((tier == t) & ~mal).sum()) for t in idx]
    malig = [int(((tier == t) & mal).sum()) for t in idx]
    labels = [names[t] for t in idx]
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    x = np.arange(len(idx))
    ax.bar(x, benign, color="#8fb3d9", label="benign")
    ax.bar(x, malig, bottom=benign, color="#c0392b", label="malignant")
    for xi, b, m in zip(x, benign, malig, strict=True):
        share = m / (b + m) if b + m else 0.0
        ax.text(float(xi), b + m, f"{b + m} ({share:.0%} malignant)", ha="center",
                va="bottom", fontsize=8)
    ax.set_xticks(x, labels)
    ax.set_ylabel("items")
    thr = f"refer ≥ {refer:.3f}" + (
        f", monitor ≥ {monitor:.3f}" if monitor is not None else "")
    ax.set_title(f"Risk tiers on P(malignant) ({thr})")
    ax.set_ylim(0, max(1, max(b + m for b, m in zip(benign, malig, strict=True))) * 1.12)
    ax.legend()
    return _png(fig)


def make_plots(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    classes: Sequence[str],
    probs_uncalibrated: npt.ArrayLike | None = None,
    thresholds: Mapping[str, float] | None = None,
    decision_offsets: Offsets = None,
    *,
    malignant_excluded: Sequence[str] = (),
) -> dict[str, bytes]:
    """All standard figures: ``roc``, ``confusion``, ``reliability`` and (with ``thresholds``
    holding ``refer`` and optionally ``monitor``) ``risk_tiers``."""
    classes = list(classes)
    y, p, _ = validate_inputs(y_true, probs, classes)
    plots = {
        "roc": roc_curves_png(y, p, classes, malignant_excluded=malignant_excluded),
        "confusion": confusion_matrix_png(y, p, classes, decision_offsets),
        "reliability": reliability_png(y, p, probs_uncalibrated),
    }
    mal_score = malignant_scores(p, classes, malignant_excluded)
    if thresholds and "refer" in thresholds and mal_score is not None:
        mal = np.isin(y, [j for j, c in enumerate(classes) if c in MALIGNANT])
        plots["risk_tiers"] = risk_tier_png(
            mal_score, mal, thresholds["refer"], thresholds.get("monitor")
        )
    return plots
