"""What a signed-in clinic user reads of the stateless API when the server sets a shared
``DERMSIGHT_API_TOKEN`` (the served app, ``create_app`` on SQLite).

- The model card (``/api/v1/model``) and the class list (``/api/v1/classes``), which every clinic
  page reads, open to a signed-in user (session or per-user token) without the shared token: the
  clinic pages said "This server needs an API token" to a signed-in clinician. Without a user they
  still need the shared token, and predict and the other stateless routes still need it.
- A per-user token refused for a reason of its own (expired, revoked) on such a route gets the
  clinic's specific 401 text, not the generic "missing or invalid API token".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from clinic_support import API, ClinicHarness, served_clinic
from dermsight.clinic.models import ApiToken, utcnow

SHARED = "shared-stateless-token-0123456789"
OPEN = (f"{API}/model", f"{API}/classes")


@pytest.fixture
def app_harness(tmp_path: Path) -> Iterator[ClinicHarness]:
    with served_clinic(tmp_path, api_token=SHARED) as h:
        yield h


def _bare_client(h: ClinicHarness) -> TestClient:
    """Another browser on the same app: no cookie (the app is already started: no lifespan)."""
    return TestClient(h.client.app)


def _thumbnail_path(h: ClinicHarness) -> str:
    reference = h.client.app.state.model.reference
    assert reference is not None, "the shipped bundle has a reference set"
    return f"{API}/reference/{reference.image_id[0]}.webp"


def test_a_session_reads_the_model_card_and_the_classes(app_harness: ClinicHarness) -> None:
    h = app_harness
    card = h.client.get(f"{API}/model")  # the session cookie only, as the clinic pages send it
    assert card.status_code == 200, card.text
    assert isinstance(card.json(), dict)
    assert card.json()
    classes = h.client.get(f"{API}/classes")
    assert classes.status_code == 200, classes.text
    assert classes.json()
    assert {"code", "name", "malignant"} <= set(classes.json()[0])


def test_a_per_user_token_reads_them(app_harness: ClinicHarness) -> None:
    h = app_harness
    made = h.post("/auth/tokens", json={"name": "scripts"})
    assert made.status_code == 201, made.text
    other = _bare_client(h)
    for path in OPEN:
        ok = other.get(path, headers={"Authorization": f"Bearer {made.json()['token']}"})
        assert ok.status_code == 200, (path, ok.text)


def test_without_credentials_they_still_need_the_shared_token(app_harness: ClinicHarness) -> None:
    h = app_harness
    other = _bare_client(h)
    for path in OPEN:
        refused = other.get(path)
        assert refused.status_code == 401, path
        assert refused.json()["detail"].startswith("missing or invalid API token")
        assert other.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert other.get(path, headers={"Authorization": f"Bearer {SHARED}"}).status_code == 200


def test_predict_and_the_other_stateless_routes_stay_behind_the_shared_token(
    app_harness: ClinicHarness,
) -> None:
    h = app_harness
    assert h.client.get(f"{API}/examples").status_code == 401
    assert h.client.get(f"{API}/model/plots").status_code == 401
    r = h.client.post(f"{API}/predict", files={"image": ("x.jpg", b"\xff\xd8\xff", "image/jpeg")})
    assert r.status_code == 401
    # reading only: a write to an open route is no read
    assert h.client.post(f"{API}/classes").status_code in (401, 405)


def test_an_expired_or_revoked_personal_token_is_told_why(app_harness: ClinicHarness) -> None:
    h = app_harness
    made = [h.post("/auth/tokens", json={"name": n}).json() for n in ("old", "gone", "live")]
    with h.clinic.db.session() as s:
        s.execute(update(ApiToken).where(ApiToken.id == made[0]["id"])
                  .values(expires_at=utcnow() - timedelta(minutes=1)))
    assert h.client.delete(f"{API}/auth/tokens/{made[1]['id']}").status_code in (200, 204)
    other = _bare_client(h)
    for path in (*OPEN, _thumbnail_path(h)):

        def detail(token: str, path: str = path) -> str:
            r = other.get(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, (path, r.text)
            assert r.headers.get("www-authenticate") == "Bearer"
            text: str = r.json()["detail"]
            return text

        assert detail(made[0]["token"]).startswith("this API token expired on "), path
        assert detail(made[1]["token"]) == "this API token has been revoked: create a new one"
        # an unknown token (perhaps a mistyped shared one) keeps the generic text
        assert detail(made[2]["token"] + "x").startswith("missing or invalid API token")
        ok = other.get(path, headers={"Authorization": f"Bearer {made[2]['token']}"})
        assert ok.status_code == 200, ok.text


def test_a_revoked_token_opens_nothing_else_and_says_nothing_there(
    app_harness: ClinicHarness,
) -> None:
    """Predict never opens to a per-user token: its refusal keeps the generic shared-token text."""
    h = app_harness
    made = h.post("/auth/tokens", json={"name": "gone"}).json()
    assert h.client.delete(f"{API}/auth/tokens/{made['id']}").status_code in (200, 204)
    r = _bare_client(h).get(f"{API}/examples", headers={"Authorization": f"Bearer {made['token']}"})
    assert r.status_code == 401
    assert r.json()["detail"].startswith("missing or invalid API token")
