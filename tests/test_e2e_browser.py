"""End-to-end: the built web UI, served by a real ``dermsight serve``, driven in headless Chromium.

Needs the Debian ``chromium`` package (``/usr/bin/chromium``, or set ``DERMSIGHT_CHROMIUM``) and the
``playwright`` Python package (``playwright install`` is not needed: the system browser is used).
Skipped when either is missing or the UI is not built (``src/dermsight/web/static/index.html``).
Screenshots go to the ``test_output`` folder (``test-output/e2e-*.png``). Set
``DERMSIGHT_E2E_MODEL=<bundle>`` to drive the UI with another bundle (e.g. a trained one, whose
card has metrics for the Model page).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

import api_support as support
from browser_support import STATIC_INDEX

pytestmark = pytest.mark.browser

RISKS = {"high", "moderate", "low", "cannot_assess"}


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> support.Server:
    if not STATIC_INDEX.exists():
        pytest.skip("web UI not built (src/dermsight/web/static/index.html missing)")
    model = os.environ.get("DERMSIGHT_E2E_MODEL")  # e.g. a trained bundle with metrics
    if model:
        workdir = tmp_path_factory.mktemp("e2e")
        return support.shared_server(
            f"e2e:{model}", lambda: support.start_server(workdir, model=Path(model)))
    return support.main_server(tmp_path_factory.mktemp("api"))


def assess(page: Any, image: Path, age: str | None = None, sex: str | None = None,
           site: str | None = None) -> dict[str, Any]:
    page.get_by_test_id("file-input").set_input_files(str(image))
    if age is not None:
        page.get_by_test_id("age-input").fill(age)
    if sex is not None:
        page.get_by_test_id("sex-select").select_option(sex)
    if site is not None:
        page.get_by_test_id("site-select").select_option(site)
    with page.expect_response(re.compile(r"/api/v1/predict")) as resp:
        page.get_by_test_id("submit").click()
    response = resp.value
    assert response.status == 200, response.text()
    return dict(response.json())


def test_assess_a_real_lesion(page: Any, sample_image: Path, test_output: Path) -> None:
    page.get_by_test_id("audience-clinician").click()
    result = assess(page, sample_image, age="55", sex="female", site="posterior torso")
    assert result["input"] == {"age": 55.0, "sex": "female", "site": "posterior torso"}

    banner = page.get_by_test_id("risk-banner")
    banner.wait_for()
    assert banner.get_attribute("data-risk") == result["risk"]
    assert result["risk"] in RISKS
    for code in result["probabilities"]:
        assert page.get_by_test_id(f"prob-bar-{code}").is_visible(), code
    # the suggested class names the rule that chose it (the API says which)
    suggested = page.get_by_test_id("suggested-class")
    assert f"({result['prediction']})" in suggested.inner_text()
    assert result["decision_rule"] in page.get_by_test_id("decision-rule").inner_text()

    overlay = page.get_by_test_id("heatmap-overlay")
    overlay.wait_for()
    assert overlay.is_visible()
    # the similar confirmed cases: one figure per entry, each thumbnail loaded (blob: URL)
    if result.get("similar"):
        page.get_by_test_id("similar-cases").wait_for()
        figures = page.get_by_test_id("similar-case")
        assert figures.count() == len(result["similar"])
        assert result["similar"][0]["licence"] in figures.first.inner_text()
        page.wait_for_function(
            "n => [...document.querySelectorAll('[data-testid=similar-case] img')]"
            ".filter(i => i.complete && i.naturalWidth > 0).length === n",
            arg=len(result["similar"]))
    # at the default opacity (the README's screenshot): before the slider is moved
    page.screenshot(path=str(test_output / "e2e-assess-clinician.png"), full_page=True)
    slider = page.get_by_test_id("opacity-slider")
    before = overlay.evaluate("e => getComputedStyle(e).opacity")
    slider.fill("10" if float(slider.input_value()) > 20 else "90")
    after = overlay.evaluate("e => getComputedStyle(e).opacity")
    assert after != before

    page.get_by_test_id("audience-patient").click()
    assert page.get_by_test_id("audience-toggle").get_attribute("data-audience") == "patient"
    page.get_by_test_id("patient-advice").wait_for()
    assert page.get_by_test_id("risk-banner").is_visible()
    page.screenshot(path=str(test_output / "e2e-assess-patient.png"), full_page=True)
    assert page.problems == []


def test_the_heatmap_covers_the_whole_image(
    page: Any, sample_image: Path, tmp_path: Path, test_output: Path
) -> None:
    """A 3:2 image (a real lesion with its own skin added on the right): the viewer shows the
    whole image at its own aspect, the heatmap stretched over all of it, and outlines the centre
    square the answer came from."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(sample_image).convert("RGB"))
    strip = rgb[:, -32:]
    tiles = [strip[:, ::-1] if k % 2 == 0 else strip for k in range(4)]
    wide = np.concatenate([rgb, *tiles], axis=1)  # 256 x 384
    path = tmp_path / "wide-lesion.jpg"
    Image.fromarray(wide).save(path, quality=92)
    page.get_by_test_id("audience-clinician").click()
    result = assess(page, path)
    if result["risk"] == "cannot_assess":
        pytest.skip("the widened sample image was refused by the gate")
    overlay = page.get_by_test_id("heatmap-overlay")
    overlay.wait_for()
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=heatmap-overlay]');"
        " return i && i.complete && i.naturalWidth > 0; }")
    page.get_by_test_id("classified-square").wait_for()
    stack = page.get_by_test_id("heatmap-stack").bounding_box()
    heat = overlay.bounding_box()
    square = page.get_by_test_id("classified-square").bounding_box()
    assert stack["width"] / stack["height"] == pytest.approx(384 / 256, abs=0.02)
    for key in ("x", "y", "width", "height"):  # the heatmap covers the whole image
        assert heat[key] == pytest.approx(stack[key], abs=1.0)
    natural = overlay.evaluate("e => e.naturalWidth / e.naturalHeight")
    assert natural == pytest.approx(384 / 256, abs=0.1)  # the map's aspect, to one cell
    assert square["width"] == pytest.approx(stack["height"], abs=2.0)
    assert square["x"] - stack["x"] == pytest.approx(
        stack["x"] + stack["width"] - square["x"] - square["width"], abs=2.0)
    assert "centre square" in page.get_by_test_id("heatmap-caption").inner_text()
    page.screenshot(path=str(test_output / "e2e-assess-heatmap-whole-image.png"), full_page=True)
    assert page.problems == []


def test_text_file_shows_a_readable_error(page: Any, tmp_path: Path, test_output: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Patient notes: lesion on the back, 6 mm.\n")
    page.get_by_test_id("file-input").set_input_files(str(notes))
    submit = page.get_by_test_id("submit")
    if submit.is_enabled():  # the UI may refuse the file itself, or send it and show the 415
        submit.click()
    error = page.get_by_test_id("error-message")
    error.wait_for()
    text = error.inner_text().strip()
    assert text
    assert "Traceback" not in text
    assert "undefined" not in text
    assert "[object" not in text
    assert page.get_by_test_id("risk-banner").count() == 0
    page.screenshot(path=str(test_output / "e2e-text-file-error.png"), full_page=True)
    page.problems[:] = [p for p in page.problems if "415" not in p]  # the browser logs the 415
    assert page.problems == []


def _check_cross_source(page: Any, card: dict[str, Any]) -> None:
    """The Model page's cross-source tables appear exactly when the card has them, with
    every row and, beside the held-out rows, their notes."""
    if card.get("cross_source"):
        table = page.get_by_test_id("cross-source-test_split_by_source")
        for row in card["cross_source"]["rows"]:
            if row["protocol"] == "test_split_by_source":
                assert row["source"] in table.inner_text()
        # held-out rows carry what a reader must know beside them (one draw of several)
        held_out = [r for r in card["cross_source"]["rows"]
                    if r["protocol"] == "leave_one_source_out"]
        if held_out:
            shown = page.get_by_test_id("cross-source-leave_one_source_out").inner_text()
            for row in held_out:
                assert row["source"] in shown
                assert (row["note"] or "") in shown
    else:
        assert page.get_by_test_id("cross-source").count() == 0


def test_learn_and_model_pages(page: Any, ui_server: support.Server, test_output: Path) -> None:
    page.get_by_test_id("nav-learn").click()
    learn = page.get_by_test_id("learn-page")
    learn.wait_for()
    assert "Melanoma" in learn.inner_text()
    # the example images (GET /api/v1/examples/...) arrive as blob: URLs, which the CSP allows
    page.wait_for_function(
        "() => { const im = [...document.querySelectorAll('img[src^=\"blob:\"]')];"
        " return im.length >= 1 && im.every(i => i.complete && i.naturalWidth > 0); }")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(test_output / "e2e-learn.png"), full_page=True)

    page.get_by_test_id("nav-model").click()
    model = page.get_by_test_id("model-page")
    model.wait_for()
    page.wait_for_load_state("networkidle")
    card = httpx.get(f"{ui_server.base}/api/v1/model").json()
    assert card["name"] in model.inner_text() or card["version"] in model.inner_text()
    if card.get("metrics"):
        assert page.get_by_test_id("metrics-table").first.is_visible()
    # the skin-tone and cross-source tables appear exactly when the card has them
    by_ita = ((card.get("metrics") or {}).get("test") or {}).get("by_ita")
    if by_ita:
        statement = page.get_by_test_id("skin-tone-statement").inner_text()
        assert by_ita["statement"] in statement
    else:
        assert page.get_by_test_id("skin-tone").count() == 0
    _check_cross_source(page, card)
    if card.get("retrieval"):  # the similar cases' measured retrieval
        assert page.get_by_test_id("retrieval-table").is_visible()
    rule = page.get_by_test_id("decision-rule").inner_text()
    tau = (card.get("decision") or {}).get("tau")
    margins = (card.get("decision") or {}).get("margins") or {}
    assert ("τ" in rule) if tau else rule.startswith("Most probable class.")
    for cls, m in margins.items():
        assert f"{cls} is suggested only when it leads the next class by more than {m:g}" in rule
    if not tau and not margins:
        assert rule == "Most probable class."
    quality = (card.get("gate") or {}).get("quality") or {}
    if quality.get("flag_jpeg_quality"):
        compressed = page.get_by_test_id("gate-compressed").inner_text()
        assert f"quality {quality['flag_jpeg_quality']:g} or lower" in compressed
    if quality.get("min_coloured"):
        gate_text = page.get_by_test_id("gate").inner_text()
        assert (f"black and white (fewer than {quality['min_coloured'] * 100:g}% of pixels show "
                "colour)") in gate_text
    spec = card["input_spec"]
    shown = page.get_by_test_id("model-input").inner_text()
    assert f"{spec['size']} \u00d7 {spec['size']} px RGB" in shown
    assert ("colour constancy" in shown) == (spec.get("color_constancy") == "shades_of_gray")
    page.screenshot(path=str(test_output / "e2e-model.png"), full_page=True)

    page.get_by_test_id("nav-assess").click()
    page.get_by_test_id("dropzone").wait_for()
    assert page.problems == []


def test_cannot_assess_upload_shows_no_result_numbers(
    page: Any, tmp_path: Path, test_output: Path
) -> None:
    """An image the gate refuses: no tier, no probabilities, no top class, no heatmap, no
    natural frequency, in either view; the API keeps its numbers only under ``unreliable``."""
    from PIL import Image, ImageDraw

    doc = Image.new("RGB", (600, 800), (250, 250, 248))
    draw = ImageDraw.Draw(doc)
    for i in range(30):  # a text page: not a skin lesion at all
        draw.text((30, 30 + 24 * i), "Invoice 2026 - total due before Monday", fill=(0, 0, 0))
    path = tmp_path / "page.png"
    doc.save(path)
    page.get_by_test_id("audience-clinician").click()
    result = assess(page, path)
    assert result["risk"] == "cannot_assess"
    for key in ("probabilities", "prediction", "malignant_probability", "heatmap"):
        assert key not in result, key
    assert "note" in result["unreliable"]
    banner = page.get_by_test_id("risk-banner")
    banner.wait_for()
    assert banner.get_attribute("data-risk") == "cannot_assess"
    page.get_by_test_id("no-result").wait_for()
    for audience in ("clinician", "patient"):
        page.get_by_test_id(f"audience-{audience}").click()
        assert page.locator("[data-testid^='prob-bar-']").count() == 0
        assert page.get_by_test_id("heatmap-overlay").count() == 0
        assert page.get_by_test_id("natural-frequency").count() == 0
        assert page.get_by_test_id("similar-cases").count() == 0
        text = page.get_by_test_id("result").inner_text()
        assert "Top class" not in text
        assert "Malignant probability" not in text
        assert "Malignant share" not in text
        assert "Malignant figure" not in text
        assert not re.search(r"\b(High|Moderate|Low) risk\b", text)
    page.screenshot(path=str(test_output / "e2e-cannot-assess.png"), full_page=True)
    assert page.problems == []


def test_a_black_and_white_photo_is_refused_with_its_reason(
    page: Any, sample_image: Path, tmp_path: Path
) -> None:
    """A real lesion sent in black and white: refused (the network reads colour), and the page
    says why, so the user knows to send the colour original."""
    from PIL import Image

    path = tmp_path / "grey.jpg"
    Image.open(sample_image).convert("L").save(path, quality=90)
    result = assess(page, path)
    assert result["risk"] == "cannot_assess"
    assert "greyscale" in [f["code"] for f in result["flags"]]
    page.get_by_test_id("no-result").wait_for()
    assert "black and white" in page.get_by_test_id("result").inner_text()
    assert page.problems == []


def test_a_heavily_compressed_upload_shows_the_note_beside_the_result(
    page: Any, sample_image: Path, tmp_path: Path, test_output: Path
) -> None:
    from PIL import Image

    resaved = tmp_path / "forwarded.jpg"
    Image.open(sample_image).save(resaved, format="JPEG", quality=50)
    page.get_by_test_id("audience-clinician").click()
    result = assess(page, resaved, age="55", sex="female", site="posterior torso")
    if result["risk"] == "cannot_assess":
        pytest.skip("the re-saved sample image was refused by the gate")
    note = next(f for f in result["flags"] if f["code"] == "compressed")
    shown = page.get_by_test_id("risk-warnings").locator("li[data-code=compressed]")
    shown.wait_for()
    assert "JPEG quality about 50" in shown.inner_text()
    assert note["message"][1:] in shown.inner_text()  # the UI capitalises the first letter
    assert page.get_by_test_id("risk-banner").get_attribute("data-risk") == result["risk"]
    page.screenshot(path=str(test_output / "e2e-compressed-note.png"), full_page=True)
    assert page.problems == []


def test_patient_view_states_the_natural_frequency(
    page: Any, ui_server: support.Server, sample_image: Path, test_output: Path
) -> None:
    """The patient view says "of 100 lesions that get this result, about N turned out to be
    cancer", N from the card's validation counts for the result's tier, with its limits."""
    card = httpx.get(f"{ui_server.base}/api/v1/model").json()
    if "natural_frequencies" not in card:
        pytest.skip("this bundle's card has no natural_frequencies")
    page.get_by_test_id("audience-patient").click()
    result = assess(page, sample_image, age="55", sex="female", site="posterior torso")
    if result["risk"] == "cannot_assess":
        pytest.skip("the sample image was refused by the gate")
    tier = card["natural_frequencies"]["per_tier"][result["risk"]]
    box = page.get_by_test_id("natural-frequency")
    if not tier.get("n") or tier.get("per_100") is None:
        # no validation lesion got this tier: there is no frequency to state, so none is shown
        page.get_by_test_id("result").wait_for()
        assert box.count() == 0
        return
    box.wait_for()
    text = box.inner_text()
    how_many = (f"about {tier['per_100']}" if tier["per_100"] >= 1
                else "fewer than 1" if tier["malignant"] else "none")
    assert f"Of 100 lesions that get this result, {how_many} turned out to be cancer" in text
    assert f"{tier['n']:,}" in text or str(tier["n"]) in text
    assert "not your own chance" in text  # the patient view's own wording
    page.screenshot(path=str(test_output / "e2e-natural-frequency.png"), full_page=True)
    assert page.problems == []


def pdf_pages(pdf: bytes) -> int:
    """Pages of a PDF Chromium wrote: its page objects (``/Type /Page``, not ``/Pages``)."""
    return len(re.findall(rb"/Type\s*/Page\b", pdf))


def test_dicom_upload_shows_a_placeholder_then_the_heatmap_alone(
    page: Any, sample_image: Path, tmp_path: Path, test_output: Path
) -> None:
    """No browser can display DICOM: the picker says so instead of a black box, and the result
    shows the server's heatmap on its own (no overlay on an image the browser cannot draw)."""
    import numpy as np
    from PIL import Image

    from dermsight.io.dicom import write_dicom

    rgb = np.asarray(Image.open(sample_image).convert("RGB"))
    # recognised by its content (the "DICM" magic), not only by the ".dcm" name
    unnamed = write_dicom(tmp_path / "scan", rgb, age=60, sex="male", site="posterior torso")
    page.get_by_test_id("file-input").set_input_files(str(unnamed))
    page.get_by_test_id("dicom-placeholder").wait_for()
    dcm = write_dicom(tmp_path / "lesion.dcm", rgb, age=60, sex="male", site="posterior torso")
    page.get_by_test_id("audience-clinician").click()
    result = assess(page, dcm)
    placeholder = page.get_by_test_id("dicom-placeholder")
    assert "preview not available in the browser" in placeholder.inner_text()
    assert page.get_by_test_id("dropzone").locator("img").count() == 0  # no broken image
    assert result["input"]["age"] == 60
    assert result["input"]["site"] == "posterior torso"
    if result["risk"] == "cannot_assess":
        pytest.skip("the DICOM of the sample image was refused by the gate")
    assert result["heatmap"]
    alone = page.get_by_test_id("heatmap-alone")
    alone.wait_for()
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=heatmap-alone]');"
        " return i && i.complete && i.naturalWidth > 0; }")
    assert page.get_by_test_id("heatmap-overlay").count() == 0
    assert page.get_by_test_id("opacity-slider").count() == 0
    assert "DICOM" in page.get_by_test_id("heatmap-alone-caption").inner_text()
    page.get_by_test_id("risk-banner").wait_for()
    page.screenshot(path=str(test_output / "e2e-assess-dicom.png"), full_page=True)

    # a JPEG afterwards is previewed again
    page.get_by_test_id("file-input").set_input_files(str(sample_image))
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=dropzone] img');"
        " return i && i.complete && i.naturalWidth > 0; }")
    assert page.get_by_test_id("dicom-placeholder").count() == 0
    assert page.problems == []


def test_new_case_clears_everything_and_kept_metadata_is_said(
    page: Any, data_dir: Path, sample_ids: list[str], test_output: Path
) -> None:
    """Age/sex/site kept for the next image are pointed out; "New case" clears image, result and
    the three fields."""
    first, second = (data_dir / "images" / f"{i}.jpg" for i in sample_ids[:2])
    age, sex, site = (page.get_by_test_id(t) for t in ("age-input", "sex-select", "site-select"))
    carried = page.get_by_test_id("metadata-carried")

    age.fill("41")  # filled before the first image: nothing is "kept" yet
    page.get_by_test_id("file-input").set_input_files(str(first))
    assert carried.count() == 0
    assess(page, first, sex="male", site="head/neck")
    page.get_by_test_id("result").wait_for()

    page.get_by_test_id("file-input").set_input_files(str(second))
    carried.wait_for()
    assert "previous image" in carried.inner_text()
    assert "New case" in carried.inner_text()
    assert (age.input_value(), sex.input_value(), site.input_value()) == ("41", "male", "head/neck")
    assert page.get_by_test_id("result").count() == 0
    page.screenshot(path=str(test_output / "e2e-metadata-kept.png"), full_page=True)
    age.fill("42")  # the user has looked at the fields: the note goes
    assert carried.count() == 0

    page.get_by_test_id("new-case").click()
    assert (age.input_value(), sex.input_value(), site.input_value()) == ("", "", "")
    assert page.get_by_test_id("dropzone").locator("img").count() == 0
    assert page.get_by_test_id("submit").is_disabled()
    assert page.get_by_test_id("result").count() == 0
    assert carried.count() == 0
    assert page.get_by_test_id("new-case").count() == 0  # nothing left to clear

    # the same from the result panel, after an assessment
    assess(page, second, age="70", sex="female", site="upper extremity")
    page.get_by_test_id("new-case-result").click()
    assert (age.input_value(), sex.input_value(), site.input_value()) == ("", "", "")
    assert page.get_by_test_id("result").count() == 0
    assert page.get_by_test_id("submit").is_disabled()
    page.get_by_test_id("file-input").set_input_files(str(first))
    assert carried.count() == 0
    assert page.problems == []


def test_printed_report_fits_one_page(
    page: Any, sample_image: Path, test_output: Path
) -> None:
    """Chromium's print to PDF of a normal result: one page on A4 and on Letter, in both views,
    with the lines to fill in by hand and without the form."""
    page.get_by_test_id("nav-learn").click()
    page.get_by_test_id("learn-page").wait_for()
    assert pdf_pages(page.pdf(format="A4")) > 1  # the counter sees more than one page
    page.get_by_test_id("nav-assess").click()
    page.get_by_test_id("dropzone").wait_for()

    result = assess(page, sample_image, age="55", sex="female", site="posterior torso")
    if result["risk"] == "cannot_assess":
        pytest.skip("the sample image was refused by the gate")
    page.get_by_test_id("risk-banner").wait_for()
    for audience in ("clinician", "patient"):
        page.get_by_test_id(f"audience-{audience}").click()
        page.get_by_test_id("heatmap-overlay").wait_for(state="attached")
        for fmt in ("A4", "Letter"):
            pdf = page.pdf(format=fmt, print_background=True)
            (test_output / f"e2e-report-{audience}-{fmt}.pdf").write_bytes(pdf)
            assert pdf_pages(pdf) == 1, (audience, fmt)
    page.emulate_media(media="print")
    try:
        fields = page.get_by_test_id("report-fields")
        assert fields.is_visible()
        for label in ("Patient reference", "Lesion location", "Clinician", "Date"):
            assert label in fields.inner_text()
        assert not page.get_by_test_id("dropzone").is_visible()
        assert page.get_by_test_id("model-name").is_visible()
        assert page.get_by_test_id("disclaimer").is_visible()
        page.screenshot(path=str(test_output / "e2e-report-print.png"), full_page=True)
    finally:
        page.emulate_media(media="null")
    assert not page.get_by_test_id("report-fields").is_visible()  # on screen: not shown
    assert page.problems == []
