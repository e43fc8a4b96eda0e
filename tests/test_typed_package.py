"""The package is typed for its users (PEP 561 ``py.typed``): a user's script that calls the
facade type-checks under ``mypy --strict`` from outside the checkout, and a wrong call is caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

USER_SCRIPT = """\
from dermsight import Dermsight, Prediction

model = Dermsight.load()
result: Prediction = model.predict("lesion.jpg", age=55, sex="female", site="posterior torso")
risk: str = result.risk
share: float = result.malignant_probability
"""


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "user.py").write_text(source)
    # run where the user would: outside the checkout, no MYPYPATH, the installed package only
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
        env={"PATH": "/usr/bin:/bin"})


def test_a_users_script_type_checks_against_the_installed_package(tmp_path: Path) -> None:
    done = _mypy(tmp_path, USER_SCRIPT)
    assert "py.typed" not in done.stdout, done.stdout  # "missing library stubs or py.typed"
    assert done.returncode == 0, done.stdout + done.stderr
    wrong = _mypy(tmp_path, USER_SCRIPT + "n: int = model.predict('x.jpg').risk\n")
    assert wrong.returncode == 1
    assert 'Incompatible types in assignment (expression has type "str"' in wrong.stdout


def test_the_marker_ships_in_the_package() -> None:
    import dermsight

    assert (Path(dermsight.__file__).parent / "py.typed").is_file()
