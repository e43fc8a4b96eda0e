"""What telling of unlisted files and unreadable folders costs a listing: a plain folder of
images looks at no file a second time (only folders named like images are checked for being
unreadable), and a folder with a CSV is walked for the files it does not list once per job, not
on every pass over the input (a resumed batch run lists it up to three times), reusing the walk
the image lookup made where it made one. ``bundle adapt`` warns once, as ``batch`` does."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_support import run
from dermsight.batch.sources import open_source
from dermsight.io import csvfolder, iter_records

IDS = [f"ISIC_000000{i}" for i in range(5)]
UNLISTED = "ISIC_0000006"


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[object]:
    """Each call of ``csvfolder.<name>`` appends its first argument to the returned list."""
    calls: list[object] = []
    real: Callable[..., object] = getattr(csvfolder, name)

    def counted(first: object, *args: object, **kwargs: object) -> object:
        calls.append(first)
        return real(first, *args, **kwargs)

    monkeypatch.setattr(csvfolder, name, counted)
    return calls


def _clinic(root: Path, data_dir: Path, images: str) -> Path:
    """``root`` with IDS and UNLISTED (real images) in ``images``/ and a metadata.csv of IDS."""
    (root / images).mkdir(parents=True)
    for image_id in [*IDS, UNLISTED]:
        shutil.copy(data_dir / "images" / f"{image_id}.jpg", root / images / f"{image_id}.jpg")
    (root / "metadata.csv").write_text("image_id,diagnosis,age_approx,sex,anatom_site\n" + "".join(
        f"{i},NV,50,female,back\n" for i in IDS))
    return root


def test_a_plain_folder_checks_only_folders_named_like_images(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = tmp_path / "imgs"
    (top / "sub").mkdir(parents=True)
    for n, image_id in enumerate(IDS):
        shutil.copy(data_dir / "images" / f"{image_id}.jpg",
                    (top / "sub" if n % 2 else top) / f"{image_id}.jpg")
    (top / "odd.jpg").mkdir()  # a folder named like an image: a record, as before
    checked = _counting(monkeypatch, "unlistable_reason")
    recs = list(iter_records(top, decode=False))
    assert sorted(r.id for r in recs) == sorted([*IDS, "odd"])
    assert checked == [str(top / "odd.jpg")]  # not one call per image file


def _passes(folder: Path, n: int) -> list[list[str]]:
    source = open_source(folder)
    return [[str(row["id"]) for row in source.rows()] for _ in range(n)]


@pytest.mark.parametrize("images", ["images", "part_1"])  # found beside the CSV / by a deep scan
def test_a_folder_with_a_csv_is_walked_once_per_job_and_warned_of_once(
        images: str, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = _clinic(tmp_path / "clinic", data_dir, images)
    walks = _counting(monkeypatch, "walk_listed")
    assert _passes(folder, 3) == [IDS] * 3
    # beside the CSV: the first pass walks for the unlisted, no later one does; in part_1/: the
    # image lookup scans the tree on every pass (as it did before any check), and the first
    # pass finds the unlisted in that scan, walking no second time
    assert walks == [folder] * {"images": 1, "part_1": 3}[images]
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"warning: 1 image file in {folder} is not listed in metadata.csv (not scored): "
        f"{os.path.join(images, UNLISTED + '.jpg')}"], err


def test_reading_a_folder_without_a_callback_does_not_walk_it(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = _clinic(tmp_path / "clinic", data_dir, "images")
    walks = _counting(monkeypatch, "walk_listed")
    assert [r.id for r in iter_records(folder, decode=False)] == IDS
    assert walks == []
    assert capsys.readouterr().err == ""


def test_bundle_adapt_warns_of_unlisted_images_once(
        tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _clinic(tmp_path / "clinic", data_dir, "images")
    code, _out, err = run(capsys, "bundle", "adapt", str(folder), "--out",
                          str(tmp_path / "adapted"), "--name", "Clinic A")
    assert code == 4, err  # five cases are too few for an update: refused after scoring
    warning = (f"warning: 1 image file in {folder} is not listed in metadata.csv (not scored): "
               f"{os.path.join('images', UNLISTED + '.jpg')}\n")
    assert err.count(warning) == 1, err  # (a line may begin with the progress bar's last state)


