"""Batch heatmaps joined to their rows (the ``heatmap`` column), unique over a whole job (local
threads, resumed runs, Spark partitions), outputs written before that column, and two input
fixes: ``.jfif`` / ``.jpe`` files are JPEGs, and a CSV id whose only file is of a refused format
says what to send instead."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from batch_support import assessable_images, overlay_of, png_pixels
from dermsight.batch.schema import output_columns
from dermsight.batch.store import OutputError, part_files, read_output
from dermsight.cli import main as cli_main
from dermsight.predict import Dermsight

#: The first bytes of a HEIC file (an ISO-BMFF ``ftyp`` box with the ``heic`` brand): what an
#: iPhone photo starts with; sniffed as HEIC by the decoder, like a real one.
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
HEIC_REASON = ("HEIC/HEIF files are not accepted: send a JPEG, PNG, WebP, BMP or TIFF photo, "
               "or a DICOM file")


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=2)


@pytest.fixture(scope="module")
def assessable(model: Dermsight, data_dir: Path, metadata: pd.DataFrame) -> list[Path]:
    """Five real images the gate accepts (each gets a heatmap)."""
    return assessable_images(model, data_dir, metadata, 5, 97)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        cli_main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def _same_id_folder(images: list[Path], root: Path) -> Path:
    """Three different images that all have the id ``x`` (``X`` once: the same file name on a
    case-insensitive file system), a truncated JPEG and a refused GIF."""
    _copy(images[0], root / "a" / "x.jpg")
    _copy(images[1], root / "b" / "x.jpg")
    _copy(images[2], root / "c" / "X.jpg")
    _copy(images[3], root / "d" / "other.jpg")
    (root / "d" / "broken.jpg").write_bytes(images[4].read_bytes()[:300])
    (root / "d" / "anim.gif").write_bytes(b"GIF89a" + bytes(40))
    return root


# --- the heatmap column ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_each_row_names_its_own_heatmap_when_ids_repeat(
    model: Dermsight, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], fmt: str,
) -> None:
    folder = _same_id_folder(assessable, tmp_path / "in")
    out, heat = tmp_path / "out", tmp_path / "heat"
    code, _, err = _cli(["batch", str(folder), "--out", str(out), "--heatmaps", str(heat),
                         "--format", fmt, "--workers", "2", "--batch-size", "1", "-q"], capsys)
    assert code == 1, err  # the two bad files are error rows
    df = read_output(out)
    assert list(df.columns) == output_columns(model.classes)
    assert "heatmap" in df.columns
    by_path = df.set_index("path")["heatmap"].to_dict()
    # planned in input order; X collides with x on a case-insensitive file system
    assert by_path[str(folder / "a" / "x.jpg")] == "x.png"
    assert by_path[str(folder / "b" / "x.jpg")] == "x-2.png"
    assert by_path[str(folder / "c" / "X.jpg")] == "X-3.png"
    assert by_path[str(folder / "d" / "other.jpg")] == "other.png"
    errors = df[df["error"].notna()]
    assert sorted(errors["id"]) == ["anim", "broken"]
    assert errors["heatmap"].isna().all()  # no heatmap: null
    # every file is some row's, and holds that row's own image's overlay
    assert sorted(p.name for p in heat.iterdir()) == sorted(df["heatmap"].dropna())
    for path, name in by_path.items():
        if isinstance(name, str):
            assert np.array_equal(png_pixels(heat / name), overlay_of(model, Path(path))), name
    # the warning about repeated ids no longer says which heatmap is whose is unknown
    assert "repeat an id" in err
    assert "not recorded" not in err


def test_without_heatmaps_the_column_is_empty_and_cannot_assess_rows_have_none(
    model: Dermsight, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    _copy(assessable[0], folder / "ok.jpg")
    Image.fromarray(np.full((200, 260, 3), 3, np.uint8)).save(folder / "dark.png")
    code, _, err = _cli(["batch", str(folder), "--out", str(tmp_path / "plain"), "-q"], capsys)
    assert code == 0, err
    plain = read_output(tmp_path / "plain")
    assert len(plain) == 2
    assert plain["heatmap"].isna().all()
    code, _, err = _cli(["batch", str(folder), "--out", str(tmp_path / "heat-out"),
                         "--heatmaps", str(tmp_path / "heat"), "-q"], capsys)
    assert code == 0, err
    rows = read_output(tmp_path / "heat-out").set_index("id")
    assert rows.loc["dark", "risk"] == "cannot_assess"
    assert rows.loc["dark", "heatmap"] is None  # refused by the gate: no overlay
    assert rows.loc["ok", "heatmap"] == "ok.png"
    assert [p.name for p in (tmp_path / "heat").iterdir()] == ["ok.png"]


def test_a_resumed_run_never_reuses_a_name_a_kept_row_holds(
    model: Dermsight, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    _copy(assessable[0], folder / "a" / "x.jpg")
    _copy(assessable[1], folder / "b" / "x.jpg")
    out, heat = tmp_path / "out", tmp_path / "heat"
    argv = ["batch", str(folder), "--out", str(out), "--heatmaps", str(heat), "-q"]
    assert _cli([*argv, "--limit", "1"], capsys)[0] == 0
    first = (heat / "x.png").read_bytes()
    code, out_text, err = _cli(argv, capsys)
    assert code == 0, err
    assert "1 already done" in out_text
    df = read_output(out).set_index("path")["heatmap"]
    assert df.to_dict() == {str(folder / "a" / "x.jpg"): "x.png",
                            str(folder / "b" / "x.jpg"): "x-2.png"}
    assert (heat / "x.png").read_bytes() == first  # a's overlay was not overwritten by b's
    assert np.array_equal(png_pixels(heat / "x-2.png"), overlay_of(model, assessable[1]))


# --- outputs written before the heatmap column ----------------------------------------------------


def _strip_heatmap_column(out: Path) -> None:
    """Rewrite the parts as a dermsight without the heatmap column wrote them."""
    for part in part_files(out):
        if part.suffix == ".csv":
            pd.read_csv(part, dtype=str, keep_default_na=False).drop(
                columns=["heatmap"]).to_csv(part, index=False)
        else:
            table = pq.read_table(part)
            pq.write_table(table.drop(["heatmap"]), part)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_output_written_before_the_heatmap_column_resumes(
    model: Dermsight, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], fmt: str,
) -> None:
    folder = tmp_path / "in"
    for n, img in enumerate(assessable[:4]):
        _copy(img, folder / f"lesion{n}.jpg")
    out, heat = tmp_path / "out", tmp_path / "heat"
    argv = ["batch", str(folder), "--out", str(out), "--format", fmt, "--heatmaps", str(heat),
            "--chunk-size", "1", "-q"]
    assert _cli([*argv, "--limit", "2"], capsys)[0] == 0
    _strip_heatmap_column(out)
    assert all("heatmap" not in pq.read_schema(p).names for p in part_files(out, "parquet"))

    code, text, err = _cli(argv, capsys)
    assert code == 0, err
    assert "2 already done" in text
    for part in part_files(out):  # upgraded in place: every part has the column now
        cols = (list(pd.read_csv(part, nrows=0).columns) if part.suffix == ".csv"
                else pq.read_schema(part).names)
        assert cols == output_columns(model.classes), part.name
    df = read_output(out).set_index("id")
    assert sorted(df.index) == [f"lesion{n}" for n in range(4)]  # no row lost or repeated
    assert df.loc[["lesion0", "lesion1"], "heatmap"].isna().all()  # not recorded then
    assert df.loc["lesion2", "heatmap"] == "lesion2.png"
    assert df.loc["lesion3", "heatmap"] == "lesion3.png"
    assert _cli(argv, capsys)[1].count("4 already done") == 1  # and it resumes again


def test_an_output_with_other_columns_is_refused_naming_them(
    assessable: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    _copy(assessable[0], folder / "a.jpg")
    out = tmp_path / "out"
    assert _cli(["batch", str(folder), "--out", str(out), "-q"], capsys)[0] == 0
    (part,) = part_files(out)
    pq.write_table(pq.read_table(part).drop(["ita", "heatmap"]), part)  # before ita, too
    code, _, err = _cli(["batch", str(folder), "--out", str(out), "-q"], capsys)
    assert code == 2
    assert "missing: ita" in err
    assert "use another --out" in err
    assert pq.read_schema(part).names.count("heatmap") == 0  # left as it was
    from dermsight.batch.local import run_local

    with pytest.raises(OutputError, match="older dermsight"):
        run_local(folder, out, progress=False)


# --- Spark: names unique over the whole job -------------------------------------------------------


@pytest.fixture
def spark_ready() -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")


@pytest.mark.spark
@pytest.mark.slow
def test_spark_names_are_unique_across_partitions(
    spark_ready: None, model: Dermsight, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Rows with one id in different partitions (tasks) get different files, each its own."""
    imgs = tmp_path / "imgs"
    paths = [_copy(img, imgs / f"{n}.jpg") for n, img in enumerate(assessable)]
    ids = ["lesion", "lesion", "Lesion", "lesion", "other"]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"id": ids, "path": [str(p) for p in paths]}).to_csv(manifest, index=False)
    out, heat = tmp_path / "out", tmp_path / "heat"
    code, _, err = _cli(["batch", str(manifest), "--out", str(out), "--heatmaps", str(heat),
                         "--engine", "spark", "--master", "local[2]", "--partitions", "2",
                         "-q"], capsys)
    assert code == 0, err
    # the premise: Spark scored rows of the same id in different tasks (one part file each)
    parts = {str(p): part.name for part in part_files(out)
             for p in pd.read_parquet(part, columns=["path"])["path"]}
    assert len({parts[str(p)] for p in paths[:4]}) == 2, parts
    df = read_output(out)
    assert len(df) == 5
    by_path = df.set_index("path")["heatmap"].to_dict()
    names = [by_path[str(p)] for p in paths]
    assert names == ["lesion.png", "lesion-2.png", "Lesion-3.png", "lesion-4.png", "other.png"]
    assert sorted(p.name for p in heat.iterdir()) == sorted(names)
    for p, name in zip(paths, names, strict=True):
        got = png_pixels(heat / name).astype(np.int16)
        own = np.abs(got - overlay_of(model, p)).mean()
        others = [np.abs(got - overlay_of(model, q)).mean() for q in paths if q != p]
        assert own < 1.0 < min(others), (name, own, others)


# --- .jfif / .jpe files are JPEGs -----------------------------------------------------------------


def test_jfif_and_jpe_files_are_listed_and_scored_like_jpg(
    assessable: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    _copy(assessable[0], folder / "same.jpg")
    _copy(assessable[0], folder / "photo.jfif")
    _copy(assessable[1], folder / "sub" / "scan.JPE")
    code, _, err = _cli(["batch", str(folder), "--out", str(tmp_path / "out"), "-q"], capsys)
    assert code == 0, err
    df = read_output(tmp_path / "out").set_index("id")
    assert sorted(df.index) == ["photo", "same", "scan"]
    assert df["error"].isna().all()
    assert df.loc["scan", "path"] == str(folder / "sub" / "scan.JPE")
    probs = [c for c in df.columns if c.startswith("p_")]
    np.testing.assert_allclose(df.loc["photo", probs].to_numpy(float),
                               df.loc["same", probs].to_numpy(float), atol=1e-6)

    # a CSV naming the image by id finds it as a .jfif file too
    ds = tmp_path / "ds"
    _copy(assessable[0], ds / "images" / "ISIC_9000001.jfif")
    (ds / "metadata.csv").write_text("image_id,diagnosis\nISIC_9000001,NV\n")
    code, _, err = _cli(["batch", str(ds), "--out", str(tmp_path / "out-csv"), "-q"], capsys)
    assert code == 0, err
    row = read_output(tmp_path / "out-csv").iloc[0]
    assert row["path"] == str(ds / "images" / "ISIC_9000001.jfif")
    np.testing.assert_allclose(row[probs].to_numpy(float), df.loc["same", probs].to_numpy(float),
                               atol=1e-6)


# --- a CSV id with only a file of a refused format ------------------------------------------------


def test_a_csv_id_with_only_a_refused_file_says_what_to_send_then_takes_the_jpeg(
    assessable: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    ds = tmp_path / "ds"
    _copy(assessable[0], ds / "images" / "ISIC_9000001.jpg")
    (ds / "images" / "ISIC_9000002.heic").write_bytes(HEIC)
    (ds / "metadata.csv").write_text(
        "image_id,diagnosis\nISIC_9000001,NV\nISIC_9000002,NV\nISIC_9000003,NV\n")
    out = tmp_path / "out"
    argv = ["batch", str(ds), "--out", str(out), "-q"]
    code, _, err = _cli(argv, capsys)
    assert code == 1, err
    rows = read_output(out).set_index("id")
    refused = rows.loc["ISIC_9000002"]
    assert f"ISIC_9000002.heic: {HEIC_REASON}" in refused["error"], refused["error"]
    assert "not found" not in refused["error"]
    assert "not found" in rows.loc["ISIC_9000003", "error"]  # truly missing: unchanged
    # the same reason a folder input gives for that file
    code, _, _ = _cli(["batch", str(ds / "images"), "--out", str(tmp_path / "f"), "-q"], capsys)
    folder_error = read_output(tmp_path / "f").set_index("id").loc["ISIC_9000002", "error"]
    assert refused["error"].endswith(folder_error), (refused["error"], folder_error)

    # the JPEG sent instead (the HEIC kept beside it) replaces the error row on the next run
    _copy(assessable[1], ds / "images" / "ISIC_9000002.jpg")
    code, text, err = _cli(argv, capsys)
    assert code == 1, err  # ISIC_9000003 is still missing
    assert "retried: 2 error rows" in text
    df = read_output(out)
    assert sorted(df["id"]) == ["ISIC_9000001", "ISIC_9000002", "ISIC_9000003"]
    fixed = df.set_index("id").loc["ISIC_9000002"]
    assert fixed["error"] is None
    assert fixed["path"] == str(ds / "images" / "ISIC_9000002.jpg")


@pytest.fixture
def memory_fs() -> Iterator[fsspec.AbstractFileSystem]:
    fs = fsspec.filesystem("memory")
    yield fs
    if fs.exists("/refused-ds"):
        fs.rm("/refused-ds", recursive=True)


def test_a_remote_csv_id_with_only_a_refused_file_says_what_to_send(
    memory_fs: fsspec.AbstractFileSystem, assessable: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same through fsspec: a remote CSV (here fsspec's in-memory file system) whose ids
    have a .heic file, beside a .jpg (that one is used) or alone (what to send instead)."""
    memory_fs.pipe("/refused-ds/images/a.heic", HEIC)
    memory_fs.pipe("/refused-ds/images/a.jpg", assessable[0].read_bytes())
    memory_fs.pipe("/refused-ds/images/b.heic", HEIC)
    memory_fs.pipe("/refused-ds/metadata.csv", b"image_id,diagnosis\na,NV\nb,NV\n")
    code, _, err = _cli(["batch", "memory://refused-ds/metadata.csv",
                         "--out", str(tmp_path / "out"), "-q"], capsys)
    assert code == 1, err
    rows = read_output(tmp_path / "out").set_index("id")
    assert rows.loc["a", "error"] is None
    assert rows.loc["a", "path"] == "memory:///refused-ds/images/a.jpg"
    assert f"b.heic: {HEIC_REASON}" in rows.loc["b", "error"]
    assert rows.loc["b", "path"] is None
