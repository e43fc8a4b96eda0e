"""The clinic's confirmed visits nearest to a visit, by cosine similarity of the model's pooled
features (``dermsight.similar.knn``, numpy only; a clinic holds thousands of visits, not
millions). Only visits assessed by the same model (bundle hash) are compared: features of
different models live in different spaces. A visit whose body site is in doubt
(``sites.site_in_doubt``: its photo may be of another lesion) is no look-alike of its lesion."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from dermsight import taxonomy
from dermsight.clinic.cases import API
from dermsight.clinic.models import Diagnosis, Visit
from dermsight.clinic.sites import site_in_doubt
from dermsight.similar import knn, normalize


def embedding_of(visit: Visit) -> np.ndarray | None:
    if visit.embedding is None or visit.risk == "cannot_assess":
        return None
    return np.frombuffer(visit.embedding, dtype=np.float32)


def clinic_similar(db: DbSession, visit: Visit, k: int) -> list[dict[str, Any]]:
    """Confirmed visits of *other* lesions, most similar first: one per lesion (its visit most
    similar to this one), so ``k`` matches show ``k`` lesions, not one lesion photographed at
    several visits. Visits that could not be assessed or whose site is in doubt are left out."""
    query = embedding_of(visit)
    if query is None:
        return []
    rows = [r for r in db.execute(
        select(Visit.id, Visit.lesion_id, Visit.embedding, Visit.result_json, Diagnosis.code)
        .join(Diagnosis, Diagnosis.lesion_id == Visit.lesion_id)
        .where(Visit.lesion_id != visit.lesion_id, Visit.embedding.is_not(None),
               Visit.risk != "cannot_assess", Visit.bundle_sha256 == visit.bundle_sha256))
        if len(r.embedding) == query.nbytes and not site_in_doubt(r.result_json)]
    if not rows:
        return []
    bank = normalize(np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows]))
    idx, sims = knn(query, bank, len(rows))  # every visit ranked; the first of each lesion kept
    best: dict[int, tuple[int, float]] = {}
    for i, sim in zip(idx[0], sims[0], strict=True):
        if rows[i].lesion_id not in best:
            best[rows[i].lesion_id] = (int(i), float(sim))
            if len(best) == k:
                break
    return [{"visit_id": rows[i].id, "diagnosis": rows[i].code,
             "diagnosis_name": taxonomy.BY_CODE[rows[i].code].name,
             "similarity": round(sim, 4),
             "thumbnail_url": f"{API}/visits/{rows[i].id}/image"}
            for i, sim in best.values()]
