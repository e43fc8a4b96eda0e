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


def test_refresh_rewrites_the_test_set_line_from_the_rows(tmp_path: Path) -> None:
    """--refresh changes no row; the "Test set" limitation then names the copied rows as other
    networks' (the shipped card's two leave-one-source-out rows come from runs trained without
    ISIC 2017 / SIIM-ISIC 2020), the report shows it, and the re-sealed bundle loads."""
    bundle = tmp_path / "bundle"
    shutil.copytree(SHIPPED, bundle)
    before = json.loads((bundle / "card.json").read_text())
    done = _run("--bundle", str(bundle), "--refresh")
    assert done.returncode == 0, done.stderr
    card = json.loads((bundle / "card.json").read_text())
    assert card["cross_source"] == before["cross_source"]
    lines = [x for x in card["limitations"] if x.startswith("Test set: ")]
    assert len(lines) == 1
    assert ("leave-one-source-out rows for ISIC 2017, SIIM-ISIC 2020 come from networks trained "
            "the same way without that collection, not from this one") in lines[0]
    assert len(card["limitations"]) == len(before["limitations"])
    assert "come from networks trained the same way" in (bundle / "report.html").read_text(
        encoding="utf-8")
    Dermsight.load(bundle)


def test_rows_scored_by_the_tool_count_as_this_network_s(tmp_path: Path) -> None:
    """A row the tool scored itself (--score-folder: its command) is this network's own
    external figure; the line says so instead of "not scored outside its training data"."""
    sys.path.insert(0, str(TOOL.parent))
    from add_loso_rows import COMMAND, refresh_test_set_limitation

    card = json.loads((SHIPPED / "card.json").read_text())
    for r in card["cross_source"]["rows"]:
        if r["protocol"] == "leave_one_source_out" and r["source"] == "isic2020":
            r["run"] = dict(r["run"] or {}, command=f"{COMMAND} --bundle b --score-folder x")
    refresh_test_set_limitation(card)
    line = next(x for x in card["limitations"] if x.startswith("Test set: "))
    assert "scores this network on collections it never trained on (SIIM-ISIC 2020)" in line
    assert "rows for ISIC 2017 come from networks trained the same way" in line
    assert "not scored on any collection" not in line
    # a held-out run's own card: finalize scored the source it left out - this network's row
    card["training"]["config"]["data"]["holdout_sources"] = ["isic2017"]
    refresh_test_set_limitation(card)
    line = next(x for x in card["limitations"] if x.startswith("Test set: "))
    assert "the held-out sources (ISIC 2017) are scored separately" in line
    assert "come from networks" not in line
