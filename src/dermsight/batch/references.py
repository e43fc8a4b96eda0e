"""Where a batch row's image is: bytes in the row, a local file, a TFRecord reference, a URL.

``row_image`` turns a row's ``image`` / ``path`` into something ``Dermsight.decode`` takes
(bytes, a local path, or the pixels of a TFRecord record); the facade then decodes it (DICOM
tags included) exactly as it does for the web API and ``dermsight predict``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dermsight.io.errors import ImageDecodeError
from dermsight.io.sizes import size_text

if TYPE_CHECKING:
    from dermsight.io.decode import DecodeLimits
    from dermsight.predict import ImageInput

_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(path: str) -> bool:
    """True for URLs that need fsspec (``s3://``, ``gs://``, ...); ``file://`` is local."""
    return bool(_REMOTE.match(path)) and not path.startswith("file://")


def local_path(path: str) -> str:
    """Strip a ``file:`` URI prefix (as Spark writes paths) to a plain local path."""
    if path.startswith("file://"):
        return path[len("file://"):]
    if path.startswith("file:"):
        return path[len("file:"):]
    return path


def read_remote(url: str, storage_options: Mapping[str, Any] | None, max_bytes: int) -> bytes:
    """The bytes at ``url`` (fsspec, the ``[s3]`` extra), at most ``max_bytes``.
    Raises ``ImageDecodeError`` saying why they cannot be read."""
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - depends on the install profile
        raise ImageDecodeError(
            f"cannot read {url}: remote paths need the [s3] extra (pip install 'dermsight[s3]')"
        ) from exc
    try:
        with fsspec.open(url, "rb", **dict(storage_options or {})) as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"file not found: {url}") from exc
    except ImportError as exc:
        raise ImageDecodeError(f"cannot read {url}: {exc}") from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {url}: {exc}") from exc
    if len(data) > max_bytes:
        raise ImageDecodeError(f"file too large: more than the limit of {size_text(max_bytes)}")
    return bytes(data)


def row_image(
    image: bytes | None, path: str | None, storage_options: Mapping[str, Any] | None,
    limits: DecodeLimits,
) -> ImageInput:
    """What to decode for a row: its ``image`` bytes when given, else what ``path`` names (a
    URL's bytes, a TFRecord record's pixels, or the local file). Raises ``ImageDecodeError``."""
    if image is not None:
        return image
    if path is None:
        raise ImageDecodeError("row has neither image bytes nor a path")
    if is_remote(path):
        return read_remote(path, storage_options, limits.max_bytes)
    from dermsight.io.tfrecord import load_tfrecord_image, split_ref

    if split_ref(path) is not None:
        return load_tfrecord_image(path, limits)
    return local_path(path)
