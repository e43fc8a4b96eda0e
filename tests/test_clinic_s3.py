"""The clinic's image store on S3 (moto's server on loopback, through fsspec/s3fs): a visit's
image lands in the bucket, and deleting the patient removes it from the bucket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from clinic_support import API, ClinicHarness, image_bytes, image_ids, make_app, open_clinic
from s3_support import moto_s3

BUCKET = "clinic-bucket"


@pytest.fixture
def s3() -> Iterator[dict[str, Any]]:
    with moto_s3(BUCKET) as server:
        yield {"client": server.client, "options": server.options}


def _keys(client: Any) -> set[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="clinic/")
    return {o["Key"].removeprefix("clinic/") for o in listed.get("Contents", [])}


def test_visit_images_in_s3_and_deleted_with_the_patient(
        s3: dict[str, Any], tmp_path: Path, clinic_model: Any, data_dir: Path,
        metadata: pd.DataFrame) -> None:
    from fastapi.testclient import TestClient

    clinic = open_clinic(f"sqlite:///{tmp_path / 'c.db'}", f"s3://{BUCKET}/clinic",
                         storage_options=s3["options"])
    with TestClient(make_app(clinic, clinic_model)) as client:
        h = ClinicHarness(clinic, client)
        h.add_user("root", role="admin")
        h.login("root")
        pid = h.patient("S3-1")
        lid = h.lesion(pid)
        r = h.visit(lid, image_bytes(data_dir, image_ids(metadata, "NV", 1)[0]))
        assert r.status_code == 201, r.text
        visit = r.json()
        stored = _keys(s3["client"])
        assert len(stored) == (2 if visit["heatmap_url"] else 1)
        assert all(k.endswith(".png") and len(k) == 64 + 4 for k in stored)
        img = h.get(visit["image_url"].removeprefix(API))
        assert img.status_code == 200
        assert img.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert client.delete(f"{API}/patients/{pid}").status_code == 204
        assert _keys(s3["client"]) == set()
    clinic.close()
