"""End-to-end: findings of a clinician's audit of the lesion page, in the built web UI on a real
``dermsight serve --database`` (headless Chromium, ``browser_support.py``).

* a stored visit shows its details as the Assess page shows a result: the suggested class (with
  the rule that chose it), the share beside the tier cut-offs ("refer ≥"), the class bars;
* printed (print media, the width of an A4 page inside its margins), every visit's card is on the
  paper (the timeline wraps instead of scrolling sideways), the empty new-visit form and the edit
  controls are not, and the patient reference and the lesion are;
* an unknown clinic address ("#/clinic/visits/1") says "Page not found", not the Assess page.

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
from browser_support import clinic_server_fixture, new_lesion, sign_in_clinic, watched_page

pytestmark = pytest.mark.browser

USER = "e2e-printer"
#: four real images (posterior torso): four visits, wider than a printed page side by side
IMAGES = ["ISIC_0000006", "ISIC_0000170", "ISIC_0000000", "ISIC_0000001"]
#: the width of an A4 page inside the print margins (210 mm - 2 x 12 mm) in CSS pixels
A4_INNER_PX = round((210 - 24) / 25.4 * 96)
VISITS = re.compile(r"/api/v1/lesions/\d+/visits$")

clinic_server = clinic_server_fixture("clinic-visit-details-print", [(USER, "clinician")])


@pytest.fixture
def clinic_page(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with watched_page(browser) as pg:
        yield pg


def add_visit(page: Any, image: Path, taken_at: str) -> dict[str, Any]:
    form = page.get_by_test_id("new-visit-form")
    form.get_by_test_id("file-input").set_input_files(str(image))
    form.get_by_test_id("visit-date").fill(taken_at)
    with page.expect_response(VISITS) as resp:
        form.get_by_test_id("visit-submit").click()
    assert resp.value.status == 201, resp.value.text()
    visit = dict(resp.value.json())
    page.get_by_test_id(f"visit-{visit['id']}").wait_for()
    return visit


def test_visit_details_printing_and_unknown_clinic_address(
        clinic_page: Any, clinic_server: support.Server, data_dir: Path) -> None:
    page = clinic_page
    base = clinic_server.base
    sign_in_clinic(page, base, USER)
    new_lesion(page, "E2E-PRINT-0001")
    visits = [add_visit(page, data_dir / "images" / f"{name}.jpg", f"2021-0{i + 1}-15")
              for i, name in enumerate(IMAGES)]
    assessed = [v for v in visits if v["result"]["risk"] != "cannot_assess"]
    assert assessed, [v["result"]["risk"] for v in visits]

    # a stored visit's details: as the Assess page words them
    visit = assessed[-1]
    card = page.get_by_test_id(f"visit-{visit['id']}")
    card.get_by_test_id("visit-details-toggle").click()
    details = card.get_by_test_id("visit-details")
    suggested = details.get_by_test_id("visit-suggested-class")
    suggested.wait_for()
    assert visit["result"]["prediction_name"] in suggested.inner_text()
    assert f"({visit['result']['prediction']})" in suggested.inner_text()
    assert "chosen as:" in suggested.inner_text()
    assert "refer ≥" in details.get_by_test_id("visit-thresholds").inner_text()
    assert details.locator(".prob-row").count() == len(visit["result"]["probabilities"])

    # printed on A4: every visit on the paper, no forms or edit controls, who and which lesion
    page.set_viewport_size({"width": A4_INNER_PX, "height": 1100})
    page.emulate_media(media="print")
    width = page.evaluate("document.documentElement.clientWidth")
    for v in visits:
        box = page.get_by_test_id(f"visit-{v['id']}").bounding_box()
        assert box is not None, v["id"]
        assert box["width"] > 0, v["id"]
        assert box["x"] >= 0, (v["id"], box, width)
        assert box["x"] + box["width"] <= width + 0.5, (v["id"], box, width)
    assert not page.get_by_test_id("new-visit-form").is_visible()
    assert not page.get_by_test_id("new-visit-heading").is_visible()
    assert not page.get_by_test_id("tab-compare").is_visible()
    assert not page.get_by_test_id("jump-new-visit").is_visible()
    for testid in ("visit-delete", "visit-change-date", "visit-note-edit"):
        assert page.get_by_test_id(testid).first.count() == 1
        assert not page.get_by_test_id(testid).first.is_visible(), testid
    assert page.get_by_test_id("lesion-patient-link").is_visible()
    assert "E2E-PRINT-0001" in page.get_by_test_id("lesion-patient-link").inner_text()
    assert page.locator("h1.page-title").first.is_visible()
    page.emulate_media(media="screen")
    page.set_viewport_size({"width": 1280, "height": 1000})

    # an unknown clinic address: said so, with the way to the patients
    page.goto(f"{base}/#/clinic/visits/1")
    page.get_by_test_id("not-found").wait_for()
    assert page.get_by_role("heading", level=1).inner_text() == "Page not found"
    # its heading takes focus, as a new page's does (read first by a screen reader)
    focused = "document.activeElement && document.activeElement.textContent"
    deadline = time.monotonic() + 10
    while page.evaluate(focused) != "Page not found":
        assert time.monotonic() < deadline, page.evaluate(focused)
        page.wait_for_timeout(50)
    page.get_by_test_id("not-found-patients").click()
    page.get_by_test_id("patients-page").wait_for()
    # the session check before signing in is answered 401, which the browser logs as a failed load
    assert [p for p in page.problems if "Failed to load resource" not in p] == []
