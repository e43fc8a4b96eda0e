"""The code map and the command lists in the docs name what the code holds (a documentation
sweep found ``io/sizes.py`` and ``quiet_warnings.py`` named nowhere, and the ``cli/`` row listing
four of the eight ``dermsight clinic`` commands)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "src" / "dermsight"


def test_architecture_names_every_module() -> None:
    """Every module of the package (not ``__init__``/``__main__``, not Alembic's revisions, not
    the built UI) is named in docs/architecture.md, which the README calls the map of every
    module."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    unnamed = [
        str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py")
        and not {"migrations", "static"} & set(p.relative_to(PACKAGE).parts)
        and f"`{p.name}`" not in text and f"/{p.name}`" not in text
    ]
    assert unnamed == []


def test_architecture_cli_row_lists_every_clinic_command() -> None:
    """The ``cli/`` row's ``clinic.py`` entry lists each command ``dermsight clinic`` has."""
    from dermsight.cli.clinic import clinic_app

    names = [c.name or c.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
             for c in clinic_app.registered_commands]
    assert len(names) >= 8
    row = next(line for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines()
               if line.startswith("| `cli/` |"))
    entry = re.search(r"`clinic\.py` \(([^)]*)\)", row)
    assert entry is not None
    listed = [n.strip() for n in entry.group(1).split(",")]
    assert sorted(listed) == sorted(names)


def test_postgresql_recipe_sets_the_token_it_needs_beyond_loopback() -> None:
    """docs/clinic.md's multi-instance recipe binds 0.0.0.0, which ``serve`` refuses without
    ``DERMSIGHT_API_TOKEN`` (or ``--insecure-no-auth``): the block must set the token before
    its ``serve`` line."""
    text = (REPO / "docs" / "clinic.md").read_text(encoding="utf-8")
    section = text.split("## Deployment with PostgreSQL", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    serve = block.index("dermsight serve --host 0.0.0.0")
    assert "export DERMSIGHT_API_TOKEN=" in block[:serve]


def test_benchmark_load_row_quotes_requests_as_a_total() -> None:
    """``bench_api.py`` splits one request total over its clients: the docs must not read
    "8 clients times 5,000 requests" (40,000)."""
    for path in (REPO / "README.md", REPO / "docs" / "benchmarks.md",
                 REPO / "benchmarks" / "bench_api.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"clients (\u00d7|x) (5,000|\{)", text), path.name


def test_architecture_names_every_front_end_page() -> None:
    """Each page component in ``frontend/src/pages`` is named in the code map (it left out the
    password page and the not-found page)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    pages = sorted(p.stem for p in (REPO / "frontend" / "src" / "pages").glob("*.tsx")
                   if not p.name.endswith(".test.tsx"))
    assert len(pages) >= 10
    assert [p for p in pages if f"`{p}`" not in text and p not in
            ("AssessPage", "LearnPage", "ModelPage")] == []


def test_frontend_readme_names_the_check_ci_runs() -> None:
    """CI checks the committed UI build with ``make check-frontend`` (``git status``, new files
    too), not the ``git diff --exit-code`` the front end's README and Vite config quoted."""
    for path in (REPO / "frontend" / "README.md", REPO / "frontend" / "vite.config.ts"):
        text = path.read_text(encoding="utf-8")
        assert "git diff --exit-code" not in text, path.name
        assert "make check-frontend" in text, path.name
