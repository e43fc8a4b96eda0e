"""Metadata merging shared by the API and the CLI (no web imports, so the CLI stays light)."""

from __future__ import annotations

from dermsight.records import Metadata


def merge_meta(given: Metadata, tags: Metadata) -> Metadata:
    """Values the user gave win; DICOM tag values fill the fields the user left empty (a tag
    that could not be used is noted, and flagged, only for a field the user left empty)."""
    return given.fill_from(tags)
