"""Batch scoring: the shared core, the local runner, its inputs, errors, resume and the CLI."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermsight.batch.local import run_local
from dermsight.batch.options import ScoreOptions
from dermsight.batch.schema import output_columns, rows_to_frame
from dermsight.batch.scorer import score_frame
from dermsight.batch.store import OutputError, PartStore, part_files, read_output
from dermsight.batch.summary import evaluate_output, sidecar
from dermsight.bundle import default_bundle_path
from dermsight.cli import main as cli_main
from dermsight.evaluate.settings import EvalSettings
from dermsight.evaluate.skin_tone import ita_table
from dermsight.io.decode import decode_image
from dermsight.malignancy import malignant_probability
from dermsight.predict import CANNOT_ASSESS, Assessment, Dermsight, PreparedImage
from dermsight.skintone import BANDS, NOT_ESTIMABLE, ita_band, ita_for_images

TOL = 1e-6


# --- helpers ------------------------------------------------------------------------------------


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose IHDR claims a huge 8-bit RGB image (a decompression bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def copy_images(data_dir: Path, ids: list[str], dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i in ids:
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", dest / f"{i}.jpg")
    return dest


def add_bad_files(folder: Path, data_dir: Path, some_id: str) -> dict[str, str]:
    """A truncated JPEG, a text file named .jpg and a PNG bomb; -> {id: expected error text}."""
    good = (data_dir / "images" / f"{some_id}.jpg").read_bytes()
    (folder / "zz_truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "zz_text.jpg").write_text("this is not an image\n")
    (folder / "zz_bomb.png").write_bytes(png_bomb())
    return {"zz_truncated": "truncated", "zz_text": "not an image", "zz_bomb": "too large"}


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=2)


@pytest.fixture(scope="module")
def ids(metadata: pd.DataFrame) -> list[str]:
    """24 real images, class-diverse, with metadata."""
    picks = metadata.sort_values("image_id").groupby("diagnosis", sort=True).head(3)
    return sorted(picks["image_id"].tolist())


@pytest.fixture(scope="module")
def image_folder(data_dir: Path, ids: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_images(data_dir, ids, tmp_path_factory.mktemp("batch-images") / "imgs")


def frame_for(data_dir: Path, metadata: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    m = metadata.set_index("image_id").loc[ids]
    return pd.DataFrame({
        "id": ids,
        "path": [str(data_dir / "images" / f"{i}.jpg") for i in ids],
        "age": m["age_approx"].tolist(),
        "sex": m["sex"].tolist(),
        "site": m["anatom_site"].tolist(),
    })


# --- the core -----------------------------------------------------------------------------------


def test_score_frame_matches_the_facade(model: Dermsight, data_dir: Path,
                                        metadata: pd.DataFrame, ids: list[str]) -> None:
    df = frame_for(data_dir, metadata, ids)
    out = score_frame(df, model, ScoreOptions(batch_size=7, workers=2))
    assert list(out.columns) == output_columns(model.classes)
    assert out["id"].tolist() == ids
    assert out["error"].isna().all()
    for row, rec in zip(out.itertuples(index=False), df.itertuples(index=False), strict=True):
        pred = model.predict(rec.path, age=rec.age, sex=rec.sex, site=rec.site, heatmap=False)
        row_d = row._asdict()
        for c in model.classes:
            assert abs(row_d[f"p_{c}"] - pred.probabilities[c]) < TOL
        assert abs(row.malignant_probability - pred.malignant_probability) < TOL
        assert row.prediction == pred.prediction
        assert row.risk == pred.risk
        assert row.flags == ";".join(f.code for f in pred.flags)
        if pred.ood_score is not None:
            assert abs(row.ood_score - pred.ood_score) < 1e-5
        assert row.model_name == model.info["name"]
        assert row.model_version == model.info["version"]


def test_bytes_and_paths_give_the_same_rows(model: Dermsight, data_dir: Path,
                                            metadata: pd.DataFrame, ids: list[str]) -> None:
    by_path = frame_for(data_dir, metadata, ids[:8])
    by_bytes = by_path.assign(image=[Path(p).read_bytes() for p in by_path["path"]])
    a = score_frame(by_path, model)
    b = score_frame(by_bytes, model, ScoreOptions(workers=3, batch_size=3))
    prob = [f"p_{c}" for c in model.classes]
    np.testing.assert_allclose(a[prob].to_numpy(), b[prob].to_numpy(), atol=1e-5)
    assert a["risk"].tolist() == b["risk"].tolist()


def test_a_heavily_compressed_input_gets_the_note_in_the_flags_column(
        model: Dermsight, data_dir: Path, metadata: pd.DataFrame, ids: list[str]) -> None:
    from PIL import Image

    rows = frame_for(data_dir, metadata, ids[:2])
    buf = io.BytesIO()
    Image.open(rows["path"].iloc[1]).save(buf, format="JPEG", quality=40)
    rows = rows.assign(image=[Path(rows["path"].iloc[0]).read_bytes(), buf.getvalue()])
    out = score_frame(rows, model)
    assert out["error"].isna().all()
    assert "compressed" not in out["flags"].iloc[0].split(";")
    assert "compressed" in out["flags"].iloc[1].split(";")
    assert out["risk"].iloc[1] != "cannot_assess"


def test_the_run_summary_counts_rows_per_flag(data_dir: Path, ids: list[str],
                                               tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    for i in ids[:3]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    Image.open(data_dir / "images" / f"{ids[3]}.jpg").save(folder / "forwarded.jpg", quality=40)
    Image.open(data_dir / "images" / f"{ids[4]}.jpg").save(folder / "forwarded.webp", quality=80)
    out = tmp_path / "out"
    first = run_local(folder, out, ScoreOptions(limit=4), progress=False)
    rows = read_output(out)
    per_code = rows["flags"].fillna("").str.split(";").explode().value_counts()
    assert first.flags == {c: int(n) for c, n in per_code.items() if c}
    assert first.flags["compressed"] == 1  # the JPEG-40 file; the stored ones are JPEG 90
    assert first.total["flags"] == first.flags
    second = run_local(folder, out, progress=False)  # resumes: the WebP file only
    assert second.scored == 1
    assert second.flags["compressed"] == 1
    assert second.total["flags"]["compressed"] == 2
    text = second.render()
    assert "rows flagged" in text
    assert re.search(r"compressed\s+1\s+2\b", text), text
    assert json.loads((out / "_summary.json").read_text())["total"]["flags"]["compressed"] == 2


def test_nullable_dtypes_are_missing_values(model: Dermsight, data_dir: Path,
                                            ids: list[str]) -> None:
    path = str(data_dir / "images" / f"{ids[0]}.jpg")
    df = pd.DataFrame({"id": ["a", "b"], "path": [path, path],
                       "age": pd.array([None, 40], dtype="Int64"),
                       "sex": pd.array([None, "male"], dtype="string")})
    out = score_frame(df, model)
    assert out["error"].isna().all()
    assert out["age"].isna().tolist() == [True, False]
    assert out["sex"].tolist() == [None, "male"]


def test_bad_rows_become_error_rows_in_order(model: Dermsight, data_dir: Path,
                                             ids: list[str]) -> None:
    good = str(data_dir / "images" / f"{ids[0]}.jpg")
    jpeg = Path(good).read_bytes()
    df = pd.DataFrame([
        {"id": "ok1", "path": good, "age": 50, "sex": "female", "site": "torso"},
        {"id": "bad_sex", "path": good, "age": 50, "sex": "alien"},
        {"id": "bad_age", "path": good, "age": "old"},
        {"id": "missing", "path": "/no/such/file.jpg"},
        {"id": "nothing"},
        {"id": "text", "image": b"hello, not an image"},
        {"id": "bomb", "image": png_bomb()},
        {"id": "truncated", "image": jpeg[:2000]},
        {"id": "garbage", "image": b"\xff\xd8\xff" + os.urandom(3000)},
        {"id": "reader", "path": good, "error": "metadata.csv line 7: unknown sex 'x'"},
        {"id": "ok2", "image": jpeg, "age": None, "sex": None, "site": None},
    ])
    out = score_frame(df, model, ScoreOptions(batch_size=4, workers=2))
    assert out["id"].tolist() == df["id"].tolist()
    err = dict(zip(out["id"], out["error"], strict=True))
    assert err["ok1"] is None
    assert err["ok2"] is None
    assert "sex" in err["bad_sex"]
    assert "age" in err["bad_age"]
    assert "not found" in err["missing"]
    assert "neither" in err["nothing"]
    assert "not an image" in err["text"]
    assert "too large" in err["bomb"]
    assert "truncated" in err["truncated"] or "corrupt" in err["truncated"]
    assert err["garbage"] is not None
    assert err["reader"] == "metadata.csv line 7: unknown sex 'x'"
    bad = out[out["error"].notna()]
    assert bad["risk"].isna().all()
    assert bad["p_MEL"].isna().all()
    assert bad["ita"].isna().all()
    assert bad["ita_band"].isna().all()
    ok = out[out["error"].isna()]
    assert np.allclose(ok[[f"p_{c}" for c in model.classes]].sum(axis=1), 1.0)
    assert ok.loc[ok["id"] == "ok1", "site"].item() == "torso"


def test_out_of_distribution_gate_matches_the_facade(
    model: Dermsight, data_dir: Path, metadata: pd.DataFrame, ids: list[str], tmp_path: Path,
) -> None:
    """The bundle's fitted OOD gate (v2 when the bundle has one, else the kNN rule), with the
    threshold moved to the median score of these images so that some are flagged (and, for
    v2, the clinical-photo flag's threshold below it so that some get that non-blocking flag):
    batch flags/scores/tiers equal Dermsight.predict's."""
    from dermsight import gate

    if not model.bundle.gate_arrays or "ood_threshold" not in model.card.gate:
        pytest.skip("the default bundle has no fitted OOD gate")
    df = frame_for(data_dir, metadata, ids[:12])
    scores = np.array([model.predict(p, heatmap=False).ood_score for p in df["path"]])
    bundle = tmp_path / "gated"
    shutil.copytree(default_bundle_path(), bundle)
    card = json.loads((bundle / "card.json").read_text())
    v2 = gate.has_v2(model.card.gate, model.bundle.gate_arrays)
    card["gate"]["v2_threshold" if v2 else "ood_threshold"] = float(np.median(scores))
    if v2:
        card["gate"]["v2_clinical_threshold"] = -1e9  # every accepted image gets the flag
    (bundle / "card.json").write_text(json.dumps(card))
    gated = Dermsight.load(bundle, threads=2)
    out = score_frame(df, gated, ScoreOptions(batch_size=5, workers=2))
    flagged = 0
    for row, rec in zip(out.itertuples(index=False), df.itertuples(index=False), strict=True):
        pred = gated.predict(rec.path, age=rec.age, sex=rec.sex, site=rec.site, heatmap=False)
        assert row.flags == ";".join(f.code for f in pred.flags)
        assert row.risk == pred.risk
        assert pred.ood_score is not None
        assert abs(row.ood_score - pred.ood_score) < 1e-5
        flagged += "out_of_distribution" in row.flags
    assert 0 < flagged < len(df)
    assert (out.loc[out["flags"].str.contains("out_of_distribution"), "risk"]
            == "cannot_assess").all()
    if v2:  # the non-blocking flag leaves the tier in place
        warned = out[out["flags"].str.contains("not_dermoscopic")]
        assert len(warned)
        assert (warned["risk"] != "cannot_assess").all()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_web_cli_and_batch_read_the_facades_one_tail_for_a_dicom_with_tags(
    model: Dermsight, data_dir: Path, ids: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """There is one post-processing path: the web API, `dermsight predict` and batch rows are
    read from ``Dermsight.assess``. A marker put into its result shows in each of them (a layer
    with its own copy of the tail would not show it), and each merges the DICOM's tags the same
    way (they fill the metadata nobody gave)."""
    from dermsight.io.dicom import write_dicom
    from dermsight.records import Metadata
    from dermsight.web.routes.predict import run_prediction

    rgb = decode_image(data_dir / "images" / f"{ids[0]}.jpg")
    dcm = write_dicom(tmp_path / "lesion.dcm", rgb, age=65, sex="female", site="head/neck")
    tags = {"age": 65.0, "sex": "female", "site": "head/neck"}
    real_assess = Dermsight.assess
    batches: list[int] = []

    def marked(self: Dermsight, images: Sequence[PreparedImage], tta: bool = False) -> Assessment:
        result = real_assess(self, images, tta)
        batches.append(len(images))
        result.risks = [f"marked-{r}" for r in result.risks]
        return result

    monkeypatch.setattr(Dermsight, "assess", marked)
    facade = model.predict(dcm, heatmap=False)
    assert facade.meta.as_dict() == tags
    assert facade.risk.startswith("marked-")
    web = json.loads(run_prediction(model, dcm.read_bytes(), Metadata(), False, False))
    assert _cli(["predict", str(dcm), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)[0]
    for answer in (web, cli):
        assert answer["risk"] == facade.risk
        assert answer["input"] == tags
        assert answer["prediction"] == facade.prediction
        assert answer["probabilities"] == pytest.approx(facade.probabilities, abs=1e-6)
        assert [f["code"] for f in answer["flags"]] == [f.code for f in facade.flags]
    row = score_frame(pd.DataFrame({"id": ["lesion"], "image": [dcm.read_bytes()]}),
                      model).iloc[0]
    assert row["risk"] == facade.risk
    assert {k: row[k] for k in tags} == tags
    assert row["prediction"] == facade.prediction
    assert row["flags"] == ";".join(f.code for f in facade.flags)
    for c in model.classes:
        assert abs(row[f"p_{c}"] - facade.probabilities[c]) < TOL
    assert batches == [1, 1, 1, 1]  # facade, web, CLI, batch: each one call of the one tail
    # the values given win over the tags, everywhere
    given = Metadata.parse(age=30, sex="male")
    assert model.predict(dcm, meta=given, heatmap=False).meta.as_dict() == {
        "age": 30.0, "sex": "male", "site": "head/neck"}
    row = score_frame(pd.DataFrame({"id": ["x"], "path": [str(dcm)], "age": [30],
                                    "sex": ["male"]}), model).iloc[0]
    assert (row["age"], row["sex"], row["site"]) == (30.0, "male", "head/neck")


# --- the local runner ---------------------------------------------------------------------------


def test_folder_with_bad_files_completes(data_dir: Path, ids: list[str], image_folder: Path,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(image_folder, folder)
    expected = add_bad_files(folder, data_dir, ids[0])
    out = tmp_path / "out"
    heat = tmp_path / "heat"
    code = _cli(["batch", str(folder), "--out", str(out), "--chunk-size", "10", "--workers", "2",
                 "--heatmaps", str(heat), "--quiet"])
    assert code == 1  # some inputs failed, the job still completed
    text = capsys.readouterr().out
    assert "errors" in text
    assert "images/s" in text
    assert "high" in text
    df = read_output(out)
    assert sorted(df["id"]) == sorted([*ids, *expected])
    assert df["id"].is_unique
    for rid, needle in expected.items():
        msg = df.loc[df["id"] == rid, "error"].item()
        assert needle in msg, msg
    ok = df[df["error"].isna()]
    assert len(ok) == len(ids)
    assert ok["risk"].isin(["high", "moderate", "low", "cannot_assess"]).all()
    assessed = ok.loc[ok["risk"] != "cannot_assess", "id"]  # no heatmap for a refused image
    assert sorted(p.stem for p in heat.glob("*.png")) == sorted(assessed)
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["rows"] == len(ids) + 3  # written, error rows included
    assert summary["scored"] == len(ids)  # scored without an error, as the printed line says
    assert summary["errors"] == 3
    assert summary["total"]["rows"] == len(ids) + 3
    assert len(part_files(out)) == 3  # 27 rows in chunks of 10


def _cli(argv: list[str]) -> int:
    try:
        cli_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_resume_after_a_failure_mid_run(image_folder: Path, ids: list[str],
                                        tmp_path: Path) -> None:
    """Fault injection: the job dies after its 2nd part; the re-run fills the rest exactly."""
    out = tmp_path / "out"
    written: list[Path] = []

    def boom(part: Path) -> None:
        written.append(part)
        if len(written) == 2:
            raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected"):
        run_local(image_folder, out, ScoreOptions(batch_size=4, workers=2), chunk_size=5,
                  progress=False, on_part=boom)
    first = read_output(out)
    assert len(first) == 10
    assert first["id"].is_unique
    # a half-written temporary part from the killed run is cleaned up, never read
    (out / ".tmp-part-dead.parquet").write_bytes(b"PAR1 half written")
    summary = run_local(image_folder, out, ScoreOptions(batch_size=4, workers=2), chunk_size=5,
                        progress=False)
    assert summary.skipped == 10
    assert summary.scored == len(ids) - 10
    df = read_output(out)
    assert sorted(df["id"]) == sorted(ids)
    assert df["id"].is_unique
    assert not list(out.glob(".tmp-*"))
    again = run_local(image_folder, out, progress=False)
    assert again.scored == 0
    assert again.skipped == len(ids)


def test_limit_then_resume_csv_format(image_folder: Path, ids: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    s1 = run_local(image_folder, out, ScoreOptions(fmt="csv", limit=7), chunk_size=3,
                   progress=False)
    assert s1.scored == 7
    assert len(part_files(out, "csv")) == 3
    s2 = run_local(image_folder, out, ScoreOptions(fmt="csv"), chunk_size=50, progress=False)
    assert s2.skipped == 7
    assert s2.scored == len(ids) - 7
    df = read_output(out)
    assert sorted(df["id"]) == sorted(ids)
    assert df["id"].is_unique
    assert df["p_MEL"].dtype == np.float64
    with pytest.raises(OutputError, match="csv parts"):
        run_local(image_folder, out, ScoreOptions(fmt="parquet"), progress=False)


def test_output_folder_is_locked(tmp_path: Path) -> None:
    classes = Dermsight.load().classes
    with PartStore(tmp_path / "o", "parquet", classes), pytest.raises(OutputError,
                                                                      match="another"):
        PartStore(tmp_path / "o", "parquet", classes).open()


@pytest.mark.slow
def test_killed_process_resumes_without_duplicates_or_gaps(
    data_dir: Path, metadata: pd.DataFrame, tmp_path: Path,
) -> None:
    """SIGKILL a real `dermsight batch` process mid-run, then re-run it."""
    chosen = sorted(metadata["image_id"])[:200]
    folder = copy_images(data_dir, chosen, tmp_path / "imgs")
    out = tmp_path / "out"
    # one worker and small parts: slow enough to be killed mid-run even on a fast machine
    cmd = [sys.executable, "-c", "from dermsight.cli import main; main()", "batch", str(folder),
           "--out", str(out), "--chunk-size", "8", "--batch-size", "4", "--workers", "1",
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while len(part_files(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    partial = read_output(out)
    assert 0 < len(partial) < len(chosen)
    assert partial["id"].is_unique
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(partial)} already done" in rerun.stdout
    df = read_output(out)
    assert sorted(df["id"]) == chosen
    assert df["id"].is_unique
    assert df["error"].isna().all()


# --- skin tone (ITA) -----------------------------------------------------------------------------


def test_ita_columns_are_the_estimator_on_the_decoded_images(
    model: Dermsight, data_dir: Path, metadata: pd.DataFrame, ids: list[str],
) -> None:
    """``ita`` is ``ita_for_images`` on the images as decoded for the card (NaN: not estimable),
    ``ita_band`` its Del Bino band, whichever way the image arrives (path or bytes)."""
    df = frame_for(data_dir, metadata, ids)
    df["image"] = [Path(p).read_bytes() if k % 2 else None for k, p in enumerate(df["path"])]
    out = score_frame(df, model, ScoreOptions(batch_size=5, workers=2))
    assert out["error"].isna().all()
    assert out["ita"].dtype == np.float64
    expected = ita_for_images([decode_image(p) for p in df["path"]])
    want = np.array([np.nan if v is None else v for v in expected])
    np.testing.assert_array_equal(out["ita"].to_numpy(), want)  # the same pixels: exact
    assert out["ita_band"].tolist() == [ita_band(v) for v in expected]
    assert out["ita"].notna().sum() >= len(ids) // 2  # most real images are estimable


def _synthetic_output(out: Path, classes: list[str], n: int, ita: list[float | None],
                      drop_ita: bool = False) -> pd.DataFrame:
    """An output folder of ``n`` labelled rows (random calibrated-looking probabilities)."""
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(len(classes)) * 0.5, size=n)
    labels = [classes[i] for i in rng.integers(0, len(classes), size=n)]
    rows = [{"id": f"s{i:03d}", "path": None, **{f"p_{c}": float(probs[i, j])
                                                for j, c in enumerate(classes)},
             "label": labels[i], "group": f"g{i // 2}", "ita": ita[i], "ita_band": ita_band(ita[i]),
             "age": 50.0, "sex": "female", "site": "torso", "risk": "low", "prediction": "NV"}
            for i in range(n)]
    df = rows_to_frame(rows, classes)
    if drop_ita:  # as written before the ita columns existed
        out.mkdir(parents=True)
        df.drop(columns=["ita", "ita_band"]).to_parquet(out / "part-old-00000.parquet")
    else:
        with PartStore(out, "parquet", classes) as store:
            store.write(df)
    return df


def test_evaluation_by_ita_is_the_cards_table_with_the_cards_settings(
    model: Dermsight, tmp_path: Path,
) -> None:
    classes = list(model.classes)
    n = 60
    ita: list[float | None] = [62.0] * 40 + [20.0] * 8 + [None] * 12  # very light, tan, n/e
    df = _synthetic_output(tmp_path / "o", classes, n, ita)
    paths = evaluate_output(tmp_path / "o", classes, model.card, model.info, n_boot=20)
    ev = json.loads(Path(paths["json"]).read_text())
    card = model.card
    want = ita_table(df["label"].to_numpy(), df[[f"p_{c}" for c in classes]].to_numpy(),
                     classes, ita, groups=df["group"].to_numpy(),

                     settings=EvalSettings(refer_threshold=card.thresholds.refer, n_boot=20,
                                           seed=ev["seed"], offsets=card.decision.offsets(classes),
                                           malignant_excluded=tuple(card.malignant_excluded),
                                           intervals="wilson"),  # an evaluation's intervals
                     noun="evaluated images")
    assert ev["by_ita"] == json.loads(json.dumps(want, default=float))
    rows = {r["subgroup"]: r for r in ev["by_ita"]["bands"]}
    assert [rows[b]["n"] for b in (*BANDS, NOT_ESTIMABLE)] == [40, 0, 0, 8, 0, 0, 12]
    assert rows["very light"]["balanced_accuracy"] is not None  # 40 >= 30: shown
    assert rows["tan"]["balanced_accuracy"] is None  # 8 < 30: withheld, count kept
    assert rows["light"]["note"] == "no images"
    html = Path(paths["report"]).read_text()
    assert "By skin tone (ITA, estimated from the image)" in html
    assert "&gt; 55°" in html
    assert "not estimable" in html


def test_evaluation_uses_the_cards_malignant_probability(model: Dermsight, tmp_path: Path) -> None:
    """A card that leaves a class out of the malignant probability's denominator is evaluated
    with that probability (as its tiers were), not with the plain sum."""
    classes = list(model.classes)
    df = _synthetic_output(tmp_path / "o", classes, 80, [50.0] * 80)
    card = replace(model.card, malignant_excluded=["NV"])
    ev = json.loads(Path(evaluate_output(tmp_path / "o", classes, card, model.info,
                                         n_boot=0)["json"]).read_text())
    probs = df[[f"p_{c}" for c in classes]].to_numpy()
    share = malignant_probability(probs, classes, card.malignant, ["NV"])
    assert share is not None
    positive = df["label"].isin(card.malignant).to_numpy()
    refer = card.thresholds.refer
    assert ev["metrics"]["refer_sensitivity"] == pytest.approx((share[positive] >= refer).mean())
    assert ev["metrics"]["refer_specificity"] == pytest.approx((share[~positive] < refer).mean())


def test_evaluation_of_an_output_without_the_ita_column_has_no_table(
    model: Dermsight, image_folder: Path, tmp_path: Path,
) -> None:
    classes = list(model.classes)
    _synthetic_output(tmp_path / "old", classes, 40, [50.0] * 40, drop_ita=True)
    paths = evaluate_output(tmp_path / "old", classes, model.card, model.info, n_boot=0)
    ev = json.loads(Path(paths["json"]).read_text())
    assert ev["n"] == 40
    assert "by_ita" not in ev
    assert "By skin tone" not in Path(paths["report"]).read_text()
    with pytest.raises(OutputError, match="older dermsight"):  # and it cannot be resumed
        run_local(image_folder, tmp_path / "old", ScoreOptions(limit=1), progress=False)


# --- other inputs -------------------------------------------------------------------------------


def _dataset_folder(data_dir: Path, metadata: pd.DataFrame, ids: list[str], root: Path) -> Path:
    """A dermsight-layout CSV (labels, metadata, group ids) + images/ beside it."""
    copy_images(data_dir, ids, root / "images")
    sub = metadata.set_index("image_id").loc[ids].reset_index()
    sub[["image_id", "diagnosis", "age_approx", "sex", "anatom_site", "group_id",
         "source"]].to_csv(root / "metadata.csv", index=False)
    return root


def test_csv_dataset_with_labels_and_evaluate(
    data_dir: Path, metadata: pd.DataFrame, ids: list[str], tmp_path: Path, model: Dermsight,
    test_output: Path,
) -> None:
    root = _dataset_folder(data_dir, metadata, ids, tmp_path / "ds")
    out = tmp_path / "res"
    summary = run_local(root, out, ScoreOptions(evaluate=True), progress=False, chunk_size=10)
    assert summary.errors == 0
    assert summary.scored == len(ids)
    df = read_output(out).set_index("id").loc[ids]
    m = metadata.set_index("image_id").loc[ids]
    assert df["label"].tolist() == m["diagnosis"].tolist()
    assert df["group"].tolist() == m["group_id"].tolist()
    assert (df["sex"].fillna("") == m["sex"]).all()
    assert "report" in summary.evaluation, summary.evaluation
    html = Path(summary.evaluation["report"]).read_text()
    assert "<html" in html
    assert model.info["name"] in html
    ev = json.loads(Path(summary.evaluation["json"]).read_text())
    # the labelled images the gate refused (cannot assess) are left out of the figures, counted
    in_classes = df["label"].isin(model.classes)
    refused = in_classes & (df["risk"] == CANNOT_ASSESS)
    assert in_classes.sum() == sum(m["diagnosis"].isin(model.classes))
    assert ev["n"] == in_classes.sum() - refused.sum()
    assert ev["gate_refused"] == {
        "images": refused.sum(), "malignant": df["label"][refused].isin(model.card.malignant).sum()}
    assert summary.gate_refused == ev["gate_refused"]
    assert Path(summary.evaluation["report"]).parent == out.parent
    # by skin tone: the card's seven-row table over the labelled rows, from the ita column
    by_ita = ev["by_ita"]
    bands = [r["subgroup"] for r in by_ita["bands"]]
    assert bands == [*BANDS, NOT_ESTIMABLE]
    assert sum(r["n"] for r in by_ita["bands"]) == ev["n"] == by_ita["n"]
    labelled = df[in_classes & ~refused]
    expected = labelled["ita_band"].value_counts().to_dict()
    assert {r["subgroup"]: r["n"] for r in by_ita["bands"] if r["n"]} == expected
    assert by_ita["min_n"] == 30
    assert all(r["malignant_auc"] is None and r["note"] for r in by_ita["bands"])  # all < 30
    assert "By skin tone (ITA, estimated from the image)" in html
    assert f"Of {ev['n']} evaluated images, a skin tone (ITA) could be estimated" in html
    shutil.copy(summary.evaluation["report"], test_output / "batch_evaluate_report.html")


def test_evaluate_without_labels_is_a_clear_note(image_folder: Path, tmp_path: Path) -> None:
    summary = run_local(image_folder, tmp_path / "o", ScoreOptions(evaluate=True, limit=3),
                        progress=False)
    assert "no labels" in summary.evaluation["unavailable"]
    assert not sidecar(tmp_path / "o", "evaluation.json").exists()
    assert not sidecar(tmp_path / "o", "report.html").exists()
    df = read_output(tmp_path / "o")  # scored as usual, with the skin tone of every image
    assert len(df) == 3
    assert df["error"].isna().all()
    assert df["ita_band"].notna().all()
    assert df["ita_band"].tolist() == [ita_band(v) for v in df["ita"]]


def test_manifest_csv_with_paths_and_metadata(
    data_dir: Path, metadata: pd.DataFrame, ids: list[str], tmp_path: Path, model: Dermsight,
) -> None:
    df = frame_for(data_dir, metadata, ids[:6])
    manifest = tmp_path / "manifest.csv"
    rows = df.copy()
    rows.loc[2, "sex"] = "unknown-value"  # left out (flagged): the image is scored
    rows.loc[len(rows)] = ["ghost", str(tmp_path / "ghost.jpg"), 40, "male", "torso"]
    rows.to_csv(manifest, index=False)
    summary = run_local(manifest, tmp_path / "o", progress=False)
    out = read_output(tmp_path / "o").set_index("id")
    assert summary.scored == 7
    assert summary.errors == 1  # only the row without an image
    assert out.loc[ids[2], "error"] is None
    assert out.loc[ids[2], "sex"] is None
    assert "metadata_ignored" in out.loc[ids[2], "flags"].split(";")
    assert "not found" in out.loc["ghost", "error"]
    without_sex = df.copy()
    without_sex.loc[2, "sex"] = None  # scored as if the sex were not given
    direct = score_frame(without_sex, model).set_index("id")
    assert len(direct) == 6
    for i in direct.index:
        assert abs(out.loc[i, "p_MEL"] - direct.loc[i, "p_MEL"]) < 1e-5


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dicom_and_tfrecord_inputs(
    data_dir: Path, metadata: pd.DataFrame, ids: list[str], tmp_path: Path, model: Dermsight,
) -> None:
    from dermsight.io.dicom import write_dicom
    from dermsight.io.tfrecord import write_tfrecord

    chosen = ids[:8]
    ref = score_frame(frame_for(data_dir, metadata, chosen), model).set_index("id")
    m = metadata.set_index("image_id").loc[chosen]
    # DICOM, uncompressed pixels: exactly the JPEG's decoded pixels, metadata in the header
    dcm = tmp_path / "dicom"
    dcm.mkdir()
    for i in chosen:
        rgb = decode_image(data_dir / "images" / f"{i}.jpg")
        age = float(m.loc[i, "age_approx"]) if m.loc[i, "age_approx"] else None
        write_dicom(dcm / f"{i}.dcm", rgb, age=age, sex=m.loc[i, "sex"] or None,
                    site=m.loc[i, "anatom_site"] or None, jpeg=False)
    (dcm / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    run_local(dcm, tmp_path / "o_dcm", progress=False)
    got = read_output(tmp_path / "o_dcm").set_index("id")
    assert got.loc["broken", "error"] is not None
    for i in chosen:
        assert got.loc[i, "error"] is None, got.loc[i, "error"]
        assert abs(got.loc[i, "p_MEL"] - ref.loc[i, "p_MEL"]) < 1e-5
        assert got.loc[i, "sex"] == ref.loc[i, "sex"]
        assert got.loc[i, "site"] == ref.loc[i, "site"]
    # TFRecord (SIIM-ISIC schema, the original JPEG bytes)
    shard = tmp_path / "train00-8.tfrec"
    write_tfrecord(shard, [
        {"image": (data_dir / "images" / f"{i}.jpg").read_bytes(), "image_name": i,
         "sex": m.loc[i, "sex"] or None, "age_approx": float(m.loc[i, "age_approx"] or 0) or None,
         "anatom_site_general_challenge": m.loc[i, "anatom_site"] or None,
         "diagnosis": "melanoma" if m.loc[i, "diagnosis"] == "MEL" else None,
         "target": int(m.loc[i, "diagnosis"] == "MEL")}
        for i in chosen
    ])
    run_local(shard, tmp_path / "o_tfr", ScoreOptions(workers=2), progress=False)
    tf = read_output(tmp_path / "o_tfr").set_index("id")
    assert sorted(tf.index) == sorted(chosen)
    for i in chosen:
        assert tf.loc[i, "error"] is None, tf.loc[i, "error"]
        assert abs(tf.loc[i, "p_MEL"] - ref.loc[i, "p_MEL"]) < 1e-5
        assert "#" in tf.loc[i, "path"]


# --- the command line ---------------------------------------------------------------------------


def test_cli_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["batch", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err
    assert "Traceback" not in err
    assert _cli(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "dask"]) == 2
    assert "--engine" in capsys.readouterr().err
    assert _cli(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--format", "xml"]) == 2
    err = capsys.readouterr().err
    assert "format must be parquet or csv" in err
    assert "Traceback" not in err
    (tmp_path / "file").write_text("x")
    assert _cli(["batch", str(tmp_path), "--out", str(tmp_path / "file")]) == 2
    assert "folder" in capsys.readouterr().err


# --- entries that are not regular files ---------------------------------------------------------


def test_fifo_socket_device_links_and_folders_named_like_images_are_error_rows(
        ids: list[str], image_folder: Path, tmp_path: Path) -> None:
    import socket as socketlib

    folder = tmp_path / "odd"
    folder.mkdir()
    for i in ids[:3]:
        shutil.copyfile(image_folder / f"{i}.jpg", folder / f"{i}.jpg")
    os.mkfifo(folder / "pipe.jpg")
    os.mkfifo(folder / "dpipe.dcm")
    (folder / "dangling.png").symlink_to(folder / "missing.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "dir.jpg").mkdir()
    shutil.copyfile(image_folder / f"{ids[3]}.jpg", folder / "dir.jpg" / f"{ids[3]}.jpg")
    sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    short = Path(f"/tmp/ds-{os.getpid()}-sock.jpg")  # AF_UNIX paths are limited to ~107 bytes
    sock.bind(str(short))
    try:
        (folder / "sock.jpg").symlink_to(short)
        out = tmp_path / "out"
        cmd = [sys.executable, "-c", "from dermsight.cli import main; main()", "batch",
               str(folder), "--out", str(out), "--quiet", "--workers", "2"]
        try:  # a hang is the bug: fail instead of blocking the suite
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail("dermsight batch hung on a folder with a FIFO / socket / device")
    finally:
        sock.close()
        short.unlink(missing_ok=True)
    assert run.returncode == 1, run.stderr  # some inputs failed, the job completed
    assert "Traceback" not in run.stderr
    df = read_output(out).set_index("id")
    expected = {"pipe": "named pipe", "dangling": "broken link", "zero": "character device",
                "dir": "folder", "sock": "socket"}
    for rid, needle in expected.items():
        assert needle in str(df.loc[rid, "error"]), (rid, df.loc[rid, "error"])
        assert str(df.loc[rid, "path"]).startswith(str(folder)), "error rows keep their path"
    assert "named pipe" in str(df.loc["dpipe", "error"])
    assert df.loc["dpipe", "path"] == str(folder / "dpipe.dcm")
    ok = df[df["error"].isna()]
    assert sorted(ok.index) == sorted(ids[:4])  # including the image inside dir.jpg/


def test_a_fifo_given_as_the_input_is_refused(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "in.csv")
    assert _cli(["batch", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "named pipe" in err
    assert len(err.strip().splitlines()) == 1


def test_duplicate_ids_are_warned_about_once_with_the_count(
        ids: list[str], image_folder: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "dups"
    for sub in ("a", "b", "c"):
        (folder / sub).mkdir(parents=True)
        for i in ids[:2]:
            shutil.copyfile(image_folder / f"{i}.jpg", folder / sub / f"{i}.jpg")
    assert _cli(["batch", str(folder), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1, err
    assert err[0].startswith("warning: 4 input rows repeat an id"), err
    df = read_output(tmp_path / "o")
    assert len(df) == 6
    assert df["path"].is_unique


def test_manifest_error_rows_keep_their_path(ids: list[str], image_folder: Path,
                                             tmp_path: Path) -> None:
    shutil.copyfile(image_folder / f"{ids[0]}.jpg", tmp_path / "ok.jpg")
    (tmp_path / "text.jpg").write_text("not a picture")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "m.csv").write_text(
        "image_id,path,age,sex\n"
        "a,ok.jpg,50,male\nb,text.jpg,50,male\nc,missing.jpg,50,male\n"
        "d,ok.jpg,400,male\ne,pipe.jpg,50,female\n")
    summary = run_local(tmp_path / "m.csv", tmp_path / "out", ScoreOptions(workers=1),
                        progress=False)
    assert summary.errors == 3
    df = read_output(tmp_path / "out").set_index("id")
    for rid, name in {"a": "ok.jpg", "b": "text.jpg", "c": "missing.jpg", "d": "ok.jpg",
                      "e": "pipe.jpg"}.items():
        assert df.loc[rid, "path"] == str(tmp_path / name), rid
    assert df["error"].isna().tolist() == [True, False, False, True, False]
    assert "named pipe" in df.loc["e", "error"]
    assert "not an image" in df.loc["b", "error"]
    assert "not found" in df.loc["c", "error"]
    # an age of 400 is left out (flagged): the image is scored
    assert pd.isna(df.loc["d", "age"])
    assert "metadata_ignored" in df.loc["d", "flags"].split(";")


def test_a_remote_csv_reads_unusable_labels_and_metadata_like_a_local_one(
        data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    """A label or a metadata value that cannot be used leaves a remote CSV's row unlabelled or
    without that value, and its image is scored, as in a local CSV; a missing image is an
    error row in both."""
    fsspec = pytest.importorskip("fsspec")
    from dermsight.batch.sources import open_source

    text = ("image_id,diagnosis,age_approx,sex,anatom_site\n"
            f"{ids[0]},NV,40,female,torso\n{ids[1]},FOO,45,male,torso\n"
            f"{ids[2]},MEL,400,bogus,torso\nghost,NV,50,male,torso\n")
    local = tmp_path / "ds"
    copy_images(data_dir, ids[:3], local / "images")
    (local / "metadata.csv").write_text(text)
    fs = fsspec.filesystem("memory")
    base = f"/dermsight-test-{os.getpid()}-{tmp_path.name}"
    try:
        for i in ids[:3]:
            fs.pipe(f"{base}/images/{i}.jpg", (data_dir / "images" / f"{i}.jpg").read_bytes())
        fs.pipe(f"{base}/metadata.csv", text.encode())
        remote = list(open_source(f"memory://{base}/metadata.csv").rows())
    finally:
        fs.rm(base, recursive=True)
    fields = ("id", "label", "age", "sex", "site", "meta_notes")
    got = [({k: r[k] for k in fields}, r["error"] is None) for r in remote]
    assert got == [
        ({"id": ids[0], "label": "NV", "age": 40.0, "sex": "female", "site": "torso",
          "meta_notes": None}, True),
        ({"id": ids[1], "label": None, "age": 45.0, "sex": "male", "site": "torso",
          "meta_notes": None}, True),
        ({"id": ids[2], "label": "MEL", "age": None, "sex": None, "site": "torso",
          "meta_notes": "age:ignored;sex:ignored"}, True),
        ({"id": "ghost", "label": "NV", "age": 50.0, "sex": "male", "site": "torso",
          "meta_notes": None}, False),
    ]
    assert "image file not found" in remote[3]["error"]
    assert [r["path"] for r in remote[:3]] == [f"memory://{base}/images/{i}.jpg"
                                               for i in ids[:3]]
    rows = list(open_source(local).rows())
    assert [({k: r[k] for k in fields}, r["error"] is None) for r in rows] == got


def test_lenient_metadata_is_flagged_in_batch_rows_like_the_facade(
        model: Dermsight, data_dir: Path, ids: list[str]) -> None:
    df = pd.DataFrame({"id": ids[:2], "path": [str(data_dir / "images" / f"{i}.jpg")
                                                for i in ids[:2]],
                       "age": ["٤٥", "45"], "sex": ["null", "male"], "site": [None, None]})
    out = score_frame(df, model, ScoreOptions(batch_size=2, workers=1))
    first = out.iloc[0]["flags"].split(";")
    assert "metadata_ignored" in first
    assert "metadata_normalised" in first
    assert "metadata" not in out.iloc[1]["flags"]
    pred = model.predict(df.loc[0, "path"], age="٤٥", sex="null", heatmap=False)
    assert out.iloc[0]["flags"] == ";".join(f.code for f in pred.flags)
    assert out.iloc[0]["age"] == 45.0


def test_run_summary_names_its_counts_as_the_json_does() -> None:
    from dermsight.batch.summary import RunSummary

    r = RunSummary(input="in", out="out", engine="local", model="m", scored=10, errors=3)
    assert (r.rows, r.ok, r.errors) == (10, 7, 3)  # written, of which scored, of which errors
    d = r.to_dict()
    assert (d["rows"], d["scored"], d["errors"]) == (10, 7, 3)
