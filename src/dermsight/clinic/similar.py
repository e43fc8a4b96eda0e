"""The clinic's confirmed visits nearest to a visit, by cosine similarity of the model's pooled
features (numpy only; a clinic holds thousands of visits, not millions)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from dermsight.clinic.cases import API
from dermsight.clinic.models import Diagnosis, Visit


def cosine_top_k(query: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and similarities of the ``k`` rows of ``bank`` most similar to ``query``."""
    if bank.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    b = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
    sims = b @ q
    order = np.argsort(-sims, kind="stable")[:k]
    return order, sims[order]


def clinic_similar(db: DbSession, visit: Visit, k: int) -> list[dict[str, Any]]:
    """Confirmed visits of *other* lesions, with the same model version's features."""
    if visit.embedding is None:
        return []
    rows = list(db.execute(
        select(Visit.id, Visit.embedding, Diagnosis.code)
        .join(Diagnosis, Diagnosis.lesion_id == Visit.lesion_id)
        .where(Visit.lesion_id != visit.lesion_id, Visit.embedding.is_not(None),
               Visit.bundle_sha256 == visit.bundle_sha256)))
    query = np.frombuffer(visit.embedding, dtype=np.float32)
    rows = [r for r in rows if len(r.embedding) == query.nbytes]
    if not rows:
        return []
    bank = np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows])
    idx, sims = cosine_top_k(query, bank, k)
    return [{"visit_id": rows[i].id, "diagnosis": rows[i].code,
             "similarity": round(float(s), 4),
             "thumbnail_url": f"{API}/visits/{rows[i].id}/image"}
            for i, s in zip(idx, sims, strict=True)]
