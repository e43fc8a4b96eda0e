"""``dermsight bundle verify``: is a model bundle complete, untampered and loadable?
``dermsight bundle schema``: the JSON Schema of ``card.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

bundle_app = typer.Typer(help="Model bundles.", no_args_is_help=True)


@bundle_app.command("verify")
def verify(
    path: Annotated[Path | None, typer.Argument(
        help="bundle folder (default: the shipped bundle)")] = None,
) -> None:
    """Check a bundle as loading does — the card against its schema (every runtime field present
    and of the right type), the sha256 of every file it loads or serves against the card's
    manifest, no unlisted file — then build its ONNX Runtime session and run it once. Exit code 3
    and one line naming the problem (the card field, the file) when anything is wrong."""
    import numpy as np

    from dermsight.predict import Dermsight

    model = Dermsight.load(path)  # BundleError -> one line, exit code 3
    card = model.card
    x = np.zeros((1, 3, card.input_spec.size, card.input_spec.size), np.float32)
    m = np.zeros((1, card.meta_spec.dim), np.float32)
    logits = model.run_arrays(x, m)["logits"]
    if logits.shape != (1, len(card.classes)):
        from dermsight.bundle import BundleError

        raise BundleError(f"the network gives {logits.shape[1]} outputs but the card lists "
                          f"{len(card.classes)} classes")
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


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
