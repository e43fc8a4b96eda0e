"""What one ``dermsight batch`` run reports is about its own input, and a Ctrl-C keeps its work.

* Two inputs scored into one output folder: the second run's "already done" counts only its own
  listings found there, its ``--evaluate`` metrics (``OUT.evaluation.json``, the report) use only
  the rows its input lists, and the summary says that the folder also holds another input's rows.
* A Ctrl-C (SIGINT to a real ``dermsight batch`` process) writes the rows scored so far before
  exit code 130, says how many it kept, and the next run scores exactly the rest.

Real images: the shared isic-subset (labelled, ``metadata.csv``) and isic2020-sample.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from batch_support import signal_a_batch_run
from cli_support import run
from dermsight.batch.local import run_local
from dermsight.batch.options import ScoreOptions
from dermsight.batch.store import part_files, read_output
from dermsight.batch.summary import sidecar

N_LAB, N_2020 = 16, 10


def _labelled_input(root: Path, data: Path, n: int) -> list[str]:
    """``root``: the first ``n`` images of the shared set ``data`` beside their own
    ``metadata.csv`` rows (labels included); returns their ids."""
    meta = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False).head(n)
    root.mkdir(parents=True)
    for i in meta["image_id"]:
        shutil.copyfile(data / "images" / f"{i}.jpg", root / f"{i}.jpg")
    meta.to_csv(root / "metadata.csv", index=False)
    return sorted(meta["image_id"])


@pytest.fixture
def two_inputs(tmp_path: Path, data_dir: Path) -> tuple[Path, Path]:
    """LAB: 16 labelled isic-subset images; S2020: 10 labelled isic2020-sample images (no id in
    common)."""
    lab, s2020 = tmp_path / "LAB", tmp_path / "S2020"
    ids_lab = _labelled_input(lab, data_dir, N_LAB)
    ids_2020 = _labelled_input(s2020, data_dir.parent / "isic2020-sample", N_2020)
    assert not set(ids_lab) & set(ids_2020)
    return lab, s2020


def _report_cell(out: Path, header: str) -> str:
    html = sidecar(out, "report.html").read_text(encoding="utf-8")
    found = re.search(rf"{re.escape(header)}</th><td>([^<]*)<", html)
    assert found is not None, header
    return found.group(1)


def test_second_input_is_evaluated_and_counted_alone(
        tmp_path: Path, two_inputs: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    lab, s2020 = two_inputs
    out = tmp_path / "bx"
    code, _, err = run(capsys, "batch", str(lab), "--out", str(out), "--evaluate", "-q")
    assert code == 0, err
    # the images the gate refused ("cannot assess") are not evaluated
    lab_assessed = N_LAB - int((read_output(out)["risk"] == "cannot_assess").sum())
    assert json.loads(sidecar(out, "evaluation.json").read_text())["n"] == lab_assessed

    code, second, err = run(capsys, "batch", str(s2020), "--out", str(out), "--evaluate", "-q")
    assert code == 0, err
    # none of S2020's images was in the output: nothing of it was "already done"
    assert f"{N_2020} scored, 0 errors, 0 already done (skipped)" in second
    assert (f"the output also holds {N_LAB} rows this input does not list (another input's, "
            "or images no longer listed); they are not evaluated") in second
    evaluation = json.loads(sidecar(out, "evaluation.json").read_text())
    refused_2020 = evaluation["gate_refused"]["images"]
    assert evaluation["n"] == N_2020 - refused_2020  # not the rows of both inputs pooled
    assert _report_cell(out, "input") == str(s2020.resolve())
    assert _report_cell(out, "evaluated rows (labelled, scored)") == str(N_2020 - refused_2020)
    assert _report_cell(out, "output rows of this input") == str(N_2020)
    assert _report_cell(out, "output rows of other inputs (left out)") == str(N_LAB)
    summary = json.loads((out / "_summary.json").read_text())
    assert (summary["skipped"], summary["not_listed"], summary["total"]["rows"]) == (
        0, N_LAB, N_LAB + N_2020)

    # LAB again: all of its rows are done, the other input's are not counted as its own
    code, again, err = run(capsys, "batch", str(lab), "--out", str(out), "--evaluate", "-q")
    assert code == 0, err
    assert f"0 scored, 0 errors, {N_LAB} already done (skipped)" in again
    assert f"the output also holds {N_2020} rows this input does not list" in again
    assert json.loads(sidecar(out, "evaluation.json").read_text())["n"] == lab_assessed
    assert _report_cell(out, "output rows of other inputs (left out)") == str(N_2020)


def test_progress_total_counts_only_this_inputs_rows(
        tmp_path: Path, two_inputs: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The bar's total is this input's rows left to score, not its size less the whole
    output's rows (which was max(10 - 16, 0) = 0)."""
    lab, s2020 = two_inputs
    out = tmp_path / "bx"
    run_local(lab, out, ScoreOptions(workers=1), progress=False)
    capsys.readouterr()
    summary = run_local(s2020, out, ScoreOptions(workers=1), progress=True)
    err = capsys.readouterr().err
    assert f"{N_2020}/{N_2020}" in err, err  # tqdm's final "n/total" (not a terminal: kept)
    assert (summary.scored, summary.skipped) == (N_2020, 0)
    assert summary.not_listed == N_LAB


def test_ctrl_c_keeps_the_rows_scored_and_the_rerun_scores_the_rest(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> None:
    """SIGINT to a real process once its first batches are scored (seen by their overlay PNGs:
    one worker scores batch after batch, so when a second batch's overlays exist the first
    batch's rows were handed over), well inside its first --chunk-size (1,024) rows."""
    chosen = sorted(metadata["image_id"])[:48]
    cmd, out, code, err = signal_a_batch_run(tmp_path, data_dir, chosen, signal.SIGINT, "oD")
    assert code == 130, err
    assert "Traceback" not in err
    kept = read_output(out)
    assert 2 <= len(kept) < len(chosen)  # at least the first batch, written as one part
    assert len(part_files(out)) == 1
    assert kept["id"].is_unique
    assert set(kept["id"]) <= set(chosen)
    assert kept["error"].isna().all()
    assert (f"batch interrupted: {len(kept)} rows scored by this run are kept in {out}; run "
            "the same command again to score the rest") in err
    assert err.rstrip().endswith("interrupted")
    assert not list(out.glob(".tmp-*"))

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(chosen) - len(kept)} scored, 0 errors, {len(kept)} already done" in rerun.stdout
    done = read_output(out)
    assert sorted(done["id"]) == chosen  # no row lost, none twice
    assert done["id"].is_unique
    assert done.loc[done["id"].isin(kept["id"]), "heatmap"].tolist() == kept["heatmap"].tolist()
