"""The Spark engine (local[2]): same rows as the local runner, from folders and manifests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("pyspark")

from dermsight.batch.local import run_local
from dermsight.batch.options import ScoreOptions
from dermsight.batch.spark import get_session, run_spark
from dermsight.batch.store import read_output

pytestmark = [pytest.mark.spark, pytest.mark.slow]

N_IMAGES = 200


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")
    session = get_session("local[2]")
    yield session
    session.stop()


def _compare(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same rows (by id), numbers within 1e-5, everything else equal."""
    a = a.sort_values("id").reset_index(drop=True)
    b = b.sort_values("id").reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    assert a["id"].tolist() == b["id"].tolist()
    for c in a.columns:
        if a[c].dtype.kind == "f" or b[c].dtype.kind == "f":
            np.testing.assert_allclose(a[c].to_numpy(np.float64), b[c].to_numpy(np.float64),
                                       atol=1e-5, equal_nan=True, err_msg=c)
        else:  # CSV cannot tell an empty string from a missing value
            left = [v if isinstance(v, str) and v else None for v in a[c]]
            right = [v if isinstance(v, str) and v else None for v in b[c]]
            assert left == right, c


def test_spark_and_local_give_identical_rows_on_200_images(
    spark: Any, data_dir: Path, metadata: pd.DataFrame, tmp_path: Path,
) -> None:
    ids = sorted(metadata["image_id"])[::50][:N_IMAGES]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in ids:
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    (folder / "zz_text.jpg").write_text("not an image")
    Image.open(folder / f"{ids[0]}.jpg").save(folder / f"{ids[0]}.jpg", quality=40)  # forwarded
    local_summary = run_local(folder, tmp_path / "local", progress=False, chunk_size=64)
    summary = run_spark(folder, tmp_path / "spark", partitions=4)
    assert summary.scored == N_IMAGES + 1
    assert summary.errors == 1
    assert summary.flags == local_summary.flags  # rows per flag code, this run
    assert summary.flags["compressed"] == 1
    local = read_output(tmp_path / "local")
    dist = read_output(tmp_path / "spark")
    assert len(dist) == N_IMAGES + 1
    assert dist["id"].is_unique
    _compare(local, dist)  # every column, the skin tone (ita, ita_band) included
    assert dist["ita_band"].notna().sum() == N_IMAGES  # all but the error row
    # resume: nothing left to do, nothing duplicated
    # (the unreadable file's error row is retried and replaced: docs/batch.md, "Resuming")
    again = run_spark(folder, tmp_path / "spark")
    assert again.scored == 1
    assert again.retried == 1
    assert again.skipped == N_IMAGES
    assert len(read_output(tmp_path / "spark")) == N_IMAGES + 1


def test_spark_manifest_input_resumes_and_matches_local(
    spark: Any, data_dir: Path, metadata: pd.DataFrame, tmp_path: Path,
) -> None:
    """A CSV dataset (labels + metadata) goes through the driver-side manifest path."""
    ids = sorted(metadata["image_id"])[1::97][:40]
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    late = ids[3]  # its image is added after the first run: an error row until then
    for i in ids:
        if i != late:
            shutil.copyfile(data_dir / "images" / f"{i}.jpg", root / "images" / f"{i}.jpg")
    sub = metadata.set_index("image_id").loc[ids].reset_index()
    sub[["image_id", "diagnosis", "age_approx", "sex", "anatom_site", "group_id"]].to_csv(
        root / "metadata.csv", index=False)
    first = run_spark(root, tmp_path / "spark", ScoreOptions(limit=15, fmt="csv"))
    assert first.scored == 15
    assert first.errors == 1
    shutil.copyfile(data_dir / "images" / f"{late}.jpg", root / "images" / f"{late}.jpg")
    # a job killed before its commit leaves committed tasks in _temporary: they must not leak
    stale = tmp_path / "spark" / "_temporary" / "0" / "task_202601010000_0001_m_000000"
    stale.mkdir(parents=True)
    biggest = max((tmp_path / "spark").glob("part-*.csv"), key=lambda p: p.stat().st_size)
    shutil.copy(biggest, stale / "part-99999.csv")
    second = run_spark(root, tmp_path / "spark", ScoreOptions(fmt="csv", evaluate=True))
    # the missing image's row (among the first 15) is an error row: retried, not skipped
    assert second.skipped == 14
    assert second.retried == 1
    assert second.scored == len(ids) - 14
    assert second.errors == 0
    assert "report" in second.evaluation or "unavailable" in second.evaluation
    dist = read_output(tmp_path / "spark")
    assert sorted(dist["id"]) == sorted(ids)
    assert dist["id"].is_unique
    assert dist["error"].isna().all()
    run_local(root, tmp_path / "local", progress=False)
    _compare(read_output(tmp_path / "local"), dist)


def test_spark_tfrecord_input(spark: Any, data_dir: Path, metadata: pd.DataFrame,
                              tmp_path: Path) -> None:
    from dermsight.io.tfrecord import write_tfrecord
    from dermsight.taxonomy import normalize_site

    ids = sorted(metadata["image_id"])[7::301][:12]
    assert len(ids) == 12
    m = metadata.set_index("image_id").loc[ids]
    shard = tmp_path / "part-0.tfrec"
    write_tfrecord(shard, [
        {"image": (data_dir / "images" / f"{i}.jpg").read_bytes(), "image_name": i,
         "sex": m.loc[i, "sex"] or None, "age_approx": float(m.loc[i, "age_approx"] or 0) or None,
         "anatom_site_general_challenge": m.loc[i, "anatom_site"] or None}
        for i in ids
    ])
    summary = run_spark(shard, tmp_path / "spark")
    assert summary.scored == len(ids)
    assert summary.errors == 0
    dist = read_output(tmp_path / "spark")
    # one scored row per example, carrying the example's own metadata
    assert sorted(dist["id"]) == ids
    assert dist["id"].is_unique
    assert dist["error"].isna().all(), dist["error"].dropna().tolist()
    assert dist["path"].str.contains("#").all()
    p = dist[[c for c in dist.columns if c.startswith("p_")]].to_numpy(np.float64)
    assert p.shape[0] == len(ids)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-4)
    for row in dist.itertuples():
        age = float(m.loc[row.id, "age_approx"] or 0) or None
        assert (None if pd.isna(row.age) else row.age) == age, row.id
        assert (row.sex or None) == (m.loc[row.id, "sex"] or None), row.id
        assert (row.site or None) == normalize_site(m.loc[row.id, "anatom_site"] or None), row.id
    run_local(shard, tmp_path / "local", progress=False)
    _compare(read_output(tmp_path / "local"), dist)
