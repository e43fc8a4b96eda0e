"""The clinic's tables (SQLAlchemy 2 typed ORM). Alembic migrations in ``migrations/`` create
and change them; the models are the head revision.

Single-tenant: one clinic per database. Patients carry only the clinic's own pseudonymous
reference (no name, no birth date); age and sex are stored per visit because the model uses them.

Names unique ignoring case carry their ``db.casekey`` in ``<name>_key`` (unique index, revision
0005), set here whenever the name is set through the ORM; a bulk ``UPDATE`` of ``ref`` or
``username`` must set the key too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from dermsight.clinic.db import KEY_LENGTH, casekey

ROLES = ("clinician", "admin")
SIDES = ("left", "right", "midline")
MAP_VIEWS = ("front", "back")
DIAGNOSIS_METHODS = ("histopathology", "clinical")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


#: ``__table_args__`` of the patients, lesions, visits and diagnoses: on SQLite an
#: ``AUTOINCREMENT`` key (revision 0009), so the id of a deleted row, the newest one included,
#: is never handed out again (a plain SQLite integer key takes the largest id in use + 1), as
#: PostgreSQL's sequences never do: an id in a URL, an open page or the audit log names one
#: record for good. Accounts, tokens and audit events are never deleted (disabled, revoked).
_NEVER_REUSED: dict[str, Any] = {"sqlite_autoincrement": True}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    #: ``casekey(username)``: "ADMIN" beside "admin" is refused by the database too
    username_key: Mapped[str] = mapped_column(String(KEY_LENGTH), index=True, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @validates("username")
    def _set_key(self, _name: str, username: str) -> str:
        self.username_key = casekey(username)
        return username


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    #: sha256 of the token (tokens are 32 random bytes: a fast hash is enough)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: when it stops working (``accounts.create_token``: 1-365 days after it was made);
    #: revision 0007 gave older tokens one
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Session(Base):
    """Server-side login sessions (a table, so several app instances share them)."""

    __tablename__ = "sessions"
    #: sha256 of the cookie value
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: the last request it authenticated (to the minute): the session ends after
    #: ``ClinicConfig.session_idle_minutes`` without one; None = not used since created
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LoginAttempt(Base):
    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    ip: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    success: Mapped[bool] = mapped_column(Boolean)


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = _NEVER_REUSED
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the clinic's own pseudonymous reference
    ref: Mapped[str] = mapped_column(String(64), unique=True)
    #: ``casekey(ref)``: "P-001" beside "p-001" is refused by the database too
    ref_key: Mapped[str] = mapped_column(String(KEY_LENGTH), index=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    lesions: Mapped[list[Lesion]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Lesion.id")

    @validates("ref")
    def _set_key(self, _name: str, ref: str) -> str:
        self.ref_key = casekey(ref)
        return ref


class Lesion(Base):
    __tablename__ = "lesions"
    __table_args__ = _NEVER_REUSED
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    body_site: Mapped[str | None] = mapped_column(String(64))
    side: Mapped[str | None] = mapped_column(String(16))
    location: Mapped[str | None] = mapped_column(String(200))
    map_view: Mapped[str | None] = mapped_column(String(8))
    map_x: Mapped[float | None] = mapped_column(Float)
    map_y: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    patient: Mapped[Patient] = relationship(back_populates="lesions")
    visits: Mapped[list[Visit]] = relationship(
        back_populates="lesion", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(Visit.taken_at, Visit.id)")
    diagnosis: Mapped[Diagnosis | None] = relationship(
        back_populates="lesion", cascade="all, delete-orphan", passive_deletes=True)


class Visit(Base):
    __tablename__ = "visits"
    __table_args__ = _NEVER_REUSED
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lesion_id: Mapped[int] = mapped_column(ForeignKey("lesions.id", ondelete="CASCADE"),
                                           index=True)
    taken_at: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    age: Mapped[float | None] = mapped_column(Float)
    sex: Mapped[str | None] = mapped_column(String(16))
    #: the site the model was given (``clinic.sites.visit_site``)
    site: Mapped[str | None] = mapped_column(String(64))
    #: ``site`` is the lesion's body site (the visit gave none, or a broader one); revision 0004
    site_inherited: Mapped[bool] = mapped_column(Boolean, default=False,
                                                 server_default=false())
    note: Mapped[str | None] = mapped_column(Text)
    #: the facade's ``Prediction.to_dict(heatmap_png=False)`` as JSON text
    result_json: Mapped[str] = mapped_column(Text)
    risk: Mapped[str] = mapped_column(String(16))
    malignant_probability: Mapped[float | None] = mapped_column(Float)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(50))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    #: image store keys (content sha256 + extension)
    image_key: Mapped[str] = mapped_column(String(100), index=True)
    heatmap_key: Mapped[str | None] = mapped_column(String(100), index=True)
    #: the model's pooled features (float32 bytes) for similar cases; added by revision 0002
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    lesion: Mapped[Lesion] = relationship(back_populates="visits")


class Diagnosis(Base):
    __tablename__ = "diagnoses"
    __table_args__ = _NEVER_REUSED
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lesion_id: Mapped[int] = mapped_column(ForeignKey("lesions.id", ondelete="CASCADE"),
                                           unique=True)
    code: Mapped[str] = mapped_column(String(8))
    method: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lesion: Mapped[Lesion] = relationship(back_populates="diagnosis")


class AuditEvent(Base):
    """Who did what to which object: ids and times only (no image, no demographics)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),
                      Index("ix_audit_events_patient_id", "patient_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int | None] = mapped_column(Integer)
    #: the patient the event concerns (an event about a patient or one of their lesions,
    #: visits, images, diagnoses; no foreign key: it outlives the patient's deletion); revision
    #: 0008 added it, older events have none
    patient_id: Mapped[int | None] = mapped_column(Integer)
