"""Follow-ups of the whole-bundle swap (``bundle.staged_bundle``, tests/test_bundle_atomic.py):

* ``dermsight train --bundle DST`` / ``dermsight export RUN --out DST`` copy the bundle into a
  sibling ``DST.partial-<pid>`` and rename it into place once whole: a copy that fails part-way
  (a full disk) or is interrupted (Ctrl-C) leaves DST the bundle it was (``make train`` copies
  into the shipped bundle's folder), never deleted or half-copied;
* a Ctrl-C during ``dermsight export`` says what RUN/bundle holds, as ``dermsight train`` does,
  exit 130;
* a new card's ``baseline.test`` uses the intervals of the card's other test figures (Wilson for
  a proportion, ``n`` its cases), not the percentile bootstrap.

No training: fake bundles (a card.json and a few files), a monkeypatched finalize, and the
baseline called on made-up scores (its probe monkeypatched).
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cli_support import run as cli

REPO = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _fake_bundle(folder: Path, text: str, n_plots: int = 6) -> Path:
    """A folder that passes for a bundle as copying sees one (a card.json), with a few files."""
    (folder / "plots").mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps({"made": text}))
    (folder / "model.onnx").write_text(f"onnx {text}")
    for i in range(n_plots):
        (folder / "plots" / f"p{i}.png").write_text(f"{text} {i}")
    return folder


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f"{name}."))


def _copy_failing_after(files: int, exc: BaseException) -> Callable[..., Any]:
    """``shutil.copytree`` that copies ``files`` files, then raises ``exc`` (a full disk, a
    Ctrl-C): what the command's copy went through before and after the fix."""
    real = shutil.copytree

    def copytree(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) >= 3:  # copytree's own call for a subfolder: copy_function already given
            return real(src, dst, *args, **kwargs)
        done = [0]

        def copy(s: str, d: str, **kw: Any) -> Any:
            if done[0] >= files:
                raise exc
            done[0] += 1
            return shutil.copy2(s, d, **kw)

        kwargs["copy_function"] = copy
        return real(src, dst, *args, **kwargs)

    return copytree


@pytest.fixture
def old_and_new(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    new = _fake_bundle(tmp_path / "run" / "bundle", "new")
    dst = _fake_bundle(tmp_path / "shipped" / "default", "old", n_plots=3)
    return new, dst, _files(dst)


def test_a_copy_that_fails_part_way_leaves_the_destination_as_it_was(
        old_and_new: tuple[Path, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    from dermsight.cli.errors import UserError
    from dermsight.cli.model import copy_bundle

    new, dst, before = old_and_new
    full = OSError(errno.ENOSPC, "No space left on device")
    with monkeypatch.context() as m:
        m.setattr(shutil, "copytree", _copy_failing_after(3, full))
        with pytest.raises((UserError, OSError)) as caught:  # OSError: before the fix
            copy_bundle(new, dst)
    assert _files(dst) == before  # the old bundle, whole: not deleted, not half-copied
    assert _leftovers(dst.parent, dst.name) == []
    # one clear line (exit 2 through the CLI), saying the destination was left as it was
    assert isinstance(caught.value, UserError), repr(caught.value)
    text = str(caught.value)
    assert "No space left on device" in text
    assert f"{dst} is still the bundle made before, left as it was" in text
    assert "\n" not in text
    # the copy that does go through replaces it whole
    copy_bundle(new, dst)
    assert _files(dst) == _files(new)
    assert _leftovers(dst.parent, dst.name) == []


def test_a_copy_stopped_by_ctrl_c_leaves_the_destination_as_it_was(
        old_and_new: tuple[Path, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    from dermsight.cli.errors import Interrupted
    from dermsight.cli.model import copy_bundle

    new, dst, before = old_and_new
    with monkeypatch.context() as m:
        m.setattr(shutil, "copytree", _copy_failing_after(2, KeyboardInterrupt()))
        # (KeyboardInterrupt caught too: before the fix it escaped, and it must not end pytest)
        with pytest.raises((Interrupted, KeyboardInterrupt)) as caught:
            copy_bundle(new, dst)
    assert _files(dst) == before
    assert _leftovers(dst.parent, dst.name) == []
    assert isinstance(caught.value, Interrupted)
    assert f"{dst} is still the bundle made before, left as it was" in str(caught.value)


def test_a_failed_first_copy_leaves_no_half_bundle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing at the destination before: a failed copy leaves nothing there either (a half
    copy with a card.json would pass for a bundle and be overwritten without a question)."""
    from dermsight.cli.errors import UserError
    from dermsight.cli.model import copy_bundle

    new = _fake_bundle(tmp_path / "run" / "bundle", "new")
    dst = tmp_path / "out" / "bundle"
    with monkeypatch.context() as m:
        m.setattr(shutil, "copytree", _copy_failing_after(
            2, OSError(errno.ENOSPC, "No space left on device")))
        with pytest.raises((UserError, OSError)) as caught:  # OSError: before the fix
            copy_bundle(new, dst)
    assert not dst.exists()
    assert _leftovers(dst.parent, dst.name) == []
    assert isinstance(caught.value, UserError)
    assert f"{dst} has no bundle" in str(caught.value)


def test_copying_a_bundle_onto_itself_or_into_itself(tmp_path: Path) -> None:
    """``export RUN --out RUN/bundle`` keeps the bundle (it used to delete it, then fail to copy
    from it); a destination inside the bundle is refused."""
    from dermsight.cli.errors import UserError
    from dermsight.cli.model import copy_bundle

    bundle = _fake_bundle(tmp_path / "run" / "bundle", "new")
    before = _files(bundle)
    copy_bundle(bundle, tmp_path / "run" / ".." / "run" / "bundle")
    assert _files(bundle) == before
    with pytest.raises(UserError, match="inside the bundle"):
        copy_bundle(bundle, bundle / "copy")
    assert _files(bundle) == before


# --- through the CLI ----------------------------------------------------------------------------


def _finished_run(run_dir: Path, data_dir: Path) -> Path:
    """What ``dermsight export`` checks before finalize: best.pt and a readable config.json."""
    from dermsight.train.config import load_config

    cfg = load_config(REPO / "configs" / "default.yaml", [f"data.root={data_dir}"])
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (run_dir / "best.pt").write_bytes(b"")
    return run_dir


def _interrupting_finalize(*_: Any, **__: Any) -> Any:
    raise KeyboardInterrupt


def test_export_interrupted_says_what_the_run_kept(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.train import pipeline

    run_dir = _finished_run(tmp_path / "run", data_dir)
    monkeypatch.setattr(pipeline, "run", _interrupting_finalize)
    # no bundle yet
    code, _, err = cli(capsys, "export", str(run_dir))
    assert code == 130
    assert "Traceback" not in err
    assert err.strip() == (f"interrupted: the bundle was not made ({run_dir / 'bundle'} has no "
                           "bundle): make it with the same command")
    # an earlier bundle: still there, and said so (as dermsight train says it)
    _fake_bundle(run_dir / "bundle", "earlier")
    before = _files(run_dir / "bundle")
    dst = _fake_bundle(tmp_path / "copy", "copied before")
    copied = _files(dst)
    code, _, err = cli(capsys, "export", str(run_dir), "--out", str(dst))
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("interrupted: the bundle was not made")
    assert f"({run_dir / 'bundle'} is still the bundle made before, left as it was)" in lines[0]
    assert f"nothing was copied to {dst}" in lines[0]
    assert _files(run_dir / "bundle") == before
    assert _files(dst) == copied


def test_export_stopped_after_the_swap_says_the_new_bundle_is_whole(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.bundle import staged_bundle
    from dermsight.train import pipeline

    run_dir = _finished_run(tmp_path / "run", data_dir)
    _fake_bundle(run_dir / "bundle", "earlier")

    def finalize_then_interrupt(*_: Any, **__: Any) -> Any:
        with staged_bundle(run_dir / "bundle") as stage:
            _fake_bundle(stage / "x", "new")
            for p in (stage / "x").iterdir():
                p.rename(stage / p.name)
            (stage / "x").rmdir()
        raise KeyboardInterrupt  # after the swap (writing finalize_summary.json, say)

    monkeypatch.setattr(pipeline, "run", finalize_then_interrupt)
    code, _, err = cli(capsys, "export", str(run_dir))
    assert code == 130
    assert err.strip() == (f"interrupted: the bundle was made ({run_dir / 'bundle'} holds the "
                           "new bundle, put there whole before the interruption)")


def test_export_out_on_a_full_disk_is_one_line_and_keeps_the_copy(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.train import pipeline

    run_dir = _finished_run(tmp_path / "run", data_dir)
    _fake_bundle(run_dir / "bundle", "new")
    dst = _fake_bundle(tmp_path / "copy", "copied before")
    copied = _files(dst)
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: {"parity": 0.0})
    monkeypatch.setattr(shutil, "copytree", _copy_failing_after(
        4, OSError(errno.ENOSPC, "No space left on device")))
    code, _, err = cli(capsys, "export", str(run_dir), "--out", str(dst))
    assert _files(dst) == copied
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: could not copy the bundle {run_dir / 'bundle'} to {dst}")
    assert "No space left on device" in lines[0]
    assert _leftovers(tmp_path, "copy") == []


# --- the baseline's intervals -------------------------------------------------------------------


def test_the_baseline_test_figures_use_wilson_intervals_with_case_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``baseline`` (finalize): 12 of 12 melanomas referred by the probe is Wilson over 12
    cases, as the model's own figures on the card, not the percentile bootstrap with ``n``
    counting 50 resamples."""
    import importlib

    from dermsight.evaluate.bootstrap import PROPORTION_METHOD
    from dermsight.train.finalize.calibration import Calibration

    # the module (``dermsight.train.finalize.baseline`` the attribute is its function)
    baseline_mod = importlib.import_module("dermsight.train.finalize.baseline")

    classes = ["MEL", "NV", "UNK"]
    y = np.array([0] * 12 + [1] * 20 + [2])
    rng = np.random.default_rng(0)
    p = np.full((len(y), 3), 0.05)
    p[np.arange(len(y)), y] = 0.9
    p += rng.uniform(0, 0.02, p.shape)
    p /= p.sum(1, keepdims=True)
    logits = np.log(p)
    df = pd.DataFrame({"source": ["a"] * len(y), "group_id": [f"g{i}" for i in range(len(y))]})
    part = SimpleNamespace(labels=y, logits=logits + 0.1, images=[], metas=[], df=df,
                           groups=lambda col: df[col].to_numpy())
    cfg = SimpleNamespace(
        data=SimpleNamespace(classes=classes, group_col="group_id"), seed=0,
        evaluation=SimpleNamespace(n_boot=50, linear_probe=True),
        calibration=SimpleNamespace(refer_sensitivity=0.95))
    calib = Calibration(temperature=1.0, refer=0.5, monitor=0.3, malignant=(0,),
                        classes=tuple(classes), excluded=("UNK",))
    monkeypatch.setattr(baseline_mod, "linear_probe", lambda *a, **k: {
        "val_logits": logits, "test_logits": logits, "temperature": 1.0,
        "chosen": {"imbalance": "weighted_loss", "C": 0.1, "val_balanced_accuracy": 1.0},
        "imbalance_comparison_val_balanced_accuracy": {}})
    section = baseline_mod.baseline(cfg, {"test": part, "val": part, "train": part}, calib,
                                    None)
    assert section is not None
    ci = section["test"]["ci"]
    refer = ci["refer_sensitivity"]
    assert refer["n"] == 12  # cases: the 12 melanomas, not the 50 resamples
    assert refer["k"] == 12
    assert refer["method"] == PROPORTION_METHOD
    assert refer["draws"] == 50
    assert refer["lo"] == pytest.approx(0.7575, abs=1e-3)  # Wilson, 12 of 12
    nv = ci["sensitivity_NV"]
    assert (nv["n"], nv["method"]) == (20, PROPORTION_METHOD)
    assert ci["auc_UNK"]["withheld"] is True  # one UNK image: withheld, as the model's
    # the paired difference stays a bootstrap of the difference, on the same resamples
    assert section["difference"]["accuracy"]["n"] == 50
