"""Batch scoring: one core (``score_frame``) shared by the local runner and the Spark runner.

* ``score.score_frame(df, model)``: a pandas frame of lesions -> one output row each.
* ``local.run_local(input, out)``: any input the readers know, on all local cores, resumable.
* ``spark.run_spark(input, out, master=...)``: the same through Spark ``mapInPandas``
  (extra ``[spark]``).
* ``store.read_output(out)``: read a result folder (Parquet or CSV parts) back.

See docs/batch.md.
"""

from __future__ import annotations

from typing import Any

from dermsight.batch.score import arrow_schema, output_columns, score_frame
from dermsight.batch.store import read_output

__all__ = [
    "arrow_schema", "output_columns", "read_output", "run_local", "run_spark", "score_frame",
]


def __getattr__(name: str) -> Any:
    # the runners are imported on first use (run_spark needs the [spark] extra)
    if name == "run_local":
        from dermsight.batch.local import run_local

        return run_local
    if name == "run_spark":
        from dermsight.batch.spark import run_spark

        return run_spark
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
