"""The clinic's own figures and the confirmed-case export, from real images: the dashboard's
counts and refer-tier rates match the stored visits, too few cases withhold a figure with a reason,
and the export is read as is by the dataset reader, by ``dermsight evaluate`` and by
``dermsight bundle adapt``."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from clinic_support import ClinicHarness, image_bytes, image_ids
from dermsight import taxonomy
from dermsight.cli import app as cli_app
from dermsight.io import iter_records

CASES = {"MEL": 5, "BCC": 1, "NV": 4, "BKL": 2}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dashboard_and_confirmed_export(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,
        tmp_path: Path) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    visits: list[tuple[str, dict[str, Any], int]] = []
    for code, n in CASES.items():
        for i, image_id in enumerate(image_ids(metadata, code, n)):
            pid = h.patient(f"{code}-{i}")
            lid = h.lesion(pid)
            r = h.visit(lid, image_bytes(data_dir, image_id), taken_at="2026-02-01")
            assert r.status_code == 201, r.text
            visits.append((code, r.json(), lid))
    # two confirmed lesions only: everything withheld, with the reason
    for code, _, lid in visits[:2]:
        h.client.put(f"/api/v1/lesions/{lid}/diagnosis",
                     json={"code": code, "method": "histopathology"})
    [few] = h.get("/clinic/dashboard").json()["models"]
    assert few["n_lesions"] == 2
    assert few["refer"] == {"sensitivity": None, "specificity": None}
    assert few["mel_auc"] is None
    assert "withheld" in few["note"]
    for code, _, lid in visits[2:]:
        r = h.client.put(f"/api/v1/lesions/{lid}/diagnosis",
                         json={"code": code, "method": "clinical"})
        assert r.status_code == 200
    [m] = h.get("/clinic/dashboard").json()["models"]
    assessed = [(c, v) for c, v, _ in visits if v["result"]["risk"] != "cannot_assess"]
    n_mal = sum(c in taxonomy.MALIGNANT for c, _ in assessed)
    assert (m["n_lesions"], m["n_malignant"], m["n_mel"]) == \
        (len(assessed), n_mal, sum(c == "MEL" for c, _ in assessed))
    if n_mal >= 5 and len(assessed) - n_mal >= 5:
        sens = m["refer"]["sensitivity"]
        hits = sum(c in taxonomy.MALIGNANT and v["result"]["risk"] == "high"
                   for c, v in assessed)
        assert (sens["k"], sens["n"]) == (hits, n_mal)
        assert sens["value"] == pytest.approx(hits / n_mal)
        assert sens["lo"] <= sens["value"] <= sens["hi"]
    labels = m["confusion"]["labels"]
    matrix = m["confusion"]["matrix"]
    assert sum(map(sum, matrix)) == len(assessed)
    for c, v in assessed:
        assert matrix[labels.index(c)][labels.index(v["result"]["prediction"])] >= 1
    _check_confirmed_export(h, visits, tmp_path)


def _check_confirmed_export(h: ClinicHarness, visits: list[tuple[str, dict[str, Any], int]],
                            tmp_path: Path) -> None:
    # the export: metadata.csv + images/ in the layout the readers know
    r = h.get("/clinic/export/confirmed")
    assert r.status_code == 200
    folder = tmp_path / "export"
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(folder)
    table = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    assert len(table) == len(visits)
    records = list(iter_records(folder))
    assert all(rec.error is None for rec in records)
    assert sorted(rec.label or "" for rec in records) == sorted(c for c, _, _ in visits)
    assert {rec.group for rec in records} == set(table["group_id"])
    assert all(rec.meta.sex == "female" and rec.meta.age == 55 for rec in records)
    out = tmp_path / "evaluation"
    res = CliRunner().invoke(cli_app, ["evaluate", str(Path(
        __file__).resolve().parents[1] / "src/dermsight/assets/default"), str(folder),
        "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "scores.report.html").is_file()
    # `dermsight bundle adapt` reads it as is (patients as groups); 12 cases are far too few for
    # a local update, so it refuses (exit 4) and writes no bundle, keeping the scored cases
    from dermsight.batch.store import read_output
    from dermsight.cli.errors import run_guarded

    adapted = tmp_path / "adapted"
    assert run_guarded(cli_app, ["bundle", "adapt", str(folder), "--out", str(adapted),
                                 "--name", "this clinic"]) == 4
    assert not adapted.exists()
    scored = read_output(tmp_path / "adapted.scores")
    assert sorted(scored["label"]) == sorted(c for c, _, _ in visits)
    assert set(scored["group"]) == set(table["group_id"])
