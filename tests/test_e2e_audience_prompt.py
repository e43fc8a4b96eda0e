"""End-to-end: the Assess page asks a first-time visitor once who is using dermsight.

The audit: a member of the public on a phone, with no saved choice (``localStorage``
``dermsight.audience``), got the Clinician view ("Low risk", "Suggested class: Melanocytic nevus",
the decision rule); the Patient view hung on spotting the small "View: Clinician | Patient"
switch. Now the Assess page asks, inline above the upload (no modal, no focus taken on load);
until an answer, a result is shown in the Patient view. The answer is saved (the switch shows it)
and the question is gone for good; signing in to the clinic answers it "clinician".

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
from browser_support import (
    axe_violations,
    describe_violation,
    sign_in_clinic,
    start_clinic_ui_server,
    watched_page,
)

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
KEY = "dermsight.audience"


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    srv = start_clinic_ui_server(tmp_path_factory.mktemp("audience-prompt"),
                                 [("ap-clinician", "clinician")])
    yield srv
    srv.stop()


ANSWER = {
    "probabilities": {"MEL": 0.01, "NV": 0.9, "BCC": 0.0, "AK": 0.01, "BKL": 0.05, "DF": 0.01,
                      "VASC": 0.01, "SCC": 0.0, "UNK": 0.01},
    "prediction": "NV", "prediction_name": "Melanocytic nevus",
    "malignant_probability": 0.012, "risk": "low", "flags": [],
    "input": {"age": None, "sex": None, "site": None},
    "model": {"name": "dermsight", "version": "test"},
}


@pytest.fixture
def phone(browser: Any, ui_server: support.Server) -> Iterator[Any]:
    with watched_page(browser, **PHONE) as pg:
        pg.goto(f"{ui_server.base}/")
        pg.get_by_test_id("nav-assess").wait_for()
        yield pg


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "phone_photo.jpg"
    Image.new("RGB", (400, 300), (190, 140, 120)).save(path, quality=92)
    return path


def problems(page: Any) -> list[str]:
    """The page's console and page errors, less the clinic's 401 for "who is signed in?"."""
    return [p for p in page.problems if "Failed to load resource" not in p]


def stored(page: Any) -> str | None:
    return page.evaluate(f"localStorage.getItem('{KEY}')")  # type: ignore[no-any-return]


def test_a_first_visit_is_asked_inline_and_a_result_before_answering_is_in_plain_words(
    phone: Any, photo: Path
) -> None:
    prompt = phone.get_by_test_id("audience-prompt")
    prompt.wait_for()
    assert stored(phone) is None
    # a labelled group, above the upload; nothing modal, and focus not taken on load
    assert prompt.get_attribute("role") == "group"
    label_id = prompt.get_attribute("aria-labelledby")
    assert phone.locator(f"[id='{label_id}']").inner_text() == "Who is using dermsight?"
    assert phone.locator("[aria-modal='true']").count() == 0
    assert phone.evaluate("document.activeElement === document.body")
    assert prompt.bounding_box()["y"] < phone.get_by_test_id("dropzone").bounding_box()["y"]
    for who in ("clinician", "patient"):
        box = phone.get_by_test_id(f"audience-prompt-{who}").bounding_box()
        assert box["height"] >= 44, (who, box)
        assert box["width"] >= 44, (who, box)
    # until an answer the results are for an unknown reader: the Patient view
    assert phone.get_by_test_id("audience-toggle").get_attribute("data-audience") == "patient"
    phone.route("**/api/v1/predict*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(ANSWER)))
    phone.get_by_test_id("file-input").set_input_files(str(photo))
    phone.get_by_test_id("submit").click()
    phone.get_by_test_id("result").wait_for()
    text = phone.get_by_test_id("result").inner_text()
    assert phone.get_by_test_id("patient-advice").is_visible()
    assert phone.get_by_test_id("suggested-class").count() == 0
    assert "Suggested class" not in text
    assert "logit" not in text
    assert "Low risk" not in text
    assert problems(phone) == []


def test_the_answer_is_saved_sets_the_switch_and_the_question_is_gone(
    browser: Any, ui_server: support.Server
) -> None:
    for who in ("clinician", "patient"):
        with watched_page(browser, **PHONE) as page:
            page.goto(f"{ui_server.base}/")
            page.get_by_test_id(f"audience-prompt-{who}").tap()
            page.get_by_test_id("audience-prompt").wait_for(state="detached")
            assert stored(page) == who
            assert page.get_by_test_id("audience-toggle").get_attribute("data-audience") == who
            # the pressed button went with the prompt: focus is on the next step, not lost
            page.wait_for_function("document.activeElement?.dataset?.testid === 'file-input'")
            page.reload()
            page.get_by_test_id("audience-toggle").wait_for()
            assert page.get_by_test_id("audience-toggle").get_attribute("data-audience") == who
            page.get_by_test_id("dropzone").wait_for()
            assert page.get_by_test_id("audience-prompt").count() == 0
            # the switch still works, and is remembered
            other = "patient" if who == "clinician" else "clinician"
            page.get_by_test_id(f"audience-{other}").click()
            assert stored(page) == other
            assert page.get_by_test_id("audience-prompt").count() == 0
            assert problems(page) == []


def test_the_switch_answers_the_question_too(phone: Any) -> None:
    phone.get_by_test_id("audience-prompt").wait_for()
    phone.get_by_test_id("audience-clinician").click()
    assert phone.get_by_test_id("audience-prompt").count() == 0
    assert stored(phone) == "clinician"
    assert problems(phone) == []


def test_the_question_passes_the_wcag_audit(browser: Any, ui_server: support.Server) -> None:
    with watched_page(browser, bypass_csp=True, **PHONE) as page:  # axe is an inline script
        page.goto(f"{ui_server.base}/")
        page.get_by_test_id("audience-prompt").wait_for()
        page.get_by_test_id("health").and_(page.locator("[data-state='up']")).wait_for()
        found = [describe_violation("assess + audience prompt", v) for v in axe_violations(page)]
        assert found == []


def test_a_clinic_sign_in_chooses_the_clinician_view(
    browser: Any, ui_server: support.Server
) -> None:
    with watched_page(browser) as page:
        page.goto(f"{ui_server.base}/")
        page.get_by_test_id("audience-prompt").wait_for()
        sign_in_clinic(page, ui_server.base, "ap-clinician")
        assert page.get_by_test_id("audience-prompt").count() == 0  # not on the clinic pages
        page.wait_for_function(f"localStorage.getItem('{KEY}') === 'clinician'")
        page.get_by_test_id("nav-assess").click()
        page.get_by_test_id("dropzone").wait_for()
        assert page.get_by_test_id("audience-prompt").count() == 0
        assert page.get_by_test_id("audience-toggle").get_attribute("data-audience") == "clinician"
        assert problems(page) == []
    # a view chosen before signing in is kept
    with watched_page(browser) as page:
        page.goto(f"{ui_server.base}/")
        page.get_by_test_id("audience-prompt-patient").click()
        sign_in_clinic(page, ui_server.base, "ap-clinician")
        page.get_by_test_id("nav-assess").click()
        page.get_by_test_id("audience-toggle").wait_for()
        assert page.get_by_test_id("audience-toggle").get_attribute("data-audience") == "patient"
        assert stored(page) == "patient"
        assert problems(page) == []
