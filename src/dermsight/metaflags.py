"""Non-blocking flags for metadata that was accepted but not used as given (``Metadata.notes``).

The flag names the fields, never the values, so no patient data is echoed into responses, batch
outputs or logs.
"""

from __future__ import annotations

from dermsight.gate import Flag
from dermsight.records import IGNORED, NORMALISED, Metadata

METADATA_IGNORED = "metadata_ignored"
METADATA_NORMALISED = "metadata_normalised"

_MESSAGES = {
    IGNORED: (METADATA_IGNORED,
              "{fields}: the value given could not be used and was treated as not given"),
    NORMALISED: (METADATA_NORMALISED,
                 "{fields}: the value given was not written as plain digits and was read as the "
                 "number it denotes; check it"),
}


def metadata_flags(meta: Metadata) -> list[Flag]:
    """One flag per kind of note (ignored, normalised), naming the fields concerned."""
    flags = []
    for kind, (code, message) in _MESSAGES.items():
        fields = sorted({name for name, what in meta.notes if what == kind})
        if fields:
            flags.append(Flag(code, message.format(fields=", ".join(fields)), blocking=False))
    return flags
