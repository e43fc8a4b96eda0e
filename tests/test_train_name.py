"""The model's name against its backbone: ``--set model.backbone=...`` without ``--set name=...``
would ship a Lite2 network called "...effnetlite0...", so ``dermsight train`` warns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dermsight.train.config import load_config, name_backbone_mismatch

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "configs" / "default.yaml"


def test_the_shipped_config_names_its_own_backbone() -> None:
    cfg = load_config(DEFAULT)
    assert "effnetlite0" in cfg.name
    assert name_backbone_mismatch(cfg) is None


def test_another_lite_backbone_under_the_old_name_is_named_in_the_warning() -> None:
    cfg = load_config(DEFAULT, ["model.backbone=tf_efficientnet_lite2"])
    warning = name_backbone_mismatch(cfg)
    assert warning is not None
    assert "tf_efficientnet_lite0" in warning
    assert "tf_efficientnet_lite2" in warning
    assert "--set name=dermsight-effnetlite2-meta-9class" in warning
    # with the name set too, nothing to say
    renamed = load_config(DEFAULT, ["model.backbone=tf_efficientnet_lite2",
                                    "name=dermsight-effnetlite2-meta-9class"])
    assert name_backbone_mismatch(renamed) is None


def test_a_name_that_names_no_backbone_is_left_alone() -> None:
    cfg = load_config(DEFAULT, ["model.backbone=resnet18", "name=my-clinic-model"])
    assert name_backbone_mismatch(cfg) is None
    other = load_config(DEFAULT, ["model.backbone=resnet18"])
    warning = name_backbone_mismatch(other)
    assert warning is not None
    assert "--set name=dermsight-resnet18-meta-9class" in warning


@pytest.mark.train
def test_dermsight_train_prints_the_warning_before_it_starts(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    missing = tmp_path / "no-such-data"
    r = subprocess.run([sys.executable, "-m", "dermsight.cli", "train", "--config", str(DEFAULT),
                        "--out", str(tmp_path / "run"),
                        "--set", "model.backbone=tf_efficientnet_lite2",
                        "--set", f"data.root={missing}"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 2, r.stderr
    assert "warning: the model's name 'dermsight-effnetlite0-meta-9class' says " \
           "tf_efficientnet_lite0, but model.backbone is tf_efficientnet_lite2" in r.stderr
    assert "data folder not found" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()
