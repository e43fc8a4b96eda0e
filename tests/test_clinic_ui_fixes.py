"""The reference thumbnails that clinic pages show (a visit's similar cases) open to a signed-in
clinic user without the server's shared ``DERMSIGHT_API_TOKEN``, in the served app
(``create_app`` on SQLite): a clinic user who dismissed the shared-token prompt saw them blank.

Nothing else about the shared token changes: without a user the thumbnails still need it, and a
clinic session opens no other stateless route.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clinic_support import API, ClinicHarness, served_clinic

SHARED = "shared-stateless-token-0123456789"


@pytest.fixture
def app_harness(tmp_path: Path) -> Iterator[ClinicHarness]:
    with served_clinic(tmp_path, api_token=SHARED) as h:
        yield h


def _thumbnail_path(h: ClinicHarness) -> str:
    reference = h.client.app.state.model.reference
    assert reference is not None, "the shipped bundle has a reference set"
    return f"{API}/reference/{reference.image_id[0]}.webp"


def _bare_client(h: ClinicHarness) -> TestClient:
    """Another browser on the same app: no cookie (the app is already started: no lifespan)."""
    return TestClient(h.client.app)


def test_a_signed_in_session_gets_reference_thumbnails_without_the_shared_token(
    app_harness: ClinicHarness,
) -> None:
    h = app_harness
    path = _thumbnail_path(h)
    r = h.client.get(path)  # the session cookie only, as the clinic page's fetch sends it
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp"
    assert r.content[:4] == b"RIFF"
    # an unknown image is still a 404 for the user, not a 401
    assert h.client.get(f"{API}/reference/ISIC_none.webp").status_code == 404


def test_a_per_user_api_token_gets_reference_thumbnails(app_harness: ClinicHarness) -> None:
    h = app_harness
    path = _thumbnail_path(h)
    r = h.post("/auth/tokens", json={"name": "scripts"})
    assert r.status_code == 201, r.text
    other = _bare_client(h)
    assert (
        other.get(path, headers={"Authorization": f"Bearer {r.json()['token']}"}).status_code == 200
    )
    assert other.get(path, headers={"Authorization": "Bearer dsk_made_up"}).status_code == 401


def test_without_a_user_the_shared_token_rule_is_unchanged(app_harness: ClinicHarness) -> None:
    h = app_harness
    path = _thumbnail_path(h)
    other = _bare_client(h)
    refused = other.get(path)
    assert refused.status_code == 401
    assert "API token" in refused.json()["detail"]
    assert other.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert other.get(path, headers={"Authorization": f"Bearer {SHARED}"}).status_code == 200
    # a session cookie that names no live session opens nothing
    other.cookies.set("dermsight_session", "made-up-session")
    assert other.get(path).status_code == 401


def test_a_signed_out_session_no_longer_gets_them(app_harness: ClinicHarness) -> None:
    h = app_harness
    path = _thumbnail_path(h)
    cookie = h.client.cookies.get("dermsight_session")
    assert cookie
    assert h.post("/auth/logout").status_code in (200, 204)
    other = _bare_client(h)
    other.cookies.set("dermsight_session", cookie)  # the old cookie, kept by someone
    assert other.get(path).status_code == 401


def test_a_session_opens_no_other_stateless_route(app_harness: ClinicHarness) -> None:
    # the model card and the classes are open to it too (tests/test_clinic_ui_access.py)
    h = app_harness
    assert h.client.get(f"{API}/examples").status_code == 401
    assert h.client.get(f"{API}/model/report").status_code == 401
    r = h.client.post(f"{API}/predict", files={"image": ("x.jpg", b"\xff\xd8\xff", "image/jpeg")})
    assert r.status_code == 401
    # the shared token still opens them
    assert (
        h.client.get(f"{API}/classes", headers={"Authorization": f"Bearer {SHARED}"}).status_code
        == 200
    )
