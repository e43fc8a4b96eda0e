"""The ``--data`` / ``--split`` options of the commands that work on a bundle's labelled images
(``dermsight gate fit``, ``dermsight reference build``), their existence check, and the checks
of an output file before the work that fills it (writable; not one of the inputs)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from dermsight.cli.errors import UserError
from dermsight.io.files import unwritable_reason

DataOpt = Annotated[Path, typer.Option(help="isic-subset folder (metadata.csv, images/)")]
#: ``--data`` given once per data folder (a bundle trained on several folders needs each)
DataFoldersOpt = Annotated[list[Path] | None, typer.Option(
    "--data", metavar="<path>",
    help="data folder (metadata.csv, images/); repeat it for each folder the bundle was "
         "trained on; default: the folders its card records (training.config.data.root), "
         "else ../shared/data/isic-subset")]
SplitOpt = Annotated[Path, typer.Option(help="the bundle's split CSV (image_id, split)")]
DEFAULT_DATA = Path("../shared/data/isic-subset")
DEFAULT_SPLIT = Path("configs/default-split.csv")


def require_labelled_data(data: Path | list[Path], split: Path) -> None:
    """``UserError`` (exit 2) when a ``data/metadata.csv`` or the split CSV does not exist."""
    folders = [data] if isinstance(data, Path) else data
    for p in (*(f / "metadata.csv" for f in folders), split):
        if not p.exists():
            raise UserError(f"not found: {p}")


def require_writable_file(path: Path, option: str = "--out") -> None:
    """``UserError`` (exit 2) when a file cannot be written at ``path`` (it is a folder, a
    folder above it is a file or is not writable), before the work that would fill it."""
    if (why := unwritable_reason(path, folder=False)) is not None:
        raise UserError(f"cannot write {option} {path}: {why}")


def _same_entry(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` both exist and are the same file or folder (also through a
    symbolic or hard link)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist (or cannot be looked at)
        return False


def refuse_overwriting_input(out: Path, option: str, inputs: Mapping[str, Path]) -> None:
    """``UserError`` (exit 2) when the output ``out`` would replace one of the ``inputs``
    (``{what it is: path}``): it is the same file or folder, also through a link, or a folder
    that holds one. Asked before any work, so that no input is lost."""
    for what, path in inputs.items():
        if _same_entry(out, path):
            new = "folder" if out.is_dir() else "file name"
            raise UserError(f"{option} {out} is {what} ({path}): writing it would replace the "
                            f"input; give {option} a new {new}")
        if out.is_dir() and out.resolve() in path.resolve().parents:
            raise UserError(f"{option} {out} holds {what} ({path}): writing it would replace "
                            f"the input; give {option} a new folder")
