"""Gate v2: the offline negatives, the numpy scoring of the fitted heads, the flags it raises, the
"cannot assess" result that never shows numbers as valid, and natural frequencies per tier."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dermsight import gate
from dermsight.bundle import Thresholds, default_bundle_path
from dermsight.evaluate.frequencies import natural_frequencies

pytest.importorskip("sklearn")
pytest.importorskip("skimage")


def test_negatives_are_small_deterministic_and_labelled() -> None:
    from dermsight.evaluate.negatives import CATEGORIES, CLINICAL, build_negatives

    derm = [np.full((120, 120, 3), (200, 150, 130), np.uint8)]
    a = build_negatives(seed=3, n_generated=2, views=2, dermo_for_clinical=derm,
                        recoloured=True)
    b = build_negatives(seed=3, n_generated=2, views=2, dermo_for_clinical=derm,
                        recoloured=True)
    # off by default (the shipped gate has no recoloured head), and the same images otherwise
    plain = build_negatives(seed=3, n_generated=2, views=2, dermo_for_clinical=derm)
    assert [n.name for n in plain] == [n.name for n in a if n.category != "recoloured"]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(plain, a, strict=False))
    assert [n.name for n in a] == [n.name for n in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    counts = Counter(n.category for n in a)
    assert set(counts) == set(CATEGORIES)  # every kind is represented, even in a small call
    assert counts[CLINICAL] >= 3  # drawn proxies + the one made from the dermoscopic image
    for n in a:
        assert n.image.dtype == np.uint8
        assert n.image.ndim == 3
        assert n.image.shape[2] == 3
        assert min(n.image.shape[:2]) >= 32
    assert len(a) < 150  # small enough for the default test suite
    c = build_negatives(seed=4, n_generated=2, views=2)
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=False))


def test_missing_debian_pictures_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without the wallpaper / clip-art packages fits a different gate: the packages
    not installed are named (training warns), installed ones are not."""
    import shutil

    from dermsight.evaluate import negatives

    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    monkeypatch.setattr(negatives, "SYSTEM_PACKAGES", ("bash", "dermsight-no-such-package"))
    assert negatives.system_pictures_missing() == ["dermsight-no-such-package"]
    monkeypatch.setattr(negatives, "SYSTEM_PACKAGES", ("bash", "coreutils"))
    assert negatives.system_pictures_missing() == []


def _features(rng: np.random.Generator, n: int, centre: float, d: int = 16) -> Any:
    from dermsight.train.gate_fit import GateFeatures

    emb = rng.normal(centre, 1.0, (n, d)).astype(np.float32)
    quality = np.column_stack([rng.uniform(90, 200, n), rng.uniform(20, 60, n),
                               rng.uniform(0, 0.05, n), rng.uniform(20, 300, n),
                               rng.uniform(0.1, 0.5, n)])
    return GateFeatures(emb, quality, np.zeros(n, bool))


def _bank(rng: np.random.Generator, d: int = 16) -> dict[str, np.ndarray]:
    bank = rng.normal(0.0, 1.0, (200, d)).astype(np.float32)
    return {"bank": bank / np.linalg.norm(bank, axis=1, keepdims=True), "k": np.array(5)}


def test_fit_stores_plain_arrays_that_numpy_scores_like_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression

    from dermsight.train import gate_fit

    rng = np.random.default_rng(0)
    v1 = _bank(rng)
    train, val = _features(rng, 400, 0.0), _features(rng, 300, 0.0)
    neg = gate_fit.GateFeatures.concat([_features(rng, 150, 3.0), _features(rng, 60, -3.0)])
    cats = ["a"] * 150 + ["clinical_skin_proxy"] * 60
    cfg, arrays = gate_fit.fit_gate_v2_features(
        v1, gate_fit.GateFitSet(train, val, neg, cats), seed=0)
    assert set(arrays) == {"v2_mean", "v2_scale", "v2_w", "v2_b", "v2c_w", "v2c_b"}
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    # the stored head is the same logistic regression sklearn fits
    x_tr = gate.v2_inputs(train.embedding, gate_fit.knn_scores(train.embedding, v1, True),
                          train.quality)
    x_neg = gate.v2_inputs(neg.embedding[:150], gate_fit.knn_scores(neg.embedding[:150], v1),
                           neg.quality[:150])
    z = (np.concatenate([x_tr, x_neg]) - arrays["v2_mean"]) / arrays["v2_scale"]
    clf = LogisticRegression(C=gate_fit.C_REG, class_weight="balanced", max_iter=3000)
    clf.fit(z, np.r_[np.zeros(len(x_tr)), np.ones(len(x_neg))])
    np.testing.assert_allclose(gate.v2_logit(x_neg, arrays), clf.decision_function(z[400:]),
                               rtol=1e-3, atol=1e-3)
    # threshold at the 99th percentile of validation scores: about 1 % of them refused
    blocked, _ = gate_fit.decisions({"ood_threshold": 9.0, **cfg}, {**v1, **arrays}, val)
    assert 0.0 < blocked.mean() <= 0.03
    blocked_neg, _clin = gate_fit.decisions({"ood_threshold": 9.0, **cfg}, {**v1, **arrays},
                                           neg.subset(np.arange(150)))
    assert blocked_neg.mean() > 0.9


def test_leave_one_category_out_reports_every_kind() -> None:
    from dermsight.train import gate_fit

    rng = np.random.default_rng(1)
    v1 = _bank(rng)
    train, val = _features(rng, 300, 0.0), _features(rng, 200, 0.0)
    neg = gate_fit.GateFeatures.concat([_features(rng, 80, 3.0), _features(rng, 80, -3.0),
                                        _features(rng, 40, 2.0)])
    cats = ["up"] * 80 + ["down"] * 80 + ["clinical_skin_proxy"] * 40
    groups = [f"pic{i // 4}" for i in range(len(cats))]  # 4 views per picture
    _, _, ev = gate_fit.measure_gate_v2({"ood_threshold": 9.0}, v1,
                                        gate_fit.GateFitSet(train, val, neg, cats),
                                        {"src": _features(rng, 100, 0.0)}, seed=0,
                                        groups=groups)
    held = ev["held_out_false_accept"]
    new = ev["new_pictures_false_accept"]
    assert set(new) == set(held)
    assert sum(r["false_accept"]["n"] for r in new.values()) == len(cats)
    # pictures of a kind the gate has seen are caught at least as often as an unseen kind
    assert new["down"]["false_accept"]["rate"] <= held["down"]["false_accept"]["rate"]
    assert set(held) == {"up", "down", "clinical_skin_proxy"}
    # fitted only on "up", the gate has never seen "down": it is let through far more often
    assert held["down"]["false_accept"]["rate"] > held["up"]["false_accept"]["rate"] or \
        held["down"]["false_accept"]["rate"] > 0.5
    assert ev["false_reject_test"]["src"]["n"] == 100
    assert set(ev["v1_false_accept"]) == set(held)


def _v2_arrays(d: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    bank = np.eye(d, dtype=np.float32)[:6]
    n_in = d + 1 + 5
    w = np.zeros(n_in, np.float32)
    w[0] = 1.0  # blocking head: feature 0
    wc = np.zeros(n_in, np.float32)
    wc[1] = 1.0  # clinical head: feature 1
    arrays = {"bank": bank, "k": np.array(1), "v2_mean": np.zeros(n_in, np.float32),
              "v2_scale": np.ones(n_in, np.float32), "v2_w": w, "v2_b": np.array(0.0),
              "v2c_w": wc, "v2c_b": np.array(0.0)}
    cfg = {"ood_threshold": 2.0, "v2_threshold": 0.5, "v2_clinical_threshold": 0.5}
    return cfg, arrays


def test_ood_flags_block_or_warn_with_v2() -> None:
    cfg, arrays = _v2_arrays(8)
    emb = np.zeros((3, 8), np.float32)
    emb[0, 0] = 1.0  # blocking head fires
    emb[1, 1] = 1.0  # clinical head fires: non-blocking flag
    emb[2, 2] = 1.0  # neither
    quality = np.tile([120.0, 40.0, 0.0, 100.0, 0.3], (3, 1))
    out = gate.ood_flags(emb, cfg, arrays, quality)
    assert [f.code for f in out[0][0]] == ["out_of_distribution"]
    assert out[0][0][0].blocking
    assert [f.code for f in out[1][0]] == ["not_dermoscopic"]
    assert out[1][0][0].blocking is False
    assert "accuracy unknown" in out[1][0][0].message
    assert out[2][0] == []
    # without the images' statistics (or without a v2 head) the v1 kNN rule applies
    v1 = gate.ood_flags(emb, cfg, arrays)
    assert all(flags == [] for flags, _ in v1)


def test_cannot_assess_result_shows_no_numbers_as_valid(jpeg: bytes) -> None:
    from dermsight.predict import Dermsight

    model = Dermsight.load()
    blank = np.full((300, 300, 3), 128, np.uint8)
    pred = model.predict(blank, heatmap=True)
    assert pred.risk == "cannot_assess"
    assert not pred.assessable
    assert pred.cam is None
    d = pred.to_dict()
    for key in ("probabilities", "prediction", "prediction_name", "malignant_probability",
                "heatmap"):
        assert key not in d, key
    u = d["unreliable"]
    assert "not a valid result" in u["note"]
    assert abs(sum(u["probabilities"].values()) - 1) < 1e-4
    assert u["probabilities"] == pytest.approx(
        {k: round(v, 6) for k, v in pred.probabilities.items()})
    ok = model.predict(jpeg, heatmap=True).to_dict()
    if ok["risk"] != "cannot_assess":
        assert "unreliable" not in ok
        assert "probabilities" in ok
        assert "heatmap" in ok


def test_cli_prints_no_class_for_a_refused_image(tmp_path: Path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from dermsight.cli import app

    img = tmp_path / "blank.png"
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(img)
    res = CliRunner().invoke(app, ["predict", str(img), "--heatmap", str(tmp_path / "h.png")])
    assert res.exit_code == 0, res.output
    assert "cannot assess (no result)" in res.output
    assert "malignant" not in res.output
    assert "risk: " not in res.output
    assert not (tmp_path / "h.png").exists()


def test_natural_frequencies_count_per_tier() -> None:
    p = np.array([0.9, 0.8, 0.5, 0.4, 0.1, 0.05, 0.02, 0.01])
    y = np.array([1, 0, 1, 0, 0, 0, 0, 1], bool)
    nf = natural_frequencies(p, y, Thresholds(refer=0.7, monitor=0.3), ["a"] * 5 + ["b"] * 3)
    assert nf["per_tier"]["high"] == {"n": 2, "malignant": 1, "per_100": 50}
    assert nf["per_tier"]["moderate"] == {"n": 2, "malignant": 1, "per_100": 50}
    assert nf["per_tier"]["low"] == {"n": 4, "malignant": 1, "per_100": 25}
    assert nf["source_mix"] == {"a": 5, "b": 3}
    assert "not this patient's own risk" in nf["limits"]
    empty = natural_frequencies(p[:1], y[:1], Thresholds(refer=0.7, monitor=0.3))
    assert empty["per_tier"]["low"] == {"n": 0, "malignant": 0, "per_100": None}


def test_shipped_card_has_gate_v2_figures_and_frequencies() -> None:
    from dermsight.bundle import load_bundle

    b = load_bundle()
    if "v2_threshold" not in b.card.gate:
        pytest.skip("the shipped bundle has no gate v2")
    ev = b.card.gate["v2_evaluation"]
    assert set(ev["held_out_false_accept"]) >= {"natural_photo", "documents", "medical_other"}
    assert all(r["n"] > 0 for r in ev["false_reject_test"].values())
    assert {"v2_w", "v2_b", "v2_mean", "v2_scale"} <= set(b.gate_arrays)
    nf = b.card.extra["natural_frequencies"]
    assert nf["split"] == "validation"
    assert sum(t["n"] for t in nf["per_tier"].values()) == nf["n"]


@pytest.mark.slow
def test_reduced_fit_on_the_shipped_model(data_dir: Path) -> None:
    """A reduced gate v2 fit end to end on real images (40 training / 40 validation images)."""
    import pandas as pd

    from dermsight.evaluate.negatives import build_negatives
    from dermsight.io.decode import decode_image
    from dermsight.predict import Dermsight
    from dermsight.train.gate_fit import fit_gate_v2

    model = Dermsight.load()
    split = pd.read_csv(Path(__file__).parents[1] / "configs" / "default-split.csv")
    paths = {s: [data_dir / "images" / f"{i}.jpg"
                 for i in split.loc[split["split"] == s, "image_id"].head(40)]
             for s in ("train", "val")}
    if not all(p.exists() for ps in paths.values() for p in ps):
        pytest.skip("isic-subset images not available")
    imgs = {s: [decode_image(str(p)) for p in ps] for s, ps in paths.items()}
    negs = build_negatives(seed=0, n_generated=3, views=2, dermo_for_clinical=imgs["train"][:5])
    cfg, arrays = fit_gate_v2(model, imgs["train"], imgs["val"], negs, seed=0)
    assert "v2_threshold" in cfg
    assert "v2_clinical_threshold" in cfg
    full_cfg = {**model.card.gate, **cfg}
    full_arrays = {**model.bundle.gate_arrays, **arrays}
    x, m = model.prepare(imgs["val"][0], None)
    emb = model.run_arrays(x[None], m[None])["embedding"]
    flags, _ = gate.assess(imgs["val"][0], emb, full_cfg, full_arrays)
    assert isinstance(flags, list)


def test_source_weights_and_weighted_quantile() -> None:
    from dermsight.train.gate_fit import source_weights, weighted_quantile

    w = source_weights(["a"] * 8 + ["b"] * 2, 10)
    assert w[:8].sum() == pytest.approx(w[8:].sum())
    assert w.mean() == pytest.approx(1.0)
    assert np.array_equal(source_weights(None, 3), np.ones(3))
    v = np.arange(100, dtype=float)
    assert weighted_quantile(v, 0.5, np.ones(100)) == pytest.approx(49.0)
    # the 10 large values carry half the weight: the median moves into them
    w2 = np.r_[np.ones(90), np.full(10, 9.0)]
    assert weighted_quantile(v, 0.6, w2) >= 90


def test_gate_fit_cli_errors_are_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    code = run_guarded(app, ["gate", "fit", str(default_bundle_path()), "--data",
                             str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "not found" in err
    assert "metadata.csv" in err
    assert "Traceback" not in err
    (tmp_path / "metadata.csv").write_text("image_id\n")
    code = run_guarded(app, ["gate", "fit", str(tmp_path / "no-bundle"), "--data",
                             str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3
    assert "bundle" in err
    assert "Traceback" not in err
    # a bundle trained on two data folders (the shipped nine-class one): refused, nothing written
    card = json.loads((default_bundle_path() / "card.json").read_text())
    roots = card["training"]["config"]["data"]["root"]
    if not (isinstance(roots, list) and len(roots) > 1):
        pytest.skip("the shipped bundle was trained on one data folder")
    before = (default_bundle_path() / "gate.npz").read_bytes()
    code = run_guarded(app, ["gate", "fit", str(default_bundle_path()), "--data",
                             str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0
    assert "refits one-folder bundles only" in err
    assert "Traceback" not in err
    assert (default_bundle_path() / "gate.npz").read_bytes() == before


def test_the_fit_set_leaves_out_a_kind_or_a_source_and_nothing_else() -> None:
    from dermsight.train import gate_fit

    rng = np.random.default_rng(2)
    train, val, neg = _features(rng, 6, 0.0), _features(rng, 4, 0.0), _features(rng, 5, 3.0)
    fit = gate_fit.GateFitSet(train, val, neg, ["a", "b", "a", "c", "b"],
                              train_sources=["x", "y", "x", "x", "y", "z"],
                              val_sources=["y", "x", "z", "x"])
    no_b = fit.negatives_at(np.array([0, 2, 3]))
    assert list(no_b.categories) == ["a", "a", "c"]
    np.testing.assert_array_equal(no_b.negatives.embedding, neg.embedding[[0, 2, 3]])
    assert no_b.train is train
    no_x = fit.without_source("x")
    assert list(no_x.train_sources or []) == ["y", "y", "z"]
    assert list(no_x.val_sources or []) == ["y", "z"]
    np.testing.assert_array_equal(no_x.train.embedding, train.embedding[[1, 4, 5]])
    np.testing.assert_array_equal(no_x.val.embedding, val.embedding[[0, 2]])
    assert no_x.negatives is neg
    with pytest.raises(ValueError, match="sources"):
        gate_fit.GateFitSet(train, val, neg, ["a"] * 5).without_source("x")


def test_recolourings_change_colour_not_the_picture() -> None:
    """Each recolouring keeps the picture's structure and takes away (or swaps) its colour:
    sepia and a tinted grey copy have one chromaticity at every unclipped pixel, a channel swap
    and a negative are exact permutations / complements."""
    from dermsight.evaluate.negatives import RECOLOURINGS, recolour

    rng = np.random.default_rng(0)
    img = rng.integers(20, 200, (40, 50, 3)).astype(np.uint8)
    grey = img.astype(np.float64) @ [0.299, 0.587, 0.114]
    for how in ("sepia", "tinted_grey"):
        out = recolour(img, how, rng).astype(np.float64)
        unclipped = out.max(axis=2) < 255
        chroma = out[unclipped] / out[unclipped].sum(axis=1, keepdims=True)
        assert chroma.std(axis=0).max() < 0.01, how  # one tint everywhere
        assert np.corrcoef(out.mean(axis=2)[unclipped], grey[unclipped])[0, 1] > 0.99
    swapped = recolour(img, "swapped_channels", rng)
    assert sorted(swapped.reshape(-1, 3).sum(axis=0)) == sorted(img.reshape(-1, 3).sum(axis=0))
    assert not np.array_equal(swapped, img)
    assert np.array_equal(recolour(img, "negative", rng), 255 - img)
    assert set(RECOLOURINGS) == {"sepia", "tinted_grey", "swapped_channels", "negative"}
    with pytest.raises(ValueError, match="unknown recolouring"):
        recolour(img, "solarise", rng)


def test_recoloured_negatives_get_their_own_head_and_leave_the_main_one_alone() -> None:
    """Recoloured copies are fitted by a third, blocking head; the blocking head is the one
    fitted without them, bit for bit (as one of its negatives they cost it other kinds)."""
    from dermsight.train import gate_fit

    rng = np.random.default_rng(1)
    v1 = _bank(rng)
    train, val = _features(rng, 400, 0.0), _features(rng, 300, 0.0)
    other, clinical, recoloured = (_features(rng, 150, 3.0), _features(rng, 60, -3.0),
                                   _features(rng, 80, 0.0))
    recoloured.embedding[:, 5] += 4.0  # recoloured copies differ in one direction only
    neg = gate_fit.GateFeatures.concat([other, clinical, recoloured])
    cats = ["a"] * 150 + ["clinical_skin_proxy"] * 60 + ["recoloured"] * 80
    fit = gate_fit.GateFitSet(train, val, neg, cats)
    cfg, arrays = gate_fit.fit_gate_v2_features(v1, fit, seed=0)
    assert {"v2r_w", "v2r_b"} <= set(arrays)
    assert "recoloured-image head" in cfg["v2_fit"]
    without = gate_fit.fit_gate_v2_features(v1, fit.negatives_at(np.arange(210)), seed=0)
    assert "v2r_w" not in without[1]
    assert "v2_recoloured_threshold" not in without[0]
    for key in ("v2_mean", "v2_scale", "v2_w", "v2_b", "v2c_w", "v2c_b"):
        np.testing.assert_array_equal(arrays[key], without[1][key])
    assert cfg["v2_threshold"] == without[0]["v2_threshold"]
    full = {"ood_threshold": 9.0, **cfg}
    blocked_r, _ = gate_fit.decisions(full, {**v1, **arrays}, recoloured)
    blocked_r0, _ = gate_fit.decisions({"ood_threshold": 9.0, **without[0]},
                                       {**v1, **without[1]}, recoloured)
    assert blocked_r.mean() > 0.9 > blocked_r0.mean()  # only the third head refuses them
    # its threshold costs about half a percent of the validation images, not more
    blocked_val, _ = gate_fit.decisions(full, {**v1, **arrays}, val)
    blocked_val0, _ = gate_fit.decisions({"ood_threshold": 9.0, **without[0]},
                                         {**v1, **without[1]}, val)
    assert blocked_val.mean() - blocked_val0.mean() <= 0.01


def test_ood_flags_block_recoloured_images_with_their_own_flag() -> None:
    cfg, arrays = _v2_arrays(8)
    wr = np.zeros_like(arrays["v2_w"])
    wr[2] = 1.0  # recoloured head: feature 2
    arrays = {**arrays, "v2r_w": wr, "v2r_b": np.array(0.0)}
    cfg = {**cfg, "v2_recoloured_threshold": 0.5}
    emb = np.zeros((3, 8), np.float32)
    emb[0, 2] = 1.0  # recoloured head fires
    emb[1, 0] = emb[1, 2] = 1.0  # both blocking heads: the main head's flag
    emb[2, 3] = 1.0  # none
    quality = np.tile([120.0, 40.0, 0.0, 100.0, 0.3], (3, 1))
    out = gate.ood_flags(emb, cfg, arrays, quality)
    assert [f.code for f in out[0][0]] == ["recoloured"]
    assert out[0][0][0].blocking
    assert "colour" in out[0][0][0].message
    assert [f.code for f in out[1][0]] == ["out_of_distribution"]
    assert out[2][0] == []


def test_refit_trained_refuses_a_split_that_is_not_the_bundles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate is refitted on the bundle's own split only: a split file that differs from the
    one its config prepares (one image moved from training to test) is refused before any image
    is scored, and nothing is written."""
    import pandas as pd

    from dermsight.train.gate_refit import refit_trained

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # the config's data roots are relative to the repository
    split = pd.read_csv(repo / "configs" / "default-split.csv")
    moved = split.index[split["split"] == "train"][0]
    split.loc[moved, "split"] = "test"
    split.to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(ValueError, match="differs from"):
        refit_trained(default_bundle_path(), repo / "configs" / "default.yaml",
                      tmp_path / "split.csv", tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out").exists()
