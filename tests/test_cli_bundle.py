"""``dermsight bundle verify``: one line, exit 0 for a good bundle, exit 3 for a bad one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from dermsight.bundle import default_bundle_path
from dermsight.taxonomy import MALIGNANT


def _bundle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dermsight.cli", "bundle", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return _bundle("verify", *args)


def test_the_shipped_bundle_verifies() -> None:
    r = _verify()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: ")
    assert "the card matches its schema" in r.stdout
    assert "files match the manifest" in r.stdout
    assert "malignant: MEL, BCC, SCC" in r.stdout


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
    # a card that lists fewer classes than the network has (its last benign class left out):
    # caught by running it once, whatever the number of classes of the shipped model
    shutil.rmtree(copy)
    shutil.copytree(default_bundle_path(), copy)
    card = json.loads((copy / "card.json").read_text())
    n = len(card["classes"])
    dropped = next(c for c in reversed(card["classes"]) if c not in MALIGNANT)
    card["classes"].remove(dropped)
    for section in (card.get("class_names"), (card.get("decision") or {}).get("prior"),
                    (card.get("decision") or {}).get("margins")):
        if isinstance(section, dict):
            section.pop(dropped, None)
    card["malignant_excluded"] = [c for c in card.get("malignant_excluded", []) if c != dropped]
    (copy / "card.json").write_text(json.dumps(card))
    r = _verify(str(copy))
    assert r.returncode == 3
    assert f"gives {n} outputs but the card lists {n - 1} classes" in r.stderr


def test_a_card_with_a_wrong_type_or_a_missing_runtime_field_fails_naming_it(
        tmp_path: Path) -> None:
    for name, edit, named in [
        ("wrong-type", lambda c: c["thresholds"].update(refer="high"), "'thresholds.refer'"),
        ("missing", lambda c: c["meta_spec"].pop("sites"), "'meta_spec.sites': Field required"),
    ]:
        copy = tmp_path / name
        shutil.copytree(default_bundle_path(), copy)
        card = json.loads((copy / "card.json").read_text())
        edit(card)
        (copy / "card.json").write_text(json.dumps(card))
        r = _verify(str(copy))
        assert r.returncode == 3, r.stdout
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert named in r.stderr


def test_schema_prints_the_card_models_json_schema(tmp_path: Path) -> None:
    from dermsight.cardschema import card_json_schema

    r = _bundle("schema")
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema == card_json_schema()
    assert {"classes", "malignant", "thresholds", "decision", "gate"} <= set(
        schema["x-sections"]["runtime"])
    assert {"metrics", "limitations"} <= set(schema["x-sections"]["report"])
    assert {"classes", "temperature", "input_spec", "meta_spec", "thresholds", "onnx",
            "schema_version", "name"} <= set(schema["required"])
    out = tmp_path / "card.schema.json"
    assert _bundle("schema", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text()) == schema
    bad = _bundle("schema", "-o", str(tmp_path / "no" / "such" / "dir" / "s.json"))
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert "cannot write" in bad.stderr
