"""``POST /api/v1/predict``: one lesion image (+ optional age, sex, site) -> the assessment.

The upload is read into memory with the limits of ``upload.py``; decoding and inference run on the
inference workers (``deps.Workers``). DICOM uploads are accepted: their tags fill the metadata
fields the form leaves empty. A form field or query parameter the route does not take (a typo such
as ``agee``) is a 422 naming it, never silently ignored.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from dermsight import heatmap as hm
from dermsight import taxonomy
from dermsight.io.decode import ALLOWED_FORMATS, HEAVY_DECODE_BYTES, decode_cost, sniff
from dermsight.io.errors import ImageDecodeError
from dermsight.predict import Dermsight
from dermsight.records import Metadata
from dermsight.web.deps import ModelDep, SettingsDep, WorkersDep
from dermsight.web.formnames import form_fields
from dermsight.web.routes import API
from dermsight.web.routes.metrics import MetricsDep, ServiceMetrics
from dermsight.web.routes.reference import similar_cases
from dermsight.web.schemas import PREDICT_REQUEST_BODY, PredictResponse, error_responses
from dermsight.web.upload import UploadError, check_query, read_upload

router = APIRouter(prefix=API, tags=["predict"])

#: the form fields (from the documented request body) and query parameters /predict accepts
PREDICT_FIELDS = form_fields(PREDICT_REQUEST_BODY)
PREDICT_QUERY = ("heatmap", "tta")
TTA_DISABLED = (
    "test-time augmentation (?tta=true, 8x the compute) is turned off on this server; the "
    "operator can allow it with DERMSIGHT_ALLOW_TTA=true"
)


def _field(fields: dict[str, str], name: str) -> str | None:
    value = fields.get(name)
    if value is None or not value.strip():
        return None
    return value


def run_prediction(
    model: Dermsight, data: bytes, meta: Metadata, heatmap: bool, tta: bool,
    metrics: ServiceMetrics | None = None,
) -> bytes:
    """Decode + predict + serialise (runs in a worker thread; ONNX Runtime releases the GIL).
    The facade decodes (a DICOM upload's tags fill the fields the form left empty). With
    ``metrics``, the inference time and the answer's tier, class, flags and OOD score are
    recorded (an image that cannot be decoded is counted by the middleware, as a refused upload)."""
    if metrics is None:
        pred = model.predict(data, meta=meta, heatmap=heatmap, tta=tta)
    else:
        pred = metrics.timed_prediction(model, data, meta=meta, heatmap=heatmap, tta=tta)
    out = pred.to_dict(heatmap_png=False)
    if pred.assessable:
        out["similar"] = similar_cases(model, pred)
    if heatmap and pred.cam is not None:
        out["heatmap"] = hm.heatmap_base64(pred.cam, size=hm.PNG_PX)
    return json.dumps(out, separators=(",", ":")).encode()


@router.post(
    "/predict",
    summary="Assess one lesion image",
    response_model=None,
    openapi_extra={"requestBody": PREDICT_REQUEST_BODY},
    responses={
        200: {"model": PredictResponse, "description": "the assessment"},
        **error_responses(400, 403, 408, 413, 415, 422, 503),
    },
)
async def predict(
    request: Request,
    settings: SettingsDep,
    model: ModelDep,
    workers: WorkersDep,
    metrics: MetricsDep,
    *,
    heatmap: Annotated[bool, Query(description="include the base64 PNG heatmap")] = True,
    tta: Annotated[bool, Query(description="average over 8 flips/rotations (8x the compute); "
                               "only when the operator sets DERMSIGHT_ALLOW_TTA=true, else "
                               "403")] = False,
) -> Response:
    check_query(request, PREDICT_QUERY)
    if tta and not settings.allow_tta:
        raise UploadError(403, TTA_DISABLED, drain=False)
    form = await read_upload(request, settings, PREDICT_FIELDS)
    if form.image is None:
        raise UploadError(422, "no image: send the photo in a form field named 'image'")
    try:
        meta = Metadata.parse(
            age=_field(form.fields, "age"),
            sex=_field(form.fields, "sex"),
            site=_field(form.fields, "site"),
        )
    except taxonomy.TaxonomyError as exc:
        raise UploadError(422, str(exc)) from exc
    data = form.image
    kind = sniff(data)
    heavy = await anyio.to_thread.run_sync(decode_cost, data, model.limits) > HEAVY_DECODE_BYTES
    try:
        body = await workers.run(
            partial(run_prediction, model, data, meta, heatmap, tta, metrics), heavy)
    except ImageDecodeError as exc:
        status = 422 if (kind in ALLOWED_FORMATS or kind == "DICOM") else 415
        raise UploadError(status, exc.reason) from exc
    return Response(content=body, media_type="application/json")
