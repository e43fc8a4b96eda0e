"""End-to-end: keyboard and screen-reader use of a lesion's visit forms on a 320 px wide screen
(WCAG 2.2 AA audit), in the built web UI on a real ``dermsight serve --database`` (headless
Chromium, ``browser_support.py``).

* New visit: an age out of range is said at the age field, which is marked invalid and takes
  focus; a date the server refuses (422) marks the date field, which takes focus (not <body>); a
  saved visit is announced with its result;
* a visit's "Edit note": named by its visit; opened, focus is in the text; Escape asks before
  typed text is dropped, then closes it back onto the button; after "Save note" focus is on the
  button again and "Note saved" is announced;
* tabbing through the timeline shows the card of the focused button whole;
* Compare: the two opacity sliders have names of their own; the change is a polite live region;
* the confirmed diagnosis: choosing none ties the message to the diagnosis field, which takes focus.

Runs against the committed build (``src/dermsight/web/static``) or the one
``DERMSIGHT_E2E_STATIC_DIR`` names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import api_support as support
from browser_support import (
    clinic_server_fixture,
    new_lesion,
    sign_in_clinic,
    watched_page,
)

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")  # skipped, not an error, without Playwright

USER = "e2e-visit-a11y"
FIRST, SECOND = "ISIC_0000006", "ISIC_0000170"
NARROW = {"width": 320, "height": 720}
SLACK = 1.0
FOCUSED_TESTID = "document.activeElement && document.activeElement.dataset.testid || null"
FOCUSED_VISIT = "document.activeElement && document.activeElement.dataset.visitId || null"
STATUS = "document.querySelector('[data-testid=clinic-status]').innerText"


clinic_server = clinic_server_fixture("visit-a11y", [(USER, "clinician")])


@pytest.fixture
def narrow_page(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with watched_page(browser, viewport=NARROW) as pg:
        yield pg


def wait_until(page: Any, expression: str, expected: Any, timeout_s: float = 30) -> None:
    """Polls ``expression`` (``page.evaluate``: the page's CSP forbids ``wait_for_function``)
    until it equals ``expected``."""
    deadline = time.monotonic() + timeout_s
    while (got := page.evaluate(expression)) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"{expression} = {got!r}, not {expected!r}")
        page.wait_for_timeout(50)


def wait_for_status(page: Any, pattern: str, timeout_s: float = 30) -> str:
    """Waits until the clinic's live region says something matching ``pattern``."""
    deadline = time.monotonic() + timeout_s
    while not re.search(pattern, got := page.evaluate(STATUS)):
        if time.monotonic() > deadline:
            pytest.fail(f"the status says {got!r}, not /{pattern}/")
        page.wait_for_timeout(50)
    return str(got)


def described_by(locator: Any) -> str:
    """The text of the elements ``locator``'s aria-describedby names."""
    ids = (locator.get_attribute("aria-describedby") or "").split()
    assert ids, "no aria-describedby"
    page = locator.page
    text = "(id) => document.getElementById(id)?.innerText ?? ''"
    return " ".join(page.evaluate(text, i) for i in ids)


def submit_visit(page: Any, status: int) -> dict[str, Any]:
    form = page.get_by_test_id("new-visit-form")
    with page.expect_response(re.compile(r"/api/v1/lesions/\d+/visits$")) as resp:
        form.get_by_test_id("visit-submit").click()
    assert resp.value.status == status, resp.value.text()
    return dict(resp.value.json())


def new_visit_refused_then_saved(page: Any, images: Path) -> list[int]:
    form = page.get_by_test_id("new-visit-form")
    form.get_by_test_id("file-input").set_input_files(str(images / f"{FIRST}.jpg"))
    age = form.get_by_test_id("age-input")
    age.fill("250")
    sent: list[str] = []
    page.on("request",
            lambda r: sent.append(r.url) if r.method == "POST" and "/visits" in r.url else None)
    form.get_by_test_id("visit-submit").click()
    wait_until(page, FOCUSED_TESTID, "age-input")
    assert age.get_attribute("aria-invalid") == "true"
    assert "Age must be a number of years from 0 to 120" in described_by(age)
    assert sent == []

    age.fill("55")
    date = form.get_by_test_id("visit-date")
    date.fill("2099-01-01")
    submit_visit(page, 422)
    wait_until(page, FOCUSED_TESTID, "visit-date")
    assert date.get_attribute("aria-invalid") == "true"
    assert "Could not save the visit." in described_by(date)
    assert age.get_attribute("aria-invalid") is None

    ids = []
    for n, (image, day) in enumerate([(FIRST, "2020-03-04"), (SECOND, "2021-05-06")], start=1):
        form = page.get_by_test_id("new-visit-form")
        if n == 2:
            form.get_by_test_id("file-input").set_input_files(str(images / f"{image}.jpg"))
        form.get_by_test_id("visit-date").fill(day)
        visit = submit_visit(page, 201)
        ids.append(int(visit["id"]))
        wait_until(page, FOCUSED_VISIT, str(visit["id"]))
        wait_for_status(page, rf"^Visit {n} of {n}, .+, saved: ")
    return ids


def edit_note(page: Any, visit_id: int) -> None:
    card = page.get_by_test_id(f"visit-{visit_id}")
    edit = card.get_by_test_id("visit-note-edit")
    assert re.match(r"^Edit note of visit 2 of 2, ", edit.get_attribute("aria-label") or "")
    edit.focus()
    page.keyboard.press("Enter")
    wait_until(page, FOCUSED_TESTID, "visit-note-text")
    page.keyboard.type("looks darker")
    asked: list[str] = []

    def dismiss(d: Any) -> None:
        asked.append(d.message)
        d.dismiss()

    page.once("dialog", dismiss)
    page.keyboard.press("Escape")
    assert len(asked) == 1
    assert asked[0].startswith("Discard the changes to this visit")
    wait_until(page, FOCUSED_TESTID, "visit-note-text")
    assert card.get_by_test_id("visit-note-text").input_value() == "looks darker"  # kept

    page.once("dialog", lambda d: d.accept())
    page.keyboard.press("Escape")
    wait_until(page, FOCUSED_TESTID, "visit-note-edit")
    assert card.get_by_test_id("visit-note-text").count() == 0

    page.keyboard.press("Enter")
    wait_until(page, FOCUSED_TESTID, "visit-note-text")
    page.keyboard.type("looks darker")
    with page.expect_response(lambda r: r.request.method == "PATCH") as resp:
        card.get_by_test_id("visit-note-save").click()
    assert resp.value.status == 200, resp.value.text()
    wait_until(page, FOCUSED_TESTID, "visit-note-edit")
    wait_for_status(page, r"^Note saved, visit 2 of 2, ")
    sync_api.expect(card.get_by_test_id("visit-note")).to_have_text("looks darker")  # once reloaded


def box(locator: Any) -> dict[str, float]:
    b = locator.bounding_box()
    assert b is not None
    return dict(b)


def inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (inner["x"] >= outer["x"] - SLACK
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + SLACK)


def tab_through_timeline(page: Any, first: int, second: int) -> None:
    timeline = page.get_by_test_id("timeline")
    timeline.evaluate("(el) => { el.scrollLeft = 0 }")
    page.get_by_test_id(f"visit-{first}").get_by_test_id("visit-delete").focus()
    target = page.get_by_test_id(f"visit-{second}").get_by_test_id("visit-delete")
    for _ in range(20):
        page.keyboard.press("Tab")
        if target.evaluate("(el) => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached visit 2's Delete visit")
    page.wait_for_timeout(100)
    view = box(timeline)
    card = box(page.get_by_test_id(f"visit-{second}"))
    assert inside(card, view), (card, view)
    assert inside(box(target), view), (box(target), view)


def compare_view(page: Any) -> None:
    page.get_by_test_id("tab-compare").click()
    view = page.get_by_test_id("compare-view")
    assert view.get_by_label("Heatmap opacity, left image", exact=True).count() == 1
    assert view.get_by_label("Heatmap opacity, right image", exact=True).count() == 1
    assert view.get_by_test_id("compare-delta").get_attribute("aria-live") == "polite"
    page.get_by_test_id("tab-timeline").click()


def empty_diagnosis(page: Any) -> None:
    section = page.get_by_test_id("diagnosis-section")
    section.get_by_test_id("diagnosis-submit").click()
    wait_until(page, FOCUSED_TESTID, "diagnosis-code")
    code = section.get_by_test_id("diagnosis-code")
    assert code.get_attribute("aria-invalid") == "true"
    assert "Choose the confirmed diagnosis." in described_by(code)


def test_visit_forms_keyboard_and_screen_reader(
        narrow_page: Any, clinic_server: support.Server, data_dir: Path) -> None:
    page = narrow_page
    sign_in_clinic(page, clinic_server.base, USER)
    new_lesion(page, "E2E-A11Y-0001")
    first, second = new_visit_refused_then_saved(page, data_dir / "images")
    edit_note(page, second)
    tab_through_timeline(page, first, second)
    compare_view(page)
    empty_diagnosis(page)
