"""``dermsight gate fit`` (needs the [train] extra: scikit-learn, scikit-image, matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermsight.cli.data import QuietOpt
from dermsight.cli.errors import UserError, require_modules
from dermsight.cli.labelled_data import (
    DEFAULT_DATA,
    DEFAULT_SPLIT,
    DataOpt,
    SplitOpt,
    require_labelled_data,
)
from dermsight.progress import progress_bars

gate_app = typer.Typer(help="The \"cannot assess\" gate of a model bundle.", no_args_is_help=True)


@gate_app.command("fit")
def fit(  # noqa: PLR0913
    bundle: Annotated[Path, typer.Argument(help="model bundle folder (with gate v1 fitted)")],
    data: DataOpt = DEFAULT_DATA,
    split: SplitOpt = DEFAULT_SPLIT,
    isic2020: Annotated[Path | None, typer.Option(
        help="isic2020-sample folder: extra false-reject figures (never fitted on)")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="write the refitted bundle here (default: in place)")] = None,
    cache: Annotated[Path, typer.Option(
        help="feature cache folder (keyed by the model and the image names: empty it after "
             "changing the image generators)")] = Path("runs/gate-v2/cache"),
    system_negatives: Annotated[bool, typer.Option(
        help="also use Debian wallpapers / clip art when installed")] = True,
    seed: Annotated[int, typer.Option(help="sampling and generation seed")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Refit gate v2 on the bundle's training/validation images, measure it (held-out kinds of
    non-dermoscopic images, false rejects per source on TEST) and write it into the bundle."""
    require_modules("gate fitting", "skimage", "sklearn")
    from dermsight.train.gate_refit import RefitData, refit_bundle

    require_labelled_data(data, split)
    try:
        ev = refit_bundle(bundle, RefitData(data, split, cache, isic2020), out or bundle,
                          system_negatives=system_negatives, seed=seed, log=typer.echo,
                          progress=progress_bars(not quiet))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    for cat, r in ev["held_out_false_accept"].items():
        fa = r["false_accept"]
        typer.echo(f"held-out {cat:22s} false accepts {fa['k']:4d}/{fa['n']:<5d} "
                   f"{100 * fa['rate']:.1f} %")
    for cat, r in ev.get("new_pictures_false_accept", {}).items():
        fa = r["false_accept"]
        typer.echo(f"new pictures {cat:18s} false accepts {fa['k']:4d}/{fa['n']:<5d} "
                   f"{100 * fa['rate']:.1f} %")
    for src, r in ev["false_reject_test"].items():
        typer.echo(f"test {src:34s} false rejects {r['k']:4d}/{r['n']:<5d} "
                   f"{100 * r['rate']:.2f} %")
    typer.echo(f"bundle written: {out or bundle}")


def register(app: typer.Typer) -> None:
    app.add_typer(gate_app, name="gate")
