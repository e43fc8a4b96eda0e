"""Data rights: delete a patient with every row and image file; purge visits past retention."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from dermsight.clinic.audit import record
from dermsight.clinic.cases import get_or_404
from dermsight.clinic.models import Lesion, Patient, User, Visit, utcnow
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


def purge_expired(clinic: Clinic, days: int) -> int:
    """Delete visits stored more than ``days`` days ago, then lesions left without visits or a
    diagnosis and patients left without lesions. Returns the number of visits deleted."""
    cutoff = utcnow() - timedelta(days=days)
    with clinic.db.session() as s:
        # written first: on SQLite this takes the write lock before anything is read, so two
        # processes purging at once run one after the other (the second finds the rows gone)
        record(s, None, "purge", "visit", None)
        s.flush()
        visits = list(s.scalars(select(Visit).where(Visit.created_at < cutoff)))
        keys = _keys(visits)
        touched = {v.lesion_id for v in visits}
        for v in visits:
            s.delete(v)
        s.flush()
        for lesion in s.scalars(select(Lesion).where(Lesion.id.in_(touched))):
            if not lesion.visits and lesion.diagnosis is None:
                pid = lesion.patient_id
                s.delete(lesion)
                s.flush()
                patient = s.get(Patient, pid)
                if patient is not None and not patient.lesions:
                    s.delete(patient)
    clinic.db.scrub()
    clinic.delete_unreferenced(keys)
    return len(visits)
