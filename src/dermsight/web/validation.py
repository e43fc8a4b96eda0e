"""The 422 a request gets when the API's schema refuses it: one sentence per problem, naming
the field as the client wrote it (``ref is required``, ``limit must be a whole number (got
'abc')``), pydantic's own message where there is nothing better to say."""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError

#: how many of a request's validation errors its 422 names (the rest are counted)
MAX_VALIDATION_ERRORS = 5
#: where a parameter came from, when its name alone would not say (body and query: the name)
_PLACES = {"header": "header ", "cookie": "cookie "}
_WHOLE = "must be a whole number (got {got})"
_NUMBER = "must be a number (got {got})"
_BOOL = "must be true or false (got {got})"
_OBJECT = "must be a JSON object (got {got})"
_CHOICE = "must be {expected} (got {got})"
#: pydantic error type -> what the value must be, after the field's name; ``{got}``: the value
#: sent, ``{length}``: its length, other fields: the error's context (its limits)
_RULES = {
    "missing": "is required",
    "extra_forbidden": "is not a field this request takes (check its spelling)",
    "int_parsing": _WHOLE, "int_type": _WHOLE, "int_from_float": _WHOLE,
    "float_parsing": _NUMBER, "float_type": _NUMBER,
    "finite_number": "must be a finite number (got {got})",
    "bool_parsing": _BOOL, "bool_type": _BOOL,
    "string_type": "must be text (got {got})",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long (got {length})",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "greater_than": "must be more than {gt} (got {got})",
    "greater_than_equal": "must be at least {ge} (got {got})",
    "less_than": "must be less than {lt} (got {got})",
    "less_than_equal": "must be at most {le} (got {got})",
    "literal_error": _CHOICE, "enum": _CHOICE,
    "model_attributes_type": _OBJECT, "dict_type": _OBJECT, "model_type": _OBJECT,
    "list_type": "must be a list (got {got})",
}


def _got(value: Any) -> str:
    """A value a client sent, as it would write it in JSON (a long text cut short)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    return "a list" if isinstance(value, (list, tuple)) else "an object"


def _subject(loc: tuple[Any, ...]) -> str:
    """The field an error is about, named as the client wrote it: ``ref``, ``map.x``,
    ``items[0]``, ``header X-Request``; the whole body: "the request body"."""
    where, path = (str(loc[0]), loc[1:]) if loc else ("body", ())
    name = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    if not name:
        return "the request body" if where == "body" else "the request"
    return _PLACES.get(where, "") + name.lstrip(".")


def error_sentence(err: dict[str, Any]) -> str:
    """One validation error as a sentence naming the field (pydantic's message where there is
    nothing better to say)."""
    kind = str(err.get("type", ""))
    ctx = {k: str(v) for k, v in (err.get("ctx") or {}).items()}
    if kind == "json_invalid":
        return f"the request body is not valid JSON ({ctx.get('error', 'cannot be parsed')})"
    subject = _subject(tuple(err.get("loc", ())))
    if kind == "string_too_short" and ctx.get("min_length") == "1":
        return f"{subject} must not be empty"
    value = err.get("input")
    length = len(value) if isinstance(value, (str, list, tuple)) else 0
    if kind in _RULES:
        try:
            return f"{subject} " + _RULES[kind].format_map({**ctx, "got": _got(value),
                                                             "length": length})
        except KeyError:  # a context without the limit: pydantic's own words below
            pass
    msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
    return f"{subject} {msg}" if msg.startswith(("must ", "is ")) else f"{subject}: {msg}"


def validation_message(exc: RequestValidationError) -> str:
    """The 422's detail: the first ``MAX_VALIDATION_ERRORS`` errors as sentences, and how many
    more there are."""
    errors = list(exc.errors())
    parts = [error_sentence(err) for err in errors[:MAX_VALIDATION_ERRORS]]
    more = len(errors) - MAX_VALIDATION_ERRORS
    if more > 0:
        parts.append(f"and {more} more problem{'s' if more > 1 else ''}")
    return "; ".join(parts) or "invalid request"
