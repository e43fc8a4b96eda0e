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
"""

from __future__ import annotations

from dataclasses import dataclass

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


def file_site(tag: str | None, lesion: str | None) -> FileSite:
    """The site of a visit whose form gave none, from its file's site tag ``tag`` (a DICOM
    file's ``BodyPartExamined``, normalised; None: none) and the lesion's body site: as
    ``visit_site``, but a tag that contradicts the lesion's site is not refused: the lesion's
    site is kept (a lesion does not move) with a warning flag naming both sites, so that the
    clinician checks that the photo is of this lesion."""
    try:
        return FileSite(visit_site(tag, lesion))
    except InvalidValue:  # the file contradicts the lesion: the lesion's site, with a warning
        message = (f"the DICOM file's body part ({tag}) contradicts the lesion's recorded "
                   f"body site ({lesion}): the model was given the lesion's site, {lesion}; "
                   "check that this photo is of this lesion, and if it is of another one, "
                   "delete this visit and add the photo to that lesion")
        return FileSite(VisitSite(lesion, inherited=True),
                        {"code": CONTRADICTED, "message": message, "blocking": False})
