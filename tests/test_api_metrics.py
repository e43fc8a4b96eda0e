"""``GET /api/v1/metrics`` against a REAL ``dermsight serve`` process: the Prometheus text parses,
counters move by exactly the requests made (real ISIC images, a uniform grey image the gate
refuses, refused uploads by reason), labels hold route templates and never a raw path, a method
or anything else a client sent, and the shared API token guards the endpoint when one is set."""

from __future__ import annotations

import io
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import api_support as support
from dermsight.bundle import load_bundle

PREDICT = "/api/v1/predict"
METRICS = "/api/v1/metrics"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    """A server of its own (default settings): no other module's requests in its counts."""
    s = support.start_server(tmp_path_factory.mktemp("metrics"))
    yield s
    s.stop()


@pytest.fixture
def client(server: support.Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def scrape(c: httpx.Client) -> Samples:
    r = c.get(METRICS)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(lbl)[label] for (n, lbl), _ in samples.items() if n == name and label in dict(lbl)}


def grey_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def post_image(c: httpx.Client, data: bytes, name: str = "a.jpg", ctype: str = "image/jpeg",
               **fields: str) -> httpx.Response:
    return c.post(PREDICT, params={"heatmap": "false"}, data=fields,
                  files={"image": (name, data, ctype)})


def real_images(data_dir: Path, sample_ids: list[str], n: int = 6) -> list[bytes]:
    return [support.to_jpeg(data_dir / "images" / f"{i}.jpg", size=256) for i in sample_ids[:n]]


def test_predictions_counted_exactly(client: httpx.Client, data_dir: Path,
                                     sample_ids: list[str]) -> None:
    before = scrape(client)
    answers = []
    for data in real_images(data_dir, sample_ids):
        r = post_image(client, data)
        assert r.status_code == 200, r.text
        answers.append(r.json())
    after = scrape(client)
    n = len(answers)
    route = {"method": "POST", "route": PREDICT, "status": "200"}
    assert (value(after, "dermsight_http_requests_total", **route)
            - value(before, "dermsight_http_requests_total", **route)) == n
    assert (value(after, "dermsight_http_request_duration_seconds_count", route=PREDICT)
            - value(before, "dermsight_http_request_duration_seconds_count", route=PREDICT)) == n
    assert (total(after, "dermsight_inference_duration_seconds_count")
            - total(before, "dermsight_inference_duration_seconds_count")) == n
    assert (total(after, "dermsight_ood_score_count")
            - total(before, "dermsight_ood_score_count")) == n
    for risk, k in Counter(a["risk"] for a in answers).items():
        assert (value(after, "dermsight_predictions_total", risk=risk)
                - value(before, "dermsight_predictions_total", risk=risk)) == k, risk
    assert total(after, "dermsight_predictions_total") - total(
        before, "dermsight_predictions_total") == n
    assessed = Counter(a["prediction"] for a in answers if a["risk"] != "cannot_assess")
    for cls, k in assessed.items():
        assert (value(after, "dermsight_predicted_class_total", prediction=cls)
                - value(before, "dermsight_predicted_class_total", prediction=cls)) == k, cls
    assert total(after, "dermsight_predicted_class_total") - total(
        before, "dermsight_predicted_class_total") == sum(assessed.values())
    flags = Counter(f["code"] for a in answers for f in a["flags"])
    assert total(after, "dermsight_prediction_flags_total") - total(
        before, "dermsight_prediction_flags_total") == sum(flags.values())


def test_cannot_assess_counted(client: httpx.Client) -> None:
    before = scrape(client)
    r = post_image(client, grey_png(), name="grey.png", ctype="image/png")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["risk"] == "cannot_assess"
    after = scrape(client)
    for risk in ("cannot_assess", "high", "moderate", "low"):
        assert (value(after, "dermsight_predictions_total", risk=risk)
                - value(before, "dermsight_predictions_total", risk=risk)) == (
                    risk == "cannot_assess"), risk
    assert total(after, "dermsight_predicted_class_total") == total(
        before, "dermsight_predicted_class_total")  # no class for a refused image
    for code in {f["code"] for f in answer["flags"]}:
        assert (value(after, "dermsight_prediction_flags_total", flag=code)
                - value(before, "dermsight_prediction_flags_total", flag=code)) == 1, code


def test_ood_histogram_is_built_around_the_cards_threshold(client: httpx.Client) -> None:
    gate = load_bundle(None).card.gate
    threshold = float(gate["v2_threshold"] if "v2_threshold" in gate else gate["ood_threshold"])
    before = scrape(client)
    assert value(before, "dermsight_gate_ood_threshold") == pytest.approx(threshold)
    edges = {le: float(le) for le in label_values(before, "dermsight_ood_score_bucket", "le")}
    le = min(edges, key=lambda e: abs(edges[e] - threshold))  # the bucket edge at the threshold
    assert edges[le] == pytest.approx(threshold, abs=1e-5)
    assert sum(e < threshold for e in edges.values()) >= 3
    assert sum(threshold < e < float("inf") for e in edges.values()) >= 3
    r = post_image(client, grey_png(), name="grey.png", ctype="image/png")
    assert r.json()["ood_score"] > threshold
    after = scrape(client)
    assert value(after, "dermsight_ood_score_bucket", le=le) == value(
        before, "dermsight_ood_score_bucket", le=le)  # above the threshold: not in le=threshold
    assert value(after, "dermsight_ood_score_bucket", le="+Inf") - value(
        before, "dermsight_ood_score_bucket", le="+Inf") == 1


def _oversized_head(port: int) -> support.RawResponse:
    """A predict request declaring 30 MB (over the 20 MB cap): refused before any byte is read."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(support.request_head("POST", PREDICT, port, {
            "Content-Type": "multipart/form-data; boundary=dermsightTEST42",
            "Content-Length": str(30 * 1024 * 1024)}))
        return support.read_response(sock)


def test_refused_uploads_counted_by_reason(client: httpx.Client, server: support.Server,
                                           data_dir: Path, sample_ids: list[str]) -> None:
    jpeg = real_images(data_dir, sample_ids, 1)[0]
    before = scrape(client)
    assert _oversized_head(server.port).status == 413
    assert post_image(client, support.PDF, name="scan.pdf", ctype="application/pdf"
                      ).status_code == 415
    assert post_image(client, jpeg, age="not-an-age").status_code == 422
    assert post_image(client, jpeg[: len(jpeg) // 3]).status_code == 422  # truncated JPEG
    after = scrape(client)
    for reason, k in (("too_large", 1), ("unsupported_type", 1), ("invalid", 2)):
        assert (value(after, "dermsight_uploads_refused_total", reason=reason)
                - value(before, "dermsight_uploads_refused_total", reason=reason)) == k, reason
    for status, k in (("413", 1), ("415", 1), ("422", 2)):
        labels = {"method": "POST", "route": PREDICT, "status": status}
        assert (value(after, "dermsight_http_requests_total", **labels)
                - value(before, "dermsight_http_requests_total", **labels)) == k, status
    # refused before or at decoding: no answer, so no prediction was counted
    assert total(after, "dermsight_predictions_total") == total(
        before, "dermsight_predictions_total")


def test_labels_hold_templates_not_what_the_client_sent(client: httpx.Client,
                                                        server: support.Server) -> None:
    secret = "ISIC_9912345"
    before = scrape(client)
    assert client.get(f"/api/v1/reference/{secret}.webp").status_code == 404
    assert client.get(f"/api/v1/examples/{secret}-Jane-Doe.jpg").status_code == 404
    assert client.get(f"/api/v1/patient-{secret}").status_code == 404
    assert client.get(f"/api/v1/health?name=Jane-Doe-{secret}").status_code == 200
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(support.request_head(f"BREW{secret}", "/api/v1/health", server.port, {}))
        assert support.read_response(sock).status == 405
    text = client.get(METRICS).text
    assert secret not in text
    assert "Jane" not in text
    after = scrape(client)
    for route, method, status in (("/api/v1/reference/{image_id}.webp", "GET", "404"),
                                  ("/api/v1/examples/{file}", "GET", "404"),
                                  ("unmatched", "GET", "404"),
                                  ("/api/v1/health", "GET", "200"),
                                  ("/api/v1/health", "other", "405")):
        labels = {"method": method, "route": route, "status": status}
        assert (value(after, "dermsight_http_requests_total", **labels)
                - value(before, "dermsight_http_requests_total", **labels)) == 1, labels
    routes = label_values(after, "dermsight_http_requests_total", "route")
    assert all(r == "unmatched" or r.startswith("/") for r in routes)
    assert label_values(after, "dermsight_http_requests_total", "method") <= {
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_model_info_names_the_served_bundle(client: httpx.Client) -> None:
    card = load_bundle(None).card
    health = client.get("/api/v1/health").json()["model"]
    samples = scrape(client)
    info = {"name": card.name, "version": card.version, "bundle_sha256": card.onnx_sha256}
    assert value(samples, "dermsight_model_info", **info) == 1
    assert (health["name"], health["version"]) == (card.name, card.version)
    assert total(samples, "process_resident_memory_bytes") > 0


def test_openapi_lists_the_metrics_route(client: httpx.Client) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    op = doc["paths"][METRICS]["get"]
    assert "text/plain" in op["responses"]["200"]["content"]


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> support.Server:
    return support.strict_server(tmp_path_factory.mktemp("strict-metrics"))


def test_token_required_when_set(strict: support.Server) -> None:
    with httpx.Client(base_url=strict.base, timeout=60) as anon:
        r = anon.get(METRICS)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert anon.get(METRICS, headers={"Authorization": "Bearer wrong"}).status_code == 401
        doc = anon.get("/api/v1/openapi.json").json()
        assert "401" in doc["paths"][METRICS]["get"]["responses"]
    with strict.client() as authed:
        samples = scrape(authed)
    assert value(samples, "dermsight_http_requests_total", method="GET", route=METRICS,
                 status="401") >= 2


def test_clinic_visit_answers_are_counted(harness: Any, data_dir: Path,
                                          sample_ids: list[str]) -> None:
    """A visit upload is an answer like /predict's: its tier, class and inference time count."""
    h = harness
    registry = h.client.app.state.metrics.registry

    def counted(risk: str) -> float:
        return registry.get_sample_value("dermsight_predictions_total", {"risk": risk}) or 0.0

    before = {t: counted(t) for t in ("high", "moderate", "low", "cannot_assess")}
    h.add_user("ana")
    h.login("ana")
    lesion = h.lesion(h.patient("METRICS-1"))
    replies = [h.visit(lesion, image) for image in [*real_images(data_dir, sample_ids, n=2),
                                                    grey_png()]]
    assert [r.status_code for r in replies] == [201, 201, 201]
    tiers = Counter(r.json()["result"]["risk"] for r in replies)
    assert tiers["cannot_assess"] == 1
    assert {t: counted(t) - before[t] for t in before} == {t: float(tiers[t]) for t in before}
    assert registry.get_sample_value("dermsight_inference_duration_seconds_count") == 3.0
