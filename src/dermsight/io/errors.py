"""Exception types for reading images and datasets, and for the batch output folder written
from them (``OutputError``: here, beside the others, so that the CLI maps all three to one
line and exit code 2 without importing the batch store)."""

from __future__ import annotations

import errno

from dermsight.errors import DermsightError

#: ``OSError`` numbers of the file system rather than of the command: a full disk or quota, a
#: file size limit, a read-only or failing disk. ``cli.errors.run_guarded`` reports them as one
#: line, exit code 2; in a batch run they stop the run the way an ``OutputFailure`` does.
DISK_ERRNOS: frozenset[int] = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


class ImageDecodeError(DermsightError, ValueError):
    """An image that cannot be used; ``reason`` is a sentence a person understands
    (e.g. "not an image", "truncated JPEG", "image too large: 40000x40000")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReaderError(DermsightError, ValueError):
    """A dataset (CSV, DICOM, TFRecord) that cannot be read at all (not a single bad row)."""


class OutputError(DermsightError):
    """A batch output folder that cannot be used (locked, mixed formats, not a folder, rows of
    another model or bundle, scored the other way with respect to TTA)."""
