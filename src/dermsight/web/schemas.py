"""Pydantic models of the HTTP API (``/api/v1``): the OpenAPI document is generated from these."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dermsight import taxonomy


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, as a sentence a person understands.")


class FlagOut(BaseModel):
    code: str = Field(description="machine-readable reason, e.g. 'too_small'")
    message: str
    blocking: bool = Field(description="true: the model's answer must not be used (risk is "
                                       "'cannot_assess')")


class ModelInfo(BaseModel):
    name: str
    version: str


class InputMeta(BaseModel):
    age: float | None = Field(None, description="years; null when not given")
    sex: Literal["male", "female"] | None = None
    site: str | None = Field(None, description="ISIC general anatomic site; null when not given")


class UnreliableOut(BaseModel):
    """The numbers the model computed for an image the gate refused: NOT a valid result."""

    note: str = Field(description="why these numbers must not be used")
    probabilities: dict[str, float]
    prediction: str
    prediction_name: str
    decision_rule: str
    malignant_probability: float


class SimilarCaseOut(BaseModel):
    """A reference image that looks like the upload to the model: a visual aid, not a diagnosis."""

    image_id: str = Field(description="ISIC image id of the reference image")
    diagnosis: str = Field(description="the diagnosis its collection gives it "
                                       "(class code; UNK: not further specified)")
    diagnosis_name: str
    similarity: float = Field(description="cosine similarity of the model's pooled features "
                                          "(1 = identical to the model)")
    thumbnail_url: str = Field(description="where to GET its WebP thumbnail (96 px)")
    licence: str
    attribution: str


class PredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    risk: Literal["high", "moderate", "low", "cannot_assess"] = Field(
        description="risk tier; 'cannot_assess' when a blocking flag fired: then the class "
                    "probabilities, suggested class, malignant probability and heatmap are NOT "
                    "given at the top level (see 'unreliable')"
    )
    probabilities: dict[str, float] | None = Field(
        None, description="calibrated probability per trained class code (they sum to 1); "
                          "absent when risk is 'cannot_assess'"
    )
    prediction: str | None = Field(
        None, description="suggested class code (see decision_rule); absent when risk is "
                          "'cannot_assess'"
    )
    prediction_name: str | None = Field(None, description="absent when risk is 'cannot_assess'")
    decision_rule: str | None = Field(
        None, description="how the suggested class was chosen from the probabilities; absent "
                          "when risk is 'cannot_assess'"
    )
    malignant_probability: float | None = Field(
        None, description="the malignant share among the specific diagnoses, which the risk "
                          "tier compares with the card's thresholds: (P(MEL) + P(BCC) + "
                          "P(SCC)) / (1 - P(UNK)) for a card that leaves UNK out "
                          "(malignant_excluded, as the shipped model does), so UNK never "
                          "lowers it; not an absolute probability when UNK dominates (e.g. "
                          "0.23 with P(MEL) + P(BCC) + P(SCC) = 0.0006 and P(UNK) = 0.997). A "
                          "card without malignant_excluded gives the plain sum. Absent when "
                          "risk is 'cannot_assess'"
    )
    unreliable: UnreliableOut | None = Field(
        None, description="only when risk is 'cannot_assess': what the model computed anyway, "
                          "with a note; not a valid result, never to be shown as one"
    )
    flags: list[FlagOut]
    ood_score: float | None = Field(
        None, description="the gate's out-of-distribution score (higher = less like a "
                          "dermoscopic training image; gate v2: the logit of its "
                          "'not dermoscopic' head, refused above the card's gate.v2_threshold)"
    )
    model: ModelInfo
    model_status: str | None = Field(
        None, description="the model card's status: 'trained', or 'not validated' (its own "
                          "test figures do not show that it works: research use only, not for "
                          "any decision about a patient); null when the card states none"
    )
    input: InputMeta = Field(description="the metadata the model used (after validation; from "
                                         "DICOM tags when the form left a field empty)")
    timing_ms: float = Field(description="decode + inference + heatmap time on the server")
    disclaimer: str
    heatmap: str | None = Field(
        None,
        description="class-activation heatmap for the suggested class over the WHOLE image: "
                    "base64 PNG (colour-map palette with per-entry transparency: decodes to "
                    "RGBA), 112 px on its long side, the image's aspect to within one "
                    "cell of its grid (half the network's stride: 10 x 10 for a square image); "
                    "transparent where the model paid no attention; stretch it over the whole "
                    "image. The suggested class itself comes from the centre square when the "
                    "card's input_spec.crop is center_square. Omitted with ?heatmap=false and "
                    "when risk is 'cannot_assess'",
    )
    similar: list[SimilarCaseOut] | None = Field(
        None,
        description="the 5 reference images (training images of the model with the diagnosis "
                    "their collection gives them, shipped in the bundle; UNK, ISIC 2020's "
                    "'unknown', is benign but not further specified) most similar to this one "
                    "by the model's own features, most similar first: images that look alike to "
                    "the model, not a diagnosis. Absent when risk is 'cannot_assess'",
    )


class ClassOut(BaseModel):
    code: str
    name: str
    lay: str = Field(description="plain-language description")
    malignant: bool
    premalignant: bool


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model: ModelInfo
    dermsight: str = Field(description="dermsight package version")
    clinic: bool = Field(description="clinic case storage is on (dermsight serve --database): "
                                     "the clinic routes exist and need a logged-in user")
    max_upload_mb: float = Field(
        description="largest accepted image file in MiB (DERMSIGHT_MAX_UPLOAD_MB; 1 MiB = "
                    "1048576 bytes): a larger one is refused with 413, so a client can check a "
                    "file's size before sending it")


class ExampleOut(BaseModel):
    file: str
    url: str = Field(description="where to GET the JPEG")
    image_id: str = Field(description="ISIC image id")
    code: str = Field(description="diagnosis class code")
    name: str = Field(description="diagnosis class name")
    age: float | None = None
    sex: str | None = None
    site: str | None = None
    dataset: str
    license: str
    license_url: str
    attribution: str
    credit: str = Field(description="one-line credit to show under the image")


class PlotsResponse(BaseModel):
    plots: list[str] = Field(description="names usable as /api/v1/model/plots/{name}.png")


def _quoted(values: Iterable[object]) -> str:
    return ", ".join(f"'{v}'" for v in values)


#: what a metadata field may hold to mean "not given" (``taxonomy``'s placeholders)
NOT_GIVEN = ("Empty, 'unknown', 'null', 'none', 'NaN', 'NA', 'N/A', '?' or '-' = not given "
             "(all but empty and 'unknown' flagged metadata_ignored)")


def sex_description() -> str:
    """The ``sex`` field's accepted spellings, from ``taxonomy.normalize_sex``'s vocabulary."""
    others = [a for a in taxonomy._SEX_ALIASES if a not in taxonomy.SEXES]
    return (f"{' or '.join(taxonomy.SEXES)}; also {_quoted(a.upper() for a in others)}; any "
            f"letter case. {NOT_GIVEN}; any other value is a 422")


def site_description() -> str:
    """The ``site`` field's accepted spellings, from ``taxonomy.normalize_site``'s vocabulary."""
    ham = {k: v for k, v in taxonomy.HAM10000_LOCALIZATION.items()
           if v is not None and k not in taxonomy.SITES}
    aliases = {k: v for k, v in taxonomy._SITE_ALIASES.items() if k not in taxonomy.SITES}
    example = next(iter(ham.items()))
    return (
        f"body site: one of the ISIC general sites ({_quoted(taxonomy.SITES)}); also the "
        f"HAM10000 localizations {_quoted(ham)}, each read as its ISIC site (e.g. "
        f"'{example[0]}' = '{example[1]}'), and {_quoted(aliases)}; any letter case, '_' read "
        f"as a space. {NOT_GIVEN}; any other value is a 422"
    )


def age_description() -> str:
    return (
        f"age in years, {taxonomy.AGE_MIN}-{taxonomy.AGE_MAX}, decimals allowed (1.5 = 18 "
        "months). A year unit is read and flagged metadata_normalised ('55y', '045Y', "
        "'55 years'); an age in months, weeks or days ('60m', '006M') is a 422: those units are "
        "read only from a DICOM file's PatientAge. A number written otherwise (Arabic-Indic "
        "digits, '1e2') is read as the number it denotes and flagged metadata_normalised. "
        f"{NOT_GIVEN}; a value that is not a number, or outside the range, is a 422"
    )


#: The multipart body of POST /api/v1/predict. Written by hand because the route parses the body
#: itself (streaming, in memory); this keeps the OpenAPI contract exact. Its properties are also
#: the fields the route accepts: any other field is a 422 (``formnames.py``). The metadata fields
#: are strings (the server accepts more spellings than the canonical values, which are listed as
#: ``examples``): a client generated from this document must not refuse what the server takes.
PREDICT_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "additionalProperties": False,
                "properties": {
                    "image": {
                        "type": "string",
                        "format": "binary",
                        "contentMediaType": "application/octet-stream",
                        "description": "JPEG, PNG, WebP, BMP or TIFF photo, or a DICOM file "
                                       "(its PatientAge / PatientSex / BodyPartExamined are used "
                                       "for fields the form leaves empty)",
                    },
                    "age": {"type": "string", "examples": ["55", "45.5"],
                            "description": age_description()},
                    "sex": {"type": "string", "examples": list(taxonomy.SEXES),
                            "description": sex_description()},
                    "site": {"type": "string", "examples": list(taxonomy.SITES),
                             "description": site_description()},
                },
            },
            "encoding": {"image": {"contentType": "application/octet-stream"}},
        }
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses ``codes`` of a route: each an ``ErrorResponse``."""
    text = {
        400: "malformed request: a bad multipart body, or malformed HTTP (a request line, "
             "header or Content-Length the server cannot parse; answered by the server's HTTP "
             "layer before the API, without X-Request-ID)",
        401: "missing or wrong bearer token (only when the server sets DERMSIGHT_API_TOKEN)",
        403: "?tta=true while the server does not allow it (DERMSIGHT_ALLOW_TTA)",
        404: "not found",
        408: "the upload took longer than the server's upload timeout",
        413: "request or image larger than the upload cap (default 20 MB)",
        415: "not an image: unsupported or unrecognised file type (text, PDF, SVG, GIF, ...), an "
             "empty file, or a request that is not multipart/form-data",
        422: "bad metadata (age outside 0-120, unknown sex/site, over-long field), an unknown "
             "form field or query parameter (e.g. a misspelt 'agee': the message names it and "
             "the closest accepted name), a missing or repeated image, or an image in an "
             "accepted format that cannot be used (truncated, corrupt, too many pixels)",
        503: "server busy: the uploads in progress fill its memory budget "
             "(DERMSIGHT_MAX_INFLIGHT_MB), or the open connections or running requests reached "
             "DERMSIGHT_MAX_CONNECTIONS; retry after Retry-After seconds",
    }
    return {c: {"model": ErrorResponse, "description": text[c],
                **({"headers": RETRY_AFTER} if c == 503 else {})} for c in codes}


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer"}}}
#: the 503 any operation can answer (``middleware.BusyMiddleware``)
BUSY_503 = (
    "server busy: the open connections or running requests reached the server's limit "
    "(DERMSIGHT_MAX_CONNECTIONS); retry after Retry-After seconds"
)


#: FastAPI's own 422 schema (``detail``: a list of errors); the app's 422 handler sends an
#: ``ErrorResponse`` (``detail``: sentences) instead
FASTAPI_422 = "#/components/schemas/HTTPValidationError"
ERROR_REF = "#/components/schemas/ErrorResponse"
VALIDATION_422 = (
    "a request the API's schema refuses: one sentence per problem naming the field as sent "
    "(e.g. \"limit must be a whole number (got 'abc')\")"
)


def _never_invalid(operation: dict[str, Any]) -> bool:
    """True when nothing a client sends can fail the operation's request validation: no body,
    and only path parameters that are plain strings (FastAPI adds a 422 to it all the same)."""
    return "requestBody" not in operation and all(
        p.get("in") == "path" and p.get("schema", {}).get("type") == "string"
        and set(p.get("schema", {})) <= {"type", "title", "description"}
        for p in operation.get("parameters", [])
    )


def honest_error_schemas(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (FastAPI's OpenAPI document) made to say what the app sends on errors:

    * FastAPI's default 422 (``HTTPValidationError``, ``detail`` a list) becomes the app's
      ``ErrorResponse`` (its handler, ``validation.validation_message``, sends sentences), and is
      left out where it cannot happen (only plain string path parameters, no body);
    * an ``ErrorResponse`` documented under another media type (a route whose success is HTML,
      ``/model/report``) is moved to ``application/json``, which is what the error handler sends;
    * every operation documents the busy 503 (with ``Retry-After``): any request can get it.
    """
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorResponse", ErrorResponse.model_json_schema())
    for methods in doc.get("paths", {}).values():
        for operation in methods.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.setdefault("503", {"description": BUSY_503, "headers": RETRY_AFTER,
                                         "content": {"application/json": {
                                             "schema": {"$ref": ERROR_REF}}}})
            ours = responses.get("422")
            fastapi_422 = ours is not None and any(
                c.get("schema", {}).get("$ref") == FASTAPI_422
                for c in ours.get("content", {}).values())
            if fastapi_422 and _never_invalid(operation):
                del responses["422"]
            elif fastapi_422:
                responses["422"] = {"description": VALIDATION_422, "content": {
                    "application/json": {"schema": {"$ref": ERROR_REF}}}}
            for code, response in responses.items():
                content = response.get("content", {})
                if not code.startswith(("4", "5")) or "application/json" in content:
                    continue
                for media in [m for m, c in content.items()
                              if c.get("schema", {}).get("$ref") == ERROR_REF]:
                    content["application/json"] = content.pop(media)
    if FASTAPI_422 not in json.dumps(doc):
        schemas.pop("HTTPValidationError", None)
        if "#/components/schemas/ValidationError" not in json.dumps(doc):
            schemas.pop("ValidationError", None)
    return doc
