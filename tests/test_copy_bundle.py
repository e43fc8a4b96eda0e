"""`dermsight train --bundle DIR` / `export --out DIR` replace a bundle as a whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dermsight.bundle import default_bundle_path, load_bundle
from dermsight.cli.errors import UserError
from dermsight.cli.model import copy_bundle


def test_an_old_bundle_is_replaced_whole_and_the_new_one_loads(tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(default_bundle_path(), new)
    old = tmp_path / "target"
    shutil.copytree(default_bundle_path(), old)
    (old / "plots" / "from_an_older_model.png").write_bytes(b"\x89PNG old")
    copy_bundle(new, old)
    assert not (old / "plots" / "from_an_older_model.png").exists()
    assert load_bundle(old).card.name == load_bundle(new).card.name


def test_a_folder_that_is_not_a_bundle_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "notes"
    target.mkdir()
    (target / "thesis.txt").write_text("precious")
    with pytest.raises(UserError, match="not a model bundle"):
        copy_bundle(default_bundle_path(), target)
    assert (target / "thesis.txt").read_text() == "precious"
    a_file = tmp_path / "model.txt"
    a_file.write_text("not a folder")
    with pytest.raises(UserError, match="not a model bundle"):
        copy_bundle(default_bundle_path(), a_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    copy_bundle(default_bundle_path(), empty)  # an empty folder is fine
    assert load_bundle(empty).card.classes
