"""The fingerprint of the front-end sources the committed UI build was made from.

``npm run build`` (``make frontend``) writes it to ``frontend/build-source.sha256`` after Vite
has written ``src/dermsight/web/static``; ``tests/test_ui_build_current.py`` recomputes it, so
the fast tests (``make check``, no npm) notice a change to ``frontend/`` committed without a
rebuild of the UI the package serves. CI's ``make check-frontend`` still rebuilds and compares
the build itself.

The fingerprint covers what the build reads: ``frontend/src`` (not the unit tests:
``*.test.ts``/``*.test.tsx`` and ``src/testing/``), ``index.html``, ``package.json``,
``package-lock.json``, ``vite.config.ts`` and the ``tsconfig`` files; each file by its path
relative to ``frontend/`` and its bytes with LF line ends; in ``frontend/src`` only files git
tracks or would track (``.gitignore`` applies; a new file counts before ``git add``), and no
dotfiles.

    python tools/ui_source_hash.py            # print the fingerprint
    python tools/ui_source_hash.py --write    # write frontend/build-source.sha256 (the build)
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

FRONTEND = Path(__file__).resolve().parents[1] / "frontend"
RECORD = FRONTEND / "build-source.sha256"
TOP_FILES = ("index.html", "package.json", "package-lock.json", "vite.config.ts",
             "tsconfig.json", "tsconfig.app.json", "tsconfig.node.json")


def _listed(folder: Path) -> list[Path] | None:
    """The files under ``folder`` that git tracks or would track (not those ``.gitignore``
    leaves out: ``*.log``, ``node_modules``); None outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard", "--", "."], cwd=folder, check=True,
                             capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [folder / name for name in out.decode().split("\0") if name]


def build_inputs(frontend: Path = FRONTEND) -> list[Path]:
    """The files the UI build is made from, sorted by their path relative to ``frontend``: no
    dotfiles (``.DS_Store``), nothing git ignores, no unit tests."""
    src_dir = frontend / "src"
    listed = _listed(src_dir)
    files = listed if listed is not None else [p for p in src_dir.rglob("*")]
    src = [p for p in files if p.is_file()
           and not any(part.startswith(".") for part in p.relative_to(src_dir).parts)
           and not p.name.endswith((".test.ts", ".test.tsx"))
           and "testing" not in p.relative_to(src_dir).parts[:1]]
    top = [frontend / name for name in TOP_FILES if (frontend / name).is_file()]
    return sorted(src + top, key=lambda p: p.relative_to(frontend).as_posix())


def fingerprint(frontend: Path = FRONTEND) -> str:
    """sha256 over each build input's relative path and bytes (line ends as LF: a checkout with
    CRLF line ends gives the same)."""
    h = hashlib.sha256()
    for p in build_inputs(frontend):
        h.update(p.relative_to(frontend).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes().replace(b"\r\n", b"\n")).digest())
    return h.hexdigest()


def main(argv: list[str]) -> int:
    value = fingerprint()
    if argv == ["--write"]:
        RECORD.write_text(value + "\n", encoding="utf-8")
    elif argv:
        print("usage: ui_source_hash.py [--write]", file=sys.stderr)
        return 2
    else:
        print(value)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
