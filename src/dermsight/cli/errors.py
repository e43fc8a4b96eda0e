"""Turn the exceptions a user can cause into one readable line and an exit code."""

from __future__ import annotations

import sys

import typer

#: exit codes: 0 ok, 1 some inputs failed (batch/predict error rows), 2 usage or user error,
#: 3 missing/invalid model bundle, 4 a local update refused (``dermsight bundle adapt``: too few
#: cases, or no gain on them), 130 interrupted.
EXIT_USER = 2
EXIT_BUNDLE = 3
EXIT_REFUSED = 4
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""

    exit_code = EXIT_USER


class RefusedError(UserError):
    """A request the data do not support (a local update that would not help); exit code 4."""

    exit_code = EXIT_REFUSED


# ruff noqa below: one exit code per kind of error.
def run_guarded(app: typer.Typer, argv: list[str] | None = None) -> int:  # noqa: PLR0911
    from dermsight.bundle import BundleError
    from dermsight.clinic.config import ClinicConfigError
    from dermsight.io.errors import ImageDecodeError, ReaderError
    from dermsight.taxonomy import TaxonomyError

    try:
        # standalone_mode=False: typer/click *return* the code of an Exit (Ctrl-C: Exit(130))
        code = app(args=argv, standalone_mode=False)
    except SystemExit as exc:  # typer/click exit with code
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return _interrupted()
    except BundleError as exc:
        print(f"error: model bundle: {exc}", file=sys.stderr)
        return EXIT_BUNDLE
    except (UserError, ImageDecodeError, ReaderError, TaxonomyError, FileNotFoundError,
            ClinicConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USER)
    except Exception as exc:  # click usage errors (typer may vendor its own click)
        if type(exc).__name__ == "Abort":  # click's Ctrl-C / end of input at a prompt
            return _interrupted()
        show = getattr(exc, "show", None)
        if callable(show) and hasattr(exc, "exit_code"):
            show()
            return int(exc.exit_code)
        raise
    if isinstance(code, int) and code:
        return _interrupted() if code == EXIT_INTERRUPTED else code
    return 0


def _interrupted() -> int:
    print("interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED
