"""Refit and measure gate v2 for an existing bundle, and write it into the bundle.

``dermsight gate fit BUNDLE`` calls :func:`refit_bundle`; :func:`refit_trained` reruns training's
own gate step for a bundle trained on several data folders (the shipped default). ``gate fit``'s
data: the bundle's own split over ``isic-subset``: the gate is fitted on
TRAINING images, its threshold set on VALIDATION images, and false rejects are measured on TEST
images per source. ``isic2020-sample`` (a source the model never saw) is split by patient into
fit / validation / test parts (40/20/40 %). Features
are cached under ``cache`` (extracting ~9,000 images takes minutes on 2 cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from dermsight import bundle as bundle_mod
from dermsight.evaluate.frequencies import natural_frequencies
from dermsight.evaluate.negatives import (
    CLINICAL,
    SYSTEM_PACKAGES,
    Negative,
    build_negatives,
    drawn_clinical,
    system_pictures_missing,
)
from dermsight.gate import quality_thresholds
from dermsight.io.decode import decode_image
from dermsight.predict import Dermsight
from dermsight.progress import ProgressMaker, counting
from dermsight.records import Metadata
from dermsight.train.gate_fit import (
    GateFeatures,
    GateFitSet,
    gate_features,
    measure_gate_v2,
)

N_TRAIN = 4000  # dermoscopic training images the heads are fitted on (sampled, seeded)
N_CLINICAL_FIT = 600  # training images turned into zoomed-out clinical proxies to fit on
N_CLINICAL_EVAL = 300  # test images turned into zoomed-out proxies to measure the flag on


@dataclass
class DermoSet:
    ids: list[str]
    paths: list[str]
    metas: list[Metadata]
    sources: list[str]
    labels: list[str]


def _dermo(df: pd.DataFrame, root: Path, age: str, site: str) -> DermoSet:
    return DermoSet(
        ids=df["image_id"].tolist(),
        paths=[str(root / "images" / f"{i}.jpg") for i in df["image_id"]],
        metas=[Metadata.lenient(a or None, s or None, t or None)
               for a, s, t in zip(df[age], df["sex"], df[site], strict=True)],
        sources=df["source"].tolist(),
        labels=df["diagnosis"].tolist(),
    )


def _shown(path: Path) -> str:
    """A path as the card records it: relative to the working directory where it can be (no
    absolute path of the machine that fitted the gate)."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def load_sets(data: Path, split_csv: Path, isic2020: Path | None, seed: int
              ) -> dict[str, DermoSet]:
    """train (a seeded sample of N_TRAIN), clinical_fit (other training images), excluded (in
    the data but in no split), val, test and isic2020, from the metadata files and the split
    file."""
    md = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    split = pd.read_csv(split_csv, dtype=str, keep_default_na=False)[["image_id", "split"]]
    df = md.merge(split, on="image_id", how="inner")
    rng = np.random.default_rng(seed)
    train = df[df["split"] == "train"].reset_index(drop=True)
    order = rng.permutation(len(train))
    excluded = md[~md["image_id"].isin(split["image_id"])]
    sets = {
        "train": _dermo(train.iloc[np.sort(order[:N_TRAIN])], data, "age_approx",
                        "anatom_site"),
        # images the split left out (the 180-px re-uploads): dermoscopic, never fitted on
        "excluded": _dermo(excluded, data, "age_approx", "anatom_site"),
        "clinical_fit": _dermo(train.iloc[np.sort(order[N_TRAIN : N_TRAIN + N_CLINICAL_FIT])],
                               data, "age_approx", "anatom_site"),
        "val": _dermo(df[df["split"] == "val"], data, "age_approx", "anatom_site"),
        "test": _dermo(df[df["split"] == "test"], data, "age_approx", "anatom_site"),
    }
    if isic2020 is not None:
        md20 = pd.read_csv(isic2020 / "metadata.csv", dtype=str, keep_default_na=False)
        sets["isic2020"] = _dermo(md20, isic2020, "age", "site")
    return sets


def isic2020_parts(isic2020: Path, seed: int) -> np.ndarray:
    """Each isic2020-sample image's part, by patient (``group_id``): 40 % of the patients
    "fit", 20 % "val", 40 % "test" (seeded; no patient in two parts)."""
    md20 = pd.read_csv(isic2020 / "metadata.csv", dtype=str, keep_default_na=False)
    patients = sorted(set(md20["group_id"]))
    order = np.random.default_rng(seed).permutation(len(patients))
    part = {}
    for rank, i in enumerate(order):
        f = rank / len(patients)
        part[patients[i]] = "fit" if f < 0.4 else "val" if f < 0.6 else "test"
    return np.array([part[g] for g in md20["group_id"]])


def _cached(cache: Path, name: str, key: str, make: Callable[[], GateFeatures]
            ) -> GateFeatures:
    path = cache / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
    if path.exists():
        return GateFeatures.load(path)
    feats = make()
    cache.mkdir(parents=True, exist_ok=True)
    feats.save(path)
    return feats


def _images(paths: list[str], progress: ProgressMaker | None = None, what: str = ""
            ) -> list[np.ndarray]:
    with counting(progress, len(paths), f"decoding {what}images") as done:
        images = []
        for p in paths:
            images.append(decode_image(p))
            done(1)
    return images


def _features(model: Dermsight, images: list[np.ndarray], metas: list[Metadata] | None,
              what: str, progress: ProgressMaker | None) -> GateFeatures:
    with counting(progress, len(images), f"gate features: {what}images") as done:
        return gate_features(model, images, metas, done=done)


def _dermo_features(model: Dermsight, dset: DermoSet, name: str = "",
                    progress: ProgressMaker | None = None) -> GateFeatures:
    what = f"{name} " if name else ""
    return _features(model, _images(dset.paths, progress, what), dset.metas, what, progress)


@dataclass(frozen=True)
class RefitData:
    """Where gate v2's dermoscopic images come from: the labelled folder and the bundle's split
    over it, optionally the ISIC 2020 sample (a source the model never saw), and the folder that
    caches their features."""

    data: Path
    split_csv: Path
    cache: Path
    isic2020: Path | None = None

    def command(self, system_negatives: bool, seed: int) -> str:
        """The ``dermsight gate fit`` command line that refits with these inputs."""
        return (f"dermsight gate fit BUNDLE --data {_shown(self.data)} "
                f"--split {_shown(self.split_csv)}"
                + (f" --isic2020 {_shown(self.isic2020)}" if self.isic2020 else "")
                + ("" if system_negatives else " --no-system-negatives")
                + f" --seed {seed}")


def refit_bundle(
    bundle: Path, source: RefitData, out: Path, *, system_negatives: bool = True,
    seed: int = 0, log: Callable[[str], None] = print, progress: ProgressMaker | None = None,
) -> dict[str, Any]:
    """Fit gate v2 for ``bundle`` and write the bundle, with the new ``gate.npz`` and the card's
    ``gate`` section (fit description + measured figures) and ``natural_frequencies``, to
    ``out`` (may be ``bundle`` itself). Returns the evaluation. ``progress`` makes a bar for
    each pass over images that is not cached (none by default)."""
    model = _refittable(bundle)
    v1_cfg, v1_arrays = gate_v1(model)
    sets = load_sets(source.data, source.split_csv, source.isic2020, seed)
    # the cached rows hold which images a quality check blocked: keyed by the thresholds too
    mkey = model.card.onnx_sha256 + json.dumps(quality_thresholds(model.card.gate),
                                               sort_keys=True)
    feats: dict[str, GateFeatures] = {}
    for name, dset in sets.items():
        if name == "clinical_fit":
            continue
        log(f"features: {name} ({len(dset.paths)} images)")
        feats[name] = _cached(source.cache, name, mkey + "\n".join(dset.ids),
                              partial(_dermo_features, model, dset, name, progress))

    log("features: non-dermoscopic images")
    negatives = build_negatives(seed=seed, system=system_negatives,
                                dermo_for_clinical=_images(sets["clinical_fit"].paths,
                                                           progress, "clinical_fit "))
    neg_key = mkey + "\n".join(f"{n.category}|{n.name}" for n in negatives)
    neg_feats = _cached(source.cache, "negatives", neg_key,
                        lambda: _features(model, [n.image for n in negatives], None,
                                          "non-dermoscopic ", progress))
    fresh_feats = _fresh_clinical(model, sets["test"], source.cache, seed, progress)
    fit, by_source = _refit_set(sets, feats, neg_feats, [n.category for n in negatives],
                                source.isic2020, seed)
    log("fitting gate v2 and its leave-one-category-out checks")
    cfg, arrays, ev = measure_gate_v2(v1_cfg, v1_arrays, fit, by_source,
                                      fresh_clinical=fresh_feats, seed=seed,
                                      groups=[n.base for n in negatives])
    ev["unseen_source_false_reject"] = unseen_source_false_rejects(
        v1_cfg, v1_arrays, fit, by_source, seed=seed)
    ev["isic2020_split"] = ("isic2020-sample patients: 40 % fit, 20 % validation, 40 % test "
                            f"(seed {seed})") if source.isic2020 is not None else None
    ev["negatives"] = _negative_counts(negatives)
    ev["system_negatives"] = system_negatives
    ev["seed"] = seed
    ev["command"] = source.command(system_negatives, seed)
    _write(bundle, out, cfg, arrays, ev, _val_frequencies(model, sets["val"], feats["val"]))
    return ev


def gate_v1(model: Dermsight) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """What gate v2 is fitted on top of: the card's gate section without its v2 entries (gate
    v1 and the quality thresholds) and gate v1's arrays (the kNN bank)."""
    return ({k: v for k, v in model.card.gate.items() if not k.startswith("v2")},
            {k: v for k, v in model.bundle.gate_arrays.items() if k in ("bank", "k")})


def _refittable(bundle: Path) -> Dermsight:
    """The bundle, loaded, once it is known that ``gate fit`` can refit it (``ValueError``
    saying why not otherwise)."""
    model = Dermsight.load(bundle)
    roots = model.card.extra.get("training", {}).get("config", {}).get("data", {}).get("root")
    if isinstance(roots, list) and len(roots) > 1:
        raise ValueError(
            f"{bundle} was trained on {len(roots)} data folders ({', '.join(map(str, roots))}); "
            "`dermsight gate fit` refits one-folder bundles only (it splits the ISIC 2020 "
            "sample's patients itself, which would mix this model's test patients into the "
            "gate's fit). Its gate was fitted by training's finalize step; retrain to refit it")
    if "bank" not in model.bundle.gate_arrays or "ood_threshold" not in model.card.gate:
        raise ValueError(f"{bundle} has no fitted gate v1 (kNN bank) to build gate v2 on")
    return model


def _fresh_clinical(model: Dermsight, test: DermoSet, cache: Path, seed: int,
                    progress: ProgressMaker | None = None) -> GateFeatures:
    """Fresh clinical-photo proxies to measure the clinical flag on: N_CLINICAL_EVAL test images
    zoomed out, and 100 drawn ones."""
    from dermsight.evaluate.negatives import zoomed_out

    rng = np.random.default_rng(seed + 1)
    pick = np.sort(rng.choice(len(test.paths), N_CLINICAL_EVAL, replace=False))

    def fresh() -> GateFeatures:
        imgs = [zoomed_out(im, rng) for im in _images([test.paths[i] for i in pick], progress,
                                                      "clinical-photo proxy ")]
        imgs += [drawn_clinical(rng) for _ in range(100)]
        return _features(model, imgs, None, "clinical-photo proxy ", progress)

    return _cached(cache, "clinical_eval", model.card.onnx_sha256 + f"{seed}", fresh)


def _refit_set(
    sets: dict[str, DermoSet], feats: dict[str, GateFeatures], neg_feats: GateFeatures,
    categories: list[str], isic2020: Path | None, seed: int,
) -> tuple[GateFitSet, dict[str, GateFeatures]]:
    """What gate v2 is fitted on (the training and validation features, with the ISIC 2020
    sample's fit and validation patients when given) and the test features per source it is
    measured on."""
    test = sets["test"]
    by_source: dict[str, GateFeatures] = {}
    src = np.asarray(test.sources)
    for name in sorted(set(test.sources)):
        by_source[name] = feats["test"].subset(np.flatnonzero(src == name))
    exc = np.asarray(sets["excluded"].sources)
    for name in sorted(set(exc.tolist())):
        by_source[f"{name} (left out of the split: 180-px re-uploads)"] = feats[
            "excluded"].subset(np.flatnonzero(exc == name))
    train_f, val_f = feats["train"], feats["val"]
    train_src, val_src = list(sets["train"].sources), list(sets["val"].sources)
    if "isic2020" in feats and isic2020 is not None:
        # its patients split 40/20/40 into fit / val / test: a dermoscopic source the gate
        # must accept though the model never saw it
        part = isic2020_parts(isic2020, seed)
        i20 = feats["isic2020"]
        train_f = GateFeatures.concat([train_f, i20.subset(np.flatnonzero(part == "fit"))])
        val_f = GateFeatures.concat([val_f, i20.subset(np.flatnonzero(part == "val"))])
        train_src += ["isic2020"] * int((part == "fit").sum())
        val_src += ["isic2020"] * int((part == "val").sum())
        by_source["isic2020 (test patients)"] = i20.subset(np.flatnonzero(part == "test"))
    fit = GateFitSet(train_f, val_f, neg_feats, categories, train_sources=train_src,
                     val_sources=val_src)
    return fit, by_source


def _val_frequencies(model: Dermsight, val: DermoSet, feats: GateFeatures) -> dict[str, Any]:
    """Natural frequencies per risk tier on the VALIDATION split."""
    assert feats.logits is not None
    probs = model.probabilities(feats.logits)
    return natural_frequencies(model.malignant(probs), np.isin(val.labels, model.card.malignant),
                               model.card.thresholds, val.sources,
                               malignant_classes=model.card.malignant)


def unseen_source_false_rejects(
    v1_cfg: dict[str, Any], v1_arrays: dict[str, np.ndarray], fit: GateFitSet,
    test_by_source: dict[str, GateFeatures], *, seed: int,
) -> dict[str, Any]:
    """For each dermoscopic source but the largest: refit the gate without that source's
    training and validation images and count its test images refused: how the gate treats
    dermoscopic images from a source (camera, clinic, processing) it has never seen."""
    from dermsight.train.gate_fit import decisions, fit_gate_v2_features

    train_src = list(fit.train_sources or [])
    largest = max(set(train_src), key=train_src.count)
    out: dict[str, Any] = {}
    for name, f in test_by_source.items():
        s = name.split(" ")[0]
        if s == largest or s not in set(train_src) or len(f.embedding) < 50:
            continue
        cfg, arrays = fit_gate_v2_features(v1_arrays, fit.without_source(s), seed=seed)
        blocked, _ = decisions({**v1_cfg, **cfg}, {**v1_arrays, **arrays}, f)
        out[name] = {"n": int(len(blocked)), "k": int(blocked.sum()),
                     "rate": float(blocked.mean())}
    return out


class ScoredImages(Protocol):
    """Decoded images with the serving path's pooled features and each image's source, as
    finalize holds a split (``train.finalize.scoring.Part``)."""

    @property
    def images(self) -> list[np.ndarray]: ...

    @property
    def embedding(self) -> np.ndarray: ...

    @property
    def sources(self) -> list[str]: ...


def fit_for_run(  # noqa: PLR0913
    model: Dermsight, v1_cfg: dict[str, Any], v1_arrays: dict[str, np.ndarray],
    train: ScoredImages, val: ScoredImages, test: ScoredImages, *, seed: int,
    system: bool = True, recoloured: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """Gate v2 inside finalize (``train/finalize/gating.py``) on the training sample, validation
    and test. The last N_CLINICAL_FIT training images become zoomed-out clinical proxies, the
    rest are the dermoscopic side of the fit."""
    from dermsight.train.gate_fit import features_from

    # a tiny run (tests, smoke runs: under 1,000 training images) gets a small negative set
    small = len(train.images) < 1000
    n_fit = max(len(train.images) - N_CLINICAL_FIT, len(train.images) // 2)
    f_train = features_from(train.images[:n_fit], train.embedding[:n_fit], v1_cfg)
    f_val = features_from(val.images, val.embedding, v1_cfg)
    f_test = features_from(test.images, test.embedding, v1_cfg)
    if system and not small and (missing := system_pictures_missing()):
        print(f"warning: {' '.join(missing)} not installed: the gate is fitted on fewer "
              "non-dermoscopic pictures than the shipped model's was, so this run will not "
              f"rebuild its gate (install {' '.join(SYSTEM_PACKAGES)}; make train does)",
              file=sys.stderr, flush=True)
    negatives = build_negatives(seed=seed, system=system and not small,
                                dermo_for_clinical=train.images[n_fit:], recoloured=recoloured,
                                **({"n_generated": 4, "views": 2} if small else {}))
    neg = gate_features(model, [n.image for n in negatives])
    rng = np.random.default_rng(seed + 1)
    pick = np.sort(rng.choice(len(test.images), min(N_CLINICAL_EVAL, len(test.images)),
                              replace=False))
    from dermsight.evaluate.negatives import zoomed_out

    fresh = gate_features(model, [zoomed_out(test.images[i], rng) for i in pick]
                          + [drawn_clinical(rng) for _ in range(10 if small else 100)])
    src = np.asarray(test.sources)
    by_source = {s: f_test.subset(np.flatnonzero(src == s)) for s in sorted(set(src.tolist()))}
    fit = GateFitSet(f_train, f_val, neg, [n.category for n in negatives],
                     train_sources=train.sources[:n_fit], val_sources=val.sources)
    cfg, arrays, ev = measure_gate_v2(v1_cfg, v1_arrays, fit, by_source, fresh_clinical=fresh,
                                      seed=seed, groups=[n.base for n in negatives])
    ev["negatives"] = _negative_counts(negatives)
    ev["system_negatives"] = system and not small
    ev["small_negative_set"] = small
    ev["seed"] = seed
    return cfg, arrays, ev


def scored_parts(config: Path, split_csv: Path, model: Dermsight) -> dict[str, Any]:
    """The run's splits as finalize holds them (``load_parts``: train, val, test), scored by
    ``model`` through the serving path; the split prepared from ``config`` must be ``split_csv``
    (the bundle's recorded split), else ``ValueError``."""
    from dermsight.train.config import load_config
    from dermsight.train.finalize.scoring import load_parts, score
    from dermsight.train.pipeline import prepare_data

    cfg = load_config(config)
    df = prepare_data(cfg)
    recorded = pd.read_csv(split_csv).set_index("image_id")["split"].sort_index()
    if not df.set_index("image_id")["split"].sort_index().equals(recorded):
        raise ValueError(f"the split prepared from {config} differs from {split_csv}")
    parts = load_parts(cfg, df)
    score(model, parts)
    return {"seed": cfg.seed, **parts}


def refit_trained(bundle: Path, config: Path, split_csv: Path, out: Path, *,
                  recoloured: bool = False, log: Callable[[str], None] = print
                  ) -> dict[str, Any]:
    """Rerun training's gate-v2 step (:func:`fit_for_run`, as ``train/finalize/gating.py`` calls
    it) for a trained ``bundle`` on its own ``config`` and split, and write the gate into ``out``
    (may be ``bundle``): the gate a retraining with this code would give the same network. Gate
    v1, the quality thresholds and the natural frequencies are kept. With ``recoloured``, the
    negatives include recoloured dermoscopic copies and the gate gets its third head (not the
    shipped gate: docs/experiments/README.md, "Sepia-toned and other recoloured images").
    Returns the evaluation."""
    model = Dermsight.load(bundle)
    log(f"scoring the splits of {config} with {bundle}")
    parts = scored_parts(config, split_csv, model)
    v1_cfg, v1_arrays = gate_v1(model)
    log("fitting gate v2 and its leave-one-category-out checks")
    cfg, arrays, ev = fit_for_run(model, v1_cfg, v1_arrays, parts["train"], parts["val"],
                                  parts["test"], seed=parts["seed"], recoloured=recoloured)
    card = json.loads((bundle / bundle_mod.CARD_FILE).read_text(encoding="utf-8"))
    _write(bundle, out, cfg, arrays, ev, card.get("natural_frequencies", {}))
    return ev


def _negative_counts(negatives: list[Negative]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    bases: dict[str, set[str]] = {}
    for n in negatives:
        counts[n.category] = counts.get(n.category, 0) + 1
        bases.setdefault(n.category, set()).add(n.base)
    return {c: {"images": counts[c], "distinct_sources": len(bases[c])} for c in sorted(counts)}


def _write(bundle: Path, out: Path, cfg: dict[str, Any], arrays: dict[str, np.ndarray],
           ev: dict[str, Any], freq: dict[str, Any]) -> None:
    if out.resolve() != bundle.resolve():
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(bundle, out)
    card_path = out / bundle_mod.CARD_FILE
    raw = json.loads(card_path.read_text(encoding="utf-8"))
    gate = {k: v for k, v in raw.get("gate", {}).items() if not k.startswith("v2")}
    if "evaluation" in gate:  # gate v1's figures on the 255-image set: superseded, kept apart
        gate["v1_evaluation"] = gate.pop("evaluation")
    gate.update(cfg)
    gate["v2_evaluation"] = ev
    raw["gate"] = gate
    raw["natural_frequencies"] = freq
    card_path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    with np.load(out / bundle_mod.GATE_FILE) as z:
        old = {k: z[k] for k in z.files if not k.startswith("v2")}
    np.savez(out / bundle_mod.GATE_FILE, **old, **arrays)  # type: ignore[arg-type]
    bundle_mod.write_manifest(out)


__all__ = ["CLINICAL", "RefitData", "refit_bundle", "refit_trained"]
