"""The batch output store refuses an output it cannot resume (parts of the other format, rows
scored the other way with respect to TTA, ...) with one line that names a way out. Three commands
score through it: ``dermsight batch`` has ``--format`` and ``--tta``; ``dermsight evaluate`` and
``dermsight bundle adapt`` score as the served model does (Parquet, no TTA) and have neither, so
their refusals must name only options they have and a way out they offer."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer.main

from cli_support import labelled_subset, run
from dermsight.batch.store import part_files, read_output
from dermsight.bundle import default_bundle_path
from dermsight.cli import app

#: how ``batch`` writes the folder that the other command is then given
KINDS = {"csv": ["--format", "csv"], "tta": ["--tta"]}
#: what the refusal says this command does instead
FIXED = {"csv": "this command writes parquet parts only",
         "tta": "this command scores without TTA, as the served model does"}


def _options(*command: str) -> set[str]:
    """Every option name (``--out``, ``-o``, ...) of the dermsight subcommand ``command``."""
    cmd: Any = typer.main.get_command(app)  # a group of (groups of) commands
    for name in command:
        cmd = cmd.get_command(cmd.context_class(cmd), name)
        assert cmd is not None, name
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


def _refusal(code: int, err: str, *command: str) -> str:
    """The one ``error:`` line of a refusal (exit 2, no traceback), checked to name only
    options that ``command`` has."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: "), line
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", line))
    assert named <= _options(*command), f"{sorted(named - _options(*command))} in: {line}"
    return line


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in part_files(folder)}


@pytest.fixture
def clinic(tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> Path:
    """Three real labelled images (too few cases for an update: ``adapt`` exits 4 once it
    has scored them)."""
    root = labelled_subset(tmp_path / "clinic", data_dir, metadata, per_class=1)
    listing = root / "metadata.csv"
    pd.read_csv(listing).head(3).to_csv(listing, index=False)
    return root


@pytest.mark.parametrize("kind", list(KINDS))
def test_adapt_refuses_a_batch_output_of_another_kind_naming_its_own_ways_out(
        clinic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    """A folder made by ``dermsight batch --format csv`` (or ``--tta``) given as ``bundle adapt
    --scores``: refused before anything is written, naming neither --format nor --tta (adapt has
    neither) but another --scores folder, which then works."""
    pytest.importorskip("sklearn")
    scores = tmp_path / "scores"
    code, _, err = run(capsys, "batch", str(clinic), "--out", str(scores), "--limit", "2", "-q",
                       *KINDS[kind])
    assert code == 0, err
    before = _snapshot(scores)
    adapt = ["bundle", "adapt", str(clinic), "--out", str(tmp_path / "adapted"),
             "--name", "Clinic A", "-q"]
    code, _, err = run(capsys, *adapt, "--scores", str(scores))
    line = _refusal(code, err, "bundle", "adapt")
    assert line.startswith(f"error: {scores} "), line
    assert FIXED[kind] in line, line
    assert "use another --scores" in line.lower(), line
    assert "remove this one" in line, line
    assert _snapshot(scores) == before  # nothing written
    assert not (tmp_path / "adapted").exists()
    # the way out it names: another --scores folder scores the cases (then too few: exit 4)
    code, _, err = run(capsys, *adapt, "--scores", str(tmp_path / "fresh"))
    assert code == 4, err
    assert len(read_output(tmp_path / "fresh")) == 3


def test_adapt_names_scores_when_scores_is_a_file(
        clinic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--scores FILE``: the refusal names --scores (adapt's --out is the new bundle)."""
    pytest.importorskip("sklearn")
    scores = tmp_path / "scores.txt"
    scores.write_text("not a folder\n")
    code, _, err = run(capsys, "bundle", "adapt", str(clinic), "--out",
                       str(tmp_path / "adapted"), "--name", "Clinic A", "--scores", str(scores),
                       "-q")
    line = _refusal(code, err, "bundle", "adapt")
    assert line == f"error: --scores must be a folder (a dataset of part files): {scores}", line
    assert scores.read_text() == "not a folder\n"


def test_evaluate_refuses_scores_of_another_kind_naming_its_own_ways_out(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``dermsight evaluate`` resumes OUT/scores of its data; scores there written by ``batch
    --format csv`` or ``batch --tta`` are refused naming neither option (evaluate has neither)
    but another --out or removing them, which then works."""
    data = labelled_subset(tmp_path / "data", data_dir, metadata, per_class=1)
    ev = tmp_path / "ev"
    evaluate = ["evaluate", str(default_bundle_path()), str(data), "--out", str(ev), "-q"]
    code, _, err = run(capsys, *evaluate)
    assert code == 0, err
    scores = ev / "scores"
    for kind, extra in KINDS.items():
        shutil.rmtree(scores)  # evaluated.json still claims ev for this data
        code, _, err = run(capsys, "batch", str(data), "--out", str(scores), "--limit", "2",
                           "-q", *extra)
        assert code == 0, err
        before = _snapshot(scores)
        code, _, err = run(capsys, *evaluate)
        line = _refusal(code, err, "evaluate")
        assert line.startswith(f"error: {scores} "), line
        fixed = FIXED[kind].replace("the served model does", "the served model does by default")
        assert fixed in line, line
        assert "use another --out" in line.lower(), line
        assert "remove this one" in line, line
        assert _snapshot(scores) == before
    # scores that are a file: named as a file in --out, not as an --out that is no folder
    shutil.rmtree(scores)
    scores.write_text("not scores\n")
    code, _, err = run(capsys, *evaluate)
    line = _refusal(code, err, "evaluate")
    assert line == (f"error: --out {ev} holds scores this evaluation cannot resume (scores is a "
                    f"file, not a folder of part files): use another --out, or remove {scores}")
    # the way out named: removing them, the evaluation scores everything again
    scores.unlink()
    code, _, err = run(capsys, *evaluate)
    assert code == 0, err
    assert len(pd.read_parquet(scores)) == len(pd.read_csv(data / "metadata.csv"))


def test_batch_still_names_format_and_tta(
        clinic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``dermsight batch`` has --format and --tta: its refusals name them, as before."""
    out = tmp_path / "out"
    batch = ["batch", str(clinic), "--out", str(out), "-q"]
    assert run(capsys, *batch, "--limit", "1", "--format", "csv")[0] == 0
    code, _, err = run(capsys, *batch)
    line = _refusal(code, err, "batch")
    assert line == f"error: {out} already holds csv parts: use --format csv to resume it, or " \
                   "another --out"
    shutil.rmtree(out)
    assert run(capsys, *batch, "--limit", "1", "--tta")[0] == 0
    code, _, err = run(capsys, *batch)
    line = _refusal(code, err, "batch")
    assert "this run uses no --tta" in line
    assert "Run it with --tta to resume this output, or use another --out" in line
