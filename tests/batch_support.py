"""Shared pieces of the batch tests: a folder of real images, real images the gate accepts and
the overlays drawn for them, an
output rewritten as an older dermsight wrote it, and a copy of the shipped bundle with other
decision margins."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from dermsight import heatmap
from dermsight.batch.store import part_files
from dermsight.bundle import default_bundle_path, write_manifest
from dermsight.io.decode import decode_image
from dermsight.predict import Dermsight


def image_folder(tmp_path: Path, data_dir: Path, image_ids: list[str]) -> Path:
    """``tmp_path / "in"`` holding the real isic-subset images ``image_ids``."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in image_ids:
        shutil.copy(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    return folder


def assessable_images(model: Dermsight, data_dir: Path, metadata: pd.DataFrame, n: int,
                      step: int) -> list[Path]:
    """``n`` real isic-subset images the gate accepts (each gets a heatmap), taking every
    ``step``-th image id in sorted order."""
    found: list[Path] = []
    for i in sorted(metadata["image_id"])[::step]:
        path = data_dir / "images" / f"{i}.jpg"
        if model.predict(path).cam is not None:
            found.append(path)
        if len(found) == n:
            return found
    raise AssertionError("not enough assessable images")


def overlay_of(model: Dermsight, image: Path) -> np.ndarray:
    """The overlay ``--heatmaps`` draws for ``image``: the facade's map on the image."""
    cam = model.predict(image).cam
    assert cam is not None
    return heatmap.overlay(decode_image(image), cam)


def png_pixels(path: Path) -> np.ndarray:
    """The RGB pixels of a written PNG."""
    return np.asarray(Image.open(path).convert("RGB"))


def strip_columns(out: Path, columns: list[str]) -> None:
    """Rewrite the parts of the batch output ``out`` as a dermsight without ``columns`` wrote
    them."""
    for part in part_files(out):
        if part.suffix == ".csv":
            pd.read_csv(part, dtype=str, keep_default_na=False).drop(
                columns=columns).to_csv(part, index=False)
        else:
            pq.write_table(pq.read_table(part).drop(columns), part)


def bundle_with_margins(root: Path, margins: Mapping[str, float]) -> Path:
    """A copy of the shipped bundle at ``root`` whose decision margins are ``margins``: the same
    name, version and network, its manifest written again."""
    shutil.copytree(default_bundle_path(), root)
    card = json.loads((root / "card.json").read_text())
    card["decision"]["margins"] = dict(margins)
    (root / "card.json").write_text(json.dumps(card))
    write_manifest(root)
    return root


def batch_cli(*args: str) -> list[str]:
    """``dermsight batch ARGS`` as a subprocess command line (this interpreter)."""
    return [sys.executable, "-c", "from dermsight.cli import main; main()", "batch", *args]


def signal_a_batch_run(tmp_path: Path, data_dir: Path, image_ids: list[str], signum: int,
                       out_name: str = "out") -> tuple[list[str], Path, int, str]:
    """A real ``dermsight batch`` (one worker, batches of 2, TTA, overlays) of ``image_ids``,
    sent ``signum`` once its first batches are scored (their overlay PNGs exist: well inside
    its first chunk); returns (its command, its output folder, its exit code, its stderr)."""
    folder = image_folder(tmp_path, data_dir, image_ids)
    out, heat = tmp_path / out_name, tmp_path / "heat"
    cmd = batch_cli(str(folder), "--out", str(out), "--workers", "1", "--batch-size", "2",
                    "--tta", "--heatmaps", str(heat), "-q")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 25
        while (proc.poll() is None and time.monotonic() < deadline
               and len(list(heat.glob("*.png"))) < 4):
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before the signal could be sent"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return cmd, out, proc.returncode, err
