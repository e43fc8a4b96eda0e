"""End-to-end: the clinic patient page's body map with a keyboard alone, and a failed delete, in
the built web UI on a real ``dermsight serve --database``, in headless Chromium
(``browser_support.py``). Each test pins a finding of the WCAG 2.2 AA audit:

* Enter on "Front: Arm" always put the new lesion on the figure's left arm (the patient's right),
  "Palm or sole" always on a hand, "Mouth or genital area" always on the mouth, and the arrow keys
  did nothing: Enter again now takes the region's next part (the other arm, a foot, the genital
  area), the Side chosen picks the arm, the arrow keys move the mark within its part, and where it
  is is said in a live region;
* Side "Left" chosen after a mark on the right arm left the mark there, and a Body site chosen in
  the list left the mark on the old region: the mark moves to the left arm, is taken off (and
  that is said) when the site no longer fits it;
* "Front: Arm" and "Back: Arm" both said pressed: only the region that holds the mark does;
* the unsaved mark was a tab stop, a "toggle button, pressed" that did nothing; the lesions'
  pins said "pressed" though they open a page; a pin's focus ring did not show on a red dot;
* a failed delete was said at the top of the New lesion form, far from the confirm box with
  the focus: it is said in the box, which it describes, and the focus goes to it.

Set ``DERMSIGHT_E2E_STATIC_DIR=<folder>`` to drive another build of the UI (the committed one
before these fixes: these tests then fail).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

import api_support as support
from browser_support import (
    clinic_server_fixture,
    new_patient,
    sign_in_clinic,
    watched_page,
)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.browser

ADMIN = "e2e-keys"
#: how the page writes "the patient's" (a typographic apostrophe)
PATIENTS = "the patient\u2019s"


clinic_server = clinic_server_fixture("clinic-keys", [(ADMIN, "admin")])


@pytest.fixture
def page(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with watched_page(browser) as pg:
        sign_in_clinic(pg, clinic_server.base, ADMIN)
        yield pg


def mark_center(page: Any) -> tuple[float, float]:
    """The unsaved mark's middle, in the figure's units."""
    dot = page.get_by_test_id("pin-0").locator("circle")
    return float(dot.get_attribute("cx") or "nan"), float(dot.get_attribute("cy") or "nan")


def test_keyboard_places_the_mark_where_the_lesion_is(page: Any) -> None:
    new_patient(page, "KEYS-1")
    body = page.get_by_test_id("lesion-map")
    status = page.get_by_test_id("new-lesion-point")
    expect(status).to_have_attribute("role", "status")
    expect(page.get_by_test_id("bodymap-keys-hint")).to_contain_text("arrow keys")

    front_arm = body.get_by_test_id("bodymap-front-upper-extremity")
    front_arm.focus()
    page.keyboard.press("Enter")
    expect(status).to_contain_text(f"front view, Arm: {PATIENTS} right arm")
    x_right, _ = mark_center(page)
    assert x_right < 60  # the figure's left
    expect(front_arm).to_have_attribute("aria-pressed", "true")
    back_arm = body.get_by_test_id("bodymap-back-upper-extremity")
    expect(back_arm).to_have_attribute("aria-pressed", "false")
    expect(page.get_by_test_id("lesion-side")).to_have_value("right")

    page.keyboard.press("Enter")  # again: the other arm
    expect(status).to_contain_text(f"{PATIENTS} left arm")
    assert mark_center(page)[0] > 60
    expect(page.get_by_test_id("lesion-side")).to_have_value("left")

    _, y0 = mark_center(page)
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    assert mark_center(page)[1] == pytest.approx(y0 + 6)
    expect(front_arm).to_be_focused()  # the focus stays on the region

    # the Side list moves the mark to the arm of that side, and says so
    page.get_by_test_id("lesion-side").select_option("right")
    expect(status).to_contain_text(f"moved to {PATIENTS} right arm")
    assert mark_center(page)[0] < 60

    # a Body site the mark's region does not fit takes it off, and says so
    page.get_by_test_id("lesion-site").select_option("anterior torso")
    expect(page.get_by_test_id("pin-0")).to_have_count(0)
    expect(status).to_contain_text("taken off")
    expect(status).to_contain_text("Not placed on the map yet.")

    # Palm or sole: Enter three times reaches a foot (the sole); the genital area is reachable
    soles = body.get_by_test_id("bodymap-front-palms-soles")
    soles.focus()
    for _ in range(3):
        page.keyboard.press("Enter")
    expect(status).to_contain_text(f"{PATIENTS} right foot")
    body.get_by_test_id("bodymap-front-oral-genital").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    expect(status).to_contain_text("genital area")
    expect(page.get_by_test_id("lesion-site")).to_have_value("oral/genital")


def test_a_side_the_map_filled_in_is_cleared_where_the_mark_has_none(page: Any) -> None:
    """Enter on "Arm" filled in Side "Right"; a click on the chest's middle left it, and the
    lesion was saved as "Right, Torso – front". A side the user chose is kept."""
    new_patient(page, "KEYS-SIDE")
    body = page.get_by_test_id("lesion-map")
    status = page.get_by_test_id("new-lesion-point")
    side = page.get_by_test_id("lesion-side")
    body.get_by_test_id("bodymap-front-upper-extremity").focus()
    page.keyboard.press("Enter")
    expect(side).to_have_value("right")
    body.get_by_test_id("bodymap-front-anterior-torso").click()  # the chest's middle
    expect(page.get_by_test_id("lesion-site")).to_have_value("anterior torso")
    expect(side).to_have_value("")
    expect(status).to_contain_text("Side cleared: it was filled in from the map (Right)")
    # chosen by the user: kept
    side.select_option("left")
    body.get_by_test_id("bodymap-front-anterior-torso").click()
    expect(side).to_have_value("left")
    # arrowing through Body site after the mark was taken off: the note says the site now
    body.get_by_test_id("bodymap-front-upper-extremity").focus()
    page.keyboard.press("Enter")
    site = page.get_by_test_id("lesion-site")
    site.select_option("anterior torso")
    expect(status).to_contain_text("the body site is now Torso – front")
    site.select_option("posterior torso")
    expect(status).to_contain_text(
        "taken off: it was on Arm, and the body site is now Torso – back.")
    page.get_by_test_id("new-lesion-submit").click()
    page.get_by_test_id("lesion-page").wait_for()


def test_pins_are_buttons_and_the_new_mark_is_no_tab_stop(page: Any) -> None:
    new_patient(page, "KEYS-2")
    body = page.get_by_test_id("lesion-map")
    body.get_by_test_id("bodymap-back-posterior-torso").focus()
    page.keyboard.press("Enter")
    page.get_by_test_id("new-lesion-submit").click()
    page.get_by_test_id("lesion-page").wait_for()
    lesion_id = int(page.get_by_test_id("lesion-page").get_attribute("data-lesion-id"))
    page.get_by_test_id("lesion-patient-link").click()
    page.get_by_test_id("patient-page").wait_for()

    pin = page.get_by_test_id(f"pin-{lesion_id}")
    expect(pin).to_have_attribute("role", "button")
    assert pin.get_attribute("aria-pressed") is None

    # the unsaved mark: a picture with a name, not a button nor a tab stop
    body.get_by_test_id("bodymap-front-anterior-torso").focus()
    page.keyboard.press("Enter")
    mark = page.get_by_test_id("pin-0")
    expect(mark).to_have_attribute("role", "img")
    assert mark.get_attribute("tabindex") is None
    assert mark.get_attribute("aria-pressed") is None

    # the pin's focus ring shows (a white ring on a dark halo, outside the dot) with the keyboard
    ring = pin.locator(".bodymap-pin-focus-ring")
    assert ring.evaluate("e => getComputedStyle(e).visibility") == "hidden"
    body.get_by_test_id("bodymap-back-lateral-torso").focus()
    page.keyboard.press("Tab")
    expect(pin).to_be_focused()
    visibility = "e => getComputedStyle(e).visibility"
    assert ring.evaluate(visibility) == "visible"
    assert pin.locator(".bodymap-pin-focus-halo").evaluate(visibility) == "visible"
    page.once("dialog", lambda d: d.accept())  # leave the unsaved new lesion: it asks first
    page.keyboard.press("Enter")  # Enter on the pin opens its lesion
    page.get_by_test_id("lesion-page").wait_for()


def test_a_failed_delete_is_said_in_the_confirm_box(page: Any) -> None:
    new_patient(page, "KEYS-3")
    detail = "No patient with id 3: it may have been deleted"
    # another user deleted the patient meanwhile: the server answers 404
    page.route(re.compile(r".*/api/v1/patients/\d+$"), lambda route: route.fulfill(
        status=404, content_type="application/json", body=json.dumps({"detail": detail}))
        if route.request.method == "DELETE" else route.continue_())
    page.get_by_test_id("patient-delete").click()
    box = page.get_by_test_id("delete-confirm-box")
    page.get_by_test_id("delete-confirm-input").fill("KEYS-3")
    page.get_by_test_id("delete-confirm").click()
    error = box.get_by_test_id("delete-error")
    expect(error).to_contain_text(detail)
    expect(error).to_be_focused()
    expect(box).to_have_attribute("aria-describedby", error.get_attribute("id") or "-")
    expect(page.get_by_test_id("new-lesion-form").get_by_test_id("error-message")).to_have_count(0)
    expect(page.get_by_test_id("new-lesion-form")).not_to_contain_text(detail)
