"""``dermsight predict`` stopped by Ctrl-C part way: the images scored before it are still
printed (the JSON list a full run prints, or the human lines and the disclaimer), stderr says the
output is partial and which image was next, and the exit code is 130. Real images, the real CLI;
the Ctrl-C is a KeyboardInterrupt raised by the facade's per-image ``predict`` on a given call
(as the signal handler raises it in the middle of scoring), and once a real SIGINT to a
``dermsight predict`` process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cli_support import run
from dermsight.predict import Dermsight


@pytest.fixture(scope="module")
def images(data_dir: Path, sample_ids: list[str]) -> list[Path]:
    return [data_dir / "images" / f"{i}.jpg" for i in sample_ids[:3]]


def _ctrl_c_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> list[Path]:
    """Make the ``n``-th per-image ``Dermsight.predict`` call (1-based) raise
    KeyboardInterrupt; returns the images the calls were given."""
    real = Dermsight.predict
    seen: list[Path] = []

    def predict(self: Dermsight, image: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(Path(image))
        if len(seen) == n:
            raise KeyboardInterrupt
        return real(self, image, *args, **kwargs)

    monkeypatch.setattr(Dermsight, "predict", predict)
    return seen


def test_json_interrupted_after_the_first_image_prints_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        images: list[Path]) -> None:
    code, full, err = run(capsys, "predict", *map(str, images[:1]), "--json", "--age", "55")
    assert code == 0, err
    complete = json.loads(full)

    seen = _ctrl_c_on_call(monkeypatch, 2)
    code, out, err = run(capsys, "predict", *map(str, images), "--json", "--age", "55")
    assert code == 130, err
    assert seen == images[:2]  # stopped at the second: the third was never started
    results = json.loads(out)  # still one parseable JSON list, as a full run prints
    assert len(results) == 1  # the first image's full result, nothing for the others
    assert ({k: v for k, v in results[0].items() if k != "timing_ms"}
            == {k: v for k, v in complete[0].items() if k != "timing_ms"})
    assert results[0]["file"] == str(images[0])
    assert results[0]["risk"] in ("high", "moderate", "low", "cannot_assess")
    lines = err.strip().splitlines()
    assert lines == [f"interrupted: 1 of 3 images done, the output is partial (not done: "
                     f"{images[1]} and 1 more)"]
    assert "Traceback" not in err


def test_json_interrupted_before_any_result_prints_an_empty_list(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        images: list[Path]) -> None:
    _ctrl_c_on_call(monkeypatch, 1)
    code, out, err = run(capsys, "predict", *map(str, images[:2]), "--json")
    assert code == 130, err
    assert json.loads(out) == []
    assert err.strip() == (f"interrupted: 0 of 2 images done, the output is partial (not done: "
                           f"{images[0]} and 1 more)")


def test_json_keeps_error_rows_and_names_the_last_image_not_done(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        images: list[Path], tmp_path: Path) -> None:
    """An unreadable file before the Ctrl-C keeps its error row; exit 130 wins over exit 1."""
    text = tmp_path / "notes.txt"
    text.write_text("not a lesion\n")
    _ctrl_c_on_call(monkeypatch, 3)  # calls: images[0], notes.txt (fails to decode), images[1]
    code, out, err = run(capsys, "predict", str(images[0]), str(text), str(images[1]), "--json")
    assert code == 130, err
    results = json.loads(out)
    assert [r["file"] for r in results] == [str(images[0]), str(text)]
    assert "probabilities" in results[0]
    assert results[1] == {"file": str(text), "error": "not an image (looks like a text file)"}
    assert err.strip().splitlines()[-1] == (
        f"interrupted: 2 of 3 images done, the output is partial (not done: {images[1]})")


def test_human_output_interrupted_keeps_the_lines_and_the_disclaimer(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        images: list[Path]) -> None:
    from dermsight.predict import DISCLAIMER

    code, full, err = run(capsys, "predict", str(images[0]))
    assert code == 0, err
    first_lines = full.split(f"\n{DISCLAIMER}")[0]

    _ctrl_c_on_call(monkeypatch, 2)
    code, out, err = run(capsys, "predict", *map(str, images))
    assert code == 130, err
    assert out.startswith(first_lines)  # the first image's lines, as a full run prints them
    assert out.rstrip().endswith(DISCLAIMER)  # results were shown: so is the disclaimer
    assert str(images[1]) not in out
    assert str(images[2]) not in out
    assert err.strip() == (f"interrupted: 1 of 3 images done, the output is partial (not done: "
                           f"{images[1]} and 1 more)")


def test_a_real_sigint_prints_the_json_of_the_images_done(images: list[Path],
                                                          tmp_path: Path) -> None:
    """SIGINT to a running ``dermsight predict --json`` of many images: exit 130, stdout one
    JSON list of the images done (an unreadable first file gives the moment the loop started:
    its error line on stderr)."""
    text = tmp_path / "notes.txt"
    text.write_text("not a lesion\n")
    many = [text, *(images * 100)]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from dermsight.cli import main; main()", "predict",
         *map(str, many), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the loop has started
        assert first.startswith(f"error: {text}"), first
        time.sleep(1.0)  # a few images scored
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        stdout, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (stdout[-500:], rest)
    results = json.loads(stdout)
    assert 1 <= len(results) < len(many)
    assert results[0] == {"file": str(text), "error": "not an image (looks like a text file)"}
    assert [r["file"] for r in results] == list(map(str, many[:len(results)]))
    assert all("probabilities" in r for r in results[1:])  # the images scored
    assert "Traceback" not in rest
    assert rest.strip().splitlines()[-1] == (
        f"interrupted: {len(results)} of {len(many)} images done, the output is partial "
        f"(not done: {many[len(results)]} and {len(many) - len(results) - 1} more)")
