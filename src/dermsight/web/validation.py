"""The 422 a request gets when the API's schema refuses it: one sentence per problem, naming
the field as the client wrote it (``ref is required``, ``limit must be a whole number (got
'abc')``, ``items[0].label is required``), lengths with the right plural (``must have at least
1 item``, ``must be at most 64 characters long``), pydantic's own message, turned into "must",
where there is nothing better to say."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError

#: how many of a request's validation errors its 422 names (the rest are counted)
MAX_VALIDATION_ERRORS = 5
#: where a parameter came from, when its name alone would not say (body and query: the name)
_PLACES = {"header": "header ", "cookie": "cookie "}
_GOT = " (got {got})"
_WHOLE = ("must be a whole number", _GOT)
_NUMBER = ("must be a number", _GOT)
_BOOL = ("must be true or false", _GOT)
_OBJECT = ("must be a JSON object", _GOT)
_CHOICE = ("must be {expected}", _GOT)
_DATE = ("must be a date written YYYY-MM-DD", _GOT)
#: pydantic error type -> (what the value must be, after the field's name; how the value sent
#: is shown after that); fields: ``{got}`` the value sent, the others the error's context (its
#: limits). Lengths (``too_short``, ``string_too_long``, ...) are worded by ``_length``.
_RULES: dict[str, tuple[str, str]] = {
    "missing": ("is required", ""),
    "extra_forbidden": ("is not a field this request takes (check its spelling)", ""),
    "int_parsing": _WHOLE, "int_type": _WHOLE, "int_from_float": _WHOLE,
    "float_parsing": _NUMBER, "float_type": _NUMBER,
    "finite_number": ("must be a finite number", _GOT),
    "bool_parsing": _BOOL, "bool_type": _BOOL,
    "string_type": ("must be text", _GOT),
    "greater_than": ("must be more than {gt}", _GOT),
    "greater_than_equal": ("must be at least {ge}", _GOT),
    "less_than": ("must be less than {lt}", _GOT),
    "less_than_equal": ("must be at most {le}", _GOT),
    "literal_error": _CHOICE, "enum": _CHOICE,
    "model_attributes_type": _OBJECT, "dict_type": _OBJECT, "model_type": _OBJECT,
    "list_type": ("must be a list", _GOT),
    "date_type": _DATE, "date_parsing": _DATE, "date_from_datetime_parsing": _DATE,
    "date_from_datetime_inexact": _DATE,
}
_BOUNDS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
_SHORT = frozenset({"too_short", "string_too_short"})
_LENGTHS = _SHORT | {"too_long", "string_too_long"}
#: how pydantic's messages start ("Input should be a valid date")
_SHOULD = re.compile(r"^(?:Input|Value|String|List|Dictionary|Set|Tuple|Object) should ")
_NOT_JSON = ("the request body must be a JSON object, sent with Content-Type: "
             "application/json")


def _got(value: Any) -> str:
    """A value a client sent, as it would write it in JSON (a long text cut short)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    return "a list" if isinstance(value, (list, tuple)) else "an object"


def _count(n: int, noun: str) -> str:
    """``1 item``, ``2 items``, ``0 entries``."""
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"


def _length(kind: str, ctx: Mapping[str, Any], value: Any) -> tuple[str, str] | None:
    """A text's or a list's length out of bounds, in words with the right plural: ``must be at
    most 64 characters long`` (also for an optional text, which pydantic calls a "Value" with
    "items"), ``must have at least 1 item``; None without the limit."""
    short = kind in _SHORT
    limit = ctx.get("min_length" if short else "max_length")
    if not isinstance(limit, int):
        return None
    bound = "at least" if short else "at most"
    if isinstance(value, str):
        if short and limit == 1:
            return "must not be empty", ""
        return f"must be {bound} {_count(limit, 'character')} long", f" (got {len(value)})"
    actual = ctx.get("actual_length")
    if not isinstance(actual, int) and isinstance(value, (Mapping, list, tuple, set)):
        actual = len(value)
    noun = "entry" if isinstance(value, Mapping) else "item"
    return f"must have {bound} {_count(limit, noun)}", (
        f" (got {actual})" if isinstance(actual, int) else "")


def _subject(loc: tuple[Any, ...]) -> str:
    """The field an error is about, named as the client wrote it: ``ref``, ``map.x``,
    ``items[0]``, ``header X-Request``; the whole body: "the request body"."""
    where, path = (str(loc[0]), loc[1:]) if loc else ("body", ())
    name = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    if not name:
        return "the request body" if where == "body" else "the request"
    return _PLACES.get(where, "") + name.lstrip(".")


def _wording(kind: str, ctx: Mapping[str, Any], value: Any) -> tuple[str, str] | None:
    """What is wrong, after the field's name, and how the value sent is shown (None: no rule
    for this error, or its context lacks the limit)."""
    if kind in _BOUNDS and isinstance(value, float) and not math.isfinite(value):
        kind = "finite_number"  # NaN is neither more nor less than a limit
    if kind in _LENGTHS:
        return _length(kind, ctx, value)
    if kind not in _RULES:
        return None
    predicate, suffix = _RULES[kind]
    fields = {**{k: str(v) for k, v in ctx.items()}, "got": _got(value)}
    try:
        return predicate.format_map(fields), suffix.format_map(fields)
    except KeyError:  # a context without the limit: pydantic's own words
        return None


def _own_words(msg: str) -> str:
    """pydantic's message, after the field's name: ``Input should be a valid date`` -> ``must
    be a valid date``; one that cannot follow the name, after a colon."""
    msg = _SHOULD.sub("must ", msg.removeprefix("Value error, "))
    return msg if msg.startswith(("must ", "is ")) else f": {msg}"


def error_sentence(err: Mapping[str, Any]) -> str:
    """One validation error as a sentence naming the field (pydantic's message, turned into
    "must", where there is nothing better to say)."""
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    loc = tuple(err.get("loc", ()))
    value = err.get("input")
    if kind == "json_invalid":
        return f"the request body is not valid JSON ({ctx.get('error', 'cannot be parsed')})"
    if loc == ("body",) and isinstance(value, (bytes, bytearray)):  # a form or text body
        return _NOT_JSON
    worded = _wording(kind, ctx, value)
    predicate, suffix = worded or (_own_words(str(err.get("msg", "is invalid"))), "")
    sep = "" if predicate.startswith(":") else " "
    return f"{_subject(loc)}{sep}{predicate}{suffix}"


def validation_message(exc: RequestValidationError) -> str:
    """The 422's detail: the first ``MAX_VALIDATION_ERRORS`` problems as sentences (one
    sentence said once), and how many more there are."""
    problems = list(dict.fromkeys(error_sentence(err) for err in exc.errors()))
    parts = problems[:MAX_VALIDATION_ERRORS]
    more = len(problems) - MAX_VALIDATION_ERRORS
    if more > 0:
        parts.append(f"and {more} more problem{'s' if more > 1 else ''}")
    return "; ".join(parts) or "invalid request"
