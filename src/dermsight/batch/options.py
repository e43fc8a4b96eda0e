"""``ScoreOptions``: how a batch job scores, whichever engine runs it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Images per ONNX Runtime call. With one intra-op thread per call, 8-16 cost the same CPU per
#: image as 32 or 64 but need far less memory (ONNX Runtime's arena grows with the batch).
DEFAULT_BATCH = 8

#: Input rows per Spark job (one commit each) of ``spark.run_spark``: what a killed job can
#: lose. 50,000 images are about 6-7 minutes of work on 2 vCPUs; each slice costs one job's
#: start (about a second). Defined here, not in ``spark.py`` (which re-exports it as
#: ``dermsight.batch.spark.SLICE_ROWS``), so that ``dermsight batch --help`` can say it without
#: importing the Spark runner.
SLICE_ROWS = 50_000

FORMATS: tuple[str, ...] = ("parquet", "csv")
PARALLEL_MODES: tuple[str, ...] = ("batches", "pipeline")


@dataclass(frozen=True)
class ScoreOptions:
    """The options ``run_local``, ``run_spark``, ``score_frame`` and ``dermsight batch`` share.

    Engine-specific settings (the local runner's part size and progress bar, Spark's master and
    partitions) stay arguments of the runner. Raises ``ValueError`` for a value out of range and
    ``TypeError`` for a count that is not a whole number (``batch_size="16"``, ``2.5``, ``True``).
    """

    #: images per inference call
    batch_size: int = DEFAULT_BATCH
    #: average over the 8 flips / rotations of each image (8x slower)
    tta: bool = False
    #: scoring threads: local runner, default one per core; Spark, per task, default 1;
    #: ``score_frame``, more than 1 scores in a private pool of that size
    workers: int | None = None
    #: ONNX Runtime intra-op threads per inference call (default 1; local runner with
    #: ``parallel="pipeline"``: one per core)
    threads: int | None = None
    #: ``"batches"``: each worker decodes, preprocesses and infers whole batches;
    #: ``"pipeline"``: workers decode while one thread infers (see ``scorer.score_rows``)
    parallel: str = "batches"
    #: write a heatmap overlay PNG per assessed image into this folder
    heatmaps: str | os.PathLike[str] | None = None
    #: output part files: ``"parquet"`` or ``"csv"``
    fmt: str = "parquet"
    #: with labels in the input: write the evaluation report beside the output
    evaluate: bool = False
    #: stop after this many new rows (a partial run that a later run resumes)
    limit: int | None = None
    #: fsspec options for remote paths (``s3://`` ...)
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_size", "workers", "threads", "limit"):
            _check_count(name, getattr(self, name), optional=name != "batch_size")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        for name in ("workers", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be 0 or more, not {self.limit}")
        if self.fmt not in FORMATS:
            raise ValueError(f"format must be parquet or csv, not {self.fmt!r}")
        if self.parallel not in PARALLEL_MODES:
            raise ValueError(f"parallel must be 'batches' or 'pipeline', not {self.parallel!r}")


def _check_count(name: str, value: object, *, optional: bool) -> None:
    """``TypeError`` naming ``name`` when ``value`` is not a whole number (None allowed when
    ``optional``); a bool is not one. The range is checked after, by ``__post_init__``."""
    import numbers

    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        also = " or None" if optional else ""
        raise TypeError(f"{name} must be a whole number{also}, not {value!r} "
                        f"({type(value).__name__})")
