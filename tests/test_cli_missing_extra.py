"""A command that needs an optional extra which is not installed (``pip install .`` without
``[clinic]`` or ``[spark]``) says which extra to install, in one line, exit 2 — it printed a
``ModuleNotFoundError`` traceback. The package is hidden from a real ``dermsight`` process
(``sys.modules[name] = None`` makes importing it fail as if it were not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from dermsight.cli.errors import EXIT_USER, OPTIONAL_MODULES, run_guarded


def _dermsight_without(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from dermsight.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


@pytest.mark.parametrize(("module", "args"), [
    ("sqlalchemy", ["clinic", "upgrade", "--database", "clinic.db"]),
    ("sqlalchemy", ["serve", "--database", "clinic.db", "--port", "0"]),
    ("alembic", ["clinic", "upgrade", "--database", "clinic.db"]),
])
def test_clinic_storage_without_the_clinic_extra_says_so(module: str, args: list[str],
                                                         tmp_path: Path) -> None:
    proc = _dermsight_without(module, *args, cwd=tmp_path)
    assert proc.returncode == EXIT_USER, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (f"error: this needs the optional package {module!r}, which is not "
                         "installed: pip install 'dermsight[clinic]'")


def test_spark_without_the_spark_extra_says_so(tmp_path: Path, sample_image: Path) -> None:
    proc = _dermsight_without("pyspark", "batch", str(sample_image), "--out", "out",
                              "--engine", "spark", cwd=tmp_path)
    assert proc.returncode == EXIT_USER, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "pip install 'dermsight[spark]'" in proc.stderr.strip().splitlines()[-1]


def test_every_extra_named_is_one_pyproject_declares() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(OPTIONAL_MODULES.values()) <= set(declared)


def test_a_missing_module_that_is_no_extra_is_a_bug_not_a_user_error() -> None:
    app = typer.Typer()

    @app.command()
    def broken() -> None:
        import dermsight_no_such_module  # type: ignore[import-not-found]  # noqa: F401

    @app.command()
    def other() -> None:  # two commands: typer keeps the command name in argv
        pass

    with pytest.raises(ModuleNotFoundError):
        run_guarded(app, ["broken"])


@pytest.mark.parametrize(("module", "args", "what"), [
    ("timm", ["train", "--out", "run"], "training"),
    ("sklearn", ["train", "--out", "run"], "training"),
    ("skimage", ["gate", "fit", "bundle"], "gate fitting"),
])
def test_long_jobs_check_their_extra_before_they_start(module: str, args: list[str], what: str,
                                                      tmp_path: Path) -> None:
    """Training needs scikit-learn only at its end (finalize, after the epochs): the check comes
    first, with the same advice as a failed import."""
    proc = _dermsight_without(module, *args, cwd=tmp_path)
    assert proc.returncode == EXIT_USER, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {what} needs the optional package {module!r}, which is not installed: "
        "pip install 'dermsight[train]'")
    assert not (tmp_path / "run").exists()
