"""Request bodies of the clinic API (pydantic)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from dermsight import taxonomy

DiagnosisCode = Literal["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
assert set(DiagnosisCode.__args__) == set(taxonomy.CLASS_CODES)  # type: ignore[attr-defined]


#: one line of text: no control characters (NUL is refused by PostgreSQL, and no name, label or
#: reference needs a line break)
LINE = r"^[^\x00-\x1f\x7f]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: str) -> str:
    """``LINE``, refused in words instead of pydantic's "String should match pattern ..."."""
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "one_line", "must be one line of text, without tabs, line breaks or other control "
                        "characters")
    return value


#: a ``str`` that is one line of text (``LINE``, also in the OpenAPI schema)
Line = Annotated[str, AfterValidator(_one_line), Field(json_schema_extra={"pattern": LINE})]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LoginIn(_Body):
    username: Line = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenIn(_Body):
    name: Line = Field(min_length=1, max_length=100)


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


class NoteIn(_Body):
    note: str | None = None


class DiagnosisIn(_Body):
    code: DiagnosisCode
    method: Literal["histopathology", "clinical"]
    note: str | None = None
