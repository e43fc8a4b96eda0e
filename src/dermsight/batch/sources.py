"""What a batch job reads: any input the readers know, or a remote prefix / manifest via fsspec.

``open_source(input)`` returns a :class:`Source` whose ``rows()`` streams one dict per lesion
(``id``, ``path``, ``age``, ``sex``, ``site``, ``label``, ``group``, ``source``, ``error``) without
decoding a single pixel: the image is read later, in parallel, by ``scorer.prepare_row``.

Local inputs go through ``dermsight.io.iter_records(path, decode=False)`` (image folders, ISIC CSV
layouts and manifests, DICOM files, TFRecord shards), so the batch runners understand exactly
what the rest of dermsight does. Remote inputs (``s3://bucket/prefix/``, ``gs://...``, a remote
``manifest.csv``) need the ``[s3]`` extra: the prefix is listed with fsspec and its CSV rows are
parsed by the same CSV reader code. A remote CSV is fetched and checked as a local one is
(``check_remote_csv``) before the job makes its output folder; that copy is kept on the
``Source`` (in a temporary folder, removed by ``Source.close`` or when the source is dropped) and
its rows are read from it on each pass, not fetched or checked again.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermsight.batch.references import is_remote, local_path
from dermsight.io.csvfolder import UnlistedImages, warn_unlisted
from dermsight.io.errors import ReaderError
from dermsight.records import LesionRecord

ROW_KEYS: tuple[str, ...] = ("id", "path", "age", "sex", "site", "meta_notes", "label", "group",
                             "source", "error")


def record_row(rec: LesionRecord) -> dict[str, Any]:
    """A lazy reader record -> the input row ``score_frame`` reads."""
    return {
        "id": rec.id,
        "path": rec.path,
        "age": rec.meta.age,
        "sex": rec.meta.sex,
        "site": rec.meta.site,
        "meta_notes": rec.meta.notes_text(),
        "label": rec.label,
        "group": rec.group,
        "source": rec.source,  # the data source the input names (None: it names none)
        "error": rec.error,
    }


def row_key(rid: object, path: object) -> tuple[str, str]:
    """The key of a row for resuming: (id, source path; "" when it has none). A key listed
    several times is told apart by its order (``resume.pending``)."""
    p = "" if path is None or (isinstance(path, float) and path != path) else str(path)
    return (str(rid), local_path(p))


class DuplicateIds:
    """Counts input rows whose id an earlier row of the same input already had. Such rows are
    all scored, once each (resume tells them apart by path and order); the runner warns once
    with the count."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.count = 0

    def watch(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            rid = str(row.get("id"))
            if rid in self.seen:
                self.count += 1
            else:
                self.seen.add(rid)
            yield row


@dataclass
class Source:
    """A batch input: where it is, what kind it is and how many rows it probably has."""

    input: str
    kind: str
    estimate: int | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    _unlisted_checked: bool = field(default=False, init=False, repr=False, compare=False)
    #: A remote input's CSV, fetched and checked by ``open_source``: (its remote path, the
    #: local copy, the temporary folder that holds it). None: fetched when its rows are read.
    _csv_copy: tuple[str, Path, tempfile.TemporaryDirectory[str]] | None = field(
        default=None, init=False, repr=False, compare=False)

    def close(self) -> None:
        """Remove the local copy of a remote input's CSV, if any (it is also removed when the
        source is dropped, or at exit)."""
        if self._csv_copy is not None:
            self._csv_copy[2].cleanup()
            self._csv_copy = None

    @property
    def remote(self) -> bool:
        return self.kind.startswith("remote")

    def rows(self, *, check_unlisted: bool = True) -> Iterator[dict[str, Any]]:
        """The input's rows. The first full pass also says what the input leaves out, one
        ``warning:`` line each (``csvfolder.warn``): in a folder with a CSV, the image files
        the CSV does not list (``not scored``); in a CSV, local or remote, the rows whose label
        cannot be used and the age, sex or site no column gives; in a folder of images, once
        its rows are listed, the linked folders passed over because another path led to the
        same folder first (``csvfolder.repeated_folders_message``: the reading walk itself
        finds them, no second walk) and the TFRecord shards below it, not read. Later passes
        (a resumed run lists its input up to three times), and a pass with ``check_unlisted``
        False (the caller has warned already), say nothing and do not walk the folder for
        them."""
        from dermsight.io.csvfolder import warn

        check = check_unlisted and not self._unlisted_checked
        if self.remote:
            copy = None if self._csv_copy is None else self._csv_copy[:2]
            yield from _remote_rows(self.input, self.storage_options,
                                    on_warning=warn if check else None, checked=copy)
            self._unlisted_checked = self._unlisted_checked or check
            return
        from dermsight.io import iter_records

        for rec in iter_records(self.input, decode=False,
                                on_unlisted=_warn_not_scored if check else None):
            yield record_row(rec)
        self._unlisted_checked = self._unlisted_checked or check


def _warn_not_scored(unlisted: UnlistedImages) -> None:
    warn_unlisted(unlisted, "not scored")


def open_source(input: str | os.PathLike[str],
                storage_options: Mapping[str, Any] | None = None) -> Source:
    """Recognise a batch input. Raises ``ReaderError`` when it cannot be read at all."""
    text = os.fspath(input)
    opts = dict(storage_options or {})
    if is_remote(text):
        fs, root = _fs(text, opts)
        try:
            is_file = fs.isfile(root)
        except Exception as exc:  # network/credential errors become one line
            raise ReaderError(f"cannot list {text}: {type(exc).__name__}: {exc}") from exc
        if is_file:
            if not root.lower().endswith((".csv", ".tsv")):
                raise ReaderError(
                    f"{text}: a remote input must be a prefix of image files or a CSV manifest"
                )
            source = Source(text, "remote-csv", None, opts)
            source._csv_copy = check_remote_csv(fs, root)
            return source
        source = Source(text, "remote-prefix", None, opts)
        source._csv_copy = check_remote_csv(fs, root, prefix=True, url=text)
        return source
    from dermsight.io import detect_kind, estimate_count

    p = Path(text).expanduser().resolve()
    kind = detect_kind(p)
    estimate = estimate_count(p)
    if estimate == 0:  # a wrong or empty folder / CSV: not a job of 0 rows that "succeeds"
        raise ReaderError(f"no images found in {p}: give a folder of images (.jpg, .png, ... or "
                          ".dcm), a CSV that lists images, DICOM files or TFRecord shards")
    check_csvs(p, kind)
    return Source(str(p), kind, estimate, opts)


def check_csvs(path: Path, kind: str) -> None:
    """Read the CSVs that the local input ``path`` (of ``detect_kind``'s ``kind``) is read from
    to their end, before anything is scored or written: the CSV itself, or a folder's CSV and
    the metadata CSVs joined to it. Raises ``ReaderError`` for one whose rows would be silently
    wrong or missing (``csvfolder.check_manifest``: a stray quote that runs on over the rows
    after it, a line that is no UTF-8, a column named twice, rows with more fields than the
    header). ``open_source`` calls it, so that such an input stops the job before its output
    folder is made."""
    from dermsight.io.csvfolder import check_manifest, classify_csvs

    if kind == "csv":
        csvs = [path]
    elif kind == "folder":
        primary, meta = classify_csvs(path)
        csvs = [] if primary is None else [primary, *meta]
    else:
        return
    for csv_file in csvs:
        check_manifest(csv_file)


def check_remote_csv(fs: Any, root: str, *, prefix: bool = False, url: str | None = None,
                     ) -> tuple[str, Path, tempfile.TemporaryDirectory[str]] | None:
    """``check_csvs`` for a remote input: the CSV ``root`` (``prefix``: the one CSV at the top
    of the prefix ``root``, which its rows are read from; none: a prefix of images),
    fetched and read to its end, so that one whose rows would be silently wrong or missing
    stops the job before its output folder is made; as does a prefix that cannot be listed
    or has several CSVs at its top (``_top_csvs``; ``url``: the prefix as given). Returns
    (the CSV's remote path, its checked local copy, the temporary folder that holds it: the
    caller removes it), or None for a prefix of images."""
    from dermsight.io.csvfolder import check_manifest

    csv_path = root
    if prefix:
        top = _top_csvs(fs, root, url or fs.unstrip_protocol(root))
        if not top:
            return None
        csv_path = top[0]
    tmp = tempfile.TemporaryDirectory(prefix="dermsight-manifest-")
    try:
        local = _fetch_csv(fs, csv_path, Path(tmp.name))
        check_manifest(local)
    except BaseException:
        tmp.cleanup()
        raise
    return csv_path, local, tmp


def _top_csvs(fs: Any, root: str, url: str) -> list[str]:
    """The CSV (none or one) at the top of the remote prefix ``root`` (``url`` as given), which
    its rows are read from; ``ReaderError`` when the prefix cannot be listed or has several."""
    try:
        top = [str(f) for f in fs.ls(root, detail=False)
               if str(f).lower().endswith((".csv", ".tsv"))]
    except FileNotFoundError as exc:
        raise ReaderError(f"not found: {url}") from exc
    except Exception as exc:  # credentials, network: one readable line
        raise ReaderError(f"cannot list {url}: {type(exc).__name__}: {exc}") from exc
    if len(top) > 1:
        raise ReaderError(
            f"{url} has several CSVs ({', '.join(posixpath.basename(t) for t in top)}): "
            "pass the one to read"
        )
    return top


def _fetch_csv(fs: Any, csv_path: str, folder: Path) -> Path:
    """The remote CSV ``csv_path``, copied into the local folder ``folder`` under its name;
    ``ReaderError`` when it cannot be fetched."""
    local = folder / posixpath.basename(csv_path)
    try:
        fs.get(csv_path, str(local))
    except FileNotFoundError as exc:
        raise ReaderError(f"CSV not found: {fs.unstrip_protocol(csv_path)}") from exc
    except Exception as exc:  # network/credential errors become one line
        raise ReaderError(f"cannot read {fs.unstrip_protocol(csv_path)}: "
                          f"{type(exc).__name__}: {exc}") from exc
    return local


# --- remote inputs (fsspec) ---------------------------------------------------------------------


def _fs(url: str, opts: Mapping[str, Any]) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as exc:
        raise ReaderError(
            f"{url}: remote inputs need the [s3] extra (pip install 'dermsight[s3]')"
        ) from exc
    try:
        fs, root = fsspec.core.url_to_fs(url, **dict(opts))
    except (ImportError, ValueError) as exc:
        raise ReaderError(f"{url}: {exc}") from exc
    return fs, str(root).rstrip("/")


def _image_files(fs: Any, root: str) -> list[str]:
    """Image files below a remote prefix, including refused formats (``x.gif``, ``x.heic``:
    they become error rows saying what to send instead, as in a local folder)."""
    from dermsight.io.csvfolder import LISTED_EXTS

    try:
        found = fs.find(root)
    except FileNotFoundError as exc:
        raise ReaderError(f"not found: {root}") from exc
    except Exception as exc:
        raise ReaderError(f"cannot list {root}: {type(exc).__name__}: {exc}") from exc
    names = [f for f in found if os.path.splitext(f)[1].lower() in LISTED_EXTS
             and not posixpath.basename(f).startswith(".")]
    return sorted(names)


def _remote_rows(url: str, opts: Mapping[str, Any], *,
                 on_warning: Callable[[str], None] | None = None,
                 checked: tuple[str, Path] | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a remote prefix or CSV (``on_warning``: see ``_remote_csv_rows``;
    ``checked``: its CSV's remote path and a local copy already checked, read instead of
    fetching it again)."""
    fs, root = _fs(url, opts)
    if checked is not None:
        yield from _remote_csv_rows(fs, checked[0], opts, on_warning=on_warning,
                                    local_copy=checked[1])
        return
    if fs.isfile(root):
        yield from _remote_csv_rows(fs, root, opts, on_warning=on_warning)
        return
    top = _top_csvs(fs, root, url)
    if top:
        yield from _remote_csv_rows(fs, top[0], opts, on_warning=on_warning)
        return
    files = _image_files(fs, root)
    if not files:
        raise ReaderError(f"no image files found under {url}")
    for f in files:
        yield {
            "id": posixpath.splitext(posixpath.basename(f))[0],
            "path": fs.unstrip_protocol(f),
            "age": None, "sex": None, "site": None, "label": None, "group": None,
            "source": None, "error": None,
        }


def _remote_path(fs: Any, base: str, value: str) -> str:
    """A remote CSV's ``path`` value as a URL: a URL as it is, an absolute path on the CSV's
    file system, else a path relative to the CSV's folder ``base``."""
    if is_remote(value):
        return value
    if value.startswith("/"):
        return str(fs.unstrip_protocol(value))
    return str(fs.unstrip_protocol(posixpath.normpath(posixpath.join(base, value))))


def _remote_csv_rows(fs: Any, csv_path: str, opts: Mapping[str, Any], *,
                     on_warning: Callable[[str], None] | None = None,
                     local_copy: Path | None = None) -> Iterator[dict[str, Any]]:
    """A remote CSV (manifest or ISIC layout): parsed by the CSV reader; images are the CSV's
    ``path`` values (absolute URLs, or relative to the CSV) or found by id below its folder.
    As in a local CSV, only a row without an image to read is an error row: a label that cannot
    be used leaves the row unlabelled, a metadata value that cannot be used is left out (noted:
    ``meta_notes``). ``on_warning`` (when given) is told what a local CSV's reader tells
    (``csvfolder.iter_csv``), in the same words: before the rows, which of age, sex and site no
    column gives; after them, the rows read without their label. The CSV is read to its end
    before its first row is yielded: one whose rows would be silently wrong or missing
    (``csvfolder.check_manifest``) raises ``ReaderError`` before any row is scored. A DICOM file
    it names gets no source or group from its header (a local CSV's does): that would fetch
    each file once more before scoring; the CSV's own values are kept. ``local_copy``: a local
    copy of the CSV that ``check_remote_csv`` fetched and checked, read as it is."""
    from dermsight.io.csvfolder import (
        IMAGE_EXTS,
        check_manifest,
        iter_csv_rows,
        refused_file_reason,
        unusable_labels_message,
    )

    base = posixpath.dirname(csv_path)
    with tempfile.TemporaryDirectory(prefix="dermsight-manifest-") as tmp:
        if local_copy is not None:  # fetched and checked by open_source
            local = local_copy
        else:
            local = _fetch_csv(fs, csv_path, Path(tmp))
            check_manifest(local)  # read to its end before its first row is scored
        if on_warning is not None:  # as a local CSV's reader says it, before the rows
            _warn_missing_metadata(local, on_warning)
        index: dict[str, str] | None = None  # id -> its file (accepted images first)
        unlabelled: list[str] = []  # rows read without their label: where, and why
        for line, parsed in iter_csv_rows(local):
            where = f"{local.name} line {line} ({parsed.id})"
            row: dict[str, Any] = {
                "id": parsed.id, "path": None, "age": parsed.meta.age, "sex": parsed.meta.sex,
                "site": parsed.meta.site, "meta_notes": parsed.meta.notes_text(),
                "label": parsed.label, "group": parsed.group, "source": parsed.source,
                "error": None,
            }
            if parsed.blocking:  # the row keeps the path its CSV gave, if any
                row["error"] = f"{where}: {'; '.join(parsed.problems)}"
            elif parsed.label_problems:  # scored all the same, unlabelled (as a local CSV's)
                unlabelled.append(f"line {line} ({parsed.id}): "
                                  f"{'; '.join(parsed.label_problems)}")
                row["label"] = None
            if parsed.path_value is not None:
                row["path"] = _remote_path(fs, base, parsed.path_value)
            elif parsed.id:  # found by id (an error row too: it keeps its path for resuming)
                if index is None:
                    index = _remote_index(fs, base)
                hit = index.get(parsed.id)
                if hit is not None and hit.lower().endswith(IMAGE_EXTS):
                    row["path"] = fs.unstrip_protocol(hit)
                elif row["error"] is None:
                    # only a refused format (x.heic): say what to send instead; no path, as for
                    # a missing file, so that the file sent instead replaces the error row
                    row["error"] = (f"{where}: {refused_file_reason(hit)}" if hit is not None
                                    else f"{where}: image file not found ({parsed.id} under "
                                    f"{fs.unstrip_protocol(base)})")
            yield row
        if unlabelled and on_warning is not None:
            on_warning(unusable_labels_message(local.name, unlabelled))


def _remote_index(fs: Any, base: str) -> dict[str, str]:
    """Image id -> its file below the remote folder ``base`` (accepted images first)."""
    from dermsight.io.csvfolder import preferred

    index: dict[str, str] = {}
    for f in _image_files(fs, base):
        stem = posixpath.splitext(posixpath.basename(f))[0]
        if preferred(index.get(stem), f):
            index[stem] = f
    return index


def _warn_missing_metadata(csv_file: Path, on_warning: Callable[[str], None]) -> None:
    """Tell ``on_warning`` which of age, sex and site no column of the CSV gives (the local
    reader's words: ``csvfolder.missing_metadata_message``), if any."""
    from dermsight.io.csvfolder import missing_metadata_message, read_header

    missing = missing_metadata_message(csv_file.name, read_header(csv_file))
    if missing is not None:
        on_warning(missing)
