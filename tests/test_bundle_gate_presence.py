"""A bundle whose card declares a gate its files cannot run, or whose gate or reference set holds
other features than its network's: refused as the model is loaded (``load_bundle``, or the facade
as it opens the ONNX file), with one line naming the problem — never a model that serves without
its out-of-distribution gate, nor one whose every request fails.

Each broken bundle is a copy of the shipped one, damaged, then re-sealed with ``write_manifest``
so that the content checks, not the sha256 manifest, are what is tested."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cli_support import assert_bundle_error_line
from dermsight.bundle import (
    BundleError,
    default_bundle_path,
    load_bundle,
    npz_shapes,
    write_manifest,
)
from dermsight.cli import app
from dermsight.cli.errors import run_guarded
from dermsight.onnxsession import ModelSession
from dermsight.predict import Dermsight
from dermsight.similar import REFERENCE_DIR, REFERENCE_NPZ, ReferenceSet

SHIPPED = default_bundle_path()
MISSING_GATE = "gate.npz is missing, but the card's gate (its ood_threshold) needs it"
#: the width of the shipped network's pooled features (its gate bank's)
WIDTH = npz_shapes(SHIPPED / "gate.npz")["bank"][1]


def _copy(root: Path, damage: Callable[[Path], object]) -> Path:
    shutil.copytree(SHIPPED, root)
    damage(root)
    write_manifest(root)
    return root


def _edit_card(root: Path, edit: Callable[[dict[str, object]], object]) -> None:
    card = json.loads((root / "card.json").read_text())
    edit(card)
    (root / "card.json").write_text(json.dumps(card))


def _edit_npz(path: Path, edit: Callable[[dict[str, np.ndarray]], object]) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    np.savez(path, **arrays)


def _no_gate_file(root: Path) -> None:
    (root / "gate.npz").unlink()


def _narrow_bank(root: Path) -> None:
    """A valid gate v1 of 64 features (the card's v2 keys dropped), the reference set removed
    (it would be refused beside it without the network)."""
    _edit_card(root, lambda c: c.update(gate={"ood_threshold": 0.5}))
    np.savez(root / "gate.npz", bank=np.eye(8, 64, dtype=np.float16), k=np.array(5))
    shutil.rmtree(root / REFERENCE_DIR)


def _narrow_reference(root: Path) -> None:
    """A reference set of 64 features in a bundle without a gate (no bank to compare it with:
    only the network tells)."""
    _edit_card(root, lambda c: c.update(gate={}))
    _no_gate_file(root)
    _edit_npz(root / REFERENCE_NPZ, lambda a: a.update(embedding=a["embedding"][:, :64]))


def _fewer_classes(root: Path) -> None:
    """A card listing 8 classes (UNK dropped) beside the 9-output network."""
    def drop_unk(card: dict[str, object]) -> None:
        card["classes"] = [c for c in card["classes"] if c != "UNK"]  # type: ignore[attr-defined]
        card["malignant_excluded"] = [c for c in card["malignant_excluded"]  # type: ignore[attr-defined]
                                      if c != "UNK"]

    _edit_card(root, drop_unk)


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken")
    return {"no-gate-file": _copy(root / "no-gate-file", _no_gate_file),
            "narrow-bank": _copy(root / "narrow-bank", _narrow_bank),
            "narrow-reference": _copy(root / "narrow-reference", _narrow_reference),
            "fewer-classes": _copy(root / "fewer-classes", _fewer_classes)}


#: name -> what the one line must say
MESSAGES = {
    "no-gate-file": MISSING_GATE,
    "narrow-bank": f"gives {WIDTH} features but gate.npz's bank holds 64: not this model's",
    "narrow-reference": f"gives {WIDTH} features but the reference set holds 64: not this "
                        "model's",
    "fewer-classes": "gives 9 outputs but the card lists 8 classes: not this model's card",
}


# --- 1. a card whose gate needs gate.npz, without the file -------------------------------------


def test_a_declared_gate_without_its_file_is_refused(broken: dict[str, Path]) -> None:
    root = broken["no-gate-file"]
    assert "ood_threshold" in json.loads((root / "card.json").read_text())["gate"]
    with pytest.raises(BundleError) as info:
        load_bundle(root)
    message = str(info.value)
    assert message.startswith(f"{root / 'gate.npz'} is missing")
    assert "restore the bundle's own gate.npz or re-export the bundle" in message
    assert "\n" not in message


def test_a_card_without_a_gate_needs_no_gate_file(tmp_path: Path) -> None:
    """Only a gate the card declares makes the file required."""
    def no_gate(root: Path) -> None:
        _no_gate_file(root)
        _edit_card(root, lambda c: c.update(gate={}))

    root = _copy(tmp_path / "b", no_gate)
    bundle = load_bundle(root)
    assert bundle.gate_arrays == {}
    assert "ood_threshold" not in bundle.card.gate


# --- 2. a gate bank or reference set of other features than the network's ----------------------


def test_the_features_width_is_read_from_the_onnx_metadata() -> None:
    bundle = load_bundle()
    session = ModelSession(bundle.onnx_path, threads=1)
    width = session.output_dim("features", 1)
    assert width == bundle.gate_arrays["bank"].shape[1] == WIDTH
    assert session.output_dim("logits", 1) == len(bundle.card.classes)
    assert session.output_dim("features", 2) is None  # symbolic: map_height
    assert session.output_dim("features", 9) is None
    assert session.output_dim("no-such-output", 1) is None
    reference = ReferenceSet.load(SHIPPED)
    assert reference is not None
    assert bundle.reference_shape == reference.embedding.shape


@pytest.mark.parametrize("name", ["narrow-bank", "narrow-reference"])
def test_features_of_another_width_load_but_the_model_is_refused(
        broken: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_bundle`` opens no ONNX session, so it cannot know; the facade does, from the
    output's declared shape: no inference run at load (ONNX Runtime's ``run`` is not called)."""
    import onnxruntime as ort

    root = broken[name]
    load_bundle(root)

    def no_run(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("loading the model ran it")

    monkeypatch.setattr(ort.InferenceSession, "run", no_run)
    with pytest.raises(BundleError) as info:
        Dermsight.load(root, threads=1)
    message = str(info.value)
    assert message.startswith(f"the network in {root / 'model.onnx'} gives {WIDTH} features")
    assert MESSAGES[name] in message
    assert "\n" not in message
    Dermsight.load(threads=1)  # the shipped bundle loads, still without a run


def test_a_card_of_other_classes_than_the_network_is_refused(broken: dict[str, Path]) -> None:
    """The card loads on its own (its classes are a valid list); the facade compares them with the
    network's declared outputs: a model whose every answer would name the wrong classes."""
    root = broken["fewer-classes"]
    assert len(load_bundle(root).card.classes) == 8
    with pytest.raises(BundleError) as info:
        Dermsight.load(root, threads=1)
    assert MESSAGES["fewer-classes"] in str(info.value)


# --- every entry point: one line, exit code 3 / no server -------------------------------------


@pytest.mark.parametrize("name", sorted(MESSAGES))
@pytest.mark.parametrize("command", ["predict", "verify"])
def test_predict_and_verify_exit_3_with_one_line(
        broken: dict[str, Path], name: str, command: str, sample_image: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = broken[name]
    argv = (["predict", str(sample_image), "--model", str(root)] if command == "predict"
            else ["bundle", "verify", str(root)])
    capsys.readouterr()
    code = run_guarded(app, argv)
    assert_bundle_error_line(code, capsys.readouterr().err, MESSAGES[name])


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_the_servers_model_load_refuses_it(broken: dict[str, Path], name: str,
                                           tmp_path: Path) -> None:
    """What the app's lifespan runs at start-up: load, warm up, read the reference set."""
    from dermsight.web.lifespan import load_model
    from dermsight.web.settings import Settings

    with pytest.raises(BundleError) as info:
        load_model(Settings(model_path=broken[name], static_dir=tmp_path / "no-ui"))
    assert MESSAGES[name] in str(info.value)


def test_serve_refuses_to_start_without_the_declared_gate(broken: dict[str, Path]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    r = subprocess.run([sys.executable, "-m", "dermsight.cli", "serve", "--model",
                        str(broken["no-gate-file"]), "--host", "127.0.0.1", "--port", str(port)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert "serving" not in r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert_bundle_error_line(r.returncode, "\n".join(errors), MISSING_GATE)
    assert "Traceback" not in r.stderr
