"""A batch input without images (a wrong or empty folder, a CSV listing none) is a user error,
exit 2, before an output folder is made: it gave "0 rows", exit 0, and an empty output."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_support import run


@pytest.mark.parametrize("layout", ["empty", "text only", "csv without rows"])
def test_an_input_without_images_is_an_error_not_an_empty_success(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str) -> None:
    """A wrong or empty folder gave "0 rows", exit 0, and an output folder."""
    folder = tmp_path / "in"
    folder.mkdir()
    if layout == "text only":
        (folder / "notes.txt").write_text("no images here\n")
    if layout == "csv without rows":
        (folder / "metadata.csv").write_text("image_id,diagnosis\n")
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(folder), "--out", str(out), "-q")
    assert code == 2
    assert err.strip() == (f"error: no images found in {folder}: give a folder of images (.jpg, "
                           ".png, ... or .dcm), a CSV that lists images, DICOM files or "
                           "TFRecord shards")
    assert not out.exists()
