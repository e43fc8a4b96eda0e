"""Bundle loading/validation and the facade on the shipped default model (no torch needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dermsight import Dermsight, taxonomy
from dermsight.bundle import (
    BundleError,
    default_bundle_path,
    load_bundle,
    save_bundle,
    sha256_file,
    write_manifest,
)
from dermsight.io.errors import ImageDecodeError


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load()


def test_default_bundle_is_valid(model: Dermsight) -> None:
    card = model.card
    assert card.classes == ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    assert "UNK" not in card.classes  # no UNK training data
    assert card.temperature > 0
    assert 0 <= card.thresholds.monitor <= card.thresholds.refer <= 1
    assert card.input_spec.size >= 64


def test_predict_real_image(model: Dermsight, sample_image: Path) -> None:
    p = model.predict(sample_image, age=55, sex="female", site="posterior torso")
    assert set(p.probabilities) == set(model.classes)
    assert abs(sum(p.probabilities.values()) - 1) < 1e-5
    assert p.prediction == max(p.probabilities, key=p.probabilities.__getitem__)
    mal = sum(v for k, v in p.probabilities.items() if k in taxonomy.MALIGNANT)
    assert p.malignant_probability == pytest.approx(mal, abs=1e-6)
    assert p.risk in ("high", "moderate", "low", "cannot_assess")
    assert p.cam is not None
    assert p.cam.min() >= 0
    assert p.cam.max() <= 1
    d = p.to_dict()
    assert d["heatmap"]
    assert d["model"]["name"] == model.card.name
    json.dumps(d)
    assert p.overlay_png().startswith(b"\x89PNG")


def test_gate_runs_blas_on_one_thread_and_restores_the_callers_setting(
        model: Dermsight, sample_image: Path) -> None:
    from threadpoolctl import ThreadpoolController

    from dermsight.gate import one_blas_thread

    blas = ThreadpoolController().select(user_api="blas")
    assert blas.info(), "numpy should come with a BLAS library"
    with blas.limit(limits=2):  # what a 2-core machine gives numpy by default
        before = [lib["num_threads"] for lib in blas.info()]
        with one_blas_thread():
            assert all(lib["num_threads"] == 1 for lib in blas.info())
        model.predict(sample_image)
        assert [lib["num_threads"] for lib in blas.info()] == before


def test_metadata_changes_nothing_structural_and_bytes_equal_path(
    model: Dermsight, sample_image: Path
) -> None:
    a = model.predict(sample_image, heatmap=False)
    b = model.predict(sample_image.read_bytes(), heatmap=False)
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-7)
    assert a.to_dict(heatmap_png=False).get("heatmap") is None


def test_batch_equals_single(model: Dermsight, data_dir: Path, sample_ids: list[str]) -> None:
    paths = [data_dir / "images" / f"{i}.jpg" for i in sample_ids[:4]]
    batch = model.predict_batch(paths)
    for path, pb in zip(paths, batch, strict=True):
        ps = model.predict(path, heatmap=False)
        assert pb.probabilities == pytest.approx(ps.probabilities, abs=1e-5)


def test_tta_runs_and_is_a_distribution(model: Dermsight, sample_image: Path) -> None:
    p = model.predict(sample_image, tta=True)
    assert abs(sum(p.probabilities.values()) - 1) < 1e-5
    assert p.cam is not None
    assert p.cam.shape[0] == p.cam.shape[1]


def test_bad_inputs_raise_clear_errors(model: Dermsight, tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello, this is not a picture")
    with pytest.raises(ImageDecodeError, match="not an image"):
        model.predict(bad)
    with pytest.raises(taxonomy.TaxonomyError, match="outside"):
        model.predict(np.zeros((100, 100, 3), np.uint8), age=400)
    with pytest.raises(taxonomy.TaxonomyError, match="sex"):
        model.predict(np.zeros((100, 100, 3), np.uint8), sex="x")


def test_blank_image_cannot_be_assessed(model: Dermsight) -> None:
    p = model.predict(np.full((256, 256, 3), 200, np.uint8))
    assert p.risk == "cannot_assess"
    assert any(f.code == "blank" for f in p.flags)


def _copy_bundle(tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), dst)
    return dst


def test_tampered_onnx_is_refused(tmp_path: Path) -> None:
    b = _copy_bundle(tmp_path)
    with open(b / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(b)


def test_incompatible_schema_is_refused(tmp_path: Path) -> None:
    b = _copy_bundle(tmp_path)
    card = json.loads((b / "card.json").read_text())
    card["schema_version"] = 99
    (b / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="schema_version"):
        load_bundle(b)


def test_missing_bundle_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"card\.json"):
        load_bundle(tmp_path / "empty")
    b = _copy_bundle(tmp_path)
    (b / "card.json").write_text("{not json")
    with pytest.raises(BundleError, match="cannot read"):
        load_bundle(b)


def test_manifest_covers_every_file_the_bundle_loads(tmp_path: Path) -> None:
    card = json.loads((default_bundle_path() / "card.json").read_text())
    files = card["files"]
    assert {"model.onnx", "gate.npz"} <= set(files)
    assert "card.json" not in files
    for name, digest in files.items():
        assert sha256_file(default_bundle_path() / name) == digest


@pytest.mark.parametrize("name", ["gate.npz", "report.html", "plots/roc.png"])
def test_tampered_gate_report_or_plot_is_refused(tmp_path: Path, name: str) -> None:
    b = _copy_bundle(tmp_path)
    with open(b / name, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"sha256.*changed or corrupted"):
        load_bundle(b)
    assert write_manifest(b)[name] == sha256_file(b / name)  # the one function that re-seals it
    load_bundle(b)


def test_missing_or_unlisted_file_and_missing_manifest_are_refused(tmp_path: Path) -> None:
    b = _copy_bundle(tmp_path)
    (b / "gate.npz").unlink()
    with pytest.raises(BundleError, match=r"gate\.npz is listed in the bundle's manifest"):
        load_bundle(b)
    b2 = _copy_bundle(tmp_path / "2")
    (b2 / "plots" / "extra.png").write_bytes((b2 / "plots" / "roc.png").read_bytes())
    with pytest.raises(BundleError, match=r"extra\.png is not in the bundle's 'files' manifest"):
        load_bundle(b2)
    b3 = _copy_bundle(tmp_path / "3")
    card = json.loads((b3 / "card.json").read_text())
    del card["files"]
    (b3 / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="no 'files' integrity manifest"):
        load_bundle(b3)


def test_cli_refuses_a_tampered_gate_with_exit_code_3(
        tmp_path: Path, sample_image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    b = _copy_bundle(tmp_path)
    with open(b / "gate.npz", "ab") as f:
        f.write(b"\0")
    code = run_guarded(app, ["predict", str(sample_image), "--model", str(b)])
    err = capsys.readouterr().err.strip()
    assert code == 3
    assert err.startswith("error: model bundle:")
    assert "gate.npz" in err
    assert len(err.splitlines()) == 1


def test_save_bundle_writes_a_manifest_that_loads(tmp_path: Path) -> None:
    src = load_bundle()
    out = save_bundle(tmp_path / "b", src.onnx_path, src.card,
                      gate_arrays={"bank": np.eye(4, dtype=np.float16)}, report_html="<p>r</p>")
    card = json.loads((out / "card.json").read_text())
    assert set(card["files"]) == {"model.onnx", "gate.npz", "report.html"}
    assert card["onnx"]["sha256"] == card["files"]["model.onnx"]
    assert load_bundle(out).gate_arrays["bank"].dtype == np.float32


@pytest.mark.parametrize(("age", "expected", "note"), [
    ("12", 12.0, None), ("045Y", 45.0, None), ("١٢", 12.0, "normalised"),
    ("1e1", 10.0, "normalised"), ("12_0", 120.0, "normalised"), ("NaN", None, "ignored"),
    ("", None, None), (None, None, None), (33, 33.0, None),
])
def test_metadata_parse_notes_lenient_values(age: object, expected: float | None,
                                             note: str | None) -> None:
    from dermsight.records import Metadata

    meta = Metadata.parse(age=age)
    assert meta.age == expected
    assert meta.notes == ((("age", note),) if note else ())
    assert meta == Metadata(age=expected)  # notes never change what the metadata is


def test_facade_flags_ignored_metadata(model: Dermsight, sample_image: Path) -> None:
    p = model.predict(sample_image, age="NaN", sex="female", heatmap=False)
    flags = [f for f in p.flags if f.code.startswith("metadata_")]
    assert [(f.code, f.blocking) for f in flags] == [("metadata_ignored", False)]
    assert p.risk != "cannot_assess" or any(f.blocking for f in p.flags)
