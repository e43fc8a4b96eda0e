"""``dermsight reference build``: the similar-cases reference set of a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermsight.cli.data import QuietOpt
from dermsight.cli.labelled_data import (
    DEFAULT_DATA,
    DEFAULT_SPLIT,
    DataFoldersOpt,
    require_labelled_data,
)
from dermsight.progress import progress_bars

reference_app = typer.Typer(help="The similar-cases reference set of a model bundle.",
                            no_args_is_help=True)


@reference_app.command("build")
def build(
    bundle: Annotated[Path, typer.Argument(help="model bundle folder (written in place)")],
    data: DataFoldersOpt = None,
    split: Annotated[Path | None, typer.Option(
        help="the bundle's split CSV (image_id, split); default: the split.csv of the run "
             "folder the bundle was written in, or configs/default-split.csv for the shipped "
             "model, whichever the card's split hashes recognise")] = None,
    per_class: Annotated[int, typer.Option(min=1, help="training images per class (at most)")
                         ] = 300,
    seed: Annotated[int, typer.Option(help="order in which images of a class are picked")] = 0,
    threads: Annotated[int, typer.Option(min=1, help="ONNX Runtime threads")] = 1,
    quiet: QuietOpt = False,
) -> None:
    """Pick training images per class, embed them with the bundle's model, store them with
    thumbnails and licences in BUNDLE/reference/, measure retrieval on the TEST split (card
    'retrieval') and rewrite the bundle's manifest.

    Every picked image needs a known licence (its thumbnail is redistributed): the shipped data
    sources' are known; images of other sources need a 'licence' column in their data folder's
    metadata.csv (optional 'licence_url', 'attribution'), else exit code 2."""
    from dermsight.cli.errors import UserError, check_threads
    from dermsight.reference_build import (
        ReferenceDataError,
        build_reference,
        recorded_split,
        trained_folders,
    )

    check_threads(threads)  # one line, exit 2, before the data are read

    folders = data or trained_folders(bundle) or [DEFAULT_DATA]
    if split is None:
        split = recorded_split(bundle, DEFAULT_SPLIT)
    require_labelled_data(folders, split)
    try:
        result = build_reference(bundle, folders, split, per_class=per_class, seed=seed,
                                 threads=threads, log=typer.echo,
                                 progress=progress_bars(not quiet))
    except ReferenceDataError as exc:
        raise UserError(str(exc)) from None
    m = result["metrics"]
    for code, row in m["precision_at_k"]["per_class"].items():
        p = row["precision_at_k"]
        typer.echo(f"{code:5s} precision@{m['k']} "
                   f"{'-' if p is None else f'{p:.3f}'}  (n={row['n_queries']})")
    for name in ("knn_vote", "classifier"):
        r = m[name]
        typer.echo(f"{name:10s} accuracy {r['accuracy']:.3f}  balanced accuracy "
                   f"{r['balanced_accuracy']:.3f}  ({r['correct']}/{r['n']})")


def register(app: typer.Typer) -> None:
    app.add_typer(reference_app, name="reference")
