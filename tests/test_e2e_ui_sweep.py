"""End-to-end: what a clinician runs into on the Assess, Learn and Model pages, driven in headless
Chromium against a real ``dermsight serve`` with real lesion images (``../shared/data``).

Each test pins a fix of the UI sweep: files the server refuses are refused before the upload; the
API's error details read as sentences, a 413 says the file's size and the limit; an invalid age is
said at the field; a slow answer can be cancelled; an answer that is not a result is never shown as
one; no probability reads as a certainty; the case survives a visit to the Model page and Back;
keyboard focus lands on the result; the Learn links and the Model page's gate tables are readable.

Set ``DERMSIGHT_E2E_STATIC_DIR=<folder>`` to drive another build of the UI (e.g. an older one:
these tests then show what it got wrong). Needs what ``test_e2e_browser.py`` needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import api_support as support
from browser_support import STATIC_INDEX

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.browser

PREDICT = re.compile(r"/api/v1/predict")
PREDICT_GLOB = "**/api/v1/predict*"


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> support.Server:
    other = os.environ.get("DERMSIGHT_E2E_STATIC_DIR")  # another build of the UI
    if other:
        workdir = tmp_path_factory.mktemp("sweep")
        return support.shared_server(
            f"sweep-static:{other}",
            lambda: support.start_server(
                workdir / "main", model=support.make_report_bundle(workdir / "bundle"),
                env={"DERMSIGHT_STATIC_DIR": other}))
    if not STATIC_INDEX.exists():
        pytest.skip("web UI not built (src/dermsight/web/static/index.html missing)")
    return support.main_server(tmp_path_factory.mktemp("api"))


def predict_requests(page: Any) -> list[str]:
    """The POST /predict requests the page sends from now on (their URLs)."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if PREDICT.search(r.url) else None)
    return sent


def assess(page: Any, image: Path, age: str | None = None) -> dict[str, Any]:
    page.get_by_test_id("file-input").set_input_files(str(image))
    if age is not None:
        page.get_by_test_id("age-input").fill(age)
    with page.expect_response(PREDICT) as resp:
        page.get_by_test_id("submit").click()
    assert resp.value.status == 200, resp.value.text()
    page.get_by_test_id("result").wait_for()
    return dict(resp.value.json())


def shown_probabilities(page: Any) -> dict[str, str]:
    """Class code -> the percentage the result shows for it."""
    rows = page.locator("[data-testid^='prob-bar-']")
    return {
        rows.nth(i).get_attribute("data-testid").removeprefix("prob-bar-"):
        rows.nth(i).locator(".prob-pct").inner_text().strip()
        for i in range(rows.count())
    }


def release(page: Any, held: list[Any]) -> None:
    """Stop holding POST /predict: unroute, and abort the requests still held (the page may have
    aborted them itself already)."""
    page.unroute(PREDICT_GLOB)
    for route in held:
        with contextlib.suppress(Exception):  # already handled: the page cancelled it
            route.abort()


def fulfil_with(status: int, body: str, ctype: str) -> Any:
    """A route handler that answers every request with this response."""
    return lambda route: route.fulfill(status=status, body=body, content_type=ctype)


def expected_http_errors(page: Any, *codes: int) -> None:
    """Drop the browser's own log lines for HTTP errors the test asked for."""
    page.problems[:] = [p for p in page.problems
                        if not any(f"status of {c}" in p for c in codes)]


def test_files_the_server_refuses_are_refused_before_the_upload(
    page: Any, sample_image: Path, tmp_path: Path, test_output: Path
) -> None:
    """An iPhone HEIC, a GIF of a real lesion, a text file, an empty file: said at once, in plain
    words with what to send instead, the button disabled and nothing uploaded. (Before: the picker
    said "the server can still read it" and the upload was refused afterwards.)"""
    from PIL import Image

    heic = tmp_path / "IMG_0001.HEIC"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(4000))
    gif = tmp_path / "lesion.gif"
    Image.open(sample_image).save(gif)
    notes = tmp_path / "notes.txt"
    notes.write_text("Patient notes: lesion on the back, 6 mm.\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    sent = predict_requests(page)
    for path, words in ((heic, "Most Compatible"), (gif, "GIF files are not accepted"),
                        (notes, "not a JPEG, PNG, WebP, BMP, TIFF or DICOM image"),
                        (empty, "empty (0 bytes)")):
        page.get_by_test_id("file-input").set_input_files(str(path))
        expect(page.get_by_test_id("file-refused")).to_be_visible()
        expect(page.get_by_test_id("error-message")).to_contain_text(words)
        expect(page.get_by_test_id("submit")).to_be_disabled()
        if path == heic:
            page.screenshot(path=str(test_output / "e2e-sweep-heic-refused.png"), full_page=True)
    assert sent == []
    # the real image afterwards: accepted, assessed
    result = assess(page, sample_image)
    assert page.get_by_test_id("error-message").count() == 0
    assert page.get_by_test_id("risk-banner").get_attribute("data-risk") == result["risk"]
    assert len(sent) == 1
    assert page.problems == []


def test_error_details_from_the_api_read_as_sentences(
    page: Any, sample_image: Path, tmp_path: Path
) -> None:
    """The API's 422 details start lower-case ("image has transparent areas ..."): the page shows
    them as sentences, capitalised and closed."""
    import numpy as np
    from PIL import Image

    rgba = np.asarray(Image.open(sample_image).convert("RGBA")).copy()
    rgba[..., 3] = 0
    rgba[64:192, 64:192, 3] = 255  # a cut-out: most of the picture transparent
    cut_out = tmp_path / "cut-out.png"
    Image.fromarray(rgba).save(cut_out)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(sample_image.read_bytes()[:3000])
    for path, start in ((cut_out, "Image has transparent areas"),
                        (truncated, "Truncated JPEG: the file is incomplete.")):
        page.get_by_test_id("file-input").set_input_files(str(path))
        with page.expect_response(PREDICT) as resp:
            page.get_by_test_id("submit").click()
        assert resp.value.status == 422
        detail = resp.value.json()["detail"]
        assert detail[0].islower()  # what the server says, to be read inside a sentence
        error = page.get_by_test_id("error-message")
        expect(error).to_contain_text(start)
        text = error.inner_text().strip()
        assert text.endswith("."), text
        assert "Could not assess the image." in text
        assert page.get_by_test_id("result").count() == 0
    expected_http_errors(page, 422)
    assert page.problems == []


def test_a_file_over_the_upload_limit_says_its_size_and_the_limit(
    page: Any, sample_image: Path, tmp_path: Path
) -> None:
    """A real JPEG padded past the server's 20 MB limit: refused as soon as it is chosen, with the
    file's own size, the limit and what to do; nothing is uploaded (before: 20 MB went up, then
    "request too large: the limit is 20 MB"). The 413 path, when /health cannot be read, is
    tested in test_e2e_ui_limits_a11y.py."""
    big = tmp_path / "scan-export.jpg"
    big.write_bytes(sample_image.read_bytes() + bytes(21 * 1024 * 1024))
    sent = predict_requests(page)
    page.get_by_test_id("file-input").set_input_files(str(big))
    error = page.get_by_test_id("error-message")
    size = f"{big.stat().st_size / 1024 / 1024:.1f} MB"
    expect(error).to_contain_text(f"The image file is too large ({size})")
    assert re.search(r"accepts files up to 20 MB", error.inner_text())
    expect(page.get_by_test_id("submit")).to_be_disabled()
    page.wait_for_timeout(300)
    assert sent == []
    assert page.problems == []


def test_an_invalid_age_is_said_at_the_field_and_the_result_is_marked_stale(
    page: Any, sample_image: Path
) -> None:
    """Age -1 (or 121, or 120.5): nothing is sent; the field says why, is marked invalid and keeps
    the focus; the result already on screen stays, marked as made with other details."""
    result = assess(page, sample_image, age="55")
    assert result["input"]["age"] == 55
    sent = predict_requests(page)
    age = page.get_by_test_id("age-input")
    for bad in ("-1", "121", "120.5"):
        age.fill(bad)
        age.press("Enter")  # Enter submits the form
        error = page.get_by_test_id("age-error")
        expect(error).to_have_text(
            "Age must be a number of years from 0 to 120 (e.g. 45, or 1.5 for 18 months).")
        assert age.get_attribute("aria-invalid") == "true"
        assert error.get_attribute("id") in (age.get_attribute("aria-describedby") or "")
        assert page.evaluate("document.activeElement.dataset.testid") == "age-input"
        assert page.get_by_test_id("error-message").count() == 0
        expect(page.get_by_test_id("result-stale")).to_be_visible()
        assert page.get_by_test_id("result").is_visible()
    assert sent == []
    age.fill("56")  # corrected: the field is valid again, and Enter assesses
    assert page.get_by_test_id("age-error").count() == 0
    assert age.get_attribute("aria-invalid") is None
    with page.expect_response(PREDICT) as resp:
        age.press("Enter")
    assert resp.value.json()["input"]["age"] == 56
    expect(page.get_by_test_id("result-stale")).to_have_count(0)
    assert page.problems == []


def test_a_slow_answer_can_be_cancelled(page: Any, sample_image: Path, data_dir: Path,
                                        sample_ids: list[str], test_output: Path) -> None:
    """The server does not answer: the page says how long it has waited and offers Cancel, which
    frees it at once (no spinner left turning); the next assessment works."""
    held: list[Any] = []
    page.route(PREDICT_GLOB, lambda route: held.append(route))
    page.get_by_test_id("file-input").set_input_files(str(sample_image))
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("cancel-assess")).to_be_visible()
    slow = page.get_by_test_id("busy-slow")
    slow.wait_for(timeout=30_000)
    assert re.search(r"Still waiting for the server \(\d+ s\)", slow.inner_text())
    page.screenshot(path=str(test_output / "e2e-sweep-slow.png"), full_page=True)
    page.get_by_test_id("cancel-assess").click()
    expect(page.get_by_test_id("spinner")).to_have_count(0)
    expect(page.get_by_test_id("assess-notice")).to_contain_text("cancelled")
    expect(page.get_by_test_id("submit")).to_be_enabled()
    page.wait_for_function("document.activeElement?.dataset.testid === 'submit'")
    release(page, held)
    other = data_dir / "images" / f"{sample_ids[1]}.jpg"
    result = assess(page, other)
    assert page.get_by_test_id("risk-banner").get_attribute("data-risk") == result["risk"]
    assert page.get_by_test_id("assess-notice").count() == 0
    assert page.problems == []


def test_an_answer_that_is_not_a_result_is_never_shown_as_one(
    page: Any, sample_image: Path
) -> None:
    """A proxy's HTML page, an empty object, a risk without probabilities (all with HTTP 200): a
    plain error, no risk banner (before: "Risk: undefined", or "Low risk" with no numbers, or
    "Unexpected token '<'")."""
    page.get_by_test_id("file-input").set_input_files(str(sample_image))
    for body, ctype, words in (
        ("<html><body>Please sign in to the hospital network</body></html>", "text/html",
         "cannot read"),
        ("{}", "application/json", "incomplete"),
        (json.dumps({"risk": "low"}), "application/json", "incomplete"),
    ):
        page.route(PREDICT_GLOB, fulfil_with(200, body, ctype))
        page.get_by_test_id("submit").click()
        error = page.get_by_test_id("error-message")
        expect(error).to_contain_text(words)
        assert "Unexpected token" not in error.inner_text()
        assert page.get_by_test_id("risk-banner").count() == 0
        assert page.get_by_test_id("result").count() == 0
        assert "undefined" not in page.locator(".result-panel").inner_text()
        page.unroute(PREDICT_GLOB)
    assert page.problems == []


def test_no_probability_reads_as_a_certainty(
    page: Any, ui_server: support.Server, sample_image: Path
) -> None:
    """The API rounds to 6 decimals, so a very confident answer can hold 1.0 and 0.0: shown as
    ">99.9%" and "<0.1%", never "100.0%" or "0.0%" (a softmax is never certain)."""
    def saturate(route: Any) -> None:
        # the real server's answer for the real image (Playwright's route.fetch drops the file)
        with ui_server.client() as client:
            res = client.post("/api/v1/predict", params={"heatmap": "true"}, files={
                "image": (sample_image.name, sample_image.read_bytes(), "image/jpeg")}).json()
        if "probabilities" in res:
            top = res["prediction"]
            res["probabilities"] = {c: (1.0 if c == top else 0.0) for c in res["probabilities"]}
            res["malignant_probability"] = 0.0
        route.fulfill(status=200, body=json.dumps(res), content_type="application/json")

    page.route(PREDICT_GLOB, saturate)
    page.get_by_test_id("audience-clinician").click()
    result = assess(page, sample_image)
    if result["risk"] == "cannot_assess":
        pytest.skip("the sample image was refused by the gate")
    shown = shown_probabilities(page)
    assert shown[result["prediction"]] == ">99.9%"
    assert {v for c, v in shown.items() if c != result["prediction"]} == {"<0.1%"}
    numbers = page.get_by_test_id("clinician-numbers").inner_text()
    assert "Malignant share among the specific diagnoses" in numbers
    assert "<0.1%" in numbers
    text = page.get_by_test_id("result").inner_text()
    assert "100.0%" not in text
    assert "0.0%" not in text
    assert page.problems == []


def test_the_case_survives_a_visit_to_the_model_page_and_back(
    page: Any, sample_image: Path, test_output: Path
) -> None:
    """Image, age and result are still there after the Model page and the browser's Back (before:
    all gone); an assessment left running is said to have stopped; "New case" forgets it all."""
    result = assess(page, sample_image, age="61")
    before = shown_probabilities(page)
    assert before
    page.get_by_test_id("nav-model").click()
    page.get_by_test_id("model-page").wait_for()
    page.go_back()
    page.get_by_test_id("result").wait_for(timeout=15_000)
    assert shown_probabilities(page) == before
    assert page.get_by_test_id("risk-banner").get_attribute("data-risk") == result["risk"]
    assert page.get_by_test_id("age-input").input_value() == "61"
    assert sample_image.name in page.get_by_test_id("dropzone").inner_text()
    if result["risk"] != "cannot_assess":  # the image is drawn again under its own heatmap
        page.wait_for_function(
            "() => { const i = document.querySelector('[data-testid=heatmap-stack] img');"
            " return i && i.complete && i.naturalWidth > 0; }")
    page.screenshot(path=str(test_output / "e2e-sweep-back.png"), full_page=True)

    held: list[Any] = []
    page.route(PREDICT_GLOB, lambda route: held.append(route))
    page.get_by_test_id("submit").click()
    page.get_by_test_id("nav-learn").click()
    page.get_by_test_id("learn-page").wait_for()
    page.get_by_test_id("nav-assess").click()
    expect(page.get_by_test_id("assess-notice")).to_contain_text("stopped when you left")
    expect(page.get_by_test_id("submit")).to_be_enabled()
    release(page, held)

    page.get_by_test_id("new-case").click()
    page.get_by_test_id("nav-model").click()
    page.get_by_test_id("model-page").wait_for()
    page.go_back()
    page.get_by_test_id("dropzone").wait_for()
    assert page.get_by_test_id("result").count() == 0
    assert page.get_by_test_id("age-input").input_value() == ""
    assert page.get_by_test_id("submit").is_disabled()
    assert page.problems == []


def test_keyboard_and_screen_reader_basics_on_the_assess_page(
    page: Any, sample_image: Path
) -> None:
    """From the body-site list, Tab reaches the Assess button (the body map beside it is a pointer
    shortcut, not 13 more tab stops); after Enter, focus is on the result, not lost to the page;
    the heatmap has a text alternative and the result is announced."""
    page.get_by_test_id("file-input").set_input_files(str(sample_image))
    expect(page.get_by_test_id("submit")).to_be_enabled()
    page.get_by_test_id("site-select").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "submit"
    with page.expect_response(PREDICT) as resp:
        page.keyboard.press("Enter")
    result = resp.value.json()
    page.get_by_test_id("result").wait_for()
    page.wait_for_function(
        "() => document.activeElement?.classList.contains('result-panel')")
    announcement = page.get_by_test_id("result-announcement").inner_text()
    assert announcement.startswith("Result: ")
    assert ".." not in announcement
    if result["risk"] != "cannot_assess":
        alt = page.get_by_test_id("heatmap-overlay").get_attribute("alt") or ""
        assert "Heatmap" in alt
    assert page.problems == []


def test_learn_links_and_model_tables_are_readable(page: Any) -> None:
    """Learn: each example's licence link has its own name (not eight links called "licence").
    Model: the gate's tables fit their width at 1280 px (before: the gate v1 column was out of
    sight) and have column and row headers."""
    page.get_by_test_id("nav-learn").click()
    page.get_by_test_id("learn-page").wait_for()
    page.wait_for_load_state("networkidle")
    names = page.evaluate(
        "() => [...document.querySelectorAll('main a[target=_blank]')]"
        ".map(a => a.getAttribute('aria-label') || a.innerText.trim())")
    licence = [n for n in names if n.lower().startswith("licence")]
    if not licence:
        pytest.skip("no example images with a licence link")
    assert len(set(licence)) == len(licence), licence
    assert all("opens in a new tab" in n for n in licence)

    page.get_by_test_id("nav-model").click()
    page.get_by_test_id("model-page").wait_for()
    page.wait_for_load_state("networkidle")
    tables = page.locator("[data-testid^='gate-v2-']").filter(has=page.locator("thead"))
    if tables.count() == 0:
        pytest.skip("this card has no gate v2 figures")
    for i in range(tables.count()):
        table = tables.nth(i)
        width, room = table.evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
        assert width <= room, (table.get_attribute("data-testid"), width, room)
        heads = table.locator("thead th")
        assert heads.count() == table.locator("thead th[scope=col]").count()
        assert table.locator("tbody th[scope=row]").count() == table.locator("tbody tr").count()
    assert page.problems == []
