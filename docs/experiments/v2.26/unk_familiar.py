"""A UNK call that applies only to images resembling the collection UNK was learned from ("A UNK
call limited to images like UNK's own collection" in docs/experiments/README.md).

Every UNK training image comes from SIIM-ISIC 2020. For a run's bundle this script builds a bank
of the bundle's own pooled features (L2-normalised) of the run's TRAINING images from that source
(``--unk-source``, all their classes), scores each image by the same deep-kNN distance the gate
uses (``gate.ood_score``: 1 - cosine similarity to the k-th nearest bank image, k = the bundle's
gate k), and sets a level ``t`` = the ``--quantile`` of that distance over the run's VALIDATION
images from the same source. The gated rule is the card's decision rule, except that where it
names UNK and the image's distance exceeds ``t`` the suggestion becomes the rule's best class
other than UNK. Probabilities, AUCs and the malignant probability do not change.

Reported per run, for the card's rule and the gated rule: on the run's validation split (never
the test split) the suggested class's balanced accuracy, its UNK recall and the share of
non-UNK images called UNK; on the held-out source (``--heldout``) the suggested class's
balanced accuracy over the classes that source has and the share called UNK. The held-out
probabilities are checked against the stored ones (``--probs``) when given.

    .venv/bin/python docs/experiments/v2.26/unk_familiar.py \\
        --run v2.25-detach-s42=runs/loso-detach-s42-isic2017 \\
        --probs \\
            v2.25-detach-s42=docs/experiments/v2.25/probs_isic2017_v2.25-detach-s42_single.npz \\
        --out docs/experiments/v2.26/unk_familiar.json

Features and probabilities are cached in each run folder (``unk_familiar_cache.npz``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from dermsight import Dermsight, gate
from dermsight.decision import decide
from dermsight.io.decode import decode_image
from dermsight.records import Metadata
from dermsight.train.config import load_config
from dermsight.train.table import load_table, row_meta

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "isic-subset"


def _frames(run: Path, heldout: str) -> dict[str, pd.DataFrame]:
    """The run's train and validation images (through the training loader) and the held-out
    source's images (as ``heldout_seeds.py`` reads them: metadata.csv order, lenient metadata)."""
    split = pd.read_csv(run / "split.csv")
    df = load_table(load_config(run / "config.json").data)
    parts = {name: df[df["image_id"].isin(set(split.loc[split["split"] == name, "image_id"]))]
             .reset_index(drop=True) for name in ("train", "val")}
    raw = pd.read_csv(DATA / "metadata.csv", dtype=str, keep_default_na=False)
    parts["heldout"] = raw[raw["source"] == heldout].reset_index(drop=True)
    return parts


def _score(model: Dermsight, paths: list[Path], metas: list[Metadata], label: str
           ) -> tuple[np.ndarray, np.ndarray]:
    probs, emb = [], []
    for i in tqdm(range(0, len(paths), 64), desc=label):
        out = model.predict_batch([decode_image(p) for p in paths[i:i + 64]], metas[i:i + 64])
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
        emb += [p.embedding for p in out]
    return np.array(probs), np.array(emb, np.float32)


def _cached(run: Path, model: Dermsight, parts: dict[str, pd.DataFrame], unk_source: str
            ) -> dict[str, np.ndarray]:
    file = run / "unk_familiar_cache.npz"
    if file.exists():
        return dict(np.load(file, allow_pickle=False))
    bank_rows = parts["train"][parts["train"]["source"] == unk_source]
    out: dict[str, np.ndarray] = {}
    for name, df, paths, metas in (
        ("bank", bank_rows, list(bank_rows["path"]),
         [row_meta(r) for _, r in bank_rows.iterrows()]),
        ("val", parts["val"], list(parts["val"]["path"]),
         [row_meta(r) for _, r in parts["val"].iterrows()]),
        ("heldout", parts["heldout"], [DATA / "images" / f"{x}.jpg"
                                       for x in parts["heldout"]["image_id"]],
         [Metadata.lenient(r.get("age_approx"), r.get("sex"), r.get("anatom_site"))
          for _, r in parts["heldout"].iterrows()]),
    ):
        p, e = _score(model, paths, metas, f"{run.name} {name}")
        out[f"{name}_p"], out[f"{name}_emb"] = p, e
        out[f"{name}_id"] = df["image_id"].to_numpy(str)
    np.savez_compressed(file, **out)
    return out


def _suggest(model: Dermsight, p: np.ndarray, far: np.ndarray | None) -> np.ndarray:
    """The card's rule; with ``far`` given, a UNK suggestion where ``far`` becomes the rule's best
    other class (the same rule with UNK ruled out)."""
    classes = list(model.classes)
    rule = model.card.decision
    top = rule.choose(p, classes)
    if far is not None:
        unk = classes.index("UNK")
        offsets = rule.offsets(classes)
        without_unk = np.zeros(len(classes)) if offsets is None else offsets.copy()
        without_unk[unk] = -np.inf
        top = np.where((top == unk) & far, decide(p, without_unk), top)
    return np.array(classes)[top]


def _figures(y: np.ndarray, s: np.ndarray, classes: list[str]) -> dict[str, Any]:
    present = [c for c in classes if (y == c).any()]
    recall = {c: round(float((s[y == c] == c).mean()), 4) for c in present}
    doc: dict[str, Any] = {"balanced_accuracy": round(float(np.mean(list(recall.values()))), 4),
                           "recall": recall,
                           "share_called_unk": round(float((s == "UNK").mean()), 4)}
    if "UNK" in present:
        doc["share_of_non_unk_called_unk"] = round(float((s[y != "UNK"] == "UNK").mean()), 4)
    return doc


def run_one(name: str, run: Path, args: argparse.Namespace) -> dict[str, Any]:
    model = Dermsight.load(run / "bundle", threads=args.threads)
    parts = _frames(run, args.heldout)
    c = _cached(run, model, parts, args.unk_source)
    classes = list(model.classes)
    arrays = model.bundle.gate_arrays or {}
    k = int(arrays["k"]) if "k" in arrays else args.k
    bank = c["bank_emb"] / np.maximum(np.linalg.norm(c["bank_emb"], axis=1, keepdims=True), 1e-12)
    knn = {"bank": bank.astype(np.float32), "k": np.array(k)}
    d_val, d_out = gate.ood_score(c["val_emb"], knn), gate.ood_score(c["heldout_emb"], knn)
    val_src = parts["val"]["source"].to_numpy(str)
    level = float(np.quantile(d_val[val_src == args.unk_source], args.quantile))
    y_val = parts["val"]["diagnosis"].to_numpy(str)
    y_out = parts["heldout"]["diagnosis"].to_numpy(str)
    out_classes = [x for x in classes if (y_out == x).any()]
    doc: dict[str, Any] = {"run": str(run), "k": k, "n_bank": len(bank), "quantile": args.quantile,
                           "level": round(level, 5)}
    for rule, far_val, far_out in (("card_rule", None, None),
                                   ("gated", d_val > level, d_out > level)):
        val = _figures(y_val, _suggest(model, c["val_p"], far_val), classes)
        s_out = _suggest(model, c["heldout_p"], far_out)
        held = _figures(y_out, s_out, out_classes)
        held["share_called_unk"] = round(float((s_out == "UNK").mean()), 4)
        doc[rule] = {"validation": val, "heldout": held}
    doc["share_within_level"] = {
        "validation_by_source": {s: round(float((d_val[val_src == s] <= level).mean()), 4)
                                 for s in sorted(set(val_src))},
        "heldout": round(float((d_out <= level).mean()), 4)}
    if name in args.probs:
        z = np.load(args.probs[name], allow_pickle=False)
        assert list(z["image_id"]) == list(c["heldout_id"]), "held-out order differs"
        doc["heldout_probs_max_abs_diff_vs_stored"] = float(np.abs(z["p"] - c["heldout_p"]).max())
    return doc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR")
    ap.add_argument("--probs", action="append", default=[], help="NAME=stored held-out npz")
    ap.add_argument("--heldout", default="isic2017")
    ap.add_argument("--unk-source", default="isic2020")
    ap.add_argument("--quantile", type=float, default=0.95)
    ap.add_argument("--k", type=int, default=10, help="only if the bundle has no gate k")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.probs = dict(p.split("=", 1) for p in args.probs)
    doc = {}
    for spec in args.run:
        name, run = spec.split("=", 1)
        doc[name] = run_one(name, Path(run), args)
        print(name, json.dumps(doc[name]))
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
