"""Clinic mode in the real app (``create_app`` + its lifespan): off by default, on with a
database; the clinic routes need a logged-in user and the shared API token does not open them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fastapi.testclient import TestClient

from dermsight.clinic.config import ClinicConfig
from dermsight.web.app import create_app
from dermsight.web.settings import Settings


def test_stateless_by_default() -> None:
    with TestClient(create_app(replace(Settings(), workers=1))) as c:
        assert c.get("/api/v1/health").json()["clinic"] is False
        assert c.get("/api/v1/patients").status_code == 404
        assert c.post("/api/v1/auth/login", json={}).status_code == 404


def test_clinic_mode_needs_a_user_not_the_shared_token(tmp_path: Path, jpeg: bytes) -> None:
    config = ClinicConfig.resolve(database=str(tmp_path / "clinic.db"), env={})
    settings = replace(Settings(), workers=1, api_token="shared-secret", clinic=config)
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/v1/health").json()["clinic"] is True
        assert (tmp_path / "clinic.db").is_file()
        assert (tmp_path / "clinic-images").is_dir()
        shared = {"Authorization": "Bearer shared-secret"}
        r = c.get("/api/v1/patients", headers=shared)
        assert r.status_code == 401
        assert r.json()["detail"].startswith(
            "this is the server's shared API token (DERMSIGHT_API_TOKEN): it opens only the "
            "stateless routes")
        assert c.get("/api/v1/patients").json() == {
            "detail": "you are not signed in: sign in first"}
        # the stateless predict keeps working with the shared token
        r = c.post("/api/v1/predict", headers=shared,
                   files={"image": ("x.jpg", jpeg, "image/jpeg")})
        assert r.status_code == 200
        # a validation error is one sentence, as everywhere in the API
        r = c.post("/api/v1/auth/login", json={"username": "a"})
        assert r.status_code == 422
        assert isinstance(r.json()["detail"], str)
        assert "/api/v1/patients" in c.get("/api/v1/openapi.json").json()["paths"]
