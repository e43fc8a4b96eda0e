"""Property-based tests against the real server: schemathesis drives every operation from the
OpenAPI document (positive and negative data), hypothesis throws random multipart bodies at
``/api/v1/predict``. Whatever is sent, the answer is never a 5xx."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import checks as sc
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode

import api_support as support
from dermsight import taxonomy

FUZZ_SETTINGS = settings(
    max_examples=30, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)



@pytest.fixture(scope="session")
def api_schema(api: support.Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{api.base}/api/v1/openapi.json")


CHECKS = [sc.not_a_server_error, sc.status_code_conformance, sc.content_type_conformance,
          sc.response_schema_conformance]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_no_server_errors(
        api_schema: schemathesis.BaseSchema, api: support.Server, mode: GenerationMode) -> None:
    """Every operation of the OpenAPI document, schema-valid and schema-violating data.

    (schemathesis' own pytest plugin, ``schema.parametrize()``, does not run under pytest 9 yet,
    so the operations' hypothesis strategies are driven directly.)"""
    results = list(api_schema.get_all_operations())
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) == len(results), "the OpenAPI document has invalid operations"
    assert len(operations) >= 9
    checks = CHECKS + ([sc.negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
    nothing_to_generate = []
    for op in operations:

        @FUZZ_SETTINGS
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=api.base, timeout=120)
            case.validate_response(response, checks=checks)

        try:
            run()
        except Unsatisfiable:  # no parameters/body to break (e.g. GET /health, negative mode)
            nothing_to_generate.append(op.label)
    assert "POST /api/v1/predict" not in nothing_to_generate


# --- hypothesis: random multipart bodies -----------------------------------------------------

NAMES = st.sampled_from(["image", "age", "sex", "site", "notes", "IMAGE", ""]) | st.text(
    st.characters(codec="utf-8", exclude_characters='"\r\n'), max_size=12)
TEXT_VALUES = (
    st.sampled_from([*taxonomy.SITES, *taxonomy.SEXES, "45", "-3", "1e400", "nan", "120.0001"])
    | st.text(max_size=40)
)
VALUES = st.binary(max_size=3000) | TEXT_VALUES.map(lambda s: s.encode("utf-8"))
PART = st.tuples(
    NAMES, VALUES, st.none() | st.sampled_from(["a.jpg", "x.png", "", "../../etc/passwd"]),
    st.none() | st.sampled_from(["image/jpeg", "text/plain", "application/json"]),
)


@pytest.mark.slow
@FUZZ_SETTINGS
@given(parts=st.lists(PART, max_size=5), with_image=st.booleans(),
       params=st.dictionaries(st.sampled_from(["heatmap", "tta"]),
                              st.sampled_from(["true", "false", "1", "x", ""]), max_size=2))
def test_random_multipart_never_5xx(
        api: support.Server, jpeg_small: bytes, parts: list[tuple[str, bytes, str | None,
                                                                  str | None]],
        with_image: bool, params: dict[str, str]) -> None:
    if with_image:
        parts = [*parts, ("image", jpeg_small, "lesion.jpg", "image/jpeg")]
    body, ctype = support.multipart(parts)
    r = httpx.post(f"{api.base}/api/v1/predict", content=body, params=params,
                   headers={"content-type": ctype}, timeout=120)
    assert r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/json")
    if r.status_code >= 400:
        assert isinstance(r.json()["detail"], str)


@pytest.mark.slow
@FUZZ_SETTINGS
@given(body=st.binary(max_size=4000),
       ctype=st.sampled_from(["multipart/form-data; boundary=abc", "multipart/form-data",
                              "multipart/form-data; boundary=", "image/png", "", "text/plain"]))
def test_random_bodies_never_5xx(api: support.Server, body: bytes, ctype: str) -> None:
    headers = {"content-type": ctype} if ctype else {}
    r = httpx.post(f"{api.base}/api/v1/predict", content=body, headers=headers, timeout=120)
    assert r.status_code < 500, r.text
    assert isinstance(r.json()["detail"], str)


@pytest.fixture(scope="session")
def jpeg_small(sample_image: Path) -> bytes:
    return support.to_jpeg(sample_image, size=64)
