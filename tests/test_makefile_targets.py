"""The Makefile's targets install what their commands run, and no more (``make -n``: printed,
nothing run): ``lint-py`` works after ``make serve`` (core install, no ruff or mypy), ``train``
and the benchmarks need no Chromium, and ``make test`` (CI) still sets up everything, once."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP_PY = "pip install -q -r requirements/all.txt"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(*args: str) -> list[str]:
    """The commands ``make ARGS`` would run, one per line, as in a new checkout (``-W
    pyproject.toml``: the setup stamp in ``.venv`` is out of date, as it is before the first
    install or after a change to the requirements)."""
    done = subprocess.run(["make", "--no-print-directory", "-n", "-W", "pyproject.toml",
                           "-C", str(REPO), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def first(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def test_lint_py_installs_the_dev_tools_before_running_them() -> None:
    lines = dry_run("lint-py")
    assert first(lines, SETUP_PY) < first(lines, "ruff check") < first(lines, "mypy")


@pytest.mark.parametrize(("target", "needs", "runs"), [
    ("train", ["libtcmalloc-minimal4"], "dermsight train"),
    ("bench-model", ["libtcmalloc-minimal4"], "bench_model.py"),
    ("bench-api", [], "bench_api.py"),
    ("bench-batch", ["openjdk-17-jre-headless"], "bench_batch.py"),
    ("bench-clinic", ["postgresql"], "bench_clinic.py"),
])
def test_train_and_benchmarks_install_only_their_own_system_packages(
        target: str, needs: list[str], runs: str) -> None:
    lines = dry_run(target)
    text = "\n".join(lines)
    assert first(lines, SETUP_PY) < first(lines, runs)
    for package in needs:
        assert package in text
    for package in {"chromium", "libtcmalloc-minimal4", "openjdk-17-jre-headless",
                    "postgresql"} - set(needs):
        assert package not in text, f"make {target} installs {package}"


def test_make_test_still_sets_up_everything_once() -> None:
    lines = dry_run("test")
    text = "\n".join(lines)
    assert sum(SETUP_PY in line for line in lines) == 1
    for package in ("chromium", "libtcmalloc-minimal4", "openjdk-17-jre-headless", "postgresql",
                    "npm ci"):
        assert package in text
    assert first(lines, "ruff check") < first(lines, "bin/pytest")


def test_check_passes_pytest_args_to_the_fast_tests() -> None:
    lines = dry_run("check", "PYTEST_ARGS=tests/test_makefile_targets.py -k lint")
    assert sum(SETUP_PY in line for line in lines) == 1
    pytest_line = lines[first(lines, "bin/pytest")]
    assert pytest_line.rstrip().endswith("tests/test_makefile_targets.py -k lint")
    text = "\n".join(lines)
    assert "apt-get" not in text
    assert "npm" not in text


def test_check_installs_again_only_when_the_requirements_change(tmp_path: Path) -> None:
    """``make check`` installs once, then only after a change to ``requirements/`` or
    ``pyproject.toml`` (its stamp in ``.venv``): it needed the network at every run."""
    import os
    import time

    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    stamp = tmp_path / ".venv" / ".setup-py.stamp"

    def commands() -> str:
        return subprocess.run(["make", "--no-print-directory", "-n", "-C", str(tmp_path),
                               "check"], capture_output=True, text=True, timeout=60,
                              check=True).stdout

    assert SETUP_PY in commands()  # no stamp yet: a new checkout installs
    stamp.touch()
    later = time.time() + 5
    os.utime(stamp, (later, later))
    assert SETUP_PY not in commands()
    os.utime(tmp_path / "requirements" / "all.txt", (later + 5, later + 5))
    assert SETUP_PY in commands()
