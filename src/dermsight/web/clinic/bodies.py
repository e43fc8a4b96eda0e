"""Request bodies of the clinic API (pydantic)."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from dermsight import taxonomy
from dermsight.clinic.accounts import TOKEN_DAYS, TOKEN_DAYS_MAX, TOKEN_DAYS_MIN
from dermsight.clinic.audit import PAGE_MAX as AUDIT_PAGE_MAX

DiagnosisCode = Literal["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
assert set(DiagnosisCode.__args__) == set(taxonomy.CLASS_CODES)  # type: ignore[attr-defined]


#: one line of text: no control characters (NUL is refused by PostgreSQL, and no name, label or
#: reference needs a line break); ``_one_line`` refuses more than this pattern says
LINE = r"^[^\x00-\x1f\x7f]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ONE_LINE = ("must be one line of text, without tabs, line breaks or other control "
            "characters")
#: what a character of these Unicode categories is, in a one-line field's 422 (``Cc``, the
#: control characters, keep ``ONE_LINE``); every space but U+0020 is a ``Zs``
_ODD_KINDS = {
    "Cf": "an invisible formatting character",
    "Zs": "a space other than the ordinary space",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "half of a character (a lone surrogate)",
    "Co": "a private-use character (no standard glyph)",
}
#: the bidirectional classes of the embedding, override and isolate controls (U+202A-U+202E,
#: U+2066-U+2069): text after them is displayed reordered, e.g. reversed
_BIDI_CONTROLS = frozenset({"LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI"})
_GENERAL_PUNCTUATION = ("\u2000", "\u206f")


def _described(ch: str) -> str:
    """``U+200B ZERO WIDTH SPACE``: a character named without writing it (it may be invisible)."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def _dash_like(ch: str) -> bool:
    """A dash that passes for the hyphen-minus ``-``: dash punctuation (category ``Pd``) of the
    General Punctuation block (U+2010 hyphen, U+2011 non-breaking hyphen, U+2013 en dash, ...)
    or a compatibility form of one or of ``-`` (U+FF0D, U+FE63), and U+2212 MINUS SIGN. The
    dashes of other scripts (Hebrew maqaf, Armenian hyphen, the CJK wave dash) stay allowed."""
    if ch == "\u2212":
        return True
    if ch == "-" or unicodedata.category(ch) != "Pd":
        return False
    folded = unicodedata.normalize("NFKC", ch)
    return folded == "-" or _GENERAL_PUNCTUATION[0] <= folded <= _GENERAL_PUNCTUATION[1]


def _refuse(why: str) -> PydanticCustomError:
    # a template without fields: no brace may reach it from the text
    return PydanticCustomError("one_line", why.replace("{", "(").replace("}", ")"))


def line_problem(value: str) -> str | None:
    """Why ``value`` is not one line of plain text, or None. Refused, so that two values never
    look alike and every value can be typed again (the admin's delete box, a search): control
    characters (``ONE_LINE``); invisible or odd characters by their Unicode category
    (``_ODD_KINDS``: format characters such as zero-width spaces, bidirectional controls and
    the byte-order mark; spaces other than U+0020; line and paragraph separators; lone
    surrogates; private-use characters); dashes that pass for ``-`` (``_dash_like``); two or
    more spaces in a row. The message names the character by its code point and name, never
    writing it. Spaces at either end are not checked here: the bodies strip them."""
    if _CONTROL.search(value):
        return ONE_LINE
    for i, ch in enumerate(value, start=1):
        kind = _ODD_KINDS.get(unicodedata.category(ch)) if ch != " " else None
        if kind is None and unicodedata.category(ch) == "Cc":
            return ONE_LINE
        if kind is not None:
            return (f"must not contain invisible or look-alike characters: character {i} is "
                    f"{_described(ch)}, {kind}; type the text again without it")
        if _dash_like(ch):
            return (f"must not contain dashes that look like '-': character {i} is "
                    f"{_described(ch)}; type the hyphen-minus '-' instead")
    run = value.find("  ")
    if run >= 0:
        return (f"must not contain two or more spaces in a row (at character {run + 1}): use "
                "one space between words")
    return None


def _one_line(value: str) -> str:
    """``line_problem``, refused in words instead of pydantic's "String should match pattern"."""
    why = line_problem(value)
    if why is not None:
        raise _refuse(why)
    return value


def note_problem(value: str) -> str | None:
    """Why a note (several lines, free text) cannot be stored, or None: a bidirectional
    embedding, override or isolate control (U+202A-U+202E, U+2066-U+2069), after which the
    text is displayed reordered (``\\u202e`` shows ``exe.gpj`` as ``jpg.exe``), or a lone
    surrogate (no database can store it). Other characters, line breaks and tabs included,
    are the clinician's."""
    for i, ch in enumerate(value, start=1):
        if unicodedata.bidirectional(ch) in _BIDI_CONTROLS:
            return (f"must not contain characters that reorder how text is displayed: "
                    f"character {i} is {_described(ch)}; type the note again without it")
        if unicodedata.category(ch) == "Cs":
            return (f"must not contain half of a character: character {i} is "
                    f"{_described(ch)}, a lone surrogate")
    return None


def _note(value: str | None) -> str | None:
    why = None if value is None else note_problem(value)
    if why is not None:
        raise _refuse(why)
    return value


#: a ``str`` that is one line of text (``line_problem``; ``LINE`` in the OpenAPI schema)
Line = Annotated[str, AfterValidator(_one_line), Field(json_schema_extra={"pattern": LINE})]
#: a clinician's note (``note_problem``)
Note = Annotated[str | None, AfterValidator(_note)]


class _Body(BaseModel):
    # leading and trailing whitespace (any Unicode space, line break or tab) is removed before
    # the checks: ' P-001\u00a0' is 'P-001'
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LoginIn(_Body):
    username: Line = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenIn(_Body):
    name: Line = Field(min_length=1, max_length=100)
    #: checked by ``accounts.create_token`` (its message names the range and the default)
    days: int | None = Field(
        default=None, strict=True,  # a whole number: not true, "30" or 30.0
        description=f"how many days the token works: {TOKEN_DAYS_MIN}-{TOKEN_DAYS_MAX} "
                    f"(default: {TOKEN_DAYS})",
        json_schema_extra={"minimum": TOKEN_DAYS_MIN, "maximum": TOKEN_DAYS_MAX})


class UserIn(_Body):
    username: Line = Field(min_length=1, max_length=64)
    password: str = Field(max_length=256)
    role: Literal["clinician", "admin"]


class PatientIn(_Body):
    ref: Line = Field(min_length=1, max_length=64,
                     description="the clinic's own pseudonymous reference (no names)")


class MapIn(_Body):
    view: Literal["front", "back"]
    x: float = Field(ge=0.0, le=1.0)
    y: float = Field(ge=0.0, le=1.0)


class LesionIn(_Body):
    body_site: Line | None = Field(default=None, max_length=64)
    side: Literal["left", "right", "midline"] | None = None
    location: Line | None = Field(default=None, max_length=200)
    map: MapIn | None = None


class LesionChangeIn(_Body):
    """``PATCH /lesions/{id}``: the keys present are changed (at least one), under the rules
    of ``LesionIn``; null (or an empty ``location``) removes the value. ``body_site`` is not
    changed here: the lesion's visits were assessed with it (``web.clinic.cases.BODY_SITE_FIXED``
    says why); it is accepted only to be refused in words (it is not in the schema)."""

    side: Literal["left", "right", "midline"] | None = None
    location: Line | None = Field(default=None, max_length=200)
    map: MapIn | None = None
    body_site: SkipJsonSchema[Any] = None


class NoteIn(_Body):
    note: Note = None


class DiagnosisIn(_Body):
    code: DiagnosisCode
    method: Literal["histopathology", "clinical"]
    note: Note = None


#: the largest id (PostgreSQL's INTEGER), as ``deps.ObjectId`` bounds path ids
ID_MAX = 2_147_483_647


class AuditQuery(BaseModel):
    """The query of ``GET /admin/audit``: one page of the log, filtered."""

    limit: int = Field(100, ge=1, le=AUDIT_PAGE_MAX, description="events on the page")
    # ids are bounded like path ids (a positive 32-bit integer): a larger one is a 422, not
    # an integer the database driver cannot bind (a 500)
    before: int | None = Field(None, ge=1, le=ID_MAX,
                               description="only events older than this event id (the last id "
                                           "of the previous page)")
    user: Line | None = Field(None, max_length=64, description="a user name (exactly)")
    action: str | None = Field(None, max_length=32)
    object_type: Line | None = Field(None, max_length=32)
    object_id: int | None = Field(None, ge=1, le=ID_MAX)
    patient: int | None = Field(None, ge=1, le=ID_MAX,
                                description="a patient's id: the events about the patient and "
                                            "their records")
