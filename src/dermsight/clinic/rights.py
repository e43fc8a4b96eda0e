"""Data rights: delete a patient with every row and image file; purge visits past retention."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from dermsight.clinic.audit import record
from dermsight.clinic.cases import get_or_404
from dermsight.clinic.models import AuditEvent, Lesion, Patient, User, Visit, utcnow
from dermsight.clinic.runtime import Clinic


def _keys(visits: list[Visit]) -> set[str]:
    return {k for v in visits for k in (v.image_key, v.heatmap_key) if k}


def delete_patient(clinic: Clinic, patient_id: int, user: User | None) -> None:
    """Rows first (one transaction), then the files no other visit shares."""
    with clinic.db.session() as s:
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


def purge_plan(clinic: Clinic, days: int, dry_run: bool = False) -> Purged:
    """Delete visits stored more than ``days`` days ago, then lesions left without visits or a
    diagnosis and patients left without lesions; one audit event (action ``purge``) per deleted
    visit, lesion and patient. ``dry_run``: the same, rolled back (nothing deleted, no event,
    no file touched)."""
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
        for lesion in s.scalars(select(Lesion).where(Lesion.id.in_(touched))
                                .order_by(Lesion.id)):
            if not lesion.visits and lesion.diagnosis is None:
                pid = lesion.patient_id
                purged.lesion_ids.append(lesion.id)
                if not dry_run:
                    record(s, None, "purge", "lesion", lesion.id)
                s.delete(lesion)
                s.flush()
                patient = s.get(Patient, pid)
                if patient is not None and not patient.lesions:
                    purged.patient_ids.append(pid)
                    if not dry_run:
                        record(s, None, "purge", "patient", pid)
                    s.delete(patient)
                    s.flush()
        if dry_run:
            s.rollback()
    if dry_run:
        return purged
    clinic.db.scrub()
    clinic.delete_unreferenced(keys)
    return purged


def purge_expired(clinic: Clinic, days: int) -> int:
    """``purge_plan``: the number of visits deleted."""
    return len(purge_plan(clinic, days).visit_ids)
