"""The heatmap overlays a batch job writes (``--heatmaps``): one ``<id>.png`` per assessed image
(``<id>-2.png``, ``<id>-3.png``, ... for later rows whose name was already taken), named in the
output's ``heatmap`` column.

The runners plan the names on the one thread that lists the input (``plan_names``, in input
order), before any scoring thread or Spark task sees a row, so that names are unique over the
whole job, whatever the partitioning; names held by rows already in the output (a resumed run)
and the names of the files already in the folder (``taken_names``: listed once, when the run
starts) are never given, so an overlay never replaces a file: not the user's (e.g. the input
images themselves, when a manifest lists PNGs named ``<id>.png`` in that folder), not another
output's overlays, not those of a killed run whose rows were never written (the rows are
scored again and get new names; the old files stay, named by no row).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from itertools import chain
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from dermsight import heatmap
from dermsight.batch.schema import row_id
from dermsight.batch.store import OutputError
from dermsight.io.files import BROKEN_LINK, unwritable_reason

#: Largest side of the image copy kept for overlays (bounds memory per row).
HEATMAP_MAX_SIDE = 512
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 180  # characters of a file name made of an id
#: The suffix of an overlay file.
SUFFIX = ".png"


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The image at most ``HEATMAP_MAX_SIDE`` px on its long side (what an overlay is drawn on)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= HEATMAP_MAX_SIDE:
        return rgb
    from PIL import Image

    scale = HEATMAP_MAX_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def safe_name(rid: str) -> str:
    """A file name made of ``rid`` (characters a file system could misread replaced; a long id
    cut to 180 characters and a hash of the whole id, so two long ids keep apart)."""
    name = _UNSAFE.sub("_", rid).strip("._") or "image"
    if len(name) <= _MAX_NAME:
        return name
    return f"{name[:_MAX_NAME - 9]}-{hashlib.sha256(rid.encode()).hexdigest()[:8]}"


def numbered(stem: str, n: int) -> str:
    """``stem-n``: the ``n``-th name of ``stem`` (``safe_name``'s), cut so that it is at most
    ``safe_name``'s 180 characters; so a numbered name of a long id is an overlay name too
    (``is_overlay_name``), as its first name is."""
    tag = f"-{n}"
    return stem[:_MAX_NAME - len(tag)] + tag


def make_folder(folder: Path) -> str | None:
    """Create ``folder`` (and its parents) for overlays: None when it can be written to, else
    why not (a short phrase)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file, or a link that leads nowhere
        why = unwritable_reason(folder, folder=True)
        return why if why is not None and BROKEN_LINK in why else "a file is in the way"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if unwritable_reason(folder, folder=True) is None else "not writable"


class UniqueNames:
    """File names handed out once each (thread-safe): a name already given in this run gets
    ``-2``, ``-3``, ... before its suffix, so two inputs never share a file. Compared without
    case, as some file systems do. ``taken``: names already in use (never handed out)."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._used: set[str] = {name.casefold() for name in taken}
        self._lock = threading.Lock()

    def claim(self, stem: str, suffix: str) -> str:
        """``stem + suffix``, else the first of ``stem-2 + suffix``, ``stem-3 + suffix``, ...
        not used yet (``numbered``: a long stem cut so that the number fits)."""
        with self._lock:
            name, n = f"{stem}{suffix}", 1
            while name.casefold() in self._used:
                n += 1
                name = numbered(stem, n) + suffix
            self._used.add(name.casefold())
            return name

    def reserve(self, name: str) -> None:
        """Mark ``name`` as used (a name given out elsewhere, e.g. planned by the driver)."""
        with self._lock:
            self._used.add(name.casefold())

    def reserve_all(self, names: Iterable[str]) -> None:
        """Mark ``names`` as used (e.g. the files already in a folder)."""
        with self._lock:
            self._used.update(name.casefold() for name in names)


def existing_names(folder: str | os.PathLike[str]) -> Iterator[str]:
    """The names of the entries of ``folder`` that an overlay's name could equal (those ending
    in ``.png``, in any case), read lazily from one ``os.scandir`` opened now; none when
    ``folder`` does not exist yet (or is no folder: the ``HeatmapWriter`` refuses it). Raises
    ``OutputError`` when it cannot be listed (its files could not be kept apart)."""
    try:
        entries = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return iter(())
    except OSError as exc:
        raise OutputError(f"--heatmaps {folder}: cannot list it: "
                          f"{exc.strerror or exc}") from exc
    return _png_names(entries)


def _png_names(listing: AbstractContextManager[Iterator[os.DirEntry[str]]]) -> Iterator[str]:
    with listing as entries:  # an ``os.scandir`` iterator: closed when done
        for entry in entries:
            if entry.name.casefold().endswith(SUFFIX):
                yield entry.name


def taken_names(folder: str | os.PathLike[str], held: Iterable[str]) -> Iterator[str]:
    """The names an overlay of this run must not get (``plan_names``' ``taken``): ``held``,
    those the output's rows hold, and those of the files already in ``folder`` (listed once,
    now: ``existing_names``), so that no overlay replaces a file that no row of this output
    names as its own, whoever wrote it."""
    return chain(held, existing_names(folder))


def is_overlay_name(name: object) -> TypeGuard[str]:
    """True for a file name that ``plan_names`` / ``UniqueNames`` could have made (a safe stem
    and ``.png``: no folder, nothing hidden), so that writing to it stays in the folder."""
    if not isinstance(name, str) or not name.endswith(SUFFIX):
        return False
    stem = name[: -len(SUFFIX)]
    return bool(stem) and safe_name(stem) == stem


def plan_names(rows: Iterable[Mapping[str, Any]],
               taken: Iterable[str] = ()) -> Iterator[dict[str, Any]]:
    """The rows, in order, each with the file name its overlay gets if one is written
    (``heatmap``: ``<id>.png``, ``<id>-2.png``, ... unique over all the rows and apart from
    ``taken``). Rows that already carry an error get none (they are never scored)."""
    names = UniqueNames(taken)
    del taken  # held as casefolded names by ``names``: not twice for the whole run
    for row in rows:
        planned = (None if row.get("error") is not None
                   else names.claim(safe_name(row_id(row)), SUFFIX))
        yield {**row, "heatmap": planned}


class HeatmapWriter:
    """Writes ``<id>.png`` overlays into a folder (from worker threads when given a pool)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.names = UniqueNames()
        self._listed = False  # the folder's files taken into ``names`` (on the first need)
        self._list_lock = threading.Lock()
        if (why := make_folder(self.folder)) is not None:
            raise OutputError(f"--heatmaps {folder}: cannot write overlays there: {why}")

    def name_for(self, rid: str, planned: object = None) -> str:
        """The file name of ``rid``'s overlay: ``planned`` (the name ``plan_names`` gave its
        row) when it is one, else a name unique among this writer's (``<id>.png``, ...) and
        apart from the files already in the folder (listed once, for the first such row)."""
        if is_overlay_name(planned):
            self.names.reserve(planned)
            return planned
        with self._list_lock:
            if not self._listed:
                self.names.reserve_all(existing_names(self.folder))
                self._listed = True
        return self.names.claim(safe_name(rid), SUFFIX)

    def write(self, rid: str, thumb: np.ndarray, cam: np.ndarray, name: str | None = None,
              ) -> Path:
        """Write ``rid``'s overlay into the file ``name`` (from ``name_for``; default: a new
        name for ``rid``); returns the file written."""
        png = heatmap.png_bytes(heatmap.overlay(thumb, heatmap.normalize_cam(cam)))
        if name is None:
            name = self.name_for(rid)
        elif not is_overlay_name(name):
            raise ValueError(f"not an overlay file name: {name!r}")
        final = self.folder / name
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, final)
        return final
