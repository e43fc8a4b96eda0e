"""The Spark engine against the local one on what an audit found it dropping or mangling: every
file of a folder scored (``_`` names, ``.Jpg``, empty files), DICOM tags kept, a quiet ``-q``,
one line for workers without dermsight, and a job committed in slices that a re-run resumes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pyspark")

import dermsight.batch.spark as spark_engine
from dermsight.batch.local import run_local
from dermsight.batch.spark import get_session, run_spark
from dermsight.batch.store import read_output
from dermsight.io.dicom import patient_pseudonym, write_dicom
from test_batch_spark import _compare

pytestmark = [pytest.mark.spark, pytest.mark.slow]

CLI = [sys.executable, "-c", "from dermsight.cli import main; main()", "batch"]
#: a log4j line: "26/12/07 01:23:19 WARN NativeCodeLoader: ..."
LOG4J_LINE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (WARN|INFO) ", re.MULTILINE)


def _needs_java() -> None:
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    _needs_java()
    session = get_session("local[2]")
    yield session
    session.stop()


def _images(data_dir: Path, n: int) -> list[Path]:
    return sorted((data_dir / "images").glob("*.jpg"))[:n]


def _awkward_folder(data_dir: Path, folder: Path) -> dict[str, str]:
    """A folder of real images that Spark's ``binaryFile`` source used to drop or mangle:
    relative path -> why."""
    src = _images(data_dir, 8)
    (folder / "_batch2").mkdir(parents=True)
    why = {
        "plain.jpg": "an ordinary file",
        "_underscore.jpg": "Hadoop hides names starting with _",
        "_batch2/inner.jpg": "... and folders starting with _",
        "mixed.Jpg": "the glob matched only .jpg and .JPG",
        "mixed2.Jpeg": "... and .jpeg / .JPEG",
        "zero.jpg": "binaryFile skips empty files (an error row)",
        "empty.dcm": "... an empty DICOM too (an error row)",
        "p1.dcm": "DICOM: source 'dicom' and group = PatientID's pseudonym",
        "p2.Dcm": "... with a mixed-case extension",
        "nopixels.dcm": "a DICOM error row keeps its tags",
    }
    for name, image in zip(["plain.jpg", "_underscore.jpg", "_batch2/inner.jpg", "mixed.Jpg",
                            "mixed2.Jpeg"], src[:5], strict=True):
        shutil.copyfile(image, folder / name)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "empty.dcm").write_bytes(b"")
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in src[5:7]]
    write_dicom(folder / "p1.dcm", rgb[0], 45, "male", "back", patient_id="PAT-1")
    write_dicom(folder / "p2.Dcm", rgb[1], 60, "female", "head/neck", patient_id="PAT-2")
    write_dicom(folder / "nopixels.dcm", rgb[0], 30, "female", "back", patient_id="PAT-3",
                pixels=False)
    return why


def test_spark_scores_every_file_of_a_folder_and_its_dicom_tags_like_local(
    data_dir: Path, tmp_path: Path,
) -> None:
    _needs_java()
    folder = tmp_path / "in"
    why = _awkward_folder(data_dir, folder)
    run_local(folder, tmp_path / "local", progress=False)
    local = read_output(tmp_path / "local")
    assert len(local) == len(why)
    run = subprocess.run([*CLI, str(folder), "--out", str(tmp_path / "spark"), "--engine",
                          "spark", "--master", "local[1]", "-q"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    assert run.returncode == 1, run.stderr  # the empty files and the DICOM without pixels
    dist = read_output(tmp_path / "spark")
    found = {str(Path(p).relative_to(folder)) for p in dist["path"]}
    assert found == set(why), {k: v for k, v in why.items() if k not in found}
    assert "this run: 10 rows" in run.stdout
    _compare(local, dist)  # every column: source, group, age, sex, site, error, scores
    dicom = dist.set_index("id").loc[["p1", "p2", "nopixels"]]
    assert dicom["source"].tolist() == ["dicom"] * 3
    assert dicom["group"].tolist() == [patient_pseudonym(f"PAT-{n}") for n in (1, 2, 3)]
    assert dicom.loc["nopixels", "error"]
    assert dicom.loc["nopixels", "sex"] == "female"
    errors = dist.set_index("id")["error"].dropna()
    assert sorted(errors.index) == ["empty", "nopixels", "zero"]
    assert "empty file (0 bytes)" in errors["zero"]
    # -q: no log4j WARN/INFO lines (NativeCodeLoader, "Truncated the string representation")
    assert not LOG4J_LINE.search(run.stderr), run.stderr
    assert "log4j" not in run.stderr, run.stderr


def test_spark_workers_without_dermsight_is_one_line_and_exit_2(
    data_dir: Path, tmp_path: Path,
) -> None:
    _needs_java()
    other = Path("/usr/bin/python3")
    probe = "import sys, importlib.util as u; print(sys.version_info[:2], u.find_spec('dermsight'))"
    if not other.exists():
        pytest.skip("needs a system Python without dermsight")
    seen = subprocess.run([str(other), "-c", probe], capture_output=True, text=True, env={},
                          check=False).stdout.strip()
    if seen != f"{tuple(sys.version_info[:2])} None":
        pytest.skip(f"{other} is another Python version or has dermsight: {seen}")
    folder = tmp_path / "in"
    folder.mkdir()
    for image in _images(data_dir, 3):
        shutil.copyfile(image, folder / image.name)
    out = tmp_path / "out"
    run = subprocess.run([*CLI, str(folder), "--out", str(out), "--engine", "spark",
                          "--master", "local[1]", "-q"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYSPARK_PYTHON": str(other)})
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "Py4J" not in run.stderr, run.stderr[-3000:]
    lines = [ln for ln in run.stderr.splitlines()
             if not ln.startswith("WARNING: Using incubator modules")]  # the JVM's own line
    assert len(lines) == 1, run.stderr[-3000:]
    assert lines[0].startswith("error: the Spark workers cannot import dermsight: set "
                               "PYSPARK_PYTHON to a Python that has it installed")
    assert str(other) in lines[0]
    assert not list(out.glob("part-*"))


def test_a_spark_job_stopped_between_slices_keeps_them_and_resumes(
    spark: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each slice of SLICE_ROWS input rows is its own committed job: a job stopped after two
    slices keeps their rows, and the re-run scores only the rest."""
    folder = tmp_path / "in"
    folder.mkdir()
    images = _images(data_dir, 10)
    for image in images:
        shutil.copyfile(image, folder / image.name)
    monkeypatch.setattr(spark_engine, "SLICE_ROWS", 4)
    real_save = spark_engine._save
    saves: list[int] = []

    def killed_after_two(result: Any, out: Path, fmt: str) -> None:
        if len(saves) == 2:
            raise RuntimeError("killed")  # the job dies before its third slice
        saves.append(1)
        real_save(result, out, fmt)

    monkeypatch.setattr(spark_engine, "_save", killed_after_two)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="killed"):
        run_spark(folder, out, partitions=2)
    kept = read_output(out)
    assert sorted(kept["id"]) == sorted(p.stem for p in images[:8])  # two slices of 4, in order
    monkeypatch.setattr(spark_engine, "_save", real_save)
    again = run_spark(folder, out, partitions=2)
    assert (again.skipped, again.scored, again.errors) == (8, 2, 0)
    dist = read_output(out)
    assert sorted(dist["id"]) == sorted(p.stem for p in images)
    assert dist["id"].is_unique
    run_local(folder, tmp_path / "local", progress=False)
    _compare(read_output(tmp_path / "local"), dist)


def test_spark_says_which_scored_rows_the_input_now_gives_other_metadata(
        spark: Any, tmp_path: Path, data_dir: Path) -> None:
    """As the local runner: a done row whose age/sex/site the input changed keeps its scores,
    and the run counts it (``metadata_changed``)."""
    import pandas as pd

    manifest = tmp_path / "manifest.csv"
    table = pd.DataFrame({"path": [str(p) for p in _images(data_dir, 3)],
                          "age": ["45", "60", "30"], "sex": ["female", "male", "female"],
                          "site": ["back", "face", "lower extremity"]})
    table.to_csv(manifest, index=False)
    out = tmp_path / "out"
    run_spark(manifest, out, partitions=1)
    assert run_spark(manifest, out, partitions=1).metadata_changed == 0
    table.loc[0, "age"] = "50"
    table.to_csv(manifest, index=False)
    again = run_spark(manifest, out, partitions=1)
    assert (again.scored, again.skipped, again.metadata_changed) == (0, 3, 1)
