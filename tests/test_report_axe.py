"""The standalone HTML evaluation report as a person meets it: opened from a file (often offline),
read with a screen reader, printed. Headless Chromium (Playwright) audits it with axe-core (WCAG
2.0/2.1 A and AA, as ``test_e2e_axe.py`` does for the web UI) and checks that it loads nothing,
prints without cut-off tables or plots, and shows every metric with its count (n).

Two reports: the shipped bundle's, as the generator renders it from the shipped card and plots
(``tools/card_tables.py``; ``test_report.py`` checks that the shipped ``report.html`` is exactly
this rendering), and one written by ``dermsight evaluate`` on a few dozen real labelled images
(``../shared/data``). Skipped without axe-core (``make frontend``) or Chromium.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from browser_support import AXE_JS, WCAG_TAGS, axe_violations, describe_violation, watched_page
from cli_support import labelled_subset
from dermsight.cli import app as cli_app

pytest.importorskip("playwright.sync_api")
pytest.importorskip("matplotlib")

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "src" / "dermsight" / "assets" / "default"
#: the WCAG 2.0 and 2.1 level A and AA rules, plus axe's best practices (heading order, one main
#: landmark, content inside landmarks)
TAGS = [*WCAG_TAGS, "best-practice"]
BLOCKING = ("serious", "critical")
#: an A4 page's printable width at 96 dpi with 1 cm margins
PRINT_WIDTH = 718
PER_CLASS = 5  # labelled images per diagnosis for the `dermsight evaluate` report


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
            metadata: pd.DataFrame) -> dict[str, Path]:
    """The two report files: ``shipped`` and ``evaluate``."""
    if not AXE_JS.exists():
        pytest.skip(f"axe-core not installed ({AXE_JS} missing): run 'make frontend'")
    root = tmp_path_factory.mktemp("report_axe")
    spec = importlib.util.spec_from_file_location("card_tables", REPO / "tools" / "card_tables.py")
    assert spec is not None
    assert spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    shipped = root / "shipped.html"
    card = json.loads((BUNDLE / "card.json").read_text())
    shipped.write_text(tool.rendered_report(card, BUNDLE), encoding="utf-8")

    folder = labelled_subset(root / "labelled", data_dir, metadata, PER_CLASS)
    out = root / "evaluation"
    res = CliRunner().invoke(cli_app, ["evaluate", str(BUNDLE), str(folder), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return {"shipped": shipped, "evaluate": out / "scores.report.html"}


@pytest.fixture(params=["shipped", "evaluate"])
def opened(browser: Any, reports: dict[str, Path],
           request: pytest.FixtureRequest) -> Iterator[Any]:
    """The report opened from its file:// URL; ``page.urls``: every URL the page requested."""
    with watched_page(browser, bypass_csp=True) as pg:
        urls: list[str] = []
        pg.on("request", lambda r: urls.append(r.url))
        pg.urls = urls
        pg.name = request.param
        pg.goto(reports[request.param].as_uri())
        pg.wait_for_load_state("networkidle")
        yield pg


def test_no_serious_axe_violations(opened: Any) -> None:
    found = axe_violations(opened, TAGS)
    lines = [describe_violation(opened.name, v) for v in found]
    serious = [line for line, v in zip(lines, found, strict=True) if v["impact"] in BLOCKING]
    assert not serious, "\n".join(serious)
    assert not lines, "\n".join(lines)  # moderate/minor ones too: the report has none
    assert not opened.problems, opened.problems


def test_structure_a_screen_reader_needs(opened: Any) -> None:
    """lang and title; headings in order; every table captioned with scoped header cells;
    every plot with a text alternative that says what it shows (not its file key)."""
    doc = opened.evaluate("""() => ({
        lang: document.documentElement.lang, title: document.title,
        levels: [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => +h.tagName[1]),
        tables: [...document.querySelectorAll('table')].map(t => ({
            caption: t.caption ? t.caption.textContent.trim() : '',
            unscoped: [...t.querySelectorAll('th')].filter(th => !th.scope).length})),
        alts: [...document.querySelectorAll('img')].map(i => i.alt)})""")
    assert doc["lang"] == "en"
    assert doc["title"].startswith("dermsight")
    assert doc["levels"][0] == 1
    assert doc["levels"].count(1) == 1
    assert all(b - a <= 1 for a, b in zip(doc["levels"], doc["levels"][1:], strict=False))
    assert doc["tables"]
    for table in doc["tables"]:
        assert table["caption"], table
        assert table["unscoped"] == 0, table
    if opened.name == "shipped":
        assert len(doc["alts"]) == 4
    for alt in doc["alts"]:
        assert len(alt.split()) >= 10, alt
        assert "table" in alt, alt  # where its numbers are


def test_loads_nothing_from_outside(opened: Any) -> None:
    """Opened from a file: the only request is the file itself (plots are data: URIs)."""
    own = opened.url
    assert [u for u in opened.urls if u != own and not u.startswith("data:")] == []
    sources = opened.evaluate("""() => [...document.querySelectorAll('[src],[href],[srcset]')]
        .map(e => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('srcset'))""")
    assert all(s.startswith("data:image/png;base64,") for s in sources), sources
    assert opened.evaluate("document.scripts.length + document.styleSheets.length") == 1
    # the recorder itself: a planted outside image is seen
    opened.evaluate("""() => { const i = new Image(); i.src = 'http://planted.invalid/x.png';
        document.body.append(i); }""")
    opened.wait_for_timeout(200)
    assert "http://planted.invalid/x.png" in opened.urls


def test_prints_without_cut_offs(opened: Any) -> None:
    """With print styles on an A4-wide page nothing sticks out of the page, tables and plots
    are kept whole where they fit, and table headers repeat on each page."""
    opened.set_viewport_size({"width": PRINT_WIDTH, "height": 1000})
    opened.emulate_media(media="print")
    layout = opened.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        const wide = [...document.querySelectorAll('table, img, figure, pre')]
            .filter(e => e.getBoundingClientRect().right > width + 0.5)
            .map(e => e.tagName + ': '
                 + (e.caption ? e.caption.textContent : e.outerHTML.slice(0, 60)));
        const style = sel => [...document.querySelectorAll(sel)].map(e => getComputedStyle(e));
        return {width, wide,
            scrollWidth: document.documentElement.scrollWidth,
            breaks: style('table, figure').map(s => s.breakInside),
            heads: style('thead').map(s => s.display)};
    }""")
    assert layout["wide"] == [], layout["wide"]
    assert layout["scrollWidth"] <= layout["width"]
    assert set(layout["breaks"]) == {"avoid"}
    assert set(layout["heads"]) <= {"table-header-group"}
    pdf = opened.pdf(format="A4", margin={"top": "1cm", "bottom": "1cm", "left": "1cm",
                                          "right": "1cm"})
    assert pdf.startswith(b"%PDF")


def test_every_metric_shows_its_count(opened: Any) -> None:
    """A table holding metric values (intervals) also says how many items they are over: an n
    column, or the n in the column's header; the reference threshold row keeps its intervals."""
    tables = opened.evaluate("""() => [...document.querySelectorAll('table')]
        .filter(t => [...t.querySelectorAll('td')].some(td => / to /.test(td.textContent)))
        .map(t => ({caption: t.caption ? t.caption.textContent : '',
                    headers: [...t.querySelectorAll('thead th')].map(th => th.textContent),
                    ncells: [...t.querySelectorAll('tbody tr')].map(tr => tr.textContent)}))""")
    assert tables
    for table in tables:
        counted = [h for h in table["headers"]
                   if h in ("n", "images") or h.startswith("n (") or "n = " in h]
        assert counted, table["caption"]
    head = opened.locator("table", has=opened.locator("caption", has_text="Test metrics on"))
    rows = head.locator("tbody tr")
    assert rows.count() >= 5
    for i in range(rows.count()):
        n_cell = rows.nth(i).locator("td").nth(2)
        assert n_cell.inner_text().strip()[0].isdigit(), rows.nth(i).inner_text()
    if opened.name == "shipped":
        ref = opened.locator("tr", has_text="95% sensitivity (reference)").locator("td")
        for col in (1, 3, 4):  # cut-off, sensitivity, specificity: each with its interval
            assert " to " in ref.nth(col).inner_text(), ref.nth(col).inner_text()
