"""Read only regular files: a FIFO, socket or device named ``x.jpg`` must never block a reader.

``open()`` on a FIFO blocks until a writer appears, and reading a character device (``/dev/zero``)
never ends. ``not_regular_reason`` says why a path cannot be read as an image file (without
opening it); ``read_regular_file`` opens without blocking, checks the opened file itself (no
race with a swap after the check) and reads at most ``max_bytes``.

``unwritable_reason`` is the other direction: why a file or folder cannot be made at a path,
asked before the work that would fill it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dermsight.io.errors import ImageDecodeError
from dermsight.io.sizes import size_text, too_large_text

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a special file"


def not_regular_reason(path: str | os.PathLike[str]) -> str | None:
    """None for a regular file (or a link to one), else a short reason (no file is opened)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return f"{p.name} is a broken link" if p.is_symlink() else f"file not found: {p}"
    except OSError as exc:
        return f"cannot read {p.name}: {exc.strerror or exc}"
    if stat.S_ISREG(mode):
        return None
    return f"{p.name} is {_kind(mode)}, not a regular file"


#: ``unwritable_reason``'s answers when ``path`` itself is of the other kind.
IS_A_FOLDER = "it is a folder"
IS_A_FILE = "it is a file, not a folder"


#: the phrase of a ``unwritable_reason`` answer for a link that leads nowhere
BROKEN_LINK = "is a broken link"


def _broken_link(path: Path, name: str) -> str | None:
    """``"<name> is a broken link (to <target>)"`` when ``path`` is a link that leads nowhere
    (a missing target or a loop of links), else None."""
    if not os.path.islink(path) or os.path.exists(path):
        return None
    try:
        target = os.readlink(path)
    except OSError:
        return f"{name} {BROKEN_LINK}"
    return f"{name} {BROKEN_LINK} (to {target})"


def unwritable_reason(path: str | os.PathLike[str], *, folder: bool) -> str | None:
    """Why a file (``folder=False``) or a folder (``folder=True``) cannot be made or written at
    ``path``, as a short phrase; None when it can. Refused: ``path`` exists as the other kind
    (``IS_A_FOLDER``, ``IS_A_FILE``) or is a link that leads nowhere (``"it is a broken link
    (to <target>)"``: a missing target or a loop); the nearest existing path above it (a
    folder: at or above it) is a file (``"<it> is a file"``), a broken link (``"<it> is a
    broken link (to <target>)"``) or a folder this user may not create entries in (``"<it> is
    not writable"``: write and search permission, which root always has). A link to a usable
    place is followed. Nothing is created. (``os.path`` answers False where a folder above may
    not be looked into.)"""
    p = Path(path)
    if (why := _broken_link(p, "it")) is not None:
        return why
    if os.path.exists(p) and os.path.isdir(p) != folder:
        return IS_A_FILE if folder else IS_A_FOLDER
    above = p.absolute().parents
    base = next(a for a in ((p, *above) if folder else above) if os.path.lexists(a))
    if (why := _broken_link(base, str(base))) is not None:
        return why
    if not os.path.isdir(base):
        return f"{base} is a file"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{base} is not writable"
    return None


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``ImageDecodeError`` otherwise."""
    p = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError as exc:
        reason = f"{p.name} is a broken link" if p.is_symlink() else f"file not found: {p}"
        raise ImageDecodeError(reason) from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError(f"{p} is a folder, not an image") from exc
    except OSError as exc:  # e.g. ENXIO: a socket, or a FIFO in some modes
        reason = not_regular_reason(p) or f"cannot read {p}: {exc.strerror or exc}"
        raise ImageDecodeError(reason) from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageDecodeError(f"{p} is a folder, not an image")
        if not stat.S_ISREG(st.st_mode):
            raise ImageDecodeError(f"{p.name} is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > max_bytes:
            raise ImageDecodeError(too_large_text(st.st_size, max_bytes))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {p}: {exc.strerror or exc}") from exc
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:  # it grew while it was read
        raise ImageDecodeError(f"file too large: more than the limit of {size_text(max_bytes)}")
    return data
