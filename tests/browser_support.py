"""Headless Chromium for the end-to-end tests (``test_e2e_*.py``; not collected itself): the
``browser`` fixture (the Debian ``chromium`` package through Playwright) and a page that records
the browser's console errors and page errors; ``page``: such a page on the Assess page of the
module's ``ui_server`` (each e2e module defines which server its UI comes from)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import api_support as support

CHROMIUM = Path(os.environ.get("DERMSIGHT_CHROMIUM", "/usr/bin/chromium"))
STATIC_INDEX = support.REPO / "src" / "dermsight" / "web" / "static" / "index.html"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


@contextmanager
def watched_page(browser: Any, **context_options: Any) -> Iterator[Any]:
    """A page in a new 1280 x 1000 browser context (90 s timeouts) whose ``problems`` list
    collects console errors and page errors; the context is closed afterwards."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, **context_options)
    context.set_default_timeout(90_000)  # a busy CI machine: the model runs on CPU
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
          if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.problems = problems
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, ui_server: Any) -> Iterator[Any]:
    with watched_page(browser) as pg:
        pg.goto(f"{ui_server.base}/")
        pg.get_by_test_id("nav-assess").wait_for()
        yield pg
