"""The committed UI build was made from the committed front-end sources: a change to
``frontend/`` committed without ``make frontend`` leaves the package serving the old UI (the
browser tests too: they serve the committed build), which only CI's rebuild noticed before."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("ui_source_hash",
                                                  REPO / "tools" / "ui_source_hash.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_ui_build_is_from_the_current_sources() -> None:
    tool = _tool()
    recorded = tool.RECORD.read_text(encoding="utf-8").strip()
    assert recorded == tool.fingerprint(), (
        "frontend/ changed since the committed UI build was made: run 'make frontend' and "
        "commit src/dermsight/web/static and frontend/build-source.sha256")


def test_the_fingerprint_follows_a_source_change_but_not_a_unit_test(tmp_path: Path) -> None:
    tool = _tool()
    front = tmp_path / "frontend"
    (front / "src" / "testing").mkdir(parents=True)
    (front / "src" / "App.tsx").write_text("export const a = 1\n")
    (front / "src" / "App.test.tsx").write_text("test\n")
    (front / "src" / "testing" / "render.ts").write_text("helper\n")
    (front / "package.json").write_text("{}\n")
    before = tool.fingerprint(front)
    (front / "src" / "App.test.tsx").write_text("another test\n")
    (front / "src" / "testing" / "render.ts").write_text("another helper\n")
    assert tool.fingerprint(front) == before
    (front / "src" / "App.tsx").write_text("export const a = 2\n")
    assert tool.fingerprint(front) != before
    (front / "src" / ".DS_Store").write_bytes(b"\0\1")  # a stray dotfile
    (front / "src" / "App.tsx").write_bytes(b"export const a = 1\r\n")  # CRLF line ends
    assert tool.fingerprint(front) == before
    (front / "src" / "App.tsx").write_text("export const a = 1\n")
    (front / "package.json").write_text('{"x": 1}\n')
    assert tool.fingerprint(front) != before


def test_the_fingerprint_leaves_out_what_git_ignores(tmp_path: Path) -> None:
    """In a git checkout a file ``.gitignore`` leaves out (``npm-debug.log``) is no build input,
    and a new file not yet added to git is one."""
    import subprocess

    tool = _tool()
    front = tmp_path / "frontend"
    (front / "src").mkdir(parents=True)
    (front / "src" / "App.tsx").write_text("export const a = 1\n")
    (front / ".gitignore").write_text("*.log\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    before = tool.fingerprint(front)
    (front / "src" / "npm-debug.log").write_text("noise\n")
    assert tool.fingerprint(front) == before
    (front / "src" / "Page.tsx").write_text("export const b = 2\n")  # untracked, not ignored
    assert tool.fingerprint(front) != before
