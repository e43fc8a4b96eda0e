"""Metadata merging shared by the API and the CLI (no web imports, so the CLI stays light)."""

from __future__ import annotations

from dermsight.records import Metadata


def merge_meta(given: Metadata, tags: Metadata) -> Metadata:
    """Values the user gave win; DICOM tag values fill the fields the user left empty."""
    return Metadata(
        age=given.age if given.age is not None else tags.age,
        sex=given.sex if given.sex is not None else tags.sex,
        site=given.site if given.site is not None else tags.site,
    )
