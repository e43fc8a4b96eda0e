"""``dermsight bundle verify``: one line, exit 0 for a good bundle, exit 3 for a bad one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from dermsight.bundle import default_bundle_path


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dermsight.cli", "bundle", "verify", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_shipped_bundle_verifies() -> None:
    r = _verify()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: ")
    assert "files match the manifest" in r.stdout


def test_a_tampered_or_broken_bundle_fails_with_one_line(tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(default_bundle_path(), copy)
    with open(copy / "gate.npz", "ab") as f:
        f.write(b"\0")
    r = _verify(str(copy))
    assert r.returncode == 3
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "gate.npz" in r.stderr
    missing = _verify(str(tmp_path / "nowhere"))
    assert missing.returncode == 3
    assert "Traceback" not in missing.stderr
    # a card that lists more classes than the network has: caught by running it once
    shutil.rmtree(copy)
    shutil.copytree(default_bundle_path(), copy)
    card = json.loads((copy / "card.json").read_text())
    card["classes"] = [*card["classes"], "UNK"]
    (copy / "card.json").write_text(json.dumps(card))
    r = _verify(str(copy))
    assert r.returncode == 3
    assert "9 classes" in r.stderr
