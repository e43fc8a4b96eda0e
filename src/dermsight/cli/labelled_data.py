"""The ``--data`` / ``--split`` options of the commands that work on a bundle's labelled images
(``dermsight gate fit``, ``dermsight reference build``), and their existence check."""

from __future__ import annotations

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
