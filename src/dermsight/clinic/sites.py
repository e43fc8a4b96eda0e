"""A lesion's body site and its visits' sites, in the taxonomy the model uses (``taxonomy``).

* A lesion's ``body_site`` is read like the predict API's ``site`` (``taxonomy.normalize_site``:
  ISIC sites, HAM localizations, common aliases; empty or "unknown" -> None); anything else is
  refused with the predict API's message.
* A visit without a site is assessed with its lesion's body site (``inherited``).
* A visit's site must agree with its lesion's: the same site, a more specific reading of it
  (``REFINES``: "anterior torso" on a "torso" lesion, "palms/soles" on an extremity) or a
  broader one; the more specific of the two is used. Any other site is refused: one lesion has
  one place, and a visit must not give the model a site that the lesion's record contradicts.
* A DICOM file's ``BodyPartExamined`` (or anatomic region) is the visit's site when the form
  gives none, under the same rule, except that a file contradicting the lesion is not refused
  (nobody typed it: devices write defaults, a study may hold several lesions): the lesion's
  site is kept for the model, and the visit carries a warning naming both (``file_site``,
  ``CONTRADICTED``).
* A lesion without a body site takes its visits' sites, but a visit whose site (typed or from
  the file) contradicts another visit's of the lesion is stored with a warning naming that
  visit's site and date (``visit_against_visits``, ``CONTRADICTS_VISIT``): one lesion has one
  place, the photo may be of another lesion.
* A visit carrying either warning (``site_in_doubt``) is no image of its lesion to label with
  the lesion's diagnosis: the confirmed-case export and similar cases leave it out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from dermsight import taxonomy

#: broader site -> the more specific sites a visit may give for a lesion recorded there
REFINES: dict[str, frozenset[str]] = {
    "torso": frozenset({"anterior torso", "posterior torso", "lateral torso"}),
    "upper extremity": frozenset({"palms/soles"}),
    "lower extremity": frozenset({"palms/soles"}),
}


class InvalidValue(ValueError):
    """A value the clinic refuses (422): the message says why and what is expected."""


def lesion_site(value: str | None) -> str | None:
    """The normalised body site of a new lesion; None when not given."""
    try:
        return taxonomy.normalize_site(value)
    except taxonomy.TaxonomyError as exc:
        raise InvalidValue(str(exc)) from exc


@dataclass(frozen=True)
class VisitSite:
    site: str | None
    #: True when the lesion's body site was used: the visit gave none, or a broader one
    inherited: bool


def stored_lesion_site(value: str | None) -> str | None:
    """A stored lesion's body site for its visits: lesions from before this rule may hold free
    text; what the taxonomy cannot read is no site (nothing to inherit or to contradict)."""
    try:
        return taxonomy.normalize_site(value)
    except taxonomy.TaxonomyError:
        return None


def visit_site(given: str | None, lesion: str | None) -> VisitSite:
    """The site a visit is assessed with: ``given`` (already normalised) if it agrees with the
    lesion's body site, the lesion's when ``given`` is None or broader; raises
    ``InvalidValue`` when they contradict each other."""
    if given is None:
        return VisitSite(lesion, inherited=lesion is not None)
    if lesion is None or given == lesion or given in REFINES.get(lesion, frozenset()):
        return VisitSite(given, inherited=False)
    if lesion in REFINES.get(given, frozenset()):  # the lesion's is the more specific
        return VisitSite(lesion, inherited=True)
    raise InvalidValue(
        f"site {given!r} contradicts the lesion's body site {lesion!r}: leave the visit's "
        f"site empty to use the lesion's, or record a new lesion if this is another one")


#: the code of the visit's non-blocking flag (in its result's ``flags``) when the uploaded
#: file's site contradicted the lesion's and the lesion's was used (``file_site``)
CONTRADICTED = "site_contradicts_lesion"


@dataclass(frozen=True)
class FileSite:
    """The site a visit without a site in its form is assessed with, the file's tag weighed
    against the lesion's body site (``file_site``)."""

    site: VisitSite
    #: a non-blocking flag (``gate.Flag.to_dict`` form) when the file's site was set aside
    flag: dict[str, object] | None = None


def _file_words(tag: str, text: str | None) -> str:
    """How a warning names a file's site: its own words and how they were read."""
    return f"the DICOM file's body part ({text!r}, read as {tag})" if text else \
        f"the DICOM file's body part ({tag})"


def file_site(tag: str | None, lesion: str | None, text: str | None = None) -> FileSite:
    """The site of a visit whose form gave none, from its file's site tag ``tag`` (a DICOM
    file's ``BodyPartExamined``, normalised; None: none; ``text``: the file's own words) and
    the lesion's body site: as ``visit_site``, but a tag that contradicts the lesion's site is
    not refused: the lesion's site is kept (a lesion does not move) with a warning flag naming
    both sites (the file's words too), so that the clinician checks that the photo is of this
    lesion."""
    try:
        return FileSite(visit_site(tag, lesion))
    except InvalidValue:  # the file contradicts the lesion: the lesion's site, with a warning
        message = (f"{_file_words(str(tag), text)} contradicts the lesion's recorded "
                   f"body site ({lesion}): the model was given the lesion's site, {lesion}; "
                   "check that this photo is of this lesion, and if it is of another one, "
                   "delete this visit and add the photo to that lesion")
        return FileSite(VisitSite(lesion, inherited=True),
                        {"code": CONTRADICTED, "message": message, "blocking": False})


#: the code of the visit's non-blocking flag when the lesion has no body site and the visit's
#: site contradicts another visit's of the lesion (``visit_against_visits``)
CONTRADICTS_VISIT = "site_contradicts_earlier_visit"
#: the flags that say a visit's photo may be of another lesion (``site_in_doubt``)
SITE_DOUBT = frozenset({CONTRADICTED, CONTRADICTS_VISIT})


def visit_against_visits(site: str | None, others: Iterable[tuple[str | None, date]], *,
                         file_tag: str | None = None) -> dict[str, object] | None:
    """For a lesion without a body site: a non-blocking warning flag when ``site`` (what the
    model was given) contradicts the site of one of the lesion's other visits (``others``:
    their site and date) under ``visit_site``'s rule (the same, a more specific or a broader
    site agrees); it names the latest such visit. ``file_tag``: the file's own words when the
    site came from a DICOM file (quoted in the message). None when nothing contradicts."""
    if site is None:
        return None
    clashes = []
    for i, (other, taken) in enumerate(others):
        if other is None:
            continue
        try:
            visit_site(site, other)
        except InvalidValue:
            clashes.append((taken, i, other))
    if not clashes:
        return None
    taken, _, other = max(clashes)  # the latest (same day: the one listed last)
    words = (_file_words(site, file_tag) if file_tag is not None
             else f"this visit's site ({site})")
    message = (f"{words} contradicts the site of this lesion's visit of {taken.isoformat()} "
               f"({other}), and the lesion has no recorded body site: the model was given "
               f"{site}; check that this photo is of this lesion, and if it is of another "
               "one, delete this visit and add the photo to that lesion")
    return {"code": CONTRADICTS_VISIT, "message": message, "blocking": False}


def site_in_doubt(result_json: str) -> bool:
    """Whether a stored visit result (``Visit.result_json``) carries a warning that its photo
    may be of another lesion (``SITE_DOUBT``)."""
    try:
        flags = json.loads(result_json).get("flags") or []
    except (ValueError, AttributeError):
        return False
    return any(isinstance(f, dict) and f.get("code") in SITE_DOUBT for f in flags)
