"""Shared fixtures: the real images in ../shared/data/isic-subset (beside the checkout)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(
    os.environ.get("DERMSIGHT_SHARED_DATA", REPO.parent / "shared" / "data" / "isic-subset")
)
TEST_OUTPUT = Path(os.environ.get("DERMSIGHT_TEST_OUTPUT", REPO / "test-output"))

#: fixtures for every test module: the clinic's (pg_cluster, db_url, clinic_model, harness)
#: and the end-to-end tests' headless Chromium (browser)
pytest_plugins = ("browser_support", "clinic_support")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "metadata.csv").exists():
        pytest.fail(f"shared data not found: no metadata.csv in {DATA}. Set "
                    "DERMSIGHT_SHARED_DATA to the isic-subset folder itself (metadata.csv and "
                    "images/), with isic2020-sample beside it; see CONTRIBUTING.md, Tests")
    return DATA


@pytest.fixture(scope="session")
def metadata(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(data_dir / "metadata.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def sample_ids(metadata: pd.DataFrame) -> list[str]:
    """A small, fixed, class-diverse sample of real image ids (3 per class, then sorted)."""
    picks = (
        metadata.sort_values("image_id").groupby("diagnosis", sort=True).head(3)["image_id"]
    )
    return sorted(picks.tolist())


@pytest.fixture(scope="session")
def sample_image(data_dir: Path, sample_ids: list[str]) -> Path:
    return data_dir / "images" / f"{sample_ids[0]}.jpg"


@pytest.fixture(scope="session")
def test_output() -> Path:
    TEST_OUTPUT.mkdir(parents=True, exist_ok=True)
    return TEST_OUTPUT


# --- shared by the API test modules (a real uvicorn server on loopback) -------------------------


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import api_support as support

    return support.main_server(tmp_path_factory.mktemp("api"))


@pytest.fixture(autouse=True)
def server_log(request: pytest.FixtureRequest) -> Iterator[Any]:
    """For a test that uses the shared server (``api``): the server's log lines written while it
    ran (an ``api_support.LogWatch``) must hold no traceback, no ERROR line and no 500. Checked
    after each such test, so no test has to run last; ``None`` for the other tests."""
    if "api" not in request.fixturenames:
        yield None
        return
    import api_support as support

    watch = support.LogWatch(request.getfixturevalue("api"))
    yield watch
    support.assert_log_clean(watch.new())


@pytest.fixture
def client(api: Any) -> Iterator[Any]:
    with api.client() as c:
        yield c


@pytest.fixture(scope="session")
def jpeg(sample_image: Path) -> bytes:
    return sample_image.read_bytes()
