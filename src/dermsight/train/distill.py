"""Distilling networks into one: soft targets and their loss (``train.distill_targets``,
``train.distill_weight``).

The teachers are finished bundles. ``dermsight distill-targets`` scores a config's training
images with each of them through the serving facade (their calibrated probabilities) and writes
the mean per image to an ``.npz`` (``write_soft_targets``); a training run then reads it
(``load_soft_targets``) and adds, per image, the cross-entropy of its prediction against that
mean (``loop.soft_cross_entropy``) to the usual loss. The targets are the teachers' answers for the
image as stored; the student sees it augmented (offline distillation: no teacher runs while the
student trains, so distilling costs no more than training).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermsight.progress import ProgressMaker, counting
from dermsight.train.config import ConfigError, TrainConfig

SCHEMA = "dermsight.soft_targets/1"


def write_soft_targets(path: Path, image_ids: Sequence[str], classes: Sequence[str],
                       probs: np.ndarray, provenance: dict[str, Any]) -> None:
    """Store the mean teacher probabilities ``probs`` (N x C, rows summing to 1)."""
    probs = np.asarray(probs, np.float32)
    if probs.shape != (len(image_ids), len(classes)):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(image_ids)} images and "
                         f"{len(classes)} classes")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, image_id=np.asarray(image_ids, str),
                        classes=np.asarray(classes, str), p=probs,
                        provenance=np.asarray(json.dumps({"schema": SCHEMA, **provenance})))


def read_soft_targets(path: str | Path) -> tuple[list[str], list[str], np.ndarray,
                                                 dict[str, Any]]:
    """A soft-target file whole: image ids, classes, probabilities (N x C float32) and its
    provenance; ``ConfigError`` when it is missing or not such a file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"soft targets: no such file {p} (make it with "
                          f"`dermsight distill-targets`)")
    try:
        z = np.load(p, allow_pickle=False)
        ids, file_classes, probs = [str(x) for x in z["image_id"]], \
            [str(c) for c in z["classes"]], np.asarray(z["p"], np.float32)
        provenance = json.loads(str(z["provenance"])) if "provenance" in z.files else {}
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"soft targets: {p} is not a soft-target file ({exc})") from exc
    if probs.shape != (len(ids), len(file_classes)) or not isinstance(provenance, dict):
        raise ConfigError(f"soft targets: {p} is not a soft-target file (probabilities of shape "
                          f"{probs.shape} for {len(ids)} images)")
    return ids, file_classes, probs, provenance


def load_soft_targets(path: str | Path, image_ids: Sequence[str], classes: Sequence[str]
                      ) -> np.ndarray:
    """The soft targets for ``image_ids`` in that order (N x C float32). Refuses a file that is
    missing, holds other classes, lacks any of the images or has rows that are not
    probabilities: a silently partial target would train on nothing without saying so."""
    p = Path(path)
    ids, file_classes, probs, _ = read_soft_targets(p)
    if file_classes != list(classes):
        raise ConfigError(f"train.distill_targets: {p} has classes {file_classes}, the config "
                          f"{list(classes)}")
    row = {i: k for k, i in enumerate(ids)}
    missing = [i for i in image_ids if i not in row]
    if missing:
        raise ConfigError(f"train.distill_targets: {p} has no target for {len(missing)} of the "
                          f"{len(image_ids)} training images (e.g. {missing[0]}); it was made "
                          f"for another split or data")
    out = probs[[row[i] for i in image_ids]]
    if not np.all(np.isfinite(out)) or (out < 0).any() or \
            not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        raise ConfigError(f"train.distill_targets: {p} holds rows that are not probabilities")
    return out


def merge_soft_targets(parts: Sequence[tuple[list[str], np.ndarray, dict[str, Any]]]
                       ) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """The mean over every teacher of several target sets (ids, probabilities, provenance), each
    set weighted by its number of teachers: adding a third teacher to a two-teacher file gives
    the three teachers' mean, without the first two's networks. The sets must hold the same
    images (in any order) and come from the same held-out sources."""
    if not parts:
        raise ConfigError("merging soft targets needs at least one set")
    ids = list(parts[0][0])
    order = {i: k for k, i in enumerate(ids)}
    total = np.zeros_like(np.asarray(parts[0][1], np.float64))
    teachers: list[Any] = []
    merged_from: list[dict[str, Any]] = []
    holdout = parts[0][2].get("holdout_sources")
    for k, (part_ids, probs, prov) in enumerate(parts):
        if len(part_ids) != len(ids) or set(part_ids) != set(order):
            raise ConfigError(f"soft-target set {k + 1} holds other images than the first "
                              f"({len(part_ids)} against {len(ids)}): made for another split")
        if prov.get("holdout_sources") != holdout:
            raise ConfigError(f"soft-target set {k + 1} was made with held-out sources "
                              f"{prov.get('holdout_sources')}, the first with {holdout}")
        own = prov.get("teachers") or [{"unrecorded": True}]
        back = np.argsort([order[i] for i in part_ids])
        total += len(own) * np.asarray(probs, np.float64)[back]
        teachers += own
        merged_from.append({"n_teachers": len(own),
                            **({"file": prov["file"]} if "file" in prov else {})})
    provenance = {k: v for k, v in parts[0][2].items() if k != "file"}
    return ids, (total / len(teachers)).astype(np.float32), {
        **provenance, "teachers": teachers, "merged_from": merged_from}


def teacher_targets(cfg: TrainConfig, bundles: Sequence[Path], batch_size: int = 64,
                    progress: ProgressMaker | None = None
                    ) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """The mean calibrated probabilities of the teacher ``bundles`` for every training image of
    ``cfg`` (its split, its held-out sources left out), scored through the serving facade as a
    user's images are; with what the file should record about where they came from.
    ``progress`` makes a bar that counts the images (none by default)."""
    from dermsight.io.decode import decode_image
    from dermsight.predict import Dermsight
    from dermsight.train.pipeline import prepare_data
    from dermsight.train.table import row_meta

    if not bundles:
        raise ConfigError("distilling needs at least one teacher bundle")
    teachers = [Dermsight.load(b) for b in bundles]
    classes = list(cfg.data.classes)
    for path, t in zip(bundles, teachers, strict=True):
        if list(t.classes) != classes:
            raise ConfigError(f"teacher {path} has classes {list(t.classes)}, the config "
                              f"{classes}")
    df = prepare_data(cfg)
    part = df[df["split"] == "train"].reset_index(drop=True)
    if part["image_id"].duplicated().any():
        raise ConfigError("the training images' ids are not unique: soft targets need one id "
                          "per image")
    probs = np.zeros((len(part), len(classes)), np.float64)
    desc = f"scoring training images with {len(teachers)} teacher(s)"
    with counting(progress, len(part), desc) as done:
        for start in range(0, len(part), batch_size):
            rows = part.iloc[start:start + batch_size]
            images = [decode_image(p) for p in rows["path"]]
            metas = [row_meta(r) for _, r in rows.iterrows()]
            for t in teachers:
                out = t.predict_batch(images, metas)
                probs[start:start + len(rows)] += [[o.probabilities[c] for c in classes]
                                                   for o in out]
            done(len(rows))
    probs /= len(teachers)
    provenance = {"teachers": [{"bundle": str(b), **t.info, "onnx_sha256": t.card.onnx_sha256}
                               for b, t in zip(bundles, teachers, strict=True)],
                  "config_name": cfg.name, "seed": cfg.seed,
                  "holdout_sources": list(cfg.data.holdout_sources),
                  "n_images": len(part)}
    return part["image_id"].astype(str).tolist(), probs.astype(np.float32), provenance
