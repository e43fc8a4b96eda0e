"""The audit log records the patient an event concerns: ``audit_events.patient_id``.

An event about a patient, or one of their lesions, visits, visit images or diagnoses, carries
the patient's id from this release on (no foreign key: the events outlive the patient's
deletion), indexed so that the admin can list one patient's events. Older events keep none
(null): this revision does not guess it (a visit or lesion deleted since cannot be traced).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("patient_id", sa.Integer(), nullable=True))
    op.create_index("ix_audit_events_patient_id", "audit_events", ["patient_id"])
