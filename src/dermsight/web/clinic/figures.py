"""The clinic's dashboard, the confirmed-case export and similar cases."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from dermsight.clinic import audit, cases, exports, figures, similar
from dermsight.clinic.models import Visit
from dermsight.web.clinic.deps import CurrentUser, ObjectId, clinic_of, route_session
from dermsight.web.deps import ModelDep
from dermsight.web.routes.reference import case_json

router = APIRouter(tags=["clinic: figures"])

#: the audit object of a confirmed-case export's event per patient whose rows the zip holds
#: (``object_id`` and ``patient_id``: the patient's id), beside its one ``confirmed_cases`` event
CONFIRMED_PATIENT = "confirmed_cases_patient"


@router.get("/clinic/dashboard",
            summary="The model's figures on the clinic's confirmed cases, per model version")
def dashboard(request: Request, user: CurrentUser) -> dict[str, Any]:
    with route_session(request) as s:
        return figures.dashboard(s)


@router.get("/clinic/export/confirmed", response_class=Response,
            summary="Confirmed cases as metadata.csv + images/ (zip; dermsight evaluate/train "
                    "read it), without the visits that could not be assessed or whose body "
                    "site contradicts the lesion's")
def export_confirmed(request: Request, user: CurrentUser) -> Response:
    clinic = clinic_of(request)
    with route_session(request) as s:
        export = exports.confirmed_zip(s, clinic.images)
        audit.record(s, user, "export", "confirmed_cases", None)
        for pid in export.patient_ids:  # the patients whose images and data the zip holds
            audit.record(s, user, "export", CONFIRMED_PATIENT, pid, patient_id=pid)
    return Response(export.data, media_type="application/zip", headers={
        "Content-Disposition": exports.confirmed_attachment(dt.date.today()),
        exports.LEFT_OUT_HEADER: str(export.n_left_out)})


@router.get("/visits/{visit_id}/similar",
            summary="The nearest labelled reference images and the clinic's confirmed cases")
def similar_cases(visit_id: ObjectId, request: Request, user: CurrentUser, model: ModelDep,
                  k: int = Query(5, ge=1, le=20)) -> dict[str, Any]:
    """Both halves use the features the visit was assessed with; the bundled reference set only
    when the visit was assessed by the model being served (same bundle hash)."""
    with route_session(request) as s:
        v = cases.get_or_404(s, Visit, visit_id, "visit")
        clinic_hits = similar.clinic_similar(s, v, k)
    emb = similar.embedding_of(v)
    ref = model.reference
    reference = ([case_json(c) for c in ref.nearest(emb, k)]
                 if emb is not None and ref is not None
                 and v.bundle_sha256 == model.card.onnx_sha256 else [])
    return {"reference": reference, "clinic": clinic_hits}
