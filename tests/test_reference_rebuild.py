"""``dermsight reference build`` repairs a bundle whose reference set is missing, damaged or of
another model: it loaded the bundle as every caller does, so the very set it was asked to replace
stopped it ("listed in the bundle's manifest but missing", "gives 1280 features but the
reference set holds 64")."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cli_support import run
from dermsight.bundle import BundleError, default_bundle_path, load_bundle, write_manifest
from dermsight.predict import Dermsight
from dermsight.similar import REFERENCE_DIR, REFERENCE_NPZ


def _deleted(root: Path) -> None:
    shutil.rmtree(root / REFERENCE_DIR)  # the manifest still lists its files


def _narrow(root: Path) -> None:
    with np.load(root / REFERENCE_NPZ) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["embedding"] = arrays["embedding"][:, :64]
    np.savez(root / REFERENCE_NPZ, **arrays)
    write_manifest(root)  # sealed: only the width tells


def _damaged(root: Path) -> None:
    (root / REFERENCE_NPZ).write_bytes(b"not an npz")


DAMAGE: dict[str, Callable[[Path], None]] = {"deleted": _deleted, "narrow": _narrow,
                                             "damaged": _damaged}


def _broken(tmp_path: Path, how: str) -> Path:
    root = tmp_path / how
    shutil.copytree(default_bundle_path(), root)
    DAMAGE[how](root)
    return root


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_the_bundle_loads_without_its_reference_set_only_when_asked(tmp_path: Path,
                                                                    how: str) -> None:
    root = _broken(tmp_path, how)
    with pytest.raises(BundleError):
        Dermsight.load(root, threads=1)
    bundle = load_bundle(root, reference=False)
    assert bundle.reference_shape is None
    Dermsight(bundle, threads=1)  # the network, gate and card are still checked


def test_other_files_are_still_verified_without_the_reference_set(tmp_path: Path) -> None:
    root = _broken(tmp_path, "deleted")
    (root / "gate.npz").write_bytes(b"changed")
    with pytest.raises(BundleError, match=r"gate\.npz does not match its card"):
        load_bundle(root, reference=False)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["deleted", "narrow"])
def test_reference_build_repairs_it(tmp_path: Path, how: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = _broken(tmp_path, how)
    code, out, err = run(capsys, "reference", "build", str(root), "--per-class", "2")
    assert code == 0, err
    assert "classifier accuracy" in out
    model = Dermsight.load(root, threads=1)  # verified, checked, loads
    assert model.bundle.reference_shape is not None
    assert model.bundle.reference_shape[1] == model.bundle.gate_arrays["bank"].shape[1]
    code, out, err = run(capsys, "bundle", "verify", str(root))
    assert code == 0, err
