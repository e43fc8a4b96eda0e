"""Similar cases from the bundle's reference set (``dermsight.similar``).

* :func:`similar_cases`: the ``similar`` list of a predict response (``k`` = 5; empty for a
  "cannot assess" result), each with a ``thumbnail_url`` served below.
* ``GET /api/v1/reference/{image_id}.webp``: the thumbnail of one reference image. Behind the
  shared token like the other stateless routes, but also open to a signed-in clinic user (the
  clinic's similar cases show these thumbnails; ``deps.open_to_clinic_users``).

These are the reference images most similar to the upload by the model's own features: a visual
aid, not a diagnosis.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from dermsight import taxonomy
from dermsight.predict import Dermsight, Prediction
from dermsight.similar import SimilarCase
from dermsight.web.deps import ModelDep, open_to_clinic_users
from dermsight.web.routes import API
from dermsight.web.schemas import error_responses

router = APIRouter(prefix=API, tags=["reference"])

#: similar cases returned with each assessable result
K = 5
IMAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def thumbnail_url(image_id: str) -> str:
    return f"{API}/reference/{image_id}.webp"


def case_json(c: SimilarCase) -> dict[str, Any]:
    """One reference image as the API shows it (also the clinic's ``/visits/{id}/similar``)."""
    return {
        "image_id": c.image_id,
        "diagnosis": c.diagnosis,
        "diagnosis_name": taxonomy.BY_CODE[c.diagnosis].name,
        "similarity": round(c.similarity, 4),
        "thumbnail_url": thumbnail_url(c.thumbnail),
        "licence": c.licence,
        "attribution": c.attribution,
    }


def similar_cases(model: Dermsight, prediction: Prediction, k: int = K) -> list[dict[str, Any]]:
    """The predict response's ``similar`` entries (none for a "cannot assess" result)."""
    return [case_json(c) for c in model.similar(prediction, k)]


@router.get(
    "/reference/{image_id}.webp", summary="The thumbnail of one reference image (WebP)",
    response_class=Response, responses={
        200: {"content": {"image/webp": {}}, "description": "the thumbnail"},
        **error_responses(404),
    },
)
@open_to_clinic_users
async def reference_thumbnail(image_id: str, model: ModelDep) -> Response:
    ref = model.reference
    data = ref.thumbnail(image_id) if ref is not None and IMAGE_ID.match(image_id) else None
    if ref is None or data is None:
        raise HTTPException(404, f"no reference image named {image_id[:64]!r}")
    return Response(content=data, media_type=ref.thumb_type,
                    headers={"Cache-Control": "public, max-age=86400"})
