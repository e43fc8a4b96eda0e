"""The documentation's internal links: the experiments index is generated from the headings
and current, and every anchor the README links to exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "docs" / "experiments" / "README.md"


def _index_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("experiments_index",
                                                  ROOT / "docs" / "experiments" / "index.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _anchors(text: str) -> set[str]:
    return {anchor for _, _, anchor in _index_module().headings(text)}


def test_experiments_index_is_current() -> None:
    text = EXPERIMENTS.read_text(encoding="utf-8")
    assert _index_module().render(text) == text, "run python docs/experiments/index.py"


def test_index_rows_links_and_duplicates() -> None:
    ix = _index_module()
    text = ("# Title\n\n## Index of the experiments\n\n<!-- index:start -->\nold\n"
            "<!-- index:end -->\n\n## First: a | b (τ 0.5)\n\n### Result: **shown**\n\n"
            "```\n# a comment, not a heading\n### Result: inside code\n```\n\n"
            "## Second\n\n### Result: **not shown**\n\n### Result, seed 43\n\n"
            "## Third\n\ntext\n\n### Result: **shown**\n")
    out = ix.render(text)
    rows = out.split(ix.START)[1].split(ix.END)[0].strip().splitlines()
    assert rows[:2] == ["| experiment | result |", "|---|---|"]
    assert rows[2] == ("| [First: a \\| b (τ 0.5)](#first-a--b-τ-05) | "
                       "[Result: **shown**](#result-shown) |")
    assert rows[3] == ("| [Second](#second) | [Result: **not shown**](#result-not-shown)<br>"
                       "[Result, seed 43](#result-seed-43) |")
    # the second "Result: **shown**" heading is GitHub's "-1" anchor
    assert rows[4] == "| [Third](#third) | [Result: **shown**](#result-shown-1) |"
    assert len(rows) == 5
    assert "old" not in out
    assert ix.render(out) == out


def test_readme_anchors_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    experiments = _anchors(EXPERIMENTS.read_text(encoding="utf-8"))
    links = re.findall(r"docs/experiments/README\.md#([^)\s]+)", readme)
    assert len(links) > 5
    assert [a for a in links if a not in experiments] == []
    own = _anchors(readme)
    assert [a for a in re.findall(r"\]\(#([^)]+)\)", readme) if a not in own] == []
    index = EXPERIMENTS.read_text(encoding="utf-8").split("<!-- index:start -->")[1]
    index_links = re.findall(r"\]\(#([^)]+)\)", index.split("<!-- index:end -->")[0])
    assert len(index_links) > 50
    assert [a for a in index_links if a not in experiments] == []


def test_model_history_links_resolve() -> None:
    """docs/model.md (the recipes' history, moved out of the README): every link to the
    experiments log, to a README heading and to a file lands."""
    text = (ROOT / "docs" / "model.md").read_text(encoding="utf-8")
    experiments = _anchors(EXPERIMENTS.read_text(encoding="utf-8"))
    readme = _anchors((ROOT / "README.md").read_text(encoding="utf-8"))
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    to_log = [a for a in links if a.startswith("experiments/README.md#")]
    assert len(to_log) > 20
    assert [a for a in to_log if a.split("#", 1)[1] not in experiments] == []
    to_readme = [a for a in links if a.startswith("../README.md#")]
    assert to_readme
    assert [a for a in to_readme if a.split("#", 1)[1] not in readme] == []
    files = [a.split("#", 1)[0] for a in links if "://" not in a]
    assert [f for f in files if not (ROOT / "docs" / f).exists()] == []
    assert (ROOT / "docs" / "model.md").name in (ROOT / "README.md").read_text(encoding="utf-8")


def _relative_links(text: str) -> list[str]:
    """Markdown link targets that point inside the checkout (no scheme), outside code blocks."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", prose) if "://" not in t
            and not t.startswith("mailto:")]


def _broken_links(pages: list[Path]) -> tuple[list[str], int]:
    broken, checked = [], 0
    for page in pages:
        for target in _relative_links(page.read_text(encoding="utf-8")):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            checked += 1
            lands = dest.exists() and not (anchor and dest.suffix == ".md" and anchor not in
                                           _anchors(dest.read_text(encoding="utf-8")))
            if not lands:
                broken.append(f"{page.name}: {target}")
    return broken, checked


def test_every_relative_link_in_the_docs_lands() -> None:
    """Every link of the README and of docs/*.md to a file of the checkout finds it, and a link
    to a heading of a Markdown file finds that heading (GitHub's anchors)."""
    broken, checked = _broken_links(
        [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), EXPERIMENTS])
    assert checked > 100
    assert broken == []


def test_the_link_check_reports_what_does_not_land(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Kept heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[a](#here) [b](other.md#kept-heading) [c](other.md#gone) [d](missing.md) "
                    "[e](https://example.org/x.md)\n```\n[f](nowhere.md)\n```\n\n## Here\n",
                    encoding="utf-8")
    broken, checked = _broken_links([page])
    assert checked == 4
    assert broken == ["page.md: other.md#gone", "page.md: missing.md"]
