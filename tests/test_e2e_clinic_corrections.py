"""End-to-end: correcting what was filed wrongly on a lesion's page, in the built web UI on a real
``dermsight serve --database`` (headless Chromium, ``browser_support.py``).

* a new visit starts without the previous visit's age; a carried-over sex says from which visit;
  the site is left to the lesion;
* a visit's date is changed, and a visit deleted after a confirmation that names its date (Escape
  cancels; focus moves as the page does elsewhere);
* a note over the server's limit cannot be typed, and the server's 413 about it is not told as a
  file-size problem;
* unsaved work in the new-visit form is not lost to a breadcrumb click, Back, or a reload without
  a question;
* the diagnosis: a clinical one over a histopathology one asks first; a change made meanwhile
  (here through the API) is not overwritten unseen (409: the entry is kept, saving again
  replaces what is recorded now); the diagnosis is removed after a confirmation.

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
    axe_violations,
    clinic_server_fixture,
    describe_violation,
    new_lesion,
    sign_in_clinic,
    watched_page,
)

pytestmark = pytest.mark.browser

USER = "e2e-fixer"
#: two real images (posterior torso) for two visits of one lesion
FIRST, SECOND = "ISIC_0000006", "ISIC_0000170"
LEAVE = "The new visit is not saved"


clinic_server = clinic_server_fixture("clinic-corrections", [(USER, "clinician")])


@pytest.fixture
def clinic_page(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with watched_page(browser, bypass_csp=True) as pg:  # axe is injected into the page
        yield pg


def api(page: Any, base: str, path: str) -> Any:
    r = page.request.get(f"{base}/api/v1{path}")
    assert r.status == 200, r.text()
    return r.json()


FOCUSED_TESTID = "document.activeElement && document.activeElement.dataset.testid || null"
FOCUSED_VISIT = "document.activeElement && document.activeElement.dataset.visitId || null"


def wait_until(page: Any, expression: str, expected: Any, timeout_s: float = 30) -> None:
    """Polls ``expression`` (``page.evaluate``; ``wait_for_function`` evaluates a string, which
    the page's CSP forbids) until it equals ``expected``."""
    deadline = time.monotonic() + timeout_s
    while (got := page.evaluate(expression)) != expected:
        assert time.monotonic() < deadline, f"{expression} = {got!r}, not {expected!r}"
        page.wait_for_timeout(50)


def no_axe_violations(page: Any, where: str) -> None:
    """WCAG 2.0 / 2.1 A and AA (axe-core) on the page as it is now, e.g. with a dialog open."""
    found = axe_violations(page)
    assert not found, "\n".join(describe_violation(where, v) for v in found)


def focused_testid(page: Any) -> str | None:
    return page.evaluate(FOCUSED_TESTID)


def add_visit(page: Any, image: Path, *, age: str, taken_at: str, note: str) -> dict[str, Any]:
    form = page.get_by_test_id("new-visit-form")
    form.get_by_test_id("file-input").set_input_files(str(image))
    form.get_by_test_id("age-input").fill(age)
    form.get_by_test_id("sex-select").select_option("female")
    form.get_by_test_id("visit-date").fill(taken_at)
    form.get_by_test_id("visit-note-input").fill(note)
    with page.expect_response(re.compile(r"/api/v1/lesions/\d+/visits$")) as resp:
        form.get_by_test_id("visit-submit").click()
    assert resp.value.status == 201, resp.value.text()
    visit = dict(resp.value.json())
    page.get_by_test_id(f"visit-{visit['id']}").wait_for()
    return visit


def new_visit_defaults(page: Any) -> None:
    """After a visit of 2020-03-04 (55, female): no age, the sex said to come from that visit,
    the site left to the lesion."""
    form = page.get_by_test_id("new-visit-form")
    form.get_by_test_id("visit-sex-carried").wait_for()
    assert form.get_by_test_id("age-input").input_value() == ""
    assert form.get_by_test_id("sex-select").input_value() == "female"
    assert "from the visit of 2020-03-04" in form.get_by_test_id("visit-sex-carried").inner_text()
    assert form.get_by_test_id("site-select").input_value() == ""
    assert "lesion\u2019s site" in form.get_by_test_id("visit-site-hint").inner_text()


def change_date(page: Any, base: str, lesion_id: int, visit: dict[str, Any]) -> None:
    card = page.get_by_test_id(f"visit-{visit['id']}")
    card.get_by_test_id("visit-change-date").click()
    wait_until(page, FOCUSED_TESTID, "visit-date-edit")
    no_axe_violations(page, "lesion page, changing a visit's date")
    card.get_by_test_id("visit-date-edit").fill("2019-01-02")
    with page.expect_response(lambda r: r.request.method == "PATCH") as resp:
        card.get_by_test_id("visit-date-save").click()
    assert resp.value.status == 200, resp.value.text()
    page.locator("time[datetime^='2019-01-02']").wait_for()
    stored = {v["id"]: v for v in api(page, base, f"/lesions/{lesion_id}")["visits"]}
    assert stored[visit["id"]]["taken_at"].startswith("2019-01-02")
    wait_until(page, FOCUSED_VISIT, str(visit["id"]))


def delete_visit(page: Any, base: str, lesion_id: int, keep: dict[str, Any],
                 gone: dict[str, Any]) -> None:
    card = page.get_by_test_id(f"visit-{gone['id']}")
    card.get_by_test_id("visit-delete").click()
    box = card.get_by_test_id("visit-delete-confirm")
    assert box.get_attribute("role") == "alertdialog"
    assert "Delete the visit 2 of 2, 2021-05-06?" in box.inner_text()  # numbered: same-day visits
    assert "cannot be undone" in box.inner_text()
    wait_until(page, FOCUSED_TESTID, "visit-delete-confirm-no")  # the harmless choice first
    no_axe_violations(page, "lesion page, deleting a visit")
    page.keyboard.press("Escape")
    box.wait_for(state="detached")
    wait_until(page, FOCUSED_TESTID, "visit-delete")
    assert len(api(page, base, f"/lesions/{lesion_id}")["visits"]) == 2  # nothing deleted

    card.get_by_test_id("visit-delete").click()
    with page.expect_response(lambda r: r.request.method == "DELETE") as resp:
        box.get_by_test_id("visit-delete-confirm-yes").click()
    assert resp.value.status == 204
    card.wait_for(state="detached")
    assert [v["id"] for v in api(page, base, f"/lesions/{lesion_id}")["visits"]] == [keep["id"]]
    wait_until(page, FOCUSED_VISIT, str(keep["id"]))


def note_too_long(page: Any, image: Path) -> str:
    """The note field stops at 2,000 characters (the server's limit); a longer one sent anyway
    is refused in the note's words, not as a file too large."""
    form = page.get_by_test_id("new-visit-form")
    note = form.get_by_test_id("visit-note-input")
    assert note.get_attribute("maxlength") == "2000"
    note.fill("n" * 2500)
    assert len(note.input_value()) == 2000
    form.get_by_test_id("file-input").set_input_files(str(image))
    note.evaluate("el => el.removeAttribute('maxlength')")
    note.fill("n" * 2500)
    with page.expect_response(re.compile(r"/api/v1/lesions/\d+/visits$")) as resp:
        form.get_by_test_id("visit-submit").click()
    assert resp.value.status == 413
    error = form.get_by_test_id("error-message")
    error.wait_for()
    text = error.inner_text()
    assert "note is too long" in text
    assert "This file is" not in text
    assert "image file is too large" not in text
    # what was typed and chosen is kept
    note.fill("grew 2 mm since the last photo")
    return "grew 2 mm since the last photo"


def leave_guard(page: Any, note_text: str) -> None:
    """Unsaved work (an image chosen, a note typed): a breadcrumb click and Back ask first;
    staying keeps the page, its address and the work; a reload is asked about too."""
    lesion_hash = page.evaluate("location.hash")
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    try:
        page.get_by_test_id("lesion-patient-link").click()
        assert len(asked) == 1
        assert LEAVE in asked[0]
        assert page.evaluate("location.hash") == lesion_hash
        page.go_back()  # to the patient page the lesion was opened from
        wait_until(page, "location.hash", lesion_hash)
        assert len(asked) == 2
        assert LEAVE in asked[1]
    finally:
        page.remove_listener("dialog", dismiss)
    assert page.get_by_test_id("lesion-page").is_visible()
    assert page.get_by_test_id("visit-note-input").input_value() == note_text
    # a reload or closing the tab: the page asks the browser to confirm
    assert page.evaluate(
        "() => { const e = new Event('beforeunload', {cancelable: true});"
        " window.dispatchEvent(e); return e.defaultPrevented }") is True


def diagnosis_flows(page: Any, base: str, lesion_id: int) -> None:
    section = page.get_by_test_id("diagnosis-section")
    section.get_by_test_id("diagnosis-code").select_option("MEL")
    section.get_by_test_id("diagnosis-method").select_option("histopathology")
    section.get_by_test_id("diagnosis-submit").click()
    section.get_by_test_id("diagnosis").wait_for()

    # a clinical diagnosis over the histopathology one: asked first, nothing sent until then
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    section.get_by_test_id("diagnosis-edit").click()
    section.get_by_test_id("diagnosis-code").select_option("NV")
    section.get_by_test_id("diagnosis-method").select_option("clinical")
    section.get_by_test_id("diagnosis-submit").click()
    ask = section.get_by_test_id("diagnosis-downgrade-confirm")
    assert "histopathology" in ask.inner_text()
    wait_until(page, FOCUSED_TESTID, "diagnosis-downgrade-confirm-no")
    no_axe_violations(page, "lesion page, clinical over histopathology")
    ask.get_by_test_id("diagnosis-downgrade-confirm-no").click()
    ask.wait_for(state="detached")
    assert puts == []
    wait_until(page, FOCUSED_TESTID, "diagnosis-method")

    # someone else records BCC meanwhile (the API, as the page showed MEL / histopathology)
    csrf = api(page, base, "/auth/me")["csrf_token"]
    other = page.request.put(
        f"{base}/api/v1/lesions/{lesion_id}/diagnosis",
        data={"code": "BCC", "method": "histopathology", "note": None,
              "replaces": {"code": "MEL", "method": "histopathology"}},
        headers={"X-CSRF-Token": csrf})
    assert other.status == 200, other.text()
    section.get_by_test_id("diagnosis-method").select_option("histopathology")
    with page.expect_response(lambda r: r.request.method == "PUT") as resp:
        section.get_by_test_id("diagnosis-submit").click()
    assert resp.value.status == 409
    assert resp.value.request.post_data_json["replaces"] == {
        "code": "MEL", "method": "histopathology", "note": None}  # the note it showed too
    error = section.get_by_test_id("error-message")
    error.wait_for()
    assert "BCC" in error.inner_text()
    assert "Your entry is kept" in error.inner_text()
    assert section.get_by_test_id("diagnosis-code").input_value() == "NV"  # kept
    assert "BCC" in section.get_by_test_id("diagnosis-current").inner_text()
    no_axe_violations(page, "lesion page, diagnosis changed meanwhile")
    assert api(page, base, f"/lesions/{lesion_id}")["diagnosis"]["code"] == "BCC"  # not overwritten
    # saving again replaces what is recorded now, knowingly
    with page.expect_response(lambda r: r.request.method == "PUT") as resp:
        section.get_by_test_id("diagnosis-submit").click()
    assert resp.value.status == 200, resp.value.text()
    assert resp.value.request.post_data_json["replaces"] == {
        "code": "BCC", "method": "histopathology", "note": None}
    page.locator('[data-testid="diagnosis"][data-code="NV"]').wait_for()

    # removed, after a confirmation
    section.get_by_test_id("diagnosis-remove").click()
    box = section.get_by_test_id("diagnosis-remove-confirm")
    assert box.get_attribute("role") == "alertdialog"
    with page.expect_response(lambda r: r.request.method == "DELETE") as resp:
        box.get_by_test_id("diagnosis-remove-confirm-yes").click()
    assert resp.value.status == 204
    section.get_by_test_id("diagnosis-none").wait_for()
    wait_until(page, FOCUSED_TESTID, "diagnosis-none")
    assert api(page, base, f"/lesions/{lesion_id}")["diagnosis"] is None


def test_a_wrongly_filed_visit_or_diagnosis_is_corrected(
        clinic_page: Any, clinic_server: support.Server, data_dir: Path) -> None:
    page = clinic_page
    base = clinic_server.base
    images = data_dir / "images"
    sign_in_clinic(page, base, USER)
    new_lesion(page, "E2E-FIX-0001")
    lesion_id = int(page.get_by_test_id("lesion-page").get_attribute("data-lesion-id"))

    v1 = add_visit(page, images / f"{FIRST}.jpg", age="55", taken_at="2020-03-04", note="first")
    new_visit_defaults(page)
    v2 = add_visit(page, images / f"{SECOND}.jpg", age="56", taken_at="2021-05-06",
                   note="filed on the wrong lesion")
    stored = {v["id"]: v for v in api(page, base, f"/lesions/{lesion_id}")["visits"]}
    assert stored[v2["id"]]["age"] == 56  # the age typed, not one carried over
    assert stored[v2["id"]]["site_inherited"] is True

    change_date(page, base, lesion_id, v1)
    delete_visit(page, base, lesion_id, keep=v1, gone=v2)
    typed = note_too_long(page, images / f"{SECOND}.jpg")
    leave_guard(page, typed)
    diagnosis_flows(page, base, lesion_id)
    # the reloads after those corrections kept the unsaved new visit
    assert page.get_by_test_id("visit-note-input").input_value() == typed
    # the 409 and 413 answers are logged by the browser as failed loads
    assert [p for p in page.problems if "Failed to load resource" not in p] == []
