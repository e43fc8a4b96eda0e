"""Exception types for reading images and datasets."""

from __future__ import annotations


class ImageDecodeError(ValueError):
    """An image that cannot be used; ``reason`` is a sentence a person understands
    (e.g. "not an image", "truncated JPEG", "image too large: 40000x40000")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReaderError(ValueError):
    """A dataset (CSV, DICOM, TFRecord) that cannot be read at all (not a single bad row)."""
