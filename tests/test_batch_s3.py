"""s3:// inputs against a real S3 API (moto in server mode on 127.0.0.1), read through fsspec."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from dermsight.batch.local import run_local
from dermsight.batch.options import ScoreOptions
from dermsight.batch.store import read_output
from s3_support import moto_s3

BUCKET = "derm-bucket"


@pytest.fixture(scope="module")
def s3(data_dir: Path, metadata: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """A moto S3 server on loopback with 16 real images (+ a text file named .jpg) and a
    manifest CSV with relative paths and metadata."""
    with moto_s3(BUCKET) as server:
        client = server.client
        ids = sorted(metadata["image_id"])[3::211][:16]
        for i in ids:
            client.put_object(Bucket=BUCKET, Key=f"lesions/img/{i}.jpg",
                              Body=(data_dir / "images" / f"{i}.jpg").read_bytes())
        client.put_object(Bucket=BUCKET, Key="lesions/img/zz_text.jpg", Body=b"not an image")
        m = metadata.set_index("image_id").loc[ids]
        manifest = pd.DataFrame({
            "id": ids, "path": [f"img/{i}.jpg" for i in ids], "age": m["age_approx"].tolist(),
            "sex": m["sex"].tolist(), "site": m["anatom_site"].tolist(),
        })
        client.put_object(Bucket=BUCKET, Key="lesions/manifest.csv",
                          Body=manifest.to_csv(index=False).encode())
        yield {"endpoint": server.endpoint, "ids": ids, "options": server.options}


@pytest.fixture(scope="module")
def local_reference(s3: dict[str, Any], data_dir: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("s3ref") / "img"
    folder.mkdir()
    for i in s3["ids"]:
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    out = folder.parent / "out"
    run_local(folder, out, progress=False)
    return read_output(out).set_index("id")


def test_local_runner_reads_an_s3_prefix(s3: dict[str, Any], local_reference: pd.DataFrame,
                                         tmp_path: Path) -> None:
    summary = run_local(f"s3://{BUCKET}/lesions/img/", tmp_path / "o",
                        ScoreOptions(storage_options=s3["options"], workers=2), progress=False)
    assert summary.scored == len(s3["ids"]) + 1
    assert summary.errors == 1
    out = read_output(tmp_path / "o").set_index("id")
    assert "not an image" in out.loc["zz_text", "error"]
    assert out.loc[s3["ids"][0], "path"] == f"s3://{BUCKET}/lesions/img/{s3['ids'][0]}.jpg"
    ok = out.drop(index="zz_text")
    cols = [c for c in ok.columns if c.startswith("p_")]
    np.testing.assert_allclose(ok.loc[s3["ids"], cols].to_numpy(),
                               local_reference.loc[s3["ids"], cols].to_numpy(), atol=1e-5)
    # resume over S3 too
    again = run_local(f"s3://{BUCKET}/lesions/img/", tmp_path / "o",
                      ScoreOptions(storage_options=s3["options"]), progress=False)
    # the unreadable file is retried (its error row replaced, docs/batch.md), nothing else
    assert again.scored == 1
    assert again.retried == 1
    assert again.errors == 1
    assert again.skipped == len(s3["ids"])
    assert len(read_output(tmp_path / "o")) == len(s3["ids"]) + 1


def test_local_runner_reads_an_s3_manifest(s3: dict[str, Any], local_reference: pd.DataFrame,
                                           tmp_path: Path) -> None:
    summary = run_local(f"s3://{BUCKET}/lesions/manifest.csv", tmp_path / "o",
                        ScoreOptions(storage_options=s3["options"]), progress=False)
    assert summary.scored == len(s3["ids"])
    assert summary.errors == 0
    out = read_output(tmp_path / "o").set_index("id")
    assert out.loc[s3["ids"], "sex"].notna().any()
    # metadata changes the prediction; the image is the same as the local file
    assert (out["path"].str.startswith(f"s3://{BUCKET}/lesions/img/")).all()


def test_cli_with_storage_options(s3: dict[str, Any], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["batch", f"s3://{BUCKET}/lesions/img", "--out", str(tmp_path / "o"), "--quiet",
              "--storage-option", f"endpoint_url={s3['endpoint']}", "--format", "csv"])
    assert exc.value.code == 1  # the text file is an error row
    assert f"{len(s3['ids']) + 1}" in capsys.readouterr().out
    assert len(read_output(tmp_path / "o")) == len(s3["ids"]) + 1


def test_missing_bucket_is_a_reader_error(s3: dict[str, Any], tmp_path: Path) -> None:
    from dermsight.io.errors import ReaderError

    with pytest.raises(ReaderError):
        run_local("s3://no-such-bucket/x/", tmp_path / "o",
                  ScoreOptions(storage_options=s3["options"]), progress=False)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_reads_s3_through_fsspec(s3: dict[str, Any], local_reference: pd.DataFrame,
                                       tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    from dermsight.batch.spark import run_spark

    summary = run_spark(f"s3://{BUCKET}/lesions/img/", tmp_path / "o",
                        ScoreOptions(storage_options=s3["options"]), master="local[2]")
    assert summary.scored == len(s3["ids"]) + 1
    assert summary.errors == 1
    out = read_output(tmp_path / "o").set_index("id").drop(index="zz_text")
    cols = [c for c in out.columns if c.startswith("p_")]
    np.testing.assert_allclose(out.loc[s3["ids"], cols].to_numpy(),
                               local_reference.loc[s3["ids"], cols].to_numpy(), atol=1e-5)
