"""Running the dermsight CLI in-process from tests, as a user's shell would."""

from __future__ import annotations

import pytest

from dermsight.cli import main
from dermsight.cli.errors import EXIT_BUNDLE


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``dermsight ARGS``: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def assert_bundle_error_line(code: int, err: str, message: str) -> None:
    """Exit code 3 and one stderr line, ``error: model bundle: ...`` holding ``message``."""
    assert code == EXIT_BUNDLE, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: model bundle: ")
    assert message in lines[0]
