"""Patients -> lesions -> visits: rows in, JSON out, and the lesion timeline.

A lesion's *change* between two consecutive visits: days apart, the change in malignant
probability, the tiers; ``risk_rose`` when the tier went up (low < moderate < high) or the
malignant probability rose by at least ``RISE_DELTA``. Visits the gate could not assess have no
numbers and never count as a rise.

A visit that could not be assessed never hides what the assessed ones said: a lesion's (and a
patient's) ``latest_risk`` is the tier of its latest *assessed* visit, and its ``risk_rose``
compares its last two assessed visits. That the latest photo could not be assessed is said
beside it (``latest_visit_risk``: the latest visit's own tier, ``cannot_assess`` then), so a
clinician sees both the last assessed tier and that a new photo is needed.

A confirmed diagnosis (a clinician's, by histopathology or clinically) outranks the model's
trend: a diagnosed lesion's ``risk_rose`` is False unless the later visit of the rise was taken
after the day the diagnosis was (last) recorded (``rose_undiagnosed``), so an excised naevus is
not flagged, while a lesion that changes after its diagnosis still is. The changes between
visits (``changes``) keep the model's own ``risk_rose``. The patient list gives each patient's
confirmed diagnoses beside the model's tiers (``patient_row``).

What was filed wrongly can be corrected: a visit deleted (``delete_visit``) or re-dated (the
timeline is computed from the stored dates at every read, so it follows), a diagnosis removed
(``delete_diagnosis``); an overwrite is checked against what the client saw (``Seen``). A
patient's reference is corrected under the rule that created it (``rename_patient``), and a
lesion created by mistake is deleted with its visits and diagnosis (``delete_lesion``).
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    and_,
    case,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from dermsight import taxonomy
from dermsight.clinic import sites
from dermsight.clinic.accounts import aware
from dermsight.clinic.db import (
    add_unique,
    casekey,
    insert_or_found,
    lookalike_keys,
    taken_ignoring_case,
)
from dermsight.clinic.models import Diagnosis, Lesion, Patient, User, Visit, utcnow

#: rise of the malignant probability (absolute) between visits that flags a lesion
RISE_DELTA = 0.10
TIER_RANK = {"low": 0, "moderate": 1, "high": 2}
API = "/api/v1"


class NotFound(LookupError):
    """An id that does not exist (404)."""


class Conflict(ValueError):
    """A unique value that exists already (409)."""


T = TypeVar("T")


def get_or_404(db: DbSession, model: type[T], object_id: int, what: str) -> T:
    row = db.get(model, object_id)
    if row is None:
        raise NotFound(f"no {what} with id {object_id}: it may have been deleted")
    return row


# --- light per-visit facts (no result JSON) ------------------------------------------------------


@dataclass(frozen=True)
class VisitFact:
    id: int
    lesion_id: int
    taken_at: date
    risk: str
    malignant_probability: float | None


def visit_facts(db: DbSession, lesion_ids: list[int]) -> dict[int, list[VisitFact]]:
    """Per lesion, its visits oldest first (id breaks ties on one day)."""
    out: dict[int, list[VisitFact]] = defaultdict(list)
    if not lesion_ids:
        return out
    rows = db.execute(
        select(Visit.id, Visit.lesion_id, Visit.taken_at, Visit.risk,
               Visit.malignant_probability)
        .where(Visit.lesion_id.in_(lesion_ids)).order_by(Visit.taken_at, Visit.id))
    for r in rows:
        out[r.lesion_id].append(VisitFact(r.id, r.lesion_id, r.taken_at, r.risk,
                                          r.malignant_probability))
    return out


def changes(facts: list[VisitFact]) -> list[dict[str, Any]]:
    out = []
    for a, b in itertools.pairwise(facts):
        delta = None
        if a.malignant_probability is not None and b.malignant_probability is not None:
            delta = round(b.malignant_probability - a.malignant_probability, 6)
        rose = (a.risk in TIER_RANK and b.risk in TIER_RANK
                and (TIER_RANK[b.risk] > TIER_RANK[a.risk]
                     or (delta is not None and delta >= RISE_DELTA)))
        out.append({"from_visit": a.id, "to_visit": b.id, "days": (b.taken_at - a.taken_at).days,
                    "malignant_delta": delta, "tier_from": a.risk, "tier_to": b.risk,
                    "risk_rose": bool(rose)})
    return out


def assessed(facts: list[VisitFact]) -> list[VisitFact]:
    """The visits the gate could assess (a tier of ``TIER_RANK``), in their order."""
    return [f for f in facts if f.risk in TIER_RANK]


def current(facts: list[VisitFact]) -> VisitFact | None:
    """The visit that says a lesion's (or a patient's) risk: the latest assessed one; the
    latest visit when none could be assessed (its tier is then ``cannot_assess``); None
    without visits. A later photo the gate refused never hides an assessed tier."""
    done = assessed(facts)
    return done[-1] if done else (facts[-1] if facts else None)


def risk_rose(facts: list[VisitFact]) -> bool:
    """Did the risk rise between the lesion's last two *assessed* visits? Visits the gate
    could not assess, before or after them, neither hide a rise nor make one."""
    ch = changes(assessed(facts)[-2:])
    return bool(ch and ch[-1]["risk_rose"])


@dataclass(frozen=True)
class DxFact:
    """A lesion's confirmed diagnosis, as the patient list needs it."""

    lesion_id: int
    code: str
    method: str
    #: the (UTC) day it was last recorded
    recorded_on: date


def dx_fact(d: Diagnosis | None) -> DxFact | None:
    if d is None:
        return None
    return DxFact(d.lesion_id, d.code, d.method, aware(d.recorded_at).date())


def rose_undiagnosed(facts: list[VisitFact], dx: DxFact | None) -> bool:
    """``risk_rose``, except for a diagnosed lesion whose rise ends at a visit taken on or
    before the day its diagnosis was recorded: the diagnosis outranks the model's trend. A
    rise in a photo taken after it (a lesion that changed since) is still said."""
    if not risk_rose(facts):
        return False
    return dx is None or assessed(facts)[-1].taken_at > dx.recorded_on


def highest_risk(risks: list[str]) -> str | None:
    """The highest tier of ``risks`` (low < moderate < high); ``cannot_assess`` when none of
    them is a tier; None for no risks."""
    tiers = [r for r in risks if r in TIER_RANK]
    if tiers:
        return max(tiers, key=TIER_RANK.__getitem__)
    return risks[0] if risks else None


def latest_cannot_assess(facts: list[VisitFact]) -> bool:
    """Whether the latest visit could not be assessed (its photo needs taking again)."""
    return bool(facts) and facts[-1].risk not in TIER_RANK


# --- JSON forms ----------------------------------------------------------------------------------


def diagnosis_json(d: Diagnosis | None, usernames: dict[int, str]) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"code": d.code, "method": d.method, "note": d.note,
            "recorded_by": usernames.get(d.recorded_by or -1),
            "recorded_at": aware(d.recorded_at).isoformat()}


def usernames(db: DbSession) -> dict[int, str]:
    return {uid: name for uid, name in db.execute(select(User.id, User.username))}


def lesion_json(lesion: Lesion, facts: list[VisitFact], names: dict[int, str]) -> dict[str, Any]:
    """``latest_risk`` / ``latest_malignant_probability`` / ``latest_risk_taken_at``: of the
    latest assessed visit (``current``); ``latest_visit_risk``: the latest visit's own tier
    (``cannot_assess`` when its photo could not be assessed); ``risk_rose``: not for a rise
    its confirmed diagnosis outranks (``rose_undiagnosed``)."""
    shown = current(facts)
    return {
        "id": lesion.id, "patient_id": lesion.patient_id, "body_site": lesion.body_site,
        "side": lesion.side, "location": lesion.location,
        "map": ({"view": lesion.map_view, "x": lesion.map_x, "y": lesion.map_y}
                if lesion.map_view is not None else None),
        "created_at": aware(lesion.created_at).isoformat(),
        "n_visits": len(facts),
        "latest_risk": shown.risk if shown else None,
        "latest_malignant_probability": shown.malignant_probability if shown else None,
        "latest_risk_taken_at": shown.taken_at.isoformat() if shown else None,
        "latest_visit_risk": facts[-1].risk if facts else None,
        "risk_rose": rose_undiagnosed(facts, dx_fact(lesion.diagnosis)),
        "diagnosis": diagnosis_json(lesion.diagnosis, names),
    }


def visit_json(v: Visit, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": v.id, "lesion_id": v.lesion_id, "taken_at": v.taken_at.isoformat(),
        "created_at": aware(v.created_at).isoformat(),
        "created_by": names.get(v.created_by or -1),
        "age": v.age, "sex": v.sex, "site": v.site, "site_inherited": v.site_inherited,
        "note": v.note,
        "result": json.loads(v.result_json),
        "image_url": f"{API}/visits/{v.id}/image",
        "heatmap_url": f"{API}/visits/{v.id}/heatmap" if v.heatmap_key else None,
        "model": {"name": v.model_name, "version": v.model_version,
                  "bundle_sha256": v.bundle_sha256},
    }


def patient_json(p: Patient) -> dict[str, Any]:
    return {"id": p.id, "ref": p.ref, "created_at": aware(p.created_at).isoformat()}


# --- patients ------------------------------------------------------------------------------------


def create_patient(db: DbSession, ref: str, user: User) -> Patient:
    """A new patient; 409 (``Conflict``) when a reference equal to ``ref`` ignoring case and
    surrounding spaces exists (``P-001`` and ``p-001``, ``Özil`` and ``özil`` are one patient;
    Unicode's case folding, an accented letter composed or decomposed alike: ``db.casekey``, on
    SQLite and PostgreSQL the same). Checked first, to name the stored spelling and to leave
    the session's other work alone (an insert the index refuses rolls it all back); the unique
    index on ``Patient.ref_key`` refuses the loser of two concurrent requests the same way.
    A reference that only looks the same as another (``_ref_alike``) is a 409 too."""
    ref = ref.strip()
    taken = taken_ignoring_case(db, Patient.ref, ref)
    if taken is None:
        if (alike := _ref_alike(db, ref)) is not None:
            raise alike
        p = Patient(ref=ref, created_by=user.id)
        taken = add_unique(db, p, Patient.ref, ref)
        if taken is None:
            return p
    raise _ref_taken(ref, taken)


def _ref_taken(ref: str, taken: str) -> Conflict:
    """The 409 of a reference another patient has (``taken``: its stored spelling)."""
    same = "" if taken == ref else f" (as {taken!r}: references ignore case)"
    return Conflict(f"a patient with reference {ref!r} exists already{same}")


def _ref_alike(db: DbSession, ref: str, patient_id: int | None = None) -> Conflict | None:
    """The 409 of a reference that looks the same as another patient's (``db.lookalike_keys``:
    ``P-001`` written with a Cyrillic U+0420 or a fullwidth U+FF30 beside ``P-001``) without
    being equal to it ignoring case (that is ``_ref_taken``); None when no other patient's (not
    ``patient_id``'s) does. Every reference is compared (a clinic has thousands at most).
    Unlike equality, no index backs it: two such requests at the same instant can both pass."""
    keys, plain = lookalike_keys(ref), ref.isascii()
    query = select(Patient.ref)
    if patient_id is not None:
        query = query.where(Patient.id != patient_id)
    for other in db.scalars(query):
        # two ASCII references look alike only when equal ignoring case: checked already
        if (plain and other.isascii()) or not keys & lookalike_keys(other):
            continue
        if casekey(other) == casekey(ref):  # stored since the check (a concurrent request)
            return _ref_taken(ref, other)
        # the first character that differs, named in both (when they line up)
        differs = next((d for d in enumerate(zip(ref, other, strict=True), 1)
                        if casekey(d[1][0]) != casekey(d[1][1])),
                       None) if len(ref) == len(other) else None
        where = "" if differs is None else (
            f" (character {differs[0]} is {_described(differs[1][0])}, the existing "
            f"reference's is {_described(differs[1][1])})")
        return Conflict(f"reference {ref!r} looks the same as existing patient reference "
                        f"{other!r}{where}: choose a reference that cannot be mistaken for it")
    return None


def _described(ch: str) -> str:
    """``U+0420 CYRILLIC CAPITAL LETTER ER``: a character named, not only written."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def rename_patient(db: DbSession, patient: Patient, ref: str) -> None:
    """Correct the patient's reference (a name typed into it by mistake, a wrong record
    number). The rule of ``create_patient``: a ``Conflict`` (409, the same message) when
    *another* patient's reference equals ``ref`` ignoring case and surrounding spaces; the
    patient's own in another spelling is a correction (``p-001`` -> ``P-001``); one that looks
    the same as another patient's is refused too (``_ref_alike``). ``ref_key``
    follows the new reference (``Patient._set_key``), and the unique index on it refuses the
    loser of two concurrent requests for one reference the same way (``insert_or_found``
    flushes the update: the row is already in the session). The old text stays in the
    database file until the caller's ``Database.scrub``."""
    ref = ref.strip()
    if ref == patient.ref:
        return
    patient_id = patient.id

    def other() -> str | None:
        return db.scalar(select(Patient.ref).where(Patient.ref_key == casekey(ref),
                                                   Patient.id != patient_id).limit(1))

    taken = other()
    if taken is None:
        if (alike := _ref_alike(db, ref, patient_id)) is not None:
            raise alike
        patient.ref = ref
        taken = insert_or_found(db, patient, other)
        if taken is None:
            return
    raise _ref_taken(ref, taken)


def ref_prefix_filter(prefix: str) -> ColumnElement[bool]:
    """Patients whose reference starts with ``prefix`` ignoring case: the stored key starts
    with ``casekey(prefix)`` (a LIKE on ``Patient.ref_key``, ``%`` and ``_`` taken literally),
    the same on SQLite and PostgreSQL. Keys are decomposed (NFD), so an accent is a character
    of its own after its letter: ``Jose`` also lists ``José-1`` (the accent follows the prefix),
    while ``José`` lists only references with that accent."""
    key = casekey(prefix)
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Patient.ref_key.like(f"{escaped}%", escape="\\")


def list_patients(db: DbSession, prefix: str | None, limit: int = 200) -> list[dict[str, Any]]:
    q = select(Patient).order_by(Patient.ref).limit(limit)
    if prefix:
        q = q.where(ref_prefix_filter(prefix))
    patients = list(db.scalars(q))
    lesions: dict[int, list[int]] = defaultdict(list)
    dx: dict[int, DxFact] = {}
    if patients:
        for lid, pid, code, method, recorded_at in db.execute(
                select(Lesion.id, Lesion.patient_id, Diagnosis.code, Diagnosis.method,
                       Diagnosis.recorded_at)
                .outerjoin(Diagnosis, Diagnosis.lesion_id == Lesion.id)
                .where(Lesion.patient_id.in_([p.id for p in patients])).order_by(Lesion.id)):
            lesions[pid].append(lid)
            if code is not None:
                dx[lid] = DxFact(lid, code, method, aware(recorded_at).date())
    facts = visit_facts(db, [lid for ids in lesions.values() for lid in ids])
    return [patient_row(p, [facts.get(lid, []) for lid in lesions[p.id]],
                        [dx.get(lid) for lid in lesions[p.id]]) for p in patients]


def confirmed_json(dx: list[DxFact]) -> list[dict[str, Any]]:
    """The confirmed diagnoses, malignant ones (``taxonomy.MALIGNANT``) first, then by lesion."""
    rows = [{"lesion_id": d.lesion_id, "code": d.code, "method": d.method,
             "malignant": d.code in taxonomy.MALIGNANT} for d in dx]
    return sorted(rows, key=lambda r: (not r["malignant"], r["lesion_id"]))


def patient_row(p: Patient, per: list[list[VisitFact]],
                dx: list[DxFact | None] | None = None) -> dict[str, Any]:
    """A patient as the list shows them; ``per``: each lesion's visit facts (oldest first);
    ``dx``: each lesion's confirmed diagnosis (None: none recorded), in the same order.

    The model's: ``latest_risk``: the tier of the patient's latest assessed visit
    (``current``); ``latest_visit_risk``: their latest visit's own tier; ``highest_risk``: the
    highest of the lesions' ``latest_risk``; ``n_lesions_latest_cannot_assess``: lesions whose
    latest photo could not be assessed; ``risk_rose``: any lesion's (``rose_undiagnosed``: not
    a rise its diagnosis outranks). The clinicians': ``confirmed``: each diagnosed lesion's
    ``{lesion_id, code, method, malignant}``, malignant first; ``n_confirmed_malignant``."""
    dxs = list(dx) if dx is not None else [None] * len(per)
    visits = sorted((f for fs in per for f in fs), key=lambda f: (f.taken_at, f.id))
    shown = current(visits)
    confirmed = confirmed_json([d for d in dxs if d is not None])
    return {
        **patient_json(p), "n_lesions": len(per), "n_visits": len(visits),
        "last_visit_at": visits[-1].taken_at.isoformat() if visits else None,
        "latest_risk": shown.risk if shown else None,
        "latest_visit_risk": visits[-1].risk if visits else None,
        "highest_risk": highest_risk([c.risk for fs in per if (c := current(fs))]),
        "n_lesions_latest_cannot_assess": sum(latest_cannot_assess(fs) for fs in per),
        "risk_rose": any(rose_undiagnosed(fs, d) for fs, d in zip(per, dxs, strict=True)),
        "confirmed": confirmed,
        "n_confirmed_malignant": sum(bool(c["malignant"]) for c in confirmed),
    }


def patient_detail(db: DbSession, patient: Patient) -> dict[str, Any]:
    facts = visit_facts(db, [le.id for le in patient.lesions])
    names = usernames(db)
    return {**patient_json(patient),
            "lesions": [lesion_json(le, facts.get(le.id, []), names) for le in patient.lesions]}


# --- lesions -------------------------------------------------------------------------------------


def create_lesion(db: DbSession, patient: Patient, body_site: str | None, side: str | None,
                  location: str | None, map_: dict[str, Any] | None) -> Lesion:
    """``body_site`` is normalised like the predict API's site (``InvalidValue`` if unknown)."""
    le = Lesion(patient_id=patient.id, body_site=sites.lesion_site(body_site), side=side,
                location=location,
                map_view=map_["view"] if map_ else None, map_x=map_["x"] if map_ else None,
                map_y=map_["y"] if map_ else None)
    db.add(le)
    db.flush()
    return le


def lesion_detail(db: DbSession, lesion: Lesion) -> dict[str, Any]:
    names = usernames(db)
    facts = visit_facts(db, [lesion.id]).get(lesion.id, [])
    return {
        "lesion": lesion_json(lesion, facts, names),
        "patient": {"id": lesion.patient.id, "ref": lesion.patient.ref},
        "visits": [visit_json(v, names) for v in lesion.visits],
        "changes": changes(facts),
        "diagnosis": diagnosis_json(lesion.diagnosis, names),
    }


@dataclass(frozen=True)
class Seen:
    """The diagnosis a client saw before it changed it: ``(code, method)``, or None when it saw
    none. ``set_diagnosis`` refuses (``Conflict``, 409) to overwrite a diagnosis that no longer
    is what the client saw, so two clinicians never silently overwrite each other."""

    diagnosis: tuple[str, str] | None
    #: the note it showed, compared too when given (a corrected note is a change: "margins
    #: involved" must not be overwritten by a page that showed "margins clear")
    note: str | None = None
    note_given: bool = False


def _recorded(db: DbSession, lesion_id: int) -> Diagnosis | None:
    """The lesion's diagnosis as the database holds it now (not the session's copy)."""
    return db.scalar(select(Diagnosis).where(Diagnosis.lesion_id == lesion_id)
                     .execution_options(populate_existing=True))


def _stale(db: DbSession, lesion_id: int) -> Conflict:
    """The 409 of a diagnosis change made on an outdated page: what is recorded now."""
    d = _recorded(db, lesion_id)
    if d is None:
        now = "it has no diagnosis now (it was removed)"
    else:
        by = usernames(db).get(d.recorded_by or -1)
        when = aware(d.recorded_at).strftime("%Y-%m-%d %H:%M UTC")
        now = f"it is now {d.code} ({d.method}), recorded {when}" + (f" by {by}" if by else "")
    return Conflict(f"the diagnosis of lesion {lesion_id} changed since you loaded it: {now}; "
                    "reload the lesion and check it before saving")


def _matches(d: Diagnosis | None, seen: Seen) -> bool:
    if (None if d is None else (d.code, d.method)) != seen.diagnosis:
        return False
    return d is None or not seen.note_given or (d.note or None) == (seen.note or None)


def _add_first(db: DbSession, d: Diagnosis) -> bool:
    """Insert the lesion's first diagnosis: True, or False when a concurrent request recorded
    one since the check (the unique ``diagnoses.lesion_id`` refused this one and the unit of
    work is rolled back: ``db.insert_or_found``). Any other integrity error propagates."""
    lesion_id = d.lesion_id
    return insert_or_found(db, d, lambda: _recorded(db, lesion_id)) is None


def set_diagnosis(db: DbSession, lesion: Lesion, code: str, method: str, note: str | None,
                  user: User, *, replaces: Seen | None = None) -> Diagnosis:
    """Record (or overwrite) the lesion's confirmed diagnosis.

    With ``replaces`` (what the client saw) a diagnosis that is no longer that one is a
    ``Conflict`` (409) naming what is recorded now; the check is part of the write (an
    ``UPDATE ... WHERE code, method`` as seen; the unique ``lesion_id`` for a first one), so
    two concurrent changes cannot both pass it. Without ``replaces`` the last write wins, and
    the loser of two concurrent first diagnoses overwrites the winner's (no 500).

    ``recorded_at`` / ``recorded_by`` say when and by whom the code or method was last set: an
    overwrite that keeps both (a note edit) keeps them, since it is no new diagnosis (a
    note edit must not make an earlier rise in risk look as if it came before the diagnosis:
    ``rose_undiagnosed``). The audit log names who changed the note."""
    lesion_id = lesion.id

    def gone() -> NotFound | None:  # the lesion deleted since the route read it
        if db.scalar(select(Lesion.id).where(Lesion.id == lesion_id)) is not None:
            return None
        return NotFound(f"lesion {lesion_id} was deleted meanwhile (by another request), so no "
                        "diagnosis was recorded: reload the page")

    if replaces is not None and not _matches(lesion.diagnosis, replaces):
        raise _stale(db, lesion_id)
    if lesion.diagnosis is None:
        d = Diagnosis(lesion_id=lesion_id, code=code, method=method, note=note,
                      recorded_by=user.id)
        try:
            added = _add_first(db, d)
        except IntegrityError:  # rolled back; the foreign key of a lesion deleted meanwhile?
            if (missing := gone()) is not None:
                raise missing from None
            raise
        if added:
            lesion.diagnosis = d
            return d
        if replaces is not None:
            raise _stale(db, lesion_id)
    stmt = update(Diagnosis).where(Diagnosis.lesion_id == lesion_id)
    if replaces is not None and replaces.diagnosis is not None:
        stmt = stmt.where(Diagnosis.code == replaces.diagnosis[0],
                          Diagnosis.method == replaces.diagnosis[1])
        if replaces.note_given:
            stmt = stmt.where(Diagnosis.note.is_(None) if not replaces.note
                              else Diagnosis.note == replaces.note)
    same = and_(Diagnosis.code == code, Diagnosis.method == method)  # the row's values before
    done = cast("CursorResult[Any]", db.execute(
        stmt.values(code=code, method=method, note=note,
                    recorded_by=case((same, Diagnosis.recorded_by),
                                     else_=literal(user.id, Diagnosis.recorded_by.type)),
                    recorded_at=case((same, Diagnosis.recorded_at),
                                     else_=literal(utcnow(), Diagnosis.recorded_at.type))),
        execution_options={"synchronize_session": False}))
    current = _recorded(db, lesion_id)
    if done.rowcount != 1 or current is None:
        raise gone() or _stale(db, lesion_id)
    return current


def delete_diagnosis(db: DbSession, lesion: Lesion,
                     seen: tuple[str, str] | None = None) -> None:
    """Remove the lesion's diagnosis (``NotFound`` when it has none). With ``seen`` (the
    ``(code, method)`` the client showed) a diagnosis that is no longer that one is a
    ``Conflict`` (409) naming what is recorded now; the check is part of the delete."""
    stmt = delete(Diagnosis).where(Diagnosis.lesion_id == lesion.id)
    if seen is not None:
        stmt = stmt.where(Diagnosis.code == seen[0], Diagnosis.method == seen[1])
    done = cast("CursorResult[Any]", db.execute(
        stmt, execution_options={"synchronize_session": False}))
    if done.rowcount == 1:
        db.expire(lesion, ["diagnosis"])
        return
    if _recorded(db, lesion.id) is None:
        raise NotFound(f"lesion {lesion.id} has no diagnosis recorded: it may have been removed "
                       "already")
    raise _stale(db, lesion.id)


def delete_lesion(db: DbSession, lesion_id: int) -> set[str]:
    """Delete the lesion's row with its visits and diagnosis (the database's ``ON DELETE
    CASCADE``; ``NotFound`` when absent); returns its visits' image store keys, to be deleted
    once committed where no other visit uses them (``Clinic.delete_unreferenced``). The lesion
    is locked before its visits are read (SQLite: the write lock, by a write that changes
    nothing; PostgreSQL: its row, ``FOR UPDATE``, which a visit's insert waits for), so that a
    visit stored at the same moment is either committed first, and then read here and deleted
    with its files, or finds the lesion gone (its insert fails; ``store_visit``'s files are
    left to the sweep)."""
    db.execute(update(Lesion).where(Lesion.id == lesion_id).values(side=Lesion.side)
               .execution_options(synchronize_session=False))
    lesion = db.scalar(select(Lesion).where(Lesion.id == lesion_id).with_for_update()
                       .execution_options(populate_existing=True))
    if lesion is None:
        raise NotFound(f"no lesion with id {lesion_id}: it may have been deleted")
    keys = {k for image, heatmap in db.execute(
        select(Visit.image_key, Visit.heatmap_key).where(Visit.lesion_id == lesion_id))
        for k in (image, heatmap) if k}
    db.delete(lesion)
    db.flush()
    return keys


def delete_visit(db: DbSession, visit_id: int) -> set[str]:
    """Delete the visit's row (``NotFound`` when absent); returns its image store keys, to be
    deleted once committed where no other visit uses them (``Clinic.delete_unreferenced``)."""
    v = get_or_404(db, Visit, visit_id, "visit")
    keys = {k for k in (v.image_key, v.heatmap_key) if k}
    lesion_id = v.lesion_id
    db.delete(v)
    db.flush()
    lift_visit_doubt(db, lesion_id, gone=visit_id)
    return keys


def _without_visit_flag(flags: list[Any]) -> list[Any]:
    return [f for f in flags
            if not (isinstance(f, dict) and f.get("code") == sites.CONTRADICTS_VISIT)]


def lift_visit_doubt(db: DbSession, lesion_id: int, *, gone: int | None = None) -> None:
    """After a visit of a lesion without a body site is deleted (``gone``): remove the
    ``site_contradicts_earlier_visit`` flag of each remaining visit whose site no longer
    contradicts any of the lesion's other visits not themselves in doubt (taken in date order,
    so the earlier visits are the reference, as on upload). Flags are only lifted, never added
    or reworded; ``site_contradicts_lesion`` is never touched."""
    lesion = db.get(Lesion, lesion_id)
    if lesion is None or sites.stored_lesion_site(lesion.body_site) is not None:
        return
    visits = sorted((v for v in lesion.visits if v.id != gone),
                    key=lambda v: (v.taken_at, v.id))
    changed = True
    while changed:
        changed = False
        for v in visits:
            result = json.loads(v.result_json)
            flags = result.get("flags") if isinstance(result, dict) else None
            if not isinstance(flags, list) or _without_visit_flag(flags) == flags:
                continue
            others = [(o.site, o.taken_at) for o in visits
                      if o is not v and not sites.site_in_doubt(o.result_json)]
            if sites.visit_against_visits(v.site, others) is None:
                result["flags"] = _without_visit_flag(flags)
                v.result_json = json.dumps(result, separators=(",", ":"))
                changed = True
    db.flush()


def count_rows(db: DbSession, model: type[Any]) -> int:
    return int(db.scalar(select(func.count()).select_from(model)) or 0)
