"""The record types that flow from readers to preprocessing, training, serving and batch."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

import numpy as np

from dermsight import taxonomy

IGNORED = "ignored"
NORMALISED = "normalised"
#: strings that stand for "no value" ("NaN", "none", "null", "NA", "N/A", "?", "-", any case)
#: and are read as missing, with a note ("" and "unknown" are read as missing without one:
#: ``taxonomy.NOT_GIVEN``)
PLACEHOLDERS = frozenset(taxonomy.PLACEHOLDERS)
#: an age written as plain digits ("-0" too: it is 0, read as such without a note); an age with
#: a year unit ("55y", "055Y", "55 years") is read, and noted NORMALISED
_PLAIN_AGE = re.compile(r"^[0-9]+(\.[0-9]+)?$|^-0+(\.0+)?$", re.ASCII)


def plain_value(value: object) -> object:
    """A numpy scalar (``np.int64(55)``, ``np.float32('nan')``, ``np.str_('male')``, as pandas
    and numpy hand them out) as the Python value it holds, so that it reads as that value does;
    pandas' missing values (``pd.NA``, ``pd.NaT``: a nullable column's empty cell) as None."""
    pandas = sys.modules.get("pandas")  # imported by the caller if such a value exists
    if pandas is not None and (value is pandas.NA or value is pandas.NaT):
        return None
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class Metadata:
    """Patient/lesion metadata in dermsight's vocabulary; ``None`` means not given."""

    age: float | None = None
    sex: str | None = None
    site: str | None = None
    #: ``(field, IGNORED | NORMALISED)`` for values that were given but not used, or read
    #: leniently; field names only, never the values (they may be identifying)
    notes: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)
    #: the fields whose given value could not be used (an age of 250 or "60m", sex "X", site
    #: "moon"), left out by :meth:`lenient`, which also notes them IGNORED; a placeholder
    #: ("NaN", "N/A") is not among them. For counting such values apart from values not given
    #: (``dermsight data summary``, the training data's notes); never the values themselves
    invalid: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def parse(cls, age: object = None, sex: object = None, site: object = None) -> Metadata:
        """Validate and normalise user or file values; raises ``taxonomy.TaxonomyError``.

        Missing without a note: None, pandas' missing values, a float NaN (numpy's too: an
        empty cell as ``pd.read_csv`` reads it, in a data file, a batch row or a value handed
        to the facade), "" and "unknown" (the documented way to say "not known"). Accepted but
        noted (``notes``): a placeholder string (``PLACEHOLDERS``: "NaN", "none", "null", "NA",
        "N/A", "?", "-") given for a field is treated as missing (IGNORED); an age not written
        as plain ASCII digits (e.g. Arabic-Indic digits, "1e2", "+55", or with a year unit:
        "55y", "55 years") is read as the number of years it denotes (NORMALISED). Refused: an
        age in months, weeks or days ("60m", "8w", "12d"; ``taxonomy.normalize_age``: those
        units are read only from a DICOM file's PatientAge) and "1_0" (not an age). numpy
        scalars and pandas' missing values read as the Python values they hold
        (``plain_value``).
        """
        age, sex, site = plain_value(age), plain_value(sex), plain_value(site)
        parsed = taxonomy.normalize_age(age)
        return cls(
            age=parsed,
            sex=taxonomy.normalize_sex(sex),
            site=taxonomy.normalize_site(site),
            notes=input_notes(age, sex, site, parsed),
        )

    @classmethod
    def parse_given(cls, age: object = None, sex: object = None,
                    site: object = None) -> Metadata:
        """:meth:`parse` of values a caller hands to the facade (``Dermsight.predict``), read
        exactly as ``dermsight batch`` reads a data row: a float NaN (an empty cell as
        ``pd.read_csv`` gives it) is not given, without a note; a placeholder string ("NaN",
        "N/A", ...) is noted IGNORED, as in the API and ``dermsight predict``."""
        return cls.parse(age, sex, site)

    @classmethod
    def lenient(cls, age: object = None, sex: object = None, site: object = None) -> Metadata:
        """Like :meth:`parse`, but a value that does not parse becomes missing on its own (noted
        IGNORED, and named in ``invalid``) instead of raising: for data files, where one bad
        cell must not cost the row's other fields."""
        given = {"age": age, "sex": sex, "site": site}
        bad: list[str] = []
        for name, value in given.items():
            try:
                cls.parse(**{name: value})
            except taxonomy.TaxonomyError:
                bad.append(name)
        usable = {k: (None if k in bad else v) for k, v in given.items()}
        meta = cls.parse(**usable).noted(*((name, IGNORED) for name in bad))
        return cls(meta.age, meta.sex, meta.site, notes=meta.notes, invalid=tuple(bad))

    def noted(self, *notes: tuple[str, str]) -> Metadata:
        """A copy with more notes."""
        return Metadata(self.age, self.sex, self.site, notes=self.notes + tuple(notes),
                        invalid=self.invalid)

    def fill_from(self, other: Metadata) -> Metadata:
        """Fields left empty here take ``other``'s values (e.g. DICOM tags under the form's);
        ``other``'s notes are kept only for the fields left empty here, and this one's are
        dropped for the fields ``other`` filled (a form's "NaN" under a DICOM age: the tag's
        value is used, so "treated as not given" would be untrue)."""
        filled = {name for name in ("age", "sex", "site")
                  if getattr(self, name) is None and getattr(other, name) is not None}
        own = tuple(n for n in self.notes if n[0] not in filled)
        kept = tuple(n for n in other.notes if getattr(self, n[0]) is None)
        return Metadata(
            age=self.age if self.age is not None else other.age,
            sex=self.sex if self.sex is not None else other.sex,
            site=self.site if self.site is not None else other.site,
            notes=own + kept,
            invalid=(*(f for f in self.invalid if f not in filled),
                     *(f for f in other.invalid if getattr(self, f) is None
                       and f not in self.invalid)),
        )

    def as_dict(self) -> dict[str, object]:
        return {"age": self.age, "sex": self.sex, "site": self.site}

    def notes_text(self) -> str | None:
        """``notes`` as text for a batch input row (``age:normalised;site:ignored``; None
        without notes): the row carries normalised values, and its notes with them."""
        return ";".join(f"{name}:{what}" for name, what in self.notes) or None

    def noted_from_text(self, text: object) -> Metadata:
        """A copy with the notes of ``notes_text``'s ``text`` added (unknown entries dropped)."""
        if not isinstance(text, str):
            return self
        pairs = (entry.partition(":") for entry in text.split(";"))
        return self.noted(*((name, what) for name, _, what in pairs
                            if name in ("age", "sex", "site") and what in (IGNORED, NORMALISED)))


def input_notes(age: object, sex: object, site: object,
                parsed_age: float | None) -> tuple[tuple[str, str], ...]:
    """The notes of values given as ``age``, ``sex``, ``site`` (``parsed_age``: the age they
    were read as): a placeholder string (``PLACEHOLDERS``) is IGNORED, an age not written as
    plain ASCII digits (nor "-0") but read as a number ("55y" too) is NORMALISED
    (``Metadata.parse``)."""
    notes = [(name, IGNORED) for name, value in (("age", age), ("sex", sex), ("site", site))
             if isinstance(value, str) and value.strip().lower() in PLACEHOLDERS]
    if parsed_age is not None and isinstance(age, str) and not _PLAIN_AGE.match(age.strip()):
        notes.append(("age", NORMALISED))
    return tuple(notes)


@dataclass
class LesionRecord:
    """One lesion as a reader yields it.

    ``image`` is an RGB uint8 array (H, W, 3) or ``None`` when ``error`` says why it could not be
    read; a bad file or row never aborts a read, it becomes a record with ``error`` set.
    """

    id: str
    image: np.ndarray | None
    meta: Metadata = field(default_factory=Metadata)
    label: str | None = None
    source: str | None = None
    path: str | None = None
    group: str | None = None
    error: str | None = None
    #: a label given but not usable (a diagnosis that names no class, such as "Halo naevus", or a
    #: target that disagrees with it: then the problem): ``label`` is None; kept so that such
    #: rows are counted apart from rows without a label (``dermsight data summary``, which lists
    #: it cut short). Usually a class name, but a clinic's diagnosis column may hold free text
    label_invalid: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.image is not None
