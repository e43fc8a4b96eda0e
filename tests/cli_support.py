"""Running the dermsight CLI in-process from tests, as a user's shell would."""

from __future__ import annotations

import pytest

from dermsight.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``dermsight ARGS``: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err
