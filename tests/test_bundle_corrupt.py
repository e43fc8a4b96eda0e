"""A bundle whose files pass the checksum check but whose contents are broken (a truncated ONNX
file, a gate.npz that is not an archive or lacks an array the card's gate reads, an unreadable
reference set): ``predict``, ``serve`` and ``bundle verify`` refuse it with exit code 3 and one
line, and loading (the server's path) raises ``BundleError`` — never a traceback, never a bundle
that loads and then fails on every request.

Each corrupt copy is made from the shipped bundle and re-sealed with ``write_manifest``, so the
content checks, not the sha256 manifest, are what is tested."""

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
from dermsight.bundle import BundleError, default_bundle_path, load_bundle, write_manifest
from dermsight.cli import app
from dermsight.cli.errors import run_guarded
from dermsight.similar import REFERENCE_CREDITS, REFERENCE_NPZ, ReferenceSet

SHIPPED = default_bundle_path()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_npz(path: Path, edit: Callable[[dict[str, np.ndarray]], object]) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    np.savez(path, **arrays)


def _k_above_bank(arrays: dict[str, np.ndarray]) -> None:
    arrays["k"] = np.array(len(arrays["bank"]) + 1)


def _narrow_gate(root: Path) -> None:
    """A gate v1 of 64 features (the card's v2 keys dropped): fine alone, not beside the
    reference set's embeddings."""
    card = json.loads((root / "card.json").read_text())
    card["gate"] = {"ood_threshold": 0.5}
    (root / "card.json").write_text(json.dumps(card))
    bank = np.eye(8, 64, dtype=np.float16)
    np.savez(root / "gate.npz", bank=bank, k=np.array(5))


#: name -> (how the copy is broken, what the one line must say)
CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "onnx-truncated": (
        lambda b: _truncate(b / "model.onnx"),
        "model.onnx is unreadable (ONNX Runtime cannot load it): INVALID_PROTOBUF"),
    "gate-garbage": (
        lambda b: (b / "gate.npz").write_bytes(b"not an archive\n" * 64),
        "gate.npz is unreadable: not a .npz archive"),
    "gate-truncated": (
        lambda b: _truncate(b / "gate.npz"),
        "gate.npz is unreadable: not a .npz archive"),
    "gate-no-bank": (
        lambda b: _edit_npz(b / "gate.npz", lambda a: a.pop("bank")),
        "gate.npz has no 'bank' array, which the card's gate needs"),
    # without it the card's gate v2 would silently fall back to gate v1
    "gate-no-v2-head": (
        lambda b: _edit_npz(b / "gate.npz", lambda a: a.pop("v2_w")),
        "gate.npz has no 'v2_w' array, which the card's gate needs"),
    "gate-no-clinical-bias": (
        lambda b: _edit_npz(b / "gate.npz", lambda a: a.pop("v2c_b")),
        "gate.npz has no 'v2c_b' array"),
    "gate-k-above-bank": (
        lambda b: _edit_npz(b / "gate.npz", _k_above_bank),
        "gate.npz: 'k' must be one whole number from 1 to the bank's"),
    "gate-v2-too-short": (
        lambda b: _edit_npz(b / "gate.npz", lambda a: a.update(v2_w=a["v2_w"][:-1])),
        "gate.npz: its arrays do not fit the card's gate"),
    "gate-narrower-than-reference": (
        _narrow_gate,
        "gate.npz's bank 64: not the same model's"),
    "reference-garbage": (
        lambda b: (b / REFERENCE_NPZ).write_bytes(b"\x80\x04garbage" * 100),
        "reference set unreadable: {root}/reference/reference.npz: not a .npz archive"),
    "reference-no-offsets": (
        lambda b: _edit_npz(b / REFERENCE_NPZ, lambda a: a.pop("thumb_offset")),
        "reference set unreadable: {root}/reference/reference.npz: no array 'thumb_offset'"),
    "reference-misaligned": (
        lambda b: _edit_npz(b / REFERENCE_NPZ, lambda a: a.update(image_id=a["image_id"][1:])),
        "reference set invalid: {root}/reference/reference.npz: its arrays do not line up"),
    "reference-credits-not-json": (
        lambda b: (b / REFERENCE_CREDITS).write_text("{datasets: oops"),
        "reference set unreadable: {root}/reference/credits.json"),
    "reference-unknown-dataset": (
        lambda b: _edit_npz(b / REFERENCE_NPZ,
                            lambda a: a.update(dataset=np.full_like(a["dataset"], 99))),
        "its dataset indices do not match"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def corrupt(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A re-sealed copy of the shipped bundle broken one way, and the message it must get."""
    name: str = request.param
    root = tmp_path_factory.mktemp(name) / "bundle"
    shutil.copytree(SHIPPED, root)
    breaks, message = CASES[name]
    breaks(root)
    write_manifest(root)
    return root, message.format(root=root)


def test_loading_refuses_it(corrupt: tuple[Path, str]) -> None:
    from dermsight.predict import Dermsight

    root, message = corrupt
    with pytest.raises(BundleError) as info:
        Dermsight.load(root, threads=1)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_the_servers_model_load_refuses_it(corrupt: tuple[Path, str], tmp_path: Path) -> None:
    """What ``dermsight serve`` runs at start-up (the app's lifespan): load, warm up, read the
    reference set."""
    from dermsight.web.lifespan import load_model
    from dermsight.web.settings import Settings

    root, message = corrupt
    with pytest.raises(BundleError) as info:
        load_model(Settings(model_path=root, static_dir=tmp_path / "no-ui"))
    assert message in str(info.value)


@pytest.mark.parametrize("command", ["predict", "verify"])
def test_predict_and_verify_exit_3_with_one_line(
        corrupt: tuple[Path, str], command: str, sample_image: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root, message = corrupt
    argv = (["predict", str(sample_image), "--model", str(root)] if command == "predict"
            else ["bundle", "verify", str(root)])
    capsys.readouterr()
    code = run_guarded(app, argv)
    assert_bundle_error_line(code, capsys.readouterr().err, message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("name", ["onnx-truncated", "gate-no-bank", "reference-garbage"])
def test_serve_exits_3_with_one_line(name: str, tmp_path: Path) -> None:
    """The real ``dermsight serve`` process, for the three failures a sweep found: before these
    checks a traceback (or a server whose every request failed)."""
    root = tmp_path / "bundle"
    shutil.copytree(SHIPPED, root)
    breaks, message = CASES[name]
    breaks(root)
    write_manifest(root)
    r = subprocess.run([sys.executable, "-m", "dermsight.cli", "serve", "--model", str(root),
                        "--host", "127.0.0.1", "--port", str(_free_port())],
                       capture_output=True, text=True, timeout=120, check=False)
    assert "serving" not in r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert_bundle_error_line(r.returncode, "\n".join(errors), message.format(root=root))
    assert "Traceback" not in r.stderr


def test_the_shipped_bundle_passes_the_content_checks() -> None:
    bundle = load_bundle()
    assert {"bank", "k", "v2_w", "v2c_w"} <= set(bundle.gate_arrays)
    shape = ReferenceSet.check(SHIPPED)
    assert shape is not None
    assert shape[1] == bundle.gate_arrays["bank"].shape[1]
    ref = ReferenceSet.load(SHIPPED)
    assert ref is not None
    assert ref.embedding.shape == shape


def test_a_card_without_a_gate_does_not_need_the_gate_arrays(tmp_path: Path) -> None:
    """Only what the card's gate reads is required: no ``ood_threshold``, no gate to run."""
    root = tmp_path / "bundle"
    shutil.copytree(SHIPPED, root)
    card = json.loads((root / "card.json").read_text())
    card["gate"] = {}
    (root / "card.json").write_text(json.dumps(card))
    _edit_npz(root / "gate.npz", lambda a: a.pop("bank"))
    write_manifest(root)
    assert "bank" not in load_bundle(root).gate_arrays


def test_verify_refuses_a_gate_the_network_does_not_fit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A gate bank of other features than the network's loads (loading runs no inference), but
    ``bundle verify`` runs the network and names the mismatch."""
    root = tmp_path / "bundle"
    shutil.copytree(SHIPPED, root)
    shutil.rmtree(root / "reference")
    _narrow_gate(root)
    write_manifest(root)
    load_bundle(root)
    code = run_guarded(app, ["bundle", "verify", str(root)])
    assert_bundle_error_line(code, capsys.readouterr().err,
                     "features but gate.npz's bank holds 64: not this model's")
