"""Silence image/DICOM libraries' own log records: they can quote values read from an untrusted
file (DICOM tag values are PHI; TIFF/EXIF fields are the uploader's data). dermsight reports what
went wrong itself, as an ``ImageDecodeError`` with its own wording."""

from __future__ import annotations

import logging


class _DropRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def silence_logger(name: str) -> None:
    """Nothing from logger ``name`` or its children is emitted or reaches the application's
    handlers (a filter alone would not stop the children, hence level + no propagation)."""
    quiet = logging.getLogger(name)
    quiet.setLevel(logging.CRITICAL + 1)
    quiet.addFilter(_DropRecords())
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
