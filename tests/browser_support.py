"""Headless Chromium for the end-to-end tests (``test_e2e_*.py``; not collected itself): the
``browser`` fixture (the Debian ``chromium`` package through Playwright) and a page that records
the browser's console errors and page errors; ``page``: such a page on the Assess page of the
module's ``ui_server`` (each e2e module defines which server its UI comes from)."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import api_support as support

CHROMIUM = Path(os.environ.get("DERMSIGHT_CHROMIUM", "/usr/bin/chromium"))
STATIC_INDEX = support.REPO / "src" / "dermsight" / "web" / "static" / "index.html"
#: axe-core, installed with the front end (``make frontend``), and the WCAG 2.0/2.1 A and AA
#: rules the audits run
AXE_JS = support.REPO / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
#: the password of the accounts ``start_clinic_ui_server`` creates
PASSWORD = "correct horse battery staple"


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
    """A page in a new 1280 x 1000 browser context (90 s timeouts; ``context_options`` such as
    another ``viewport`` or ``is_mobile=True`` win) whose ``problems`` list collects console
    errors and page errors; the context is closed afterwards."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 1000},
                                     **context_options})
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


def ui_static_dir() -> str | None:
    """Another build of the UI to test (``DERMSIGHT_E2E_STATIC_DIR``: to check that a test fails
    on an older UI), else None for the committed one; skips the test when there is neither."""
    other = os.environ.get("DERMSIGHT_E2E_STATIC_DIR")
    if not other and not STATIC_INDEX.exists():
        pytest.skip("web UI not built (src/dermsight/web/static/index.html missing)")
    return other


def start_clinic_ui_server(workdir: Path, users: Iterable[tuple[str, str]], *,
                           env: dict[str, str] | None = None, model: Path | None = None,
                           ) -> support.Server:
    """``dermsight serve --database`` (SQLite in ``workdir``) serving the UI under test
    (``ui_static_dir``), after ``dermsight clinic create-user`` made ``users`` ((name, role)
    pairs, password ``PASSWORD``)."""
    other = ui_static_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{workdir / 'clinic.db'}"
    for user, role in users:
        made = subprocess.run(
            [*support.dermsight_command(), "clinic", "create-user", "--database", db,
             "--username", user, "--role", role, "--password-stdin"],
            input=PASSWORD + "\n", text=True, capture_output=True, timeout=120, check=False)
        assert made.returncode == 0, made.stdout + made.stderr
    full_env = {**(env or {}), **({"DERMSIGHT_STATIC_DIR": other} if other else {})}
    return support.start_server(workdir, model=model, extra_args=["--database", db],
                                env=full_env or None)


def clinic_server_fixture(name: str, users: Iterable[tuple[str, str]]) -> Any:
    """A module-scoped pytest fixture ``clinic_server``: ``start_clinic_ui_server`` in a folder
    named after ``name`` with ``users``, stopped after the module's tests. Assign it in a test
    module: ``clinic_server = clinic_server_fixture("clinic-e2e", [("e2e-admin", "admin")])``."""
    made = list(users)

    @pytest.fixture(scope="module")
    def clinic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
        server = start_clinic_ui_server(tmp_path_factory.mktemp(name), made)
        yield server
        server.stop()

    return clinic_server


def sign_in_clinic(page: Any, base: str, user: str) -> None:
    """Sign ``user`` in on the clinic's page and wait for the patient list to be loaded."""
    page.goto(f"{base}/#/clinic")
    page.get_by_test_id("login-username").fill(user)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("patients-page").wait_for()
    page.get_by_test_id("patient-list").locator("caption", has_not_text="Loading").wait_for()


def new_patient(page: Any, ref: str) -> None:
    """On the clinic's patients page: a new patient ``ref``; ends on the patient's page."""
    page.get_by_test_id("new-patient-ref").fill(ref)
    page.get_by_test_id("new-patient-submit").click()
    page.get_by_test_id("patient-page").wait_for()


def new_lesion(page: Any, ref: str) -> None:
    """On the patients page: a new patient ``ref`` with one lesion on the back; ends on the
    lesion's page."""
    new_patient(page, ref)
    lesion_form = page.get_by_test_id("new-lesion-form")
    lesion_form.get_by_label("Body site").select_option("posterior torso")
    page.get_by_test_id("new-lesion-submit").click()
    page.get_by_test_id("lesion-page").wait_for()


def age_sessions(server: support.Server) -> None:
    """Every session of a ``start_clinic_ui_server`` server: its last request 31 minutes ago
    (the default idle timeout is 30)."""
    db = sqlite3.connect(server.tmpdir.parent / "clinic.db")
    with db:
        aged = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31)).strftime("%Y-%m-%d %H:%M:%S")
        assert db.execute("UPDATE sessions SET last_seen_at = ?", (aged,)).rowcount >= 1
    db.close()


def axe_violations(page: Any, tags: list[str] = WCAG_TAGS) -> list[dict[str, Any]]:
    """axe-core's violations of the rules ``tags`` name on the page as it is now (the whole
    document; axe is injected once per page: ``bypass_csp=True`` where a CSP forbids it)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags},"
        " resultTypes: ['violations']})", tags)
    return list(result["violations"])


def describe_violation(where: str, v: dict[str, Any]) -> str:
    """One line for a failure message: where, rule id, impact, help, the elements' selectors."""
    targets = ", ".join(" ".join(map(str, n["target"])) for n in v["nodes"])
    return f"{where}: {v['id']} ({v['impact']}) {v['help']} -> {targets}"
