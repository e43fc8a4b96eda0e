"""Request bodies of the clinic API (pydantic)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dermsight import taxonomy

DiagnosisCode = Literal["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
assert set(DiagnosisCode.__args__) == set(taxonomy.CLASS_CODES)  # type: ignore[attr-defined]


#: one line of text: no control characters (NUL is refused by PostgreSQL, and no name, label or
#: reference needs a line break)
LINE = r"^[^\x00-\x1f\x7f]*$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LoginIn(_Body):
    username: str = Field(max_length=64, pattern=LINE)
    password: str = Field(max_length=256)


class TokenIn(_Body):
    name: str = Field(min_length=1, max_length=100, pattern=LINE)


class UserIn(_Body):
    username: str = Field(min_length=1, max_length=64, pattern=LINE)
    password: str = Field(max_length=256)
    role: Literal["clinician", "admin"]


class PatientIn(_Body):
    ref: str = Field(min_length=1, max_length=64, pattern=LINE,
                     description="the clinic's own pseudonymous reference (no names)")


class MapIn(_Body):
    view: Literal["front", "back"]
    x: float = Field(ge=0.0, le=1.0)
    y: float = Field(ge=0.0, le=1.0)


class LesionIn(_Body):
    body_site: str | None = Field(default=None, max_length=64, pattern=LINE)
    side: Literal["left", "right", "midline"] | None = None
    location: str | None = Field(default=None, max_length=200, pattern=LINE)
    map: MapIn | None = None


class NoteIn(_Body):
    note: str | None = None


class DiagnosisIn(_Body):
    code: DiagnosisCode
    method: Literal["histopathology", "clinical"]
    note: str | None = None
