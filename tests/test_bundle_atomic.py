"""An interrupted finalize (``dermsight train``'s last stage, ``dermsight export``) never leaves a
provisional bundle behind: the bundle is built in ``RUN/bundle.partial-<pid>`` and swapped in at
the end, so the run keeps the finished bundle it had, or none. A provisional card (placeholder
thresholds that call every lesion low risk) is refused by loading and by ``bundle verify``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from dermsight.bundle import BundleError, load_bundle, write_manifest

REPO = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith("bundle."))


def _verify(bundle: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    capsys.readouterr()
    code = run_guarded(app, ["bundle", "verify", str(bundle)])
    out = capsys.readouterr()
    return code, out.out + out.err


# --- the provisional card is refused ------------------------------------------------------------


def _provisional_bundle(folder: Path) -> Path:
    """The provisional bundle finalize scores through, as ``serving_model`` writes it."""
    from dermsight.train.config import load_config
    from dermsight.train.finalize.scoring import serving_model

    shipped = load_bundle()
    cfg = load_config(REPO / "configs" / "default.yaml", ["evaluation.num_threads=1"])
    serving_model(cfg, folder, shipped.onnx_path.read_bytes(), shipped.card.input_spec,
                  shipped.card.meta_spec)
    return folder


def test_a_provisional_card_is_refused_by_loading_and_verify(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight import Dermsight

    bundle = _provisional_bundle(tmp_path / "bundle")
    card = json.loads((bundle / "card.json").read_text())
    assert card["status"] == "provisional"
    with pytest.raises(BundleError, match=r"not a finished bundle.*provisional"):
        Dermsight.load(bundle)
    with pytest.raises(BundleError, match="not a finished bundle"):
        load_bundle(bundle)
    code, text = _verify(bundle, capsys)
    assert code == 3
    assert "not a finished bundle" in text
    assert "ok:" not in text
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1
    # finalize itself scores through it
    assert load_bundle(bundle, provisional=True).card.thresholds.refer == 1.0


def test_an_unmarked_card_without_metrics_and_refer_1_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A provisional card of an older dermsight has no status marker: no metrics and a refer
    threshold of 1 is enough to refuse it."""
    from dermsight.bundle import default_bundle_path

    bundle = tmp_path / "old"
    shutil.copytree(default_bundle_path(), bundle)
    card = json.loads((bundle / "card.json").read_text())
    for key in ("metrics", "status"):
        card.pop(key, None)
    card["thresholds"] = {"refer": 1.0, "monitor": 1.0}
    (bundle / "card.json").write_text(json.dumps(card))
    write_manifest(bundle)
    with pytest.raises(BundleError, match="no metrics and a refer threshold of 1"):
        load_bundle(bundle)
    code, text = _verify(bundle, capsys)
    assert code == 3
    assert "not a finished bundle" in text
    # metrics, or a refer threshold below 1, and it is a (test-made) finished card
    card["thresholds"] = {"refer": 0.5, "monitor": 0.2}
    (bundle / "card.json").write_text(json.dumps(card))
    write_manifest(bundle)
    assert load_bundle(bundle).card.thresholds.refer == 0.5


def test_the_shipped_bundle_still_loads_and_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_bundle().card.extra["status"] == "trained"
    code, text = _verify(Path(str(load_bundle().path)), capsys)
    assert code == 0
    assert text.startswith("ok:")


# --- the swap itself ----------------------------------------------------------------------------


def _bundle_like(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(text)
    (folder / "model.onnx").write_text(text)
    return folder


def test_staged_bundle_replaces_the_bundle_only_when_whole(tmp_path: Path) -> None:
    from dermsight.bundle import staged_bundle

    dst = _bundle_like(tmp_path / "bundle", "old")
    (dst / "plots").mkdir()
    (dst / "plots" / "stale.png").write_text("old")
    seen: list[Path] = []

    def build_then_interrupt() -> None:
        with staged_bundle(dst) as stage:
            seen.append(stage)
            (stage / "card.json").write_text("half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_then_interrupt()
    assert seen[0].parent == dst.parent
    assert seen[0].name.startswith("bundle.partial-")
    assert _files(dst) == {"card.json": _sha("old"), "model.onnx": _sha("old"),
                           "plots/stale.png": _sha("old")}
    assert _leftovers(tmp_path) == []
    with staged_bundle(dst) as stage:
        _bundle_like(stage / "x", "unused")
        shutil.rmtree(stage / "x")
        (stage / "card.json").write_text("new")
        (stage / "model.onnx").write_text("new")
    # the new bundle as a whole: nothing of the old one (its plots) left beside it
    assert _files(dst) == {"card.json": _sha("new"), "model.onnx": _sha("new")}
    assert _leftovers(tmp_path) == []


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_leftovers_of_a_killed_run_are_tidied(tmp_path: Path) -> None:
    from dermsight.bundle import replace_folder, tidy_staged

    # killed while building: the partial folder goes, the bundle stays
    dst = _bundle_like(tmp_path / "bundle", "finished")
    _bundle_like(tmp_path / "bundle.partial-99999", "half")
    assert len(tidy_staged(dst)) == 1
    assert _leftovers(tmp_path) == []
    assert (dst / "card.json").read_text() == "finished"
    # killed between the two renames: the finished bundle waits as bundle.old-<pid>
    shutil.rmtree(dst)
    _bundle_like(tmp_path / "bundle.old-99998", "finished")
    _bundle_like(tmp_path / "bundle.partial-99998", "new")
    lines = tidy_staged(dst)
    assert any(line.startswith("restored") for line in lines)
    assert (dst / "card.json").read_text() == "finished"
    assert _leftovers(tmp_path) == []
    # a failed second rename puts the old bundle back
    src = tmp_path / "missing-source"
    with pytest.raises(FileNotFoundError):
        replace_folder(src, dst)
    assert (dst / "card.json").read_text() == "finished"
    assert _leftovers(tmp_path) == []


# --- finalize, interrupted ----------------------------------------------------------------------


def _tiny(data_dir: Path) -> list[str]:
    return [f"data.root={data_dir}", "data.limit=24", "train.epochs=1", "train.batch_size=8",
            "input.size=64", "evaluation.n_boot=20", "train.eval_batch_size=16",
            "evaluation.num_threads=2", "evaluation.linear_probe=false"]


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tiny trained run (train stage only: no bundle yet)."""
    from dermsight.train.config import load_config
    from dermsight.train.pipeline import run

    cfg = load_config(REPO / "configs" / "default.yaml", _tiny(data_dir))
    out = tmp_path_factory.mktemp("atomic") / "run"
    run(cfg, out, stage="train")
    assert (out / "best.pt").is_file()
    assert not (out / "bundle").exists()
    return cfg, out


def _interrupt(*_: Any, **__: Any) -> Any:
    raise KeyboardInterrupt


@pytest.mark.slow
def test_an_interrupted_finalize_leaves_no_bundle_then_the_finished_one_untouched(
        trained: tuple[Any, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import dermsight.train.finalize as fin
    from dermsight.train.pipeline import interruption_note, run

    cfg, trained_out = trained
    out = tmp_path / "run"
    shutil.copytree(trained_out, out)

    # Ctrl-C during a first finalize, after the provisional bundle was written: no bundle
    with monkeypatch.context() as m:
        m.setattr(fin, "calibrate", _interrupt)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, out, stage="finalize")
    assert not (out / "bundle").exists()
    assert _leftovers(out) == []
    assert "its bundle was not made:" in interruption_note(cfg, out)

    run(cfg, out, stage="finalize")
    finished = _files(out / "bundle")
    assert {"card.json", "model.onnx", "gate.npz", "report.html"} <= set(finished)
    card = json.loads((out / "bundle" / "card.json").read_text())
    assert card["status"] == "not validated"  # one epoch at 64 px on a few images
    assert card["metrics"]
    assert card["gate"]

    # Ctrl-C during a re-export over the finished bundle, at its last step (the provisional
    # card, the plots and the report already written): the finished bundle is untouched
    with monkeypatch.context() as m:
        m.setattr(fin, "write_card", _interrupt)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, out, stage="finalize")
    assert _files(out / "bundle") == finished
    assert _leftovers(out) == []
    assert "still the bundle made before" in interruption_note(cfg, out)
    code, text = _verify(out / "bundle", capsys)
    assert code == 0, text
