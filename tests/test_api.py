"""The HTTP API against a real ``dermsight serve`` (uvicorn) on a loopback port: routes,
predictions on real images (with/without metadata and heatmap, DICOM), headers, OpenAPI."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import api_support as support
from dermsight import taxonomy
from dermsight.bundle import write_manifest
from dermsight.decision import DecisionRule
from dermsight.malignancy import malignant_probability
from dermsight.web.middleware import CSP, DOCS_CSP
from dermsight.web.schemas import ClassOut, ExampleOut, HealthResponse, PredictResponse

SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}





def assert_security_headers(r: httpx.Response, csp: str = CSP) -> None:
    for k, v in {**SECURITY_HEADERS, "content-security-policy": csp}.items():
        assert r.headers.get(k) == v, (k, r.headers.get(k))


def post_image(client: httpx.Client, data: bytes, params: dict[str, str] | None = None,
               filename: str = "lesion.jpg", **fields: str) -> httpx.Response:
    return client.post("/api/v1/predict", params=params, data=fields,
                       files={"image": (filename, data, "application/octet-stream")})


# --- service routes ---------------------------------------------------------------------------


def test_health(client: httpx.Client) -> None:
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    body = HealthResponse.model_validate(r.json())
    assert body.status == "ok"
    assert body.model.name
    assert_security_headers(r)
    assert r.headers["cache-control"] == "no-store"


def test_classes_are_the_trained_classes(client: httpx.Client) -> None:
    card = client.get("/api/v1/model").json()
    r = client.get("/api/v1/classes")
    assert r.status_code == 200
    classes = [ClassOut.model_validate(c) for c in r.json()]
    assert [c.code for c in classes] == card["classes"]
    for c in classes:
        ref = taxonomy.BY_CODE[c.code]
        assert (c.name, c.lay, c.malignant, c.premalignant) == (
            ref.name, ref.lay, ref.malignant, ref.premalignant)


def test_model_card(client: httpx.Client) -> None:
    r = client.get("/api/v1/model")
    assert r.status_code == 200
    card = r.json()
    for key in ("schema_version", "name", "version", "classes", "input_spec", "thresholds"):
        assert key in card
    # always sent resolved (the UI reads it as is): the runtime's malignant set
    assert card["malignant"] == [c for c in card["classes"] if c in taxonomy.MALIGNANT]
    assert card["links"]["report"] == "/api/v1/model/report"
    assert card["links"]["plots"] == {"roc": "/api/v1/model/plots/roc.png"}


def test_model_report_and_plots(client: httpx.Client) -> None:
    r = client.get("/api/v1/model/report")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "Evaluation report" in r.text
    assert_security_headers(r)
    assert client.get("/api/v1/model/plots").json() == {"plots": ["roc"]}
    r = client.get("/api/v1/model/plots/roc.png")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (40, 30)


@pytest.mark.parametrize("name", ["missing", "..%2Fcard", "%2E%2E", ".hidden", "a" * 300])
def test_model_plot_unknown_is_404(client: httpx.Client, name: str) -> None:
    r = client.get(f"/api/v1/model/plots/{name}.png")
    assert r.status_code == 404
    assert isinstance(r.json()["detail"], str)


def test_examples_list_and_files(client: httpx.Client, metadata: pd.DataFrame) -> None:
    r = client.get("/api/v1/examples")
    assert r.status_code == 200
    examples = [ExampleOut.model_validate(e) for e in r.json()]
    assert sorted(e.code for e in examples) == sorted(
        ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"])
    credits = json.loads((support.REPO / "src/dermsight/assets/examples/credits.json").read_text())
    sha = {c["file"]: c["sha256"] for c in credits["images"]}
    truth = metadata.set_index("image_id")
    for e in examples:
        assert truth.loc[e.image_id, "diagnosis"] == e.code  # labels match the shared data
        assert e.license in ("CC BY-NC 4.0", "CC-0")
        img = client.get(e.url)
        assert img.status_code == 200
        assert img.headers["content-type"] == "image/jpeg"
        assert hashlib.sha256(img.content).hexdigest() == sha[e.file]
        assert 8_000 < len(img.content) < 40_000


@pytest.mark.parametrize("name", ["nope.jpg", "credits.json", "..%2Fdefault%2Fcard.json"])
def test_example_unknown_is_404(client: httpx.Client, name: str) -> None:
    r = client.get(f"/api/v1/examples/{name}")
    assert r.status_code == 404


def test_unknown_api_route_is_json_404_and_wrong_method_405(client: httpx.Client) -> None:
    r = client.get("/api/v1/does-not-exist")
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}
    assert_security_headers(r)
    r = client.delete("/api/v1/model")
    assert r.status_code == 405
    assert isinstance(r.json()["detail"], str)
    r = client.get("/api/v1/predict")
    assert r.status_code == 405


def test_ui_is_served_or_explained(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert_security_headers(r)
    static = support.REPO / "src/dermsight/web/static/index.html"
    if static.exists():
        assert r.text == static.read_text(encoding="utf-8")
    else:
        assert "not built" in r.text


def test_docs_page_has_its_own_csp(client: httpx.Client) -> None:
    r = client.get("/api/v1/docs")
    assert r.status_code == 200
    assert_security_headers(r, csp=DOCS_CSP)


# --- predict ----------------------------------------------------------------------------------


def test_predict_with_metadata_and_heatmap(client: httpx.Client, jpeg: bytes) -> None:
    r = post_image(client, jpeg, age="55", sex="female", site="posterior torso")
    assert r.status_code == 200, r.text
    assert_security_headers(r)
    assert r.headers["cache-control"] == "no-store"
    body = PredictResponse.model_validate(r.json())
    card = client.get("/api/v1/model").json()
    assert list(body.probabilities) == card["classes"]
    assert abs(sum(body.probabilities.values()) - 1.0) < 1e-4
    row = np.array([[body.probabilities[c] for c in card["classes"]]])
    rule = DecisionRule.from_dict(card.get("decision"))
    assert body.prediction == card["classes"][int(rule.choose(row, card["classes"])[0])]
    assert body.input.model_dump() == {"age": 55.0, "sex": "female", "site": "posterior torso"}
    assert body.model.name == card["name"]
    assert body.disclaimer
    mal = malignant_probability(row, card["classes"], card["malignant"],
                                card.get("malignant_excluded", []))
    assert mal is not None
    assert abs(body.malignant_probability - float(mal[0])) < 1e-4
    assert body.heatmap is not None
    png = Image.open(io.BytesIO(base64.b64decode(body.heatmap)))
    assert png.has_transparency_data  # a palette PNG with per-entry opacity (tRNS)
    assert np.asarray(png.convert("RGBA"))[..., 3].max() == 255  # the hottest cells opaque
    assert png.size[0] == png.size[1]


def test_predict_without_metadata_and_without_heatmap(client: httpx.Client, jpeg: bytes) -> None:
    r = post_image(client, jpeg, params={"heatmap": "false"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "heatmap" not in body
    assert body["input"] == {"age": None, "sex": None, "site": None}
    PredictResponse.model_validate(body)


def test_predict_matches_the_library(client: httpx.Client, jpeg: bytes) -> None:
    from dermsight import Dermsight

    lib = Dermsight.load(support.DEFAULT_BUNDLE).predict(jpeg, age=40, sex="male",
                                                         site="head/neck", heatmap=False)
    r = post_image(client, jpeg, params={"heatmap": "false"}, age="40", sex="M", site="head/neck")
    api_probs = r.json()["probabilities"]
    for code, p in lib.probabilities.items():
        assert abs(api_probs[code] - p) < 1e-5


def test_empty_form_fields_mean_missing(
        client: httpx.Client, jpeg: bytes) -> None:
    a = post_image(client, jpeg, params={"heatmap": "false"}, age="", sex="", site="").json()
    b = post_image(client, jpeg, params={"heatmap": "false"}).json()
    assert a["input"] == b["input"] == {"age": None, "sex": None, "site": None}
    assert a["probabilities"] == b["probabilities"]


def test_predict_tta_is_off_by_default(client: httpx.Client, jpeg: bytes) -> None:
    # 8x the compute: only when the operator sets DERMSIGHT_ALLOW_TTA (test_api_limits.py)
    r = post_image(client, jpeg, params={"tta": "true", "heatmap": "true"})
    assert r.status_code == 403, r.text
    assert "DERMSIGHT_ALLOW_TTA" in r.json()["detail"]


def test_predict_every_class_of_real_images(
        client: httpx.Client, data_dir: Path, sample_ids: list[str]) -> None:
    for image_id in sample_ids[::3]:
        data = (data_dir / "images" / f"{image_id}.jpg").read_bytes()
        r = post_image(client, data, params={"heatmap": "false"}, filename=f"{image_id}.jpg")
        assert r.status_code == 200, (image_id, r.text)
        assert r.json()["risk"] in ("high", "moderate", "low", "cannot_assess")


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "TIFF"])
def test_predict_other_formats(client: httpx.Client, sample_image: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.open(sample_image).save(buf, format=fmt)
    r = post_image(client, buf.getvalue(), params={"heatmap": "false"}, filename=f"x.{fmt}")
    assert r.status_code == 200, r.text


def test_a_heavily_compressed_upload_is_answered_with_a_non_blocking_note(
        client: httpx.Client, jpeg: bytes) -> None:
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buf, format="JPEG", quality=50)
    r = post_image(client, buf.getvalue(), params={"heatmap": "false"}, age="60", sex="male")
    assert r.status_code == 200, r.text
    body = PredictResponse.model_validate(r.json())
    notes = [f for f in body.flags if f.code == "compressed"]
    assert len(notes) == 1
    assert notes[0].blocking is False
    assert "JPEG quality about 50" in notes[0].message
    assert body.risk != "cannot_assess"
    stored = post_image(client, jpeg, params={"heatmap": "false"}, age="60", sex="male")
    assert "compressed" not in [f["code"] for f in stored.json()["flags"]]


def test_tiny_and_odd_shaped_images_do_not_break_the_server(client: httpx.Client) -> None:
    for w, h, mode in [(1, 1, "RGB"), (1, 600, "L"), (600, 2, "RGBA"), (17, 9, "P")]:
        buf = io.BytesIO()
        # opaque: an image with transparent areas is refused (tests/test_input_formats.py)
        Image.new(mode, (w, h), (0, 0, 0, 255) if mode == "RGBA" else 0).save(buf, format="PNG")
        r = post_image(client, buf.getvalue(), params={"heatmap": "true"}, filename="odd.png")
        assert r.status_code == 200, (w, h, r.text)
        assert r.json()["risk"] in ("high", "moderate", "low", "cannot_assess")


def test_predict_dicom_upload_uses_tags_unless_the_form_overrides(
        client: httpx.Client, sample_image: Path, tmp_path: Path) -> None:
    dicom = pytest.importorskip("dermsight.io.dicom")
    rgb = np.asarray(Image.open(sample_image).convert("RGB"))
    path = dicom.write_dicom(tmp_path / "lesion.dcm", rgb, age=63, sex="male",
                             site="lower extremity")
    data = path.read_bytes()
    r = post_image(client, data, params={"heatmap": "false"}, filename="lesion.dcm")
    assert r.status_code == 200, r.text
    assert r.json()["input"] == {"age": 63.0, "sex": "male", "site": "lower extremity"}
    r = post_image(client, data, params={"heatmap": "false"}, filename="lesion.dcm",
                   age="30", site="head/neck")
    assert r.status_code == 200, r.text
    assert r.json()["input"] == {"age": 30.0, "sex": "male", "site": "head/neck"}
    # uncompressed pixel data, no tags at all
    bare = dicom.write_dicom(tmp_path / "bare.dcm", rgb, jpeg=False)
    r = post_image(client, bare.read_bytes(), params={"heatmap": "true"}, filename="bare.dcm")
    assert r.status_code == 200, r.text
    assert r.json()["input"] == {"age": None, "sex": None, "site": None}
    assert "heatmap" in r.json()


def test_dicom_without_pixels_is_422(
        client: httpx.Client, sample_image: Path, tmp_path: Path) -> None:
    dicom = pytest.importorskip("dermsight.io.dicom")
    rgb = np.asarray(Image.open(sample_image).convert("RGB"))
    path = dicom.write_dicom(tmp_path / "nopix.dcm", rgb, age=40, pixels=False)
    r = post_image(client, path.read_bytes(), filename="nopix.dcm")
    assert r.status_code == 422
    assert "pixel" in r.json()["detail"].lower()


def test_example_images_predict(client: httpx.Client) -> None:
    for e in client.get("/api/v1/examples").json()[:3]:
        data = client.get(e["url"]).content
        r = post_image(client, data, params={"heatmap": "false"}, age=str(e["age"] or ""),
                       sex=e["sex"] or "", site=e["site"] or "")
        assert r.status_code == 200, r.text


def test_concurrent_requests(api: support.Server, jpeg: bytes) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> int:
        with api.client() as c:
            return post_image(c, jpeg, params={"heatmap": str(i % 2 == 0).lower()}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(16))) == [200] * 16


# --- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_document_is_valid_and_has_the_routes(client: httpx.Client) -> None:
    from openapi_spec_validator import validate

    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/predict", "post"), ("/api/v1/model", "get"), ("/api/v1/model/report", "get"),
        ("/api/v1/model/plots", "get"), ("/api/v1/model/plots/{name}.png", "get"),
        ("/api/v1/classes", "get"), ("/api/v1/health", "get"), ("/api/v1/examples", "get"),
        ("/api/v1/examples/{file}", "get"),
    ]:
        assert method in paths[path], (path, method)
    body = paths["/api/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    props = body["schema"]["properties"]
    assert body["schema"]["required"] == ["image"]
    # strings: the server takes more spellings than the canonical values (listed as examples)
    assert props["sex"]["examples"] == list(taxonomy.SEXES)
    assert props["site"]["examples"] == list(taxonomy.SITES)
    assert all(props[f]["type"] == "string" and "enum" not in props[f]
               for f in ("age", "sex", "site"))
    assert "0-120" in props["age"]["description"]
    for code in ("413", "415", "422"):
        assert code in paths["/api/v1/predict"]["post"]["responses"]
    assert "securitySchemes" not in doc.get("components", {})  # no token configured


def test_cannot_assess_response_keeps_numbers_only_under_unreliable(
        client: httpx.Client) -> None:
    """A refused image: risk cannot_assess, no top-level probabilities / class / malignant
    probability / heatmap, the numbers under ``unreliable`` with a note; matches the schema."""
    buf = io.BytesIO()
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(buf, format="PNG")
    r = post_image(client, buf.getvalue())
    assert r.status_code == 200, r.text
    raw = r.json()
    body = PredictResponse.model_validate(raw)
    assert body.risk == "cannot_assess"
    assert any(f.blocking for f in body.flags)
    for key in ("probabilities", "prediction", "prediction_name", "malignant_probability",
                "heatmap"):
        assert key not in raw, key
    assert body.unreliable is not None
    assert body.unreliable.note
    assert abs(sum(body.unreliable.probabilities.values()) - 1.0) < 1e-4
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert "unreliable" in schema["PredictResponse"]["properties"]
    assert "probabilities" not in schema["PredictResponse"].get("required", [])


# --- serving preparation (in-process) --------------------------------------------------------


def test_gated_bundle_is_prepared_for_serving(tmp_path: Path, jpeg: bytes) -> None:
    """A float16 k-NN gate bank is converted once at start-up and numpy BLAS is limited to one
    thread; the answers (OOD score included) stay those of the library."""
    from fastapi.testclient import TestClient
    from threadpoolctl import threadpool_info, threadpool_limits

    from dermsight import Dermsight
    from dermsight.web.app import create_app
    from dermsight.web.settings import Settings

    bundle = support.make_report_bundle(tmp_path / "gated")
    lib = Dermsight.load(bundle)
    x, m = lib.prepare(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")), None)
    emb_dim = lib.run_arrays(x[None], m[None])["embedding"].shape[1]
    card = json.loads((bundle / "card.json").read_text())
    card["gate"] = {"ood_threshold": 0.5}
    (bundle / "card.json").write_text(json.dumps(card))
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((64, emb_dim)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    np.savez(bundle / "gate.npz", bank=bank.astype(np.float16), k=np.array(5))
    write_manifest(bundle)
    expected = Dermsight.load(bundle).predict(jpeg, heatmap=False)
    assert expected.ood_score is not None

    before = {i["prefix"]: i["num_threads"] for i in threadpool_info()}
    try:
        app = create_app(Settings(model_path=bundle, static_dir=tmp_path / "no-ui"))
        assert not hasattr(app.state, "model")  # loaded by the lifespan, at start
        with TestClient(app) as c:
            assert app.state.model.bundle.gate_arrays["bank"].dtype == np.float32
            assert all(i["num_threads"] == 1 for i in threadpool_info()
                       if i["user_api"] == "blas")
            r = c.post("/api/v1/predict?heatmap=false",
                       files={"image": ("a.jpg", jpeg, "image/jpeg")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert abs(body["ood_score"] - round(expected.ood_score, 4)) < 2e-3
        assert body["risk"] == expected.risk
        # a refused image keeps its numbers only under "unreliable"
        probs = body["probabilities"] if expected.assessable else body["unreliable"][
            "probabilities"]
        for code, p in expected.probabilities.items():
            assert abs(probs[code] - p) < 1e-5
    finally:
        threadpool_limits(limits=before)


def test_lenient_metadata_is_accepted_but_flagged_without_echoing_values(
        client: httpx.Client, jpeg: bytes, sample_image: Path, tmp_path: Path) -> None:
    r = post_image(client, jpeg, params={"heatmap": "false"}, age="١٢", sex="NaN",
                   site="null")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["input"] == {"age": 12.0, "sex": None, "site": None}
    flags = {f["code"]: f for f in body["flags"]}
    assert not flags["metadata_ignored"]["blocking"]
    assert flags["metadata_ignored"]["message"].startswith("sex, site:")
    assert flags["metadata_normalised"]["message"].startswith("age:")
    text = json.dumps(body["flags"], ensure_ascii=False)
    assert "١٢" not in text
    assert "NaN" not in text
    assert "null" not in text
    # plain values: no metadata flag at all
    plain = post_image(client, jpeg, params={"heatmap": "false"}, age="12", sex="female")
    assert not [f for f in plain.json()["flags"] if f["code"].startswith("metadata_")]
    # a DICOM age tag that cannot be used is dropped and flagged, unless the form gives an age
    import pydicom

    dicom = pytest.importorskip("dermsight.io.dicom")
    rgb = np.asarray(Image.open(sample_image).convert("RGB"))
    path = dicom.write_dicom(tmp_path / "a.dcm", rgb, age=40, sex="male")
    ds = pydicom.dcmread(path)
    ds.PatientAge = "999Y"
    ds.save_as(path)
    r = post_image(client, path.read_bytes(), params={"heatmap": "false"}, filename="a.dcm")
    assert r.status_code == 200, r.text
    assert r.json()["input"] == {"age": None, "sex": "male", "site": None}
    codes = {f["code"]: f["message"] for f in r.json()["flags"]}
    assert codes["metadata_ignored"].startswith("age:")
    assert "999" not in codes["metadata_ignored"]
    r = post_image(client, path.read_bytes(), params={"heatmap": "false"}, filename="a.dcm",
                   age="50")
    assert "metadata_ignored" not in {f["code"] for f in r.json()["flags"]}
