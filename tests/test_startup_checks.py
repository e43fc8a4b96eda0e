"""The checks run before long work starts: ``train.data.check_images`` (every image of the splits
training does not load, with the fast ``verify_image``) and ``io.files.unwritable_reason``
(can a file or folder be made at an output path), with the callers that turn its answer into
their own errors: ``require_writable_file`` (CLI ``--out`` files), ``check_run_folder``
(``dermsight train --out``) and the overlay folder of batch jobs.

The permission cases need a user that file modes apply to: root passes every ``os.access``
check, so under root they run in a forked child that has become ``nobody`` (on folders owned by
``nobody``); under any other user they run as that user."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("torch")

import dermsight.train.data as train_data
from dermsight.batch.overlays import HeatmapWriter
from dermsight.batch.store import OutputError
from dermsight.cli.errors import UserError
from dermsight.cli.labelled_data import require_writable_file
from dermsight.io.decode import DecodeLimits, decode_image, verify_image
from dermsight.io.errors import ImageDecodeError
from dermsight.io.files import IS_A_FILE, IS_A_FOLDER, unwritable_reason
from dermsight.train.config import ConfigError, load_config
from dermsight.train.pipeline import check_run_folder

NOBODY = 65534
TAIL = " (replace them, or remove their rows from the CSV)"


# --- check_images --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_images(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "images").glob("*.jpg"))[:40]


def _broken_scan(jpeg: bytes) -> bytes:
    """``jpeg`` with bytes in the middle of its compressed data overwritten by a quantisation
    table marker (a scan cannot hold one: libjpeg gives up), as disk or transfer damage does."""
    sos = jpeg.index(b"\xff\xda")
    mid = (sos + len(jpeg)) // 2
    return jpeg[:mid] + b"\xff\xdb\x00\x43" + jpeg[mid + 4:]


def _png_of(path: Path) -> bytes:
    buf = io.BytesIO()
    with Image.open(path) as img:
        img.convert("RGB").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def broken(real_images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real images made unreadable in the ways a copied data set goes wrong, by name."""
    d = tmp_path_factory.mktemp("broken")
    jpeg = real_images[0].read_bytes()
    png = _png_of(real_images[1])
    contents = {
        "truncated.jpg": jpeg[: int(len(jpeg) * 0.6)],
        "corrupt-scan.jpg": _broken_scan(real_images[2].read_bytes()),
        "empty.jpg": b"",
        "truncated.png": png[: int(len(png) * 0.6)],
        "text.jpg": b"image_id,diagnosis\nISIC_0000000,nevus\n",
    }
    files = {name: d / name for name in contents}
    for name, data in contents.items():
        files[name].write_bytes(data)
    files["missing.jpg"] = d / "missing.jpg"  # never written
    return files


@pytest.fixture
def no_full_decode(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``check_images`` must not decode these (small, baseline) images in full: ``decode_image``
    fails the test; each image ``verify_image`` checks adds its path."""
    from dermsight.io.decode import verify_image as verify

    seen: list[str] = []

    def counted(source: str, limits: DecodeLimits | None = None) -> tuple[int, int]:
        seen.append(str(source))
        return verify(source, limits)

    def forbidden(path: str) -> object:
        raise AssertionError(f"check_images decoded {path} in full")

    monkeypatch.setattr(train_data, "decode_image", forbidden)
    monkeypatch.setattr(train_data, "verify_image", counted, raising=False)
    return seen


def _decode_reason(path: Path) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(path)
    return info.value.reason


@pytest.mark.parametrize("name", ["truncated.jpg", "corrupt-scan.jpg", "empty.jpg",
                                  "truncated.png", "text.jpg", "missing.jpg"])
def test_check_images_refuses_what_decode_image_refuses_without_decoding(
        broken: dict[str, Path], real_images: list[Path], no_full_decode: list[str],
        name: str) -> None:
    bad = broken[name]
    reason = _decode_reason(bad)  # the refusal of a full decode (and of training's load_images)
    paths = [str(real_images[3]), str(bad), str(real_images[4])]
    with pytest.raises(ConfigError) as info:
        train_data.check_images(paths)
    assert str(info.value) == f"1 of 3 images cannot be read: {bad}: {reason}{TAIL}"


def test_check_images_counts_every_refusal_and_names_three(
        broken: dict[str, Path], real_images: list[Path], no_full_decode: list[str]) -> None:
    bad = [str(p) for p in broken.values()]
    with pytest.raises(ConfigError) as info:
        train_data.check_images([str(real_images[5]), *bad, str(real_images[6])])
    named = "; ".join(f"{p}: {_decode_reason(Path(p))}" for p in bad[:3])
    assert str(info.value) == f"6 of 8 images cannot be read: {named} ...{TAIL}"


def test_check_images_passes_good_images_without_decoding_them(
        real_images: list[Path], no_full_decode: list[str]) -> None:
    paths = [str(p) for p in real_images]
    assert train_data.check_images(paths) is None
    assert sorted(no_full_decode) == sorted(paths)


def test_check_images_refuses_a_jpeg_too_large_to_decode_though_its_small_decode_fits(
        real_images: list[Path], tmp_path: Path) -> None:
    """A 21 MP progressive 4:4:4 JPEG: ``decode_image`` refuses the memory its decode needs
    (over 128 MB); ``verify_image``'s 1/8-scale decode needs less and would let it through,
    to be refused after training (finalize decodes the test split in full)."""
    big = tmp_path / "big.jpg"
    with Image.open(real_images[7]) as img:
        img.convert("RGB").resize((5000, 4200)).save(big, "JPEG", quality=85,
                                                       progressive=True, subsampling=0)
    reason = _decode_reason(big)
    assert reason.startswith("image too large: this 5000x4200 JPEG needs about")
    with pytest.raises(ImageDecodeError) as verified:  # so does the faster check itself
        verify_image(big)
    assert verified.value.reason == reason
    with pytest.raises(ConfigError) as info:
        train_data.check_images([str(big)])
    assert str(info.value) == f"1 of 1 images cannot be read: {big}: {reason}{TAIL}"


# --- unwritable_reason and its callers -----------------------------------------------------------


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    return f


def test_a_file_or_folder_can_be_made_where_a_writable_folder_is(tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_text("x")
    for folder in (False, True):
        assert unwritable_reason(tmp_path / "new" / "deeper" / "out", folder=folder) is None
    assert unwritable_reason(tmp_path / "old.csv", folder=False) is None  # replaced
    assert unwritable_reason(tmp_path, folder=True) is None


def test_a_path_of_the_other_kind_or_under_a_file_is_refused(tmp_path: Path,
                                                             a_file: Path) -> None:
    assert unwritable_reason(tmp_path, folder=False) == IS_A_FOLDER
    assert unwritable_reason(a_file, folder=True) == IS_A_FILE
    for folder in (False, True):
        assert unwritable_reason(a_file / "run" / "x", folder=folder) == f"{a_file} is a file"


def _refusal(fn: Callable[[], object]) -> str:
    """``"<type>: <message>"`` of the error ``fn()`` raises."""
    with pytest.raises((UserError, ConfigError, OutputError)) as info:
        fn()
    return f"{type(info.value).__name__}: {info.value}"


def test_callers_keep_their_messages_for_folders_and_files(tmp_path: Path,
                                                           a_file: Path) -> None:
    cfg = load_config(None)
    assert _refusal(lambda: require_writable_file(tmp_path)) == (
        f"UserError: cannot write --out {tmp_path}: it is a folder")
    assert _refusal(lambda: require_writable_file(a_file / "x.csv", "--soft")) == (
        f"UserError: cannot write --soft {a_file / 'x.csv'}: {a_file} is a file")
    assert _refusal(lambda: check_run_folder(cfg, a_file, resume=False, stage="all")) == (
        f"ConfigError: --out {a_file} is a file, not a run folder")
    assert _refusal(lambda: check_run_folder(cfg, a_file / "run", resume=False, stage="all")) \
        == f"ConfigError: cannot make the run folder --out {a_file / 'run'}: {a_file} is a file"
    assert _refusal(lambda: HeatmapWriter(a_file / "heatmaps")) == (
        f"OutputError: --heatmaps {a_file / 'heatmaps'}: cannot write overlays there: "
        f"a file is in the way")
    assert a_file.read_text() == "mine"


@pytest.fixture
def perm_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder whose modes apply to ``as_user`` (owned by ``nobody`` under root)."""
    d = tmp_path if os.geteuid() != 0 else Path(tempfile.mkdtemp(prefix="dermsight-perm-"))
    if d != tmp_path:
        os.chown(d, NOBODY, NOBODY)
        d.chmod(0o755)
    try:
        yield d
    finally:
        for sub in d.iterdir():  # the modes set by _owned, so that the folders can be removed
            sub.chmod(0o755)
        if d != tmp_path:
            shutil.rmtree(d)


def _owned(path: Path, mode: int) -> Path:
    """``path`` made (a folder) for ``as_user``, with ``mode``."""
    path.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    path.chmod(mode)
    return path


def as_user(fn: Callable[[], object]) -> object:
    """``fn()`` as a user that file modes apply to: this one, or (under root) ``nobody`` in a
    forked child. An exception comes back as ``"<type>: <message>"``; the answer through JSON."""
    def answer() -> object:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - any error is the answer (the child's too)
            return f"{type(exc).__name__}: {exc}"

    if os.geteuid() != 0:
        return answer()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, json.dumps(answer()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    assert data, "the unprivileged child gave no answer"
    return json.loads(data)


@pytest.mark.parametrize("mode", [0o555, 0o600, 0o000], ids=["read-only", "no-search",
                                                             "locked"])
def test_a_folder_this_user_may_not_write_is_refused(perm_dir: Path, mode: int) -> None:
    """Read-only; write without search permission (``os.access(W_OK)`` alone says yes, yet no
    file can be made in it); locked (nothing below it can even be looked at)."""
    ro = _owned(perm_dir / "ro", mode)
    why = f"{ro} is not writable"
    assert as_user(lambda: unwritable_reason(ro / "out.csv", folder=False)) == why
    assert as_user(lambda: unwritable_reason(ro / "run", folder=True)) == why
    assert as_user(lambda: unwritable_reason(ro / "sub" / "run" / "x.csv", folder=False)) == why


def test_require_writable_file_refuses_a_folder_without_search_permission(
        perm_dir: Path) -> None:
    ro = _owned(perm_dir / "ro", 0o600)
    out = ro / "sub" / "out.csv"
    assert as_user(lambda: require_writable_file(out)) == (
        f"UserError: cannot write --out {out}: {ro} is not writable")


@pytest.mark.parametrize(("mode", "below"), [(0o000, "runs/r1"), (0o555, ""), (0o600, "")],
                         ids=["locked-above", "read-only", "no-search"])
def test_check_run_folder_refuses_folders_it_cannot_write_with_one_line(
        perm_dir: Path, mode: int, below: str) -> None:
    """A folder above that may not be looked into; a run folder without write permission, or
    without search permission (which ``os.access(W_OK)`` alone lets pass)."""
    folder = _owned(perm_dir / "runs", mode)
    out = folder / below if below else folder
    cfg = load_config(None)
    assert as_user(lambda: check_run_folder(cfg, out, resume=False, stage="all")) == (
        f"ConfigError: cannot write the run folder --out {out}: {folder} is not writable")


def test_overlay_folder_that_may_not_be_written_is_refused(perm_dir: Path) -> None:
    ro = _owned(perm_dir / "heatmaps", 0o555)

    def make() -> None:
        HeatmapWriter(ro)

    assert as_user(make) == (
        f"OutputError: --heatmaps {ro}: cannot write overlays there: not writable")
