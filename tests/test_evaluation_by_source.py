"""Evaluating scores of several data sources: every batch output row records its input's
``source`` (``LesionRecord.source``), and ``dermsight evaluate`` / ``dermsight batch --evaluate``
add the subgroup rows by source (``attribute`` ``source``) to the evaluation JSON and a "Per data
source" table to the report when the evaluated rows name at least two sources: the figures,
intervals and withholding of the other subgroup tables (``subgroups.subgroup_table``). An output
written before the ``source`` column is upgraded when resumed (the column added, null in its
rows, which count as ``missing`` by source).

Real images: 60 of the shared isic-subset, 40 from HAM10000 and 20 from ISIC 2019 (under the 30
that a subgroup needs for its figures: withheld, its counts kept).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from batch_support import strip_columns
from cli_support import run
from dermsight.batch.schema import output_columns
from dermsight.batch.store import part_columns, part_files, read_output
from dermsight.batch.summary import sidecar, subgroup_frame
from dermsight.bundle import default_bundle_path, load_bundle
from dermsight.evaluate import EvalSettings
from dermsight.evaluate.bootstrap import group_codes
from dermsight.evaluate.subgroups import subgroup_table

#: (source, diagnosis) -> images: HAM10000 with enough of each side for its figures, ISIC 2019
#: (MEL / NV only) under 30 images
PICK: dict[tuple[str, str], int] = {
    ("ham10000", "MEL"): 10, ("ham10000", "BCC"): 6, ("ham10000", "NV"): 14,
    ("ham10000", "BKL"): 10, ("isic2019", "MEL"): 8, ("isic2019", "NV"): 12,
}
MALIGNANT = {"MEL", "BCC", "SCC"}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
             metadata: pd.DataFrame) -> tuple[Path, pd.DataFrame]:
    """A folder of the PICK images with their metadata.csv rows (diagnosis, source, ...)."""
    root = tmp_path_factory.mktemp("by-source") / "data"
    (root / "images").mkdir(parents=True)
    rows = metadata.sort_values("image_id")
    rows = pd.concat([rows[(rows["source"] == s) & (rows["diagnosis"] == d)].head(n)
                      for (s, d), n in PICK.items()], ignore_index=True)
    assert len(rows) == sum(PICK.values())
    for i in rows["image_id"]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", root / "images" / f"{i}.jpg")
    rows = rows[["image_id", "diagnosis", "age_approx", "sex", "anatom_site", "source",
                 "group_id"]]
    rows.to_csv(root / "metadata.csv", index=False)
    return root, rows


def _by_source(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["subgroup"]: r for r in evaluation["subgroups"] if r["attribute"] == "source"}


def _counts(rows: pd.DataFrame) -> dict[str, tuple[int, int, int]]:
    """(n, malignant, MEL) per source of the metadata rows."""
    return {str(s): (len(g), int(g["diagnosis"].isin(MALIGNANT).sum()),
                     int((g["diagnosis"] == "MEL").sum()))
            for s, g in rows.groupby("source")}


def _report_table(html: str, heading: str) -> list[list[str]]:
    """The cells of the first table after ``<h2>heading</h2>``, tags removed."""
    section = html.split(f"<h2>{heading}</h2>", 1)[1].split("</table>", 1)[0]
    body = section.split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body)]


def test_evaluate_reports_metrics_by_source(
        labelled: tuple[Path, pd.DataFrame], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data, rows = labelled
    ev = tmp_path / "ev"
    code, _, err = run(capsys, "evaluate", str(default_bundle_path()), str(data), "--out",
                       str(ev), "-q")
    assert code == 0, err

    # every output row records its input's source
    scores = read_output(ev / "scores")
    assert list(scores.columns) == output_columns(load_bundle(default_bundle_path()).card.classes)
    want = dict(zip(rows["image_id"], rows["source"], strict=True))
    assert dict(zip(scores["id"], scores["source"], strict=True)) == want

    # the evaluation JSON: one subgroup row per source, with the right counts, of the images
    # the gate did not refuse ("cannot assess": left out of the figures)
    evaluation = json.loads(sidecar(ev / "scores", "evaluation.json").read_text())
    scores = scores[scores["risk"] != "cannot_assess"].reset_index(drop=True)
    counts = _counts(rows[rows["image_id"].isin(scores["id"])])
    assert evaluation["gate_refused"]["images"] == len(rows) - len(scores)
    by_source = _by_source(evaluation)
    assert list(by_source) == ["ham10000", "isic2019"]
    assert {s: (r["n"], r["n_malignant"], r["n_mel"]) for s, r in by_source.items()} == counts
    ham, isic = by_source["ham10000"], by_source["isic2019"]
    assert ham["malignant_auc"] is not None
    assert ham["mel_auc"] is not None
    assert ham["sensitivity_lo"] is not None  # an interval, the evaluation's method
    n_isic = counts["isic2019"][0]
    assert isic["note"] == f"n={n_isic} < 30: too few to report"  # withheld, counts kept
    assert all(isic[k] is None for k in ("malignant_auc", "mel_auc", "balanced_accuracy",
                                         "sensitivity", "specificity"))

    # the same rows as subgroup_table with the evaluation's settings (wilson intervals, the
    # bundle's decision rule and thresholds) and bootstrap groups (as evaluate_predictions
    # hands them over), on the evaluated rows
    card = load_bundle(default_bundle_path()).card
    classes = list(card.classes)
    settings = EvalSettings(refer_threshold=card.thresholds.refer,
                            monitor_threshold=card.thresholds.monitor,
                            offsets=card.decision.decider(classes),
                            malignant_excluded=tuple(card.malignant_excluded), n_boot=200,
                            intervals="wilson")
    groups = scores["group"].where(scores["group"].notna(), scores["id"]).astype(str)
    table = subgroup_table(scores["label"].astype(str).to_numpy(),
                           scores[[f"p_{c}" for c in classes]].to_numpy(np.float64), classes,
                           scores[["source"]], groups=group_codes(groups, len(scores)),
                           settings=settings)
    assert {r["subgroup"]: r for r in table} == by_source

    # the report: a Per data source table with the same counts, and a note on the sources
    html = sidecar(ev / "scores", "report.html").read_text(encoding="utf-8")
    cells = _report_table(html, "Per data source")
    assert [(c[0], c[1], c[2], c[3]) for c in cells] == [
        ("source", s, str(n), str(k)) for s, (n, k, _) in counts.items()]
    assert f"n={n_isic} &lt; 30: too few to report" in html.split(
        "<h2>Per data source</h2>", 1)[1]
    assert "The evaluated rows come from 2 data sources (ham10000, isic2019;" in html


def test_the_by_source_rows_need_two_sources(labelled: tuple[Path, pd.DataFrame]) -> None:
    """One source (with rows naming none) gives no source column: its table would repeat the
    pooled figures; two give it, the rows naming none as ``missing``."""
    _, rows = labelled
    frame = rows.rename(columns={"age_approx": "age", "anatom_site": "site"})
    one = frame.assign(source=["ham10000"] * 10 + [None] * (len(frame) - 10))
    meta, sources = subgroup_frame(one)
    assert (list(meta.columns), sources) == (["age", "sex", "site"], [])
    assert subgroup_frame(frame.drop(columns="source"))[1] == []
    two = one.assign(source=["ham10000"] * 10 + ["isic2019"] * 10 + [""] * (len(frame) - 20))
    meta, sources = subgroup_frame(two)
    assert sources == ["ham10000", "isic2019"]
    assert meta["source"].tolist() == two["source"].tolist()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_older_output_is_upgraded_with_the_source_column(
        labelled: tuple[Path, pd.DataFrame], tmp_path: Path, fmt: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An output written before the ``source`` column resumes: its parts get the column (null),
    the rows scored now record their source, and the old rows count as ``missing``."""
    data, rows = labelled
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(data), "--out", str(out), "--format", fmt,
                       "--limit", "20", "-q")
    assert code == 0, err
    strip_columns(out, ["source"])  # as a dermsight without the column wrote it
    assert all("source" not in part_columns(p) for p in part_files(out))

    code, text, err = run(capsys, "batch", str(data), "--out", str(out), "--format", fmt,
                          "--evaluate", "-q")
    assert code == 0, err
    assert "20 already done" in text
    classes = load_bundle(default_bundle_path()).card.classes
    for part in part_files(out):  # upgraded in place
        assert part_columns(part) == output_columns(classes), part.name
    got = read_output(out).set_index("id")["source"]
    old = set(rows["image_id"].head(20))  # the input's first 20 rows: the first run's
    want = dict(zip(rows["image_id"], rows["source"], strict=True))
    assert {i: got[i] for i in old} == dict.fromkeys(old)
    assert {i: got[i] for i in want if i not in old} == {
        i: s for i, s in want.items() if i not in old}

    evaluation = json.loads(sidecar(out, "evaluation.json").read_text())
    # the images the gate refused ("cannot assess") are not evaluated
    risk = read_output(out).set_index("id")["risk"]
    assessed = rows[rows["image_id"].map(risk) != "cannot_assess"]
    new = assessed[~assessed["image_id"].isin(old)]
    assert {s: r["n"] for s, r in _by_source(evaluation).items()} == {
        **{s: n for s, (n, _, _) in _counts(new).items()},
        "missing": int(assessed["image_id"].isin(old).sum())}
