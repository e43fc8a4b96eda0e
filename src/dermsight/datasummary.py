"""What is in a dataset: counts per class / source / sex / site, ages, missing metadata, invalid
metadata values (given but not usable: age 250 or "60m", sex "X", site "moon", a diagnosis that
names no class such as "Spitz naevus"; counted apart from the missing ones, ``n_invalid``; the
most common unusable diagnoses are listed, ``unusable_labels``, each cut to ``MAX_LABEL_CHARS``
characters: usually a diagnosis name, but a clinic export's diagnosis column may hold free text,
so check the output before sharing it; the values of the other fields are never shown),
unreadable files, the image files of a folder that its CSV does not list (``n_unlisted``), and
the sets of byte-identical image files (``duplicate_files``: sha256 of the files of one size;
those under different groups would be split apart unless their groups are merged, as
``data split`` and ``train`` do).
Streams the records (``iter_records(decode=False)``) and, unless told not to, checks that every
image decodes, in a thread pool, with the fast ``verify_image`` path.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermsight import taxonomy
from dermsight.io import detect_kind, estimate_count, iter_records
from dermsight.io.csvfolder import UnlistedImages, warn_unlisted
from dermsight.io.decode import DecodeLimits, verify_image
from dermsight.io.errors import ImageDecodeError
from dermsight.parallel import ordered_map
from dermsight.progress import ProgressMaker
from dermsight.records import LesionRecord
from dermsight.splits import group_of, identical_files, identical_files_message, merge_identical

AGE_BIN_WIDTH = 10
AGE_BINS: tuple[str, ...] = (
    *(f"{lo}-{lo + AGE_BIN_WIDTH - 1}" for lo in range(0, 90, AGE_BIN_WIDTH)),
    "90+",
)
MAX_ERRORS_LISTED = 20
#: the most common unusable labels listed (``unusable_labels``)
MAX_LABELS_LISTED = 5
#: the sets of byte-identical image files listed (``duplicate_files``; all are counted)
MAX_DUPLICATES_LISTED = 5
#: an unusable label is listed cut to this many characters (a free-text cell is not copied whole)
MAX_LABEL_CHARS = 40


def short_label(text: str) -> str:
    """``text`` on one line, cut to :data:`MAX_LABEL_CHARS` characters with "…"."""
    one = " ".join(text.split())
    return one if len(one) <= MAX_LABEL_CHARS else one[:MAX_LABEL_CHARS - 1] + "…"


def age_bin(age: float) -> str:
    if age >= 90:
        return "90+"
    lo = int(age // AGE_BIN_WIDTH) * AGE_BIN_WIDTH
    return f"{lo}-{lo + AGE_BIN_WIDTH - 1}"


@dataclass
class DataSummary:
    """Counts over every record of a dataset (rows with errors included, so that a missing file
    still counts towards its class; ``n_errors`` says how many rows are unusable)."""

    path: str
    kind: str
    verified: bool
    n_images: int = 0
    n_errors: int = 0
    n_unlabeled: int = 0
    by_diagnosis: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)
    by_sex: Counter[str] = field(default_factory=Counter)
    by_site: Counter[str] = field(default_factory=Counter)
    age_histogram: Counter[str] = field(default_factory=Counter)
    image_sizes: Counter[str] = field(default_factory=Counter)
    #: per field, the values not given (empty, "unknown", a placeholder such as "NaN")
    n_missing: Counter[str] = field(default_factory=Counter)
    #: per field (diagnosis, age, sex, site), the values given but not usable
    #: (``Metadata.invalid``; a diagnosis: ``LesionRecord.label_invalid``)
    n_invalid: Counter[str] = field(default_factory=Counter)
    #: the unusable labels as given (a diagnosis that names no class), by count
    unusable_labels: Counter[str] = field(default_factory=Counter)
    groups: set[str] = field(default_factory=set)
    age_sum: float = 0.0
    age_min: float | None = None
    age_max: float | None = None
    errors: list[str] = field(default_factory=list)
    #: image files in the folder that its CSV does not list (not counted above; by path)
    unlisted: tuple[str, ...] = ()
    #: per record: its id, group (``splits.group_of``) and image file (None: none, or inside a
    #: TFRecord shard), for ``find_identical``
    files: list[tuple[str, str, str | None]] = field(default_factory=list, repr=False)
    #: the sets of byte-identical image files, by image id (``find_identical``): those that span
    #: more than one group first
    identical: list[list[str]] = field(default_factory=list)
    #: how many of ``identical`` span more than one group (its first ones)
    identical_across_groups: int = 0

    def note_unlisted(self, unlisted: UnlistedImages) -> None:
        """Keep the folder's unlisted image files and tell the user (``warn_unlisted``)."""
        self.unlisted = unlisted.files
        warn_unlisted(unlisted, "not counted")

    def add(self, rec: LesionRecord, size: tuple[int, int] | None = None) -> None:
        self.n_images += 1
        if rec.error is not None:
            self.n_errors += 1
            if len(self.errors) < MAX_ERRORS_LISTED:
                self.errors.append(rec.error)
        self._add_label(rec)
        self.by_source[rec.source or "unknown"] += 1
        m = rec.meta
        unused = {name: "invalid" if name in m.invalid else "missing"
                  for name in ("age", "sex", "site")}
        for name in ("age", "sex", "site"):
            if getattr(m, name) is None:
                (self.n_invalid if name in m.invalid else self.n_missing)[name] += 1
        self.by_sex[m.sex or unused["sex"]] += 1
        self.by_site[m.site or unused["site"]] += 1
        if m.age is None:
            self.age_histogram[unused["age"]] += 1
        else:
            self.age_histogram[age_bin(m.age)] += 1
            self.age_sum += m.age
            self.age_min = m.age if self.age_min is None else min(self.age_min, m.age)
            self.age_max = m.age if self.age_max is None else max(self.age_max, m.age)
        if rec.group:
            self.groups.add(rec.group)
        else:
            self.n_missing["group"] += 1
        if size is not None:
            self.image_sizes[f"{size[0]}x{size[1]}"] += 1
        self.files.append((rec.id, group_of(rec.id, rec.group), _own_file(rec.path)))

    def find_identical(self) -> str | None:
        """Find the sets of byte-identical image files (``splits.identical_files``); the
        warning for those under different groups, None when there are none."""
        ids = [i for i, _g, _p in self.files]
        groups = [g for _i, g, _p in self.files]
        sets = identical_files([p for _i, _g, p in self.files])
        _merged, crossing = merge_identical(groups, sets)
        crossed = {tuple(idx) for idx in crossing}
        ordered = sorted(sets, key=lambda idx: tuple(idx) not in crossed)  # stable
        self.identical = [[ids[i] for i in idx] for idx in ordered]
        self.identical_across_groups = len(crossing)
        if not crossing:
            return None
        return identical_files_message(
            Path(self.path).name, ids, groups, crossing, "data split and train merge their "
            "groups into one, so that each set stays on one side of a split; remove the "
            "copies, or check the group column")

    def _add_label(self, rec: LesionRecord) -> None:
        if rec.label is not None:
            self.by_diagnosis[rec.label] += 1
            return
        self.n_unlabeled += 1
        if rec.label_invalid is not None:  # given, but names no class: not "missing"
            self.n_invalid["diagnosis"] += 1
            self.unusable_labels[short_label(rec.label_invalid)] += 1
        else:
            self.n_missing["diagnosis"] += 1

    def to_dict(self) -> dict[str, Any]:
        n = self.n_images
        n_aged = n - self.n_missing["age"] - self.n_invalid["age"]

        def rate(key: str) -> float:
            return round(self.n_missing[key] / n, 4) if n else 0.0

        # "invalid" only where there are such values (a dataset without them keeps its keys)
        sex_keys = [*taxonomy.SEXES, *(["invalid"] if self.n_invalid["sex"] else []), "missing"]
        site_keys = [*taxonomy.SITES, "invalid", "missing"]
        age_keys = [*AGE_BINS, *(["invalid"] if self.n_invalid["age"] else []), "missing"]
        return {
            "path": self.path,
            "kind": self.kind,
            "verified": self.verified,
            "n_images": n,
            "n_ok": n - self.n_errors,
            "n_errors": self.n_errors,
            "n_unlabeled": self.n_unlabeled,
            "n_groups": len(self.groups),
            "by_diagnosis": {c: self.by_diagnosis.get(c, 0) for c in taxonomy.CLASS_CODES},
            "by_source": dict(self.by_source.most_common()),
            "by_sex": {k: self.by_sex.get(k, 0) for k in sex_keys},
            "by_site": {k: self.by_site.get(k, 0) for k in site_keys if self.by_site.get(k)},
            "age_histogram": {k: self.age_histogram.get(k, 0) for k in age_keys},
            "age": {
                "min": self.age_min,
                "max": self.age_max,
                "mean": round(self.age_sum / n_aged, 2) if n_aged else None,
            },
            "missing": {k: rate(k) for k in ("diagnosis", "age", "sex", "site", "group")},
            # "diagnosis" only where some are (as "invalid" in by_sex): the keys stay otherwise
            "n_invalid": {k: self.n_invalid[k] for k in ("diagnosis", "age", "sex", "site")
                          if k != "diagnosis" or self.n_invalid[k]},
            "unusable_labels": dict(self.unusable_labels.most_common(MAX_LABELS_LISTED)),
            "image_sizes": dict(self.image_sizes.most_common(10)),
            "errors": list(self.errors),
            "n_unlisted": len(self.unlisted),
            "unlisted": list(self.unlisted[:MAX_ERRORS_LISTED]),
            "duplicate_files": {
                "count": len(self.identical),
                "n_images": sum(len(s) for s in self.identical),
                "n_across_groups": self.identical_across_groups,
                # those under different groups first
                "examples": [list(s) for s in self.identical[:MAX_DUPLICATES_LISTED]],
                "examples_across_groups": [
                    list(s) for s in self.identical[:min(MAX_DUPLICATES_LISTED,
                                                         self.identical_across_groups)]],
            },
        }


def _own_file(path: str | None) -> str | None:
    """The file of a record's image, None for one inside a TFRecord shard (``file#ref``)."""
    from dermsight.io.tfrecord import split_ref

    return None if path is None or split_ref(path) is not None else path


def _check(rec: LesionRecord, limits: DecodeLimits) -> tuple[LesionRecord, tuple[int, int] | None]:
    """Verify that a lazy record's image decodes; the record gets ``error`` if not."""
    from dermsight.io.tfrecord import load_tfrecord_image, split_ref

    if rec.error is not None or rec.path is None:
        return rec, None
    try:
        if split_ref(rec.path) is not None:
            arr = load_tfrecord_image(rec.path, limits)
            return rec, (int(arr.shape[1]), int(arr.shape[0]))
        return rec, verify_image(rec.path, limits)
    except ImageDecodeError as exc:
        name = Path(rec.path.split("#")[0]).name
        rec.error = f"{rec.id}: {name}: {exc.reason}"
        return rec, None


def _checked(
    records: Iterable[LesionRecord], workers: int, limits: DecodeLimits, prefetch: int = 256
) -> Iterator[tuple[LesionRecord, tuple[int, int] | None]]:
    yield from ordered_map(lambda rec: _check(rec, limits), records, prefetch,
                           workers=workers, name="dermsight-verify")


def summarize(
    path: str | os.PathLike[str],
    *,
    verify: bool = True,
    workers: int | None = None,
    limits: DecodeLimits | None = None,
    progress: ProgressMaker | None = None,
) -> DataSummary:
    """Summarise the dataset at ``path``. ``progress(total, desc)`` (``dermsight.progress``)
    may return a tqdm-like object (``update(n)``, ``close()``) to report progress."""
    kind = detect_kind(path)  # a broken metadata.csv: a ReaderError, not unlabelled images
    limits = limits or DecodeLimits()
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    summary = DataSummary(path=str(path), kind=kind, verified=verify)
    bar = progress(estimate_count(path), "reading") if progress else None
    records = iter_records(path, decode=False, limits=limits,
                           on_unlisted=summary.note_unlisted)
    stream: Iterable[tuple[LesionRecord, tuple[int, int] | None]] = (
        _checked(records, workers, limits) if verify else ((r, None) for r in records)
    )
    try:
        for rec, size in stream:
            summary.add(rec, size)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    from dermsight.evaluate.metrics import unknown_label_warnings
    from dermsight.io.csvfolder import warn

    for line in unknown_label_warnings(summary.by_diagnosis.elements(),
                                       "it is then counted as missing"):
        warn(line)  # "unknown" is read as UNK: said once, with the count
    identical = summary.find_identical()
    if identical is not None:
        warn(identical)
    return summary


def plot_summary(summary: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """Write a one-page PNG of the summary (needs matplotlib, in the ``[train]`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "--plot needs matplotlib, which is not installed: pip install 'dermsight[train]'"
        ) from exc

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    panels: list[tuple[str, dict[str, Any], str]] = [
        ("Images per class", summary["by_diagnosis"], "tab:blue"),
        ("Images per source", summary["by_source"], "tab:orange"),
        ("Sex", summary["by_sex"], "tab:green"),
        ("Anatomic site", summary["by_site"], "tab:purple"),
        ("Age (years)", summary["age_histogram"], "tab:brown"),
        ("Missing metadata (fraction)", summary["missing"], "tab:red"),
    ]
    for ax, (title, data, colour) in zip(axes.flat, panels, strict=True):
        keys = [str(k) for k in data]
        values = [float(v) for v in data.values()]
        ax.bar(range(len(keys)), values, color=colour)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, rotation=45, ha="right", fontsize=8)
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.annotate(
                f"{v:g}", (i, v), ha="center", va="bottom", fontsize=7, xytext=(0, 1),
                textcoords="offset points",
            )
    checked = "unreadable or invalid" if summary["verified"] else "invalid (images not decoded)"
    fig.suptitle(
        f"{Path(summary['path']).name}: {summary['n_images']} images, "
        f"{summary['n_errors']} {checked}"
    )
    fig.tight_layout()
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
