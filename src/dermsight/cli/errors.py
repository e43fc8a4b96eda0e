"""Turn the exceptions a user can cause into one readable line and an exit code."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TextIO

import typer

#: exit codes: 0 ok, 1 the command finished but some inputs failed (batch/evaluate/predict
#: error rows), 2 usage or user error, or a job stopped by an input or output it cannot use (an
#: output folder that cannot be written, e.g. a full disk, or holds a damaged part file), 3
#: missing/invalid model bundle, 4 a local update refused (``dermsight bundle adapt``: too few
#: cases, or no gain on them), 130 interrupted.
EXIT_SOME_ERRORS = 1
EXIT_USER = 2
EXIT_BUNDLE = 3
EXIT_REFUSED = 4
EXIT_INTERRUPTED = 130


#: top-level modules of the optional extras (pyproject ``[project.optional-dependencies]``): a
#: command that needs one that is not installed says which extra to install
OPTIONAL_MODULES: dict[str, str] = {
    **dict.fromkeys(("sqlalchemy", "alembic", "argon2", "psycopg", "zxcvbn"), "clinic"),
    **dict.fromkeys(("torch", "torchvision", "timm", "onnx", "onnxscript", "sklearn", "scipy",
                     "matplotlib", "skimage", "albumentations"), "train"),
    "pyspark": "spark",
    "fsspec": "clinic",
    "s3fs": "s3",
}

#: a module that more than one extra installs, and the advice that names each for its use:
#: fsspec is the clinic's image store (a local folder too) and, with s3fs, reads s3:// paths
_ADVICE: dict[str, str] = {
    "fsspec": "pip install 'dermsight[clinic]' (or 'dermsight[s3]' for s3:// paths)",
}


def install_advice(module: str) -> str | None:
    """What to install for the optional ``module`` (or a submodule of it): ``pip install
    'dermsight[<extra>]'``; ``None`` when no extra installs it."""
    top = module.partition(".")[0]
    if top in _ADVICE:
        return _ADVICE[top]
    extra = OPTIONAL_MODULES.get(top)
    return None if extra is None else f"pip install 'dermsight[{extra}]'"


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""

    exit_code = EXIT_USER


class RefusedError(UserError):
    """A request the data do not support (a local update that would not help); exit code 4."""

    exit_code = EXIT_REFUSED


def require_modules(what: str, *modules: str) -> None:
    """Before a long job starts: ``UserError`` naming the extra to install when one of the
    optional ``modules`` (keys of ``OPTIONAL_MODULES``) is not installed. (A missing one found
    later, at import, gets the same advice from ``run_guarded``.)"""
    import importlib.util

    for name in modules:
        if importlib.util.find_spec(name) is None:
            raise UserError(f"{what} needs the optional package {name!r}, which is not "
                            f"installed: {install_advice(name)}")


def check_threads(threads: int | None, option: str = "--threads") -> None:
    """Before the model loads: ``UserError`` (one line, exit 2) for more ONNX Runtime threads
    than ``onnxsession.max_threads`` allows (ONNX Runtime starts every thread it is given)."""
    from dermsight.onnxsession import threads_refusal

    if threads and (why := threads_refusal(threads)) is not None:
        raise UserError(f"{option}: {why}")


class Interrupted(Exception):
    """Ctrl-C, after the command printed what it had done (``Interruption``): ``run_guarded``
    prints ``interrupted: <message>`` (the message says the output is partial) and exits 130."""

    exit_code = EXIT_INTERRUPTED


class Interruption:
    """Lets a command print what it did before a Ctrl-C, the way ``batch`` keeps the rows it
    wrote: ``with stop:`` around the work ends the block, not the command, at a Ctrl-C; the
    command prints its results so far as usual, then ``stop.exit_if_caught(...)`` exits 130
    with a line saying the output is partial::

        stop = Interruption()
        with stop:
            for item in items:
                results.append(work(item))
        print_results(results)
        stop.exit_if_caught(len(results), items, "images")
    """

    def __init__(self) -> None:
        self.caught = False

    def __enter__(self) -> Interruption:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self.caught = True
            return True  # the command goes on to print what it has
        return False

    def exit_if_caught(self, done: int, items: Sequence[object], noun: str) -> None:
        """After the output: if a Ctrl-C ended the work, exit 130 saying that ``done`` of the
        ``items`` (done in order) were done and which was next: ``interrupted: 1 of 3 images
        done, the output is partial (not done: b.jpg and 1 more)``."""
        if not self.caught:
            return
        left = items[done:]
        more = f" and {len(left) - 1} more" if len(left) > 1 else ""
        raise Interrupted(f"{done} of {len(items)} {noun} done, the output is partial"
                          + (f" (not done: {left[0]}{more})" if left else ""))


# ruff noqa below: one exit code per kind of error.
def run_guarded(app: typer.Typer, argv: list[str] | None = None) -> int:  # noqa: PLR0911
    from dermsight.bundle import BundleError
    from dermsight.clinic.config import ClinicConfigError
    from dermsight.io.errors import ImageDecodeError, OutputError, ReaderError
    from dermsight.taxonomy import TaxonomyError

    try:
        # standalone_mode=False: typer/click *return* the code of an Exit (Ctrl-C: Exit(130))
        with one_line_warnings():
            code = app(args=argv, standalone_mode=False)
    except SystemExit as exc:  # typer/click exit with code
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return _interrupted()
    except Interrupted as exc:  # the command printed its partial output first
        return _interrupted(str(exc))
    except BundleError as exc:
        print(f"error: model bundle: {exc}", file=sys.stderr)
        return EXIT_BUNDLE
    except ModuleNotFoundError as exc:  # an optional extra not installed; else a real bug
        advice = install_advice(exc.name or "")
        if advice is None:
            raise
        print(f"error: this needs the optional package {exc.name!r}, which is not installed: "
              f"{advice}", file=sys.stderr)
        return EXIT_USER
    except (UserError, ImageDecodeError, ReaderError, OutputError, TaxonomyError,
            FileNotFoundError, ClinicConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USER)
    except Exception as exc:  # click usage errors (typer may vendor its own click), disk errors
        known = _other_error(exc)
        if known is None:  # a real bug, with its traceback
            raise
        return known
    if isinstance(code, int) and code:
        return _interrupted() if code == EXIT_INTERRUPTED else code
    return 0


#: the package's folder: a warning raised from a module in it is dermsight's own
_PACKAGE = Path(__file__).resolve().parents[1]


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """dermsight's own warnings (an invalid ``DERMSIGHT_MAX_IMAGE_BYTES``, said at the first
    decode) as one line on stderr, ``warning: <message>``, as the commands say their other
    warnings; not Python's ``decode.py:700: UserWarning: ...`` with a line of source code.
    Other packages' warnings are shown as Python shows them."""
    previous = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        try:
            ours = Path(filename).resolve().is_relative_to(_PACKAGE)
        except (OSError, ValueError):
            ours = False
        if not ours:
            previous(message, category, filename, lineno, file, line)
            return
        print(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr, flush=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _other_error(exc: Exception) -> int | None:
    """The exit code of an error ``run_guarded`` has no ``except`` of its own for, after saying
    it: click's usage errors and its Ctrl-C at a prompt, and an ``OSError`` of the file system
    rather than the command (``io.errors.DISK_ERRNOS``: a full disk ... one line naming the
    file, exit code 2, never 1, which says the command finished with some error rows); None
    for any other (a bug)."""
    from dermsight.io.errors import DISK_ERRNOS

    if type(exc).__name__ == "Abort":  # click's Ctrl-C / end of input at a prompt
        return _interrupted()
    show = getattr(exc, "show", None)
    if callable(show) and hasattr(exc, "exit_code"):
        show()
        return int(exc.exit_code)
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USER
    return None


def _interrupted(detail: str = "") -> int:
    print(f"interrupted: {detail}" if detail else "interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED
