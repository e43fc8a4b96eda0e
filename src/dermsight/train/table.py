"""Training tables: the labelled images of one or several data folders, read by the io readers
(``dermsight.io.csvfolder``: layout detection, labels, metadata, groups, image files), and the
fixed group-disjoint test / val / train split (``dermsight.splits.holdout_split``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dermsight.io.csvfolder import ImageIndex, classify_csvs, iter_csv_raw, read_header
from dermsight.io.errors import ReaderError
from dermsight.records import Metadata
from dermsight.splits import group_of, holdout_split, resolve_group_col, split_sha256
from dermsight.train.config import ConfigError, DataConfig

SPLITS = ("train", "val", "test")
#: rows of a held-out source (leave-one-source-out): never trained, tuned or tested on
EXTERNAL = "external"
#: the raw column whose values ``data.exclude_source_repos`` lists
SOURCE_REPO = "source_repo"


@dataclass
class _Folder:
    """One data folder as read: its table, and the ids whose image file was not found."""

    csv: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def dataset_csv(root: Path) -> Path:
    """The CSV that describes a data folder (``metadata.csv``, or its one labelled CSV)."""
    primary = classify_csvs(root)[0] if root.is_dir() else None
    if primary is None:
        raise ConfigError(f"data folder {root} has no metadata.csv (set data.root)")
    return primary


def _read_root(root: Path, cfg: DataConfig) -> _Folder:
    folder = _Folder(dataset_csv(root))
    try:
        gcol = resolve_group_col(read_header(folder.csv).columns, cfg.group_col)
        index = ImageIndex(root)
        seen: set[str] = set()
        for line, raw, parsed in iter_csv_raw(folder.csv):
            if parsed.id in seen:
                raise ConfigError(f"{folder.csv} line {line}: image id {parsed.id} appears twice")
            seen.add(parsed.id)
            if parsed.label not in cfg.classes or (
                    raw.get(SOURCE_REPO) in cfg.exclude_source_repos):
                continue
            path = (str(root / parsed.path_value) if parsed.path_value
                    else index.find(parsed.id))
            if path is None or not Path(path).is_file():
                folder.missing.append(parsed.id)
            folder.rows.append({
                **{k: v or "" for k, v in raw.items()},
                "image_id": parsed.id, "diagnosis": parsed.label,
                "age": parsed.meta.age, "sex": parsed.meta.sex, "site": parsed.meta.site,
                "source": parsed.source or root.name, "root": root.name, "path": path,
                cfg.group_col: f"{root.name}:{group_of(parsed.id, raw.get(gcol or ''))}",
            })
    except ReaderError as exc:
        raise ConfigError(f"data folder {root}: {exc}") from exc
    return folder


def load_table(cfg: DataConfig) -> pd.DataFrame:
    """All configured data folders as one table, filtered to the configured classes: per image
    ``image_id``, ``diagnosis`` (a class code), ``label`` (its index), the parsed metadata
    (``age``, ``sex``, ``site``; ``None`` = missing or unusable), ``source``, ``root`` (the
    folder's name), ``path`` and the group column ``cfg.group_col`` (``root:group``; an image
    with an empty group is its own group), beside the CSV's own columns."""
    folders = [_read_root(Path(r), cfg) for r in cfg.roots]
    # object columns throughout: a missing age stays None (never NaN)
    df = pd.DataFrame([row for f in folders for row in f.rows], dtype=object)
    if df.empty:
        raise ConfigError(f"no image of the classes {', '.join(cfg.classes)} in "
                          f"{', '.join(str(f.csv) for f in folders)}")
    dup = df["image_id"].duplicated(keep=False)
    if dup.any():
        raise ConfigError(f"{int(dup.sum())} image ids occur in more than one data folder "
                          f"(e.g. {df.loc[dup, 'image_id'].iloc[0]}): remove the duplicates")
    for f in folders:
        if f.missing:
            raise ConfigError(f"{len(f.missing)} images listed in {f.csv} have no image file "
                              f"below {f.csv.parent} (e.g. {f.missing[0]})")
    df["label"] = df["diagnosis"].map({c: i for i, c in enumerate(cfg.classes)}).astype(int)
    return df


def row_meta(row: pd.Series) -> Metadata:
    """Metadata from a ``load_table`` row (an invalid value is treated as missing)."""
    return Metadata.lenient(row.get("age"), row.get("sex"), row.get("site"))


def assign_split(df: pd.DataFrame, cfg: DataConfig) -> pd.Series:
    """Stratified, group-disjoint test / val / train assignment (``splits.holdout_split``),
    deterministic in ``split_seed``.

    Each data folder is split on its own (so adding a folder never moves the images of another
    one between splits: the single-folder split of earlier models is kept exactly). Rows whose
    source is in ``holdout_sources`` become ``external`` (leave-one-source-out).
    """
    roots = df["root"] if "root" in df.columns else pd.Series("", index=df.index)
    split = pd.Series("train", index=df.index, dtype=object)
    for root, part in df.groupby(roots, sort=True):
        try:
            split[part.index] = holdout_split(
                part["diagnosis"].tolist(), part[cfg.group_col].astype(str).tolist(),
                test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction,
                seed=cfg.split_seed)
        except ValueError as exc:
            raise ConfigError(f"cannot split data folder {root}: {exc}") from exc
    if cfg.holdout_sources:
        split[df["source"].isin(cfg.holdout_sources)] = EXTERNAL
    return split


def split_hashes(df: pd.DataFrame) -> dict[str, str]:
    """``splits.split_sha256`` of each of train / val / test (the card's ``data.split_sha256``)."""
    return {s: split_sha256(df.loc[df["split"] == s, "image_id"]) for s in SPLITS}
