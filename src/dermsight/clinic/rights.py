"""Data rights: delete a patient with every row and image file; purge visits past retention."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm import Session as DbSession

from dermsight.clinic.audit import record
from dermsight.clinic.cases import get_or_404
from dermsight.clinic.models import AuditEvent, Lesion, Patient, User, Visit, utcnow
from dermsight.clinic.runtime import Clinic


def _keys(visits: list[Visit]) -> set[str]:
    return {k for v in visits for k in (v.image_key, v.heatmap_key) if k}


def delete_patient(clinic: Clinic, patient_id: int, user: User | None,
                   recheck: Callable[[DbSession], None] | None = None) -> None:
    """Rows first (one transaction), then the files no other visit shares. ``recheck``: called
    first in the transaction (the web route's check, before the commit, that the request's
    session or token and account are still valid: it raises to delete nothing)."""
    with clinic.db.session() as s:
        if recheck is not None:
            recheck(s)
        patient = get_or_404(s, Patient, patient_id, "patient")
        visits = list(s.scalars(select(Visit).join(Lesion).where(Lesion.patient_id == patient_id)))
        keys = _keys(visits)
        s.delete(patient)
        record(s, user, "delete", "patient", patient_id)
    clinic.db.scrub()
    clinic.delete_unreferenced(keys)


@dataclass
class Purged:
    """What a retention purge deleted (or, a dry run, would delete): ids only, no patient data."""

    visit_ids: list[int] = field(default_factory=list)
    lesion_ids: list[int] = field(default_factory=list)
    patient_ids: list[int] = field(default_factory=list)

    def counts(self, verb: str = "purged") -> str:
        """``"purged 3 visits, 1 lesion and 0 patients"`` (``verb``: "would purge" for a dry
        run): the counts, no patient data."""
        def n(k: int, what: str) -> str:
            return f"{k} {what}" if k == 1 else f"{k} {what}s"
        return (f"{verb} {n(len(self.visit_ids), 'visit')}, "
                f"{n(len(self.lesion_ids), 'lesion')} and "
                f"{n(len(self.patient_ids), 'patient')}")


#: the most ids one ``IN (...)`` of ``_rows`` names (each is a bound parameter: PostgreSQL
#: takes at most 65535 in a statement, some SQLite builds 32766)
_IN_MAX = 1000


_Row = TypeVar("_Row", Lesion, Patient)


def _rows(s: DbSession, query: Select[_Row], old: ColumnElement[bool],
          key: InstrumentedAttribute[int], ids: set[int]) -> list[_Row]:
    """The rows of ``query`` that match ``old`` or whose id (``key``) is in ``ids``, by id
    (``ids`` asked for ``_IN_MAX`` at a time: a first purge can empty many lesions)."""
    found = {r.id: r for r in s.scalars(query.where(old))}
    wanted = sorted(ids)
    for i in range(0, len(wanted), _IN_MAX):
        found.update((r.id, r) for r in s.scalars(query.where(key.in_(wanted[i:i + _IN_MAX]))))
    return [found[k] for k in sorted(found)]


def purge_plan(clinic: Clinic, days: int, dry_run: bool = False) -> Purged:
    """Delete visits stored more than ``days`` days ago; then every lesion without visits and
    without a diagnosis that was created more than ``days`` days ago or lost its last visit to
    this purge; then every patient without lesions that was created more than ``days`` days ago
    or lost their last lesion to this purge (a lesion or patient created within the period
    stays, even empty: a clinician may just have created it). One audit event (action
    ``purge``) per deleted visit, lesion and patient. ``dry_run``: the same, rolled back
    (nothing deleted, no event, no file touched)."""
    cutoff = utcnow() - timedelta(days=days)
    purged = Purged()
    with clinic.db.session() as s:
        if not dry_run:
            # a write first: on SQLite this takes the write lock before anything is read, so two
            # processes purging at once run one after the other (the second finds the rows gone)
            s.execute(update(AuditEvent).where(AuditEvent.id == -1)
                      .values(action="purge").execution_options(synchronize_session=False))
        visits = list(s.scalars(select(Visit).where(Visit.created_at < cutoff)
                                .order_by(Visit.id)))
        keys = _keys(visits)
        touched = {v.lesion_id for v in visits}
        for v in visits:
            purged.visit_ids.append(v.id)
            if not dry_run:
                record(s, None, "purge", "visit", v.id)
            s.delete(v)
        s.flush()
        empty = select(Lesion).where(~Lesion.visits.any(), ~Lesion.diagnosis.has())
        lesions = _rows(s, empty, Lesion.created_at < cutoff, Lesion.id, touched)
        emptied = {lesion.patient_id for lesion in lesions}
        for lesion in lesions:
            purged.lesion_ids.append(lesion.id)
            if not dry_run:
                record(s, None, "purge", "lesion", lesion.id)
            s.delete(lesion)
        s.flush()
        patients = _rows(s, select(Patient).where(~Patient.lesions.any()),
                         Patient.created_at < cutoff, Patient.id, emptied)
        for patient in patients:
            purged.patient_ids.append(patient.id)
            if not dry_run:
                record(s, None, "purge", "patient", patient.id)
            s.delete(patient)
        s.flush()
        if dry_run:
            s.rollback()
    if dry_run:
        return purged
    clinic.db.scrub()
    clinic.delete_unreferenced(keys)
    return purged


