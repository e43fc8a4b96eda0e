"""tools/add_loso_rows.py --note: what a reader must know about a leave-one-source-out row (the
spread of other training draws) lands in the card, the report and the re-sealed bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from dermsight import Dermsight

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "add_loso_rows.py"
SHIPPED = ROOT / "src" / "dermsight" / "assets" / "default"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def _loso(bundle: Path, source: str) -> dict:
    card = json.loads((bundle / "card.json").read_text())
    return next(r for r in card["cross_source"]["rows"]
                if r["protocol"] == "leave_one_source_out" and r["source"] == source)


def test_note_lands_in_card_report_and_manifest(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(SHIPPED, bundle)
    before = _loso(bundle, "isic2017")
    text = "one training draw; 13 draws span 0.709-0.771"
    done = _run("--bundle", str(bundle), "--note", f"isic2017={text}")
    assert done.returncode == 0, done.stderr
    row = _loso(bundle, "isic2017")
    assert row["note"] == (f"{before['note']}; {text}" if before["note"] else text)
    assert row["metrics"] == before["metrics"]  # the figures themselves untouched
    assert _loso(bundle, "isic2020")["note"] == _loso(SHIPPED, "isic2020")["note"]
    report = (bundle / "report.html").read_text(encoding="utf-8")
    assert text in report
    assert '<tr><td>isic2017</td>' in report  # full figures beside the note: not greyed out
    Dermsight.load(bundle)  # the manifest was re-sealed over the new report
    # the same command again adds nothing
    assert _run("--bundle", str(bundle), "--note", f"isic2017={text}").returncode == 0
    assert _loso(bundle, "isic2017")["note"] == row["note"]


def test_bad_notes_are_refused_without_touching_the_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(SHIPPED, bundle)
    card = (bundle / "card.json").read_bytes()
    missing = _run("--bundle", str(bundle), "--note", "ham10000=text")
    assert missing.returncode == 1
    assert "no leave-one-source-out row for 'ham10000'" in missing.stderr
    for bad in (["--note", "isic2017"], ["--note", "=text"], []):
        done = _run("--bundle", str(bundle), *bad)
        assert done.returncode == 2, bad
        assert "Traceback" not in done.stderr
    assert (bundle / "card.json").read_bytes() == card
