"""End-to-end: a lesion's page on a phone (375 x 812, touch), in the built web UI on a real
``dermsight serve --database`` (headless Chromium, ``browser_support.py``).

* opened on a lesion of three visits, the sideways timeline shows the newest visit's card whole
  (not visit 1's, with the latest one off to the right);
* "New visit" near the top moves focus (and the view) to the new-visit form's heading;
* after "Assess and save visit" the card of the visit just saved is whole in the timeline's
  visible box and on screen, and has focus;
* a new date that moves a visit to the timeline's start keeps its card (with focus) in view;
* a card's "Edit note", "Change date" and "Delete visit", and the Timeline / Compare toggle, are
  44 px tall or more on a touch screen, "Delete visit" 8 px or more from "Change date".

Runs against the committed build (``src/dermsight/web/static``) or the one
``DERMSIGHT_E2E_STATIC_DIR`` names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
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

USER = "e2e-phone"
#: two real images (posterior torso), taken in turns for the lesion's visits
IMAGES = ("ISIC_0000006", "ISIC_0000170")
PHONE = {"width": 375, "height": 812}
#: sub-pixel layout: a box is "inside" another within this many px
SLACK = 1.0
FOCUSED_VISIT = "document.activeElement && document.activeElement.dataset.visitId || null"


clinic_server = clinic_server_fixture("clinic-phone", [(USER, "clinician")])


@contextmanager
def phone_page(browser: Any) -> Iterator[Any]:
    """A page in a new phone-sized touch context (``watched_page``: console errors and page
    errors collected in ``problems``)."""
    with watched_page(browser, viewport=PHONE, is_mobile=True, has_touch=True,
                      device_scale_factor=2) as pg:
        yield pg


def wait_until(page: Any, expression: str, expected: Any, timeout_s: float = 30) -> None:
    """Polls ``expression`` (``page.evaluate``: the page's CSP forbids ``wait_for_function``)
    until it equals ``expected``."""
    deadline = time.monotonic() + timeout_s
    while (got := page.evaluate(expression)) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"{expression} = {got!r}, not {expected!r}")
        page.wait_for_timeout(50)


def post_visit(page: Any, base: str, lesion_id: int, image: Path, taken_at: str) -> int:
    """A visit of ``lesion_id`` through the API (as the signed-in user); returns its id."""
    me = page.request.get(f"{base}/api/v1/auth/me")
    assert me.status == 200, me.text()
    r = page.request.post(
        f"{base}/api/v1/lesions/{lesion_id}/visits",
        multipart={"image": {"name": image.name, "mimeType": "image/jpeg",
                             "buffer": image.read_bytes()},
                   "age": "55", "sex": "female", "taken_at": taken_at},
        headers={"X-CSRF-Token": me.json()["csrf_token"]})
    assert r.status == 201, r.text()
    return int(r.json()["id"])


#: where a visit's card is, in the timeline's visible box and on screen
CARD_PLACE = """(id) => {
  const card = document.querySelector(`[data-testid="visit-${id}"]`)
  const list = document.querySelector('[data-testid="timeline"]')
  const c = card.getBoundingClientRect()
  const l = list.getBoundingClientRect()
  const left = l.left + list.clientLeft
  return {card: [c.left, c.right, c.top, c.bottom], view: [left, left + list.clientWidth],
          screen: [window.innerWidth, window.innerHeight], scrollLeft: list.scrollLeft}
}"""


def assert_card_whole(page: Any, visit_id: int, *, on_screen: bool) -> None:
    """Visit ``visit_id``'s card is wholly inside the timeline's visible box (not clipped at
    either side), and with ``on_screen`` its top is within the window too."""
    deadline = time.monotonic() + 10
    while True:  # the timeline scrolls once the visit is rendered
        got = page.evaluate(CARD_PLACE, visit_id)
        left, right, top, _bottom = got["card"]
        view_left, view_right = got["view"]
        inside = left >= view_left - SLACK and right <= view_right + SLACK
        shown = not on_screen or (0 <= top < got["screen"][1] and right <= got["screen"][0] + SLACK)
        if inside and shown:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"visit {visit_id}'s card is not whole in view: {got}")
        page.wait_for_timeout(50)


def jump_to_new_visit(page: Any) -> None:
    """"New visit" near the top: focus on the form's heading, which is on screen."""
    jump = page.get_by_test_id("jump-new-visit")
    top = jump.bounding_box()
    assert top is not None
    assert top["y"] < PHONE["height"], "the jump is not on the first screen"
    jump.tap()
    wait_until(page, "document.activeElement && document.activeElement.dataset.testid || null",
               "new-visit-heading")
    heading = page.get_by_test_id("new-visit-heading")
    assert heading.inner_text().strip() == "New visit"
    box = heading.bounding_box()
    assert box is not None
    assert 0 <= box["y"] < PHONE["height"], box


def save_visit(page: Any, image: Path, taken_at: str) -> int:
    form = page.get_by_test_id("new-visit-form")
    form.get_by_test_id("file-input").set_input_files(str(image))
    form.get_by_test_id("age-input").fill("56")
    form.get_by_test_id("sex-select").select_option("female")
    form.get_by_test_id("visit-date").fill(taken_at)
    with page.expect_response(re.compile(r"/api/v1/lesions/\d+/visits$")) as resp:
        form.get_by_test_id("visit-submit").tap()
    assert resp.value.status == 201, resp.value.text()
    visit_id = int(resp.value.json()["id"])
    page.get_by_test_id(f"visit-{visit_id}").wait_for()
    return visit_id


def assert_touch_targets(page: Any, visit_id: int) -> None:
    """On a touch screen: the card's actions and the Timeline / Compare toggle are 44 px tall or
    more; "Delete visit" is 8 px or more away from "Change date"."""
    card = page.get_by_test_id(f"visit-{visit_id}")
    boxes = {}
    for name, target in [("Edit note", card.get_by_role("button", name="Edit note")),
                         ("Change date", card.get_by_test_id("visit-change-date")),
                         ("Delete visit", card.get_by_test_id("visit-delete")),
                         ("Timeline", page.get_by_test_id("tab-timeline")),
                         ("Compare two", page.get_by_test_id("tab-compare"))]:
        box = target.bounding_box()
        assert box is not None, name
        assert box["height"] >= 44 - 0.5, f"{name!r} is {box['height']:.1f} px tall"
        boxes[name] = box
    a, b = boxes["Change date"], boxes["Delete visit"]
    gap_x = max(b["x"] - (a["x"] + a["width"]), a["x"] - (b["x"] + b["width"]))
    gap_y = max(b["y"] - (a["y"] + a["height"]), a["y"] - (b["y"] + b["height"]))
    assert max(gap_x, gap_y) >= 8, (a, b)


def test_a_phone_shows_the_newest_visit_and_reaches_the_new_visit_form(
        browser: Any, clinic_server: support.Server, data_dir: Path) -> None:
    base = clinic_server.base
    images = [data_dir / "images" / f"{name}.jpg" for name in IMAGES]
    with phone_page(browser) as page:
        sign_in_clinic(page, base, USER)
        new_lesion(page, "E2E-PHONE-0001")
        lesion_id = int(page.get_by_test_id("lesion-page").get_attribute("data-lesion-id"))
        ids = [post_visit(page, base, lesion_id, images[i % 2], f"202{i}-03-04") for i in range(3)]

        # opened on three visits: the newest card whole in the timeline (not visit 1's)
        page.reload()
        page.get_by_test_id(f"visit-{ids[-1]}").wait_for()
        assert_card_whole(page, ids[-1], on_screen=False)

        jump_to_new_visit(page)

        # a new visit saved: its card whole in the timeline and on screen, with focus
        saved = save_visit(page, images[1], "2024-05-06")
        assert_card_whole(page, saved, on_screen=True)
        wait_until(page, FOCUSED_VISIT, str(saved))

        assert_touch_targets(page, saved)

        # a new date moves the visit to the timeline's start: its card, with focus, still whole
        card = page.get_by_test_id(f"visit-{saved}")
        card.get_by_test_id("visit-change-date").tap()
        card.get_by_test_id("visit-date-edit").fill("2019-01-02")
        card.get_by_test_id("visit-date-save").tap()
        page.locator("time[datetime^='2019-01-02']").wait_for()
        wait_until(page, FOCUSED_VISIT, str(saved))
        assert_card_whole(page, saved, on_screen=True)
        # (the 401 of the session check before signing in is logged as a failed load)
        assert [p for p in page.problems if "Failed to load resource" not in p] == []
