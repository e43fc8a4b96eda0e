"""A batch output records which bundle scored each row: ``card_sha256``, the sha256 of the
bundle's ``card.json``. Two bundles of one name and version (every ``dermsight train`` run's, or a
copy with other decision margins) differ in it, so a resumed run with another bundle is refused
before anything is written, for every command that scores into an output (``batch``,
``evaluate``, ``bundle adapt``); rows of older outputs that do not record it are accepted and
counted."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from batch_support import bundle_with_margins, image_folder, strip_columns
from cli_support import labelled_subset, run
from dermsight.batch.schema import output_columns
from dermsight.batch.store import SUMMARY_FILE, part_columns, part_files, read_output
from dermsight.bundle import default_bundle_path, load_bundle

NAME = "dermsight-effnetlite0-meta-9class 2.4.1"


@pytest.fixture
def images(tmp_path: Path, data_dir: Path, sample_ids: list[str]) -> Path:
    """Three real lesion images."""
    return image_folder(tmp_path, data_dir, sample_ids[:3])


def _card_sha256(bundle: Path) -> str:
    return hashlib.sha256((bundle / "card.json").read_bytes()).hexdigest()


SHIPPED = _card_sha256(default_bundle_path())


def _other_margins(tmp_path: Path) -> Path:
    """A copy of the shipped bundle that differs in its decision margins only: the same name,
    version and network, its manifest written again (as ``tests/test_local_update.py``'s
    ``_off_bundle``)."""
    shipped = load_bundle(default_bundle_path()).card
    root = bundle_with_margins(tmp_path / "other-margins",
                               {c: 2.0 for c in shipped.classes if c != "NV"})
    copy = load_bundle(root)
    assert (copy.card.name, copy.card.version) == (shipped.name, shipped.version)
    assert copy.card.onnx_sha256 == shipped.onnx_sha256
    assert _card_sha256(root) != SHIPPED
    return root


def _batch(capsys: pytest.CaptureFixture[str], folder: Path, out: Path,
           *extra: str) -> tuple[int, str, str]:
    return run(capsys, "batch", str(folder), "--out", str(out), "--batch-size", "2", "-q",
               *extra)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in part_files(folder)}


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_another_bundle_of_the_same_version_cannot_resume_the_output(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = _batch(capsys, images, out, "--limit", "2")
    assert code == 0, err
    before = _snapshot(out)
    other = _other_margins(tmp_path)
    theirs = _card_sha256(other)
    code, _, err = _batch(capsys, images, out, "--model", str(other))
    assert code == 2, err
    line = _one_line(err)
    assert line.startswith(
        f"error: {out} holds 2 rows scored by another bundle, {NAME} (card.json sha256 "
        f"{SHIPPED[:12]}…); this run uses {NAME} (card.json sha256 {theirs[:12]}…): resuming "
        "would keep those rows as done, mixing two bundles' answers in one output."), line
    assert "Use another --out" in line
    assert _snapshot(out) == before  # nothing written
    # the same bundle still resumes; another --out takes the copy
    code, text, err = _batch(capsys, images, out)
    assert code == 0, err
    assert "2 already done" in text
    assert read_output(out)["card_sha256"].tolist() == [SHIPPED] * 3
    code, _, err = _batch(capsys, images, tmp_path / "out2", "--model", str(other))
    assert code == 0, err
    assert read_output(tmp_path / "out2")["card_sha256"].tolist() == [theirs] * 3


def test_every_row_records_the_card_sha256_of_its_bundle(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (images / "zz_text.jpg").write_text("this is not an image\n")  # an error row records it too
    out = tmp_path / "out"
    code, _, err = _batch(capsys, images, out, "--format", "csv")
    assert code == 1, err
    df = read_output(out)
    shipped = load_bundle(default_bundle_path())
    assert list(df.columns) == output_columns(shipped.card.classes)
    assert df["error"].notna().sum() == 1
    assert df["card_sha256"].tolist() == [SHIPPED] * 4
    assert shipped.card_sha256 == SHIPPED
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["total"]["card_sha256"] == {SHIPPED: 4, "unknown": 0}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_older_output_is_upgraded_and_its_rows_count_as_not_recorded(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    """Rows that do not record their bundle are accepted whichever bundle resumes (refusing
    would leave an older output unresumable), and counted: in the summary and a warning."""
    out = tmp_path / "out"
    argv = ["--format", fmt, "--chunk-size", "1"]
    assert _batch(capsys, images, out, *argv, "--limit", "2")[0] == 0
    strip_columns(out, ["card_sha256"])
    other = _other_margins(tmp_path)
    theirs = _card_sha256(other)
    code, text, err = _batch(capsys, images, out, *argv, "--model", str(other))
    assert code == 0, err
    assert "2 already done" in text
    classes = load_bundle(other).card.classes
    for part in part_files(out):  # upgraded in place
        assert part_columns(part) == output_columns(classes), part.name
    df = read_output(out)
    recorded = df.set_index("id").sort_index()["card_sha256"]
    assert recorded.tolist() == [None, None, theirs]  # not recorded, then this run's
    assert f"warning: 2 rows of {out} were written before dermsight recorded the bundle" in err
    assert "bundle not recorded: 2 rows of the output" in text
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["total"]["card_sha256"] == {theirs: 1, "unknown": 2}
    # the row this run wrote now decides: the shipped bundle is refused, before writing
    before = _snapshot(out)
    code, _, err = _batch(capsys, images, out, *argv)
    assert code == 2, err
    assert f"holds 1 row scored by another bundle, {NAME} (card.json sha256 {theirs[:12]}…)" \
        in _one_line(err)
    assert _snapshot(out) == before


def test_refused_before_an_older_output_is_upgraded(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundle check comes before the upgrade of older parts: a refused run leaves them as
    they were."""
    out = tmp_path / "out"
    assert _batch(capsys, images, out, "--limit", "2")[0] == 0
    strip_columns(out, ["heatmap"])  # an older output that recorded the bundle but no overlay names
    before = _snapshot(out)
    code, _, err = _batch(capsys, images, out, "--model", str(_other_margins(tmp_path)))
    assert code == 2, err
    assert "holds 2 rows scored by another bundle" in _one_line(err)
    assert _snapshot(out) == before
    assert all("heatmap" not in part_columns(p) for p in part_files(out))


def test_evaluate_refuses_scores_of_another_bundle_of_the_same_version(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``dermsight evaluate`` resumes its --out only with the bundle that scored it: the scores'
    own column says which (its evaluated.json records only the data)."""
    data = labelled_subset(tmp_path / "data", data_dir, metadata, per_class=1)
    ev = tmp_path / "ev"
    code, _, err = run(capsys, "evaluate", str(default_bundle_path()), str(data), "--out",
                       str(ev), "-q")
    assert code == 0, err
    assert json.loads((ev / "evaluated.json").read_text()) == {"data": str(data.resolve())}
    before = _snapshot(ev / "scores")
    code, _, err = run(capsys, "evaluate", str(_other_margins(tmp_path)), str(data), "--out",
                       str(ev), "-q")
    assert code == 2, err
    line = _one_line(err)
    assert line.startswith(f"error: {ev / 'scores'} holds ")
    assert "scored by another bundle" in line
    assert _snapshot(ev / "scores") == before
    # an evaluation folder of an older dermsight: its evaluated.json named the bundle
    (ev / "evaluated.json").write_text(json.dumps(
        {"bundle_card_sha256": "0" * 64, "data": str(data.resolve())}))
    strip_columns(ev / "scores", ["card_sha256"])
    code, _, err = run(capsys, "evaluate", str(default_bundle_path()), str(data), "--out",
                       str(ev), "-q")
    assert _one_line(err).startswith(f"error: --out {ev} holds scores this evaluation cannot "
                                     "resume (of another bundle, recorded in evaluated.json)")
    assert code == 2


def test_adapt_refuses_scores_of_another_bundle_before_writing(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``bundle adapt`` scores into a batch output (--scores): scores of another bundle of the
    same version (here: the same network, other decision margins) are refused by the store,
    before anything is written."""
    pytest.importorskip("sklearn")
    clinic = labelled_subset(tmp_path / "clinic", data_dir, metadata, per_class=1)
    listing = clinic / "metadata.csv"
    every = listing.read_text()
    pd.read_csv(listing).head(3).to_csv(listing, index=False)  # an interrupted scoring
    scores, out = tmp_path / "scores", tmp_path / "adapted"
    adapt = ["bundle", "adapt", str(clinic), "--scores", str(scores), "--out", str(out),
             "--name", "Clinic A", "-q"]
    code, _, err = run(capsys, *adapt)
    assert code == 4, err  # 3 cases: too few, the scores stay
    listing.write_text(every)
    around = sorted(p.name for p in tmp_path.iterdir())
    before = {p.name: p.read_bytes() for p in sorted(scores.iterdir()) if p.name != "_lock"}
    figures = tmp_path / "adapted.assessment.json"
    report = figures.read_bytes() if figures.exists() else None
    other = _other_margins(tmp_path)
    code, _, err = run(capsys, *adapt, "--bundle", str(other))
    assert code == 2, err
    line = _one_line(err)
    assert line.startswith(f"error: {scores} holds 3 rows scored by another bundle, {NAME} "
                           f"(card.json sha256 {SHIPPED[:12]}…)"), line
    assert "Use another --scores" in line
    # nothing written: no part, summary or marker file, no bundle, the same figures
    assert {p.name: p.read_bytes() for p in sorted(scores.iterdir())
            if p.name != "_lock"} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p != other) == around
    assert (figures.read_bytes() if figures.exists() else None) == report
    # the bundle that scored them resumes them (then too few cases: refused, exit 4)
    code, text, err = run(capsys, *adapt)
    assert code == 4, err
    assert "3 already done (skipped)" in text
    assert read_output(scores)["card_sha256"].tolist() == [SHIPPED] * len(every.splitlines()[1:])


@pytest.mark.spark
@pytest.mark.slow
def test_spark_records_the_same_card_sha256_and_refuses_another_bundle(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The executors load the bundle shipped with ``addFile``: the rows hold the same value as
    the local engine's, and the same check refuses another bundle."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")
    out = tmp_path / "out"
    spark = ["--engine", "spark", "--master", "local[1]", "--partitions", "1"]
    code, _, err = _batch(capsys, images, out, *spark, "--limit", "2")
    assert code == 0, err
    assert read_output(out)["card_sha256"].tolist() == [SHIPPED] * 2
    before = _snapshot(out)
    code, _, err = _batch(capsys, images, out, *spark, "--model", str(_other_margins(tmp_path)))
    assert code == 2, err
    assert f"error: {out} holds 2 rows scored by another bundle, {NAME}" in err
    assert _snapshot(out) == before


def test_adapt_uses_only_the_cases_its_data_lists(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A --scores folder that also holds rows of other data (here: a batch output of another
    labelled folder, scored by the same bundle) lends none of them to the update."""
    pytest.importorskip("sklearn")
    others = labelled_subset(tmp_path / "others", data_dir, metadata, per_class=1)
    scores = tmp_path / "scores"
    assert run(capsys, "batch", str(others), "--out", str(scores), "-q")[0] == 0
    n_others = len(read_output(scores))
    clinic = tmp_path / "clinic"
    rows = metadata[~metadata["image_id"].isin(read_output(scores)["id"])].head(3)
    clinic.mkdir()
    rows.to_csv(clinic / "metadata.csv", index=False)
    for i in rows["image_id"]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", clinic / f"{i}.jpg")
    code, _, err = run(capsys, "bundle", "adapt", str(clinic), "--scores", str(scores),
                       "--out", str(tmp_path / "adapted"), "--name", "Clinic A", "-q")
    assert code == 4, err  # refused as too few: its own 3 cases, not 3 + the others'
    used = re.search(r"(\d+) usable labelled cases", err)
    assert used is not None, err
    assert int(used.group(1)) <= 3 < n_others, err
    assert len(read_output(scores)) == n_others + 3  # the clinic's cases were scored beside


@pytest.mark.parametrize("marker", [None, "another", "this"])
def test_adapt_resumes_unrecorded_scores_only_under_the_older_marker_of_its_network(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str], marker: str | None) -> None:
    """Scores an older dermsight wrote do not record their bundle in each row; that dermsight
    named the network in SCORES.network. Without it, or naming another network, they are refused
    before anything is written; naming this network, they are resumed."""
    pytest.importorskip("sklearn")
    clinic = labelled_subset(tmp_path / "clinic", data_dir, metadata, per_class=1)
    scores = tmp_path / "scores"
    assert run(capsys, "batch", str(clinic), "--out", str(scores), "--limit", "2", "-q")[0] == 0
    strip_columns(scores, ["card_sha256"])
    network = load_bundle(default_bundle_path()).card.onnx_sha256
    if marker is not None:
        (tmp_path / "scores.network").write_text(
            (network if marker == "this" else "0" * 64) + "\n")
    before = {p.name: p.read_bytes() for p in part_files(scores)}
    code, _, err = run(capsys, "bundle", "adapt", str(clinic), "--scores", str(scores),
                       "--out", str(tmp_path / "adapted"), "--name", "Clinic A", "-q")
    if marker == "this":
        assert code == 4, err  # resumed and scored; refused only as too few cases
        assert len(read_output(scores)) > 2
        return
    assert code == 2, err
    line = _one_line(err)
    whose = "another network's" if marker else "an unknown network's"
    assert line.startswith(f"error: {scores} holds 2 rows of {whose} scores"), line
    assert line.endswith("or give --scores another folder"), line
    assert {p.name: p.read_bytes() for p in part_files(scores)} == before
