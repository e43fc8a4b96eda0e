"""``dermsight`` command line: thin layers over the library.

Each area registers its sub-commands from its own module (``cli/data.py``, ``cli/model.py``,
``cli/serve.py``, ``cli/batch.py``, ``cli/gate.py``, ``cli/bundle.py``, ``cli/reference.py``,
``cli/clinic.py``); heavy imports happen inside the commands so ``--help`` is fast.
User errors print one clear line and exit non-zero; they never print a traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dermsight.cli import batch as _batch
from dermsight.cli import bundle as _bundle
from dermsight.cli import clinic as _clinic
from dermsight.cli import data as _data
from dermsight.cli import gate as _gate
from dermsight.cli import model as _model
from dermsight.cli import reference as _reference
from dermsight.cli import serve as _serve
from dermsight.cli.errors import run_guarded

app = typer.Typer(
    name="dermsight",
    help="Decision support for dermoscopic skin-lesion images. Not a diagnosis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _print_version(value: bool) -> None:
    """``--version``: ``dermsight <version>`` (the installed distribution's), exit 0."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("dermsight")
        except PackageNotFoundError:  # run from a source tree that is not installed
            installed = "unknown (not installed)"
        typer.echo(f"dermsight {installed}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the installed version and exit.")] = False,
) -> None:
    """Decision support for dermoscopic skin-lesion images. Not a diagnosis."""


for _module in (_data, _model, _serve, _batch, _gate, _bundle, _reference, _clinic):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_guarded(app, argv))
