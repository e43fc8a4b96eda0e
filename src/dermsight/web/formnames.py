"""The names an upload route accepts, and the message for any other name.

A misspelt field (``agee=30``) must not be dropped in silence: the model would run without the
patient's age and only ``input.age: null`` in the answer would show it. So the upload routes
answer 422 naming each unknown form field or query parameter, the closest accepted name and all
accepted names. The accepted form fields are read from the route's OpenAPI request body, so the
documentation and the check cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from typing import Any


def form_fields(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The field names of a hand-written ``multipart/form-data`` OpenAPI request body."""
    schema = body["content"]["multipart/form-data"]["schema"]
    return tuple(schema["properties"])


def _one(name: str, accepted: Sequence[str]) -> str:
    by_lower = {a.lower(): a for a in accepted}
    close = get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"'{name}' (did you mean '{by_lower[close[0]]}'?)" if close else f"'{name}'"


def unknown_names_message(unknown: Sequence[str], accepted: Sequence[str], what: str) -> str:
    """``unknown form field 'agee' (did you mean 'age'?); accepted form fields: image, age, ...``

    ``unknown`` are the names as they may be shown (already made printable); ``what`` is the
    singular noun ("form field", "query parameter")."""
    noun = what if len(unknown) == 1 else f"{what}s"
    names = ", ".join(_one(n, accepted) for n in unknown)
    allowed = (f"accepted {what}s: {', '.join(accepted)}" if accepted
               else f"this route takes no {what}s")
    return f"unknown {noun} {names}; {allowed}"
