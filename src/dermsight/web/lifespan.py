"""Start-up and shutdown of the service: the app's lifespan loads the model once.

``lifespan`` runs before the first request is served: it loads the bundle named by the settings
(``BundleError`` if it is missing or invalid), tunes the process for serving, runs one warm-up
inference and puts the model and the inference workers on ``app.state`` (``deps.py`` hands them to
the routes); the app's metrics (``routes/metrics.py``) learn which model they describe.
``dermsight serve`` enters it before it binds the port (``server.serve_app``), so an unusable
bundle stops the command with one line; any other ASGI server, and ``TestClient`` in a ``with``
block, run it themselves. Resources an optional feature opens at start (and closes at
shutdown) belong here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
import numpy as np
from fastapi import FastAPI

from dermsight.io.decode import DecodeLimits
from dermsight.parallel import limit_blas
from dermsight.predict import Dermsight
from dermsight.web.deps import Workers
from dermsight.web.settings import Settings

log = logging.getLogger("dermsight.web")


def prepare_for_serving(model: Dermsight, settings: Settings) -> None:
    """Per-process tuning for many concurrent inferences on few cores, and the upload limits.

    * the decoder's byte and pixel caps come from the settings;
    * numpy's BLAS would start one spinning thread per core for every call and fight the
      inference threads: limit it process-wide (``parallel.limit_blas``) to
      ``settings.blas_threads``. (The gate's k-NN product, the largest BLAS call, pins itself to
      one thread in any case: ``gate.one_blas_thread``.)
    (The gate's float16 feature bank is already converted to float32 once by ``load_bundle``.)
    """
    model.limits = DecodeLimits(
        max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels
    )
    limit_blas(settings.blas_threads)


def warm_up(model: Dermsight) -> None:
    """One inference so that the first real request does not pay ORT's first-run cost."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(96, 96, 3), dtype=np.uint8)
    model.predict(img, heatmap=True).to_dict(heatmap_png=True)
    _ = model.reference  # the similar-cases reference set, loaded now, not on a request


def load_model(settings: Settings) -> Dermsight:
    """The bundle of ``settings.model_path`` (default: the shipped one), ready to serve."""
    model = Dermsight.load(settings.model_path, threads=settings.ort_threads)
    prepare_for_serving(model, settings)
    warm_up(model)
    log.info("model %s %s loaded from %s", model.card.name, model.card.version, model.bundle.path)
    return model


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.model = await anyio.to_thread.run_sync(load_model, settings)
    # the metrics (create_app) learn the model: identity, classes, the OOD histogram's buckets
    app.state.metrics.bind_model(app.state.model)
    app.state.workers = Workers(settings.workers)
    if settings.clinic is None:
        yield
        return
    from dermsight.clinic.runtime import Clinic  # storage on: connect, migrate, sweep
    from dermsight.web.routes.health import watch_storage

    clinic = app.state.clinic = await anyio.to_thread.run_sync(Clinic.open, settings.clinic)
    # the health check remembers the storage failures requests meet (a write on a full disk)
    app.state.storage_failures = watch_storage(clinic)
    days, purging = settings.clinic.retention_days, None
    if days is not None:  # the retention period: purge now, then daily (clinic/retention.py)
        from dermsight.clinic.retention import purge_logged, retention_loop

        await anyio.to_thread.run_sync(purge_logged, clinic, days)
        purging = asyncio.create_task(retention_loop(clinic, days))
    try:
        yield
    finally:
        if purging is not None:
            purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging
        clinic.close()
