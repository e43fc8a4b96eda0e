"""Build a bundle's reference set (``reference/``) and measure its retrieval on the TEST split.

``dermsight reference build BUNDLE --data isic-subset [--data isic2020-sample] --split
configs/default-split.csv`` calls :func:`build_reference`. It

1. checks that the split file is the bundle's own (its train/test sha256 equal the card's
   ``data.split_sha256``), so no test image can enter the reference set, and that every one of
   its train and test images is in one of the data folders (a bundle trained on several folders,
   e.g. the nine-class one with ISIC 2020's UNK images, needs each of them);
2. picks up to ``per_class`` TRAINING images per class (every class; images whose licence is
   unknown are left out; redistributable CC-0 images first, then the rest, each group in a random
   order fixed by ``seed``). The set redistributes a thumbnail of each image it holds, so every
   image needs a known licence: those of the shipped data sources (ISIC 2017, HAM10000, ISIC
   2020) are known here; an image of any other source (a cohort of one's own) needs its licence
   in a ``licence`` column of its data folder's metadata.csv (optionally ``licence_url`` and
   ``attribution``; ``license`` / ``license_url`` also read). A class without one such training
   image is a ``ReferenceDataError`` that says so;
3. embeds them with the bundle's ONNX model through the facade's own preprocessing
   (``Dermsight.prepare`` + ``run_arrays``) and stores the L2-normalised embeddings (float16),
   ids, diagnoses, a licence row per image and a WebP thumbnail per image in
   ``reference/reference.npz``, with the licences and attributions in ``reference/credits.json``;
4. embeds the TEST images the same way and writes precision@k per class and the k-NN vote vs the
   classifier's own accuracy to the card's ``retrieval`` section (``evaluate.retrieval``);
5. rewrites the bundle's manifest (``bundle.write_manifest``).

Serving needs none of this module (``dermsight.similar`` reads what it writes).
"""

from __future__ import annotations

import io
import json
import os
import platform
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from dermsight import similar
from dermsight.bundle import BundleError, load_bundle, write_manifest
from dermsight.errors import DermsightError
from dermsight.evaluate.retrieval import retrieval_metrics
from dermsight.io.decode import decode_image
from dermsight.predict import Dermsight
from dermsight.progress import ProgressMaker, counting
from dermsight.splits import recorded_split_file, split_candidates, split_sha256
from dermsight.train.config import ConfigError, DataConfig
from dermsight.train.table import load_table, row_meta

#: licence of each image source of isic-subset and isic2020-sample (see their READMEs, "Licenses
#: and citation" / "Licence and citation"); images of any other source (folder-fallback labels,
#: unknown licence) are never picked
HAM = {
    "name": "HAM10000",
    "licence": "CC BY-NC-SA 4.0",
    "licence_url": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "licence_note": "HAM10000 is published as CC BY-NC 4.0; some mirrors state CC BY-NC-SA 4.0, "
                    "so share-alike is assumed. Non-commercial use only.",
    "attribution": "HAM10000, ViDIR Group, Department of Dermatology, Medical University of "
                   "Vienna (Tschandl P, Rosendahl C, Kittler H. Sci Data 5, 180161 (2018), "
                   "doi:10.1038/sdata.2018.161)",
}
ISIC2017 = {
    "name": "ISIC 2017",
    "licence": "CC-0",
    "licence_url": "https://creativecommons.org/publicdomain/zero/1.0/",
    "licence_note": "ISIC 2016/2017 challenge images are CC-0 according to the ISIC Archive.",
    "attribution": "ISIC 2017 challenge image via the ISIC Archive (Codella NCF et al., "
                   "arXiv:1710.05006)",
}
ISIC2020 = {
    "name": "ISIC 2020",
    "licence": "CC BY-NC 4.0",
    "licence_url": "https://creativecommons.org/licenses/by-nc/4.0/",
    "licence_note": "SIIM-ISIC 2020 challenge training image (isic2020-sample). "
                    "Non-commercial use only.",
    "attribution": "SIIM-ISIC 2020 challenge image via the ISIC Archive (Rotemberg V, Kurtansky "
                   "N, Betz-Stablein B, et al. Sci Data 8, 34 (2021), "
                   "doi:10.1038/s41597-021-00815-z)",
}
#: datasets in preference order (the first is picked first within a class); a row's index here
#: is stored in reference.npz, so new datasets go at the end
DATASETS = (ISIC2017, HAM, ISIC2020)
#: metadata.csv columns that state the licence of an image of another source (a cohort of one's
#: own), its URL and its attribution; the first column present (any case) is read
LICENCE_COLS = ("licence", "license")
LICENCE_URL_COLS = ("licence_url", "license_url")
ATTRIBUTION_COLS = ("attribution",)
#: the most (source, licence, URL, attribution) combinations metadata columns may add to
#: ``DATASETS`` (reference.npz stores each image's row as an int8)
MAX_STATED = 100
PER_CLASS = 300
THUMB_PX = 96
THUMB_QUALITY = 70
BATCH = 32


class ReferenceDataError(DermsightError, ValueError):
    """The training data do not allow a reference set: a class with no training image whose
    licence is known (a data problem, not the bundle's)."""


def _cell(row: pd.Series, names: Sequence[str]) -> str:
    """The first non-empty value among the columns ``names`` (any case) of a data row."""
    wanted = {n.lower() for n in names}
    for key, value in row.items():
        if str(key).lower() in wanted and isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def stated_licence(row: pd.Series) -> dict[str, str] | None:
    """The dataset entry (as in ``DATASETS``) a data row's own metadata gives it: its
    ``licence`` column (``license``), with ``licence_url`` and ``attribution`` when given;
    None when the row states no licence."""
    licence = _cell(row, LICENCE_COLS)
    if not licence:
        return None
    source = str(row.get("source") or row.get("root") or "own data")
    return {
        "name": source,
        "licence": licence,
        "licence_url": _cell(row, LICENCE_URL_COLS),
        "licence_note": f"As stated in the '{source}' data's metadata.csv (licence column); "
                        "not checked by dermsight.",
        "attribution": _cell(row, ATTRIBUTION_COLS) or f"{source} (no attribution stated)",
    }


def licensed(rows: pd.DataFrame) -> tuple[list[int | None], list[dict[str, str]]]:
    """Each row's dataset (an index into the returned list: ``DATASETS``, then one entry per
    licence that metadata columns state for images of other sources), None when its licence is
    unknown."""
    datasets = [dict(d) for d in DATASETS]
    seen: dict[tuple[str, ...], int] = {}
    out: list[int | None] = []
    for _, row in rows.iterrows():
        index = dataset_of(row)
        if index is None and (stated := stated_licence(row)) is not None:
            key = tuple(stated.values())
            if key not in seen:
                if len(seen) >= MAX_STATED:
                    raise ReferenceDataError(
                        f"the data's licence / attribution columns name more than {MAX_STATED} "
                        "different licences or attributions: the reference set lists each "
                        "once; give one attribution per collection rather than per image")
                seen[key] = len(datasets)
                datasets.append(stated)
            index = seen[key]
        out.append(index)
    return out, datasets


def dataset_of(row: pd.Series) -> int | None:
    """Index in ``DATASETS`` of a data row's licence, None when it is unknown."""
    source = row["source"]
    if source == "ham10000":
        return DATASETS.index(HAM)
    if source == "isic2020":
        return DATASETS.index(ISIC2020)
    # the isic2019 rows that are not HAM10000 are MSK images of the ISIC 2017 challenge
    if source in ("isic2017", "isic2019") and str(row.get("source_path", "")).startswith(
            "ISIC-2017_"):
        return DATASETS.index(ISIC2017)
    return None


def load_split(data: Path | Sequence[Path], split_csv: Path, card_extra: dict[str, Any]
               ) -> pd.DataFrame:
    """The data folders' labelled images, read as training reads them
    (``train.table.load_table``: the same layouts, metadata and image files), joined to the
    bundle's split (column ``path``: the image file; ``age`` / ``sex`` / ``site``: the parsed
    metadata); ``BundleError`` when the split file is not the one the card records, or when
    one of its train / test images is in none of the folders (a folder the bundle was trained
    on was not given)."""
    folders = [data] if isinstance(data, Path) else list(data)
    split = pd.read_csv(split_csv, dtype=str, keep_default_na=False)[
        ["image_id", "diagnosis", "split"]]
    recorded = (card_extra.get("data") or {}).get("split_sha256") or {}
    for name in ("train", "test"):
        if name not in recorded:
            raise BundleError("the card records no data.split_sha256: cannot check that the "
                              "reference set holds training images only")
        got = split_sha256(split.loc[split["split"] == name, "image_id"])
        if got != recorded[name]:
            raise BundleError(f"{split_csv} is not this bundle's split: its {name} ids hash to "
                              f"{got[:12]}…, the card records {recorded[name][:12]}…")
    try:
        md = load_table(recorded_data_config(card_extra, folders,
                                             sorted(set(split["diagnosis"]))))
    except ConfigError as exc:
        raise BundleError(str(exc)) from exc
    used = split[split["split"].isin(["train", "test"])]
    absent = used.loc[~used["image_id"].isin(md["image_id"]), "image_id"]
    if len(absent):
        raise BundleError(
            f"{len(absent)} train/test images of {split_csv.name} (e.g. {absent.iloc[0]}) are in "
            f"none of the data folders ({', '.join(str(f) for f in folders)}): give every folder "
            "the bundle was trained on (card training.config.data.root), one --data each")
    return md.drop(columns=["split"], errors="ignore").merge(
        split[["image_id", "split"]], on="image_id", how="inner")


def recorded_data_config(card_extra: dict[str, Any], folders: Sequence[Path],
                         classes: list[str]) -> DataConfig:
    """How the bundle's training read its data folders (the card's
    ``training.config.data``: the group column, the excluded source repositories), on
    ``folders`` and ``classes``; an older card without them reads as the defaults did."""
    data = (((card_extra.get("training") or {}).get("config") or {}).get("data") or {})
    cfg = DataConfig(root=[str(f) for f in folders], classes=classes)
    group = data.get("group_col") or (card_extra.get("data") or {}).get("group_col")
    if isinstance(group, str) and group.strip():
        cfg.group_col = group
    excluded = data.get("exclude_source_repos")
    if isinstance(excluded, list) and all(isinstance(x, str) for x in excluded):
        cfg.exclude_source_repos = list(excluded)
    return cfg


def recorded_split(bundle: Path, fallback: Path) -> Path:
    """The split CSV the bundle was trained on, when ``--split`` is not given: its run folder's
    ``split.csv`` (a bundle as ``dermsight train`` writes it, ``RUN/bundle``), else
    ``fallback`` (the shipped model's committed split), the first whose ids match every split
    fingerprint the card records (``data.split_sha256``, train and test among them:
    ``splits.recorded_split_file``); ``BundleError`` saying where to find it otherwise."""
    try:
        extra = json.loads((bundle / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fallback  # no card to read: loading the bundle says what is wrong with it
    data = extra.get("data") if isinstance(extra, dict) else None
    found = recorded_split_file(data, bundle, [fallback], required=("train", "test"))
    if found is not None:
        return found
    tried = ", ".join(str(c) for c in split_candidates(bundle, [fallback]))
    raise BundleError(
        f"the split this bundle was trained on was not found (tried {tried}: absent, or not "
        f"the split the card records): give the run folder's split.csv with --split "
        f"(dermsight train writes it to RUN/split.csv beside RUN/bundle)")


def select_reference(train: pd.DataFrame, classes: list[str], per_class: int, seed: int
                     ) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Up to ``per_class`` rows per class: licence known, CC-0 first, random within a licence;
    and the datasets their ``dataset`` column indexes (``licensed``). ``ReferenceDataError``
    naming the classes without a training image whose licence is known."""
    rng = np.random.default_rng(seed)
    index, datasets = licensed(train)
    rows = train.assign(dataset=index)
    rows = rows[rows["dataset"].notna()].sort_values("image_id").reset_index(drop=True)
    rows["dataset"] = rows["dataset"].astype(int)
    rows["order"] = rng.permutation(len(rows))
    picked = []
    lacking: list[str] = []
    for code in classes:
        cls = rows[rows["diagnosis"] == code].sort_values(["dataset", "order"])
        if cls.empty:
            lacking.append(f"{code} ({int((train['diagnosis'] == code).sum())} training images)")
        picked.append(cls.head(per_class))
    if lacking:
        shipped = ", ".join(d["name"] for d in DATASETS)
        raise ReferenceDataError(
            f"no training image with a known licence for class {', '.join(lacking)}: the "
            "reference set redistributes a thumbnail of each image it holds, so every one needs "
            f"a licence. Only the shipped data sources' licences are known ({shipped}); for "
            "images of other sources add a 'licence' column to their data folder's metadata.csv "
            "(the licence under which their thumbnails may be shown, e.g. CC BY 4.0; optional "
            "'licence_url' and 'attribution' columns), then run this command again")
    return pd.concat(picked, ignore_index=True).drop(columns="order"), datasets


def thumbnail(image: np.ndarray, px: int = THUMB_PX, quality: int = THUMB_QUALITY) -> bytes:
    """A WebP thumbnail, at most ``px`` on its long side (aspect kept)."""
    im = Image.fromarray(image)
    im.thumbnail((px, px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="WEBP", quality=quality, method=6)
    return buf.getvalue()


def embed_rows(model: Dermsight, rows: pd.DataFrame, thumbs: bool,
               progress: ProgressMaker | None = None, desc: str = "scoring images"
               ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """All rows' pooled embeddings, logits (with the row's metadata) and, when asked, WebP
    thumbnails (else an empty list), computed in batches; decoded images are dropped after
    each batch. ``progress(len(rows), desc)`` makes a bar that counts the images."""
    emb: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    thumb_data: list[bytes] = []
    with counting(progress, len(rows), desc) as done:
        for start in range(0, len(rows), BATCH):
            chunk = rows.iloc[start : start + BATCH]
            images = [decode_image(p) for p in chunk["path"]]
            prepared = [model.prepare(im, row_meta(r)) for im, (_, r) in
                        zip(images, chunk.iterrows(), strict=True)]
            out = model.run_arrays(np.stack([p[0] for p in prepared]),
                                   np.stack([p[1] for p in prepared]))
            emb.append(out["embedding"])
            logits.append(out["logits"])
            if thumbs:
                thumb_data.extend(thumbnail(im) for im in images)
            done(len(chunk))
    return np.concatenate(emb), np.concatenate(logits), thumb_data


def write_reference(root: Path, picked: pd.DataFrame, embedding: np.ndarray,
                    thumbs: list[bytes], build: dict[str, Any],
                    datasets: Sequence[dict[str, str]] = DATASETS) -> None:
    """``reference/reference.npz`` + ``reference/credits.json`` under a bundle folder
    (``picked``'s ``dataset`` column: rows of ``datasets``)."""
    folder = root / similar.REFERENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in thumbs])]).astype(np.int64)
    np.savez_compressed(
        root / similar.REFERENCE_NPZ,
        embedding=similar.normalize(embedding).astype(np.float16),
        image_id=picked["image_id"].to_numpy(dtype=str),
        diagnosis=picked["diagnosis"].to_numpy(dtype=str),
        dataset=picked["dataset"].to_numpy(dtype=np.int8),
        thumb_data=np.frombuffer(b"".join(thumbs), np.uint8),
        thumb_offset=offsets,
    )
    own = len(datasets) > len(DATASETS)
    # any picked image under a non-commercial licence (HAM10000, ISIC 2020: CC BY-NC)
    non_commercial = any(_non_commercial(datasets[int(i)].get("licence", ""))
                         for i in set(picked["dataset"].tolist()) if 0 <= int(i) < len(datasets))
    use = "" if own else "Non-commercial research use. "
    if own and non_commercial:
        use = ("Non-commercial research use for the ISIC-archive images (CC BY-NC); other "
               "images under their stated licence. ")
    credits = {
        "description": (
            "Reference images shown as 'similar cases' beside a result: training images of the "
            "model, with the diagnosis their data give them"
            + (" (for the ISIC sources, the ISIC ground truth; for the others, their own "
               "metadata). " if own else " (the ISIC ground truth). ")
            + "They are images that look alike to the model's features, not a diagnosis. "
            + use
            + "Each image's licence and attribution are given per dataset below ('dataset' in "
              "reference.npz is the row of 'datasets')."),
        "thumbnail_type": "image/webp",
        "datasets": list(datasets),
        "build": build,
    }
    (root / similar.REFERENCE_CREDITS).write_text(json.dumps(credits, indent=2) + "\n",
                                                  encoding="utf-8")


def _non_commercial(licence: str) -> bool:
    """Whether the licence named ``licence`` (``CC BY-NC 4.0``, ``CC BY-NC-SA 4.0``, ...)
    allows only non-commercial use."""
    text = licence.upper().replace("_", "-").replace(" ", "-")
    return "-NC" in text or "NON-COMMERCIAL" in text or "NONCOMMERCIAL" in text


def trained_folders(bundle: Path) -> list[Path]:
    """The data folders the bundle was trained on, as its card records them
    (``training.config.data.root``: one path or a list, relative to the repository root);
    empty when the card does not say (then the caller's default applies)."""
    try:
        raw = json.loads((bundle / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    root = (((raw.get("training") or {}).get("config") or {}).get("data") or {}).get("root")
    roots = [root] if isinstance(root, str) else root if isinstance(root, list) else []
    return [Path(r) for r in roots if isinstance(r, str) and r]


def _shown(path: Path) -> str:
    """A path as the card records it: relative to the working directory where it can be."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _count_by(df: pd.DataFrame, col: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in df[col].value_counts().sort_index().items()}


def _by_dataset(picked: pd.DataFrame, datasets: Sequence[dict[str, str]]) -> dict[str, int]:
    """Picked images per dataset name (metadata-stated licences of one source add up)."""
    out: dict[str, int] = {}
    for i, n in _count_by(picked, "dataset").items():
        name = datasets[int(i)]["name"]
        out[name] = out.get(name, 0) + n
    return out


def build_reference(  # noqa: PLR0913
    bundle: Path,
    data: Path | Sequence[Path],
    split_csv: Path,
    *,
    per_class: int = PER_CLASS,
    seed: int = 0,
    k: int = 5,
    threads: int | None = 1,
    log: Callable[[str], None] = print,
    progress: ProgressMaker | None = None,
) -> dict[str, Any]:
    """Build ``bundle``'s reference set in place, measure it on TEST, update card + manifest.
    ``progress``: makes a bar for each of the two scoring passes (none by default)."""
    # the set being replaced is not read: a missing, damaged or stale one must not stop this
    model = Dermsight(load_bundle(bundle, reference=False), threads=threads)
    classes = list(model.classes)
    folders = [data] if isinstance(data, Path) else list(data)
    df = load_split(data, split_csv, model.card.extra)
    picked, datasets = select_reference(df[df["split"] == "train"], classes, per_class, seed)
    log(f"reference: {len(picked)} training images ({_count_by(picked, 'diagnosis')})")
    emb, _, thumbs = embed_rows(model, picked, thumbs=True, progress=progress,
                                desc="scoring reference images")
    bank = similar.normalize(emb)
    test = df[df["split"] == "test"].reset_index(drop=True)
    log(f"test: embedding {len(test)} images")
    test_emb, test_logits, _ = embed_rows(model, test, thumbs=False, progress=progress,
                                          desc="scoring test images")
    probs = model.probabilities(test_logits)
    suggested = [classes[i] for i in model.card.decision.choose(probs, classes)]
    # measured against the float16 bank that is shipped, as served
    metrics = retrieval_metrics(test_emb, list(test["diagnosis"]),
                                bank.astype(np.float16), list(picked["diagnosis"]), classes,
                                k=k, classifier_labels=suggested)
    build = {
        "command": (f"dermsight reference build BUNDLE "
                    f"{' '.join(f'--data {_shown(f)}' for f in folders)} --split "
                    f"{_shown(split_csv)} --per-class {per_class} --seed {seed}"),
        "seed": seed,
        "per_class": per_class,
        "selection": ("TRAINING split only (checked against the card's split_sha256); per "
                      "class up to per_class images with a known licence, CC-0 (ISIC 2017) "
                      "before HAM10000 before ISIC 2020"
                      + (" before images of other sources whose licence their metadata.csv "
                         "states" if len(datasets) > len(DATASETS) else "")
                      + ", random within each in a seed-fixed order; the cap "
                      "was chosen on VALIDATION (docs/experiments/reference-set.md)"),
        "split_sha256": {"train": split_sha256(df.loc[df["split"] == "train", "image_id"])},
        "n_images": len(picked),
        "by_diagnosis": _count_by(picked, "diagnosis"),
        "by_dataset": _by_dataset(picked, datasets),
        "thumbnail": f"WebP, {THUMB_PX} px long side, quality {THUMB_QUALITY}",
        "embedding": "the model's pooled last feature map (run_arrays 'embedding'), L2-normalised, "
                     "float16",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": platform.machine(),
    }
    write_reference(bundle, picked, bank, thumbs, build, datasets)
    card_path = bundle / "card.json"
    raw = json.loads(card_path.read_text(encoding="utf-8"))
    raw["retrieval"] = {
        "description": (
            f"Similar cases: the {k} reference images nearest to a query by cosine similarity of "
            "the model's pooled features. Measured on the TEST split (queries) against the "
            "shipped reference set (training images only). precision@k: fraction of the k "
            "neighbours with the query's diagnosis. k-NN vote: the diagnosis most neighbours "
            "have, beside the classifier's own suggestion on the same images."),
        "reference": {key: build[key] for key in ("command", "seed", "per_class", "n_images",
                                                  "by_diagnosis", "by_dataset", "selection")},
        "test": metrics,
    }
    tmp = card_path.with_name(".card.json.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    tmp.replace(card_path)
    write_manifest(bundle)
    size = sum(p.stat().st_size for p in (bundle / similar.REFERENCE_DIR).iterdir())
    log(f"reference set written: {size / 1e6:.2f} MB")
    return {"build": build, "metrics": metrics, "bytes": size}
