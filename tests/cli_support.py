"""Running the dermsight CLI in-process from tests, as a user's shell would."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from dermsight.cli import main
from dermsight.cli.errors import EXIT_BUNDLE


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``dermsight ARGS``: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def assert_bundle_error_line(code: int, err: str, message: str) -> None:
    """Exit code 3 and one stderr line, ``error: model bundle: ...`` holding ``message``."""
    assert code == EXIT_BUNDLE, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: model bundle: ")
    assert message in lines[0]


def labelled_subset(root: Path, data_dir: Path, metadata: pd.DataFrame, per_class: int) -> Path:
    """A folder + metadata.csv of the first ``per_class`` real labelled images per diagnosis
    (by image id), for commands that read a labelled dataset."""
    rows = metadata[metadata["diagnosis"] != ""].sort_values("image_id")
    rows = rows.groupby("diagnosis", sort=True).head(per_class)
    (root / "images").mkdir(parents=True)
    for i in rows["image_id"]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", root / "images" / f"{i}.jpg")
    rows[["image_id", "diagnosis", "age_approx", "sex", "anatom_site", "source",
          "group_id"]].to_csv(root / "metadata.csv", index=False)
    return root
