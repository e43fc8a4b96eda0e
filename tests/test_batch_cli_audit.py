"""Fixes of an audit of ``dermsight batch``, on real images of the shared isic-subset:

* ``--heatmaps``: an id longer than an overlay name may be (180 characters) whose name is taken
  (an orphan overlay of a killed run, or the same long file name in two sub-folders) gets a
  numbered name that is still an overlay name, instead of a crash on every run;
* ``--format csv`` into the input folder itself is refused before any work (its CSV parts
  would become the folder's listing); a folder inside it, or beside a CSV manifest, is fine;
* ``--evaluate`` leaves the images the gate refused ("cannot assess") out of its figures and
  says how many (and how many malignant);
* a re-run whose input now gives other metadata for rows already scored says so;
* a Ctrl-C writes ``_summary.json`` of what the output holds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cli_support import run
from dermsight.batch.local import run_local
from dermsight.batch.options import ScoreOptions
from dermsight.batch.overlays import UniqueNames, is_overlay_name, safe_name
from dermsight.batch.store import part_files, read_output
from dermsight.batch.summary import sidecar

MEL = ["ISIC_0000002", "ISIC_0000004", "ISIC_0000013", "ISIC_0000022"]
NV = ["ISIC_0000000", "ISIC_0000001", "ISIC_0000003", "ISIC_0000006"]
LONG = "lesion_" + "a" * 244  # 251 characters: a file name of 255 with ".jpg"


def _one_error_line(code: int, err: str, text: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert text in lines[0], err


# --- 1. overlay names of long ids ----------------------------------------------------------


def test_numbered_names_of_a_long_id_are_overlay_names() -> None:
    stem = safe_name(LONG)
    assert len(stem) == 180
    names = UniqueNames([stem + ".png"])
    got = [names.claim(stem, ".png") for _ in range(11)]
    assert len({n.casefold() for n in got}) == 11
    assert all(is_overlay_name(n) for n in got), got
    assert got[0].endswith("-2.png")
    assert got[-1].endswith("-12.png")
    assert all(len(n) <= 180 + len(".png") for n in got)


def test_long_id_whose_overlay_name_is_taken_is_scored(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path) -> None:
    """An orphan overlay named as the long id's first name (a killed run's), and the same long
    file name in two sub-folders: every row gets its own overlay, the job ends with exit 0."""
    folder = tmp_path / "in"
    for sub, image in (("a", NV[0]), ("b", NV[1])):
        (folder / sub).mkdir(parents=True)
        shutil.copyfile(data_dir / "images" / f"{image}.jpg", folder / sub / f"{LONG}.jpg")
    heat = tmp_path / "heat"
    heat.mkdir()
    orphan = heat / f"{safe_name(LONG)}.png"
    orphan.write_bytes(b"a killed run's overlay")
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(folder), "--out", str(out), "--heatmaps", str(heat),
                       "-q")
    assert code == 0, err
    df = read_output(out).sort_values("path")
    names = df["heatmap"].tolist()
    assert len(set(names)) == 2
    assert orphan.name not in names
    assert all(is_overlay_name(n) and (heat / n).stat().st_size > 0 for n in names)
    assert orphan.read_bytes() == b"a killed run's overlay"
    assert sorted(p.name for p in heat.iterdir()) == sorted([orphan.name, *names])


# --- 2. --out inside the input folder -------------------------------------------------------


def test_csv_parts_into_the_input_folder_are_refused_where_they_would_be_its_listing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path) -> None:
    """A folder's CSVs at its top are its listing: --format csv with --out the input folder is
    refused (exit 2, one line, nothing written). CSV parts in a folder inside it, or beside a
    CSV manifest, are read by no later run: accepted, and a re-run finds its rows done."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in NV[:2]:
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    before = sorted(p.name for p in folder.iterdir())
    for out in (folder, folder / ".." / "in"):
        code, _, err = run(capsys, "batch", str(folder), "--out", str(out), "--format", "csv")
        _one_error_line(code, err, f"--out {out} is the input folder {folder}: its CSV parts")
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing written

    inside = folder / "results"
    for _ in range(2):
        code, stdout, err = run(capsys, "batch", str(folder), "--out", str(inside), "--format",
                                "csv", "-q")
        assert code == 0, err
    assert "0 scored, 0 errors, 2 already done" in stdout

    manifest = folder / "manifest.csv"
    pd.DataFrame({"path": [f"{i}.jpg" for i in NV[:2]]}).to_csv(manifest, index=False)
    for _ in range(2):  # the re-run reads the manifest, not the CSV parts beside it
        code, stdout, err = run(capsys, "batch", str(manifest), "--out", str(folder / "m"),
                                "--format", "csv", "-q")
        assert code == 0, err
    assert "0 scored, 0 errors, 2 already done" in stdout


# --- 3. --evaluate and the images the gate refused ------------------------------------------


def test_evaluate_leaves_out_the_images_the_gate_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path,
        metadata: pd.DataFrame) -> None:
    """A black-and-white copy of a real melanoma image is refused ("cannot assess"): the
    figures are of the other images, and the report, the JSON and the summary say so."""
    folder = tmp_path / "in"
    folder.mkdir()
    ids = MEL + NV
    for i in ids:
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    grey = MEL[0]
    Image.open(folder / f"{grey}.jpg").convert("L").convert("RGB").save(folder / f"{grey}.jpg")
    rows = metadata[metadata["image_id"].isin(ids)]
    rows[["image_id", "diagnosis", "age_approx", "sex", "anatom_site"]].to_csv(
        folder / "metadata.csv", index=False)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "batch", str(folder), "--out", str(out), "--evaluate", "-q")
    assert code == 0, err
    df = read_output(out).set_index("id")
    refused = df.index[df["risk"] == "cannot_assess"].tolist()
    assert grey in refused
    n_mel_refused = sum(i in MEL for i in refused)
    evaluation = json.loads(sidecar(out, "evaluation.json").read_text())
    assert evaluation["n"] == len(ids) - len(refused)
    assert evaluation["gate_refused"] == {"images": len(refused), "malignant": n_mel_refused}
    # the refer sensitivity is of the melanomas that got a tier: those the gate refused are
    # not counted as referred (their raw probabilities are not a result)
    mel_high = int((df.loc[[i for i in MEL if i not in refused], "risk"] == "high").sum())
    sens = evaluation["metrics"]["refer_sensitivity"]
    assert sens == pytest.approx(mel_high / (len(MEL) - n_mel_refused))
    note = (f"{len(refused)} image{'s' if len(refused) != 1 else ''} the gate refused "
            f"({n_mel_refused} malignant)")
    assert f"evaluation: {note}" in stdout
    report = sidecar(out, "report.html").read_text(encoding="utf-8")
    assert note in report
    assert "refused by the gate: cannot assess (left out)" in report


# --- 4. corrected metadata of rows already scored -------------------------------------------


def test_rerun_says_which_scored_rows_the_input_now_gives_other_metadata(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    paths = [str(data_dir / "images" / f"{i}.jpg") for i in NV[:3]]
    table = pd.DataFrame({"path": paths, "age": ["45", "60", "30"],
                          "sex": ["female", "male", "female"],
                          "site": ["back", "face", "lower extremity"]})
    table.to_csv(manifest, index=False)
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(manifest), "--out", str(out), "-q")
    assert code == 0, err
    code, _, err = run(capsys, "batch", str(manifest), "--out", str(out), "-q")
    assert code == 0, err
    assert "metadata" not in err  # unchanged input: no warning
    table.loc[0, "age"] = "50"
    table.loc[1, "site"] = "back"
    table.to_csv(manifest, index=False)
    code, stdout, err = run(capsys, "batch", str(manifest), "--out", str(out), "-q")
    assert code == 0, err
    assert "0 scored, 0 errors, 3 already done" in stdout
    assert ("warning: 2 rows already scored differ from the input's metadata now "
            "(age/sex/site): they keep their old scores; use a new --out to re-score") in err
    assert json.loads((out / "_summary.json").read_text())["metadata_changed"] == 2
    kept = read_output(out).set_index("path")
    assert kept.loc[paths[0], "age"] == 45  # documented: the key is (id, path)


# --- 5. Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_writes_the_summary_of_what_the_output_holds(
        tmp_path: Path, data_dir: Path) -> None:
    """A Ctrl-C once the first part is written (raised where the signal handler would raise
    it): the rows kept and ``_summary.json`` saying the run was interrupted."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in NV + MEL[1:]:
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    out = tmp_path / "out"

    def interrupt(part: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_local(folder, out, ScoreOptions(workers=1, batch_size=2), chunk_size=2,
                  progress=False, on_part=interrupt)
    assert len(part_files(out)) == 1
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["scored"] == 2
    assert summary["total"]["rows"] == 2 == len(read_output(out))
    # the next run resumes, and its summary is a normal end's
    done = run_local(folder, out, ScoreOptions(workers=1), progress=False)
    assert (done.scored, done.skipped) == (5, 2)
    assert json.loads((out / "_summary.json").read_text())["interrupted"] is False


def test_a_dicom_row_leaving_metadata_to_its_tags_is_not_called_changed() -> None:
    """A DICOM row (``.dcm`` or ``.dicom``) that leaves a field to the file's tags holds the
    tags' value in the output, not the input's empty cell: not a change. Any other file's
    changed age is."""
    from dermsight.batch.resume import MetadataCheck

    check = MetadataCheck()
    check.add(pd.DataFrame({"id": ["a", "b", "c"], "path": ["/x/a.dcm", "/x/b.dicom", "/x/c.jpg"],
                            "age": [45.0, 50.0, 30.0], "sex": ["male"] * 3,
                            "site": ["back"] * 3}))
    for i, path in (("a", "/x/a.dcm"), ("b", "/x/b.dicom")):
        check.see({"id": i, "path": path, "age": None, "sex": "male", "site": "back"})
    assert check.changed() == 0
    check.see({"id": "c", "path": "/x/c.jpg", "age": 31, "sex": "male", "site": "back"})
    assert check.changed() == 1
