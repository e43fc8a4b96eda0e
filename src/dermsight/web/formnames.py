"""The names an upload route accepts, and the message for any other name.

A misspelt field (``agee=30``) must not be dropped in silence: the model would run without the
patient's age and only ``input.age: null`` in the answer would show it. So the upload routes
answer 422 naming each unknown form field or query parameter, the closest accepted name and all
accepted names. The accepted form fields are read from the route's OpenAPI request body, so the
documentation and the check cannot drift apart. A name given twice (``?heatmap=true&heatmap=false``)
is a 422 too: which value would apply is not for the server to guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
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


def repeated_names_message(names: Iterable[str], what: str) -> str | None:
    """``query parameter 'heatmap' is given more than once`` for the names that occur more than
    once in ``names`` (every occurrence, as it may be shown); ``None`` when none does. ``what`` is
    the singular noun, as for ``unknown_names_message``; the words are those of a repeated form
    field."""
    repeated = [n for n, k in Counter(names).items() if k > 1]
    if not repeated:
        return None
    if len(repeated) == 1:
        return f"{what} '{repeated[0]}' is given more than once"
    quoted = ", ".join(f"'{n}'" for n in repeated)
    return f"{what}s {quoted} are given more than once"
