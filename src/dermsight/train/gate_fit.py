"""Fit and measure the "cannot assess" gate v2 (numpy + scikit-learn; no torch).

Gate v2 = the quality checks + a logistic regression "not dermoscopic" head on the model's own
features (the pooled embedding, the deep-kNN score of gate v1 and five image statistics),
fitted with outlier exposure: dermoscopic TRAINING images against many kinds of non-dermoscopic
images (``dermsight.evaluate.negatives``). Its threshold is set on VALIDATION dermoscopic images
only. A second head, dermoscopic vs simulated clinical skin photos, gives the non-blocking
"not a dermoscopic image" flag; a third, dermoscopic vs recoloured dermoscopic copies (sepia,
tinted black and white, swapped channels, negative), blocks them as ``recoloured`` (kept apart
from the first head: as one of its negatives they cost it natural photos, docs/experiments,
"Sepia-toned and other recoloured images"). The fitted heads are stored as plain arrays
(``gate.npz``) and scored with numpy at serving time (``dermsight.gate.v2_logit`` in
``ood_flags``), so serving needs no sklearn.

``measure_gate_v2`` refits the gate once per negative category without that category
(leave-one-category-out) to measure false accepts on kinds of images the gate never saw, and
measures false rejects of dermoscopic TEST images per source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dermsight import gate as gate_mod
from dermsight.evaluate.negatives import CLINICAL, RECOLOURED, Negative
from dermsight.preprocess import encode_meta, preprocess

if TYPE_CHECKING:
    from dermsight.predict import Dermsight
    from dermsight.records import Metadata

#: Validation false-reject rate the blocking threshold is set for, and the one of the
#: (non-blocking) clinical-photo flag.
FALSE_REJECT = 0.01
CLINICAL_FLAG_RATE = 0.02
#: validation false-reject rate of the recoloured-image head's threshold
RECOLOURED_REJECT = 0.005
#: Inverse regularisation strength of both logistic regressions (fixed before measuring).
C_REG = 0.05


@dataclass
class GateFeatures:
    """What the gate sees of a set of images (rows line up)."""

    embedding: np.ndarray  # (N, D) pooled features
    quality: np.ndarray  # (N, 5) gate.QualityStats.as_vector()
    quality_blocked: np.ndarray  # (N,) bool: a blocking quality flag fired
    logits: np.ndarray | None = None  # (N, C) class logits (with the metadata given)

    def subset(self, idx: np.ndarray) -> GateFeatures:
        return GateFeatures(self.embedding[idx], self.quality[idx], self.quality_blocked[idx],
                            None if self.logits is None else self.logits[idx])

    @staticmethod
    def concat(parts: Sequence[GateFeatures]) -> GateFeatures:
        logits = None if any(p.logits is None for p in parts) else np.concatenate(
            [p.logits for p in parts if p.logits is not None])
        return GateFeatures(np.concatenate([p.embedding for p in parts]),
                            np.concatenate([p.quality for p in parts]),
                            np.concatenate([p.quality_blocked for p in parts]), logits)

    def save(self, path: Any) -> None:
        arrays = {"embedding": self.embedding, "quality": self.quality,
                  "quality_blocked": self.quality_blocked}
        if self.logits is not None:
            arrays["logits"] = self.logits
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @staticmethod
    def load(path: Any) -> GateFeatures:
        with np.load(path) as z:
            return GateFeatures(z["embedding"], z["quality"], z["quality_blocked"],
                                z.get("logits", None))


def gate_features(model: Dermsight, images: Sequence[np.ndarray],
                  metas: Sequence[Metadata | None] | None = None, bs: int = 32,
                  done: Callable[[int], Any] | None = None) -> GateFeatures:
    """Run the serving path (preprocess + ONNX Runtime) and the quality checks over images;
    ``done(n)`` after each batch of ``n`` (a progress bar's ``update``)."""
    metas = list(metas) if metas is not None else [None] * len(images)
    emb, logits, qual, blocked = [], [], [], []
    for i in range(0, len(images), bs):
        chunk = images[i : i + bs]
        x = np.stack([preprocess(im, model.card.input_spec) for im in chunk])
        m = np.stack([encode_meta(mt, model.card.meta_spec) for mt in metas[i : i + bs]])
        out = model.run_arrays(x, m)
        emb.append(out["embedding"])
        logits.append(out["logits"])
        for im in chunk:
            stats = gate_mod.quality_stats(im)
            qual.append(stats.as_vector())
            flags = gate_mod.quality_flags(stats, model.card.gate)
            blocked.append(any(f.blocking for f in flags))
        if done is not None:
            done(len(chunk))
    return GateFeatures(np.concatenate(emb).astype(np.float32), np.array(qual, np.float64),
                        np.array(blocked, bool), np.concatenate(logits))


def features_from(images: Sequence[np.ndarray], embedding: np.ndarray,
                  gate_cfg: dict[str, Any], logits: np.ndarray | None = None) -> GateFeatures:
    """GateFeatures from embeddings already computed (e.g. in finalize) plus the images."""
    qual, blocked = [], []
    for im in images:
        stats = gate_mod.quality_stats(im)
        qual.append(stats.as_vector())
        blocked.append(any(f.blocking for f in gate_mod.quality_flags(stats, gate_cfg)))
    return GateFeatures(np.asarray(embedding, np.float32), np.array(qual, np.float64),
                        np.array(blocked, bool), logits)


def knn_scores(emb: np.ndarray, arrays: dict[str, np.ndarray], exclude_self: bool = False
               ) -> np.ndarray:
    """Gate v1's deep-kNN score; with ``exclude_self``, an image that is itself in the bank
    (cosine > 0.9999) is scored against the others (training images used to fit the head)."""
    if not exclude_self:
        return gate_mod.ood_score(emb, arrays)
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sims = e.astype(np.float32) @ arrays["bank"].astype(np.float32).T
    sims[sims > 0.9999] = -1.0
    k = int(arrays["k"])
    return (1.0 - np.partition(sims, sims.shape[1] - k, axis=1)[:, sims.shape[1] - k]
            ).astype(np.float64)


def _design(f: GateFeatures, knn: np.ndarray) -> np.ndarray:
    return gate_mod.v2_inputs(f.embedding, knn, f.quality)


@dataclass(frozen=True)
class GateFitSet:
    """What gate v2 is fitted on: the dermoscopic training and validation images' features (with
    each image's source, or None: every image weighs the same) and the non-dermoscopic images'
    features with each one's kind (``categories``)."""

    train: GateFeatures
    val: GateFeatures
    negatives: GateFeatures
    categories: Sequence[str]
    train_sources: Sequence[str] | None = None
    val_sources: Sequence[str] | None = None

    def negatives_at(self, idx: np.ndarray) -> GateFitSet:
        """The same set with only the negatives ``idx`` (a kind or some pictures left out)."""
        return replace(self, negatives=self.negatives.subset(idx),
                       categories=np.asarray(self.categories)[idx].tolist())

    def without_source(self, source: str) -> GateFitSet:
        """The same set without one source's training and validation images."""
        if self.train_sources is None or self.val_sources is None:
            raise ValueError("without_source needs the training and validation sources")
        ts, vs = np.asarray(self.train_sources), np.asarray(self.val_sources)
        ti, vi = np.flatnonzero(ts != source), np.flatnonzero(vs != source)
        return replace(self, train=self.train.subset(ti), val=self.val.subset(vi),
                       train_sources=ts[ti].tolist(), val_sources=vs[vi].tolist())


@dataclass
class _Head:
    w: np.ndarray
    b: float


def source_weights(sources: Sequence[str] | None, n: int) -> np.ndarray:
    """Weights giving every source the same total weight (mean 1); all 1 without sources."""
    if sources is None:
        return np.ones(n)
    src = np.asarray(sources)
    _names, inverse, counts = np.unique(src, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w * (n / w.sum())


def weighted_quantile(values: np.ndarray, q: float, weights: np.ndarray) -> float:
    """The smallest value v with (weighted) P(X <= v) >= q."""
    order = np.argsort(values)
    cum = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][min(int(np.searchsorted(cum, q)), len(values) - 1)])


def _fit_head(x_pos: np.ndarray, x_neg: np.ndarray, mean: np.ndarray, scale: np.ndarray,
              seed: int, pos_weight: np.ndarray | None = None) -> _Head:
    """Logistic regression: non-dermoscopic (1) vs dermoscopic (0); the two classes weigh the
    same in total, and within the dermoscopic class each source weighs the same."""
    from sklearn.linear_model import LogisticRegression

    x = (np.concatenate([x_pos, x_neg]) - mean) / scale
    y = np.r_[np.zeros(len(x_pos)), np.ones(len(x_neg))]
    wp = np.ones(len(x_pos)) if pos_weight is None else pos_weight
    w = np.r_[wp / wp.sum(), np.full(len(x_neg), 1.0 / len(x_neg))] * (len(y) / 2)
    clf = LogisticRegression(C=C_REG, max_iter=3000, random_state=seed)
    clf.fit(x, y, sample_weight=w)
    return _Head(clf.coef_[0].astype(np.float64), float(clf.intercept_[0]))


def fit_gate_v2_features(
    v1_arrays: dict[str, np.ndarray], fit: GateFitSet, *, seed: int = 0,
    false_reject: float = FALSE_REJECT, clinical_rate: float = CLINICAL_FLAG_RATE,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fit gate v2 from precomputed features (``fit``).

    Returns the card's ``gate`` entries for v2 and the arrays to add to ``gate.npz``.
    The blocking head is fitted on every category except the clinical proxy; the clinical head
    (when there are clinical proxies) on the proxies alone. Thresholds: the ``1 - false_reject``
    and ``1 - clinical_rate`` quantiles of the validation images' scores. With sources given,
    every dermoscopic source weighs the same, in the fit and in the quantiles (so a small source
    is not sacrificed to the largest one).
    """
    train, val, negatives = fit.train, fit.val, fit.negatives
    train_sources, val_sources = fit.train_sources, fit.val_sources
    cats = np.asarray(fit.categories)
    x_tr = _design(train, knn_scores(train.embedding, v1_arrays, exclude_self=True))
    x_val = _design(val, knn_scores(val.embedding, v1_arrays))
    x_neg = _design(negatives, knn_scores(negatives.embedding, v1_arrays))
    mean = x_tr.mean(axis=0)
    scale = np.maximum(x_tr.std(axis=0), 1e-6)
    block_neg = x_neg[(cats != CLINICAL) & (cats != RECOLOURED)]
    if len(block_neg) == 0:
        raise ValueError("gate v2 needs non-dermoscopic images other than clinical proxies and "
                         "recoloured copies")
    w_tr = source_weights(train_sources, len(x_tr))
    head = _fit_head(x_tr, block_neg, mean, scale, seed, w_tr)
    arrays: dict[str, np.ndarray] = {
        "v2_mean": mean.astype(np.float32), "v2_scale": scale.astype(np.float32),
        "v2_w": head.w.astype(np.float32), "v2_b": np.array(head.b),
    }
    val_block = gate_mod.v2_logit(x_val, arrays, "v2")
    val_ok = ~val.quality_blocked
    w_val = source_weights(val_sources, len(x_val))[val_ok]
    cfg: dict[str, Any] = {
        "v2_threshold": weighted_quantile(val_block[val_ok], 1 - false_reject, w_val),
    }
    clin = x_neg[cats == CLINICAL]
    if len(clin):
        chead = _fit_head(x_tr, clin, mean, scale, seed, w_tr)
        arrays["v2c_w"], arrays["v2c_b"] = chead.w.astype(np.float32), np.array(chead.b)
        val_clin = gate_mod.v2_logit(x_val, arrays, "v2c")
        cfg["v2_clinical_threshold"] = weighted_quantile(val_clin[val_ok], 1 - clinical_rate,
                                                         w_val)
    recol = x_neg[cats == RECOLOURED]
    if len(recol):
        rhead = _fit_head(x_tr, recol, mean, scale, seed, w_tr)
        arrays["v2r_w"], arrays["v2r_b"] = rhead.w.astype(np.float32), np.array(rhead.b)
        val_recol = gate_mod.v2_logit(x_val, arrays, "v2r")
        cfg["v2_recoloured_threshold"] = weighted_quantile(
            val_recol[val_ok], 1 - RECOLOURED_REJECT, w_val)
    n_src = "" if train_sources is None else f" of {len(set(train_sources))} sources"
    weighting = "" if train_sources is None else ", sources weighted equally"
    kinds = len(set(cats[(cats != CLINICAL) & (cats != RECOLOURED)].tolist()))
    cfg["v2_fit"] = (
        f"logistic regression (C={C_REG}, the two classes weighted equally{weighting}) on "
        f"standardised [pooled features, kNN score, 5 image statistics]: {len(x_tr)} "
        f"dermoscopic training images{n_src} vs {len(block_neg)} non-dermoscopic images of "
        f"{kinds} kinds; threshold = {100 * (1 - false_reject):.1f}th percentile of "
        f"{int(val_ok.sum())} validation images{weighting}; clinical-photo flag: a second head "
        f"vs {len(clin)} simulated clinical skin photos, flagging "
        f"{100 * clinical_rate:.0f} % of validation images"
        + (f"; recoloured-image head: a third head vs {len(recol)} recoloured dermoscopic "
           f"copies, blocking above the {100 * (1 - RECOLOURED_REJECT):.1f}th percentile of "
           "validation images" if len(recol) else "")
    )
    return cfg, arrays


def fit_gate_v2(
    model: Dermsight, dermo_train: Sequence[np.ndarray], dermo_val: Sequence[np.ndarray],
    negatives: Sequence[Negative], *, seed: int = 0, train_sources: Sequence[str] | None = None,
    val_sources: Sequence[str] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Gate v2 for ``model`` from images: its gate v1 (``model.bundle.gate_arrays``: the kNN
    bank) must already be fitted. Returns ``(cfg, arrays)`` to merge into the bundle's gate."""
    feats = [gate_features(model, list(s)) for s in
             (dermo_train, dermo_val, [n.image for n in negatives])]
    fit = GateFitSet(feats[0], feats[1], feats[2], [n.category for n in negatives],
                     train_sources=train_sources, val_sources=val_sources)
    return fit_gate_v2_features(model.bundle.gate_arrays, fit, seed=seed)


def decisions(cfg: dict[str, Any], arrays: dict[str, np.ndarray], f: GateFeatures,
              v1_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(blocked, clinical-flagged) per image, as the serving path decides them."""
    knn = knn_scores(f.embedding, arrays)
    if v1_only:
        return f.quality_blocked | (knn > float(cfg["ood_threshold"])), np.zeros(len(knn), bool)
    x = _design(f, knn)
    blocked = f.quality_blocked | (gate_mod.v2_logit(x, arrays, "v2") > cfg["v2_threshold"])
    if "v2r_w" in arrays:
        blocked |= gate_mod.v2_logit(x, arrays, "v2r") > cfg["v2_recoloured_threshold"]
    if "v2c_w" in arrays:
        clin = ~blocked & (gate_mod.v2_logit(x, arrays, "v2c") > cfg["v2_clinical_threshold"])
    else:
        clin = np.zeros(len(knn), bool)
    return blocked, clin


def _rate(mask: np.ndarray) -> dict[str, Any]:
    return {"n": int(len(mask)), "k": int(mask.sum()),
            "rate": float(mask.mean()) if len(mask) else None}


def measure_gate_v2(
    v1_cfg: dict[str, Any], v1_arrays: dict[str, np.ndarray], fit: GateFitSet,
    test_by_source: dict[str, GateFeatures], *, fresh_clinical: GateFeatures | None = None,
    seed: int = 0, groups: Sequence[str] | None = None, folds: int = 4,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """Fit gate v2 on everything, then measure it honestly.

    * held-out kinds: for each negative category, refit without it and count how many of its
      images the refitted gate lets through (false accepts);
    * false rejects of dermoscopic test images per source, with the final gate;
    * with ``groups`` (the source picture of each negative): new pictures of kinds the gate has
      seen, by grouped ``folds``-fold cross-fitting (no picture's views on both sides);
    * the clinical-photo flag on ``fresh_clinical`` (proxies made from images not used to fit);
    * the same figures for gate v1 (kNN + quality), for comparison.
    Returns (cfg, arrays, evaluation).
    """
    cats = np.asarray(fit.categories)
    negatives = fit.negatives
    cfg, arrays = fit_gate_v2_features(v1_arrays, fit, seed=seed)
    full_cfg, full_arrays = {**v1_cfg, **cfg}, {**v1_arrays, **arrays}
    held_out: dict[str, Any] = {}
    v1_fa: dict[str, Any] = {}
    for c in sorted(set(cats.tolist())):
        keep = cats != c
        if not np.any(keep & (cats != CLINICAL)):
            continue
        c_cfg, c_arrays = fit_gate_v2_features(
            v1_arrays, fit.negatives_at(np.flatnonzero(keep)), seed=seed)
        part = negatives.subset(np.flatnonzero(cats == c))
        blocked, clin = decisions({**v1_cfg, **c_cfg}, {**v1_arrays, **c_arrays}, part)
        held_out[c] = {"false_accept": _rate(~blocked), "accepted_without_any_flag":
                       _rate(~blocked & ~clin)}
        v1_fa[c] = _rate(~decisions(v1_cfg, v1_arrays, part, v1_only=True)[0])
    new_pictures: dict[str, Any] = {}
    if groups is not None:
        names, gidx = np.unique(np.asarray(groups), return_inverse=True)
        fold_of = np.random.default_rng(seed).permutation(len(names))[gidx] % folds
        blocked_cv = np.zeros(len(cats), bool)
        clin_cv = np.zeros(len(cats), bool)
        for k in range(folds):
            out = fold_of == k
            k_cfg, k_arrays = fit_gate_v2_features(
                v1_arrays, fit.negatives_at(np.flatnonzero(~out)), seed=seed)
            b_k, c_k = decisions({**v1_cfg, **k_cfg}, {**v1_arrays, **k_arrays},
                                 negatives.subset(np.flatnonzero(out)))
            blocked_cv[out], clin_cv[out] = b_k, c_k
        for c in sorted(set(cats.tolist())):
            m = cats == c
            new_pictures[c] = {"false_accept": _rate(~blocked_cv[m]),
                               "accepted_without_any_flag": _rate(~blocked_cv[m] & ~clin_cv[m])}
    fr: dict[str, Any] = {}
    fr_v1: dict[str, Any] = {}
    clin_on_dermo: dict[str, Any] = {}
    for src, f in test_by_source.items():
        blocked, clin = decisions(full_cfg, full_arrays, f)
        fr[src] = _rate(blocked)
        clin_on_dermo[src] = _rate(clin)
        fr_v1[src] = _rate(decisions(v1_cfg, v1_arrays, f, v1_only=True)[0])
    ev: dict[str, Any] = {
        "held_out_false_accept": held_out,
        "new_pictures_false_accept": new_pictures,
        "false_reject_test": fr,
        "clinical_flag_on_dermoscopic_test": clin_on_dermo,
        "v1_false_accept": v1_fa,
        "v1_false_reject_test": fr_v1,
    }
    if fresh_clinical is not None:
        blocked, clin = decisions(full_cfg, full_arrays, fresh_clinical)
        ev["clinical_proxy_fresh"] = {"blocked": _rate(blocked), "flagged": _rate(clin),
                                      "neither": _rate(~blocked & ~clin)}
    return cfg, arrays, ev


def dermoscope_variation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random view of a dermoscopic image as another dermatoscope/camera might give it:
    colour cast, gamma, saturation, blur, JPEG, a circular field of view or a zoom out with a
    dark border, a zoom in, flips. Used to widen the dermoscopic side of the gate's fit so that
    a new source's images are not refused for their colour or framing."""
    import io

    from PIL import Image, ImageFilter

    pil = Image.fromarray(np.ascontiguousarray(img))
    s = min(pil.size)
    if rng.random() < 0.3:  # zoom in
        f = rng.uniform(0.6, 0.9)
        c = int(s * f)
        x0 = int(rng.integers(0, pil.size[0] - c + 1))
        y0 = int(rng.integers(0, pil.size[1] - c + 1))
        pil = pil.crop((x0, y0, x0 + c, y0 + c))
    elif rng.random() < 0.3:  # zoom out with a dark border
        f = rng.uniform(0.6, 0.9)
        small = pil.resize((max(1, int(pil.size[0] * f)), max(1, int(pil.size[1] * f))))
        canvas = Image.new("RGB", pil.size, (int(rng.integers(0, 25)),) * 3)
        canvas.paste(small, ((pil.size[0] - small.size[0]) // 2,
                             (pil.size[1] - small.size[1]) // 2))
        pil = canvas
    if rng.random() < 0.5:
        pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.25:
        pil = pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
    if rng.random() < 0.3:
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(rng.integers(40, 90)))
        pil = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    x = np.asarray(pil, np.float32)
    x = x * rng.uniform(0.8, 1.2, 3).astype(np.float32)  # colour cast / white balance
    if rng.random() < 0.5:
        x = 255.0 * np.power(np.clip(x, 0, 255) / 255.0, float(np.exp(rng.uniform(-0.4, 0.4))))
    if rng.random() < 0.4:  # saturation
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * float(rng.uniform(0.6, 1.4))
    if rng.random() < 0.3:  # circular field of view, dark outside
        h, w = x.shape[:2]
        r = rng.uniform(0.45, 0.7) * min(h, w)
        yy, xx = np.mgrid[0:h, 0:w]
        mask = np.clip((r - np.hypot(yy - h / 2, xx - w / 2)) / (0.04 * min(h, w)) + 0.5, 0, 1)
        x = x * mask[:, :, None] + (1 - mask[:, :, None]) * float(rng.uniform(0, 20))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)
