"""What the repository must never hold: registry URLs in lock files (the guide forbids them)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return out.splitlines()


def test_npm_lock_is_committed_without_registry_urls() -> None:
    assert "frontend/package-lock.json" in _tracked(), "commit frontend/package-lock.json"
    lock = json.loads((ROOT / "frontend" / "package-lock.json").read_text())
    packages = lock["packages"]
    assert len(packages) > 10  # a real lock, not an empty stub
    with_resolved = [name for name, p in packages.items() if "resolved" in p]
    assert not with_resolved, f"registry URLs in the lock: {with_resolved[:3]}"
    deps = {**packages[""].get("dependencies", {}), **packages[""].get("devDependencies", {})}
    pkg = json.loads((ROOT / "frontend" / "package.json").read_text())
    assert deps == {**pkg["dependencies"], **pkg["devDependencies"]}, "lock out of date"


def test_no_python_lock_files_with_registry_urls() -> None:
    assert not [f for f in _tracked() if f.endswith(("uv.lock", "poetry.lock", "Pipfile.lock"))]
