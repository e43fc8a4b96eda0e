"""End-to-end, on a phone-sized screen: the Patient view of a result whose reliability is not known.

An ordinary photo (not a dermatoscope picture) can pass the gate with a warning
(``not_dermoscopic``, non-blocking) and a low tier. The Patient view must not read as "it's fine":
no green "Lower risk" banner, no "No urgent step", no natural-frequency figures (they were counted
on dermatoscope images). The server's answer is the one ``dermsight serve`` gives for such a photo
(the flag from ``dermsight.gate``), put in place of the model's so the test does not depend on which
photo a given model flags. The Assess page also says what happens to the photo.

Needs the Debian ``chromium`` package and ``playwright`` (see ``test_e2e_browser.py``). Set
``DERMSIGHT_E2E_STATIC_DIR=<folder>`` to drive another build of the UI (e.g. an older one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import api_support as support
from browser_support import ui_static_dir, watched_page
from dermsight.gate import CLINICAL_FLAG

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    other = ui_static_dir()
    srv = support.start_server(tmp_path_factory.mktemp("patient-view"),
                               env={"DERMSIGHT_STATIC_DIR": other} if other else None)
    yield srv
    srv.stop()


def answer(risk: str, flags: list[dict[str, Any]]) -> dict[str, Any]:
    """A /predict answer with this tier and these flags (the audit's case: low, not_dermoscopic)."""
    return {
        "probabilities": {"MEL": 0.01, "NV": 0.9, "BCC": 0.0, "AK": 0.01, "BKL": 0.05, "DF": 0.01,
                          "VASC": 0.01, "SCC": 0.0, "UNK": 0.01},
        "prediction": "NV", "prediction_name": "Melanocytic nevus",
        "malignant_probability": 0.012, "risk": risk, "flags": flags,
        "input": {"age": 30.0, "sex": "female", "site": "posterior torso"},
        "model": {"name": "dermsight", "version": "test"},
    }


@pytest.fixture
def phone(browser: Any, ui_server: support.Server) -> Iterator[Any]:
    with watched_page(browser, **PHONE) as pg:
        pg.goto(f"{ui_server.base}/")
        pg.get_by_test_id("nav-assess").wait_for()
        yield pg


def assess_as_patient(page: Any, photo: Path, body: dict[str, Any]) -> None:
    page.route("**/api/v1/predict*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(body)))
    page.get_by_test_id("audience-patient").click()
    page.get_by_test_id("file-input").set_input_files(str(photo))
    page.get_by_test_id("age-input").fill("30")
    page.get_by_test_id("sex-select").select_option("female")
    page.get_by_test_id("site-select").select_option("posterior torso")
    page.get_by_test_id("submit").click()
    page.get_by_test_id("result").wait_for()


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "phone_photo.jpg"
    Image.new("RGB", (400, 300), (190, 140, 120)).save(path, quality=92)
    return path


def test_an_ordinary_photo_with_a_low_tier_is_uncertain_not_reassuring(
    phone: Any, photo: Path, test_output: Path
) -> None:
    assess_as_patient(phone, photo, answer("low", [CLINICAL_FLAG.to_dict()]))
    banner = phone.get_by_test_id("risk-banner")
    assert banner.get_attribute("data-risk") == "low"
    text = phone.get_by_test_id("result").inner_text()
    assert "Result uncertain" in banner.inner_text()
    assert "Lower risk" not in text
    said = phone.get_by_test_id("result-announcement").text_content() or ""
    assert "Result: uncertain" in said  # one announcement path (assessAnnouncement)
    assert "Low" not in said
    assert "No urgent step" not in text
    assert "how reliable this result is, is not known" in banner.inner_text()
    advice = phone.get_by_test_id("patient-advice").inner_text()
    assert "not tested on photos like this one" in advice
    assert phone.get_by_test_id("natural-frequency").count() == 0
    assert "Of 100 lesions" not in text
    # not the low tier's green: the neutral colours of a result without a tier
    assert "risk-low" not in (banner.get_attribute("class") or "")
    phone.screenshot(path=str(test_output / "e2e-patient-uncertain-phone.png"), full_page=True)
    assert phone.problems == []


def test_a_dermatoscope_pictures_low_tier_is_unchanged(phone: Any, photo: Path) -> None:
    assess_as_patient(phone, photo, answer("low", []))
    banner = phone.get_by_test_id("risk-banner")
    assert "Lower risk" in banner.inner_text()
    assert "risk-low" in (banner.get_attribute("class") or "")
    box = phone.get_by_test_id("natural-frequency")
    if box.count():  # the served card has the validation counts
        assert "not your own chance" in box.inner_text()
        assert "validation images" not in box.inner_text()
    assert phone.problems == []


def test_the_assess_page_says_what_happens_to_the_photo(phone: Any) -> None:
    for audience in ("patient", "clinician"):
        phone.get_by_test_id(f"audience-{audience}").click()
        line = phone.get_by_test_id("upload-privacy")
        assert line.is_visible()
        assert "not saved or logged" in line.inner_text()
    assert phone.problems == []
