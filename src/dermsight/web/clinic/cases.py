"""Patients, lesions, visits and diagnoses; a patient's export and deletion."""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session as DbSession
from starlette.exceptions import HTTPException

from dermsight import taxonomy
from dermsight.clinic import audit, cases, exports, rights, sites
from dermsight.clinic.models import Lesion, Patient, User, Visit
from dermsight.clinic.runtime import Clinic
from dermsight.clinic.visits import NOTE_MAX, assess, store_visit
from dermsight.io.errors import ImageDecodeError
from dermsight.records import Metadata
from dermsight.web.clinic.bodies import (
    DiagnosisCode,
    DiagnosisIn,
    LesionChangeIn,
    LesionIn,
    Line,
    NoteIn,
    PatientIn,
    note_problem,
)
from dermsight.web.clinic.deps import (
    AdminUser,
    CurrentUser,
    ObjectId,
    clinic_of,
    recheck,
    route_session,
)
from dermsight.web.deps import ModelDep, SettingsDep, WorkersDep
from dermsight.web.formnames import form_fields
from dermsight.web.routes.metrics import MetricsDep
from dermsight.web.schemas import PREDICT_REQUEST_BODY
from dermsight.web.upload import UploadError, check_query, read_upload

router = APIRouter(tags=["clinic: cases"])
ZIP = "application/zip"
#: patient images stay out of the browser's disk cache (a shared workstation keeps none of them)
NO_STORE = {"Cache-Control": "no-store"}
_Row = TypeVar("_Row", Patient, Lesion)
#: a date exactly as ``taken_at`` is written: YYYY-MM-DD (ASCII digits; nothing before or after)
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DiagnosisMethod = Literal["histopathology", "clinical"]


class VisitChangeIn(NoteIn):
    """``PATCH /visits/{id}``: the keys present are changed (at least one)."""

    taken_at: str | None = Field(
        default=None, max_length=40, json_schema_extra={"format": "date"},
        description="the date the image was taken, YYYY-MM-DD (the same rules as at upload)")


class SeenDiagnosisIn(BaseModel):
    """The diagnosis the client saw (``replaces``); its note, when given, is compared too."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    code: DiagnosisCode
    method: DiagnosisMethod
    note: str | None = Field(default=None, max_length=NOTE_MAX,
                             description="the note it showed (null: none); absent: not compared")


class DiagnosisChangeIn(DiagnosisIn):
    replaces: SeenDiagnosisIn | None = Field(
        default=None,
        description="the diagnosis the client saw before this change ({code, method}), null "
                    "when it saw none; absent: not checked")


def _check_note(note: str | None) -> str | None:
    if note is not None and len(note) > NOTE_MAX:
        raise HTTPException(413, f"the note is too long ({len(note):,} characters; at most "
                                 f"{NOTE_MAX:,}): shorten it")
    if note is not None and "\x00" in note:  # PostgreSQL cannot store it
        raise HTTPException(422, "the note contains a NUL character (code 0), which cannot be "
                                 "stored: remove it")
    why = None if note is None else note_problem(note)  # the upload form's note: no pydantic
    if why is not None:
        raise HTTPException(422, f"the note {why}")
    return note or None


def _view(request: Request, user: User, model: type[_Row], object_id: int, what: str,
          detail: Callable[[DbSession, _Row], dict[str, Any]]) -> dict[str, Any]:
    """One patient's or lesion's page: 404 when absent, the view audited, then its detail."""
    with route_session(request) as s:
        row = cases.get_or_404(s, model, object_id, what)
        audit.record(s, user, "view", what, row.id)
        return detail(s, row)


#: what a patient's and a lesion's risk fields mean (the routes' OpenAPI descriptions)
RISK_FIELDS = (
    "A visit whose photo could not be assessed (tier `cannot_assess`) never hides an assessed "
    "tier or a rise: `latest_risk` (and a lesion's `latest_malignant_probability`, "
    "`latest_risk_taken_at`) come from the latest *assessed* visit (`cannot_assess` only when "
    "no visit could be assessed; before this release: the latest visit, whatever its tier), "
    "and `risk_rose` compares the last two assessed visits. `latest_visit_risk` is the latest "
    "visit's own tier: `cannot_assess` says its photo needs taking again. A lesion with a "
    "confirmed diagnosis has `risk_rose` false unless the later photo of the rise was taken "
    "after the day its code or method was last set (a note edit does not move that day); "
    "`changes` keep the model's own rise.")


@router.get("/patients", summary="Patients, optionally those whose reference starts with q",
            description="Each patient with `n_lesions`, `n_visits`, `last_visit_at`, "
                        "`latest_risk`, `latest_visit_risk`, `highest_risk` (the highest of "
                        "the lesions' `latest_risk`; these are the model's tiers), "
                        "`n_lesions_latest_cannot_assess` (lesions whose latest photo could not "
                        "be assessed), `risk_rose` (any lesion's), `confirmed` (each diagnosed "
                        "lesion's confirmed diagnosis, `{lesion_id, code, method, malignant}`, "
                        "malignant ones first; `malignant`: MEL, BCC or SCC) and "
                        f"`n_confirmed_malignant`. {RISK_FIELDS}")
def list_patients(request: Request, user: CurrentUser,
                  q: Annotated[Line | None, Query(max_length=64)] = None
                  ) -> list[dict[str, Any]]:
    with route_session(request) as s:
        # never the search; once per user within audit.REPEAT_LIST (the search asks at each
        # pause in typing)
        audit.record_read(s, user, "patient_list", None, within=audit.REPEAT_LIST)
        return cases.list_patients(s, q)


@router.post("/patients", status_code=201,
             summary="A new patient (409 if the ref exists or looks like another patient's)")
def create_patient(body: PatientIn, request: Request, user: CurrentUser
                   ) -> dict[str, Any]:
    with route_session(request) as s:
        p = cases.create_patient(s, body.ref, user)
        audit.record(s, user, "create", "patient", p.id)
        return cases.patient_row(p, [])


@router.get("/patients/{patient_id}", summary="A patient with their lesions",
            description=f"The patient and each lesion's latest result. {RISK_FIELDS}")
def get_patient(patient_id: ObjectId, request: Request, user: CurrentUser
                ) -> dict[str, Any]:
    return _view(request, user, Patient, patient_id, "patient", cases.patient_detail)


PATIENT_CHANGE = (
    "Corrects the patient's reference (a name typed into it by mistake, a wrong record "
    "number): any signed-in user, as for creating a patient, under the same rules (1-64 "
    "characters, one line; 409 when another patient's reference is the same ignoring case and "
    "surrounding spaces, or looks the same (fullwidth forms, Cyrillic or Greek letters drawn "
    "like Latin ones); the patient's own in another case is a correction). Audited as an "
    "`update` of the patient. The old reference is removed from the SQLite database file and "
    "its write-ahead log at once (PostgreSQL: not at once, see docs/clinic.md). Answers the "
    "patient as `GET /patients/{id}` does.")


@router.patch("/patients/{patient_id}", summary="Correct a patient's reference (409 if "
                                                "another patient has it)",
              description=PATIENT_CHANGE)
def update_patient(patient_id: ObjectId, body: PatientIn, request: Request,
                   user: CurrentUser) -> dict[str, Any]:
    clinic = clinic_of(request)
    with route_session(request) as s:
        p = cases.get_or_404(s, Patient, patient_id, "patient")
        cases.rename_patient(s, p, body.ref)
        audit.record(s, user, "update", "patient", p.id)
        out = cases.patient_detail(s, p)
    clinic.db.scrub()  # the old reference's traces in the file and the WAL
    return out


@router.delete("/patients/{patient_id}", status_code=204,
               summary="Delete a patient with every row and image file (admin)")
def delete_patient(patient_id: ObjectId, request: Request, admin: AdminUser
                   ) -> Response:
    rights.delete_patient(clinic_of(request), patient_id, admin,
                          recheck=partial(recheck, request=request))
    return Response(status_code=204)


@router.get("/patients/{patient_id}/export", response_class=Response,
            summary="Everything stored about one patient (zip: patient.json + access_log.json "
                    "+ images/), named patient_<ref>_<date>.zip")
def export_patient(patient_id: ObjectId, request: Request, user: CurrentUser
                   ) -> Response:
    clinic = clinic_of(request)
    with route_session(request) as s:
        p = cases.get_or_404(s, Patient, patient_id, "patient")
        export = exports.patient_export(s, clinic.images, p)
        audit.record(s, user, "export", "patient", p.id)
        disposition = exports.patient_attachment(p.ref, p.id, dt.date.today())
    return Response(export.data, media_type=ZIP, headers={
        "Content-Disposition": disposition, exports.MISSING_HEADER: str(export.n_missing)})


@router.post("/patients/{patient_id}/lesions", status_code=201, summary="A new lesion")
def create_lesion(patient_id: ObjectId, body: LesionIn, request: Request,
                  user: CurrentUser) -> dict[str, Any]:
    with route_session(request) as s:
        p = cases.get_or_404(s, Patient, patient_id, "patient")
        le = cases.create_lesion(s, p, body.body_site, body.side, body.location,
                                 body.map.model_dump() if body.map else None)
        audit.record(s, user, "create", "lesion", le.id)
        return cases.lesion_json(le, [], {})


@router.get("/lesions/{lesion_id}", summary="A lesion's timeline: visits, changes, diagnosis",
            description="The lesion, its visits (oldest first), the change between each two "
                        f"consecutive visits and its diagnosis. {RISK_FIELDS}")
def get_lesion(lesion_id: ObjectId, request: Request, user: CurrentUser
               ) -> dict[str, Any]:
    return _view(request, user, Lesion, lesion_id, "lesion", cases.lesion_detail)


#: why ``PATCH /lesions/{id}`` refuses ``body_site``
BODY_SITE_FIXED = (
    "body_site cannot be changed: the lesion's visits were assessed with it (a visit without a "
    "site of its own was given the lesion's, and each visit's site was checked against it); "
    "if the lesion was recorded at the wrong site, create a lesion at the right site, upload "
    "its photos there and delete this one")
LESION_CHANGE = (
    "Send `location`, `side`, `map` or several; a key left out keeps its value, `{}` is a "
    "422; null (or an empty `location`) removes the value. The rules are those of creating a "
    "lesion. `body_site` is not changed here (a 422 saying why): the visits were assessed "
    "with it. Any signed-in user; audited as an `update` of the lesion. The old text is "
    "removed from the SQLite database file and its write-ahead log at once (PostgreSQL: not at "
    "once, see docs/clinic.md).")
#: what ``PATCH /lesions/{id}`` changes
LESION_FIELDS = ("location", "side", "map")


@router.patch("/lesions/{lesion_id}", summary="Correct a lesion's location, side or body map "
                                              "position", description=LESION_CHANGE)
def update_lesion(lesion_id: ObjectId, body: LesionChangeIn, request: Request,
                  user: CurrentUser) -> dict[str, Any]:
    given = body.model_fields_set
    if "body_site" in given:
        raise HTTPException(422, BODY_SITE_FIXED)
    if not given & set(LESION_FIELDS):
        raise HTTPException(422, "give location, side or map (or several): the request "
                                 "changes nothing")
    clinic = clinic_of(request)
    with route_session(request) as s:
        le = cases.get_or_404(s, Lesion, lesion_id, "lesion")
        if "location" in given:
            le.location = body.location or None
        if "side" in given:
            le.side = body.side
        if "map" in given:
            m = body.map
            le.map_view, le.map_x, le.map_y = (m.view, m.x, m.y) if m else (None, None, None)
        audit.record(s, user, "update", "lesion", le.id)
        s.flush()
        out = cases.lesion_json(le, cases.visit_facts(s, [le.id]).get(le.id, []),
                                cases.usernames(s))
    clinic.db.scrub()  # the old location's traces in the file and the WAL
    return out


@router.delete("/lesions/{lesion_id}", status_code=204,
               summary="Delete a lesion created by mistake, with its visits, diagnosis and "
                       "image files",
               description="Any signed-in user, as for deleting a visit. The lesion's row, its "
                           "visits and its diagnosis go in one transaction (audited as a "
                           "`delete` of the lesion, with the patient's id); then its visits' "
                           "image and heatmap files, unless another visit uses the same file. "
                           "The patient stays, also without lesions.")
def delete_lesion(lesion_id: ObjectId, request: Request, user: CurrentUser) -> Response:
    return _delete_filed(request, user, "lesion", lesion_id, cases.delete_lesion)


def _delete_filed(request: Request, user: User, what: str, object_id: int,
                  delete: Callable[[DbSession, int], set[str]]) -> Response:
    """A lesion's or visit's deletion: the rows and the audit event (with the patient, looked up
    before the row goes) in one transaction, then the old text scrubbed from the database file
    and the image files that no other visit uses deleted."""
    clinic = clinic_of(request)
    with route_session(request) as s:
        patient = audit.patient_of(s, what, object_id)
        keys = delete(s, object_id)
        audit.record(s, user, "delete", what, object_id, patient_id=patient)
    clinic.db.scrub()
    clinic.delete_unreferenced(keys)
    return Response(status_code=204)


def _form_value(fields: dict[str, str], name: str) -> str | None:
    value = fields.get(name)
    return value if value is not None and value.strip() else None


#: no visit is dated earlier: digital dermoscopy images start in the 1990s (patients carry no
#: birth date to bound it better); 1900-01-01 and the like are typing errors or placeholders
EARLIEST_VISIT = dt.date(1990, 1, 1)


def _taken_at(raw: str | None) -> dt.date:
    today = dt.datetime.now(dt.UTC).date()
    if raw is None:
        return today
    try:
        if not ISO_DAY.fullmatch(raw.strip()):
            raise ValueError(raw)
        day = dt.date.fromisoformat(raw.strip())
    except ValueError as exc:
        raise UploadError(422, f"the date the image was taken (taken_at) {raw[:40]!r} is not a "
                               "date written YYYY-MM-DD: write it like 2026-03-14") from exc
    if day > today + dt.timedelta(days=1):
        raise UploadError(422, f"the date the image was taken (taken_at) {day} lies in the "
                               "future: check the date")
    if day < EARLIEST_VISIT:
        raise UploadError(422, f"the date the image was taken (taken_at) {day} is before "
                               f"{EARLIEST_VISIT} (the earliest visit date accepted): check "
                               "the date")
    return day


def _visit_body() -> dict[str, Any]:
    """The multipart form of a new visit: the predict form plus note and taken_at."""
    body = copy.deepcopy(PREDICT_REQUEST_BODY)
    form = body["content"]["multipart/form-data"]["schema"]
    form["properties"]["image"]["description"] = (
        "JPEG, PNG, WebP, BMP or TIFF photo, or a DICOM file (its PatientAge / PatientSex / "
        "BodyPartExamined fill the fields left empty; stored as PNG of the decoded pixels, no "
        "metadata)")
    form["properties"]["note"] = {"type": "string", "maxLength": NOTE_MAX}
    form["properties"]["taken_at"] = {"type": "string", "format": "date",
                                      "description": "ISO date (default: today)"}
    return body


VISIT_BODY = _visit_body()
#: a visit upload's form fields; any other field (or any query parameter) is a 422 naming it
VISIT_FIELDS = form_fields(VISIT_BODY)


def _lesion_site(clinic: Clinic, lesion_id: int
                 ) -> tuple[str | None, list[tuple[str | None, dt.date]]]:
    """The lesion's body site (404 if there is no such lesion) and, when it has none, the site
    and date of each of its visits not themselves in doubt (``sites.site_in_doubt``): a new
    visit's site is weighed against them, so that one doubtful visit does not cast doubt on
    correct later ones."""
    with clinic.db.session() as s:
        lesion = cases.get_or_404(s, Lesion, lesion_id, "lesion")
        site = sites.stored_lesion_site(lesion.body_site)
        others = [] if site is not None else [
            (v.site, v.taken_at) for v in lesion.visits if not sites.site_in_doubt(v.result_json)]
        return site, others


def _store_and_show(clinic: Clinic, store: Callable[[], int]) -> dict[str, Any]:
    """Files, then the row (``store_visit``, which runs the request's ``recheck``), then the
    new visit as the API shows it (read after the commit: not ``route_session``, whose check
    would answer 401 for a visit already stored)."""
    visit_id = store()
    with clinic.db.session() as s:
        return cases.visit_json(cases.get_or_404(s, Visit, visit_id, "visit"),
                                cases.usernames(s))


@router.post("/lesions/{lesion_id}/visits", status_code=201,
             summary="A visit: upload the image (+ age, sex, site, note, taken_at), assess, store",
             openapi_extra={"requestBody": VISIT_BODY})
async def create_visit(lesion_id: ObjectId, request: Request, user: CurrentUser,
                       model: ModelDep, workers: WorkersDep, settings: SettingsDep,
                       *, metrics: MetricsDep) -> dict[str, Any]:
    """Async for the upload (``read_upload`` streams it on the event loop); every blocking step
    runs in a worker thread: the database reads and the storage step in anyio's default thread
    pool (FastAPI's, which the plain ``def`` routes use), only ``assess`` in the inference
    workers, so that waits for the disk (fsync) or the database never hold an inference slot."""
    check_query(request, ())
    clinic = clinic_of(request)
    body_site, others = await anyio.to_thread.run_sync(_lesion_site, clinic, lesion_id)
    form = await read_upload(request, replace(settings, max_field_bytes=4 * NOTE_MAX),
                             VISIT_FIELDS)
    if form.image is None:
        raise UploadError(422, "no image: send the photo in a form field named 'image'")
    note = _check_note(_form_value(form.fields, "note"))
    try:
        meta = Metadata.parse(age=_form_value(form.fields, "age"),
                              sex=_form_value(form.fields, "sex"),
                              site=_form_value(form.fields, "site"))
        site = sites.visit_site(meta.site, body_site)
    except (taxonomy.TaxonomyError, sites.InvalidValue) as exc:
        raise UploadError(422, str(exc)) from exc
    # without a site in the form: the lesion's, weighed against a DICOM file's own in assess
    against_file = body_site if meta.site is None else None
    meta = replace(meta, site=site.site)
    taken_at = _taken_at(_form_value(form.fields, "taken_at"))
    try:
        a = await workers.run(partial(assess, model, form.image, meta,
                                      partial(metrics.timed_prediction, model),
                                      lesion_site=against_file, other_visits=others))
    except ImageDecodeError as exc:
        raise UploadError(422, f"the image cannot be used: {exc.reason}") from exc
    inherited = (a.file_site or site).inherited
    store = partial(store_visit, clinic, model, a, lesion_id=lesion_id, taken_at=taken_at,
                    note=note, user=user, site_inherited=inherited,
                    recheck=partial(recheck, request=request))
    return await anyio.to_thread.run_sync(_store_and_show, clinic, store)


VISIT_CHANGE = (
    "Send `note`, `taken_at` or both; a key left out keeps its value, `{}` is a 422. "
    "`note: null` (or empty) removes the note. `taken_at` is written YYYY-MM-DD and follows "
    "the rules of an upload (not before 1990-01-01, not after tomorrow, UTC); the lesion's "
    "timeline (visit order, changes, `latest_risk`, `risk_rose`) follows the new date.")


@router.patch("/visits/{visit_id}", summary="Change a visit's note and / or the date it was "
                                            "taken", description=VISIT_CHANGE)
def update_visit(visit_id: ObjectId, body: VisitChangeIn, request: Request,
                 user: CurrentUser) -> dict[str, Any]:
    given = body.model_fields_set
    if not given & {"note", "taken_at"}:
        raise HTTPException(422, "give note or taken_at (or both): the request changes nothing")
    note = _check_note(body.note)
    if "taken_at" in given and body.taken_at is None:
        raise HTTPException(422, "taken_at cannot be removed: give the date the image was taken, "
                                 "YYYY-MM-DD")
    taken_at = _taken_at(body.taken_at) if body.taken_at is not None else None
    clinic = clinic_of(request)
    with route_session(request) as s:
        v = cases.get_or_404(s, Visit, visit_id, "visit")
        if "note" in given:
            v.note = note
        if taken_at is not None:
            v.taken_at = taken_at
        audit.record(s, user, "update", "visit", v.id)
        out = cases.visit_json(v, cases.usernames(s))
    clinic.db.scrub()  # a corrected note's old text: gone from the file and the WAL
    return out


@router.delete("/visits/{visit_id}", status_code=204,
               summary="Delete a wrongly filed visit with its image files",
               description="The visit's row goes (audited); then its image and heatmap files, "
                           "unless another visit uses the same file. The lesion stays, also "
                           "without visits.")
def delete_visit(visit_id: ObjectId, request: Request, user: CurrentUser) -> Response:
    return _delete_filed(request, user, "visit", visit_id, cases.delete_visit)


def _visit_file(request: Request, user: User, visit_id: int, heatmap: bool) -> Response:
    """The visit's image (its view audited: ``audit.record_read``) or heatmap (not audited: it
    is the model's map, shown over the image)."""
    clinic = clinic_of(request)
    with route_session(request) as s:
        v = cases.get_or_404(s, Visit, visit_id, "visit")
        key = v.heatmap_key if heatmap else v.image_key
        if not heatmap:
            audit.record_read(s, user, "visit_image", v.id)
    if key is None:
        raise HTTPException(404, f"visit {visit_id} has no heatmap: its image could not be "
                                 "assessed")
    return Response(clinic.images.get(key), media_type="image/png", headers=NO_STORE)


@router.get("/visits/{visit_id}/image", response_class=Response,
            summary="The visit's image (PNG, metadata stripped)",
            description="Audited as a view of `visit_image`: once per user and visit within "
                        f"{audit.REPEAT_READ.total_seconds() / 60:.0f} minutes.")
def visit_image(visit_id: ObjectId, request: Request, user: CurrentUser
                ) -> Response:
    return _visit_file(request, user, visit_id, heatmap=False)


@router.get("/visits/{visit_id}/heatmap", response_class=Response,
            summary="The visit's heatmap (PNG with alpha, to lay over the image)")
def visit_heatmap(visit_id: ObjectId, request: Request, user: CurrentUser
                  ) -> Response:
    return _visit_file(request, user, visit_id, heatmap=True)


DIAGNOSIS_CHANGE = (
    "Records the lesion's confirmed diagnosis, or overwrites the one recorded. Send "
    "`replaces`: the diagnosis the page showed, `{code, method}`, or `null` when it "
    "showed none. When the recorded one is no longer that (someone changed, recorded or "
    "removed it meanwhile) nothing is written and the answer is a 409 whose `detail` names "
    "what is recorded now: reload and check. Without `replaces` the diagnosis is overwritten "
    "unchecked (the last write wins), as before this release.")


@router.put("/lesions/{lesion_id}/diagnosis", summary="Record the confirmed diagnosis",
            description=DIAGNOSIS_CHANGE)
def put_diagnosis(lesion_id: ObjectId, body: DiagnosisChangeIn, request: Request,
                  user: CurrentUser) -> dict[str, Any]:
    note = _check_note(body.note)
    seen = None
    if "replaces" in body.model_fields_set:
        was = body.replaces
        seen = (cases.Seen(None) if was is None else cases.Seen(
            (was.code, was.method), note=was.note, note_given="note" in was.model_fields_set))
    clinic = clinic_of(request)
    with route_session(request) as s:
        le = cases.get_or_404(s, Lesion, lesion_id, "lesion")
        d = cases.set_diagnosis(s, le, body.code, body.method, note, user, replaces=seen)
        audit.record(s, user, "update", "diagnosis", lesion_id)
        out = cases.diagnosis_json(d, cases.usernames(s))
    clinic.db.scrub()  # an overwritten note's old text: gone from the file and the WAL
    assert out is not None
    return out


@router.delete("/lesions/{lesion_id}/diagnosis", status_code=204,
               summary="Remove the lesion's diagnosis (404 when it has none)",
               description="Send `code` and `method`: the diagnosis the page showed. When the "
                           "recorded one is no longer that (changed meanwhile) nothing is "
                           "removed and the answer is a 409 naming what is recorded now. "
                           "Without them the removal is unchecked.")
def delete_diagnosis(lesion_id: ObjectId, request: Request, user: CurrentUser,
                     code: Annotated[DiagnosisCode | None, Query(
                         description="the code of the diagnosis the page showed")] = None,
                     method: Annotated[DiagnosisMethod | None, Query(
                         description="its method")] = None) -> Response:
    if (code is None) != (method is None):
        raise HTTPException(422, "give both code and method (the diagnosis the page showed), "
                                 "or neither")
    clinic = clinic_of(request)
    with route_session(request) as s:
        le = cases.get_or_404(s, Lesion, lesion_id, "lesion")
        cases.delete_diagnosis(s, le, None if code is None or method is None else (code, method))
        audit.record(s, user, "delete", "diagnosis", lesion_id)
    clinic.db.scrub()
    return Response(status_code=204)
