"""Sizes in bytes as every reader's messages say them (the image decoder, the regular-file
reader, DICOM): KB and MB of 1024, the unit of ``DERMSIGHT_MAX_DECODE_MB`` and of the
``DERMSIGHT_MAX_IMAGE_BYTES`` default (20 MB = 20,971,520 bytes).

Here, with no imports of its own, so that ``io/files.py`` (imported by ``io/decode.py``) and
``io/dicom.py`` (which imports ``io/decode.py``) can both use it without an import cycle;
``io/decode.py`` re-exports the names.
"""

from __future__ import annotations

import math

__all__ = ["MIB", "size_pair", "size_text", "too_large_text"]

MIB = 1024 * 1024


def size_text(n: int) -> str:
    """``n`` bytes as the decoder's messages say them: ``900 bytes``, ``1.4 KB`` (one decimal),
    ``259 MB`` (MB and KB of 1024: ``DERMSIGHT_MAX_DECODE_MB``'s unit). Rounded down, so a limit
    is never shown larger than it is; and never a non-zero size as ``0 MB``."""
    if n < 1024:
        return f"{n:,} byte{'' if n == 1 else 's'}"
    if n < MIB:
        return f"{math.floor(n / 1024 * 10) / 10:.1f}".removesuffix(".0") + " KB"
    return f"{n // MIB} MB"


def size_pair(size: int, limit: int) -> tuple[str, str]:
    """``size`` and the ``limit`` it is over, as ``size_text`` says them; exact byte counts
    where the two would read the same (not ``20 MB (limit 20 MB)``)."""
    shown, cap = size_text(size), size_text(limit)
    if shown == cap:
        shown, cap = f"{size:,} bytes", f"{limit:,} bytes"
    return shown, cap


def too_large_text(size: int, limit: int) -> str:
    """``file too large: 1.1 KB (limit 1,000 bytes)``; exact byte counts where the two would
    read the same (not ``20 MB (limit 20 MB)``)."""
    shown, cap = size_pair(size, limit)
    return f"file too large: {shown} (limit {cap})"
