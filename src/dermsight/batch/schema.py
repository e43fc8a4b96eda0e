"""The columns of batch scoring: the input frame's, and the output's as rows, pandas, Arrow and
Spark DDL (every engine writes exactly these).

Besides the model's answer, each scored row carries the image's estimated skin tone: ``ita``
(individual typology angle in degrees, :func:`dermsight.skintone.ita_degrees` on the decoded
image; NaN when not estimable) and ``ita_band`` (its Del Bino band, or ``not estimable``). Error
rows have neither. ``--evaluate`` builds the by-skin-tone table from them.

Every row, error rows included (like ``model_name`` and ``model_version``), records how it was
scored: ``tta`` is ``"true"`` when its probabilities are the mean over the 8 flips/rotations
(``ScoreOptions.tta``), ``"false"`` when they come from the image as given. It is text, not a
boolean, because the output has two column types only (float64 and string) that Parquet, CSV
parts and Spark all read back the same; a CSV part reads back every cell as text anyway. Null in
rows written before dermsight recorded it (outputs upgraded in place: ``ADDED_COLUMNS``): how
those rows were scored is unknown.

Every row, error rows included, also records which bundle scored it: ``card_sha256``, the
sha256 of the bundle's ``card.json`` (``bundle.card_sha256``; the card holds the sha256 of every
other bundle file, so it tells apart two bundles of one name and version, such as those
``dermsight train`` makes or a copy with other decision margins). Null in rows written before
dermsight recorded it (``ADDED_COLUMNS``): which bundle of that name and version scored those
rows is unknown.

Every row, error rows included, also records the data source its input names: ``source``
(``LesionRecord.source``: a CSV's ``source`` column, else the source its layout implies, such as
``ham10000``; ``dicom`` or ``tfrecord`` from those readers), null when the input names none (a
plain image folder) and in rows written before dermsight recorded it (``ADDED_COLUMNS``).
``--evaluate`` builds the by-source table from it. The resume reads it from no part.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from dermsight.batch.references import local_path

if TYPE_CHECKING:
    import pyarrow as pa

#: Input columns ``score_frame`` reads (see ``scorer``'s module doc).
INPUT_COLUMNS: tuple[str, ...] = (
    "id", "image", "path", "age", "sex", "site", "meta_notes", "label", "group", "source",
    "error", "heatmap",
)
#: Output columns before and after the per-class probabilities ``p_<CODE>``.
HEAD_COLUMNS: tuple[str, ...] = ("id", "path")
TAIL_COLUMNS: tuple[str, ...] = (
    "prediction",
    "malignant_probability",
    "risk",
    "flags",
    "ood_score",
    "ita",
    "ita_band",
    "heatmap",
    "error",
    "age",
    "sex",
    "site",
    "label",
    "group",
    "source",
    "model_name",
    "model_version",
    "tta",
    "card_sha256",
)
#: Output columns that older dermsight versions did not write: an output folder whose parts lack
#: only these is upgraded in place when resumed (the columns added, null in the old rows).
ADDED_COLUMNS: tuple[str, ...] = ("heatmap", "source", "tta", "card_sha256")
_FLOAT_TAIL = frozenset({"malignant_probability", "ood_score", "ita", "age"})
RISK_TIERS: tuple[str, ...] = ("high", "moderate", "low", "cannot_assess")
#: The ``tta`` column's values (``tta_text``), and what counts of it call a null cell.
TTA_TRUE, TTA_FALSE, TTA_UNKNOWN = "true", "false", "unknown"


def tta_text(tta: bool) -> str:
    """The ``tta`` cell of a row scored with (``"true"``) or without (``"false"``) TTA."""
    return TTA_TRUE if tta else TTA_FALSE


def output_columns(classes: Sequence[str]) -> list[str]:
    """Column order of ``score_frame``'s output for a model with ``classes``."""
    return [*HEAD_COLUMNS, *(f"p_{c}" for c in classes), *TAIL_COLUMNS]


def is_float(name: str) -> bool:
    """True for the output's float64 columns (probabilities, scores, ITA, age)."""
    return name.startswith("p_") or name in _FLOAT_TAIL


def arrow_schema(classes: Sequence[str]) -> pa.Schema:
    """The Arrow schema of the output (Parquet parts of every engine use exactly this)."""
    import pyarrow as pa

    return pa.schema([pa.field(name, pa.float64() if is_float(name) else pa.string())
                      for name in output_columns(classes)])


def spark_ddl(classes: Sequence[str]) -> str:
    """The same schema as a Spark DDL string (for ``mapInPandas``)."""
    return ", ".join(f"`{name}` {'double' if is_float(name) else 'string'}"
                     for name in output_columns(classes))


def cell_text(value: object) -> str | None:
    """A cell as stripped text; None for a missing value (None, NaN, empty or blank)."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    return text or None


def row_path(row: Mapping[str, Any]) -> str | None:
    """An input row's ``path`` as a local path or URL (a Spark ``file:`` prefix removed)."""
    path = cell_text(row.get("path"))
    return None if path is None else local_path(path)


def row_id(row: Mapping[str, Any]) -> str:
    """An input row's id: its ``id``, else the stem of its file (``?`` without either)."""
    path = row_path(row)
    return cell_text(row.get("id")) or (Path(path.split("#")[0]).stem if path else "?")


def frame_rows(df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Input frame -> row dicts (only the columns ``score_frame`` reads)."""
    if "id" not in df.columns and "path" not in df.columns:
        raise ValueError("score_frame needs an 'id' column (and 'image' bytes or 'path')")
    wanted = [c for c in INPUT_COLUMNS if c in df.columns]
    cols = [df[c].tolist() for c in wanted]
    for values in zip(*cols, strict=True):
        # nullable dtypes give pd.NA / pd.NaT for missing values: the readers expect None
        yield {k: None if v is pd.NA or v is pd.NaT else v
               for k, v in zip(wanted, values, strict=True)}


def rows_to_frame(rows: Iterable[Mapping[str, Any]], classes: Sequence[str]) -> pd.DataFrame:
    """Output rows -> a frame with exactly ``output_columns(classes)`` and stable dtypes."""
    cols = output_columns(classes)
    df = pd.DataFrame.from_records(list(rows), columns=cols)
    for c in cols:
        if is_float(c):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        else:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df
