"""``GET /api/v1/metrics``: the service's Prometheus metrics (text format), behind the API token.

What a clinic's operator watches to see that the service works and that its input has not drifted
(the model fails on other clinics' cameras, docs/model.md; the first sign in production is a change
in the distribution of its answers: more "cannot assess", more out-of-distribution flags, higher
OOD scores, another risk-tier mix):

* ``dermsight_http_requests_total{method, route, status}`` and
  ``dermsight_http_request_duration_seconds{route}`` (``middleware.MetricsMiddleware``; the
  request's one ``RequestClock``, which its log line reports too);
* ``dermsight_inference_duration_seconds`` (decode + gate + network + heatmap of one upload);
* ``dermsight_predictions_total{risk}``, ``dermsight_predicted_class_total{prediction}`` (answers
  that could be assessed), ``dermsight_prediction_flags_total{flag}``;
* ``dermsight_ood_score`` (histogram; its buckets sit around the bundle's threshold, which is one
  bucket edge: ``le`` = the threshold counts the scores that passed);
* ``dermsight_uploads_refused_total{reason}`` (413 ``too_large``, 415 ``unsupported_type``, 422
  ``invalid``) on the upload routes;
* ``dermsight_model_info{name, version, bundle_sha256}``, ``dermsight_gate_ood_threshold`` and
  ``dermsight_gate_reference_block_ratio`` (the share of the test split's dermoscopic images the
  gate refused, from the card: the baseline for a "cannot assess" alert); the process's memory
  and CPU (``process_*``).

Label values are route templates (``/api/v1/reference/{image_id}.webp``, never the raw path),
status codes, and names the code or the bundle defines (tiers, classes, flag codes): never image
data, metadata values or anything else a client sent. Each app has its own ``CollectorRegistry``
(``create_app``), so several apps in one process (tests) never share counts.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from dermsight import gate
from dermsight.predict import CANNOT_ASSESS, Dermsight, Prediction
from dermsight.records import Metadata
from dermsight.web.routes import API

router = APIRouter(prefix=API, tags=["service"])
# no ``*_created`` sample beside every counter and histogram: they double the output and no alert
# here needs them (the process start time is ``process_start_time_seconds``)
disable_created_metrics()

#: the routes that take an image upload: their 413 / 415 / 422 answers count as refused uploads
UPLOAD_ROUTES = frozenset({f"{API}/predict", f"{API}/lesions/{{lesion_id}}/visits"})
REFUSAL_REASONS = {413: "too_large", 415: "unsupported_type", 422: "invalid"}
RISK_TIERS = ("high", "moderate", "low", CANNOT_ASSESS)
#: request latency (s): the API's targets are tens of milliseconds, uploads can take seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
#: gate v2's score is a logit (threshold near 0, dermoscopic images far below): offsets from it
LOGIT_OFFSETS = (-16.0, -12.0, -8.0, -6.0, -4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
#: gate v1's score is a distance (1 - cosine, >= 0): multiples of its threshold
DISTANCE_FACTORS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0)
#: a label value made by the code or the bundle (flag codes, class codes); anything else: "other"
_SAFE_LABEL = re.compile(r"[A-Za-z0-9_]{1,40}")
OPENAPI_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "description": "the metrics in the Prometheus text format (version 0.0.4)",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}}


def safe_label(value: str) -> str:
    return value if _SAFE_LABEL.fullmatch(value) else "other"


def gate_threshold(model: Dermsight) -> tuple[float, bool] | None:
    """The threshold the bundle's OOD score is compared with, and whether the score is gate v2's
    logit (else gate v1's kNN distance); None for a bundle without a fitted gate."""
    cfg = model.card.gate
    if gate.has_v2(cfg, model.bundle.gate_arrays):
        return float(cfg["v2_threshold"]), True
    if "ood_threshold" in cfg and model.bundle.gate_arrays:
        return float(cfg["ood_threshold"]), False
    return None


def ood_buckets(threshold: float, logit: bool) -> tuple[float, ...]:
    """Histogram bucket edges around ``threshold`` (one of them is the threshold itself)."""
    edges = ([threshold + d for d in LOGIT_OFFSETS] if logit
             else [threshold * f for f in DISTANCE_FACTORS])
    return tuple(sorted(round(e, 6) for e in edges))


def reference_block_ratio(cfg: dict[str, Any], logit: bool) -> float | None:
    """The share of the card's test-split dermoscopic images the gate refused (None if the card
    does not say): what the "cannot assess" share looks like on the cameras the model knows."""
    if logit:
        per_source = cfg.get("v2_evaluation", {}).get("false_reject_test", {})
        counts = [(r["k"], r["n"]) for r in per_source.values() if isinstance(r, dict)
                  and isinstance(r.get("k"), int) and isinstance(r.get("n"), int)]
        n_all = sum(n for _, n in counts)
        return sum(k for k, _ in counts) / n_all if n_all else None
    rate = cfg.get("v1_evaluation", {}).get("false_reject_rate_test")
    return float(rate) if isinstance(rate, (int, float)) else None


class ServiceMetrics:
    """The metrics of one app (its own registry). Thread-safe: predictions are recorded from the
    inference worker threads, requests from the event loop."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        self.requests = Counter("dermsight_http_requests", "HTTP requests by route template and "
                                "status code", ("method", "route", "status"), registry=registry)
        self.latency = Histogram("dermsight_http_request_duration_seconds", "time from the "
                                 "request's arrival to the end of its response, by route "
                                 "template", ("route",), buckets=LATENCY_BUCKETS,
                                 registry=registry)
        self.refused = Counter("dermsight_uploads_refused", "uploads refused: too_large (413), "
                               "unsupported_type (415), invalid (422: metadata or an unusable "
                               "image)", ("reason",), registry=registry)
        self.inference = Histogram("dermsight_inference_duration_seconds", "one upload's decode, "
                                   "gate, network and heatmap", buckets=INFERENCE_BUCKETS,
                                   registry=registry)
        self.tiers = Counter("dermsight_predictions", "answers by risk tier (cannot_assess: the "
                             "gate refused the image)", ("risk",), registry=registry)
        self.classes = Counter("dermsight_predicted_class", "suggested class of the answers that "
                               "could be assessed", ("prediction",), registry=registry)
        self.flags = Counter("dermsight_prediction_flags", "flags on answers, by flag code",
                             ("flag",), registry=registry)
        self.model = Info("dermsight_model", "the model bundle being served", registry=registry)
        self.threshold = Gauge("dermsight_gate_ood_threshold", "the bundle's OOD threshold: a "
                               "score above it is refused", registry=registry)
        self.reference_block = Gauge("dermsight_gate_reference_block_ratio", "share of the test "
                                     "split's dermoscopic images the gate refused (model card)",
                                     registry=registry)
        self.ood: Histogram | None = None
        for reason in REFUSAL_REASONS.values():
            self.refused.labels(reason)
        for tier in RISK_TIERS:
            self.tiers.labels(tier)
        for flag in (gate.OOD_FLAG, gate.CLINICAL_FLAG, gate.RECOLOURED_FLAG):
            self.flags.labels(flag.code)  # the drift signals: zero series from the start

    def bind_model(self, model: Dermsight) -> None:
        """The model's identity, its classes (zero series) and the OOD histogram around its
        gate's threshold (the lifespan calls it once the bundle is loaded)."""
        card = model.card
        self.model.info({"name": card.name, "version": card.version,
                         "bundle_sha256": card.onnx_sha256})
        for code in card.classes:
            self.classes.labels(safe_label(code))
        if self.ood is not None:  # a second start of the same app (tests)
            self.registry.unregister(self.ood)
            self.ood = None
        found = gate_threshold(model)
        if found is None:
            return
        threshold, logit = found
        self.threshold.set(threshold)
        ratio = reference_block_ratio(card.gate, logit)
        if ratio is not None:
            self.reference_block.set(ratio)
        self.ood = Histogram("dermsight_ood_score", "the gate's OOD score (gate v2: a logit; v1: a "
                             "kNN distance); the bucket le=threshold counts those that passed",
                             buckets=ood_buckets(threshold, logit), registry=self.registry)

    def observe_request(self, method: str, route: str, status: int | None,
                        seconds: float) -> None:
        """One answered request (``middleware.MetricsMiddleware``); ``status`` None: none sent."""
        self.requests.labels(method, route, str(status) if status else "none").inc()
        self.latency.labels(route).observe(seconds)
        # an upload is a POST: a PUT refused for its size on an upload route uploaded nothing
        if method == "POST" and status in REFUSAL_REASONS and route in UPLOAD_ROUTES:
            self.refused.labels(REFUSAL_REASONS[status]).inc()

    def observe_prediction(self, pred: Prediction, seconds: float) -> None:
        self.inference.observe(seconds)
        self.tiers.labels(safe_label(pred.risk)).inc()
        if pred.assessable:
            self.classes.labels(safe_label(pred.prediction)).inc()
        for flag in pred.flags:
            self.flags.labels(safe_label(flag.code)).inc()
        if self.ood is not None and pred.ood_score is not None:
            self.ood.observe(pred.ood_score)

    def timed_prediction(self, model: Dermsight, data: bytes, *, meta: Metadata, heatmap: bool,
                         tta: bool = False) -> Prediction:
        """``model.predict`` of one upload, recorded (an exception is not: the middleware counts
        the refused upload)."""
        t0 = time.perf_counter()
        pred = model.predict(data, meta=meta, heatmap=heatmap, tta=tta)
        self.observe_prediction(pred, time.perf_counter() - t0)
        return pred


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


@router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response,
            responses=OPENAPI_RESPONSE)
async def metrics(service: MetricsDep) -> Response:
    return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
