"""The clinic storage's imports are installed by the install that is documented for it.

``dermsight serve --database`` and ``dermsight clinic ...`` run on the core dependencies plus the
``clinic`` extra (``pip install '.[clinic]'``), or on requirements/core.txt (``make serve``). A
third-party package imported by ``dermsight.clinic`` or ``dermsight.web.clinic`` that neither
names (fsspec, imported by the image store for a local folder too) stopped clinic storage at
start with "needs the optional package 'fsspec'"."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "dermsight"
#: the code that runs with clinic storage on
CLINIC_CODE = (SRC / "clinic", SRC / "web" / "clinic")
#: imports of clinic code that only a remote image store needs, with the extra that documents
#: them (none today: ``imagestore`` imports fsspec for every store, and fsspec itself imports
#: s3fs for an ``s3://`` one)
REMOTE_ONLY: dict[str, str] = {"s3fs": "s3"}


def _pyproject() -> dict:
    with (REPO / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:`` (never run)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def imported_modules(folders: tuple[Path, ...]) -> dict[str, list[str]]:
    """Top-level third-party modules imported anywhere in the ``.py`` files under ``folders``
    (module level or inside functions), each with where (``file:line``)."""
    found: dict[str, list[str]] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            skip = _type_checking_only(tree)
            for node in ast.walk(tree):
                if id(node) in skip:
                    continue
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top in sys.stdlib_module_names or top in ("dermsight", "__future__"):
                        continue
                    found.setdefault(top, []).append(
                        f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def _unconditional(dist: str) -> set[str]:
    """The distributions ``dist`` (installed) always requires (no extra, marker true here)."""
    try:
        reqs = requires(dist) or []
    except PackageNotFoundError:
        return set()
    out: set[str] = set()
    env = {**default_environment(), "extra": ""}
    for line in reqs:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            out.add(canonicalize_name(req.name))
    return out


def installed_with(named: set[str]) -> set[str]:
    """``named`` and, transitively, what each of them always requires: the distributions an
    install of ``named`` brings (starlette with fastapi, pydantic-core with pydantic)."""
    seen: set[str] = set()
    todo = list(named)
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        todo.extend(_unconditional(dist))
    return seen


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _core_txt() -> set[str]:
    names = set()
    for line in (REPO / "requirements" / "core.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonicalize_name(re.split(r"[\s=<>!~\[;]", line, maxsplit=1)[0]))
    return names


def clinic_distributions() -> dict[str, list[str]]:
    """Each distribution the clinic code imports (except ``REMOTE_ONLY``), with where."""
    to_dist = packages_distributions()
    out: dict[str, list[str]] = {}
    for module, where in imported_modules(CLINIC_CODE).items():
        if module in REMOTE_ONLY:
            continue
        dists = to_dist.get(module)
        assert dists, f"{module} ({where[0]}) is not installed here: cannot check it"
        for dist in dists:
            out.setdefault(canonicalize_name(dist), []).extend(where)
    return out


def test_the_scan_finds_the_clinic_imports() -> None:
    """The scan itself: module-level imports and imports inside functions are both seen."""
    found = clinic_distributions()
    for dist in ("sqlalchemy", "alembic", "argon2-cffi", "zxcvbn", "fsspec"):
        assert dist in found, dist


def test_remote_only_imports_are_in_their_extra() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    for module, extra in REMOTE_ONLY.items():
        assert canonicalize_name(module) in _names(extras[extra])


def test_clinic_imports_are_in_the_clinic_extra_or_the_core_dependencies() -> None:
    project = _pyproject()["project"]
    declared = _names(project["dependencies"]) | _names(
        project["optional-dependencies"]["clinic"])
    brought = installed_with(declared)
    missing = {d: where[:3] for d, where in clinic_distributions().items() if d not in brought}
    assert not missing, ("imported by clinic code, but neither a core dependency nor in the "
                         f"'clinic' extra of pyproject.toml (nor required by one): {missing}")


def test_clinic_imports_are_pinned_in_requirements_core() -> None:
    pinned = _core_txt()
    brought = installed_with(pinned)
    missing = {d: where[:3] for d, where in clinic_distributions().items() if d not in brought}
    assert not missing, ("imported by clinic code, but not pinned in requirements/core.txt "
                         f"(nor required by a package pinned there): {missing}")


def test_requirements_core_pins_what_all_pins() -> None:
    """core.txt's pins are all.txt's versions (the same tested set)."""
    def pins(name: str) -> dict[str, str]:
        out = {}
        for line in (REPO / "requirements" / name).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                dist, _, version = line.partition("==")
                out[canonicalize_name(dist.split("[")[0].strip())] = version.split(";")[0].strip()
        return out

    core, everything = pins("core.txt"), pins("all.txt")
    differ = {d: (v, everything[d]) for d, v in core.items()
              if d in everything and everything[d] != v}
    if not everything:
        pytest.skip("requirements/all.txt pins nothing")
    assert not differ, f"core.txt pins versions other than all.txt's: {differ}"
