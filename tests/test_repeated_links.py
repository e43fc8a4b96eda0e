"""A second link to a folder already read, said by the reading walk itself: ``walk_tree``
reports each folder it passes over (``on_repeated``), the folder reader turns them into one
warning line (``csvfolder.repeated_folders_message``), and every command that reads a folder of
images through it says it: ``dermsight data summary`` and ``dermsight evaluate`` as
``dermsight batch`` does, which no longer walks the folder a second time to find them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_support import image_folder
from cli_support import run
from dermsight.io import csvfolder

IDS = [f"ISIC_{i:07d}" for i in (0, 1, 2, 3)]


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def _linked(tmp_path: Path, data_dir: Path, links: int = 2) -> Path:
    """An input folder with one image and ``links`` links (``b``, ``b2``, ``b3``, ...) to one
    folder of two images outside it."""
    folder = image_folder(tmp_path, data_dir, IDS[:1])
    clinic = tmp_path / "clinic b"
    clinic.mkdir()
    for i in IDS[1:3]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", clinic / f"{i}.jpg")
    for n in range(links):
        (folder / ("b" if n == 0 else f"b{n + 1}")).symlink_to(clinic, target_is_directory=True)
    return folder


def _one_repeated(folder: Path) -> str:
    return (f"warning: b2 in {folder} leads to a folder already read as b: its images are "
            "listed once, under b, not again under b2")


def _counting_walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``walk_tree`` call from now on, by the root it walks."""
    roots: list[str] = []
    real: Callable[..., Iterator[Any]] = csvfolder.walk_tree

    def counted(root: Path, **kw: Any) -> Iterator[Any]:
        roots.append(str(root))
        return real(root, **kw)

    monkeypatch.setattr(csvfolder, "walk_tree", counted)
    return roots


# --- the walk ------------------------------------------------------------------------------------


def test_walk_tree_names_each_folder_it_passes_over(tmp_path: Path, data_dir: Path) -> None:
    """``on_repeated`` gets the path passed over and the path walked, as the walk names them,
    once; the folder's entries are walked once, under ``b``. A link inside the root and a
    link back up the tree are not followed and not reported."""
    folder = _linked(tmp_path, data_dir)
    (folder / "inner").mkdir()
    (folder / "a_inner").symlink_to(folder / "inner", target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    told: list[tuple[str, str]] = []
    walked = [d for d, _dirs, _files in csvfolder.walk_tree(
        folder, on_repeated=lambda path, read: told.append((path, read)))]
    assert told == [(str(folder / "b2"), str(folder / "b"))]
    assert walked == [str(folder), str(folder / "b"), str(folder / "inner")]


# --- dermsight data summary ----------------------------------------------------------------------


def test_data_summary_names_a_second_link(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """``data summary`` counts the linked folder's images once, under ``b``, and now says so
    in batch's words, one line. Before, ``b2``'s images were missing without a word."""
    folder = _linked(tmp_path, data_dir)
    code, out, err = run(capsys, "data", "summary", str(folder), "--json", "--no-verify",
                         "--no-progress")
    assert code == 0, err
    assert "Traceback" not in err
    assert json.loads(out)["n_images"] == 3
    assert _warnings(err) == [_one_repeated(folder)]


def test_data_summary_names_at_most_five(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Seven links to one folder: six passed over, the first five named in one line."""
    folder = _linked(tmp_path, data_dir, links=7)
    code, _out, err = run(capsys, "data", "summary", str(folder), "--no-verify",
                          "--no-progress")
    assert code == 0, err
    assert _warnings(err) == [
        f"warning: 6 linked folders in {folder} lead to folders already read under another "
        "path: their images are listed once, under that path, not again: "
        + ", ".join(f"b{n} (read as b)" for n in range(2, 7)) + ", ..."]


def test_data_summary_of_a_folder_with_a_csv_says_nothing_of_links(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A folder with a CSV: its rows name their images, whatever the links, as in batch."""
    folder = _linked(tmp_path, data_dir)
    (folder / "metadata.csv").write_text(f"image_id\n{IDS[0]}\n{IDS[1]}\n")
    code, _out, err = run(capsys, "data", "summary", str(folder), "--no-verify",
                          "--no-progress")
    assert code == 0, err
    assert not [w for w in _warnings(err) if "already read" in w]


# --- dermsight batch and evaluate: one walk of the reading, one warning --------------------------


def test_a_batch_source_finds_them_in_its_reading_walk(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first pass over a batch source walks the folder once (the reading) and says it
    once; a later pass walks it once and says nothing. Before, the first pass walked the
    folder twice (a walk of its own to find the links passed over)."""
    from dermsight.batch.sources import open_source

    folder = _linked(tmp_path, data_dir)
    source = open_source(folder)
    capsys.readouterr()
    walks = _counting_walks(monkeypatch)
    rows = list(source.rows())
    assert sorted(r["id"] for r in rows) == sorted(IDS[:3])
    assert walks == [str(folder)]
    assert _warnings(capsys.readouterr().err) == [_one_repeated(folder)]
    assert list(source.rows()) == rows
    assert walks == [str(folder)] * 2
    assert _warnings(capsys.readouterr().err) == []


def test_a_batch_job_walks_the_folder_no_more_than_reading_it_does(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``dermsight batch`` walks the input as many times as opening it (its estimate) and
    reading it once do, and says it once."""
    from dermsight.batch.sources import open_source
    from dermsight.io import iter_records

    folder = _linked(tmp_path, data_dir)
    walks = _counting_walks(monkeypatch)
    list(iter_records(open_source(folder).input, decode=False))
    needed = len(walks)
    walks.clear()
    code, _out, err = run(capsys, "batch", str(folder), "--out", str(tmp_path / "o"),
                          "--workers", "1", "-q")
    assert code == 0, err
    assert len(walks) == needed
    assert _warnings(err) == [_one_repeated(folder)]


def test_evaluate_names_a_second_link(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """``dermsight evaluate`` reads its data as batch does: a folder of images and, at its top,
    a labelled TFRecord shard (its labels make it something to evaluate) says the same line,
    once."""
    from dermsight.bundle import default_bundle_path
    from dermsight.io.tfrecord import write_tfrecord

    folder = _linked(tmp_path, data_dir)
    write_tfrecord(folder / "labelled.tfrec", [
        {"image": (data_dir / "images" / f"{IDS[3]}.jpg").read_bytes(), "image_name": IDS[3],
         "diagnosis": "nevus", "target": 0}])
    code, _out, err = run(capsys, "evaluate", str(default_bundle_path()), str(folder),
                          "--out", str(tmp_path / "ev"), "-q")
    assert "Traceback" not in err
    assert code in (0, 1, 2), err
    assert [w for w in _warnings(err) if "already read" in w] == [_one_repeated(folder)]


def test_the_message_is_the_readers_own() -> None:
    """One message function, in the reader: batch keeps no copy of it."""
    from dermsight.batch import sources

    assert not hasattr(sources, "repeated_folders_message")
    assert not hasattr(sources, "repeated_folders")
    assert csvfolder.repeated_folders_message(Path("in"), [("x", ".")]) == (
        "x in in leads to a folder already read as the input folder itself: its images are "
        "listed once, under the input folder itself, not again under x")
