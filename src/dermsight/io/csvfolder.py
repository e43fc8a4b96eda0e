"""A folder of images described by a CSV -> ``LesionRecord`` stream.

The CSV layout is recognised from its header, so every common ISIC export reads as is:

===================  ==========================================================================
layout               columns (case-insensitive)
===================  ==========================================================================
``dermsight``        image_id, diagnosis, age_approx, sex, anatom_site, source, group_id,
                     lesion_id (the shared ``metadata.csv``)
``ham10000``         lesion_id, image_id, dx, dx_type, age, sex, localization
``isic2019``         image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK (one-hot ground truth);
                     ``isic2018`` is the same with AKIEC and without SCC/UNK
``isic2019-meta``    image, age_approx, anatom_site_general, lesion_id, sex (no labels)
``isic2017``         image_id, melanoma, seborrheic_keratosis
``isic2017-meta``    image_id, age_approximate, sex (no labels)
``siim2020``         image_name, patient_id, sex, age_approx, anatom_site_general_challenge,
                     diagnosis, benign_malignant, target
``manifest``         path (+ optional id, age, sex, site, diagnosis) for batch scoring
``generic``          any CSV with an image id column and optional metadata columns
===================  ==========================================================================

Given a folder, the reader picks the one CSV with labels (or the only CSV) and joins any
label-less metadata CSV beside it by image id (ISIC 2019 ground truth + ISIC 2019 metadata).
A CSV whose header cannot be read is skipped (pixel dumps, result tables), except the folder's
``metadata.csv``: a broken one is a ``ReaderError``, never a folder read without its metadata.
Image files are found next to the CSV, in an ``images/`` subfolder, or anywhere up to three
folders below (HAM10000's ``HAM10000_images_part_1/2``, SIIM's ``jpeg/train``), with any of
the extensions in ``IMAGE_EXTS``. A folder without a CSV is a folder of images (ids from names).
Links to folders are followed (as Spark's listing follows them), each real folder once
(``walk_tree``): a folder of images reached by a second path is read under the first, and the
reader says so (``on_warning``), as it says that TFRecord shards in the folders below a folder
of images are not read.
The CSV is a folder's listing: image files it does not list get no record, and are handed to
``iter_folder``'s ``on_unlisted`` when one is given (``warn_unlisted``: one warning line on
stderr; without one the folder is not walked for them). A folder that cannot be read is a
``ReaderError`` (the input) or an error record (a folder below a folder of images); a CSV saved
as UTF-16 is a ``ReaderError`` that says so.

A CSV whose rows would be silently wrong or missing is a ``ReaderError`` that names the line,
never read in part: a line that is no UTF-8 (a CSV saved as Windows-1252), a column that is read
named twice, a quote that opens a field running on over the rows after it (to the end of the
file, to where the CSV cannot be read, a quoted id, path or other column read that holds a line
break, or a quoted value of any column holding a line that looks like a row: as many separators
as the header has columns less one), a quote closed before its value ends in a column that is
read (``"q1" b``), and a row with more non-empty fields than the header has columns.
``check_manifest`` reads a CSV to its end for these (the batch runners, before any output is
made); the readers raise them when the row is reached. A quoted value with a line break in a
column not read (notes) is legal CSV, and a quote closed before its value ends in a column not
read, the line read on, is read as a lenient reader reads it (``"Dr X" said``: ``Dr X said``).

A bad row never stops the stream: it becomes a record whose ``error`` names the CSV line, the
image id and the reason. Only a row without an image to read is such a row: a metadata value
that cannot be used (age ``-1``, sex ``x``) is left out with a note (the ``metadata_ignored``
flag of a batch row), as DICOM tags are, and a label that cannot be used (diagnosis ``FOO``, a
target that disagrees) leaves the row unlabelled. ``iter_csv``'s ``on_warning`` is told of
those rows, and of a CSV in which no column gives the age, the sex or the site (with the
accepted column names and the CSV's columns not read), one line each.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dermsight import taxonomy
from dermsight.io.decode import REFUSED_IMAGE_EXTS, DecodeLimits, decode_image, refused_by_name
from dermsight.io.errors import ImageDecodeError, ReaderError
from dermsight.io.tfrecord import TFRECORD_EXTS
from dermsight.records import LesionRecord, Metadata

#: File extensions the readers treat as images (content is still sniffed when decoding); in this
#: order of preference when one id has several files. ``.jpe`` / ``.jfif`` are JPEG files.
IMAGE_EXTS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom",
)
_EXT_RANK = {ext: i for i, ext in enumerate(IMAGE_EXTS)}
_REFUSED_EXTS = frozenset(REFUSED_IMAGE_EXTS)
#: What a folder input lists: the images, and files of refused image formats (``x.gif``,
#: ``x.heic``, ...), which become error rows saying what to send instead.
LISTED_EXTS: tuple[str, ...] = IMAGE_EXTS + REFUSED_IMAGE_EXTS
_LISTED_RANK = {ext: i for i, ext in enumerate(LISTED_EXTS)}


def preferred(old: str | None, new: str) -> bool:
    """True when the file ``new`` should stand for its id rather than ``old`` (None: none yet):
    by the order of ``LISTED_EXTS`` (accepted images first, in ``IMAGE_EXTS`` order)."""
    if old is None:
        return True
    rank = _LISTED_RANK.get(os.path.splitext(new)[1].lower(), len(_LISTED_RANK))
    return rank < _LISTED_RANK.get(os.path.splitext(old)[1].lower(), len(_LISTED_RANK))


def refused_file_reason(path: str) -> str:
    """What a row whose id has only a file of a refused format (``x.heic``) says: the file's
    name and what to send instead (the folder reader's message for that format)."""
    name = os.path.basename(path)
    fmt = refused_by_name(name)
    return f"{name}: {fmt.reason()}" if fmt is not None else f"{name}: not an accepted image"

ID_COLS = ("image_id", "image_name", "image", "isic_id", "id")
PATH_COLS = ("path", "filepath", "file_path", "image_path", "file", "filename")
LABEL_COLS = ("diagnosis", "dx", "label")
AGE_COLS = ("age_approx", "age", "age_approximate", "patient_age")
SEX_COLS = ("sex", "gender", "patient_sex")
SITE_COLS = (
    "anatom_site",
    "anatom_site_general",
    "anatom_site_general_challenge",
    "localization",
    "site",
    "body_site",
)
GROUP_COLS = ("group_id", "lesion_id", "patient_id")
ONEHOT_CORE = ("MEL", "NV", "BCC", "BKL", "DF", "VASC")

_MAX_INDEX_DEPTH = 3
_CSV_FIELD_LIMIT = 1 << 20


@dataclass(frozen=True)
class Layout:
    """What a CSV header says: where the id, path, label and metadata are."""

    name: str
    columns: tuple[str, ...]
    id_col: str | None = None
    path_col: str | None = None
    label_col: str | None = None
    onehot: tuple[tuple[str, str], ...] = ()  # (column, class code)
    isic2017: tuple[str, str] | None = None  # (melanoma, seborrheic_keratosis)
    target_col: str | None = None
    age_col: str | None = None
    sex_col: str | None = None
    site_col: str | None = None
    group_cols: tuple[str, ...] = ()
    source_col: str | None = None
    default_source: str | None = None

    @property
    def labelled(self) -> bool:
        return bool(self.label_col or self.onehot or self.isic2017 or self.target_col)

    @property
    def has_meta(self) -> bool:
        return bool(self.age_col or self.sex_col or self.site_col or self.group_cols)


def _first(lower: dict[str, str], names: Sequence[str]) -> str | None:
    for n in names:
        if n in lower:
            return lower[n]
    return None


def detect_layout(columns: Sequence[str], where: str = "CSV") -> Layout:
    """Recognise a CSV layout from its header; raises ``ReaderError`` naming what is missing."""
    cols = tuple(c.strip().lstrip("\ufeff") for c in columns)
    if not any(cols):
        raise ReaderError(f"{where} has no header row (is it empty?)")
    lower: dict[str, str] = {}
    for c in cols:
        lower.setdefault(c.lower(), c)
    id_col = _first(lower, ID_COLS)
    path_col = _first(lower, PATH_COLS)
    found = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
    if id_col is None and path_col is None:
        raise ReaderError(
            f"{where} is missing required columns: no column names the images"
            f"{_image_column_hint(lower)}; expected one of {', '.join((*ID_COLS, 'path'))} "
            f"(found: {found})"
        )
    label_col = _first(lower, LABEL_COLS)
    onehot = _isic2019_class_columns(lower, where, found) if label_col is None else ()
    isic2017 = _isic2017_columns(lower, where, found) if label_col is None else None
    target_col = lower.get("target")
    name, source = _layout_name(lower, onehot=onehot, isic2017=isic2017, id_col=id_col,
                                path_col=path_col, label_col=label_col, target_col=target_col)
    return Layout(
        name=name,
        columns=cols,
        id_col=id_col,
        path_col=path_col,
        label_col=label_col,
        onehot=onehot,
        isic2017=isic2017,
        target_col=target_col,
        age_col=_first(lower, AGE_COLS),
        sex_col=_first(lower, SEX_COLS),
        site_col=_first(lower, SITE_COLS),
        group_cols=tuple(lower[c] for c in GROUP_COLS if c in lower),
        source_col=lower.get("source"),
        default_source=source,
    )


def _image_column_hint(lower: dict[str, str]) -> str:
    """Which known CSV the header looks like, for the error naming its missing image column."""
    if "dx" in lower:
        return " (a HAM10000 metadata CSV needs image_id)"
    if "mel" in lower:
        return " (an ISIC 2019 ground-truth CSV needs image)"
    if "target" in lower:
        return " (a SIIM-ISIC 2020 CSV needs image_name)"
    return ""


def _isic2019_class_columns(lower: dict[str, str], where: str, found: str
                            ) -> tuple[tuple[str, str], ...]:
    """(column, class) pairs of an ISIC 2018/2019 one-hot ground truth (MEL and NV columns,
    no diagnosis column); empty for any other header."""
    if "mel" not in lower or "nv" not in lower:
        return ()
    ak = lower.get("ak") or lower.get("akiec")
    missing = [c for c in ONEHOT_CORE if c.lower() not in lower]
    if ak is None:
        missing.append("AK")
    if missing or ak is None:
        raise ReaderError(
            f"{where} looks like ISIC 2019 ground truth but is missing required class "
            f"columns: {', '.join(missing)} (found: {found})"
        )
    pairs: list[tuple[str, str]] = [(lower[c.lower()], c) for c in ONEHOT_CORE]
    pairs.append((ak, "AK"))
    pairs += [(lower[c], c.upper()) for c in ("scc", "unk") if c in lower]
    return tuple(pairs)


def _isic2017_columns(lower: dict[str, str], where: str, found: str) -> tuple[str, str] | None:
    """The (melanoma, seborrheic_keratosis) columns of an ISIC 2017 ground truth (no diagnosis
    column); None for any other header."""
    if "melanoma" not in lower and "seborrheic_keratosis" not in lower:
        return None
    missing = [c for c in ("melanoma", "seborrheic_keratosis") if c not in lower]
    if missing:
        raise ReaderError(
            f"{where} looks like ISIC 2017 ground truth but is missing required column "
            f"{', '.join(missing)} (found: {found})"
        )
    return lower["melanoma"], lower["seborrheic_keratosis"]


def _layout_name(
    lower: dict[str, str], *, onehot: tuple[tuple[str, str], ...],
    isic2017: tuple[str, str] | None, id_col: str | None, path_col: str | None,
    label_col: str | None, target_col: str | None,
) -> tuple[str, str | None]:
    """The layout's name and the source its rows come from (None: not known from the header),
    by the first rule that matches."""
    unlabelled = label_col is None and not target_col
    isic2018_or_2019 = "isic2018" if "akiec" in lower else "isic2019"
    rules: tuple[tuple[bool, str, str | None], ...] = (
        ("dx" in lower, "ham10000", "ham10000"),
        (bool(onehot), isic2018_or_2019, isic2018_or_2019),
        (isic2017 is not None, "isic2017", "isic2017"),
        ("image_name" in lower and ("anatom_site_general_challenge" in lower
                                    or bool(target_col) or "benign_malignant" in lower),
         "siim2020", "isic2020"),
        (path_col is not None and (id_col is None or "path" in lower), "manifest", None),
        ("anatom_site_general" in lower and unlabelled, "isic2019-meta", "isic2019"),
        ("age_approximate" in lower and unlabelled, "isic2017-meta", "isic2017"),
        (id_col == lower.get("image_id") and "diagnosis" in lower, "dermsight", None),
    )
    return next(((name, source) for hit, name, source in rules if hit), ("generic", None))


# --- parsing one row ---------------------------------------------------------------------------


@dataclass
class ParsedRow:
    """A CSV row in dermsight's vocabulary; ``problems`` lists what could not be used, of
    which ``label_problems`` are about its label (a diagnosis no class is named by, a target
    that disagrees with it). A metadata value that cannot be used is no problem: it is left out
    and noted (``Metadata.notes``, IGNORED), as ``Metadata.lenient`` does."""

    id: str
    path_value: str | None
    label: str | None
    meta: Metadata
    group: str | None
    source: str | None
    problems: list[str] = field(default_factory=list)
    label_problems: list[str] = field(default_factory=list)
    #: the diagnosis cell as given when it names no class ("Halo naevus"); None otherwise
    unknown_diagnosis: str | None = None

    @property
    def blocking(self) -> list[str]:
        """The problems that leave the row without an image to read (no id or path, ...): a
        row with only ``label_problems`` is read, unlabelled."""
        return [p for p in self.problems if p not in self.label_problems]


def _cell(row: dict[str, str | None], col: str | None) -> str:
    if col is None:
        return ""
    value = row.get(col)
    return "" if value is None else str(value).strip()


def _label(row: dict[str, str | None], layout: Layout, problems: list[str]) -> str | None:
    try:
        label = _diagnosis(row, layout)
    except taxonomy.TaxonomyError as exc:
        problems.append(str(exc))
        return None
    return _checked_against_target(row, layout, label, problems)


def _diagnosis(row: dict[str, str | None], layout: Layout) -> str | None:
    """The row's class from its diagnosis column, ISIC 2019 one-hot columns or ISIC 2017
    columns; ``TaxonomyError`` for a value that names none."""
    if layout.label_col:
        raw = _cell(row, layout.label_col)
        return taxonomy.normalize_diagnosis(raw) if raw else None
    if layout.onehot:
        values = {code: _cell(row, col) for col, code in layout.onehot}
        try:
            return taxonomy.from_isic2019_row({k: v or "0" for k, v in values.items()})
        except ValueError as exc:
            if isinstance(exc, taxonomy.TaxonomyError):
                raise
            raise taxonomy.TaxonomyError(
                f"ISIC 2019 class columns must be numbers, got {values}"
            ) from exc
    if layout.isic2017:
        mel, sk = (_cell(row, c) for c in layout.isic2017)
        try:
            return taxonomy.from_isic2017(mel or "0", sk or "0")
        except ValueError as exc:
            raise taxonomy.TaxonomyError(
                f"ISIC 2017 melanoma/seborrheic_keratosis must be numbers, got {mel!r}, {sk!r}"
            ) from exc
    return None


def _checked_against_target(row: dict[str, str | None], layout: Layout, label: str | None,
                            problems: list[str]) -> str | None:
    """The label with a SIIM-ISIC ``target`` (0/1 melanoma) column taken into account: MEL from
    the target alone when nothing else names the class; a disagreement goes to ``problems``."""
    raw_t = _cell(row, layout.target_col) if layout.target_col else ""
    if not raw_t:
        return label
    try:
        target = int(float(raw_t))
        if target not in (0, 1):
            raise ValueError
    except ValueError:
        problems.append(f"target {raw_t!r} is not 0 or 1")
        return label
    if label is None and not layout.label_col and not layout.onehot:
        # Only a binary target: melanoma is known, "benign" is not a class.
        return "MEL" if target == 1 else None
    if label is not None and (label == "MEL") != (target == 1):
        problems.append(f"diagnosis {label} disagrees with target {target}")
    return label


def parse_row(row: dict[str, str | None], layout: Layout, line: int, where: str) -> ParsedRow:
    """Normalise one CSV row; never raises for bad values (they go to ``problems``)."""
    rid = _cell(row, layout.id_col)
    path_value = _cell(row, layout.path_col) or None
    if not rid and path_value:
        rid = Path(path_value).stem
    problems: list[str] = []
    if not rid:
        problems.append("no image id or path")
        rid = f"{where}:{line}"
    label_problems: list[str] = []
    label = _label(row, layout, label_problems)
    problems.extend(label_problems)
    raw_dx = _cell(row, layout.label_col)
    unknown_dx = raw_dx if label_problems and label is None and raw_dx else None
    raw_age, raw_sex, raw_site = (_cell(row, c) for c in (layout.age_col, layout.sex_col,
                                                           layout.site_col))
    group = next((v for c in layout.group_cols if (v := _cell(row, c))), None)
    source = _cell(row, layout.source_col) or layout.default_source
    return ParsedRow(
        id=rid,
        path_value=path_value,
        label=label,
        # a value that cannot be used (age -1, sex "x") is left out, "NaN", an age in other
        # digits, ... read: noted, so that a batch row gets its metadata flags
        meta=Metadata.lenient(raw_age, raw_sex, raw_site),
        group=group,
        source=source,
        problems=problems,
        label_problems=label_problems,
        unknown_diagnosis=unknown_dx,
    )


# --- finding image files -----------------------------------------------------------------------


def walk_tree(root: Path, *, max_depth: int | None = None,
              onerror: Callable[[OSError], None] | None = None,
              on_repeated: Callable[[str, str], None] | None = None,
              ) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(root)`` top-down with hidden folders skipped and folder names sorted (prune
    ``dirnames`` in place to skip more). Links to folders outside ``root`` are followed, as
    Spark's listing follows them, each real folder entered once (a second link to one folder is
    passed over); a link to a folder inside ``root`` is not, since that folder is walked under
    its own path (so its images keep their paths, the resume key, whatever the links' names).
    ``on_repeated(passed_over, read_as)`` (when given) is told of each folder passed over
    because another path led to the same folder first (a second link to it, or a link to a
    folder that holds one already walked), with the path it was walked under (both as the walk
    names them: ``root`` joined with the names below it), in walk order, as the walk passes it.
    ``max_depth``: the folders that deep below ``root`` are walked, none below them."""
    first: dict[str, str] = {}  # real folder -> the path it was walked under
    base_depth = len(root.parts)
    inside = os.path.realpath(root) + os.sep
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        read_as = first.get(real)
        if read_as is not None:
            dirnames[:] = []
            if on_repeated is not None:
                on_repeated(dirpath, read_as)
            continue
        first[real] = dirpath
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".")
            and not (os.path.islink(os.path.join(dirpath, d))
                     and (os.path.realpath(os.path.join(dirpath, d)) + os.sep).startswith(inside)))
        if max_depth is not None and len(Path(dirpath).parts) - base_depth >= max_depth:
            dirnames[:] = []
        yield dirpath, dirnames, filenames


def is_shard_name(name: str) -> bool:
    """A file named like a TFRecord shard (``x.tfrec``, ``x.tfrecord.gz``, any case)."""
    low = name.lower()
    return low.endswith(TFRECORD_EXTS) or low.endswith(tuple(e + ".gz" for e in TFRECORD_EXTS))


def walk_listed(root: Path) -> Iterator[tuple[str, str, str]]:
    """(path, stem, lower-case extension) of every file named like an image or a refused image
    format (``LISTED_EXTS``) in ``root`` and up to ``_MAX_INDEX_DEPTH`` folders below, hidden
    folders skipped, in a stable order (``walk_tree``: links to folders followed, each folder
    once): where a CSV's ids are looked up. Folders that cannot be listed are passed over (the
    ids in them are not found: their rows say so)."""
    for dirpath, _dirnames, filenames in walk_tree(root, max_depth=_MAX_INDEX_DEPTH):
        for fn in sorted(filenames):
            ext = os.path.splitext(fn)[1].lower()
            if ext in _LISTED_RANK:
                yield os.path.join(dirpath, fn), fn[: -len(ext)], ext


class ImageIndex:
    """Finds the file of an image id below a root folder, scanning the tree only when needed.

    Files of refused image formats (``x.heic``) are indexed apart: ``find`` never returns them,
    ``find_refused`` does (for an id without an accepted image, to say what to send instead).
    """

    def __init__(self, root: Path, *, keep_listing: bool = False) -> None:
        self.root = root
        #: the deep walk's files (``walk_listed``), kept for ``listing`` when asked to
        self._walked: list[str] | None = [] if keep_listing else None
        self._walked_all = False
        self._direct: dict[str, str] | None = None
        self._deep: dict[str, str] | None = None
        self._direct_refused: dict[str, str] = {}
        self._deep_refused: dict[str, str] = {}

    @staticmethod
    def _scan(folder: Path, into: dict[str, str], refused: dict[str, str]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            ext = os.path.splitext(e.name)[1].lower()
            if ext in _LISTED_RANK and e.is_file():
                found = into if ext in _EXT_RANK else refused
                stem = e.name[: -len(ext)]
                if preferred(found.get(stem), e.path):
                    found[stem] = e.path

    def _build_direct(self) -> None:
        found: dict[str, str] = {}
        refused: dict[str, str] = {}
        # images/ first so that a file beside the CSV wins on a clash (scanned last, overwrites).
        images: dict[str, str] = {}
        images_refused: dict[str, str] = {}
        for sub in ("images", "Images", "IMAGES"):
            if (self.root / sub).is_dir():
                self._scan(self.root / sub, images, images_refused)
        self._scan(self.root, found, refused)
        self._direct = {**images, **found}
        self._direct_refused = {**images_refused, **refused}

    def _build_deep(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for path, stem, ext in walk_listed(self.root):
            if self._walked is not None:
                self._walked.append(path)
            if ext in _EXT_RANK:
                found.setdefault(stem, path)
            else:
                self._deep_refused.setdefault(stem, path)
        self._walked_all = self._walked is not None
        return found

    def listing(self) -> Iterator[tuple[str, str, str]]:
        """``walk_listed(root)``: from the deep scan when one was made (``keep_listing``),
        without walking the tree again; else by walking it now."""
        if not self._walked_all or self._walked is None:
            yield from walk_listed(self.root)
            return
        for path in self._walked:
            stem, ext = os.path.splitext(os.path.basename(path))
            yield path, stem, ext.lower()

    def find(self, image_id: str) -> str | None:
        return self._lookup(image_id, refused=False)

    def find_refused(self, image_id: str) -> str | None:
        """The file of a refused image format (``x.heic``) for ``image_id``, looked up as
        ``find`` looks up images; for an id that ``find`` found no image for."""
        return self._lookup(image_id, refused=True)

    def _lookup(self, image_id: str, refused: bool) -> str | None:
        """An id with an extension of the kind looked for is that file (beside the CSV or in
        images/); else its stem, in the folder and images/, then anywhere below. ``find`` strips
        only accepted extensions (an id ``x.heic`` is no ``x.jpg``), ``find_refused`` any
        listed one."""
        if self._direct is None:
            self._build_direct()
        assert self._direct is not None
        kinds, strip = (_REFUSED_EXTS, _LISTED_RANK) if refused else (_EXT_RANK, _EXT_RANK)
        stem = image_id
        ext = os.path.splitext(image_id)[1].lower()
        if ext in strip:
            if ext in kinds:
                for cand in (self.root / image_id, self.root / "images" / image_id):
                    if cand.is_file():
                        return str(cand)
            stem = image_id[: -len(ext)]
        hit = (self._direct_refused if refused else self._direct).get(stem)
        if hit is not None:
            return hit
        if self._deep is None:
            self._deep = self._build_deep()
        return (self._deep_refused if refused else self._deep).get(stem)

    def describe(self) -> str:
        return f"{self.root} (and its images/ subfolder and folders below)"


# --- the readers -------------------------------------------------------------------------------


def not_utf8_reason(head: bytes) -> str | None:
    """Why text starting with ``head`` is no UTF-8 CSV, when its first bytes say so: UTF-16
    (Excel's "Unicode text": a byte-order mark, or a NUL byte beside every other character);
    None for anything else (any other byte that is no UTF-8 is found as the lines are read:
    ``not_utf8_error``)."""
    even, odd = head[0::2], head[1::2]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (
            len(head) >= 2 and (even.count(0) * 2 >= len(even) or odd.count(0) * 2 >= len(odd))):
        return "it looks like UTF-16: save it as CSV UTF-8"
    return None


def not_utf8_error(name: str, line: int, data: bytes, exc: UnicodeDecodeError) -> ReaderError:
    """The refusal of the CSV ``name`` whose line ``line`` (``data``: its bytes) is no UTF-8:
    the line, its first such byte and the text around it. A CSV is never read with such bytes
    replaced: a path would name no file, two ids would read as one, a value would be lost."""
    bad = data[exc.start]
    around = data[max(0, exc.start - 20):exc.start + 20].decode("utf-8", "backslashreplace")
    return ReaderError(
        f"{name} is not UTF-8 text (line {line}: byte 0x{bad:02X} in \"{around.strip()}\"; "
        "perhaps it was saved as Windows-1252 / Latin-1, as Excel's \"CSV (Comma delimited)\" "
        "saves it): save it as CSV UTF-8")


class _Lines:
    """The lines of a CSV file as ``csv.reader`` reads them: split at ``\\n``, ``\\r\\n`` or
    ``\\r`` (kept), each decoded as UTF-8 (a byte-order mark dropped). A line that is no UTF-8
    raises ``ReaderError`` naming it (``not_utf8_error``); ``done``: the file is read to its
    end."""

    def __init__(self, fh: IO[bytes], name: str) -> None:
        self._fh = fh
        self._name = name
        self._ready: list[bytes] = []  # lines read, not yet handed out (reversed)
        self._rest = b""  # the start of a line whose end is not read yet
        self._count = 0
        self.done = False
        self.last = ""  # the line handed out last

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        while not self._ready:
            if self.done:
                raise StopIteration
            chunk = self._fh.read(1 << 16)
            parts = (self._rest + chunk).splitlines(keepends=True)
            # the last part may be cut short (or be a \r whose \n comes next): kept for later
            self._rest = parts.pop() if chunk and parts else b""
            self.done = not chunk
            self._ready = parts[::-1]
        data = self._ready.pop()
        self._count += 1
        if self._count == 1 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        try:
            self.last = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise not_utf8_error(self._name, self._count, data, exc) from None
        return self.last


def _open_csv(path: Path) -> tuple[Any, IO[bytes], _Lines]:
    """A ``csv.reader`` over the lines of ``path`` (strict: a quote that opens a field must
    close it, a closing quote must end it), the open file (to close) and its lines."""
    try:
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise ReaderError(f"CSV not found: {path}") from exc
    except OSError as exc:
        raise ReaderError(f"cannot read CSV {path}: {exc.strerror or exc}") from exc
    try:
        head = fh.read(8192)
        fh.seek(0)
    except OSError as exc:
        fh.close()
        raise ReaderError(f"cannot read CSV {path}: {exc.strerror or exc}") from exc
    why = not_utf8_reason(head[:4096])
    if why is not None:
        fh.close()
        raise ReaderError(f"{path.name} is not UTF-8 text ({why})")
    delimiter = ","
    heads = head.splitlines()
    first = heads[0].decode("utf-8", "replace") if heads else ""  # only to count separators
    if first.count(";") > first.count(",") and first.count(";") > 0:
        delimiter = ";"
    elif first.count("\t") > first.count(","):
        delimiter = "\t"
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    lines = _Lines(fh, path.name)
    return csv.reader(lines, delimiter=delimiter, strict=True), fh, lines


def read_header(path: str | os.PathLike[str]) -> Layout:
    """The layout of a CSV file, from its header row alone."""
    p = Path(path)
    reader, fh, _lines = _open_csv(p)
    try:
        try:
            cols = next(reader, None)
        except csv.Error as exc:
            raise ReaderError(f"{p.name} is not a readable CSV: {exc}") from exc
    finally:
        fh.close()
    if not cols:
        raise ReaderError(f"{p.name} is empty: no header row")
    return detect_layout(cols, p.name)


#: every name a column is read by (id, path, label, age, sex, site, group, source, target), in
#: lower case: such a column named twice would be read from one copy only
_ACCEPTED_NAMES = frozenset(c.lower() for c in (
    *ID_COLS, *PATH_COLS, *LABEL_COLS, *AGE_COLS, *SEX_COLS, *SITE_COLS, *GROUP_COLS, "source",
    "target"))
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: what a value holding the separator looks like, by separator
_SEPARATOR_EXAMPLES = {",": "upper extremity, left", ";": "upper extremity; left",
                       "\t": "upper extremity<tab>left"}


def _check_columns(layout: Layout, name: str) -> None:
    """``ReaderError`` for a CSV that names a column it reads twice (any case: columns are
    looked up so), which would be read from one of them only: a column of the layout (id, path,
    label, metadata, group, source, ISIC class columns) or one with an accepted name of one
    (``_ACCEPTED_NAMES``). Other columns named twice (``notes``) are not read: no matter."""
    read = {c.lower() for c in _read_columns(layout)} | _ACCEPTED_NAMES
    seen: dict[str, str] = {}
    for col in layout.columns:
        low = col.lower()
        if not col or low not in read:  # unnamed columns (trailing separators) are not read
            continue
        first = seen.get(low)
        if first is None:
            seen[low] = col
        else:
            both = "" if first == col else f" ({first} and {col})"
            raise ReaderError(f"{name} has the column {col} twice{both}: only one of them would "
                              "be read; rename or remove the other")


def _read_columns(layout: Layout) -> list[str]:
    """The columns of a CSV that its layout reads (id, path, label, metadata, group, source)."""
    unused = set(unused_columns(layout))
    return [c for c in layout.columns if c and c not in unused]


def _shorten(text: str, most: int = 60) -> str:
    text = text.strip()
    return text if len(text) <= most else text[:most - 3] + "..."


def _runs_on(name: str, start: int, end: int, to: str,
             looks: tuple[int, str] | None = None) -> ReaderError:
    """The refusal of a CSV in which a quote opens a field on line ``start`` that runs on to
    ``to`` (line ``end``): the rows in between would be read as part of that field. ``looks``:
    (line, its text) of a line in that field that looks like a row."""
    between = (f"line {start + 1}" if end == start + 1 else f"lines {start + 1}-{end}")
    why = "" if looks is None else f" (line {looks[0]} looks like a row: {_shorten(looks[1])})"
    return ReaderError(
        f"{name} line {start}: a quote (\") opens a field that runs on to {to}, so "
        f"{between} would be read as part of that field, not as rows{why}; close the quote "
        "where the value ends, or remove it (a quote inside a value is written twice, the value "
        "in quotes)")


def _broken_quote(name: str, line: int, col: str | None, text: str, *,
                  runs_on: bool) -> ReaderError:
    """The refusal of a CSV whose line ``line`` has a value (``text``, as written, in the
    column ``col``; None: past the header's columns) whose quote closes before the value ends,
    in a column that is read (``runs_on``: or a later quote on the line opens a value that the
    line does not close)."""
    what = f"the {col} value" if col else "a value past the header's columns"
    more = (", and a later quote (\") on the line opens a value that is not closed on it"
            if runs_on else "")
    return ReaderError(
        f"{name} line {line}: {what} {_shorten(text)} has a quote (\") that closes before the "
        f"value ends{more}, so it cannot be read as written: put the whole value in quotes with "
        "each quote inside it written twice (\"Dr X\" said as \"\"\"Dr X\"\" said\"), or "
        "remove the quotes")


def _split_quoted(line: str, delimiter: str) -> tuple[list[str], list[int], bool]:
    """The fields of the one CSV line ``line`` as written (quotes kept); the fields whose
    quoted value closes before the field ends (``"Dr X" said``, which a lenient reader reads
    as ``Dr X said``); and whether the line ends inside a quoted value."""
    fields: list[str] = []
    broken: list[int] = []
    text = line.rstrip("\r\n")
    state, begin, i = "start", 0, 0
    while i < len(text):
        c = text[i]
        if c == delimiter and state != "quoted":
            fields.append(text[begin:i])
            begin, state = i + 1, "start"
        elif state == "start":
            state = "quoted" if c == '"' else "plain"
        elif state == "quoted" and c == '"':
            if text.startswith('"', i + 1):  # a quote written twice: one quote in the value
                i += 1
            else:
                state = "closed"
        elif state == "closed":  # text after the closing quote, before the separator
            broken.append(len(fields))
            state = "plain"
        i += 1
    fields.append(text[begin:])
    return fields, broken, state == "quoted"


class _CsvRows:
    """(line the row starts on, raw row by column, its number of fields when it has non-empty
    fields beyond the header's, else 0) of each data row of the CSV ``path`` that is not blank;
    ``delimiter``: the CSV's separator, once iterating has begun.

    Raises ``ReaderError``, naming the line, for what would make rows silently wrong or missing:
    a column that is read named twice (``_check_columns``), a line that is no UTF-8
    (``not_utf8_error``), a quote that opens a field and runs on to the end of the file or to
    where the CSV cannot be read, a quoted value of a column the layout reads (id, path, age,
    ...) that runs over several lines, a quoted value of any column that holds a line that
    looks like a row (``_check_lines``: the header's number of fields, and an id, or a path
    when there is no id column, shaped like those of the file's rows), and a quote that
    closes before its value ends (``"Dr X" said``) in a column that is read. A quoted value
    with a line break in a column not read (notes), none of whose lines looks like a row, is
    legal CSV and read as such; a quote closed before its value ends in a column not read,
    the line read on, is read as before this check (``Dr X said``)."""

    def __init__(self, path: Path, layout: Layout) -> None:
        self.path = path
        self.layout = layout
        self.delimiter = ","
        self._read = set(_read_columns(layout))
        key = layout.id_col or layout.path_col
        #: The index of the column whose values tell a row (the id, else the path), and the
        #: shapes (``_shape``) of its values in the rows read so far.
        self._key = layout.columns.index(key) if key in layout.columns else None
        self._shapes: set[str] = set()

    def __iter__(self) -> Iterator[tuple[int, dict[str, str | None], int]]:
        p, layout = self.path, self.layout
        _check_columns(layout, p.name)
        width = len(layout.columns)
        reader, fh, lines = _open_csv(p)
        self.delimiter = reader.dialect.delimiter
        try:
            next(reader, None)  # the header: read_header's
            while True:
                start = reader.line_num + 1
                row = self._next(reader, lines, start)
                if row is None:
                    return
                if not any(v.strip() for v in row):
                    continue  # blank line
                if self._key is not None and self._key < len(row):
                    self._shapes.add(_shape(row[self._key]))
                if reader.line_num > start:
                    self._check_lines(row, start)
                raw: dict[str, str | None] = dict.fromkeys(layout.columns)
                raw.update(zip(layout.columns, row, strict=False))
                extra = len(row) > width and any(v.strip() for v in row[width:])
                yield start, raw, len(row) if extra else 0
        finally:
            fh.close()

    def _next(self, reader: Any, lines: _Lines, start: int) -> list[str] | None:
        """The next row of ``reader`` (None: the end), which starts on line ``start``."""
        try:
            row: list[str] | None = next(reader, None)
        except csv.Error as exc:
            end = reader.line_num
            if end > start:  # only a quote carries a field over a line break
                raise _runs_on(self.path.name, start, end, "the end of the file" if lines.done
                               else f"line {end}, where the CSV cannot be read ({exc})") from exc
            return self._lenient(lines.last, start, exc)
        return row

    def _lenient(self, line: str, n: int, exc: csv.Error) -> list[str]:
        """The row of the line ``line`` (line ``n``), which the strict reader refused with
        ``exc``, read as a lenient reader reads it when a quote closes before its value ends
        only in columns not read (``"Dr X" said`` in notes: ``Dr X said``); else
        ``ReaderError``."""
        fields, broken, open_end = _split_quoted(line, self.delimiter)
        if not broken:
            raise ReaderError(f"{self.path.name} line {n}: malformed CSV: {exc}") from exc
        cols = self.layout.columns
        named = [(i, cols[i] if i < len(cols) else None) for i in broken]
        read = next(((i, c) for i, c in named if c is not None and c in self._read), None)
        if read is not None or open_end:
            i, col = read or named[0]
            raise _broken_quote(self.path.name, n, col, fields[i],
                                runs_on=open_end and read is None) from exc
        return next(csv.reader([line], delimiter=self.delimiter))

    def _check_lines(self, row: list[str], start: int) -> None:
        """``ReaderError`` for a row that starts on line ``start`` and runs over several lines
        when a value that holds a line break is in a column that is read, or holds a line (after
        its first) that looks like a row (``_row_like``). The line named is the one where that
        value's quote opens."""
        cols = self.layout.columns
        opens = start
        for i, value in enumerate(row):
            pieces = _LINE_BREAK.split(value)
            if len(pieces) == 1:
                continue
            col = cols[i] if i < len(cols) else None
            closes = opens + len(pieces) - 1
            to = (f"line {closes} in the {col} value" if col
                  else f"line {closes}, in a value past the header's columns")
            if col is not None and col in self._read:
                raise _runs_on(self.path.name, opens, closes, to)
            row_like = next((k for k, piece in enumerate(pieces[1:], 1)
                             if self._row_like(piece)), None)
            if row_like is not None:
                raise _runs_on(self.path.name, opens, closes, to,
                               looks=(opens + row_like, pieces[row_like]))
            opens = closes

    def _row_like(self, line: str) -> bool:
        """Whether ``line``, one line (after the first) of a value that runs over several
        lines, looks like a row the value swallowed: split by the separator, it has the
        header's number of fields, and its value in the id column (no id column: the path
        column) looks like that column's values in the file's rows: no whitespace, and the
        shape (``_shape``) of one of them, or for a path an image file's name. A note line
        with commas (``Follow-up: 3 months, biopsy``) is no row. Without an id or path
        column: at least as many separators as the header has columns less one."""
        cols = self.layout.columns
        if self._key is None:
            return line.count(self.delimiter) >= len(cols) - 1
        fields = line.split(self.delimiter)
        if len(fields) != len(cols):
            return False
        value = fields[self._key].strip().strip('"')
        if not value or any(c.isspace() for c in value):
            return False
        if self.layout.id_col is None:
            return value.lower().endswith(LISTED_EXTS)
        return _shape(value) in self._shapes


def _shape(value: str) -> str:
    """The shape of an id: each run of letters as ``a``, each run of digits as ``9``, other
    characters kept (``ISIC_0024306``: ``a_9``; ``a1``: ``a9``)."""
    return re.sub(r"[0-9]+", "9", re.sub(r"[^\W\d_]+", "a", value.strip()))


def _extra_fields_error(name: str, rows: Sequence[tuple[int, int]], width: int,
                        delimiter: str = ",") -> ReaderError:
    """The refusal of a CSV (separator ``delimiter``) whose rows ``rows`` ((line, number of
    fields) each) have more non-empty fields than its header has columns."""
    shown = ", ".join(f"line {line} ({n})" for line, n in rows[:UNLISTED_SHOWN])
    more = f" and {len(rows) - UNLISTED_SHOWN} more" if len(rows) > UNLISTED_SHOWN else ""
    many = len(rows) != 1
    example = _SEPARATOR_EXAMPLES.get(delimiter, f"upper extremity{delimiter} left")
    return ReaderError(
        f"{name}: {len(rows)} row{'s' if many else ''} {'have' if many else 'has'} more "
        f"fields than the header's {width} columns ({shown}{more}): a value that holds the "
        f"separator without quotes ({example}) moves the values after it to other "
        "columns; put such values in quotes, or remove the extra fields")


def check_manifest(path: str | os.PathLike[str]) -> None:
    """Read the CSV ``path`` once to its end, touching no image file, and raise ``ReaderError``
    for what would make its rows silently wrong or missing (``_CsvRows``: a column that is read
    named twice, a line that is no UTF-8, a quote that opens a field running on over the rows
    after it, a quote closed before its value ends in a column that is read) and for rows with
    more non-empty fields than the header has columns (all of them named, up to
    ``UNLISTED_SHOWN``); and for what ``read_header`` refuses. The batch runners call it on
    their input's CSVs before any output is made (``batch.sources.open_source``); the readers
    (``iter_csv_raw``) raise the same errors at the row, for their callers that do not."""
    p = Path(path)
    layout = read_header(p)
    rows = _CsvRows(p, layout)
    extra = [(line, n) for line, _raw, n in rows if n]
    if extra:
        raise _extra_fields_error(p.name, extra, len(layout.columns), rows.delimiter)


def iter_csv_raw(
    path: str | os.PathLike[str],
) -> Iterator[tuple[int, dict[str, str | None], ParsedRow]]:
    """Stream (CSV line number, raw row, parsed row) without touching the image files. What
    ``check_manifest`` refuses raises ``ReaderError`` here too, when its row is reached."""
    p = Path(path)
    layout = read_header(p)
    rows = _CsvRows(p, layout)
    for line, raw, n in rows:
        if n:
            raise _extra_fields_error(p.name, [(line, n)], len(layout.columns), rows.delimiter)
        yield line, raw, parse_row(raw, layout, line, p.name)


def iter_csv_rows(path: str | os.PathLike[str]) -> Iterator[tuple[int, ParsedRow]]:
    """Stream (CSV line number, parsed row) without touching the image files."""
    for line, _raw, parsed in iter_csv_raw(path):
        yield line, parsed


def _load_side_meta(paths: Sequence[Path]) -> dict[str, ParsedRow]:
    """Metadata-only CSVs (no labels) by image id, to fill in what the label CSV lacks."""
    side: dict[str, ParsedRow] = {}
    for p in paths:
        for _line, parsed in iter_csv_rows(p):
            side.setdefault(parsed.id, parsed)
    return side


def _merge(primary: ParsedRow, extra: ParsedRow | None) -> ParsedRow:
    if extra is None:
        return primary
    primary.meta = primary.meta.fill_from(extra.meta)
    primary.group = primary.group or extra.group
    primary.problems.extend(extra.problems)
    primary.label_problems.extend(extra.label_problems)
    return primary


#: the names of a folder's dataset CSV (any case): one that cannot be read is an error, never
#: skipped as other unreadable CSVs are (its images would be read without their metadata)
DATASET_CSV_NAMES = ("metadata.csv", "metadata.tsv")


def _folder_csv_layout(folder: Path, p: Path) -> Layout | None:
    """The layout of a CSV in a folder; None for one that is not a dataset CSV (pixel dumps,
    result tables), which the folder's readers skip. A ``metadata.csv`` whose header cannot be
    read raises ``ReaderError`` naming it, the reason and the way out."""
    try:
        return read_header(p)
    except ReaderError as exc:
        if p.name.lower() in DATASET_CSV_NAMES:
            raise ReaderError(
                f"data folder {folder}: {exc} (fix it, or move it out of the folder to use the "
                "images without metadata)"
            ) from exc
        return None


def folder_error(folder: Path, exc: OSError) -> ReaderError:
    """The one-line error for a folder that cannot be listed (no read or search permission)."""
    return ReaderError(f"cannot read folder {folder}: {exc.strerror or exc}")


def _csv_files(folder: Path) -> list[Path]:
    """The CSV / TSV files of a folder, sorted; ``ReaderError`` when it cannot be listed."""
    try:
        return [p for p in sorted(folder.iterdir())
                if p.suffix.lower() in (".csv", ".tsv") and p.is_file()]
    except OSError as exc:
        raise folder_error(folder, exc) from exc


def classify_csvs(folder: Path) -> tuple[Path | None, list[Path]]:
    """Pick the dataset CSV of a folder and the label-less metadata CSVs to join to it.

    A CSV whose header cannot be read is skipped, except a ``metadata.csv`` (or ``.tsv``, any
    case): that one raises ``ReaderError`` (``_folder_csv_layout``)."""
    labelled: list[Path] = []
    meta_only: list[Path] = []
    other: list[Path] = []
    for p in _csv_files(folder):
        layout = _folder_csv_layout(folder, p)
        if layout is None:
            continue
        if layout.labelled:
            labelled.append(p)
        elif layout.name in ("isic2019-meta", "isic2017-meta"):
            meta_only.append(p)
        else:
            other.append(p)
    if len(labelled) > 1:
        named = [p for p in labelled if p.name.lower() == "metadata.csv"]
        if len(named) == 1:
            return named[0], meta_only
        raise ReaderError(
            f"{folder} has several label CSVs ({', '.join(p.name for p in labelled)}): "
            "pass the one to read"
        )
    if labelled:
        return labelled[0], meta_only
    if len(other) == 1:
        return other[0], meta_only
    if len(other) > 1:
        raise ReaderError(
            f"{folder} has several CSVs ({', '.join(p.name for p in other)}): "
            "pass the one to read"
        )
    if meta_only:
        return meta_only[0], meta_only[1:]
    return None, []


def unusable_label(parsed: ParsedRow) -> str | None:
    """What a row gives as its label when that cannot be used (``LesionRecord.label_invalid``):
    the diagnosis as written when it names no class, else why the label cannot be used (a
    target that disagrees with it); None for a row whose label can be used or is not given."""
    if not parsed.label_problems:
        return None
    return parsed.unknown_diagnosis or "; ".join(parsed.label_problems)


def _record(parsed: ParsedRow, path: str | None = None, error: str | None = None) -> LesionRecord:
    return LesionRecord(
        id=parsed.id,
        image=None,
        meta=parsed.meta,
        label=parsed.label,
        source=parsed.source,
        path=path,
        group=parsed.group,
        error=error,
        label_invalid=unusable_label(parsed) if parsed.label is None else None,
    )


def iter_csv(
    csv_path: str | os.PathLike[str],
    *,
    decode: bool = True,
    limits: DecodeLimits | None = None,
    meta_csvs: Sequence[str | os.PathLike[str]] = (),
    image_root: str | os.PathLike[str] | None = None,
    index: ImageIndex | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[LesionRecord]:
    """Records of one CSV; images looked up below ``image_root`` (default: the CSV's folder),
    with ``index`` when given (an ``ImageIndex`` of that folder).

    A row whose label cannot be used (an unknown diagnosis, a target that disagrees with it) is
    read without a label; a metadata value that cannot be used is left out (noted IGNORED).
    ``on_warning`` (when given) is told, one line each: before the rows, which of age, sex and
    site no column gives (``missing_metadata_message``); after them, the rows read without
    their label (``unusable_labels_message``)."""
    p = Path(csv_path)
    layout = read_header(p)  # a CSV without the needed columns fails here, before any row
    side_csvs = [Path(m) for m in meta_csvs]
    if on_warning is not None:
        missing = missing_metadata_message(p.name, layout, [read_header(m) for m in side_csvs])
        if missing is not None:
            on_warning(missing)
    side = _load_side_meta(side_csvs)
    root = Path(image_root) if image_root is not None else p.parent
    index = index or ImageIndex(root)
    limits = limits or DecodeLimits()
    unlabelled: list[str] = []  # rows read without their label: where, and why
    for line, parsed in iter_csv_rows(p):
        parsed = _merge(parsed, side.get(parsed.id))
        where = f"{p.name} line {line} ({parsed.id})"
        given: Path | None = None
        if parsed.path_value is not None:
            cand = Path(os.path.expanduser(parsed.path_value))
            given = cand if cand.is_absolute() else root / cand
        if parsed.blocking:  # an error row keeps its path (the CSV's, or the file of its id),
            # so that a batch re-run recognises it
            found = str(given) if given is not None else (index.find(parsed.id)
                                                          if parsed.id else None)
            yield _record(parsed, path=found, error=f"{where}: {'; '.join(parsed.problems)}")
            continue
        if parsed.label_problems:  # the image is read all the same: unlabelled
            unlabelled.append(f"line {line} ({parsed.id}): {'; '.join(parsed.label_problems)}")
            parsed.label = None
        if given is not None:
            file = given
            if not file.exists() and not file.is_symlink():
                yield _record(parsed, path=str(file),
                              error=f"{where}: image file not found: {file}")
                continue
            file_str: str | None = str(file)  # not a regular file: the reader says so
        else:
            file_str = index.find(parsed.id)
            if file_str is None:
                refused = index.find_refused(parsed.id)
                # no path, as for a missing file: the file sent instead (x.jpg for x.heic)
                # replaces the error row when the job is run again (resume retries by id)
                yield _record(parsed, error=(
                    f"{where}: {refused_file_reason(refused)}" if refused is not None else
                    f"{where}: image file not found ({parsed.id} with any of "
                    f"{'/'.join(IMAGE_EXTS)} in {index.describe()})"))
                continue
        if file_str is not None:
            _dicom_source(parsed, file_str, limits)
        yield _load(_record(parsed, path=file_str), decode, limits, where)
    if unlabelled and on_warning is not None:
        on_warning(unusable_labels_message(p.name, unlabelled))


def _dicom_source(parsed: ParsedRow, file: str, limits: DecodeLimits) -> None:
    """A row whose file is named as a DICOM file (``.dcm``, ``.dicom``) gets the source and
    group that the folder reader gives it (``dicom.read_dicom``): source ``dicom``, group the
    pseudonym of the file's PatientID (``dicom.patient_pseudonym``, never the PatientID itself;
    its header read, not its pixels), where the CSV gives none: the CSV's own values (a
    ``source`` or group column, an ISIC layout's source) win, and are used as given (a CSV's
    group column is not pseudonymised). A header that cannot be read gives no group (decoding
    the file says why)."""
    if not file.lower().endswith((".dcm", ".dicom")) or (parsed.source and parsed.group):
        return
    if not parsed.group:
        from dermsight.io.dicom import dicom_group

        parsed.group = dicom_group(file, limits)
    parsed.source = parsed.source or "dicom"


def unused_columns(layout: Layout) -> list[str]:
    """The columns of a CSV that no part of its layout reads (neither id, path, label, age,
    sex, site, group nor source), in the CSV's order."""
    used = {layout.id_col, layout.path_col, layout.label_col, layout.target_col, layout.age_col,
            layout.sex_col, layout.site_col, layout.source_col, *layout.group_cols,
            *(col for col, _code in layout.onehot), *(layout.isic2017 or ())}
    return [c for c in layout.columns if c and c not in used]


def missing_metadata_message(csv_name: str, layout: Layout, side: Sequence[Layout] = ()
                             ) -> str | None:
    """The warning for a CSV (with the metadata CSVs ``side`` joined to it) in which no column
    gives the age, the sex or the site: what is missing, the column names read as each, and the
    CSV's columns that are not read (a misnamed one, such as ``age_years``, is among them);
    None when all three are given."""
    wanted = (("age", AGE_COLS, "age_col"), ("sex", SEX_COLS, "sex_col"),
              ("site", SITE_COLS, "site_col"))
    missing = [(what, names) for what, names, attr in wanted
               if not any(getattr(lay, attr) for lay in (layout, *side))]
    if not missing:
        return None
    whats = [what for what, _names in missing]
    accepted = "; ".join(f"{what}: {', '.join(names)}" for what, names in missing)
    unused = unused_columns(layout)
    return (f"{csv_name} has no {_listed(whats, 'or')} column (read as {accepted}): its images "
            f"are read without {_listed(whats, 'and')}"
            + (f"; its columns not read: {', '.join(unused)}" if unused else ""))


def _listed(words: Sequence[str], last: str) -> str:
    """``a``, ``a or b``, ``a, b or c`` (``last``: the word before the last one)."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def unusable_labels_message(csv_name: str, rows: Sequence[str]) -> str:
    """The warning for the rows of a CSV whose label cannot be used (``rows``: ``line N (id):
    why`` each): their images are read all the same, without a label."""
    n = len(rows)
    return (f"{n} row{'s' if n != 1 else ''} of {csv_name} {'have' if n != 1 else 'has'} a "
            f"label that cannot be used ({rows[0]}{', ...' if n > 1 else ''}): "
            f"{'their images are' if n != 1 else 'its image is'} read without a label")


def _load(rec: LesionRecord, decode: bool, limits: DecodeLimits, where: str) -> LesionRecord:
    if not decode:
        return rec
    assert rec.path is not None
    try:
        rec.image = decode_image(rec.path, limits)
    except ImageDecodeError as exc:
        rec.error = f"{where}: {Path(rec.path).name}: {exc.reason}"
    return rec


def iter_image_folder(
    folder: str | os.PathLike[str],
    *,
    decode: bool = True,
    limits: DecodeLimits | None = None,
    recursive: bool = True,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[LesionRecord]:
    """A folder without a CSV: every image file (sorted) becomes a record with id = file stem.

    DICOM files (``.dcm``) carry their own metadata, which is read from the header. A folder
    below that cannot be listed (no read or search permission) becomes an error record named by
    its path below ``folder``: the images in it are not silently missing. TFRecord shards in
    folders below are not read: ``on_warning`` (when given) gets one line that says so
    (``nested_shards_message``), once the folder is read. A folder reached by a second path
    (two links to one folder outside ``folder``) is read once, under the path that reached it
    first: ``on_warning`` gets one line that names the paths passed over
    (``repeated_folders_message``), once the folder is read, before the shards' line.
    """
    from dermsight.io.dicom import read_dicom

    root = Path(folder)
    limits = limits or DecodeLimits()
    shards: list[str] | None = [] if on_warning is not None else None
    repeated: list[tuple[str, str]] | None = [] if on_warning is not None else None
    for f, why in image_entries(root, recursive=recursive, shards=shards, repeated=repeated):
        where = str(f.relative_to(root))
        if why is not None:
            yield LesionRecord(id=where, image=None, path=str(f), error=(
                f"{where}{os.sep}: cannot read this folder ({why}): the images in it, if any, "
                "were not read"))
            continue
        if f.suffix.lower() in (".dcm", ".dicom"):
            yield read_dicom(f, limits, decode=decode)
            continue
        rec = LesionRecord(id=f.stem, image=None, path=str(f))
        yield _load(rec, decode, limits, where)
    if repeated and on_warning is not None:
        on_warning(repeated_folders_message(root, repeated))
    if shards and on_warning is not None:
        on_warning(nested_shards_message(root, shards))


def repeated_folders_message(root: Path, repeated: Sequence[tuple[str, str]]) -> str:
    """The warning for the folders below the folder input ``root`` that its reading passed
    over because another path led to the same folder first (``image_entries``' ``repeated``):
    each folder passed over and the path its images are listed under, relative to ``root``
    (``.``: the input folder itself; the first ``UNLISTED_SHOWN``, then ``...``)."""

    def named(read: str) -> str:
        return "the input folder itself" if read == "." else read

    n = len(repeated)
    if n == 1:
        (skipped, read), = repeated
        return (f"{skipped} in {root} leads to a folder already read as {named(read)}: its "
                f"images are listed once, under {named(read)}, not again under {skipped}")
    shown = ", ".join(f"{skipped} (read as {named(read)})"
                      for skipped, read in repeated[:UNLISTED_SHOWN])
    return (f"{n} linked folders in {root} lead to folders already read under another path: "
            f"their images are listed once, under that path, not again: {shown}"
            + (", ..." if n > UNLISTED_SHOWN else ""))


def nested_shards_message(root: Path, shards: Sequence[str]) -> str:
    """The warning for TFRecord shards in folders below a folder input, which are not read
    (only the shards at the top of the input folder are)."""
    n = len(shards)
    names = [os.path.relpath(s, root) for s in shards]
    shown = ", ".join(names[:UNLISTED_SHOWN]) + (", ..." if n > UNLISTED_SHOWN else "")
    return (f"{n} TFRecord shard{'s' if n != 1 else ''} in folders below {root} "
            f"{'are' if n != 1 else 'is'} not read (only the shards at the top of the input "
            f"folder are): {shown}; give the folder that holds them as the input to read them")


def unlistable_reason(path: str | os.PathLike[str]) -> str | None:
    """Why the folder ``path`` cannot be listed (``"Permission denied"``); None for a folder
    that can, or anything that is no folder."""
    if not os.path.isdir(path):  # a file, or one that cannot be looked at: the reader says
        return None
    try:
        with os.scandir(path):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def iter_image_files(root: Path, *, recursive: bool = True) -> Iterator[Path]:
    """Entries named like images below ``root`` in a stable order (hidden ones skipped).

    Every such name is yielded, whatever it is (a FIFO, socket, device, broken link or a folder
    named ``x.jpg``), so that the reader turns it into an error row instead of silently dropping
    it; only regular files are ever read (``io.files.read_regular_file``). Folders named like
    images are still searched. Files of image formats that are refused (``x.gif``, ``x.heic``,
    ``x.avif``, ...: ``decode.REFUSED_IMAGE_EXTS``) are listed too, so that they become error
    rows saying what to send instead; other files (``.txt``, ``.csv``, ...) are skipped. A
    folder below ``root`` that cannot be listed (no read or search permission) is yielded too,
    whatever its name (``image_entries`` says which, and why); ``root`` itself raises
    ``ReaderError``.
    """
    for path, _why in image_entries(root, recursive=recursive):
        yield path


def image_entries(root: Path, *, recursive: bool = True, shards: list[str] | None = None,
                  repeated: list[tuple[str, str]] | None = None,
                  ) -> Iterator[tuple[Path, str | None]]:
    """``iter_image_files``'s entries, each with why it is a folder that cannot be listed
    (``"Permission denied"``), or None. Only the folders the walk reports, and folders named
    like images, are looked at again: a file costs no system call beyond the walk's. Links to
    folders are followed, each real folder walked once (``walk_tree``). ``shards`` (when given)
    receives the TFRecord shards found in folders below ``root`` (not read with the images);
    ``repeated`` (when given) the folders passed over because another path led to the same
    folder first (``walk_tree``'s ``on_repeated``), as ``(path passed over, path read)``
    relative to ``root``, in walk order (``repeated_folders_message`` says them)."""
    listed = frozenset(LISTED_EXTS)
    if not recursive:
        try:
            with os.scandir(root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise folder_error(root, exc) from exc
        for e in entries:
            if os.path.splitext(e.name)[1].lower() in listed and not e.name.startswith("."):
                yield Path(e.path), (unlistable_reason(e.path) if e.is_dir() else None)
        return
    unreadable: list[OSError] = []
    named_dirs: set[str] = set()  # folders named like images, already yielded
    top = str(root)

    def passed_over(path: str, read_as: str) -> None:
        if repeated is not None:
            repeated.append((os.path.relpath(path, top), os.path.relpath(read_as, top)))

    for dirpath, dirnames, filenames in walk_tree(
            root, onerror=unreadable.append,
            on_repeated=passed_over if repeated is not None else None):
        yield from _unreadable_folders(root, unreadable, named_dirs)
        if shards is not None and dirpath != top:
            shards.extend(os.path.join(dirpath, fn) for fn in sorted(filenames)
                          if is_shard_name(fn) and not fn.startswith("."))
        dirs = {d for d in dirnames if os.path.splitext(d)[1].lower() in listed}
        for fn in sorted([*filenames, *dirs] if dirs else filenames):
            if os.path.splitext(fn)[1].lower() in listed and not fn.startswith("."):
                path = os.path.join(dirpath, fn)
                if fn in dirs:
                    named_dirs.add(path)
                    yield Path(path), unlistable_reason(path)
                else:
                    yield Path(path), None
    yield from _unreadable_folders(root, unreadable, named_dirs)


def _unreadable_folders(root: Path, errors: list[OSError], named_dirs: set[str]
                        ) -> Iterator[tuple[Path, str | None]]:
    """The folders ``os.walk`` could not list since the last call (``errors`` is emptied), with
    why, except those named like images (yielded already); ``root`` itself raises
    ``ReaderError``."""
    while errors:
        exc = errors.pop(0)
        folder = Path(exc.filename) if exc.filename is not None else root
        if folder == root:
            raise folder_error(root, exc) from exc
        if os.fspath(exc.filename) not in named_dirs:
            yield folder, exc.strerror or str(exc)


#: how many of the image files a CSV does not list its warning names
UNLISTED_SHOWN = 5


@dataclass(frozen=True)
class UnlistedImages:
    """The image files of a data folder that its CSV does not list (neither by id nor by path):
    no row is made for them, by design (the CSV is the listing), so the user is told instead."""

    folder: str
    csv: str
    files: tuple[str, ...]  # paths below ``folder``, sorted

    def message(self, consequence: str) -> str:
        """The warning, with what the caller does not do with these files (``"not scored"``,
        ``"not counted"``, ``"not used for training"``)."""
        n = len(self.files)
        shown = ", ".join(self.files[:UNLISTED_SHOWN]) + (", ..." if n > UNLISTED_SHOWN else "")
        many = n != 1
        return (f"{n} image file{'s' if many else ''} in {self.folder} {'are' if many else 'is'} "
                f"not listed in {self.csv} ({consequence}): {shown}")


def warn(message: str) -> None:
    """One ``warning:`` line on stderr, written around a progress bar that is showing: how the
    readers tell the user what an input leaves out (``iter_records``' ``on_warning``)."""
    from tqdm import tqdm

    tqdm.write(f"warning: {message}", file=sys.stderr)


def warn_unlisted(unlisted: UnlistedImages, consequence: str) -> None:
    """One ``warning:`` line on stderr (``warn``) that says ``unlisted.message(consequence)``."""
    warn(unlisted.message(consequence))


class _Listed:
    """What a CSV's records named: their ids and their files, to tell which image files of the
    folder no row lists."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.paths: list[str] = []

    def add(self, rec: LesionRecord) -> None:
        self.ids.add(rec.id)
        if rec.path is not None:  # a file named by the id is listed by it: its path not kept
            name = os.path.basename(rec.path)
            if name != rec.id and os.path.splitext(name)[0] != rec.id:
                self.paths.append(rec.path)


def unlisted_images(root: Path, csv_name: str, ids: Collection[str], paths: Iterable[str] = (),
                    listing: Iterable[tuple[str, str, str]] | None = None) -> UnlistedImages:
    """The image files below ``root`` (``listing``, default ``walk_listed(root)``: an
    ``ImageIndex``'s ``listing()`` walks no folder twice; hidden files skipped) that a CSV lists
    neither by id (``ids``: a file's stem or name, as written) nor by path (``paths``)."""
    candidates = [
        path for path, stem, _ext in (walk_listed(root) if listing is None else listing)
        if stem not in ids and not (name := os.path.basename(path)).startswith(".")
        and name not in ids]
    if candidates:  # rare: only then are the paths the rows gave compared
        given = {os.path.normpath(os.path.abspath(p)) for p in paths}
        candidates = [c for c in candidates if os.path.normpath(os.path.abspath(c)) not in given]
    files = sorted(os.path.relpath(path, root) for path in candidates)
    return UnlistedImages(str(root), csv_name, tuple(files))


def iter_folder(
    folder: str | os.PathLike[str],
    *,
    decode: bool = True,
    limits: DecodeLimits | None = None,
    on_unlisted: Callable[[UnlistedImages], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[LesionRecord]:
    """A dataset folder: its CSV (plus joined metadata CSVs), or just its images
    (``on_warning``: see ``iter_csv`` and ``iter_image_folder``).

    The image files that the CSV does not list (by id or path; ``walk_listed`` says where they
    are looked for) get no record. With ``on_unlisted`` (e.g. ``warn_unlisted`` with the
    caller's consequence), once the CSV's rows are all read, they are looked for and handed to
    it, when there are any; without, they are not looked for (a caller that has told the user
    already, on an earlier pass, pays no second walk)."""
    root = Path(folder)
    primary, meta = classify_csvs(root)
    if primary is None:
        yield from iter_image_folder(root, decode=decode, limits=limits, on_warning=on_warning)
        return
    if on_unlisted is None:
        yield from iter_csv(primary, decode=decode, limits=limits, meta_csvs=meta,
                            image_root=root, on_warning=on_warning)
        return
    index = ImageIndex(root, keep_listing=True)
    listed = _Listed()
    for rec in iter_csv(primary, decode=decode, limits=limits, meta_csvs=meta, image_root=root,
                        index=index, on_warning=on_warning):
        listed.add(rec)
        yield rec
    unlisted = unlisted_images(root, primary.name, listed.ids, listed.paths, index.listing())
    if unlisted.files:
        on_unlisted(unlisted)


def count_rows(csv_path: str | os.PathLike[str]) -> int:
    """Data rows of a CSV (for a progress bar total); cheap, no parsing of values."""
    n = 0
    with Path(csv_path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return max(n - 1, 0)
