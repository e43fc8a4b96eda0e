"""``dermsight bundle verify``: is a model bundle complete, untampered and loadable?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

bundle_app = typer.Typer(help="Model bundles.", no_args_is_help=True)


@bundle_app.command("verify")
def verify(
    path: Annotated[Path | None, typer.Argument(
        help="bundle folder (default: the shipped bundle)")] = None,
) -> None:
    """Check a bundle as loading does — card schema version and fields, the sha256 of every file
    it loads or serves against the card's manifest, no unlisted file — then build its ONNX Runtime
    session and run it once. Exit code 3 and one line when anything is wrong."""
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
    typer.echo(f"ok: {card.name} {card.version} at {where}: {len(card.files)} files match the "
               f"manifest, {len(card.classes)} classes ({', '.join(card.classes)}), "
               f"input {card.input_spec.size} px, decision rule: {card.decision.description}")


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
