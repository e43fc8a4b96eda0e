"""Visits stored before a DICOM visit kept the metadata the model read from the file get it now.

Until this release a visit row kept the form's age, sex and site; a DICOM file's own tags filled
what the form left empty for the model, but the row kept the empty values, so the confirmed-cases
export re-scored such a visit without them (a different answer from the one served). The served
answer (``result_json``) holds the metadata the model used under ``input``: an empty age, sex or
site of a row is filled from it. A value the row holds is never changed (the form's own values
were the model's), and a row whose answer cannot be read stays as it is.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

FIELDS = ("age", "sex", "site")


def _model_input(result_json: str) -> dict[str, object]:
    """The ``input`` object of a stored answer ({} when it cannot be read)."""
    try:
        found = json.loads(result_json).get("input")
    except (ValueError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, age, sex, site, result_json FROM visits "
        "WHERE age IS NULL OR sex IS NULL OR site IS NULL")).all()
    for row_id, *stored, result_json in rows:
        used = _model_input(result_json or "")
        filled = {field: used[field] for field, value in zip(FIELDS, stored, strict=True)
                  if value is None and used.get(field) is not None}
        if filled:
            sets = ", ".join(f"{field} = :{field}" for field in filled)
            bind.execute(sa.text(f"UPDATE visits SET {sets} WHERE id = :id"),
                         {**filled, "id": row_id})
