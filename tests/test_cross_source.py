"""dermsight.evaluate.cross_source and .skin_tone: per-source / LOSO rows and the ITA table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from dermsight.evaluate.bootstrap import bootstrap, group_codes
from dermsight.evaluate.cross_source import (
    CROSS_SOURCE_METRICS,
    LOSO,
    TEST_BY_SOURCE,
    RunInfo,
    add_loso_row,
    cross_source_section,
    source_rows,
    validate_cross_source,
)
from dermsight.evaluate.metrics import key_metrics
from dermsight.evaluate.settings import EvalSettings
from dermsight.evaluate.skin_tone import band_ranges, ita_statement, ita_table
from dermsight.skintone import BANDS, NOT_ESTIMABLE
from dermsight.taxonomy import CLASS_CODES

CLASSES8 = list(CLASS_CODES[:8])
RUN: RunInfo = {"config": "configs/default.yaml", "seed": 42, "command": "make train"}


def _predictions(n: int, seed: int, classes_p: list[float] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    probs = classes_p or [0.18, 0.5, 0.1, 0.04, 0.1, 0.03, 0.03, 0.02]
    y = rng.choice(8, size=n, p=probs)
    logits = rng.normal(size=(n, 8))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    frame = pd.DataFrame({f"p_{c}": p[:, i] for i, c in enumerate(CLASSES8)})
    frame["label"] = [CLASSES8[k] for k in y]
    frame["group"] = rng.integers(0, max(1, n * 2 // 3), size=n).astype(str)
    return frame


def _test_split() -> pd.DataFrame:
    a = _predictions(400, 1).assign(source="ham10000")
    # a source with only MEL/NV/BKL, as ISIC 2017/2019
    b = _predictions(120, 2, [0.2, 0.6, 0, 0, 0.2, 0, 0, 0]).assign(source="isic2017")
    c = _predictions(12, 3).assign(source="isic2016")  # too small
    return pd.concat([a, b, c], ignore_index=True)


# --- per-source rows ---------------------------------------------------------------------------


def test_source_rows_match_direct_metrics_and_withhold_small_sources() -> None:
    frame = _test_split()
    rows = source_rows(frame, CLASSES8, RUN,
                       settings=EvalSettings(refer_threshold=0.3, n_boot=30, seed=0))
    assert [r["source"] for r in rows] == ["ham10000", "isic2016", "isic2017"]
    assert all(r["protocol"] == TEST_BY_SOURCE and r["trained_on"] is None for r in rows)
    ham = rows[0]
    part = frame[frame.source == "ham10000"]
    y = part["label"].map(CLASSES8.index).to_numpy()
    p = part[[f"p_{c}" for c in CLASSES8]].to_numpy()
    direct = key_metrics(y, p, CLASSES8, refer_threshold=0.3)
    assert ham["n_images"] == 400
    assert ham["n_groups"] == part["group"].nunique()
    assert ham["metrics"]["mel_auc"]["value"] == pytest.approx(direct["mel_auc"])
    assert ham["metrics"]["refer_sensitivity"]["value"] == pytest.approx(direct["sensitivity"])
    for name in CROSS_SOURCE_METRICS:
        e = ham["metrics"][name]
        assert e["lo"] is not None
        assert e["hi"] is not None
        assert e["lo"] <= e["hi"]
    small = rows[1]
    assert small["n_images"] == 12
    assert all(e == {"value": None, "lo": None, "hi": None} for e in small["metrics"].values())
    assert "too few" in (small["note"] or "")
    isic17 = rows[2]
    assert set(isic17["classes_present"]) <= {"MEL", "NV", "BKL"}
    assert isic17["classes_present"] == [c for c in CLASSES8 if c in isic17["classes_present"]]
    assert isic17["run"] == RUN


def test_source_row_intervals_are_group_bootstrap() -> None:
    frame = _predictions(300, 5).assign(source="ham10000")
    row = source_rows(frame, CLASSES8, RUN, settings=EvalSettings(n_boot=25, seed=7))[0]
    y = frame["label"].map(CLASSES8.index).to_numpy()
    p = frame[[f"p_{c}" for c in CLASSES8]].to_numpy()

    def fn(w: np.ndarray | None) -> dict:
        return key_metrics(y, p, CLASSES8, w)

    codes = group_codes(frame["group"].to_numpy(dtype=object), len(y))
    want = bootstrap(fn, len(y), codes, n_boot=25, seed=7, keys=["mel_auc"])["mel_auc"]
    got = row["metrics"]["mel_auc"]
    assert (got["value"], got["lo"], got["hi"]) == pytest.approx((want["value"], want["lo"],
                                                                 want["hi"]))
    # no refer threshold given: no sensitivity / specificity
    assert row["metrics"]["refer_sensitivity"]["value"] is None


def test_source_rows_refuse_bad_frames() -> None:
    frame = _test_split()
    with pytest.raises(ValueError, match="source"):
        source_rows(frame.drop(columns="source"), CLASSES8, RUN)
    with pytest.raises(ValueError, match="p_SCC"):
        source_rows(frame.drop(columns="p_SCC"), CLASSES8, RUN)
    bad = frame.copy()
    bad.loc[0, "label"] = "UNK"
    with pytest.raises(ValueError, match="UNK"):
        source_rows(bad, CLASSES8, RUN)


# --- LOSO and the section ----------------------------------------------------------------------


def test_add_loso_row_appends_and_replaces() -> None:
    section = cross_source_section(source_rows(_test_split(), CLASSES8, RUN,
                                               settings=EvalSettings(n_boot=0)))
    left_out = _predictions(200, 9).assign(source="isic2020")
    other = _predictions(50, 10).assign(source="ham10000")
    loso_run: RunInfo = {"config": "configs/loso-isic2020.yaml", "seed": 1,
                         "command": "dermsight train --config configs/loso-isic2020.yaml"}
    out = add_loso_row(section, pd.concat([left_out, other]), CLASSES8, "isic2020",
                       ["ham10000", "isic2017"], loso_run, settings=EvalSettings(n_boot=10))
    loso = [r for r in out["rows"] if r["protocol"] == LOSO]
    assert len(loso) == 1
    assert loso[0]["source"] == "isic2020"
    assert loso[0]["n_images"] == 200  # rows of other sources are ignored
    assert loso[0]["trained_on"] == ["ham10000", "isic2017"]
    assert loso[0]["run"] == loso_run
    assert [r["protocol"] for r in out["rows"]] == [TEST_BY_SOURCE] * 3 + [LOSO]
    assert len(section["rows"]) == 3  # the input is not modified
    again = add_loso_row(out, left_out.iloc[:100], CLASSES8, "isic2020", ["ham10000"], loso_run,
                         settings=EvalSettings(n_boot=0))
    loso = [r for r in again["rows"] if r["protocol"] == LOSO]
    assert len(loso) == 1
    assert loso[0]["n_images"] == 100
    with pytest.raises(ValueError, match="both"):
        add_loso_row(None, left_out, CLASSES8, "isic2020", ["isic2020"], loso_run)
    first = add_loso_row(None, left_out, CLASSES8, "isic2020", ["ham10000"], loso_run,
                         settings=EvalSettings(n_boot=0))
    assert first["rows"][0]["protocol"] == LOSO


def test_section_is_json_and_validates() -> None:
    section = cross_source_section(source_rows(_test_split(), CLASSES8, RUN,
                                               settings=EvalSettings(n_boot=10,
                                                                     refer_threshold=0.3)))
    text = json.dumps(section, allow_nan=False)
    back = validate_cross_source(json.loads(text))
    assert back == section
    broken = json.loads(text)
    broken["rows"][0]["protocol"] = "pooled"
    with pytest.raises(ValidationError):
        validate_cross_source(broken)
    del broken["rows"][0]["metrics"]
    with pytest.raises(ValidationError):
        validate_cross_source(broken)


# --- ITA table ---------------------------------------------------------------------------------


def test_ita_table_counts_every_band_and_withholds_small_ones() -> None:
    frame = _predictions(500, 11)
    y = frame["label"].map(CLASSES8.index).to_numpy()
    p = frame[[f"p_{c}" for c in CLASSES8]].to_numpy()
    rng = np.random.default_rng(0)
    # mostly light skin, a handful of tan/brown, no dark, some not estimable
    ita: list[float | None] = list(rng.choice([70.0, 48.0, 35.0], size=460))
    ita += [20.0] * 12 + [0.0] * 3 + [None] * 25
    table = ita_table(y, p, CLASSES8, ita, groups=frame["group"],
                      settings=EvalSettings(refer_threshold=0.3, n_boot=20))
    bands = [r["subgroup"] for r in table["bands"]]
    assert bands == [*BANDS, NOT_ESTIMABLE]
    by = {r["subgroup"]: r for r in table["bands"]}
    assert sum(r["n"] for r in table["bands"]) == 500
    assert (by["tan"]["n"], by["brown"]["n"], by["dark"]["n"]) == (12, 3, 0)
    assert table["n_darker"] == 15
    assert table["n_estimable"] == 475
    assert by["dark"]["note"] == "no images"
    assert by["dark"]["mel_auc"] is None
    assert by["tan"]["balanced_accuracy"] is None
    assert "too few" in by["tan"]["note"]
    light = by["very light"]
    assert light["n"] >= 30
    assert light["malignant_auc"] is not None
    idx = [i for i, v in enumerate(ita) if v == 70.0]
    direct = key_metrics(y[idx], p[idx], CLASSES8, refer_threshold=0.3)
    assert light["malignant_auc"] == pytest.approx(direct["malignant_auc"])
    assert light["malignant_auc_lo"] <= light["malignant_auc"] <= light["malignant_auc_hi"]
    assert by["very light"]["ita_range"] == "> 55°"
    assert by["dark"]["ita_range"] == "≤ -30°"
    assert "15" in table["statement"]
    assert "tan 12, brown 3, dark 0" in table["statement"]
    json.dumps(table, allow_nan=False)
    with pytest.raises(ValueError, match="ita"):
        ita_table(y, p, CLASSES8, ita[:10])


def test_band_ranges_and_statement() -> None:
    assert band_ranges() == {"very light": "> 55°", "light": "41 to 55°",
                             "intermediate": "28 to 41°", "tan": "10 to 28°",
                             "brown": "-30 to 10°", "dark": "≤ -30°"}
    text = ita_statement({"very light": 900, "tan": 40, "brown": 2, NOT_ESTIMABLE: 58}, 1000)
    assert text.startswith("Of 1,000 images, a skin tone (ITA) could be estimated for 942")
    assert "only 42 (4.5 % of those)" in text
    assert "(brown, dark) get no metrics" in text
    plenty = ita_statement(dict.fromkeys(("tan", "brown", "dark"), 50), 150)
    assert "no metrics" not in plenty


# --- card_tables (what finalize calls) ---------------------------------------------------------


def test_card_tables_from_a_run() -> None:
    from dermsight.evaluate.card_tables import ScoredSet, card_tables

    frame = _test_split()
    y = frame["label"].map(CLASSES8.index).to_numpy()  # integer labels, as finalize has them
    p = frame[[f"p_{c}" for c in CLASSES8]].to_numpy()
    test = ScoredSet(y, p, frame["source"].tolist(), frame["group"].to_numpy())
    ext = _predictions(90, 12)
    held = ScoredSet(ext["label"].to_numpy(), ext[[f"p_{c}" for c in CLASSES8]].to_numpy(),
                     ["isic2020"] * 60 + ["derm7pt"] * 30, ext["group"].to_numpy())
    skin = np.broadcast_to(np.array([225, 180, 160], np.uint8), (32, 32, 3))
    images = [skin] * (len(frame) - 10) + [np.zeros((32, 32, 3), np.uint8)] * 10
    section, by_ita = card_tables(CLASSES8, test, images, RUN, held_out=held,
                                  trained_on=["ham10000", "isic2017"],
                                  settings=EvalSettings(refer_threshold=0.3, n_boot=5, seed=0))
    validate_cross_source(section)
    got = [(r["protocol"], r["source"], r["n_images"]) for r in section["rows"]]
    assert got == [(TEST_BY_SOURCE, "ham10000", 400), (TEST_BY_SOURCE, "isic2016", 12),
                   (TEST_BY_SOURCE, "isic2017", 120), (LOSO, "derm7pt", 30),
                   (LOSO, "isic2020", 60)]
    assert section["rows"][-1]["trained_on"] == ["ham10000", "isic2017"]
    counts = {b["subgroup"]: b["n"] for b in by_ita["bands"]}
    assert counts[NOT_ESTIMABLE] == 10
    assert sum(counts.values()) == len(frame)
    assert by_ita["statement"].startswith(f"Of {len(frame)} test images")
