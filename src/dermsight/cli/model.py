"""``dermsight train | evaluate | export`` (need the [train] extra)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from dermsight.cli.data import QuietOpt
from dermsight.cli.errors import Interrupted, UserError, require_modules
from dermsight.cli.labelled_data import refuse_overwriting_input, require_writable_file
from dermsight.progress import progress_bars


def _need_train_extra() -> None:
    require_modules("training", "torch", "timm", "sklearn")


def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config")] = Path(
        "configs/default.yaml"),
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder")] = Path("runs/default"),
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a config key, e.g. --set train.epochs=2 (repeatable)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from out/last.pt")] = False,
    stage: Annotated[str, typer.Option(help="all | train | finalize")] = "all",
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="also copy the finished bundle here")] = None,
) -> None:
    """Train a model, then calibrate, evaluate on the held-out test split and export a bundle."""
    _need_train_extra()
    from dermsight.train.config import (
        ConfigError,
        Provenance,
        load_config,
        name_backbone_mismatch,
        shipped_identity_clash,
    )
    from dermsight.train.pipeline import interruption_note, run

    if stage not in ("all", "train", "finalize"):
        raise UserError("--stage must be all, train or finalize")
    if bundle is not None:  # refused now, not after the training
        require_bundle_destination(bundle)
    try:
        cfg = load_config(config, set_ or [])
        if (mismatch := name_backbone_mismatch(cfg)) is not None:
            typer.echo(f"warning: {mismatch}", err=True)
        if (clash := shipped_identity_clash(cfg, [config.resolve().parent.parent])) is not None:
            typer.echo(f"warning: {clash}", err=True)
        for root in cfg.data.roots:
            if not (Path(root) / "metadata.csv").exists():
                raise UserError(f"data folder not found or has no metadata.csv: {root}")
        try:
            summary = run(cfg, out, resume=resume, stage=stage,
                          provenance=Provenance.of(config, out, set_))
        except KeyboardInterrupt:  # say what the run folder kept and how to go on
            raise Interrupted(interruption_note(cfg, out)) from None
    except ConfigError as exc:
        raise UserError(str(exc)) from exc
    if bundle is not None and (out / "bundle").exists():
        copy_bundle(out / "bundle", bundle)
        typer.echo(f"bundle copied to {bundle}")
    typer.echo(f"done: {summary}")


#: what identifies one bundle folder's card file: a bundle swapped in whole has a new one
_CardId = tuple[int, int] | None


def _card_id(folder: Path) -> _CardId:
    from dermsight.bundle import CARD_FILE

    try:
        st = (folder / CARD_FILE).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _left_as(folder: Path, before: _CardId) -> tuple[str, bool]:
    """What a bundle folder that was being replaced whole holds after an interruption or error,
    given its card's identity (:func:`_card_id`) before: a phrase, and whether it is the new
    bundle (swapped in whole before the interruption)."""
    now = _card_id(folder)
    if now is None:
        return f"{folder} has no bundle", False
    if now == before:
        return f"{folder} is still the bundle made before, left as it was", False
    return f"{folder} holds the new bundle, put there whole before the interruption", True


def copy_bundle(src: Path, dst: Path) -> None:
    """Put the bundle ``src`` at ``dst``, replacing a bundle already there as a whole (files of
    the old one left beside the new would break its integrity manifest). The copy is made in a
    sibling folder ``<dst>.partial-<pid>`` and renamed into place once whole
    (``bundle.staged_bundle``), so ``dst`` is at every moment the bundle that was there (or
    none) or the new one, never a mix: a copy that fails (a full disk: ``UserError``) or is
    interrupted (Ctrl-C: ``Interrupted``) leaves ``dst`` as it was. A folder that is not a
    bundle is never overwritten. The split the bundle was trained on comes along
    (:func:`_carry_split`)."""
    import shutil

    from dermsight.bundle import staged_bundle

    require_bundle_destination(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        return  # already there (export RUN --out RUN/bundle)
    if dst.resolve().is_relative_to(src.resolve()):
        raise UserError(f"{dst} is inside the bundle {src}: refusing to copy a bundle into "
                        "itself (its integrity manifest would no longer match)")
    before = _card_id(dst)
    try:
        with staged_bundle(dst) as stage:
            shutil.copytree(src, stage, dirs_exist_ok=True)
            _carry_split(src, stage)
    except KeyboardInterrupt:
        raise Interrupted(f"{src} is the finished bundle; the copy to {dst} was stopped "
                          f"({_left_as(dst, before)[0]})") from None
    except OSError as exc:
        raise UserError(f"could not copy the bundle {src} to {dst}: {_os_reason(exc)} "
                        f"({_left_as(dst, before)[0]})") from exc


#: the split file a bundle folder may hold beside its files (``splits.split_candidates``)
SPLIT_FILE = "split.csv"


def _carry_split(src: Path, copy: Path) -> None:
    """Put the split the bundle ``src`` was trained on into its ``copy`` as ``split.csv``: the
    run folder's ``RUN/split.csv`` beside ``RUN/bundle`` stays behind when the bundle is copied
    elsewhere, and without it ``dermsight evaluate`` cannot tell which evaluated images trained
    the model (``batch.summary.training_overlap``). Only a file whose ids match every split
    fingerprint the card records (``splits.recorded_split_file``); none found, nothing copied.
    It is not a bundle file: the manifest does not list it and loading does not read it."""
    import shutil

    from dermsight.bundle import CARD_FILE
    from dermsight.splits import recorded_split_file

    if (copy / SPLIT_FILE).exists():  # the bundle held one: copied with it
        return
    try:
        card = json.loads((src / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # loading the bundle says what is wrong with its card
    found = recorded_split_file(card.get("data") if isinstance(card, dict) else None, src)
    if found is not None:
        shutil.copy2(found, copy / SPLIT_FILE)


def _os_reason(exc: OSError) -> str:
    """One line for an ``OSError`` of a copy; ``shutil.Error`` (``copytree``) gathers one per
    file: the first is named, with the count of the others."""
    import shutil

    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        failed = exc.args[0]
        if failed and isinstance(failed[0], tuple) and len(failed[0]) == 3:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            return f"{failed[0][1]}: {failed[0][2]}{more}"
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def require_bundle_destination(dst: Path) -> None:
    """``UserError`` when ``dst`` exists and is not a model bundle (or an empty folder), which
    copying a bundle there would overwrite."""
    from dermsight.bundle import CARD_FILE

    if dst.exists() and (not dst.is_dir() or (any(dst.iterdir())
                                              and not (dst / CARD_FILE).is_file())):
        raise UserError(f"{dst} exists and is not a model bundle: refusing to overwrite it")


def export(
    run_dir: Annotated[Path, typer.Argument(help="training run folder (best.pt, config.json)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="copy the bundle here")] = None,
) -> None:
    """(Re-)export a trained run as a bundle: ONNX + parity check, calibration, test evaluation."""
    _need_train_extra()
    from dermsight.train.config import ConfigError, Provenance, load_config
    from dermsight.train.pipeline import run

    if not (run_dir / "best.pt").exists() or not (run_dir / "config.json").exists():
        raise UserError(f"{run_dir} is not a finished training run (needs best.pt, config.json)")
    if out is not None:  # refused now, not after the export
        require_bundle_destination(out)
    before = _card_id(run_dir / "bundle")
    try:
        cfg = load_config(run_dir / "config.json")
        summary = run(cfg, run_dir, stage="finalize",
                      provenance=Provenance.of(run_dir / "config.json", run_dir))
    except ConfigError as exc:
        raise UserError(str(exc)) from exc
    except KeyboardInterrupt:  # finalize builds in a partial folder and swaps it in whole
        kept, made = _left_as(run_dir / "bundle", before)
        copied = f"; nothing was copied to {out}" if out is not None else ""
        raise Interrupted(f"the bundle was made ({kept}){copied}" if made else
                          f"the bundle was not made ({kept}){copied}: make it with the same "
                          "command") from None
    if out is not None:
        copy_bundle(run_dir / "bundle", out)
    typer.echo(f"bundle: {out or run_dir / 'bundle'}  {summary}")


def evaluate(
    bundle: Annotated[Path, typer.Argument(help="model bundle folder")],
    data: Annotated[str, typer.Argument(help="labelled images (folder, CSV, DICOM, TFRecord)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("evaluation"),
    quiet: QuietOpt = False,
) -> None:
    """Score a labelled dataset with a bundle; write per-image scores, metrics and HTML report.

    Runs the batch scorer with --evaluate (metrics with group-bootstrap CIs, per-class,
    subgroup and skin-tone (ITA band) tables). No torch needed.

    Images the gate refuses ("cannot assess") are left out of the metrics and counted. A
    model card's test figures include them, so evaluating a card's test split does not
    reproduce the card's rows exactly.

    Exit code 2 when the data have nothing to evaluate (no labels: refused before any image is
    scored), 1 when some images could not be scored (the error column of the scores says why;
    the report leaves them out). The metrics use the labels of the data as they are now, also
    on a resumed --out; rows that share an id are left out of them.
    """
    from dermsight.batch.local import run_local
    from dermsight.batch.options import ScoreOptions
    from dermsight.batch.store import OutputCommand

    _check_evaluation_inputs(bundle, data)
    _claim_evaluation_folder(out, bundle, data)
    # scored as served by default: Parquet, no TTA (neither an option of this command). Scores
    # of another bundle (card_sha256), format or TTA setting are refused by the store before it
    # writes, an OutputError that the CLI reports as one line, exit 2, naming a way out that
    # this command offers
    command = OutputCommand("--out", format_option=False, tta_option=False,
                            tta_reason="as the served model does by default")
    summary = run_local(data, out / "scores", ScoreOptions(evaluate=True), bundle=bundle,
                        progress=not quiet, command=command)
    # the report's path is said once, last (``report: ...``), not also in the summary
    typer.echo(replace(summary, evaluation={k: v for k, v in summary.evaluation.items()
                                            if k != "report"}).render(warnings=False))
    for line in summary.input_warnings():  # as dermsight batch says them, and the evaluation's
        typer.echo(f"warning: {line}", err=True)
    if "unavailable" in summary.evaluation:  # no labels: nothing written, a user error
        raise UserError(summary.evaluation["unavailable"].removeprefix("--evaluate: "))
    scored = int(summary.total.get("rows", 0)) - int(summary.total.get("errors", 0))
    evaluated = int(json.loads(Path(summary.evaluation["json"]).read_text(encoding="utf-8"))
                    .get("n", scored))
    refused = int(summary.gate_refused.get("images", 0))  # said in the summary above
    unlabelled = scored - evaluated - refused
    if unlabelled > 0:  # rows scored without a label (or with another class): say so
        typer.echo(f"note: the metrics cover {evaluated} of the {scored} scored images; "
                   + (f"{refused} the gate refused, and " if refused else "the other ")
                   + f"{unlabelled} have no usable label, one outside the model's classes "
                   "or an id that another row repeats",
                   err=True)
    typer.echo(f"report: {summary.evaluation['report']}")
    if summary.errors:
        raise SystemExit(1)


#: what ``dermsight evaluate`` records in its --out folder: the data it scored (the bundle that
#: scored each row is in the scores themselves: their ``card_sha256`` column)
EVALUATED = "evaluated.json"
#: the bundle's card sha256, as ``evaluated.json`` held it before the scores recorded it
_LEGACY_BUNDLE_KEY = "bundle_card_sha256"


def _check_evaluation_inputs(bundle: Path, data: str) -> None:
    """Before anything is written to --out and any image is scored: a bundle path that is no
    bundle (a training run folder given for its bundle, ``bundle.check_bundle_folder``), a data
    folder whose metadata.csv cannot be read (``csvfolder.classify_csvs``) and data that cannot
    be read at all (not found, no images: ``sources.open_source``) are refused, by the checks
    that the scoring itself runs; so are data without a single label (read without pixels),
    naming where labels are read from."""
    from dermsight.batch.sources import open_source
    from dermsight.batch.summary import binary_target_only, label_columns_text
    from dermsight.bundle import check_bundle_folder
    from dermsight.io.csvfolder import classify_csvs

    check_bundle_folder(bundle)
    if Path(data).is_dir():
        classify_csvs(Path(data))
    source = open_source(data)
    if not any(row.get("label") for row in source.rows(check_unlisted=False)):
        why = ("its only label column is a binary target, and no row has target 1 (target 0, "
               "benign of unknown diagnosis, names none of the model's classes)"
               if binary_target_only(source.input) else
               f"labels are read from {label_columns_text()}")
        raise UserError(f"{data} has no labels, nothing to evaluate: {why} ('dermsight data "
                        f"summary {data}' shows what it holds); nothing was scored")


def _claim_evaluation_folder(out: Path, bundle: Path, data: str) -> None:
    """``out`` gets this evaluation's scores. Scores already there are resumed (an interrupted
    evaluation goes on) only when they are of the same data (recorded here); else their rows
    would be mixed with this data's. Scores of another bundle are refused by the batch store
    (their ``card_sha256``), which knows the bundle of every row, except in scores written
    before that column: for those, the bundle an older dermsight recorded here is checked."""
    from dermsight.bundle import card_sha256

    claim = {"data": str(Path(data).resolve()) if Path(data).exists() else data}
    marker = out / EVALUATED
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if (out / "scores").exists():
        try:
            earlier = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = None
        earlier = earlier if isinstance(earlier, dict) else {}
        held = earlier.get("data")
        legacy = earlier.get(_LEGACY_BUNDLE_KEY)  # an older dermsight's record of the bundle
        why = None
        if not (out / "scores").is_dir():  # the store would name it --out
            why = "scores is a file, not a folder of part files"
        elif held != claim["data"]:
            why = f"of other data: {held}" if isinstance(held, str) else "data not recorded"
        elif legacy is not None and legacy != card_sha256(bundle):
            why = f"of another bundle, recorded in {marker.name}"
        if why is not None:
            raise UserError(f"--out {out} holds scores this evaluation cannot resume ({why}): "
                            f"use another --out, or remove {out / 'scores'}")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(claim, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write to --out {out}: {exc.strerror or exc}") from exc


def distill_targets(
    out: Annotated[Path, typer.Option("--out", "-o", help="the soft-target file (.npz)")],
    bundle: Annotated[list[Path] | None, typer.Option(
        "--bundle", "-b", help="a teacher bundle (repeat for an ensemble)")] = None,
    merge: Annotated[list[Path] | None, typer.Option(
        "--merge", help="an earlier soft-target file to add, weighted by its teacher count "
                        "(repeatable)")] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="the student's YAML config")] = (
        Path("configs/default.yaml")),
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a config key, as for train (repeatable)")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Soft targets for distilling: the teachers' mean probabilities on the config's training
    images, for 'dermsight train --set train.distill_targets=FILE --set train.distill_weight=W'.
    --merge adds earlier files' teachers to the mean (each file weighted by its number of
    teachers), so a teacher can be added without the earlier teachers' networks.
    """
    _need_train_extra()
    from dermsight.bundle import BundleError
    from dermsight.train.config import ConfigError, load_config
    from dermsight.train.distill import (
        merge_soft_targets,
        read_soft_targets,
        teacher_targets,
        write_soft_targets,
    )

    bundles, earlier = bundle or [], merge or []
    if not bundles and not earlier:
        raise UserError("give at least one teacher --bundle or soft-target file to --merge")
    require_writable_file(out)  # before the teachers score every training image
    refuse_overwriting_input(out, "--out", {
        "the --config file": config,
        **{f"the --merge file {i + 1}": f for i, f in enumerate(earlier)}})
    for b in bundles:  # a missing or broken teacher exits 3, as any unusable bundle does
        if not b.is_dir():
            raise BundleError(f"teacher bundle not found: {b}")
    try:
        cfg = load_config(config, set_ or [])
        parts = []
        if bundles:
            ids, probs, provenance = teacher_targets(cfg, bundles,
                                                     progress=progress_bars(not quiet))
            parts.append((ids, probs, provenance))
        for f in earlier:
            f_ids, f_classes, f_probs, f_prov = read_soft_targets(f)
            if f_classes != list(cfg.data.classes):
                raise ConfigError(f"{f} has classes {f_classes}, the config "
                                  f"{list(cfg.data.classes)}")
            parts.append((f_ids, f_probs, {**f_prov, "file": f.name}))
        ids, probs, provenance = merge_soft_targets(parts)
    except ConfigError as exc:
        raise UserError(str(exc)) from exc
    provenance.pop("schema", None)
    write_soft_targets(out, ids, cfg.data.classes, probs, provenance)
    typer.echo(f"soft targets for {len(ids)} training images from "
               f"{len(provenance['teachers'])} teacher(s): {out}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("distill-targets")(distill_targets)
    app.command("export")(export)
    app.command("evaluate")(evaluate)
