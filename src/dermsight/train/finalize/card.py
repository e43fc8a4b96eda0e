"""The card's descriptive sections, from the data and the machine (``data_section``,
``training_section``, ``limitations``, ``intended_use``), and the card itself (``write_card``)."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dermsight.bundle import NOT_VALIDATED_LIMITATION_START, Card, save_bundle
from dermsight.compression import MEASURED_ON_QUALITY
from dermsight.decision import DecisionRule
from dermsight.evaluate.settings import MIN_CASES
from dermsight.preprocess import MetaSpec
from dermsight.train.config import Provenance, TrainConfig
from dermsight.train.export import OUTPUTS
from dermsight.train.finalize.calibration import Calibration
from dermsight.train.table import EXTERNAL, GROUPED_BY, SPLITS, split_hashes

#: how the card names the values of the ``source`` column
SOURCE_NAMES = {"ham10000": "HAM10000", "isic2016": "ISIC 2016", "isic2017": "ISIC 2017",
                "isic2019": "ISIC 2019", "isic2020": "SIIM-ISIC 2020",
                "isic_archive": "the ISIC Archive"}

#: the licence of each source's images, as the data folders' READMEs state it
SOURCE_LICENCES = {
    "ham10000": "CC BY-NC 4.0 (treated as CC BY-NC-SA 4.0: some mirrors state share-alike)",
    "isic2016": "CC-0 (ISIC 2016 challenge images)",
    "isic2017": "CC-0 (ISIC 2017 challenge images)",
    "isic2019": "CC BY-NC 4.0 (ISIC 2019 training data)",
    "isic2020": "CC BY-NC 4.0",
}


def _pypi_name(module: str) -> str:
    return module.replace("_", "-")


def licence_section(cfg: TrainConfig, df: pd.DataFrame) -> dict[str, str]:
    """The card's ``licence``: the terms of every source the network learnt from (its training
    and validation images), of its initial weights, and of the code."""
    from dermsight.train.network import WEIGHT_PACKAGES

    learnt = df[df["split"].isin(["train", "val"])]["source"].astype(str)
    data = "; ".join(f"{_source_name(s)}: {SOURCE_LICENCES.get(s, 'licence unknown')}"
                     for s in sorted(learnt.unique()))
    if cfg.model.weights:
        start = f"Initialisation from the weights file {Path(cfg.model.weights).name}"
    elif cfg.model.pretrained and cfg.model.backbone in WEIGHT_PACKAGES:
        package = _pypi_name(WEIGHT_PACKAGES[cfg.model.backbone][0])
        start = f"ImageNet initialisation from the {package} package (Apache-2.0)"
    else:
        start = "Random initialisation (no pretrained weights)"
    return {
        "data": f"{data}. Non-commercial research use only.",
        "weights": f"{start}; fine-tuned weights inherit the non-commercial data terms.",
        "code": "Apache-2.0",
    }


def intended_use(n_classes: int, validated: bool = True) -> str:
    """The card's ``intended_use``; ``validated=False`` (``validation_concerns`` found some):
    research use only, for no decision about a patient."""
    if not validated:
        return (
            "Research use only, not for clinical use: this model is not validated (its first "
            "limitation says why), so it must not inform any decision about a patient. It "
            "estimates how likely a dermoscopic image of a single skin lesion "
            f"belongs to each of {n_classes} ISIC diagnostic classes, and a malignancy risk "
            "tier. It is not a diagnosis and not a medical device (non-commercial data "
            "licences)."
        )
    return (
        "Decision support for clinicians and informed patients: estimates how likely a "
        f"dermoscopic image of a single skin lesion belongs to each of {n_classes} ISIC "
        "diagnostic classes, and a malignancy risk tier. It is not a diagnosis, not a medical "
        "device, and must not delay or replace examination by a dermatologist. Research use only "
        "(non-commercial data licences)."
    )


#: fewer test images than this and a card's test figures cannot show that a model works
MIN_TEST_IMAGES = 100
#: the shipped recipe's training length and input size (configs/default.yaml, a test keeps them
#: in step): a run trained for under half as many epochs, or at under half the input size, has
#: that named among the reasons its card is marked, but only beside another concern (thin or
#: weak test figures) or for a subsample run (``data.limit``): a short run whose test figures
#: hold is not marked for its length alone (earlier recipes used 10 epochs, or 128 px)
RECIPE_EPOCHS = 14
RECIPE_INPUT_SIZE = 160
#: the headline one-vs-rest AUCs that must be above chance (0.5), with the card's names
_CHANCE_AUCS = (("mel_auc", "melanoma AUC"), ("malignant_auc", "malignant AUC"))


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and x == x \
        else None


def _not_above_chance(test: Mapping[str, Any], key: str, name: str,
                      chance: float, chance_said: str) -> str | None:
    """Why the test figure ``key`` does not show a model above ``chance`` (its value at or
    below it, or its confidence interval reaching down to it), or None (also when withheld)."""
    value = _number((test.get("metrics") or {}).get(key))
    if value is None:
        return None
    ci = (test.get("ci") or {}).get(key)
    lo = _number(ci.get("lo")) if isinstance(ci, Mapping) else None
    hi = _number(ci.get("hi")) if isinstance(ci, Mapping) else None
    level = _number(test.get("ci_level"))
    shown = f"test {name} {value:.3f}"
    if lo is not None and hi is not None:
        shown += f" ({f'{level * 100:g} % ' if level else ''}CI {lo:.3f}-{hi:.3f})"
    if value <= chance:
        return f"{shown} is at or below chance ({chance_said})"
    if lo is not None and lo <= chance:
        return f"{shown} is not shown to be above chance ({chance_said})"
    return None


def validation_concerns(cfg: TrainConfig, test: Mapping[str, Any]) -> list[str]:
    """Why this run's own test evaluation ``test`` (as the card's ``metrics.test``, thin
    figures withheld) does not show that the model works, one phrase each; empty for a run
    like the shipped one. Any concern marks the card ``bundle.NOT_VALIDATED``: fewer than
    ``MIN_TEST_IMAGES`` test images, balanced accuracy or a headline AUC (melanoma, malignant)
    not above chance (at or below it, or its confidence interval reaching down to it). Too
    short a training or too small an input (under half the shipped recipe's) is named first
    when one of those marks the card, or when the run trained on a subsample (``data.limit``);
    alone, with test figures that hold, it is no concern."""
    out = []
    n = _number(test.get("n"))
    if n is not None and n < MIN_TEST_IMAGES:
        out.append(f"tested on {_count(int(n), 'image')} only (fewer than {MIN_TEST_IMAGES})")
    metrics = test.get("metrics") or {}
    classes = list(cfg.data.classes)
    present = [c for c in classes if (_number(metrics.get(f"n_{c}")) or 0) > 0] or classes
    chance = 1.0 / len(present)
    if (why := _not_above_chance(test, "balanced_accuracy", "balanced accuracy", chance,
                                 f"{chance:.3g} for {len(present)} classes")) is not None:
        out.append(why)
    for key, name in _CHANCE_AUCS:
        if (why := _not_above_chance(test, key, name, 0.5, "0.5")) is not None:
            out.append(why)
    epochs, size = int(cfg.train.epochs), int(cfg.input.size)
    limit = cfg.data.limit
    if (epochs * 2 < RECIPE_EPOCHS or size * 2 < RECIPE_INPUT_SIZE) and (out or limit):
        short = (f"trained for {_count(epochs, 'epoch')} at {size} px (the shipped recipe: "
                 f"{RECIPE_EPOCHS} epochs at {RECIPE_INPUT_SIZE} px)")
        if limit:
            short += f" on at most {_count(int(limit), 'image')} per split (data.limit)"
        out.insert(0, short)
    return out


def not_validated_limitation(concerns: Sequence[str]) -> str | None:
    """The card's first limitation when ``validation_concerns`` found some, else None."""
    if not concerns:
        return None
    return (f"{NOT_VALIDATED_LIMITATION_START}{'; '.join(concerns)}. The model is not "
            "validated: research use only.")


def machine_description() -> str:
    """Where this bundle was trained, in words (CPU threads, or the GPU name)."""
    if torch.cuda.is_available():
        return f"{platform.machine()}, GPU {torch.cuda.get_device_name(0)}"
    return f"{platform.machine()}, {torch.get_num_threads()} CPU threads, no GPU"


def _source_name(source: object) -> str:
    return SOURCE_NAMES.get(str(source), str(source))


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def _collection(df: pd.DataFrame) -> str:
    """The sources of the table, each with its image (and, where known, patient) count."""
    out = []
    for source, rows in df.groupby("source", sort=True):
        size = _count(len(rows), "image")
        if "patient_id" in rows.columns:
            patients = rows["patient_id"].fillna("").astype(str).str.strip()
            if (patients != "").all():
                size += f" of {_count(patients.nunique(), 'patient')}"
        out.append(f"{_source_name(source)} ({size})")
    return ", ".join(out[:-1]) + (" and " if len(out) > 1 else "") + out[-1]


def _label_mix(df: pd.DataFrame, classes: list[str]) -> str:
    """'ISIC 2017: MEL/NV/BKL only; ...' for the sources that lack some of the classes."""
    present = [c for c in classes if (df["diagnosis"] == c).any()]
    parts = []
    for source, rows in df.groupby("source", sort=True):
        has = [c for c in present if (rows["diagnosis"] == c).any()]
        if len(has) < len(present):
            parts.append(f"{_source_name(source)}: {'/'.join(has)} only")
    return f" ({'; '.join(parts)})" if parts else ""


#: the limitation a model trained with ``model.unspecified_head`` carries (docs/experiments, v2.4)
UNSPECIFIED_HEAD_LIMITATION = (
    "UNK never lowers the risk tier (the malignant probability is taken among the specific "
    "diagnoses, model.unspecified_head): lesions that look like the UNK source, or come from a "
    "camera the model has not seen, are referred far more often - on such a collection most "
    "lesions may be referred; see the cross-source table.")


#: what the card says of images it was never scored on (it said "Not validated for mucosal, nail,
#: or non-dermoscopic ...", which read as validation for everything else; the test split holds a
#: few 'oral/genital' images, too few for the site table)
NOT_EVALUATED_LIMITATION = (
    "Performance is known only where this card's tables report it: the classifier was not "
    "evaluated on mucosal or nail lesions as groups of their own, nor on non-dermoscopic "
    "(clinical close-up) photographs at all; how it does on them is unknown.")


def refer_transfer_limitation(refer_sensitivity: float) -> str:
    """The card's line on the refer threshold on other cameras (docs/experiments, v2.32: held out
    of training, one collection was referred at 0.59 sensitivity, another at 0.91-0.97 with most
    benign lesions referred)."""
    return (f"The refer threshold is fitted for {refer_sensitivity * 100:g} % sensitivity on "
            "validation images of the training cameras; on another camera neither that "
            "sensitivity nor its specificity carries over - collections held out of training lost "
            "sensitivity (fewer melanomas referred) or specificity (most benign lesions referred; "
            "see the cross-source table's refer columns). The command 'dermsight bundle adapt' "
            "measures both on a clinic's own labelled cases.")


TEST_SET_LIMITATION_START = "Test set: "


def external_validation_limitation(held_out: Sequence[str] = (), *,
                                   scored_here: Sequence[str] = (),
                                   other_networks: Sequence[str] = ()) -> str:
    """The card's line on what its test figures can and cannot say about other cameras.
    ``held_out``: sources this run kept out of training and scored (leave-one-source-out);
    ``scored_here``: collections this network never trained on, scored later
    (``tools/add_loso_rows.py --score-folder``); ``other_networks``: sources whose
    leave-one-source-out rows were copied from networks trained the same way without them
    (``--from``): they describe the recipe, not this network."""
    def names(sources: Sequence[str]) -> str:
        return ", ".join(sorted({_source_name(s) for s in sources}))

    parts = []
    if held_out:
        parts.append(f"the held-out sources ({names(held_out)}) are scored separately "
                     "(leave-one-source-out)")
    if scored_here:
        parts.append(f"the cross-source table scores this network on collections it never "
                     f"trained on ({names(scored_here)})")
    if other_networks:
        parts.append(f"the cross-source table's leave-one-source-out rows for "
                     f"{names(other_networks)} come from networks trained the same way without "
                     f"that collection, not from this one")
    if not held_out and not scored_here:
        parts.append("this network was not scored on any collection outside its training data")
    return (f"{TEST_SET_LIMITATION_START}one group-disjoint split of this collection; "
            + "; ".join(parts) + "; confidence intervals reflect sampling variation only.")


#: the sources whose population the card can describe (the ISIC challenges and HAM10000,
#: whose images come from European, US and Australian clinics)
KNOWN_POPULATION_SOURCES = frozenset(SOURCE_NAMES)
#: below this long side (px) a training image is a low-resolution copy: the ISIC and HAM10000
#: originals are 600 x 450 px (HAM10000) or larger, and dermatoscope cameras give more still
LOW_RESOLUTION_PX = 600


def _measured_sides(df: pd.DataFrame) -> tuple[int, int, bool] | None:
    """The shortest and longest image side of the table's images and whether they are the
    recorded ``orig_w`` / ``orig_h`` (else read from the image files' headers); None when
    neither tells."""
    if {"orig_w", "orig_h"} <= set(df.columns):
        w = pd.to_numeric(df["orig_w"], errors="coerce")
        h = pd.to_numeric(df["orig_h"], errors="coerce")
        known = w.notna() & h.notna()
        if known.any():
            return (int(np.minimum(w[known], h[known]).min()),
                    int(np.maximum(w[known], h[known]).max()), True)
    if "path" not in df.columns:
        return None
    from PIL import Image

    sides: list[tuple[int, int]] = []
    for path in df["path"].dropna().astype(str):
        try:
            with Image.open(path) as im:  # the header only
                sides.append(im.size)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    if not sides:
        return None
    return min(min(s) for s in sides), max(max(s) for s in sides), False


def resolution_limitation(df: pd.DataFrame) -> str:
    """The card's line on the images' resolution, from their measured sizes: 'low-resolution
    copies' only when every image's long side is under ``LOW_RESOLUTION_PX``."""
    sides = _measured_sides(df)
    if sides is None:
        return (f"Trained and tested on images of {_collection(df)} whose sizes are not "
                "recorded; images of other sizes or from other cameras may behave differently.")
    lo, hi, recorded = sides
    where = " where the source recorded it" if recorded else ""
    if hi < LOW_RESOLUTION_PX:
        return (f"Trained and tested on low-resolution copies ({lo}-{hi} px{where}) of "
                f"{_collection(df)}; full-resolution clinical images may behave differently.")
    return (f"Trained and tested on images of {lo}-{hi} px{where} of {_collection(df)}; "
            "images of other sizes or from other cameras may behave differently.")


def population_limitation(df: pd.DataFrame) -> str:
    """The card's line on skin types: what is known of the ISIC / HAM10000 populations, and
    that any other source's population is not recorded."""
    sources = sorted({str(s) for s in df["source"]})
    known = [s for s in sources if s in KNOWN_POPULATION_SOURCES]
    other = [s for s in sources if s not in KNOWN_POPULATION_SOURCES]
    text = "No skin-type (Fitzpatrick) labels: performance on darker skin is unknown; "
    if not other:
        return text + ("the source data are predominantly from fair-skinned European and US "
                       "populations.")
    names = ", ".join(_source_name(s) for s in other)
    said = f"the population of {names} is not recorded: check it"
    if known:
        said += (f"; {', '.join(_source_name(s) for s in known)} are predominantly from "
                 "fair-skinned European and US populations")
    return text + said + "."


def limitations(cfg: TrainConfig, df: pd.DataFrame) -> list[str]:
    """The card's limitations, true for the data this model was trained and tested on."""
    classes = list(cfg.data.classes)
    out = [resolution_limitation(df)]
    if "UNK" in classes:
        unk = sorted({_source_name(s) for s in df.loc[df["diagnosis"] == "UNK", "source"]})
        origin = f"one source only ({unk[0]})" if len(unk) == 1 else ", ".join(unk) or "no image"
        out.append(
            f"UNK ('other', benign lesions without a specific diagnosis) comes from {origin}: "
            "the model may partly learn that source's look instead of the lesion; see the "
            "per-source table.")
        if cfg.model.unspecified_head:
            out.append(UNSPECIFIED_HEAD_LIMITATION)
    else:
        out.append(
            f"No UNK/other class: lesions outside the {len(classes)} trained classes will be "
            "forced into one of them (the out-of-distribution gate catches only "
            "non-dermoscopic inputs).")
    return [
        *out,
        population_limitation(df),
        f"Sources differ in label mix{_label_mix(df[df['split'] != EXTERNAL], classes)} and "
        "image processing; metrics are reported per source because pooled numbers can be "
        "inflated by source differences.",
        external_validation_limitation(cfg.data.holdout_sources),
        refer_transfer_limitation(cfg.calibration.refer_sensitivity),
        NOT_EVALUATED_LIMITATION,
    ]


#: the headline figures that rest on the melanomas / the malignant lesions / the benign ones
#: (each side of an AUC is one of them), as ``dermsight.evaluate.subgroups`` withholds a
#: subgroup's figure with fewer than ``MIN_CASES`` cases on a side
_MEL_SIDES = ("mel_auc", "mel_pauc80")
_BOTH_SIDES = ("malignant_auc", "malignant_pauc80", "malignant_spec_at_95sens",
               "malignant_sens_at_95sens", "malignant_threshold_at_95sens")
_MALIGNANT_SIDE = ("refer_sensitivity", "monitor_sensitivity")
_BENIGN_SIDE = ("refer_specificity", "monitor_specificity")


def withhold_thin_figures(ev: dict[str, Any], min_cases: int = MIN_CASES) -> list[str]:
    """Withhold (value None, no interval) the headline figures of an evaluation ``ev`` that rest
    on fewer than ``min_cases`` cases on a side, as evaluate withholds a subgroup's (an AUC over
    four melanomas is noise, and its bootstrap interval looks narrower than it is). Changes
    ``ev`` in place; returns what was withheld and why, one phrase per reason."""
    m = ev.get("metrics") or {}
    if not isinstance(m.get("n"), int | float) or not isinstance(m.get("n_malignant"),
                                                                 int | float):
        return []
    n, n_mal = int(m["n"]), int(m["n_malignant"])
    n_mel = int(m["n_MEL"]) if isinstance(m.get("n_MEL"), int | float) else None
    reasons: list[tuple[tuple[str, ...], str]] = []
    if n_mel is not None and (n_mel < min_cases or n - n_mel < min_cases):
        reasons.append((_MEL_SIDES, f"{n_mel} MEL of {n}"))
    if n_mal < min_cases or n - n_mal < min_cases:
        reasons.append((_BOTH_SIDES, f"{n_mal} malignant of {n}"))
    if n_mal < min_cases:
        reasons.append((_MALIGNANT_SIDE, f"{n_mal} malignant"))
    if n - n_mal < min_cases:
        reasons.append((_BENIGN_SIDE, f"{n - n_mal} benign"))
    said = []
    ci = ev.get("ci") if isinstance(ev.get("ci"), dict) else {}
    for keys, why in reasons:
        held = [k for k in keys if m.get(k) is not None or (ci or {}).get(k) is not None]
        for k in held:
            m[k] = None
            if ci is not None and k in ci:
                ci[k] = {"value": None, "lo": None, "hi": None,
                         "note": f"{why} (< {min_cases}): withheld"}
        if held:
            said.append(f"{', '.join(held)} ({why})")
    return said


def thin_figures_limitation(withheld: list[str], min_cases: int = MIN_CASES) -> str | None:
    """The card's line on the test figures withheld by ``withhold_thin_figures``."""
    if not withheld:
        return None
    return (f"Too few test cases for some headline figures (fewer than {min_cases} on a side, "
            f"the rule the evaluation applies to subgroups), so they are withheld: "
            f"{'; '.join(withheld)}. A larger test set is needed to know them.")


def collapsed_tiers_limitation(refer: float, monitor: float) -> str | None:
    """The card's line when the monitor threshold equals the refer threshold: no lesion can
    land between them."""
    if monitor < refer:
        return None
    return (f"The refer and monitor thresholds are equal ({refer:.4g}): the moderate tier is "
            "empty for this model - every lesion is either referred or in the low tier.")


def compression_limitation(files: Mapping[str, int], limits: Mapping[str, float]) -> str:
    """The card's line on compressed uploads, for a network trained on ``files`` (a
    ``compression.survey`` of its training images) with the note's ``limits`` (``note_limits``)."""
    kinds = ", ".join(f"{kind}: {n:,}" for kind, n in files.items()) or "none read"
    jpeg_q = float(limits.get("flag_jpeg_quality") or 0)
    rule = ([f"JPEG at an estimated quality of {jpeg_q:g} or lower"] if jpeg_q > 0 else []) \
        + (["any lossy WebP"] if float(limits.get("flag_lossy_webp") or 0) > 0 else [])
    if rule:
        return (f"Training images by compression ({kinds}). Uploads compressed more ("
                f"{' or '.join(rule)}) get the non-blocking 'compressed' note: the shipped network "
                "was measured less accurate on validation images re-saved so.")
    return (f"Training images by compression ({kinds}): not all JPEGs of quality "
            f"{MEASURED_ON_QUALITY} or more, so the 'compressed' note is off - its limits were "
            "measured for a network trained on such images; how this model fares on compressed "
            "uploads is not measured.")


def data_section(cfg: TrainConfig, df: pd.DataFrame) -> dict[str, Any]:
    """The card's ``data``: folders, counts per source / split / diagnosis, split fingerprints."""
    per_root = df.groupby("root", sort=False).size()
    return {
        "root": ", ".join(f"{root}: {_count(int(n), 'image')} used"
                          for root, n in per_root.items()) + " (see each folder's README)",
        "by_source": {str(k): {s_: int(v) for s_, v in g.value_counts().items()}
                      for k, g in df.groupby("source")["split"]},
        "holdout_sources": list(cfg.data.holdout_sources),
        "excluded_source_repos": cfg.data.exclude_source_repos,
        "n_images": int(len(df)),
        "by_split": {s: {"n": int((df["split"] == s).sum()),
                         "by_diagnosis": df.loc[df["split"] == s, "diagnosis"]
                         .value_counts().to_dict()} for s in SPLITS},
        "split_sha256": split_hashes(df),
        "group_col": cfg.data.group_col,
        **({"group_col_by_folder": by_folder}
           if (by_folder := group_cols_by_folder(df)) and set(by_folder.values())
           != {cfg.data.group_col} else {}),
    }


def group_cols_by_folder(df: pd.DataFrame) -> dict[str, str]:
    """The CSV column each data folder's images were grouped by (``data.group_col``, or in a
    folder without it the id column it fell back to: ``train.table.fallback_group_col``)."""
    if GROUPED_BY not in df.columns or "root" not in df.columns:
        return {}
    return {str(root): str(col) for root, col
            in df.groupby("root", sort=False)[GROUPED_BY].first().items()}


def training_section(cfg: TrainConfig, out: Path, provenance: Provenance) -> dict[str, Any]:
    """The card's ``training``: config, seed, the per-epoch log, how to reproduce, the machine."""
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()
           if line.strip()]
    summary_file = out / "train_summary.json"
    return {
        "config": cfg.to_dict(), "seed": cfg.seed, "epochs_log": log,
        "summary": json.loads(summary_file.read_text()) if summary_file.exists() else {},
        "reproduce": provenance.command,
        "machine": machine_description(),
        "finalize_seconds": None,
    }


def write_card(cfg: TrainConfig, bundle_dir: Path, onnx_bytes: bytes, *, calib: Calibration,
               decision: DecisionRule, gate: tuple[dict[str, Any], dict[str, np.ndarray]],
               extra: dict[str, Any], report_html: str) -> Card:
    """The final bundle: model.onnx, card.json, gate.npz, report.html (plots are already in
    ``bundle_dir/plots``), checked by loading it back."""
    from dermsight.bundle import load_bundle

    card = Card(name=cfg.name, version=cfg.version, classes=list(cfg.data.classes),
                input_spec=cfg.input.spec(), meta_spec=MetaSpec(),
                temperature=calib.temperature, thresholds=calib.thresholds, onnx_sha256="",
                outputs=OUTPUTS, gate=gate[0], extra=extra, decision=decision,
                malignant_excluded=list(calib.excluded))
    save_bundle(bundle_dir, onnx_bytes, card, gate_arrays=gate[1], report_html=report_html)
    load_bundle(bundle_dir, warn=False)  # validate what we wrote (finalize warns itself)
    return card
