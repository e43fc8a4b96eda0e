"""Input hardening, from a security review: one test group per finding.

* A patient reference that only *looks* like another patient's (a Cyrillic or Greek letter
  drawn like a Latin one, a fullwidth letter) is a 409 naming the existing reference, on
  creation and on correction; a reference in another alphabet that looks like no other stays
  accepted.
* A request body that is not a ``multipart/form-data`` upload is capped at 64 KiB (413 before
  anything parses it, with or without Content-Length); image uploads keep the image cap.
* A JSON body ``json.loads`` cannot read for another reason than a syntax error (not UTF-8,
  nested too deeply, an integer of more than 4,300 digits) is the documented 422, not
  FastAPI's vague 400 "There was an error parsing the body".
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from clinic_support import (  # noqa: F401 - fixtures
    API,
    ClinicHarness,
    clinic_model,
    db_url,
    harness,
    served_clinic,
)

CYRILLIC_ER = "\u0420"  # drawn like P
FULLWIDTH_P = "\uff30"


def _refs(h: ClinicHarness) -> list[str]:
    return sorted(p["ref"] for p in h.get("/patients").json())


# --- 1. look-alike patient references ------------------------------------------------------------


def test_a_reference_that_looks_like_another_is_refused(harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    h.login("ana")
    h.patient("P-001")
    for ref in (f"{CYRILLIC_ER}-001", f"{FULLWIDTH_P}-001", "\u0440-001"):
        r = h.post("/patients", json={"ref": ref})
        assert r.status_code == 409, (ref, r.text)
        detail = r.json()["detail"]
        assert "looks the same as existing patient reference 'P-001'" in detail
        assert "character 1 is U+" in detail
        assert "U+0050 LATIN CAPITAL LETTER P" in detail
    r = h.post("/patients", json={"ref": f"{CYRILLIC_ER}-001"})
    assert "U+0420 CYRILLIC CAPITAL LETTER ER" in r.json()["detail"]
    # the same status and shape as a reference that is equal ignoring case
    same = h.post("/patients", json={"ref": "p-001"})
    assert same.status_code == 409
    assert set(same.json()) == set(r.json()) == {"detail"}
    assert _refs(h) == ["P-001"]


def test_a_latin_reference_that_looks_like_a_stored_cyrillic_one_is_refused(
        harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    h.login("ana")
    h.patient(f"{CYRILLIC_ER}-001")  # a Cyrillic reference, unique: accepted
    r = h.post("/patients", json={"ref": "p-001"})
    assert r.status_code == 409, r.text
    assert f"existing patient reference '{CYRILLIC_ER}-001'" in r.json()["detail"]


def test_references_in_other_alphabets_that_look_like_no_other_are_accepted(
        harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    h.login("ana")
    refs = ["\u0418\u0432\u0430\u043d\u043e\u0432-7",  # Ivanov, in Cyrillic
            "\u041f\u0435\u0442\u0440\u043e\u0432-7",  # Petrov
            "\u039d\u03af\u03ba\u03bf\u03c2-3",  # Nikos, in Greek
            "O-1", "0-1", "P-002", "P-003"]
    for ref in refs:
        h.patient(ref)
    assert len(_refs(h)) == len(refs)


def test_correcting_a_reference_to_another_patients_look_alike_is_refused(
        harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    h.login("ana")
    first = h.patient("P-001")
    second = h.patient("Q-7")
    r = h.client.patch(f"{API}/patients/{second}", json={"ref": f"{CYRILLIC_ER}-001"})
    assert r.status_code == 409, r.text
    assert "looks the same as existing patient reference 'P-001'" in r.json()["detail"]
    assert _refs(h) == ["P-001", "Q-7"]
    # the patient's own reference is no other patient's: a correction
    r = h.client.patch(f"{API}/patients/{first}", json={"ref": f"{FULLWIDTH_P}-001"})
    assert r.status_code == 200, r.text
    r = h.client.patch(f"{API}/patients/{second}", json={"ref": "Q-8"})
    assert r.status_code == 200, r.text


# --- 2 and 3: request bodies of the served app -------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClinicHarness]:
    with served_clinic(tmp_path_factory.mktemp("served")) as h:
        yield h


SMALL_CAP = 64 * 1024


def _big_login(size: int) -> bytes:
    head = b'{"username": "a", "password": "x", "z": ['
    return head + b"0," * ((size - len(head)) // 2) + b"0]}"


def test_a_large_json_body_is_refused_before_it_is_parsed(served: ClinicHarness) -> None:
    h = served
    body = _big_login(SMALL_CAP + 10)
    for path in ("/auth/login", "/patients"):
        r = h.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (path, r.text)
        assert r.json()["detail"] == (
            "request body too large: a request that is not an image upload "
            "(multipart/form-data) may send at most 64 KiB")
    # any type but multipart counts (FastAPI parses a body without a Content-Type as JSON)
    for ctype in ("text/plain", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = h.post("/auth/login", content=body, headers=headers)
        assert r.status_code == 413, (ctype, r.text)


def test_a_large_chunked_json_body_is_refused(served: ClinicHarness) -> None:
    h = served
    body = _big_login(4 * SMALL_CAP)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    r = h.post("/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413, r.text
    assert "may send at most 64 KiB" in r.json()["detail"]


def test_a_json_body_under_the_cap_is_read(served: ClinicHarness) -> None:
    h = served
    # the largest real body, a 2,000-character note, is far smaller: padding stands for it
    body = b'{"ref": "PAD-1"' + b" " * (SMALL_CAP - 100) + b"}"
    r = h.post("/patients", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text


def _png(size: int) -> bytes:
    """A PNG of at least ``size`` bytes (noise does not compress)."""
    import numpy as np

    side = int((size / 3) ** 0.5) + 8
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    assert len(buf.getvalue()) >= size
    return buf.getvalue()


def test_multipart_uploads_keep_the_image_cap(served: ClinicHarness) -> None:
    h = served
    image = _png(4 * SMALL_CAP)
    pid = h.patient("UPLOAD-1")
    lesion = h.lesion(pid)
    r = h.visit(lesion, image)
    assert r.status_code == 201, r.text
    r = h.post("/predict?heatmap=false", files={"image": ("a.png", image, "image/png")})
    assert r.status_code == 200, r.text


def test_a_raw_image_body_is_told_to_use_multipart(served: ClinicHarness) -> None:
    """A whole image sent as the body (``curl --data-binary @photo.jpg``) keeps the upload
    route's 415, however large (a review found a 413 about a 64 KiB size that was not the
    problem); a large body without a type is refused by size, naming the multipart upload."""
    for ctype in ("image/png", "application/octet-stream", "application/dicom"):
        r = served.post("/predict", content=_png(4 * SMALL_CAP), headers={"Content-Type": ctype})
        assert r.status_code == 415, (ctype, r.text)
        assert "multipart/form-data" in r.json()["detail"]
    r = served.post("/predict", content=_png(4 * SMALL_CAP), headers={"Content-Type": ""})
    assert r.status_code == 413, r.text
    assert "(multipart/form-data)" in r.json()["detail"]


UNREADABLE: list[tuple[bytes, str]] = [
    (b'{"ref": "\xff\xfe"}', "the request body is not valid JSON (it is not UTF-8 text)"),
    (b'{"ref": ' + b"[" * 5000 + b"]" * 5000 + b"}",
     "the request body cannot be read as JSON (it is nested too deeply)"),
    (b'{"ref": ' + b"1" * 5000 + b"}",
     "the request body cannot be read as JSON (a number in it has too many digits)"),
]


@pytest.mark.parametrize(("body", "detail"), UNREADABLE, ids=["utf8", "nesting", "digits"])
def test_an_unreadable_json_body_is_a_422(served: ClinicHarness, body: bytes,
                                          detail: str) -> None:
    h = served
    pid = h.patient(f"JSON-{len(body)}")
    lesion = h.lesion(pid)
    for method, path in (("POST", "/patients"), ("PATCH", f"/lesions/{lesion}"),
                         ("POST", "/auth/login")):
        r = h.client.request(method, f"{API}{path}", content=body,
                             headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (method, path, r.text)
        assert r.json() == {"detail": detail}


def test_a_json_syntax_error_keeps_its_422(served: ClinicHarness) -> None:
    r = served.post("/patients", content=b'{"ref": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("the request body is not valid JSON (")


def test_unreadable_json_is_mapped_only_for_its_causes() -> None:
    from starlette.exceptions import HTTPException

    from dermsight.web.app import FASTAPI_BODY_ERROR, unreadable_json

    def parse_error(cause: BaseException) -> HTTPException:
        try:
            raise HTTPException(400, FASTAPI_BODY_ERROR) from cause
        except HTTPException as exc:
            return exc

    assert unreadable_json(parse_error(RecursionError())) is not None
    assert unreadable_json(parse_error(ConnectionError())) is None
    assert unreadable_json(HTTPException(400, "invalid Content-Length header")) is None
