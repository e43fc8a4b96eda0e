"""A batch output records how each row was scored: with test-time augmentation (``--tta``: the
mean over 8 flips/rotations) or without, in its ``tta`` column. A resumed run scoring the other
way is refused (it would keep the rows already there as done and mix two scoring modes in one
output); rows of older outputs that do not record it are accepted and counted in the summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_support import image_folder, strip_columns
from cli_support import run
from dermsight.batch.options import ScoreOptions
from dermsight.batch.schema import output_columns
from dermsight.batch.scorer import score_frame
from dermsight.batch.store import SUMMARY_FILE, part_columns, part_files, read_output
from dermsight.batch.summary import evaluate_output, sidecar
from dermsight.predict import Dermsight


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=2)


@pytest.fixture
def images(tmp_path: Path, data_dir: Path, sample_ids: list[str]) -> Path:
    """Three real lesion images and a file that is not an image (an error row)."""
    folder = image_folder(tmp_path, data_dir, sample_ids[:3])
    (folder / "zz_text.jpg").write_text("this is not an image\n")
    return folder


def _batch(capsys: pytest.CaptureFixture[str], folder: Path, out: Path,
           *extra: str) -> tuple[int, str, str]:
    return run(capsys, "batch", str(folder), "--out", str(out), "--batch-size", "2", "-q",
               *extra)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in part_files(out)}


def test_every_row_records_whether_it_was_scored_with_tta(
        images: Path, tmp_path: Path, model: Dermsight,
        capsys: pytest.CaptureFixture[str]) -> None:
    plain, tta = tmp_path / "plain", tmp_path / "tta"
    assert _batch(capsys, images, plain)[0] == 1  # the text file is an error row
    assert _batch(capsys, images, tta, "--tta")[0] == 1
    a, b = (read_output(o).set_index("id").sort_index() for o in (plain, tta))
    assert list(read_output(plain).columns) == output_columns(model.classes)
    # error rows too, as they carry model_name / model_version
    assert a["error"].notna().sum() == b["error"].notna().sum() == 1
    assert a["tta"].tolist() == ["false"] * 4
    assert b["tta"].tolist() == ["true"] * 4
    probs = [f"p_{c}" for c in model.classes]
    ok = a["error"].isna()
    assert not np.allclose(a.loc[ok, probs].to_numpy(), b.loc[ok, probs].to_numpy())


def test_score_frame_records_tta(model: Dermsight, data_dir: Path,
                                 sample_ids: list[str]) -> None:
    df = pd.DataFrame({"id": [*sample_ids[:2], "missing"],
                       "path": [str(data_dir / "images" / f"{i}.jpg") for i in sample_ids[:2]]
                       + [None]})
    for tta, text in ((True, "true"), (False, "false")):
        out = score_frame(df, model, ScoreOptions(batch_size=2, tta=tta))
        assert out["tta"].tolist() == [text] * 3
        assert out["error"].notna().tolist() == [False, False, True]


@pytest.mark.parametrize("first", [[], ["--tta"]], ids=["plain-then-tta", "tta-then-plain"])
def test_resuming_with_the_other_tta_setting_is_refused_before_writing(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        first: list[str]) -> None:
    out = tmp_path / "out"
    code, _, err = _batch(capsys, images, out, "--limit", "2", *first)
    assert code == 0, err
    before = _snapshot(out)
    other = [] if first else ["--tta"]
    code, _, err = _batch(capsys, images, out, *other)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    if first:
        assert lines[0].startswith(f"error: {out} holds 2 rows scored with TTA; this run uses "
                                   "no --tta: ")
        assert "Run it with --tta to resume this output" in lines[0]
    else:
        assert lines[0].startswith(f"error: {out} holds 2 rows scored without TTA; this run "
                                   "uses --tta: ")
        assert "Run it without --tta to resume this output" in lines[0]
    assert "mixing two scoring modes" in lines[0]
    assert "use another --out" in lines[0]
    assert _snapshot(out) == before  # nothing written
    # the same setting resumes; another --out takes the other one
    code, text, err = _batch(capsys, images, out, *first)
    assert code == 1, err
    assert "2 already done" in text
    assert read_output(out)["tta"].tolist() == ["true" if first else "false"] * 4
    assert _batch(capsys, images, tmp_path / "out2", *other)[0] == 1


def test_error_rows_of_the_other_setting_do_not_refuse(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Error rows hold no probabilities (and are retried): they mix no scoring modes."""
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(images / "zz_text.jpg", bad / "zz_text.jpg")
    out = tmp_path / "out"
    assert _batch(capsys, bad, out)[0] == 1
    code, _, err = _batch(capsys, bad, out, "--tta")
    assert code == 1, err  # retried, still an error row: now recorded as the --tta run's
    assert read_output(out)["tta"].tolist() == ["true"]


@pytest.mark.parametrize(("fmt", "older", "tta"), [("parquet", ["tta"], True),
                                                  ("csv", ["heatmap", "tta"], False)])
def test_an_older_output_is_upgraded_and_its_unknown_rows_are_counted(
        images: Path, tmp_path: Path, model: Dermsight, capsys: pytest.CaptureFixture[str],
        fmt: str, older: list[str], tta: bool) -> None:
    """Rows that do not record TTA are accepted whichever way the run scores (refusing would
    leave an older output unresumable), and counted: in the summary, and in a warning."""
    out = tmp_path / "out"
    argv = ["--format", fmt, "--chunk-size", "1"]
    flag = ["--tta"] if tta else []
    assert _batch(capsys, images, out, *argv, "--limit", "2", *flag)[0] == 0
    strip_columns(out, older)
    code, text, err = _batch(capsys, images, out, *argv, *flag)
    assert code == 1, err  # accepted (the text file is an error row)
    assert "2 already done" in text
    for part in part_files(out):  # upgraded in place
        assert part_columns(part) == output_columns(model.classes), part.name
    df = read_output(out).sort_values("id")
    this = "true" if tta else "false"
    assert df["tta"].tolist() == [None, None, this, this]  # unknown, then this run's
    assert f"warning: 2 scored rows of {out} were written before dermsight recorded " \
           "test-time augmentation" in err
    assert ("with test-time augmentation (--tta)" if tta
            else "without test-time augmentation") in text
    table = {line[:24].strip(): line[24:].split() for line in text.splitlines()}
    assert table["with TTA"] == (["1", "1"] if tta else ["0", "0"])
    assert table["without TTA"] == (["0", "0"] if tta else ["1", "1"])
    assert table["TTA not recorded"] == ["0", "2"]
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["tta"] is tta
    assert summary["total"]["tta"] == {"true": int(tta), "false": int(not tta), "unknown": 2}
    # the row this run scored now decides: the other setting is refused, naming all three
    code, _, err = _batch(capsys, images, out, *argv, *([] if tta else ["--tta"]))
    assert code == 2, err
    assert f"holds 1 row scored {'with' if tta else 'without'} TTA, 2 not recorded;" in err


def test_refused_before_an_older_output_is_upgraded(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused run leaves the parts as they were: the upgrade (adding columns) comes after
    every check."""
    out = tmp_path / "out"
    assert _batch(capsys, images, out, "--limit", "2")[0] == 0
    strip_columns(out, ["heatmap"])  # written after the tta column, before the heatmap column
    before = _snapshot(out)
    code, _, err = _batch(capsys, images, out, "--tta")
    assert code == 2, err
    assert "holds 2 rows scored without TTA" in err
    assert _snapshot(out) == before
    assert all("heatmap" not in part_columns(p) for p in part_files(out))


def _labelled_manifest(tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
                       ids: list[str]) -> Path:
    labels = metadata.set_index("image_id")["diagnosis"]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"id": ids, "path": [str(data_dir / "images" / f"{i}.jpg") for i in ids],
                  "diagnosis": [labels[i] for i in ids]}).to_csv(manifest, index=False)
    return manifest


def test_summary_and_evaluation_say_whether_tta_was_used(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame, sample_ids: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _labelled_manifest(tmp_path, data_dir, metadata, sample_ids[:3])
    for flag, word, counts in (
            (["--tta"], "used: the mean over 8 flips/rotations", {"true": 3, "false": 0}),
            ([], "not used", {"true": 0, "false": 3})):
        out = tmp_path / f"out{len(flag)}"
        code, text, err = run(capsys, "batch", str(manifest), "--out", str(out), "--evaluate",
                              "-q", *flag)
        assert code == 0, err
        assert ("with test-time augmentation (--tta)" if flag
                else "without test-time augmentation") in text.splitlines()[1]
        summary = json.loads((out / SUMMARY_FILE).read_text())
        assert summary["tta"] is bool(flag)
        assert summary["total"]["tta"] == {**counts, "unknown": 0}
        ev = json.loads(sidecar(out, "evaluation.json").read_text())
        assert ev["tta"] == {**counts, "unknown": 0}
        html = sidecar(out, "report.html").read_text()
        assert "test-time augmentation (TTA)" in html
        assert word in html


def test_evaluation_of_an_older_output_says_tta_was_not_recorded(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame, sample_ids: list[str],
        model: Dermsight, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _labelled_manifest(tmp_path, data_dir, metadata, sample_ids[:3])
    out = tmp_path / "out"
    assert run(capsys, "batch", str(manifest), "--out", str(out), "-q")[0] == 0
    strip_columns(out, ["tta"])
    paths = evaluate_output(out, model.classes, model.card, model.info, n_boot=0)
    ev = json.loads(Path(paths["json"]).read_text())
    assert ev["tta"] == {"true": 0, "false": 0, "unknown": 3}
    assert "rows 3 not recorded (an older dermsight)" in Path(paths["report"]).read_text()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_records_tta_and_refuses_the_other_setting(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")
    out = tmp_path / "out"
    spark = ["--engine", "spark", "--master", "local[1]", "--partitions", "1"]
    code, text, err = _batch(capsys, images, out, *spark, "--tta")
    assert code == 1, err
    assert read_output(out)["tta"].tolist() == ["true"] * 4
    assert "with test-time augmentation (--tta)" in text
    code, _, err = _batch(capsys, images, out, *spark)
    assert code == 2, err
    assert f"error: {out} holds 3 rows scored with TTA; this run uses no --tta" in err
