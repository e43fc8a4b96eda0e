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
    refuse_overwriting_input,
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
        "--out", "-o", help="write the refitted bundle here: a new or empty folder, or an older "
                            "bundle to replace (default: in place)")] = None,
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
    from dermsight.bundle import check_bundle_folder
    from dermsight.train.gate_refit import RefitData, refit_bundle

    check_bundle_folder(bundle)  # a wrong bundle exits 3 before the data paths are looked at
    require_labelled_data(data, split)
    if out is not None:
        _check_out(out, bundle, {"--data": data, "--split": split, "--cache": cache,
                                 **({"--isic2020": isic2020} if isic2020 else {})})
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


def _has_entries(folder: Path) -> bool:
    """``folder`` holds something (or cannot be listed, so may)."""
    try:
        return any(folder.iterdir())
    except OSError:
        return True


def _check_out(out: Path, bundle: Path, inputs: dict[str, Path]) -> None:
    """``gate fit --out``, before the work: the bundle itself (in place), a new folder or an
    older bundle to replace. Refused: an input (or a folder holding one: the bundle, --data,
    --split, --cache, --isic2020), a folder inside the bundle, a file, and a folder that is
    neither empty nor a bundle (writing the bundle there first deletes the folder)."""
    from dermsight.bundle import CARD_FILE
    from dermsight.io.files import unwritable_reason

    if out.resolve() == bundle.resolve():
        return
    if (why := unwritable_reason(out, folder=True)) is not None:
        raise UserError(f"cannot write --out {out}: {why}")
    refuse_overwriting_input(out, "--out", {
        "the bundle": bundle, **{f"the {opt} path": p for opt, p in inputs.items()}})
    if bundle.resolve() in out.resolve().parents:
        raise UserError(f"--out {out} is inside the bundle {bundle}: give a folder outside it")
    if out.is_dir() and not (out / CARD_FILE).is_file() and _has_entries(out):
        raise UserError(f"--out {out} exists and is not a model bundle: writing the bundle "
                        "there would delete what it holds; give a new or empty folder")


def register(app: typer.Typer) -> None:
    app.add_typer(gate_app, name="gate")
