"""Assess one visit image with the model and store it: image (decoded RGB re-encoded as PNG, so
no metadata of the upload survives), heatmap, result, model identity, embedding; then the row.

Order (crash safety, see ``imagestore``): files first, the row last, in one transaction.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session as DbSession

from dermsight import heatmap as hm
from dermsight.clinic import sites
from dermsight.clinic.cases import get_or_404
from dermsight.clinic.models import Lesion, User, Visit
from dermsight.clinic.runtime import Clinic
from dermsight.io import dicom
from dermsight.io.decode import DecodeLimits, sniff
from dermsight.predict import Dermsight, Prediction
from dermsight.records import Metadata

NOTE_MAX = 2000


def png_bytes(rgb: np.ndarray) -> bytes:
    """Lossless; zlib level 1: on a 256 px image 14 ms instead of 39 ms (level 6) for a file
    12 % larger (measured on isic-subset images)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class Assessment:
    result: dict[str, object]
    image_png: bytes
    heatmap_png: bytes | None
    embedding: bytes | None
    risk: str
    malignant_probability: float | None
    #: the metadata the model used: the form's values, DICOM tags filling what it left empty
    meta: Metadata
    #: the site rule's answer when the file's site tag was weighed against the lesion's body
    #: site (``assess(lesion_site=...)``), else None (the caller's ``sites.visit_site`` holds)
    file_site: sites.VisitSite | None = None


def _file_site_tag(model: Dermsight, data: bytes) -> tuple[str | None, str | None]:
    """The site a DICOM upload's tags give, normalised, and the file's own words for it
    (``BodyPartExamined``, else the anatomic region's meaning, as the decoder reads them);
    (None, None) for another format or none in the file. Reads the header only."""
    if sniff(data) != "DICOM":
        return None, None
    limits = getattr(model, "limits", None) or DecodeLimits()
    return dicom.site_tag(dicom._read_dataset(data, limits, header_only=True))


def assess(model: Dermsight, data: bytes, meta: Metadata,
           predict: Callable[..., Prediction] | None = None, *,
           lesion_site: str | None = None,
           other_visits: Sequence[tuple[str | None, date]] = ()) -> Assessment:
    """Runs in a worker thread. Raises ``ImageDecodeError`` for an unusable image. ``predict``:
    ``model.predict`` or a stand-in with its keywords (the service's metrics time and record
    the answer: ``ServiceMetrics.timed_prediction``). ``lesion_site``: the lesion's body site,
    given when the form gave no site; a DICOM file's own site is then weighed against it
    (``sites.file_site``: the file's when it agrees and is more specific, else the lesion's,
    with a non-blocking warning flag added to the result when the file contradicts it).
    ``other_visits``: for a lesion without a body site, the site and date of its other visits;
    the site the model used (the form's or the file's) is weighed against them
    (``sites.visit_against_visits``: a non-blocking warning flag when it contradicts one)."""
    chosen = None
    flags: list[dict[str, object]] = []
    if lesion_site is not None:
        tag, text = _file_site_tag(model, data)
        chosen = sites.file_site(tag, lesion_site, text)
        meta = replace(meta, site=chosen.site.site)
        if chosen.flag is not None:
            flags.append(chosen.flag)
    from_file = meta.site is None
    pred = (predict or model.predict)(data, meta=meta, heatmap=True)
    if lesion_site is None and other_visits:
        file_words = _file_site_tag(model, data)[1] if from_file else None
        against = sites.visit_against_visits(pred.meta.site, other_visits, file_tag=file_words)
        if against is not None:
            flags.append(against)
    rgb = pred.image
    assert rgb is not None  # the facade keeps the decoded input
    heat = (hm.heatmap_png(pred.cam, size=hm.PNG_PX)
            if pred.cam is not None else None)
    result: dict[str, Any] = pred.to_dict(heatmap_png=False)
    if flags:
        result["flags"] = [*result.get("flags", []), *flags]
    return Assessment(
        result=result, image_png=png_bytes(rgb), heatmap_png=heat,
        embedding=None if pred.embedding is None else
        np.asarray(pred.embedding, np.float32).tobytes(), risk=pred.risk,
        malignant_probability=pred.malignant_probability if pred.assessable else None,
        meta=pred.meta, file_site=None if chosen is None else chosen.site)


def store_visit(  # noqa: PLR0913 - keyword-only, one call site
    clinic: Clinic, model: Dermsight, a: Assessment, *, lesion_id: int, taken_at: date,
    note: str | None, user: User, site_inherited: bool = False,
    recheck: Callable[[DbSession], None] | None = None,
) -> int:
    """Write the files, then the row (one transaction). Returns the visit id. The row's age,
    sex and site are what the model used (``a.meta``: the form's values, a DICOM file's tags
    filling those it left empty), so the confirmed-cases export re-scores the visit as it
    was served; ``site_inherited``: its site is the lesion's (``sites.visit_site``).
    ``recheck``: called first in the transaction (the web route's check, before the commit,
    that the request's session or token and account are still valid: it raises to write
    nothing)."""
    image_key = clinic.images.put(a.image_png, "png")
    heatmap_key = clinic.images.put(a.heatmap_png, "png") if a.heatmap_png else None
    card = model.card
    with clinic.db.session() as s:
        if recheck is not None:
            recheck(s)
        get_or_404(s, Lesion, lesion_id, "lesion")  # deleted meanwhile: the sweep takes the files
        v = Visit(
            lesion_id=lesion_id, taken_at=taken_at, created_by=user.id,
            age=a.meta.age, sex=a.meta.sex, site=a.meta.site, site_inherited=site_inherited,
            note=note,
            result_json=json.dumps(a.result, separators=(",", ":")), risk=a.risk,
            malignant_probability=a.malignant_probability, model_name=card.name,
            model_version=card.version, bundle_sha256=card.onnx_sha256,
            image_key=image_key, heatmap_key=heatmap_key, embedding=a.embedding)
        s.add(v)
        s.flush()
        from dermsight.clinic.audit import record

        record(s, user, "create", "visit", v.id)
        visit_id = v.id
    # the files again, now that the row references them: a visit or patient deleted between
    # the first put and this commit may have removed an identical file no row used yet
    # (content-addressed names); put keeps a file that is there and rewrites one that is gone
    clinic.images.put(a.image_png, "png")
    if a.heatmap_png:
        clinic.images.put(a.heatmap_png, "png")
    return visit_id
