"""``Dermsight`` is built the way a Python user tries first: ``Dermsight()`` is the shipped model,
``Dermsight("folder")`` a bundle folder (it was "AttributeError: 'str' object has no attribute
'card'"), and a wrong argument says what is accepted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dermsight import Dermsight
from dermsight.bundle import BundleError, default_bundle_path, load_bundle


def test_no_argument_a_folder_or_a_bundle_give_the_same_model(sample_image: Path,
                                                              tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(default_bundle_path(), folder)
    models = [Dermsight(threads=1), Dermsight(str(folder), threads=1), Dermsight(folder),
              Dermsight(load_bundle(None)), Dermsight.load()]
    assert {m.bundle.path.resolve() for m in models[:1] + models[3:]} == {
        default_bundle_path().resolve()}
    assert models[1].bundle.path.resolve() == folder.resolve()
    answers = [m.predict(sample_image, age=60, heatmap=False).probabilities for m in models]
    for other in answers[1:]:
        assert other == pytest.approx(answers[0], abs=1e-6)


def test_a_missing_folder_or_a_wrong_type_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="model bundle not found"):
        Dermsight(tmp_path / "nowhere")
    with pytest.raises(TypeError, match=r"bundle folder .* not int"):
        Dermsight(42)  # type: ignore[arg-type]
