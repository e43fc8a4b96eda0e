"""`dermsight data ...`: look at a dataset and split it into folds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dermsight.cli.errors import UserError
from dermsight.cli.labelled_data import refuse_overwriting_input, require_writable_file
from dermsight.progress import progress_bars

data_app = typer.Typer(
    help="Inspect datasets (folder + CSV, DICOM, TFRecord) and make leak-free CV folds.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.add_typer(data_app, name="data")


def plot_suffixes() -> list[str]:
    """The file types ``data summary --plot`` writes: those matplotlib writes (it picks the
    format by the suffix: .png, .svg, .pdf, .jpg, .tif, .eps, .webp, ...), less .pgf, which
    needs LaTeX to measure the text. matplotlib (the ``[train]`` extra) must be installed."""
    from matplotlib.backend_bases import FigureCanvasBase

    common = [".png", ".svg", ".pdf", ".jpg"]  # named first in the refusal
    writes = {f".{ext}" for ext in FigureCanvasBase.get_supported_filetypes() if ext != "pgf"}
    return [s for s in common if s in writes] + sorted(writes - set(common))


def _check_plot(plot: Path, dataset: Path) -> None:
    """``data summary --plot``: a writable file of a type the chart is written as, and not
    the dataset itself; asked before the images are read."""
    suffixes = plot_suffixes()
    if plot.suffix.lower() not in suffixes:
        raise UserError(f"cannot write --plot {plot}: the chart is written as "
                        f"{', '.join(suffixes[:-1])} or {suffixes[-1]}: give a file "
                        "name ending in one of them, e.g. summary.png")
    require_writable_file(plot, "--plot")
    refuse_overwriting_input(plot, "--plot", {"the dataset": dataset})


#: ``-q/--quiet`` of the commands whose long work shows a progress bar on stderr
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar on stderr")]


def _duplicates_line(dup: dict[str, Any]) -> str:
    """The summary's line on byte-identical image files; its example is a set under different
    groups where there is one (those are what data split and train merge)."""
    sets = "set" if dup["count"] == 1 else "sets"
    across = dup.get("examples_across_groups") or []
    if across:
        which = (f"{dup['n_across_groups']} of them under different groups (e.g. "
                 + " = ".join(across[0]) + ")")
    else:
        which = ("none of them under different groups (e.g. "
                 + " = ".join(dup["examples"][0]) + ", in one group)")
    return (f"  byte-identical image files: {dup['count']} {sets} ({dup['n_images']} images), "
            f"{which}")


def _print_summary(d: dict[str, Any]) -> None:
    echo = typer.echo
    status = "verified (decoded)" if d["verified"] else "not verified (--no-verify)"
    echo(f"{d['path']}  [{d['kind']}]  images: {status}")
    echo(
        f"  images: {d['n_images']}   unreadable/invalid rows: {d['n_errors']}   "
        f"unlabeled: {d['n_unlabeled']}   groups: {d['n_groups']}"
    )
    if d.get("n_unlisted"):
        echo(f"  image files not listed in the CSV (not counted): {d['n_unlisted']}")
    dup = d.get("duplicate_files") or {}
    if dup.get("count"):
        echo(_duplicates_line(dup))
    if d.get("n_duplicate_ids"):
        echo(f"  rows repeating an id of an earlier row: {d['n_duplicate_ids']} (training "
             "refuses them; evaluate leaves every row of such an id out of its metrics)")
    if d["n_images"] and d["n_unlabeled"] == d["n_images"]:
        from dermsight.batch.summary import label_columns_text

        echo(f"  no labels: no row has a diagnosis (labels are read from "
             f"{label_columns_text()})")

    def table(title: str, counts: dict[str, Any]) -> None:
        total = sum(int(v) for v in counts.values()) or 1
        echo(f"  {title}:")
        for k, v in counts.items():
            echo(f"    {k:<20} {int(v):>7}  {100 * int(v) / total:5.1f} %")

    n_bad_dx = d.get("n_invalid", {}).get("diagnosis", 0)
    # a diagnosis given but naming no class: its own row, as the sex, site and age tables have
    table("by diagnosis", {**d["by_diagnosis"], **({"invalid": n_bad_dx} if n_bad_dx else {})})
    if d.get("unusable_labels"):
        from dermsight.taxonomy import accepted_diagnoses

        echo("  unusable diagnoses (read without a label), most common: "
             + ", ".join(f"{k!r} ({v})" for k, v in d["unusable_labels"].items())
             + f" ({accepted_diagnoses()})")
    table("by source", d["by_source"])
    table("by sex", d["by_sex"])
    table("by site", d["by_site"])
    table("age", d["age_histogram"])
    age = d["age"]
    if age["mean"] is not None:
        echo(f"  age min/mean/max: {age['min']:g} / {age['mean']:g} / {age['max']:g}")
    echo(
        "  missing: "
        + ", ".join(f"{k} {100 * v:.1f} %" for k, v in d["missing"].items())
    )
    if d["image_sizes"]:
        echo("  image sizes: " + ", ".join(f"{k} ({v})" for k, v in d["image_sizes"].items()))
    if d["errors"]:
        shown = len(d["errors"])
        echo(f"  first {shown} of {d['n_errors']} errors:")
        for e in d["errors"]:
            echo(f"    {e}")


def _repeated_ids(path: Path) -> int:
    """Rows of the dataset whose id an earlier row already had (``sources.DuplicateIds``, as
    ``dermsight batch`` counts them), from a second listing of it (no pixels read)."""
    from dermsight.batch.sources import DuplicateIds, record_row
    from dermsight.io import iter_records

    repeated = DuplicateIds()
    for _ in repeated.watch(record_row(r) for r in iter_records(path, decode=False)):
        pass
    return repeated.count


@data_app.command("summary")
def summary_cmd(
    path: Annotated[Path, typer.Argument(help="Dataset folder, CSV, DICOM, TFRecord or image.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(
            "--plot", help="Also write a chart: .png, .svg, .pdf, .jpg, ... (a file type "
                    "matplotlib writes; needs matplotlib).")
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify", help="Decode every image to count unreadable files."
        ),
    ] = True,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Decode threads (default: 2 x CPUs).")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")
    ] = True,
) -> None:
    """Images per class / source / sex / site, ages, missing metadata and unreadable files."""
    from dermsight.datasummary import plot_summary, summarize

    if not path.exists():
        raise UserError(f"not found: {path}")
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise UserError(
                "--plot needs matplotlib, which is not installed: pip install 'dermsight[train]'"
            ) from exc
        _check_plot(plot, path)
    result = summarize(
        path, verify=verify, workers=workers, progress=progress_bars(progress)
    ).to_dict()
    if not result["n_images"]:  # a wrong or empty folder: not a dataset of 0 images
        raise UserError(f"no images found in {path}: a dataset is a folder of images (.jpg, "
                        ".png, ... or .dcm, with or without a metadata.csv), a CSV, DICOM "
                        "files or TFRecord shards")
    result["n_duplicate_ids"] = _repeated_ids(path)
    if plot is not None:
        try:
            out = plot_summary(result, plot)
        except OSError as exc:  # e.g. the disk filled up, or the folder went away meanwhile
            raise UserError(f"cannot write --plot {plot}: {exc.strerror or exc}") from exc
        result["plot"] = str(out)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_summary(result)
        if plot is not None:
            typer.echo(f"  chart written to {result['plot']}")


@data_app.command("split")
def split_cmd(
    csv_path: Annotated[Path, typer.Argument(metavar="CSV", help="Dataset CSV (any layout).")],
    folds: Annotated[int, typer.Option("--folds", min=2, help="Number of folds.")] = 5,
    group_col: Annotated[
        str | None,
        typer.Option(
            "--group-col",
            help="Column that groups images (default: group_id, else lesion_id, else "
            "patient_id; 'none': each image alone, on purpose). A CSV without these columns "
            "but with one whose name looks like a patient, lesion, subject or case identifier "
            "(patient_no, case_id, SubjectID) is refused until one is chosen.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Shuffle seed.")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write image_id,fold here (default stdout).")
    ] = None,
) -> None:
    """Stratified group k-fold: every lesion's images in one fold, classes balanced."""
    from dermsight.io.errors import ReaderError
    from dermsight.splits import UNLABELED, split_csv

    if not csv_path.is_file():
        raise UserError(f"CSV not found: {csv_path}")
    if out is not None:
        require_writable_file(out)
        refuse_overwriting_input(out, "--out", {"the input CSV": csv_path})
    try:
        assignment = split_csv(csv_path, folds, group_col=group_col, seed=seed)
    except (ValueError, ImportError) as exc:
        if isinstance(exc, ReaderError):
            raise
        raise UserError(str(exc)) from exc
    report = assignment.report()
    if out is not None:
        try:
            assignment.write_csv(out)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else ""
            raise UserError(f"cannot write --out {out}: {exc.strerror or exc}{where}") from exc
    else:
        typer.echo("image_id,fold")
        for image_id, fold in assignment.rows():
            typer.echo(f"{image_id},{fold}")
    err = sys.stderr
    print(
        f"{report['n']} images in {report['n_groups']} groups "
        f"(grouped by {report['group_col'] or 'image'}), {folds} folds, seed {seed}",
        file=err,
    )
    classes = list(report["class_fraction"])
    print("fold      n  " + " ".join(f"{c:>6}" for c in classes), file=err)
    print("all  " + f"{report['n']:>6}  " + " ".join(
        f"{100 * report['class_fraction'][c]:5.1f}%" for c in classes), file=err)
    for f in report["folds"]:
        print(f"{f['fold']:<4} {f['n']:>6}  " + " ".join(
            f"{100 * f['class_fraction'][c]:5.1f}%" for c in classes), file=err)
    for line in assignment.warnings:
        print(f"warning: {line}", file=err)
    if assignment.unreadable_labels:
        from dermsight.taxonomy import accepted_diagnoses

        n = len(assignment.unreadable_labels)
        print(f"warning: {n} rows have a diagnosis that names no known class (e.g. "
              f"{assignment.unreadable_labels[0]}); they were split as {UNLABELED} "
              f"({accepted_diagnoses()})", file=err)
    if out is not None:
        print(f"wrote {out}", file=err)
