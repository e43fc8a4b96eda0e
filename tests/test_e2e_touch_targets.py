"""End-to-end: touch targets on a phone (390 x 844) and a tablet (820 x 1180), in touch browser
contexts (``is_mobile``, ``has_touch``: CSS ``pointer: coarse``), in the built web UI on a real
``dermsight serve --database`` (``browser_support.py``). Each test pins a finding of the touch
audit:

* the diagnosis' "Correct" and "Remove diagnosis" were 24 px tall and about 5 px apart: now
  44 px tall or more and 8 px or more apart;
* the stacked (phone) patient and lesion lists' links ("TAB-1001", "Lesion 1"), the only way to
  open a row, were 33 px tall: now 44 px or more;
* on a tablet the body map stayed at 180 px a figure (palms and soles 18 x 24 px, a pin's tap
  area 30 px across, a tap 15 px from a pin placed a new lesion without asking): the figures now
  grow, so a pin's tap area is 44 px across and that tap asks; with a mouse a click beside a pin
  still places a new lesion (the dot is its target).

Set ``DERMSIGHT_E2E_STATIC_DIR=<folder>`` to drive another build of the UI (e.g. the committed
one before these fixes: these tests then fail).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import api_support as support
from browser_support import (
    clinic_server_fixture,
    new_lesion,
    new_patient,
    sign_in_clinic,
    watched_page,
)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.browser

USER = "e2e-touch"
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 820, "height": 1180}
#: the smallest touch target (CSS px), and the least room between two targets
TARGET = 44
SPACING = 8


clinic_server = clinic_server_fixture("clinic-touch", [(USER, "clinician")])


def touch_page(browser: Any, viewport: dict[str, int]) -> Any:
    """A touch page (a context manager) of ``viewport``'s size."""
    return watched_page(browser, viewport=viewport, is_mobile=True, has_touch=True)


@pytest.fixture
def phone(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with touch_page(browser, PHONE) as pg:
        sign_in_clinic(pg, clinic_server.base, USER)
        yield pg


@pytest.fixture
def tablet(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with touch_page(browser, TABLET) as pg:
        sign_in_clinic(pg, clinic_server.base, USER)
        yield pg


def box_of(locator: Any) -> dict[str, float]:
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    assert box is not None
    return dict(box)


def apart(a: dict[str, float], b: dict[str, float]) -> float:
    """The room between two boxes (0 when they touch or overlap)."""
    dx = max(b["x"] - (a["x"] + a["width"]), a["x"] - (b["x"] + b["width"]), 0.0)
    dy = max(b["y"] - (a["y"] + a["height"]), a["y"] - (b["y"] + b["height"]), 0.0)
    return max(dx, dy)


def diagnosis_buttons_are_targets(page: Any, ref: str) -> None:
    new_lesion(page, ref)
    section = page.get_by_test_id("diagnosis-section")
    section.get_by_test_id("diagnosis-code").select_option("NV")
    section.get_by_test_id("diagnosis-method").select_option("clinical")
    section.get_by_test_id("diagnosis-submit").click()
    section.get_by_test_id("diagnosis").wait_for()
    edit = box_of(section.get_by_test_id("diagnosis-edit"))
    remove = box_of(section.get_by_test_id("diagnosis-remove"))
    # old UI: 24 px tall, about 5 px apart
    assert edit["height"] >= TARGET, edit
    assert remove["height"] >= TARGET, remove
    assert apart(edit, remove) >= SPACING, (edit, remove)


def test_diagnosis_buttons_on_a_phone(phone: Any) -> None:
    diagnosis_buttons_are_targets(phone, "TT-DX-PHONE")


def test_diagnosis_buttons_on_a_tablet(tablet: Any) -> None:
    diagnosis_buttons_are_targets(tablet, "TT-DX-TAB")


def test_stacked_lists_links_on_a_phone(phone: Any, clinic_server: support.Server) -> None:
    page = phone
    new_lesion(page, "TT-LIST-1")
    page.get_by_test_id("lesion-patient-link").click()
    page.get_by_test_id("patient-page").wait_for()
    # the lesion list, one card a row: its "Lesion 1" link (old UI: 33 px tall)
    lesion_link = box_of(page.get_by_test_id("lesion-list").locator("tbody a").first)
    # the patient list: the reference (old UI: 33 px tall)
    page.goto(f"{clinic_server.base}/#/clinic/patients")
    page.get_by_test_id("patients-page").wait_for()
    rows = page.get_by_test_id("patient-list").locator("tbody a", has_text="TT-LIST-1")
    rows.first.wait_for()
    patient_link = box_of(rows.first)
    assert lesion_link["height"] >= TARGET, lesion_link
    assert patient_link["height"] >= TARGET, patient_link


def test_body_map_grows_on_a_tablet_and_a_tap_beside_a_pin_asks(tablet: Any) -> None:
    page = tablet
    new_patient(page, "TT-MAP-1")
    body = page.get_by_test_id("lesion-map")
    torso = body.get_by_test_id("bodymap-back-posterior-torso")
    tb = box_of(torso)
    page.touchscreen.tap(tb["x"] + tb["width"] / 2, tb["y"] + tb["height"] / 2)
    expect(page.get_by_test_id("new-lesion-point")).to_contain_text("back view")
    page.get_by_test_id("new-lesion-submit").click()
    page.get_by_test_id("lesion-page").wait_for()
    lesion_id = page.get_by_test_id("lesion-page").get_attribute("data-lesion-id")
    page.get_by_test_id("lesion-patient-link").click()
    page.get_by_test_id("patient-page").wait_for()
    dot = page.get_by_test_id(f"pin-{lesion_id}").locator("circle")
    dot.wait_for()

    # a tap 15 px below the pin's centre, off its dot: asks (old UI: placed a new lesion)
    d = box_of(dot)
    cx, cy = d["x"] + d["width"] / 2, d["y"] + d["height"] / 2
    assert d["height"] / 2 < 15
    page.touchscreen.tap(cx, cy + 15)
    choice = page.get_by_test_id("bodymap-choice")
    expect(choice).to_be_visible(timeout=5_000)
    expect(page.get_by_test_id("pin-0")).to_have_count(0)
    expect(choice.get_by_test_id("bodymap-choice-open")).to_contain_text("Lesion 1")
    choice.get_by_test_id("bodymap-choice-cancel").tap()
    expect(choice).to_have_count(0)

    # the figures grow (old UI: 180 px wide, which gave the pin a 30 px tap area): palms and
    # soles are no longer 18 x 24 px
    svg = box_of(body.locator("svg").first)
    assert svg["width"] >= 264, svg
    palm = box_of(body.get_by_test_id("bodymap-front-palms-soles").locator("ellipse").first)
    assert palm["width"] >= 28, palm
    assert palm["height"] >= 36, palm

    # well away from the pin (30 px): placed at once, nothing asked
    d = box_of(dot)
    cx, cy = d["x"] + d["width"] / 2, d["y"] + d["height"] / 2
    page.touchscreen.tap(cx, cy + 30)
    page.get_by_test_id("pin-0").wait_for()
    expect(choice).to_have_count(0)


def test_body_map_with_a_mouse_is_unchanged(browser: Any, clinic_server: support.Server) -> None:
    # a desktop window as wide as the tablet, with a mouse: the figures keep their size and a
    # click beside a pin places a new lesion (the dot is a mouse's target)
    with watched_page(browser, viewport=TABLET) as page:
        sign_in_clinic(page, clinic_server.base, USER)
        new_patient(page, "TT-MOUSE-1")
        body = page.get_by_test_id("lesion-map")
        tb = box_of(body.get_by_test_id("bodymap-back-posterior-torso"))
        page.mouse.click(tb["x"] + tb["width"] / 2, tb["y"] + tb["height"] / 2)
        page.get_by_test_id("new-lesion-submit").click()
        page.get_by_test_id("lesion-page").wait_for()
        lesion_id = page.get_by_test_id("lesion-page").get_attribute("data-lesion-id")
        page.get_by_test_id("lesion-patient-link").click()
        page.get_by_test_id("patient-page").wait_for()
        dot = page.get_by_test_id(f"pin-{lesion_id}").locator("circle")
        dot.wait_for()
        assert box_of(body.locator("svg").first)["width"] <= 180
        d = box_of(dot)
        page.mouse.click(d["x"] + d["width"] / 2, d["y"] + d["height"] / 2 + 12)
        page.get_by_test_id("pin-0").wait_for()
        expect(page.get_by_test_id("bodymap-choice")).to_have_count(0)
