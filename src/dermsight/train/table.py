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
    missing_metadata_message,
    read_header,
    unlisted_images,
    warn,
    warn_unlisted,
)
from dermsight.io.errors import ReaderError
from dermsight.records import Metadata
from dermsight.splits import (
    HOLDOUT_FOLDS,
    group_leak,
    group_of,
    holdout_split,
    identical_files,
    identical_files_message,
    label_problem,
    merge_identical,
    resolve_group_col,
    split_sha256,
)
from dermsight.train.config import ConfigError, DataConfig

SPLITS = ("train", "val", "test")
#: rows of a held-out source (leave-one-source-out): never trained, tuned or tested on
EXTERNAL = "external"
#: the raw column whose values ``data.exclude_source_repos`` lists
SOURCE_REPO = "source_repo"
#: the table column naming the CSV column each image was grouped by: ``data.group_col``, or,
#: in a data folder without it, the id column it fell back to (:func:`fallback_group_col`)
GROUPED_BY = "grouped_by"


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
    #: the CSV column the images were grouped by (``data.group_col``, or its fallback)
    group_col: str = ""
    #: whether ``group_col`` is a fallback: the CSV has no ``data.group_col`` column
    fell_back: bool = False
    #: grouped by lesion_id where patients were asked for (``data.group_col_fallback``)
    lesion_level: bool = False
    #: the CSV's columns, and the column ``leak`` says to group by instead (None: no leak)
    columns: tuple[str, ...] = ()
    leak_col: str | None = None
    #: which of age, sex and site no column of the CSV gives (``missing_metadata_message``)
    missing_meta: str | None = None
    #: byte-identical image files under different groups, whose groups were merged
    #: (``splits.identical_files_message``)
    identical: str | None = None

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


def _best_group_col(csv: Path, columns: tuple[str, ...]) -> str | None:
    """The coarsest id column (patient before lesion) of ``csv`` that has values, if any."""
    present = [c for c in columns if c.lower() in GROUP_COLS]
    filled = {c for _, raw, _ in iter_csv_raw(csv) for c in present if (raw.get(c) or "").strip()}
    best = sorted(filled, key=lambda c: -GROUP_COLS.index(c.lower()))
    return best[0] if best else None


def _group_col_hint(csv: Path, columns: tuple[str, ...]) -> str:
    """Which column to group by, when the configured one is missing: the coarsest id column
    (patient before lesion) that has values."""
    best = _best_group_col(csv, columns)
    return ("; set data.group_col to the column that groups one patient's images"
            + (f" (here: {best})" if best else ""))


def _columns(csv: Path, cfg: DataConfig, fallback: bool = False
             ) -> tuple[Layout, str | None, list[str]]:
    """A training CSV's layout, its group column and its other id columns (group, lesion,
    patient); ``ConfigError`` for a CSV without a diagnosis column. A CSV without the group
    column ``data.group_col`` is refused (``ReaderError`` with a hint), unless ``fallback``
    (another data folder has it): then its group column is None and the caller picks one of
    its id columns (:func:`fallback_group_col`)."""
    layout = read_header(csv)
    if not (layout.label_col or layout.onehot or layout.isic2017):
        raise ConfigError(
            f"{csv} has no diagnosis column (diagnosis, dx or label, or the ISIC 2019 / 2017 "
            f"class columns)"
            + (": its 'target' column names melanomas only" if layout.target_col else ""))
    try:
        gcol = resolve_group_col(layout.columns, cfg.group_col)
    except ReaderError as exc:
        if not fallback:
            raise ReaderError(f"{exc}{_group_col_hint(csv, layout.columns)}") from exc
        gcol = None
    return layout, gcol, [c for c in layout.columns if c.lower() in GROUP_COLS and c != gcol]


def _header(root: Path) -> tuple[Path, tuple[str, ...]] | None:
    """The CSV of data folder ``root`` and its columns; None for a folder that cannot be read
    (reading it in ``_read_root`` says why)."""
    try:
        csv = dataset_csv(root)
        return csv, read_header(csv).columns
    except (ConfigError, ReaderError, OSError):
        return None


def _has_column(root: Path, name: str) -> bool:
    """Whether the CSV of data folder ``root`` has the column ``name`` (any case)."""
    header = _header(root)
    return header is not None and name.lower() in {c.lower() for c in header[1]}


def fallback_group_col(csv: Path, wanted: str, ids: list[str], values: dict[str, list[str]]
                       ) -> tuple[str | None, str | None]:
    """The id column to group the images of ``csv`` by when it lacks ``data.group_col``
    (``wanted``), and why it cannot be grouped (None when it can). ``values``: each id column
    of the CSV (group_id, lesion_id, patient_id in any case) -> one value per image (``ids``).

    Columns with values come first, then in ``GROUP_COLS`` order (group, lesion, patient); the
    first under which no value of another id column has images in two groups is taken (so
    neither a patient nor a lesion is ever split). When every one would split one, the first is
    returned with the reason."""
    order = sorted(values, key=lambda c: (not any(values[c]), GROUP_COLS.index(c.lower())))
    if not order:
        return None, (f"{csv} has no {wanted} column (another data folder has it) and none of "
                      f"the id columns {', '.join(GROUP_COLS)}: add a {wanted} column that groups "
                      f"one patient's images (one value per patient)")
    first_leak: str | None = None
    for col in order:
        groups = [group_of(i, v) for i, v in zip(ids, values[col], strict=True)]
        leak = group_leak(col, groups, {c: v for c, v in values.items() if c != col})
        if leak is None:
            return col, None
        first_leak = first_leak or leak[1]
    return order[0], (f"{csv} has no {wanted} column (another data folder has it), and grouping "
                      f"it by any of its id columns ({', '.join(order)}) would split one patient "
                      f"or lesion between splits (by {order[0]}: {first_leak}): add a {wanted} "
                      f"column to it that groups one patient's images")


def _read_root(root: Path, cfg: DataConfig, fallback: bool = False) -> _Folder:
    """One data folder as read. ``fallback``: another data folder has the column
    ``data.group_col``, so a CSV without it is grouped by one of its own id columns."""
    folder = _Folder(dataset_csv(root))
    try:
        layout, gcol, others = _columns(folder.csv, cfg, fallback)
        index = ImageIndex(root, keep_listing=True)  # its deep scan lists the unlisted
        seen: set[str] = set()
        kept_ids: list[str] = []
        group_values: list[str] = []
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
            kept_ids.append(parsed.id)
            group_values.append(raw.get(gcol or "") or "")
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
            })
    except ReaderError as exc:
        raise ConfigError(f"data folder {root}: {exc}") from exc
    unlisted = unlisted_images(root, folder.csv.name, seen,
                               [r["path"] for r in folder.rows if r["path"]], index.listing())
    if unlisted.files:  # the CSV is the listing: said once, as the batch reader says it
        warn_unlisted(unlisted, "not used for training")
    folder.columns = layout.columns
    folder.missing_meta = missing_metadata_message(str(folder.csv), layout)
    _group(folder, root.name, cfg, gcol, ids=kept_ids, group_values=group_values,
           other_values=other_values)
    if folder.identical:  # said as it is read, as the unlisted files are
        warn(folder.identical)
    return folder


def _finer(gcol: str | None, cfg: DataConfig) -> bool:
    """Whether grouping by the fallback column ``gcol`` is finer than ``data.group_col``:
    lesions where patients (patient_id, group_id) were asked for."""
    return (gcol is not None and gcol.lower() == "lesion_id"
            and cfg.group_col.lower() in ("patient_id", "group_id"))


def _group(folder: _Folder, name: str, cfg: DataConfig, gcol: str | None, *, ids: list[str],
           group_values: list[str], other_values: dict[str, list[str]]) -> None:
    """Give every row of ``folder`` its group (``cfg.group_col``: ``name:group``) and the
    column it came from (``GROUPED_BY``): ``gcol``, or, when the CSV has no
    ``data.group_col`` (``gcol`` None), its fallback; note when grouping would split a patient
    or lesion (``folder.leak``)."""
    if gcol is None:  # no data.group_col column: one of the CSV's own id columns
        folder.fell_back = True
        gcol, folder.leak = fallback_group_col(folder.csv, cfg.group_col, ids, other_values)
        if folder.leak is None and _finer(gcol, cfg):
            if cfg.group_col_fallback != "lesion":
                folder.leak = (f"{folder.csv} has no {cfg.group_col} column (another data "
                               f"folder has it) and only {gcol} to group by: one patient's "
                               f"lesions could land in different splits; add a {cfg.group_col} "
                               f"column that groups one patient's images, or set "
                               f"data.group_col_fallback=lesion to split it by lesion")
            else:
                folder.lesion_level = True
        group_values = other_values.pop(gcol) if gcol else [""] * len(ids)
    folder.group_col = gcol or ""
    groups = [group_of(i, v) for i, v in zip(ids, group_values, strict=True)]
    # byte-identical copies of an image under different groups: one group, so one split
    merged, crossing = merge_identical(groups, identical_files([r["path"] for r in folder.rows]))
    if crossing:
        folder.identical = identical_files_message(
            str(folder.csv), ids, groups, crossing, "their groups are merged into one, so that "
            "each set stays in one split (test, validation or training); remove the copies, "
            "or check the group column")
    for row, group in zip(folder.rows, merged, strict=True):
        row[cfg.group_col] = f"{name}:{group}"
        row[GROUPED_BY] = folder.group_col
    leak = None if folder.fell_back else group_leak(folder.group_col, groups, other_values)
    if leak is None:
        return
    folder.leak_col = leak[0]
    folder.leak = f"{folder.csv}: {leak[1]}; set data.group_col={leak[0]}"


def _leak_hints(folders: list[_Folder]) -> None:
    """With several data folders, a leak's hint (``set data.group_col=X``) also names the
    folders without an X column: those are then grouped by their own id columns."""
    for f in folders:
        col = f.leak_col
        if f.leak is None or col is None or len(folders) < 2:
            continue
        lacking = [o.csv.parent.name for o in folders
                   if col.lower() not in {c.lower() for c in o.columns}]
        if lacking:
            f.leak += (f" (the data folders without a {col} column, {', '.join(lacking)}, are "
                       f"then each split by their own {', '.join(GROUP_COLS[:-1])} or "
                       f"{GROUP_COLS[-1]} column)")


def _grouping_note(folders: list[_Folder], cfg: DataConfig) -> list[str]:
    """One line naming the column each folder was grouped by, when one of them has no
    ``data.group_col`` column (and fell back to one of its id columns)."""
    if not any(f.fell_back for f in folders):
        return []
    return [f"data.group_col {cfg.group_col} is not in every data folder, so each is split by "
            "its own group column: " + "; ".join(
                f"{f.csv.parent.name} by {f.group_col}"
                + (f" (it has no {cfg.group_col} column)" if f.fell_back else "")
                + (": one patient's lesions may be in different splits"
                   if f.lesion_level else "")
                for f in folders)]


def _group_cols_missing(roots: list[Path], cfg: DataConfig) -> str:
    """The error for several data folders none of which has the column ``data.group_col``:
    which column each could be grouped by."""
    hints = []
    for root in roots:
        header = _header(root)
        if header is not None:
            best = _best_group_col(*header)
            hints.append(f"{header[0]}: "
                         f"{best or 'no group_id, lesion_id or patient_id with values'}")
    return (f"group column {cfg.group_col!r} is in none of the data folders' CSVs; set "
            "data.group_col to the column that groups one patient's images (a folder without "
            "it is then grouped by its own group_id, lesion_id or patient_id column); the "
            "columns that could: " + "; ".join(hints))


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
                         f"{', '.join(taxonomy.BY_CODE)} (or their names): "
                         f"{taxonomy.accepted_diagnoses()}")
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
    excluded source repository) and for each CSV without an age, sex or site column
    (``missing_metadata_message``). Byte-identical image files of one folder under different
    groups have their groups merged (``splits.merge_identical``), said on stderr as read."""
    roots = [Path(r) for r in cfg.roots]
    # a folder without the group column falls back to its own id columns, as long as another
    # folder has it (a name no folder has is a mistake, not a fallback)
    fallback = len(roots) > 1 and any(_has_column(r, cfg.group_col) for r in roots)
    if len(roots) > 1 and not fallback and all(_header(r) is not None for r in roots):
        raise ConfigError(_group_cols_missing(roots, cfg))
    folders = [_read_root(r, cfg, fallback) for r in roots]
    _leak_hints(folders)
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
        notes.extend([*_grouping_note(folders, cfg), *_left_out(folders, cfg),
                      *_unmatched(folders, cfg),
                      *(f.missing_meta for f in folders if f.missing_meta)])
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
