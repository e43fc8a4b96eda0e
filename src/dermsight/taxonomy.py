"""The nine ISIC diagnostic classes, metadata vocabularies, and label mappings from every source.

Everything that turns a dataset's own spelling of a diagnosis, sex or body site into dermsight's
vocabulary lives here, so readers, training and serving agree on one set of codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from dermsight.errors import DermsightError


@dataclass(frozen=True)
class LesionClass:
    code: str
    name: str
    lay: str
    malignant: bool
    premalignant: bool = False


CLASSES: Final[tuple[LesionClass, ...]] = (
    LesionClass(
        "MEL", "Melanoma",
        "A cancer of the pigment cells. Can spread if not removed early; the most dangerous "
        "common skin cancer.", malignant=True),
    LesionClass(
        "NV", "Melanocytic nevus",
        "A common mole: a benign cluster of pigment cells.", malignant=False),
    LesionClass(
        "BCC", "Basal cell carcinoma",
        "The most common skin cancer. Grows slowly and rarely spreads, but needs treatment.",
        malignant=True),
    LesionClass(
        "AK", "Actinic keratosis",
        "A rough, sun-damaged patch. Not cancer, but can turn into squamous cell carcinoma.",
        malignant=False, premalignant=True),
    LesionClass(
        "BKL", "Benign keratosis",
        "Seborrhoeic keratosis, solar lentigo or lichen-planus-like keratosis: harmless growths "
        "or sun spots.", malignant=False),
    LesionClass(
        "DF", "Dermatofibroma",
        "A firm, harmless bump in the skin, often on the legs.", malignant=False),
    LesionClass(
        "VASC", "Vascular lesion",
        "A harmless lesion made of blood vessels, such as a cherry angioma.", malignant=False),
    LesionClass(
        "SCC", "Squamous cell carcinoma",
        "A skin cancer of the outer skin cells. Usually treatable; can spread if neglected.",
        malignant=True),
    LesionClass(
        "UNK", "Other / unknown",
        "Lesions recorded as benign without a specific diagnosis (in the ISIC data, SIIM-ISIC "
        "2020's 'unknown'). A model learns this group only from images labelled so in its "
        "training data; it is not a group for every lesion outside the other eight.",
        malignant=False),
)

CLASS_CODES: Final[tuple[str, ...]] = tuple(c.code for c in CLASSES)
BY_CODE: Final[dict[str, LesionClass]] = {c.code: c for c in CLASSES}
MALIGNANT: Final[frozenset[str]] = frozenset(c.code for c in CLASSES if c.malignant)
#: the class for "no specific diagnosis" (UNK): a bundle may keep it out of the malignant share
UNSPECIFIED: Final[str] = "UNK"
PREMALIGNANT: Final[frozenset[str]] = frozenset(c.code for c in CLASSES if c.premalignant)

SEXES: Final[tuple[str, ...]] = ("male", "female")

#: ISIC "general" anatomic-site vocabulary (ISIC 2019/2020 metadata), plus HAM's side-less torso.
SITES: Final[tuple[str, ...]] = (
    "anterior torso",
    "posterior torso",
    "lateral torso",
    "torso",
    "head/neck",
    "upper extremity",
    "lower extremity",
    "palms/soles",
    "oral/genital",
)

AGE_MIN: Final[int] = 0
AGE_MAX: Final[int] = 120


class TaxonomyError(DermsightError, ValueError):
    """A label, sex, site or age that dermsight's vocabulary cannot represent."""


# --- diagnosis mappings ------------------------------------------------------------------------

#: HAM10000 ``dx``. ``akiec`` mixes actinic keratosis and Bowen's disease (SCC in situ); without
#: the ISIC 2019 ground truth to split it, it maps to AK (the pre-malignant reading).
HAM10000_DX: Final[dict[str, str]] = {
    "mel": "MEL",
    "nv": "NV",
    "bcc": "BCC",
    "akiec": "AK",
    "bkl": "BKL",
    "df": "DF",
    "vasc": "VASC",
    "scc": "SCC",
}

#: ISIC 2019 ground-truth one-hot columns (identical codes).
ISIC2019_COLUMNS: Final[tuple[str, ...]] = CLASS_CODES

#: SIIM-ISIC 2020 ``diagnosis`` strings.
SIIM2020_DIAGNOSIS: Final[dict[str, str]] = {
    "melanoma": "MEL",
    "nevus": "NV",
    "seborrheic keratosis": "BKL",
    "lichenoid keratosis": "BKL",
    "solar lentigo": "BKL",
    "lentigo nos": "BKL",
    "cafe-au-lait macule": "UNK",
    "atypical melanocytic proliferation": "UNK",
    "unknown": "UNK",
    # Spellings that occur in other ISIC exports.
    "basal cell carcinoma": "BCC",
    "squamous cell carcinoma": "SCC",
    "actinic keratosis": "AK",
    "dermatofibroma": "DF",
    "vascular lesion": "VASC",
    "benign keratosis": "BKL",
}


#: Other spellings of a class (lower case): British spellings and plurals that clinic exports use.
#: ("SK" is left out: it may mean seborrhoeic keratosis or another keratosis.)
DIAGNOSIS_ALIASES: Final[dict[str, str]] = {
    "naevus": "NV",
    "naevi": "NV",
    "nevi": "NV",
    "melanocytic naevus": "NV",
    "melanocytic naevi": "NV",
    "melanocytic nevi": "NV",
    "seborrhoeic keratosis": "BKL",
    "angioma": "VASC",
}


#: Label spellings (lower case) read as UNK, "Other / unknown", that in a clinic's export often
#: mean "not known yet" rather than a lesion of no specific diagnosis. The mapping stays (the
#: SIIM-ISIC 2020 training labels rely on it); ``dermsight evaluate`` and ``data summary`` warn.
UNKNOWN_WORDS: Final[tuple[str, ...]] = tuple(
    raw for raw, code in SIIM2020_DIAGNOSIS.items() if code == UNSPECIFIED and "unknown" in raw)


def from_isic2017(melanoma: float | str, seborrheic_keratosis: float | str) -> str:
    """ISIC 2017 part 3: ``melanoma`` -> MEL, ``seborrheic_keratosis`` -> BKL, else NV."""
    if float(melanoma) >= 0.5:
        return "MEL"
    if float(seborrheic_keratosis) >= 0.5:
        return "BKL"
    return "NV"


def from_isic2019_row(row: dict[str, object]) -> str:
    """ISIC 2019 ground truth: the one column among MEL..UNK that holds 1."""
    hits = [c for c in ISIC2019_COLUMNS if c in row and float(str(row[c]) or 0) >= 0.5]
    if len(hits) != 1:
        found = hits or "none"
        raise TaxonomyError(f"ISIC 2019 row must have exactly one class set, found {found}")
    return hits[0]


def normalize_diagnosis(value: str) -> str:
    """Any label spelling users meet (code, HAM dx, SIIM diagnosis, class name) -> class code."""
    raw = (value or "").strip()
    if not raw:
        raise TaxonomyError("empty diagnosis")
    up = raw.upper()
    if up in BY_CODE:
        return up
    low = " ".join(raw.lower().replace("_", " ").split())
    if low in HAM10000_DX:
        return HAM10000_DX[low]
    if low in SIIM2020_DIAGNOSIS:
        return SIIM2020_DIAGNOSIS[low]
    if low in DIAGNOSIS_ALIASES:
        return DIAGNOSIS_ALIASES[low]
    for c in CLASSES:
        if c.name.lower() == low:
            return c.code
    # one row's problem, repeated per row: the accepted spellings are listed once where the
    # rows are reported (``accepted_diagnoses``)
    raise TaxonomyError(f"unknown diagnosis {raw!r}")


def accepted_diagnoses() -> str:
    """What ``normalize_diagnosis`` reads, in words: every class code and a few of the names
    (the full table of spellings is in docs/batch.md, "Diagnosis spellings")."""
    return (f"expected a code ({', '.join(CLASS_CODES)}; any case) or a name such as melanoma, "
            "nevus / naevus, basal cell carcinoma, actinic keratosis, seborrheic / seborrhoeic "
            "keratosis, dermatofibroma, vascular lesion / angioma or squamous cell carcinoma, "
            "or a HAM10000 dx (mel, nv, bcc, akiec, bkl, df, vasc); see docs/batch.md, "
            "\"Diagnosis spellings\"")


# --- metadata vocabularies ---------------------------------------------------------------------

_SEX_ALIASES: Final[dict[str, str]] = {
    "m": "male", "f": "female", "male": "male", "female": "female",
}

#: HAM10000 ``localization`` -> ISIC general site (``None`` = unknown).
HAM10000_LOCALIZATION: Final[dict[str, str | None]] = {
    "abdomen": "anterior torso",
    "chest": "anterior torso",
    "back": "posterior torso",
    "trunk": "torso",
    "face": "head/neck",
    "scalp": "head/neck",
    "ear": "head/neck",
    "neck": "head/neck",
    "upper extremity": "upper extremity",
    "hand": "upper extremity",
    "lower extremity": "lower extremity",
    "foot": "lower extremity",
    "acral": "palms/soles",
    "genital": "oral/genital",
    "unknown": None,
}

#: Other unambiguous spellings of a site (keys as ``_site_key`` writes them: lower case, "_" and
#: "-" read as spaces), among them the DICOM BodyPartExamined terms ``io.dicom`` accepts, so a
#: form, the CLI and the facade take what a DICOM tag may say. A term that does not name one
#: site ("extremity": which limb?, "skin") stays an error here (a DICOM tag's is read as
#: missing, ``io.dicom.DICOM_SITE_ALIASES``).
_SITE_ALIASES: Final[dict[str, str]] = {
    "head neck": "head/neck",
    "head and neck": "head/neck",
    "headneck": "head/neck",
    "head": "head/neck",
    "oral genital": "oral/genital",
    "oral and genital": "oral/genital",
    "mouth": "oral/genital",
    "palms soles": "palms/soles",
    "palms and soles": "palms/soles",
    "palm": "palms/soles",
    "sole": "palms/soles",
    "anterior trunk": "anterior torso",
    "posterior trunk": "posterior torso",
    "lateral trunk": "lateral torso",
    "arm": "upper extremity",
    "upper limb": "upper extremity",
    "upperextremity": "upper extremity",
    "leg": "lower extremity",
    "lower limb": "lower extremity",
    "lowerextremity": "lower extremity",
}

#: The spellings of "not known" that read as not given, like an empty value (no note: saying
#: "unknown" is a legitimate answer, HAM10000's own for sex and localization).
NOT_GIVEN: Final[tuple[str, ...]] = ("", "unknown")
#: The placeholders tables and forms write for "no value" (any case, spaces around ignored): read
#: as not given, like ``NOT_GIVEN``, but noted (``records.Metadata.notes``: IGNORED), since a
#: value was written. "NA" is one of them, read as "not available" as pandas and R read it: it
#: is no sex, site or age in dermsight's vocabulary, so it cannot be mistaken for one.
PLACEHOLDERS: Final[tuple[str, ...]] = ("nan", "none", "null", "na", "n/a", "?", "-")


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN
        return True
    return isinstance(value, str) and value.strip().lower() in (*NOT_GIVEN, *PLACEHOLDERS)


def _site_key(value: object) -> str:
    """A site as the vocabularies are looked up: lower case, "_" and "-" read as spaces, runs of
    spaces as one, none around "/" ("Posterior-Torso" -> "posterior torso", "Head / Neck" ->
    "head/neck")."""
    text = " ".join(str(value).strip().lower().replace("_", " ").replace("-", " ").split())
    return text.replace(" / ", "/").replace("/ ", "/").replace(" /", "/")


def normalize_sex(value: object) -> str | None:
    """'male'/'female' (or M/F, any case) -> canonical; missing ("", "unknown", "NaN", ...) ->
    None; anything else raises."""
    if _is_missing(value):
        return None
    key = str(value).strip().lower()
    if key in _SEX_ALIASES:
        return _SEX_ALIASES[key]
    raise TaxonomyError(f"unknown sex {value!r}: expected one of {', '.join(SEXES)}")


def normalize_site(value: object) -> str | None:
    """ISIC general site, HAM localization, or a common alias (``_SITE_ALIASES``: "head and
    neck", "palms and soles", "arm", "leg", ...; any case, "_" or "-" for a space) -> ISIC site;
    missing ("", "unknown", "NaN", ...) -> None; anything else raises."""
    if _is_missing(value):
        return None
    low = _site_key(value)
    if low in SITES:
        return low
    if low in HAM10000_LOCALIZATION:
        return HAM10000_LOCALIZATION[low]
    if low in _SITE_ALIASES:
        return _SITE_ALIASES[low]
    raise TaxonomyError(f"unknown anatomic site {value!r}: expected one of {', '.join(SITES)}")


#: an age written with a unit (after the number, spaces between allowed, a full stop after it):
#: years are read as years (``records.input_notes`` flags such an age NORMALISED) ...
_AGE_WITH_UNIT: Final = re.compile(r"^(?P<number>.*\d\.?)\s*(?P<unit>[^\W\d_]+)\.?$")
_YEARS: Final[frozenset[str]] = frozenset({"y", "yr", "yrs", "year", "years"})
#: ... months, weeks and days are refused: "60m" is not 5 years to a user who meant 60 years,
#: and the model would be given 5 without a word (a DICOM PatientAge's unit is read:
#: ``normalize_dicom_age``)
_NOT_YEARS: Final[frozenset[str]] = frozenset({
    "m", "mo", "mos", "mth", "mths", "month", "months",
    "w", "wk", "wks", "week", "weeks",
    "d", "dy", "dys", "day", "days",
})
#: DICOM's Age String (VR AS): digits and D, W, M or Y ("045Y", "006M")
_DICOM_AGE: Final = re.compile(r"^([0-9]+)([DWMY])$")
_DICOM_SCALE: Final[dict[str, float]] = {"Y": 1.0, "M": 1 / 12, "W": 1 / 52, "D": 1 / 365}


def _age_in_range(age: float, value: object) -> float:
    if not (AGE_MIN <= age <= AGE_MAX) or age != age:
        raise TaxonomyError(f"age {value!r} is outside {AGE_MIN}-{AGE_MAX} years")
    return age + 0.0  # -0.0 (from "-0") is 0


def normalize_age(value: object) -> float | None:
    """Age in years, 0-120 (a number, or a string of one; a year unit may follow: "55y",
    "55 years"); missing (``NOT_GIVEN``, ``PLACEHOLDERS``, None, NaN) -> None; anything else
    raises: outside 0-120, not a number ("forty", "1_0": Python's digit grouping is no way to
    write an age) or an age in months, weeks or days ("60m", "8w", "12d", "006M": those units
    are read only from a DICOM file's PatientAge, ``normalize_dicom_age``). "-0" is 0."""
    if _is_missing(value):
        return None
    text = str(value).strip()
    unit = _AGE_WITH_UNIT.match(text)
    if unit is not None and unit["unit"].lower() in _NOT_YEARS:
        raise TaxonomyError(
            f"age {value!r}: give the age in years (a number from {AGE_MIN} to {AGE_MAX}; "
            f"0.5 for six months): an age in months, weeks or days is read only from a DICOM "
            f"file's PatientAge")
    if unit is not None and unit["unit"].lower() in _YEARS:
        text = unit["number"]
    try:
        if "_" in text:
            raise ValueError(text)
        age = float(text)
    except ValueError as exc:
        raise TaxonomyError(f"age {value!r} is not a number") from exc
    return _age_in_range(age, value)


def normalize_dicom_age(value: object) -> float | None:
    """A DICOM PatientAge in years: DICOM's Age String, digits and a unit ("045Y", "006M" =
    0.5, "003W", "010D"); any other value as ``normalize_age`` reads it. Raises as it does."""
    if _is_missing(value):
        return None
    dicom = _DICOM_AGE.match(str(value).strip().upper())
    if dicom is None:
        return normalize_age(value)
    return _age_in_range(int(dicom[1]) * _DICOM_SCALE[dicom[2]], value)
