"""Training tables: the labelled images of one or several data folders, read by the io readers
(``dermsight.io.csvfolder``: layout detection, labels, metadata, groups, image files), and the
fixed group-disjoint test / val / train split (``dermsight.splits.holdout_split``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dermsight import taxonomy
from dermsight.io.csvfolder import (
    GROUP_COLS,
    ImageIndex,
    Layout,
    classify_csvs,
    iter_csv_raw,
    read_header,
    unlisted_images,
    warn_unlisted,
)
from dermsight.io.errors import ReaderError
from dermsight.records import Metadata
from dermsight.splits import (
    HOLDOUT_FOLDS,
    group_leak,
    group_of,
    holdout_split,
    label_problem,
    resolve_group_col,
    split_sha256,
)
from dermsight.train.config import ConfigError, DataConfig

SPLITS = ("train", "val", "test")
#: rows of a held-out source (leave-one-source-out): never trained, tuned or tested on
EXTERNAL = "external"
#: the raw column whose values ``data.exclude_source_repos`` lists
SOURCE_REPO = "source_repo"


@dataclass
class _Folder:
    """One data folder as read: its table, the ids whose image file was not found, and the
    rows left out (no diagnosis, a class not configured, an excluded source repository)."""

    csv: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlabelled: int = 0
    other_classes: Counter[str] = field(default_factory=Counter)
    excluded: Counter[str] = field(default_factory=Counter)
    #: the CSV lines of kept rows whose age could not be used (not a number, outside the
    #: accepted range, in months, weeks or days): read as not given
    bad_ages: list[int] = field(default_factory=list)
    #: the CSV lines of kept rows whose sex / site could not be used (outside the vocabulary:
    #: sex "X", site "moon" or "extremity"): read as not given
    bad_sexes: list[int] = field(default_factory=list)
    bad_sites: list[int] = field(default_factory=list)
    #: the rows whose diagnosis names no class (``line N (id): why``)
    unknown: list[str] = field(default_factory=list)
    #: image ids listed twice in the CSV (``line N: id``)
    repeated: list[str] = field(default_factory=list)
    #: how one patient's images fall into several groups under data.group_col (None: they
    #: do not)
    leak: str | None = None

    def leaves_out(self, label: str | None, raw: dict[str, str | None], cfg: DataConfig
                   ) -> bool:
        """Whether a row stays out of the table (no diagnosis, an excluded source repository,
        a class not configured), counted by why."""
        if label is None:
            self.unlabelled += 1
        elif raw.get(SOURCE_REPO) in cfg.exclude_source_repos:
            self.excluded[str(raw.get(SOURCE_REPO))] += 1
        elif label not in cfg.classes:
            self.other_classes[label] += 1
        else:
            return False
        return True


def dataset_csv(root: Path) -> Path:
    """The CSV that describes a data folder (``metadata.csv``, or its one labelled CSV); a
    ``metadata.csv`` that cannot be read (empty, no image id column) is a ``ConfigError`` that
    says why (``classify_csvs``)."""
    try:
        primary = classify_csvs(root)[0] if root.is_dir() else None
    except ReaderError as exc:
        raise ConfigError(str(exc)) from exc
    if primary is None:
        raise ConfigError(f"data folder {root} has no metadata.csv (set data.root)")
    return primary


def _group_col_hint(csv: Path, columns: tuple[str, ...]) -> str:
    """Which column to group by, when the configured one is missing: the coarsest id column
    (patient before lesion) that has values."""
    present = [c for c in columns if c.lower() in GROUP_COLS]
    filled = {c for _, raw, _ in iter_csv_raw(csv) for c in present if (raw.get(c) or "").strip()}
    best = sorted(filled, key=lambda c: -GROUP_COLS.index(c.lower()))
    return ("; set data.group_col to the column that groups one patient's images"
            + (f" (here: {best[0]})" if best else ""))


def _columns(csv: Path, cfg: DataConfig) -> tuple[Layout, str | None, list[str]]:
    """A training CSV's layout, its group column and its other id columns (lesion, patient);
    ``ConfigError`` for a CSV without a diagnosis column."""
    layout = read_header(csv)
    if not (layout.label_col or layout.onehot or layout.isic2017):
        raise ConfigError(
            f"{csv} has no diagnosis column (diagnosis, dx or label, or the ISIC 2019 / 2017 "
            f"class columns)"
            + (": its 'target' column names melanomas only" if layout.target_col else ""))
    try:
        gcol = resolve_group_col(layout.columns, cfg.group_col)
    except ReaderError as exc:
        raise ReaderError(f"{exc}{_group_col_hint(csv, layout.columns)}") from exc
    return layout, gcol, [c for c in layout.columns if c.lower() in GROUP_COLS and c != gcol]


def _read_root(root: Path, cfg: DataConfig) -> _Folder:
    folder = _Folder(dataset_csv(root))
    try:
        layout, gcol, others = _columns(folder.csv, cfg)
        index = ImageIndex(root, keep_listing=True)  # its deep scan lists the unlisted
        seen: set[str] = set()
        groups: list[str] = []
        other_values: dict[str, list[str]] = {c: [] for c in others}
        for line, raw, parsed in iter_csv_raw(folder.csv):
            if parsed.id in seen:
                folder.repeated.append(f"line {line}: {parsed.id}")
                continue
            seen.add(parsed.id)
            problem = label_problem(layout, raw, parsed)
            if problem is not None:
                folder.unknown.append(f"line {line} ({parsed.id}): {problem}")
                continue
            if folder.leaves_out(parsed.label, raw, cfg):
                continue
            for name, bad in (("age", folder.bad_ages), ("sex", folder.bad_sexes),
                              ("site", folder.bad_sites)):
                if name in parsed.meta.invalid:  # a placeholder ("NaN", "N/A") is not
                    bad.append(line)
            group = group_of(parsed.id, raw.get(gcol or ""))
            groups.append(group)
            for c in others:
                other_values[c].append((raw.get(c) or "").strip())
            path = (str(root / parsed.path_value) if parsed.path_value
                    else index.find(parsed.id))
            if path is None or not Path(path).is_file():
                folder.missing.append(parsed.id)
            folder.rows.append({
                **{k: v or "" for k, v in raw.items()},
                "image_id": parsed.id, "diagnosis": parsed.label,
                "age": parsed.meta.age, "sex": parsed.meta.sex, "site": parsed.meta.site,
                "source": parsed.source or root.name, "root": root.name, "path": path,
                cfg.group_col: f"{root.name}:{group}",
            })
    except ReaderError as exc:
        raise ConfigError(f"data folder {root}: {exc}") from exc
    unlisted = unlisted_images(root, folder.csv.name, seen,
                               [r["path"] for r in folder.rows if r["path"]], index.listing())
    if unlisted.files:  # the CSV is the listing: said once, as the batch reader says it
        warn_unlisted(unlisted, "not used for training")
    leak = group_leak(gcol or cfg.group_col, groups, other_values)
    if leak is not None:
        folder.leak = f"{folder.csv}: {leak[1]}; set data.group_col={leak[0]}"
    return folder


#: how many of each kind of data problem the report names (all are counted)
SHOWN = 3


def _examples(items: list[str]) -> str:
    return "; ".join(items[:SHOWN]) + (f"; ... ({len(items) - SHOWN} more)"
                                       if len(items) > SHOWN else "")


def data_problems(folders: list[_Folder], check_files: bool) -> list[str]:
    """Every problem of the data folders as one line per kind (counted, the first ``SHOWN``
    named): diagnoses no class is named by, ids listed twice, listed images without a file, a
    group column that splits a patient and,
    when ``check_files`` (there are problems already, so one report names them all),
    image files that cannot be read."""
    from dermsight.train.data import unreadable_reasons  # torch-free table reading otherwise

    lines = []
    for f in folders:
        if f.unknown:
            lines.append(f"{len(f.unknown)} rows of {f.csv} have a diagnosis dermsight cannot "
                         f"read ({_examples(f.unknown)}); use one of the codes "
                         f"{', '.join(taxonomy.BY_CODE)} (or their names)")
        if f.repeated:
            lines.append(f"{len(f.repeated)} image ids of {f.csv} appear twice "
                         f"({_examples(f.repeated)})")
        if f.missing:
            lines.append(f"{len(f.missing)} images listed in {f.csv} have no image file below "
                         f"{f.csv.parent} ({_examples(f.missing)})")
        if f.leak:
            lines.append(f.leak)
        if check_files:
            paths = [r["path"] for r in f.rows if r["path"] and Path(r["path"]).is_file()]
            reasons = unreadable_reasons(paths)
            if reasons:
                lines.append(f"{len(reasons)} of {len(paths)} images of {f.csv} cannot be read "
                             f"({_examples(reasons)}): replace them, or remove their rows")
    return lines


def _left_out(folders: list[_Folder], cfg: DataConfig) -> list[str]:
    """What the configuration left out of the data folders, in words (one note each)."""
    notes = []
    unlabelled = sum(f.unlabelled for f in folders)
    if unlabelled:
        notes.append(f"{unlabelled} images without a diagnosis left out")
    other: Counter[str] = sum((f.other_classes for f in folders), Counter())
    if other:
        notes.append(f"{sum(other.values())} images of classes not in data.classes left out ("
                     + ", ".join(f"{c} {n}" for c, n in sorted(other.items())) + ")")
    excluded: Counter[str] = sum((f.excluded for f in folders), Counter())
    if excluded:
        notes.append(f"{sum(excluded.values())} images of data.exclude_source_repos left out")
    for f in folders:
        if f.bad_ages:
            notes.append(f"{len(f.bad_ages)} ages in {f.csv} are not a number from "
                         f"{taxonomy.AGE_MIN} to {taxonomy.AGE_MAX} years (lines "
                         f"{_lines(f.bad_ages)}): trained on as not given (dermsight predict "
                         f"refuses such ages)")
        vocabulary = [f"{name}: {len(lines)} (lines {_lines(lines)})"
                      for name, lines in (("sex", f.bad_sexes), ("site", f.bad_sites)) if lines]
        if vocabulary:
            n = len(f.bad_sexes) + len(f.bad_sites)
            notes.append(f"{n} sex or site {'value' if n == 1 else 'values'} in {f.csv} "
                         f"{'is' if n == 1 else 'are'} not in dermsight's "
                         f"vocabulary ({'; '.join(vocabulary)}): trained on as not given "
                         f"(dermsight predict refuses such values; sex: male or female, M or F; "
                         f"site: an ISIC general site or one of its accepted spellings)")
    return notes


def _lines(lines: list[int]) -> str:
    """The first ``SHOWN`` of ``lines``, "..." after them when there are more."""
    return ", ".join(map(str, lines[:SHOWN])) + (" ..." if len(lines) > SHOWN else "")


def _unmatched(folders: list[_Folder], cfg: DataConfig) -> list[str]:
    """A note when ``data.exclude_source_repos`` names a repository no image comes from."""
    excluded: Counter[str] = sum((f.excluded for f in folders), Counter())
    unmatched = [r for r in cfg.exclude_source_repos if r not in excluded]
    return [f"data.exclude_source_repos {unmatched} matched no image"] if unmatched else []


def load_table(cfg: DataConfig, notes: list[str] | None = None) -> pd.DataFrame:
    """All configured data folders as one table, filtered to the configured classes: per image
    ``image_id``, ``diagnosis`` (a class code), ``label`` (its index), the parsed metadata
    (``age``, ``sex``, ``site``; ``None`` = missing or unusable), ``source``, ``root`` (the
    folder's name), ``path`` and the group column ``cfg.group_col`` (``root:group``; an image
    with an empty group is its own group), beside the CSV's own columns.

    Refused (``ConfigError``): a diagnosis that names no known class, an id listed twice, a
    listed image without a file, and a group column under which one patient's (or lesion's,
    by the CSV's other id columns) images fall into several groups. ``notes`` (when given)
    receives one line for each kind of row left out (no diagnosis, another class, an
    excluded source repository)."""
    folders = [_read_root(Path(r), cfg) for r in cfg.roots]
    ids = Counter(row["image_id"] for f in folders for row in f.rows)
    shared = [i for i, n in ids.items() if n > 1]
    across = [f"{len(shared)} image ids occur in more than one data folder (e.g. {shared[0]}): "
              f"remove the duplicates"] if shared else []
    problems = [*data_problems(folders, check_files=False), *across]
    if problems:  # all of them at once: a cohort is not fixed one problem per run
        problems = [*data_problems(folders, check_files=True), *across]
        raise ConfigError(f"the data have {len(problems)} kinds of problem, fix them all "
                          f"before training: " + " | ".join(problems)
                          if len(problems) > 1 else problems[0])
    if notes is not None:
        notes.extend([*_left_out(folders, cfg), *_unmatched(folders, cfg)])
    # object columns throughout: a missing age stays None (never NaN)
    df = pd.DataFrame([row for f in folders for row in f.rows], dtype=object)
    if df.empty:
        left = "; ".join(_left_out(folders, cfg))
        raise ConfigError(f"no image of the classes {', '.join(cfg.classes)} in "
                          f"{', '.join(str(f.csv) for f in folders)}"
                          + (f" ({left})" if left else " (it lists no images)"))
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
            labels = part["diagnosis"].value_counts()
            raise ConfigError(
                f"cannot split data folder {root}: {exc} (its {len(part)} images of the "
                f"configured classes fall in {part[cfg.group_col].nunique()} groups, the "
                f"largest class {labels.index[0]} has {labels.iloc[0]}; the test / validation "
                f"/ training split by group needs at least {HOLDOUT_FOLDS} groups and a class "
                f"with {HOLDOUT_FOLDS} images)") from exc
    if cfg.holdout_sources:
        unknown = sorted(set(cfg.holdout_sources) - set(df["source"].astype(str)))
        if unknown:
            raise ConfigError(f"data.holdout_sources {unknown} name no source of the data "
                              f"(sources: {', '.join(sorted(set(df['source'].astype(str))))})")
        split[df["source"].isin(cfg.holdout_sources)] = EXTERNAL
    return split


def split_hashes(df: pd.DataFrame) -> dict[str, str]:
    """``splits.split_sha256`` of each of train / val / test (the card's ``data.split_sha256``)."""
    return {s: split_sha256(df.loc[df["split"] == s, "image_id"]) for s in SPLITS}
