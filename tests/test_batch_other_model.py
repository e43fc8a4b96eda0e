"""Resuming a batch output with another model (a new version of the bundle, or another bundle
of the same classes) is refused: the rows already there were skipped as done, so the output
silently kept the old model's answers beside the new one's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from batch_support import image_folder
from cli_support import run
from dermsight.batch.store import read_output
from dermsight.bundle import default_bundle_path, write_manifest


@pytest.fixture
def images(tmp_path: Path, data_dir: Path, sample_ids: list[str]) -> Path:
    return image_folder(tmp_path, data_dir, sample_ids[:3])


def _new_version(tmp_path: Path) -> Path:
    root = tmp_path / "bundle-2.4.2"
    shutil.copytree(default_bundle_path(), root)
    card = json.loads((root / "card.json").read_text())
    card["version"] = "2.4.2"
    (root / "card.json").write_text(json.dumps(card))
    write_manifest(root)
    return root


def test_another_model_version_cannot_resume_the_output(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(images), "--out", str(out), "--limit", "2", "-q")
    assert code == 0, err
    before = read_output(out)
    assert len(before) == 2
    newer = _new_version(tmp_path)
    code, _, err = run(capsys, "batch", str(images), "--out", str(out), "--model", str(newer),
                       "-q")
    assert code == 2, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: {out} holds 2 rows scored by "
                           "dermsight-effnetlite0-meta-9class 2.4.1; this run uses "
                           "dermsight-effnetlite0-meta-9class 2.4.2")
    assert "Use another --out" in line
    assert read_output(out).equals(before)  # nothing written
    # the same model still resumes, and another --out takes the new one
    code, _, err = run(capsys, "batch", str(images), "--out", str(out), "-q")
    assert code == 0, err
    assert len(read_output(out)) == 3
    code, _, err = run(capsys, "batch", str(images), "--out", str(tmp_path / "out2"), "--model",
                       str(newer), "-q")
    assert code == 0, err
    assert set(read_output(tmp_path / "out2")["model_version"]) == {"2.4.2"}

