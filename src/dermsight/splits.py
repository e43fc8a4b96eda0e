"""Leak-free cross-validation folds: stratified by diagnosis, grouped by lesion / patient.

Images of one lesion (or one patient, or near-duplicates merged into one ``group_id``) must never
sit on both sides of a split. The group of an image is taken from ``group_id``, else
``lesion_id``, else ``patient_id`` (the first of these columns that the CSV has), and an image
with an empty group value is its own group. Image files with byte-identical content under
different groups (``identical_files``) have their groups merged into one (``merge_identical``),
so that no copy of an image sits on the other side of a split; without such files the groups,
and so the folds, are exactly those of the group column.

Stratification uses the diagnosis the CSV reader derives for any supported layout (HAM10000 dx,
ISIC 2019 one-hot, ISIC 2017, SIIM 2020, ...).

The fold assignment is scikit-learn's ``StratifiedGroupKFold`` (shuffle, seed) algorithm,
vectorised so that it runs in about a second on the shared dataset and needs no scikit-learn.

``holdout_split`` cuts the same folds into the fixed test / val / train split every dermsight
model is trained and evaluated on, and ``split_sha256`` is the fingerprint of one split that a
model card records (``data.split_sha256``); ``recorded_split_file`` finds the split file whose
splits match every fingerprint a card records (``evaluate`` and ``reference build`` use it).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from dermsight.io.csvfolder import (
    AGE_COLS,
    GROUP_COLS,
    ID_COLS,
    LABEL_COLS,
    PATH_COLS,
    SEX_COLS,
    SITE_COLS,
    ImageIndex,
    Layout,
    ParsedRow,
    iter_csv_raw,
    read_header,
)
from dermsight.io.errors import ReaderError

UNLABELED = "(none)"
#: the fixed test / val / train split is cut from this many stratified group folds
HOLDOUT_FOLDS = 20


@dataclass
class FoldAssignment:
    ids: list[str]
    labels: list[str]
    groups: list[str]
    folds: list[int]
    group_col: str | None
    n_folds: int
    #: rows whose diagnosis names no known class ("line N (id): why"); split as unlabelled
    unreadable_labels: list[str] = field(default_factory=list)
    #: what the user should know about the folds (one line each, without "warning: ")
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, int]]:
        return list(zip(self.ids, self.folds, strict=True))

    def write_csv(self, out: str | os.PathLike[str]) -> Path:
        import csv

        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["image_id", "fold"])
            w.writerows(self.rows())
        return path

    def report(self) -> dict[str, Any]:
        """Per fold: size, groups, class fractions; overall class fractions."""
        classes = sorted(set(self.labels))
        total = Counter(self.labels)
        n = len(self.labels)
        folds: list[dict[str, Any]] = []
        for k in range(self.n_folds):
            idx = [i for i, f in enumerate(self.folds) if f == k]
            c = Counter(self.labels[i] for i in idx)
            folds.append(
                {
                    "fold": k,
                    "n": len(idx),
                    "n_groups": len({self.groups[i] for i in idx}),
                    "class_fraction": {
                        cls: round(c.get(cls, 0) / len(idx), 4) if idx else 0.0
                        for cls in classes
                    },
                }
            )
        return {
            "n": n,
            "n_groups": len(set(self.groups)),
            "group_col": self.group_col,
            "class_fraction": {cls: round(total[cls] / n, 4) for cls in classes} if n else {},
            "folds": folds,
        }


def resolve_group_col(columns: Sequence[str], requested: str | None) -> str | None:
    lower = {c.lower(): c for c in columns}
    if requested:
        if requested in columns:
            return requested
        if requested.lower() in lower:
            return lower[requested.lower()]
        raise ReaderError(
            f"group column {requested!r} is not in the CSV (columns: {', '.join(columns)})"
        )
    for name in GROUP_COLS:
        if name in lower:
            return lower[name]
    return None


#: words in a column name that suggest it groups one patient's (or lesion's) images
GROUP_WORDS = ("patient", "lesion", "subject", "case")
#: words that, after a group word, make a column name an identifier (``patient_no``, ``caseID``)
ID_WORDS = ("id", "no", "num", "number", "nr", "code", "ref", "key")
#: ``--group-col none``: split image by image on purpose
NO_GROUP = "none"
#: column names the readers already read as something else (id, path, diagnosis, age, sex,
#: site, source): never a patient column, although ``patient_age`` names a patient
_READ_AS_OTHER = frozenset(c.lower() for c in (
    *ID_COLS, *PATH_COLS, *LABEL_COLS, *AGE_COLS, *SEX_COLS, *SITE_COLS, "source", "target"))
_NAME_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def _name_words(column: str) -> list[str]:
    """The words of a column name, lower case: split on ``_``, ``-``, spaces and other
    punctuation and at camelCase humps (``PatientID`` -> patient, id; ``subjectId``)."""
    return [w.lower() for w in _NAME_WORD.findall(column)]


def _names_a_group(column: str) -> bool:
    words = _name_words(column)
    if len(words) == 1:  # ``patient``, ``subject``; or run together: ``patientid``, ``caseno``
        word = words[0]
        return word in GROUP_WORDS or any(
            word == g + i for g in GROUP_WORDS for i in ID_WORDS)
    return any(a in GROUP_WORDS and b in ID_WORDS for a, b in pairwise(words))


def group_candidates(columns: Sequence[str]) -> list[str]:
    """Columns that are not one of ``GROUP_COLS`` but whose name looks like an identifier of a
    patient, lesion, subject or case: a group word followed by an id word (``patient_no``,
    ``case_num``, ``subjectId``, ``PatientID``) or the group word alone (``patient``). Columns
    the readers take as age, sex, site, diagnosis, image id / path or source
    (``patient_age``, ``patient_sex``) and other words after the group word (``lesion_site``,
    ``case_note``) are not."""
    return [c for c in columns if c.lower() not in GROUP_COLS
            and c.lower() not in _READ_AS_OTHER and _names_a_group(c)]


#: how many examples a message names
SHOWN = 3


def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def identical_files(paths: Sequence[str | None]) -> list[list[int]]:
    """The sets of byte-identical files among ``paths`` (None, empty or unreadable: skipped):
    per set the indices into ``paths``, ascending, two or more; the sets in order of their
    first index. Only files of one size are compared (sha256 of their bytes, streamed): a file
    whose size no other file has is not read (the 13,592 shared images: under a second)."""
    import stat

    by_size: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        if not path:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size:  # an empty file is no image (and unread)
            by_size.setdefault(st.st_size, []).append(i)
    found: list[list[int]] = []
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        by_hash: dict[str, list[int]] = {}
        for i in same_size:
            digest = _sha256(str(paths[i]))
            if digest is not None:
                by_hash.setdefault(digest, []).append(i)
        found += [idx for idx in by_hash.values() if len(idx) > 1]
    return sorted(found)


def merge_identical(groups: Sequence[str], sets: Sequence[Sequence[int]]
                    ) -> tuple[list[str], list[list[int]]]:
    """``groups`` with the groups of each set of identical files (``identical_files``) merged
    into one (transitively), which takes the smallest of their ids; and the sets whose files
    were in more than one group. Without such a set the groups are returned unchanged."""
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.get(g, g) != g:
            g = parent[g]
        return g

    crossing: list[list[int]] = []
    for idx in sets:
        roots = {find(groups[i]) for i in idx}
        if len({groups[i] for i in idx}) > 1:
            crossing.append(list(idx))
        target = min(roots)
        for r in roots:
            parent[r] = target
    if not crossing:
        return list(groups), []
    return [find(g) for g in groups], crossing


def identical_files_message(where: str, ids: Sequence[str], groups: Sequence[str],
                            crossing: Sequence[Sequence[int]], consequence: str) -> str:
    """The warning for byte-identical image files under different groups (``crossing``, from
    ``merge_identical``; ``groups``: the groups before the merge): the first ``SHOWN`` sets,
    by image id and group, and how many there are."""
    shown = "; ".join(" = ".join(f"{ids[i]} ({groups[i]})" for i in idx)
                      for idx in crossing[:SHOWN])
    more = f"; ... ({len(crossing) - SHOWN} more)" if len(crossing) > SHOWN else ""
    n = len(crossing)
    return (f"{where}: {n} {'set' if n == 1 else 'sets'} of byte-identical image files "
            f"{'is' if n == 1 else 'are'} listed under different groups (image (group): "
            f"{shown}{more}); {consequence}")


def group_leak(group_col: str, groups: Sequence[str],
               others: Mapping[str, Sequence[str]]) -> tuple[str, str] | None:
    """Whether grouping by ``group_col`` would let one patient's (or lesion's) images sit on
    both sides of a split: a value of another id column (``others``: column -> one value per
    image, empty = none) whose images fall into more than one group. Returns that column and
    a sentence saying so, or None when every such value stays inside one group."""
    for col, values in others.items():
        spans: dict[str, set[str]] = {}
        for group, value in zip(groups, values, strict=True):
            if value:
                spans.setdefault(value, set()).add(group)
        wide = sorted(v for v, gs in spans.items() if len(gs) > 1)
        if wide:
            return col, (f"{len(wide)} {col} values have images in more than one {group_col} "
                         f"group (e.g. {wide[0]}: {len(spans[wide[0]])} groups), so one {col} "
                         f"could land in two splits")
    return None


def label_problem(layout: Layout, raw: Mapping[str, str | None], parsed: ParsedRow
                  ) -> str | None:
    """Why a CSV row has no class when it names one that cannot be read (an unknown diagnosis,
    an ISIC 2019 one-hot row without exactly one class); None for a row with a class and for a
    row that gives no diagnosis at all."""
    if parsed.label is not None:
        return None
    if layout.label_col:
        value = (raw.get(layout.label_col) or "").strip()
        return f"unknown diagnosis {value!r}" if value else None
    if layout.onehot or layout.isic2017:
        return parsed.problems[0] if parsed.problems else None
    return None


def group_of(image_id: str, value: str | None) -> str:
    """The group of an image: its group column's value, or the image alone when that is empty."""
    value = (value or "").strip()
    return value or f"IMG_{image_id}"


def stratified_group_folds(
    labels: Sequence[str], groups: Sequence[str], n_folds: int = 5, seed: int = 0
) -> list[int]:
    """Fold index per item: scikit-learn's ``StratifiedGroupKFold(shuffle=True,
    random_state=seed)``, re-implemented with the fold search vectorised.

    The algorithm and its output are the same as scikit-learn's (a test checks this): groups are
    shuffled, sorted by how unevenly their images spread over the classes, then each goes to
    the fold that keeps the per-class spread across folds smallest (ties: the smaller fold).
    scikit-learn's version evaluates each fold in a Python loop and takes 10-30 s on the 9,835
    groups of the shared dataset; this one takes about a second and needs no scikit-learn.
    """
    import numpy as np

    if n_folds < 2:
        raise ValueError(f"--folds must be at least 2, got {n_folds}")
    if len(labels) != len(groups):
        raise ValueError("labels and groups differ in length")
    _, y_inv, y_cnt = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    _, g_inv, g_cnt = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    n_groups, n_classes = len(g_cnt), len(y_cnt)
    if n_groups < n_folds:
        raise ValueError(f"cannot make {n_folds} folds from {n_groups} groups")
    if np.all(n_folds > y_cnt):
        raise ValueError(f"cannot make {n_folds} folds: every class has fewer images than that")

    counts = np.zeros((n_groups, n_classes))
    np.add.at(counts, (g_inv, y_inv), 1)
    rng = np.random.RandomState(seed)
    perm = np.arange(n_groups)
    rng.shuffle(perm)
    counts = counts[perm]
    inv_perm = np.empty_like(perm)
    inv_perm[perm] = np.arange(perm.size)
    g_inv = inv_perm[g_inv]
    order = np.argsort(-np.std(counts, axis=1), kind="stable")

    per_fold = np.zeros((n_folds, n_classes))
    sizes = [0.0] * n_folds
    fold_of_group = np.empty(n_groups, dtype=int)
    eye = np.eye(n_folds)[:, :, None]  # (candidate, fold, 1)
    scale = y_cnt.reshape(1, 1, -1).astype(float)
    inf = float("inf")
    for gi in order:
        g = counts[gi]
        # Every candidate assignment at once: (candidate fold, fold, class); np.std as sklearn.
        trial = (per_fold[None, :, :] + eye * g[None, None, :]) / scale
        evals = np.std(trial, axis=1).mean(axis=1).tolist()
        best, best_eval, best_size = 0, inf, inf
        for i, e in enumerate(evals):
            # np.isclose(e, best_eval) with its default tolerances, for finite best_eval
            close = best_eval != inf and abs(e - best_eval) <= 1e-8 + 1e-5 * abs(best_eval)
            if e < best_eval or (close and sizes[i] < best_size):
                best, best_eval, best_size = i, e, sizes[i]
        per_fold[best] += g
        sizes[best] = float(per_fold[best].sum())
        fold_of_group[gi] = best
    return [int(f) for f in fold_of_group[g_inv]]


def split_csv(
    csv_path: str | os.PathLike[str],
    n_folds: int = 5,
    *,
    group_col: str | None = None,
    seed: int = 0,
) -> FoldAssignment:
    """Assign every row of a dataset CSV to one of ``n_folds`` folds (see module doc)."""
    p = Path(csv_path)
    layout = read_header(p)
    by_image = (group_col is not None and group_col.strip().lower() == NO_GROUP
                and group_col.strip().lower() not in {c.lower() for c in layout.columns})
    gcol = None if by_image else resolve_group_col(layout.columns, group_col)
    warnings: list[str] = []
    if gcol is None and not by_image:
        candidates = group_candidates(layout.columns)
        if candidates:
            raise ReaderError(
                f"{p.name} has no {_or(GROUP_COLS)} column to group one patient's images "
                f"by, but {_or(candidates)} may be one: pass it with --group-col "
                f"{candidates[0]} (or --group-col {NO_GROUP} to make the folds image by image, "
                f"so that one patient's images may land in different folds)")
        warnings.append(
            f"{p.name} has no column that groups one patient's or lesion's images "
            f"({', '.join(GROUP_COLS)}; another one can be named with --group-col): the folds "
            f"are made image by image, so images of one patient may land in different folds")
    ids: list[str] = []
    labels: list[str] = []
    groups: list[str] = []
    unreadable: list[str] = []
    others: dict[str, list[str]] = {c: [] for c in layout.columns
                                    if c.lower() in GROUP_COLS and c != gcol}
    seen: set[str] = set()
    paths: list[str | None] = []
    index = ImageIndex(p.parent)
    for line, raw, parsed in iter_csv_raw(p):
        if not (raw.get(layout.id_col or "") or raw.get(layout.path_col or "") or "").strip():
            raise ReaderError(f"{p.name} line {line}: row has no image id")
        if parsed.id in seen:
            raise ReaderError(f"{p.name} line {line}: image id {parsed.id} appears twice")
        seen.add(parsed.id)
        ids.append(parsed.id)
        labels.append(parsed.label or UNLABELED)
        groups.append(group_of(parsed.id, raw.get(gcol) if gcol else None))
        paths.append(str(p.parent / parsed.path_value) if parsed.path_value
                     else index.find(parsed.id))
        for c, values in others.items():
            values.append((raw.get(c) or "").strip())
        problem = label_problem(layout, raw, parsed)
        if problem is not None:
            unreadable.append(f"line {line} ({parsed.id}): {problem}")
    if not ids:
        raise ReaderError(f"{p.name} has no rows to split")
    leak = group_leak(gcol or "image", groups, others)
    if leak is not None:
        raise ValueError(f"{p.name}: {leak[1]}; group by {leak[0]} (--group-col {leak[0]})")
    merged, crossing = merge_identical(groups, identical_files(paths))
    if crossing:
        warnings.append(identical_files_message(
            p.name, ids, groups, crossing, "their groups are merged into one, so that each "
            "set stays in one fold; remove the copies, or check the group column"))
    folds = stratified_group_folds(labels, merged, n_folds, seed)
    return FoldAssignment(ids, labels, merged, folds, gcol, n_folds, unreadable, warnings)


def _or(words: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def holdout_split(
    labels: Sequence[str],
    groups: Sequence[str],
    *,
    test_fraction: float,
    val_fraction: float,
    seed: int = 0,
    n_folds: int = HOLDOUT_FOLDS,
) -> list[str]:
    """"test", "val" or "train" per item: stratified by label, group-disjoint, deterministic in
    ``seed``. The items are cut into ``n_folds`` stratified group folds; the first
    ``round(test_fraction * n_folds)`` of them form the test split, the next
    ``round(val_fraction * n_folds)`` the validation split, the rest the training split."""
    n_test = round(test_fraction * n_folds)
    n_val = round(val_fraction * n_folds)
    if n_test < 1 or n_val < 1 or n_test + n_val >= n_folds:
        raise ValueError(
            f"test fraction {test_fraction} and validation fraction {val_fraction} leave no "
            f"whole fold of {n_folds} for each of test, validation and training"
        )
    folds = stratified_group_folds(labels, groups, n_folds, seed)
    return ["test" if f < n_test else "val" if f < n_test + n_val else "train" for f in folds]


def split_sha256(ids: Iterable[str]) -> str:
    """Fingerprint of one split: sha256 of its sorted image ids, one per line (no newline at
    the end); a model card records it per split (``data.split_sha256``)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


#: what reading a candidate split file may raise: it is absent or unreadable, not a CSV, not
#: UTF-8, or has no ``image_id`` / ``split`` column (pandas' parser errors are ValueErrors)
_UNREADABLE_SPLIT = (OSError, ValueError, KeyError)


def read_split_file(path: str | os.PathLike[str]) -> Any:
    """A split CSV's ``image_id`` and ``split`` columns (a pandas DataFrame of strings); raises
    ``OSError`` / ``ValueError`` / ``KeyError`` when it cannot be read as one."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame[["image_id", "split"]]


def recorded_fingerprints(card_data: Any) -> dict[str, Any]:
    """The split fingerprints a card's ``data`` section records (``split_sha256``: split name ->
    sha256); ``{}`` when it records none, or not as such a mapping."""
    recorded = card_data.get("split_sha256") if isinstance(card_data, Mapping) else None
    if not isinstance(recorded, Mapping):
        return {}
    return {str(k): v for k, v in recorded.items()}


def recorded_split_file(card_data: Any, bundle_dir: Path | None,
                        fallbacks: Iterable[Path] = (), *,
                        required: Iterable[str] = ()) -> Path | None:
    """The split file a bundle was trained on: the first of ``split_candidates(bundle_dir,
    fallbacks)`` whose ids match EVERY fingerprint the card's ``data`` section records
    (``card_data["split_sha256"]``, see ``split_sha256``). ``required``: split names the card
    must record for any file to match. None when the card records no fingerprint (or not
    every ``required`` one) or no candidate matches; a candidate that is absent or cannot be
    read as a split CSV is passed over."""
    recorded = recorded_fingerprints(card_data)
    if not recorded or any(name not in recorded for name in required):
        return None
    for path in split_candidates(bundle_dir, fallbacks):
        try:
            if not path.is_file():
                continue
            split = read_split_file(path)
        except _UNREADABLE_SPLIT:
            continue
        if all(split_sha256(split.loc[split["split"] == name, "image_id"]) == sha
               for name, sha in recorded.items()):
            return path
    return None


def split_candidates(bundle_dir: Path | None, fallbacks: Iterable[Path] = ()) -> list[Path]:
    """Where a bundle's split file may be, in order: ``split.csv`` beside the bundle and in its
    training run folder (``dermsight train`` writes ``RUN/split.csv`` beside ``RUN/bundle``),
    then ``fallbacks``."""
    found: list[Path] = []
    if bundle_dir is not None:
        found += [bundle_dir / "split.csv", bundle_dir.parent / "split.csv"]
    return found + list(fallbacks)
