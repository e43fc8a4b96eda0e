"""Visit images and heatmaps as files named by their content sha256, in a folder or ``s3://``.

Writes are crash-safe: a local file is written under a temporary name and renamed into place
(an S3 PUT is atomic by itself), and only then is the visit row committed. A server killed in
between leaves at most a file no row references; ``sweep`` (run at start) deletes those once
they are older than a grace period (another instance may be between the two steps right now).
Files are shared by content: a file is deleted only when no row references it any more.

The sweep only ever deletes the store's own files: names ``<64 hex digits>.<ext>``
(``OWN_NAME``) and its temporary files (``.tmp-<hex digits>``). Any other file in the folder
(a document, a dot file) is left alone and counted (``Sweep.foreign``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"
#: the names of the files ``put`` stores (``key_for``) and of its temporary files
OWN_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,8}")
TMP_NAME = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{1,32}")


#: what ``ImageStore.probe`` writes (4 KiB: one block of a usual file system)
PROBE_BYTES = bytes(4096)


def _unlink_quietly(path: str, strict: bool = False) -> None:
    """Delete ``path``; a file already gone is fine. Any other failure of the delete is ignored
    too (after a failed write, the write's error is the one to report), unless ``strict``."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        if strict:
            raise


def is_own(name: str) -> bool:
    """Whether ``name`` is a file this store writes (an image/heatmap or a temporary file)."""
    return bool(OWN_NAME.fullmatch(name) or TMP_NAME.fullmatch(name))


@dataclass
class Unreferenced:
    """The store's files no row references and older than the grace period."""

    #: stored images/heatmaps (``OWN_NAME``), with their age in seconds
    files: dict[str, float] = field(default_factory=dict)
    #: temporary files left by an interrupted write
    temporary: list[str] = field(default_factory=list)
    #: files in the folder that are not the store's own (never deleted)
    foreign: int = 0
    #: the store's own image/heatmap files, referenced or not
    own_total: int = 0


class ImageStore:
    def __init__(self, root: str, storage_options: Mapping[str, object] | None = None) -> None:
        import fsspec

        self.root = root.rstrip("/")
        #: called with the ``OSError`` of a failed ``put`` or ``get`` (``routes/health.py``)
        self.on_failure: Callable[[OSError], None] | None = None
        self.fs: Any
        self.fs, self._base = fsspec.core.url_to_fs(self.root, **dict(storage_options or {}))
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                                else (self.fs.protocol,))
        if self.local:  # a new folder is the server user's only (files: 0600, see put)
            Path(self._base).parent.mkdir(parents=True, exist_ok=True)
            Path(self._base).mkdir(mode=0o700, exist_ok=True)
        else:
            self.fs.makedirs(self._base, exist_ok=True)

    def _path(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad image key {key!r}")
        return f"{self._base}/{key}"

    @staticmethod
    def key_for(data: bytes, ext: str) -> str:
        return f"{hashlib.sha256(data).hexdigest()}.{ext}"

    def put(self, data: bytes, ext: str) -> str:
        """Store ``data`` (atomically) and return its key; an existing identical file is kept."""
        key = self.key_for(data, ext)
        path = self._path(key)
        if self.local:
            try:
                if os.path.exists(path):
                    os.utime(path)  # fresh mtime: the sweep's grace period covers this visit too
                    return key
                tmp = self._write_temporary(data)
                try:
                    os.replace(tmp, path)
                except OSError:
                    _unlink_quietly(tmp)
                    raise
            except OSError as exc:
                self._failed(exc)
                raise
        else:
            try:
                self.fs.pipe_file(path, data)
            except OSError as exc:
                self._failed(exc)
                raise
        return key

    def _write_temporary(self, data: bytes) -> str:
        """``data`` written and fsynced to a new temporary file (``.tmp-<hex>``, mode 0600) in the
        local folder; its path. A write that fails (a full disk: ``ENOSPC``) removes the
        temporary file before the error goes on, so that none is left behind."""
        tmp = f"{self._base}/{TMP_PREFIX}{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp

    def _failed(self, exc: OSError) -> None:
        """Tell ``on_failure`` (the health check's memory of storage failures) of ``exc``."""
        if self.on_failure is not None:
            self.on_failure(exc)

    def probe(self) -> None:
        """Write, fsync and delete a small temporary file (no patient data) in a local folder,
        as ``put`` writes an image: ``OSError`` when it cannot (a full disk, a read-only or
        removed folder). Nothing is written to an ``s3://`` store. A probe file left by a
        process killed in between is a temporary file the start-up sweep deletes."""
        if not self.local:
            return
        _unlink_quietly(self._write_temporary(PROBE_BYTES), strict=True)

    def get(self, key: str) -> bytes:
        """The stored bytes; ``NotFound`` (404) when the file is gone (e.g. its patient was
        deleted while the same image was being uploaded), never a bare ``FileNotFoundError``; an
        ``OSError`` (a storage failure, 503) when a local store's whole folder is gone (an
        unmounted disk): then no file can be said to be missing."""
        from dermsight.clinic.cases import NotFound

        try:
            data: bytes = self.fs.cat_file(self._path(key))
        except FileNotFoundError as exc:
            if self.local and not os.path.isdir(self._base):  # the whole folder is gone
                missing = OSError(f"the image store's folder {self._base} is missing (is its "
                                  "disk mounted?)")
                self._failed(exc)
                raise missing from exc
            raise NotFound("the stored image is missing from the image store") from None
        except OSError as exc:
            self._failed(exc)
            raise
        return data

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            # another instance may delete the same file at the same moment (retention)
            with contextlib.suppress(FileNotFoundError):
                if self.fs.exists(path):
                    self.fs.rm_file(path)

    def keys(self) -> list[str]:
        """Every file in the store (temporary files included)."""
        if self.local:
            return sorted(os.listdir(self._base))
        self.fs.invalidate_cache(self._base)
        return sorted(p.rsplit("/", 1)[-1] for p in self.fs.find(self._base))

    def _age_s(self, name: str) -> float:
        path = f"{self._base}/{name}"
        if self.local:
            return time.time() - os.path.getmtime(path)
        return time.time() - self.fs.modified(path).timestamp()

    def unreferenced(self, referenced: set[str], grace_s: float) -> Unreferenced:
        """The store's own files no row references, older than ``grace_s`` (deletes nothing)."""
        found = Unreferenced()
        for name in self.keys():
            if not is_own(name):
                found.foreign += 1
                continue
            temporary = TMP_NAME.fullmatch(name) is not None
            if not temporary:
                found.own_total += 1
            if name in referenced:
                continue
            try:
                age = self._age_s(name)
            except FileNotFoundError:
                continue
            if age < grace_s:
                continue
            if temporary:
                found.temporary.append(name)
            else:
                found.files[name] = age
        return found

    def remove(self, names: Iterable[str]) -> list[str]:
        """Delete the store's own files among ``names`` (others are skipped); those deleted."""
        removed = []
        for name in names:
            if not is_own(name):
                continue
            try:
                self.fs.rm_file(f"{self._base}/{name}")
            except FileNotFoundError:
                continue
            removed.append(name)
        return removed

    def sweep(self, referenced: set[str], grace_s: float) -> list[str]:
        """Delete the store's own files no row references (and stale temporary files) older
        than ``grace_s``, without the safety checks of ``Clinic.sweep``; files that are not the
        store's own are never deleted."""
        found = self.unreferenced(referenced, grace_s)
        return self.remove([*found.files, *found.temporary])
