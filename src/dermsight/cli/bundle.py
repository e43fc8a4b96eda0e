"""``dermsight bundle verify``: is a model bundle complete, untampered and loadable?
``dermsight bundle schema``: the JSON Schema of ``card.json``.
``dermsight bundle adapt``: a clinic's local update of the suggested class
(:mod:`dermsight.local_update`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dermsight.cli.data import QuietOpt

bundle_app = typer.Typer(help="Model bundles.", no_args_is_help=True)


@bundle_app.command("verify")
def verify(
    path: Annotated[Path | None, typer.Argument(
        help="bundle folder (default: the shipped bundle)")] = None,
) -> None:
    """Check a bundle as loading does — the card against its schema (every runtime field present
    and of the right type), a finished card (not the provisional one an interrupted finalize or
    export left: ``status: "provisional"``, or no metrics and a refer threshold of 1), the
    sha256 of every file it loads or serves against the card's manifest, no unlisted file, an
    ONNX file ONNX Runtime can load, the gate arrays the card's gate needs, a readable reference
    set — then run the network once and check that its classes and features fit the card, the
    gate and the whole reference set. Exit code 3 and one line naming the problem (the card
    field, the file) when anything is wrong."""
    import numpy as np

    from dermsight.bundle import BundleError
    from dermsight.predict import Dermsight

    model = Dermsight.load(path)  # BundleError -> one line, exit code 3
    card = model.card
    x = np.zeros((1, 3, card.input_spec.size, card.input_spec.size), np.float32)
    m = np.zeros((1, card.meta_spec.dim), np.float32)
    out = model.run_arrays(x, m)
    logits = out["logits"]
    if logits.shape != (1, len(card.classes)):
        raise BundleError(f"the network gives {logits.shape[1]} outputs but the card lists "
                          f"{len(card.classes)} classes")
    width = out["embedding"].shape[1]
    bank = model.bundle.gate_arrays.get("bank")
    reference = model.reference  # read in full; a ReferenceError is a BundleError
    for what, features in (("gate.npz's bank", None if bank is None else bank.shape[-1]),
                           ("the reference set",
                            None if reference is None else reference.embedding.shape[1])):
        if features is not None and features != width:
            raise BundleError(f"the network gives {width} features but {what} holds "
                              f"{features}: not this model's")
    where = model.bundle.path
    typer.echo(f"ok: {card.name} {card.version} at {where}: the card matches its schema, "
               f"{len(card.files)} files match the manifest, {len(card.classes)} classes "
               f"({', '.join(card.classes)}; malignant: {', '.join(card.malignant)}), "
               f"input {card.input_spec.size} px, decision rule: {card.decision.description}")


@bundle_app.command("schema")
def schema(
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="write the schema to this file (default: print it)")] = None,
) -> None:
    """Print the JSON Schema of a bundle's card.json (the typed card model): the runtime fields
    every card must hold and the report fields it may hold. The front end's TypeScript types
    are generated from it (frontend/src/generated/)."""
    from dermsight.cardschema import card_json_schema
    from dermsight.cli.errors import UserError

    text = json.dumps(card_json_schema(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None


@bundle_app.command("adapt")
def adapt(
    data: Annotated[str, typer.Argument(
        help="the clinic's labelled images (folder + CSV, DICOM, TFRecord: what `dermsight "
             "batch` reads), with a diagnosis per image")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the adapted bundle (a new folder)")],
    name: Annotated[str, typer.Option(
        "--name", help="whose cases (clinic or collection name, written into the card)")],
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", "-b", help="the bundle to adapt (default: the shipped bundle)")] = None,
    scores: Annotated[Path | None, typer.Option(
        "--scores", help="where the cases are scored (a run resumes it); default: OUT.scores")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the folds and the bootstrap")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Update the suggested class on a clinic's own labelled cases, validated on them first.

    Scores the cases with the bundle, fits a logistic regression from its log-probabilities to
    the classes the cases cover (10 or more cases each, 100 in all), and checks it on the cases
    themselves (two group-disjoint folds, each scored by an update fitted on the other, against
    the unchanged model; paired group bootstrap). Accepted only when balanced accuracy is shown
    to gain: then the adapted bundle is written to OUT. Otherwise exit code 4 and no bundle.
    Either way the figures go to OUT.assessment.json. Only the suggested class changes, and never
    a suggestion of a malignant class (MEL, BCC, SCC), so melanoma recall cannot fall;
    probabilities, risk tiers and the gate stay the model's.
    """
    from dermsight.cli.errors import RefusedError, UserError
    from dermsight.local_update import AdaptInputError, UpdateRefused
    from dermsight.local_update import adapt as adapt_to_clinic

    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise UserError("fitting a local update needs scikit-learn: pip install "
                        "'dermsight[train]' (serving the adapted bundle does not)") from exc
    try:
        result = adapt_to_clinic(data, out, name, bundle=bundle, scores=scores, seed=seed,
                                 on_scored=lambda summary: typer.echo(summary.render()),
                                 progress=not quiet)
    except UpdateRefused as exc:
        if exc.assessment is not None:
            typer.echo(exc.assessment.render())
        raise RefusedError(f"no local update written: {exc}") from None
    except AdaptInputError as exc:
        raise UserError(str(exc)) from None
    typer.echo(result.assessment.render())
    typer.echo(f"adapted bundle: {result.bundle} (serve it with: dermsight serve --model "
               f"{result.bundle}); figures: {result.report}")


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
