"""Fixes from the review of the evaluation-honesty and atomic-bundle commits: the macro AUC
leaves out withheld AUCs; the bundle swap tidies only a killed run's leftovers and keeps a
symbolic link; a lesion-only data folder is not silently split by lesion where patients were
asked for; the server does not serve a re-exported bundle's report beside the old model;
scikit-learn's notes in adapt / baseline; the data summary's unusable labels are cut short."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import api_support as support
from dermsight.bundle import staged_bundle, tidy_staged
from dermsight.evaluate import EvalSettings, evaluate_predictions
from dermsight.evaluate.bootstrap import WILSON
from dermsight.train.config import ConfigError, DataConfig
from dermsight.train.table import load_table

# --- 2: the macro AUC ---------------------------------------------------------------------


def _thin_unk() -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    classes = ["MEL", "NV", "BCC", "UNK"]
    y = np.array([0] * 40 + [1] * 50 + [2] * 20 + [3] * 1)
    return y, rng.dirichlet(np.ones(4), size=len(y)), classes


def _auc(y_bin: np.ndarray, s: np.ndarray) -> float:
    from dermsight.evaluate.metrics import binary_auc
    v = binary_auc(y_bin, s)
    assert v is not None
    return v


@pytest.mark.parametrize("n_boot", [0, 30])
def test_macro_auc_leaves_out_withheld_classes(n_boot: int) -> None:
    y, p, classes = _thin_unk()
    r = evaluate_predictions(y, p, classes, None,
                             settings=EvalSettings(n_boot=n_boot, intervals=WILSON))
    assert r["metrics"]["auc_UNK"] is None
    shown = np.mean([_auc(y == i, p[:, i]) for i in range(3)])
    assert r["metrics"]["auc_macro"] == pytest.approx(shown)
    entry = r["ci"]["auc_macro"]
    assert entry["value"] == pytest.approx(shown)
    assert entry["left_out"] == ["UNK"]
    assert "UNK" in entry["note"]
    if n_boot:
        assert entry["lo"] is not None
        assert entry["lo"] <= shown <= entry["hi"]


def test_macro_auc_unchanged_without_withheld_or_bootstrap_path() -> None:
    y, p, classes = _thin_unk()
    everything = np.mean([_auc(y == i, p[:, i]) for i in range(4)])
    r = evaluate_predictions(y, p, classes, None, settings=EvalSettings(n_boot=0))
    assert r["metrics"]["auc_macro"] == pytest.approx(everything)  # stored bootstrap path
    assert "left_out" not in r["ci"]["auc_macro"]


# --- 3 / 4: the bundle swap ---------------------------------------------------------------


def _complete(folder: Path, text: str = "old") -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_text(text)
    (folder / "card.json").write_text(text)
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_tidy_leaves_user_folders_and_running_builds(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _complete(run / "bundle")
    (run / "bundle.partial-foo").mkdir()
    (run / "bundle.partial-foo" / "precious.txt").write_text("x")
    (run / "bundle.old-mine").mkdir()
    (run / "bundle.partial-notes.txt").write_text("user file")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (run / f"bundle.partial-{live.pid}").mkdir()  # a finalize still building
        dead = _dead_pid()
        (run / f"bundle.partial-{dead}").mkdir()
        done = tidy_staged(run / "bundle")
    finally:
        live.kill()
        live.wait()
    names = sorted(p.name for p in run.iterdir())
    assert names == sorted(["bundle", "bundle.old-mine", "bundle.partial-foo",
                            "bundle.partial-notes.txt", f"bundle.partial-{live.pid}"])
    assert len(done) == 1
    assert f"bundle.partial-{dead}" in done[0]


def test_tidy_restores_only_a_complete_bundle(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "bundle.old-2023").mkdir(parents=True)  # a user's archive, not a bundle
    (run / "bundle.old-2023" / "card.json").write_text("user archived")
    assert tidy_staged(run / "bundle") == []
    assert sorted(p.name for p in run.iterdir()) == ["bundle.old-2023"]
    dead = _dead_pid()
    _complete(run / f"bundle.old-{dead}")
    done = tidy_staged(run / "bundle")
    assert len(done) == 1
    assert "restored" in done[0]
    assert (run / "bundle" / "model.onnx").read_text() == "old"
    assert (run / "bundle.old-2023" / "card.json").read_text() == "user archived"


def test_staged_bundle_keeps_a_symlinked_destination(tmp_path: Path) -> None:
    real = _complete(tmp_path / "models" / "current")
    run = tmp_path / "run"
    run.mkdir()
    (run / "bundle").symlink_to(real)
    with staged_bundle(run / "bundle") as stage:
        assert stage.parent == real.parent  # built beside the target: one file system
        (stage / "model.onnx").write_text("new")
    assert (run / "bundle").is_symlink()
    assert (real / "model.onnx").read_text() == "new"
    assert sorted(p.name for p in real.parent.iterdir()) == ["current"]


# --- 5: the group column fallback ---------------------------------------------------------


def _folders(tmp_path: Path, data_dir: Path) -> tuple[Path, Path]:
    md = pd.read_csv(data_dir / "metadata.csv")
    classes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    u = md[md["diagnosis"].isin(classes)].sort_values("image_id")
    a, b = u.iloc[:30].reset_index(drop=True), u.iloc[30:60].reset_index(drop=True)

    def folder(name: str, df: pd.DataFrame) -> Path:
        r = tmp_path / name
        (r / "images").mkdir(parents=True)
        for i in df["image_id"]:
            (r / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
        df.to_csv(r / "metadata.csv", index=False)
        return r

    ham = pd.DataFrame({"image_id": a["image_id"], "diagnosis": a["diagnosis"],
                        "lesion_id": [f"L{i // 3}" for i in range(30)]})
    shared = b[["image_id", "diagnosis", "group_id", "lesion_id", "patient_id"]]
    return folder("ham", ham), folder("shared", shared)


@pytest.mark.parametrize("group_col", ["patient_id", "group_id"])
def test_lesion_only_folder_is_refused_where_patients_were_asked(
        tmp_path: Path, data_dir: Path, group_col: str) -> None:
    ham, shared = _folders(tmp_path, data_dir)
    cfg = DataConfig(root=[str(ham), str(shared)], group_col=group_col)
    with pytest.raises(ConfigError, match=r"data\.group_col_fallback=lesion"):
        load_table(cfg, notes=[])


def test_lesion_fallback_opt_in_says_patients_may_be_split(tmp_path: Path,
                                                            data_dir: Path) -> None:
    ham, shared = _folders(tmp_path, data_dir)
    cfg = DataConfig(root=[str(ham), str(shared)], group_col="patient_id",
                     group_col_fallback="lesion")
    notes: list[str] = []
    df = load_table(cfg, notes=notes)
    assert len(df) > 0
    assert any("may be in different splits" in n for n in notes)


def test_group_col_fallback_setting_is_checked() -> None:
    from dermsight.train.config import load_config
    with pytest.raises(ConfigError, match="must be lesion or null"):
        load_config(None, ["data.group_col_fallback=patient"])


# --- 10: the served report / plots --------------------------------------------------------


def test_server_refuses_a_reexported_bundles_report(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from dermsight.web.app import create_app
    from dermsight.web.settings import Settings

    bundle = support.make_report_bundle(tmp_path / "b")
    app = create_app(Settings(model_path=bundle, static_dir=tmp_path / "no-ui"))
    with TestClient(app) as c:
        r = c.get("/api/v1/model/report")
        assert r.status_code == 200
        plots = c.get("/api/v1/model/plots").json()["plots"]
        assert plots
        assert c.get(f"/api/v1/model/plots/{plots[0]}.png").status_code == 200
        # a re-export writes a new report and plots into the same folder
        (bundle / "report.html").write_text("<html>another model</html>")
        (bundle / "plots" / f"{plots[0]}.png").write_bytes(b"\x89PNG other")
        (bundle / "plots" / "new_plot.png").write_bytes(b"\x89PNG new")
        r = c.get("/api/v1/model/report")
        assert r.status_code == 409
        assert "restart the server" in r.text
        r = c.get(f"/api/v1/model/plots/{plots[0]}.png")
        assert r.status_code == 409
        assert "new_plot" not in c.get("/api/v1/model/plots").json()["plots"]
        assert c.get("/api/v1/model/plots/new_plot.png").status_code == 404
    shutil.rmtree(bundle)
    assert not os.path.exists(bundle)


# --- 9: unusable labels are cut short -----------------------------------------------------


def test_summary_cuts_a_free_text_diagnosis(tmp_path: Path, data_dir: Path,
                                            sample_ids: list[str]) -> None:
    from dermsight.datasummary import MAX_LABEL_CHARS, summarize

    root = tmp_path / "cohort"
    (root / "images").mkdir(parents=True)
    for i in sample_ids[:2]:
        (root / "images" / f"{i}.jpg").symlink_to(data_dir / "images" / f"{i}.jpg")
    free = "pt reports lesion growing since March, mother had melanoma, seen by Dr Smith 2023"
    pd.DataFrame({"image_id": sample_ids[:2], "diagnosis": ["nevus", free]}).to_csv(
        root / "metadata.csv", index=False)
    labels = summarize(root, verify=False).to_dict()["unusable_labels"]
    assert len(labels) == 1
    (shown,) = labels
    assert len(shown) == MAX_LABEL_CHARS
    assert shown.endswith("…")
    assert "Dr Smith" not in shown
    assert free.startswith(shown[:-1])


# --- 7: scikit-learn's fold warning in bundle adapt ----------------------------------------


def test_adapt_folds_name_the_thin_class_once(capsys: pytest.CaptureFixture[str],
                                              recwarn: pytest.WarningsRecorder) -> None:
    from dermsight.decision import DecisionRule
    from dermsight.local_update import LocalCases, cross_fitted

    rng = np.random.default_rng(0)
    classes = ["MEL", "NV", "BCC"]
    labels = np.array([1] * 30 + [2] * 30 + [0], np.int64)  # one MEL case: fewer than 2 folds
    probs = rng.dirichlet(np.ones(3), size=labels.size)
    groups = np.array([f"g{i}" for i in range(labels.size)])
    cases = LocalCases(probs=probs, labels=labels, groups=groups)
    for _ in range(2):
        cross_fitted(cases, DecisionRule(), classes, ["NV", "BCC"], 0, [])
    err = capsys.readouterr().err
    assert err.count("note: class MEL (1 case) has fewer cases than the 2 folds") == 1
    assert not [w for w in recwarn if "least populated class" in str(w.message)]
