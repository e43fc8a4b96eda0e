"""The facade audit's findings, each held here: a result keeps its decoded image only with a
heatmap (memory and pickle size), ``Prediction ==`` compares answers, ``threads`` is bounded
(``Dermsight``, ``serve --threads`` / ``DERMSIGHT_ORT_THREADS``), ``heatmap`` / ``tta`` take
booleans only, and ``dermsight predict`` does not import pandas / pyarrow."""

from __future__ import annotations

import io
import os
import pickle
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_support import run
from dermsight.predict import Dermsight, Prediction


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.fixture(scope="module")
def paths(data_dir: Path, sample_ids: list[str]) -> list[Path]:
    return [data_dir / "images" / f"{i}.jpg" for i in sample_ids[:3]]


@pytest.fixture(scope="module")
def large_jpeg(paths: list[Path]) -> bytes:
    """A real lesion photo scaled to 4000 x 3000, as a camera would give it."""
    buf = io.BytesIO()
    with Image.open(paths[0]) as img:
        img.convert("RGB").resize((4000, 3000)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _bound() -> int:
    return max(64, 4 * (os.cpu_count() or 1))


# -- 1. the decoded image is kept only with a heatmap ----------------------------------------------


def test_results_without_a_heatmap_hold_no_image(model: Dermsight, large_jpeg: bytes) -> None:
    plain = model.predict(large_jpeg, heatmap=False)
    batch = model.predict_batch([large_jpeg, large_jpeg])  # heatmap off by default
    for r in (plain, *batch):
        assert r.assessable
        assert r.image is None
        assert r.cam is None
        # was 2.26 MB each (the 750 x 1000 decoded image); a process pool pickles every result
        assert len(pickle.dumps(r)) < 50_000
        with pytest.raises(ValueError, match=r"no heatmap to overlay: predict with "
                                             r"heatmap=True .* keeps neither the heatmap nor "
                                             r"the image"):
            r.overlay_png()
    drawn = model.predict(large_jpeg)  # heatmap=True: the image is kept for the overlay
    assert drawn.image is not None
    assert drawn.cam is not None
    assert drawn.image.shape[2] == 3
    assert drawn.overlay_png().startswith(b"\x89PNG")
    assert plain == drawn  # the same answer, with or without the heatmap


def test_an_unassessable_result_asked_for_a_heatmap_keeps_its_image(model: Dermsight,
                                                                    paths: list[Path]) -> None:
    """The clinic stores the image of every visit, "cannot assess" ones too (heatmap=True)."""
    with Image.open(paths[0]) as img:
        tiny = np.asarray(img.convert("RGB"))[:20, :20]
    r = model.predict(tiny)
    assert not r.assessable
    assert r.cam is None
    assert r.image is not None
    assert r.image.shape == (20, 20, 3)
    assert model.predict(tiny, heatmap=False).image is None
    with pytest.raises(ValueError, match="could not be assessed"):
        r.overlay_png()


def test_overlay_without_its_image_says_so(model: Dermsight, paths: list[Path]) -> None:
    r = model.predict(paths[0])
    with pytest.raises(ValueError, match=r"no image to overlay the heatmap on: this result does "
                                         r"not hold its input \(image is None\)"):
        replace(r, image=None).overlay_png()


# -- 2. equality over the answer -------------------------------------------------------------------


def test_predictions_compare_by_their_answer(model: Dermsight, paths: list[Path]) -> None:
    path = paths[0]
    by_path = model.predict(path)
    by_bytes = model.predict(path.read_bytes(), heatmap=False)
    with Image.open(path) as img:
        by_pillow = model.predict(img)
        by_array = model.predict(np.asarray(img.convert("RGB")), heatmap=False)
    assert by_path == by_bytes == by_pillow == by_array  # raised ValueError before
    assert not by_path != by_bytes  # noqa: SIM202 - __ne__ must not raise either
    assert [by_path] == [by_bytes]
    first, second = model.predict_batch([path, path.read_bytes()])
    assert first == second  # (compared exactly: a batch's last digits may differ from predict's)
    other = model.predict(paths[1])
    assert by_path != other
    assert by_path != replace(by_path, risk="low" if by_path.risk != "low" else "high")
    assert by_path != replace(by_path, meta=replace(by_path.meta, age=by_path.meta.age or 40))
    assert (by_path == "a string") is False


# -- 3. threads are bounded ------------------------------------------------------------------------


def test_too_many_threads_are_refused_before_loading() -> None:
    too_many = _bound() + 1
    with pytest.raises(ValueError, match=rf"threads={too_many} is more than the {_bound()} "
                                         r"dermsight accepts \(4 per CPU core, at least 64"):
        Dermsight(threads=too_many)
    with pytest.raises(ValueError, match=rf"more than the {_bound()} dermsight accepts"):
        Dermsight.load(threads=10**6)  # was: ONNX Runtime ran the process out of memory


def test_onnx_sessions_refuse_too_many_threads(model: Dermsight) -> None:
    from dermsight.onnxsession import ModelSession, max_threads, threads_refusal

    assert max_threads() == _bound()
    assert threads_refusal(_bound()) is None
    with pytest.raises(ValueError, match=rf"more than the {_bound()} dermsight accepts"):
        ModelSession(model.bundle.onnx_path, threads=_bound() + 1)


@pytest.fixture
def taken_port() -> object:
    """A loopback port something already listens on (the old code refused it, not --threads)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_serve_refuses_too_many_threads(capsys: pytest.CaptureFixture[str], taken_port: int,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DERMSIGHT_ORT_THREADS", raising=False)
    too_many = _bound() + 1
    code, _out, err = run(capsys, "serve", "--threads", str(too_many), "--port", str(taken_port))
    assert code == 2, err
    assert "Traceback" not in err
    assert f"--threads: threads={too_many} is more than the {_bound()} dermsight accepts" in err
    monkeypatch.setenv("DERMSIGHT_ORT_THREADS", str(too_many))
    code, _out, err = run(capsys, "serve", "--port", str(taken_port))
    assert code == 2, err
    assert f"DERMSIGHT_ORT_THREADS: threads={too_many} is more than the {_bound()}" in err


# -- 4. heatmap / tta take booleans ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["heatmap", "tta"])
@pytest.mark.parametrize("value", ["no", "False", 1, None])
def test_switches_take_booleans_only(model: Dermsight, paths: list[Path], name: str,
                                     value: object) -> None:
    with pytest.raises(TypeError, match=rf"^predict: {name} must be True or False, not "):
        model.predict(paths[0], **{name: value})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=rf"^predict_batch: {name} must be True or False"):
        model.predict_batch([paths[0]], **{name: value})  # type: ignore[arg-type]


def test_numpy_booleans_are_accepted(model: Dermsight, paths: list[Path]) -> None:
    r = model.predict(paths[0], heatmap=np.bool_(False), tta=np.bool_(False))  # type: ignore[arg-type]
    assert r.cam is None
    assert r.image is None
    assert isinstance(r, Prediction)


# -- 5. dermsight predict does not import pandas ---------------------------------------------------

_IMPORTS = """
import sys
from dermsight.cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
print("EXIT", code, "pandas" in sys.modules, "pyarrow" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["predict", "{image}"], ["predict", "--json", "{image}"],
                                  ["predict", "--help"], ["serve", "--help"]])
def test_predict_does_not_import_pandas(paths: list[Path], args: list[str]) -> None:
    argv = [a.format(image=paths[0]) for a in args]
    proc = subprocess.run([sys.executable, "-c", _IMPORTS, *argv], capture_output=True,
                          text=True, timeout=120, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "EXIT 0 False False", proc.stderr
