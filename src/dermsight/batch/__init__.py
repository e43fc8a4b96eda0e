"""Batch scoring: one core (``score_frame``) shared by the local runner and the Spark runner.

* ``scorer.score_frame(df, model, options)``: a pandas frame of lesions -> one output row each,
  built from the facade's ``Dermsight.assess`` (the same answers as ``Dermsight.predict``).
* ``local.run_local(input, out, options)``: any input the readers know, on all local cores,
  resumable.
* ``spark.run_spark(input, out, options, master=...)``: the same through Spark ``mapInPandas``
  (extra ``[spark]``).
* ``options.ScoreOptions``: what both runners, ``score_frame`` and ``dermsight batch`` share.
* ``store.read_output(out)``: read a result folder (Parquet or CSV parts) back.

The rest: ``references.py`` (where a row's image is: bytes, file, TFRecord, URL), ``schema.py``
(input and output columns, Arrow / Spark schemas), ``overlays.py`` (heatmap PNGs),
``sources.py`` (inputs), ``store.py`` (part files), ``summary.py`` (the run summary).

See docs/batch.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dermsight.batch.local import run_local
    from dermsight.batch.options import ScoreOptions
    from dermsight.batch.schema import arrow_schema, output_columns
    from dermsight.batch.scorer import score_frame
    from dermsight.batch.spark import run_spark
    from dermsight.batch.store import read_output

__all__ = [
    "ScoreOptions", "arrow_schema", "output_columns", "read_output", "run_local", "run_spark",
    "score_frame",
]

#: where each name of ``__all__`` lives. They are imported on first use: importing a light
#: submodule (``dermsight.batch.options``, which ``dermsight batch --help`` reads) does not load
#: pandas and the scoring core, and ``run_spark`` needs the [spark] extra.
_WHERE = {
    "ScoreOptions": "options", "arrow_schema": "schema", "output_columns": "schema",
    "read_output": "store", "run_local": "local", "run_spark": "spark", "score_frame": "scorer",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{where}"), name)
