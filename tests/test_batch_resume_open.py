"""A resumed batch job reads its output folder once, when it opens it: the keys of the rows done,
the overlay names they hold, the model / TTA checks and the counts of the summary's "output
total" column all come from that one read (``store.OutputContents``), kept up to date as the run
removes error rows and writes parts. The rows skipped, the output and the summary are those of an
uninterrupted run."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dermsight.batch import store
from dermsight.batch.local import run_local
from dermsight.batch.options import ScoreOptions
from dermsight.batch.schema import RISK_TIERS
from dermsight.batch.store import SUMMARY_FILE, part_files, read_output
from dermsight.batch.summary import RunSummary

N_IMAGES = 20
BROKEN = "0000_broken.jpg"  # listed first: an error row in the first (interrupted) run


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
           metadata: pd.DataFrame) -> Path:
    """Twenty real lesion images and a file that is not one (an error row, retried on resume)."""
    folder = tmp_path_factory.mktemp("resume-open") / "in"
    folder.mkdir()
    for i in sorted(metadata["image_id"])[:N_IMAGES]:
        shutil.copyfile(data_dir / "images" / f"{i}.jpg", folder / f"{i}.jpg")
    (folder / BROKEN).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def _run(images: Path, out: Path, fmt: str, heat: Path, limit: int | None = None
         ) -> RunSummary:
    options = ScoreOptions(fmt=fmt, heatmaps=heat, limit=limit, workers=2, batch_size=4)
    return run_local(images, out, options, chunk_size=3, progress=False)


def _expected_total(out: Path) -> dict[str, Any]:
    """The summary's "output total", counted here from the rows read back."""
    df = read_output(out)
    scored = df[df["error"].isna()]
    flags: Counter[str] = Counter()
    for cell in df["flags"].dropna():
        flags.update(set(str(cell).split(";")) - {""})
    tta = scored["tta"].fillna("unknown").value_counts()
    bundles = df["card_sha256"].fillna("unknown").value_counts()
    return {"rows": len(df), "errors": int(df["error"].notna().sum()),
            "risk": {t: int((df["risk"] == t).sum()) for t in RISK_TIERS},
            "flags": dict(sorted(flags.items())),
            "tta": {k: int(tta.get(k, 0)) for k in ("true", "false", "unknown")},
            "card_sha256": {**{k: int(n) for k, n in sorted(bundles.items())
                                 if k != "unknown"}, "unknown": int(bundles.get("unknown", 0))}}


def _rows(out: Path) -> pd.DataFrame:
    return read_output(out).set_index("id").sort_index()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_resumed_run_gives_the_output_and_summary_of_an_uninterrupted_one(
        images: Path, tmp_path: Path, fmt: str) -> None:
    whole = _run(images, tmp_path / "whole", fmt, tmp_path / "heat-whole")
    assert (whole.scored, whole.errors, whole.skipped) == (N_IMAGES + 1, 1, 0)

    out, heat = tmp_path / "out", tmp_path / "heat"
    first = _run(images, out, fmt, heat, limit=7)  # interrupted: 7 rows in 3 parts
    assert (first.scored, first.errors) == (7, 1)
    assert len(part_files(out)) == 3
    resumed = _run(images, out, fmt, heat)
    # the error row is retried (removed, scored again); the 6 good rows are skipped
    assert (resumed.skipped, resumed.retried) == (6, 1)
    assert (resumed.scored, resumed.errors) == (N_IMAGES + 1 - 6, 1)

    assert resumed.total == whole.total == _expected_total(out)
    assert json.loads((out / SUMMARY_FILE).read_text())["total"] == resumed.total
    got, want = _rows(out), _rows(tmp_path / "whole")
    assert len(got) == N_IMAGES + 1
    assert got.index.is_unique
    assert got["error"].notna().sum() == 1
    probs = [c for c in got.columns if c.startswith("p_")]
    pd.testing.assert_frame_equal(got[probs], want[probs], atol=1e-6, rtol=0)
    for column in ("prediction", "risk", "flags", "error", "tta", "heatmap"):
        assert got[column].tolist() == want[column].tolist(), column
    assert sorted(p.name for p in heat.iterdir()) == sorted(
        p.name for p in (tmp_path / "heat-whole").iterdir())


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_resumed_run_reads_each_part_of_the_output_once(
        images: Path, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys, overlay names, the model / TTA checks and the summary's totals: one read of each
    existing part (only the columns they need), none of the parts the run writes."""
    out, heat = tmp_path / "out", tmp_path / "heat"
    names = set(images.iterdir()) - {images / BROKEN}
    limited = tmp_path / "good"
    limited.mkdir()
    for p in names:  # no error row: nothing is removed, so no part is rewritten
        shutil.copyfile(p, limited / p.name)
    _run(limited, out, fmt, heat, limit=8)
    before = set(part_files(out))
    assert len(before) == 3

    reads: Counter[str] = Counter()
    columns: list[set[str]] = []
    real = store._read_part

    def counting(path: Path, cols: Any) -> pd.DataFrame:
        reads[path.name] += 1
        columns.append(set(cols or ()))
        return real(path, cols)

    monkeypatch.setattr(store, "_read_part", counting)
    summary = _run(limited, out, fmt, heat)
    assert summary.skipped == 8
    assert summary.scored == N_IMAGES - 8
    assert reads == Counter({p.name: 1 for p in before})
    # the columns it needs, not the probabilities
    assert all(not any(c.startswith("p_") for c in cols) for cols in columns)
    assert {"id", "path", "error", "risk", "flags", "tta", "card_sha256",
            "heatmap"} <= columns[0]
    assert summary.total == _expected_total(out)
