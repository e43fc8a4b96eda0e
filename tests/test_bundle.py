"""Bundle loading/validation and the facade on the shipped default model (no torch needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

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
from dermsight.malignancy import malignant_probability


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load()


def test_default_bundle_is_valid(model: Dermsight) -> None:
    card = model.card
    # taxonomy codes in taxonomy order: exactly the classes the training split holds (the
    # eight-class model had no UNK training data, the nine-class one has ISIC 2020's)
    trained = card.extra["data"]["by_split"]["train"]["by_diagnosis"]
    assert card.classes == [c for c in taxonomy.CLASS_CODES if trained.get(c, 0) > 0]
    assert set(card.malignant) == {"MEL", "BCC", "SCC"}  # UNK is never summed as malignant
    assert card.temperature > 0
    assert 0 <= card.thresholds.monitor <= card.thresholds.refer <= 1
    assert card.input_spec.size >= 64


def test_predict_real_image(model: Dermsight, sample_image: Path) -> None:
    p = model.predict(sample_image, age=55, sex="female", site="posterior torso")
    assert set(p.probabilities) == set(model.classes)
    assert abs(sum(p.probabilities.values()) - 1) < 1e-5
    row = np.array([[p.probabilities[c] for c in model.classes]])
    # the card's decision rule picks the suggestion (plain arg-max unless the card says otherwise)
    assert p.prediction == model.classes[int(model.card.decision.choose(row, model.classes)[0])]
    assert model.card.malignant == ["MEL", "BCC", "SCC"]  # written in the shipped card
    mal = malignant_probability(row, model.classes, model.card.malignant,
                                model.card.malignant_excluded)
    assert mal is not None
    assert p.malignant_probability == pytest.approx(float(mal[0]), abs=1e-6)
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
    # numpy's own BLAS (the gate's product runs on it); another library's BLAS that a test loaded
    # later (scipy's) is not the gate's business
    # (a wheel's numpy.libs/...; a distribution's numpy links a system BLAS: then all of them)
    ours = "numpy" if any("numpy" in lib["filepath"] for lib in blas.info()) else ""
    assert blas.info(), "numpy should come with a BLAS library"

    def threads() -> list[int]:
        return [lib["num_threads"] for lib in blas.info() if ours in lib["filepath"]]

    with blas.limit(limits=2):  # what a 2-core machine gives numpy by default
        before = threads()
        with one_blas_thread():
            assert threads() == [1] * len(before)
        model.predict(sample_image)
        assert threads() == before


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


def test_arrays_other_than_uint8_are_never_silently_rescaled(model: Dermsight,
                                                             sample_image: Path) -> None:
    """A float image scaled to 0-1 (scikit-image's) became black and 16-bit pixels wrapped:
    refused with what to do; an integer or float array of pixels 0-255 is the same image."""
    from PIL import Image

    rgb = np.asarray(Image.open(sample_image).convert("RGB"))
    plain = model.predict(rgb, heatmap=False)
    for same in (rgb.astype(np.int64), rgb.astype(np.float32)):
        assert model.predict(same, heatmap=False).probabilities == plain.probabilities
    with pytest.raises(ValueError, match="scaled to 0-1"):
        model.predict(rgb / 255.0)
    with pytest.raises(ValueError, match="0-255"):
        model.predict(rgb.astype(np.uint16) * 256)
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((64, 64, 3), np.nan))
    with pytest.raises(ValueError, match="dtype"):
        model.predict(rgb.astype(bool))


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
                      gate_arrays={**src.gate_arrays,
                                   "bank": src.gate_arrays["bank"].astype(np.float16)},
                      report_html="<p>r</p>")
    card = json.loads((out / "card.json").read_text())
    assert set(card["files"]) == {"model.onnx", "gate.npz", "report.html"}
    assert card["onnx"]["sha256"] == card["files"]["model.onnx"]
    assert load_bundle(out).gate_arrays["bank"].dtype == np.float32


@pytest.mark.parametrize(("age", "expected", "note"), [
    ("12", 12.0, None), ("045Y", 45.0, "normalised"), ("١٢", 12.0, "normalised"),
    ("1e1", 10.0, "normalised"), ("NaN", None, "ignored"),
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


# --- the typed card (dermsight.cardschema) --------------------------------------------------------


def _edit_card(b: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    card = json.loads((b / "card.json").read_text())
    edit(card)
    (b / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize(("edit", "named"), [
    (lambda c: c.update(temperature="hot"), r"field 'temperature': .*valid number.*'hot'"),
    (lambda c: c.pop("thresholds"), r"field 'thresholds': Field required"),
    (lambda c: c["thresholds"].update(monitor=0.9), r"'thresholds': monitor \(0.9\) must not"),
    (lambda c: c["input_spec"].update(interpolation="cubic"), r"'input_spec.interpolation'"),
    (lambda c: c["input_spec"].pop("size"), r"'input_spec.size': Field required"),
    (lambda c: c["meta_spec"].update(sites="torso"), r"'meta_spec.sites': .*valid list"),
    (lambda c: c["gate"]["quality"].update(min_side="big"), r"'gate.quality.min_side'"),
    (lambda c: c["gate"].update(v2_threshold=[1]), r"'gate.v2_threshold'"),
    # a known class the card does not list (SCC left out of its classes)
    (lambda c: c.update(classes=[k for k in c["classes"] if k != "SCC"],
                        malignant=["MEL", "BCC", "SCC"]), r"'malignant': \['SCC'\] are not among"),
    (lambda c: c.update(classes=["MEL", "XYZ"]), r"'classes': unknown class codes \['XYZ'\]"),
    (lambda c: c.update(decision={"rule": "coin_flip"}), r"'decision.rule'"),
    (lambda c: c.update(malignant_excluded=["XYZ"]), r"'malignant_excluded': \['XYZ'\] are not"),
    (lambda c: c.update(malignant_excluded=["BCC"]), r"'malignant_excluded': \['BCC'\] are malig"),
    (lambda c: c.update(malignant_excluded=[k for k in c["classes"]
                                            if k not in ("MEL", "BCC", "SCC")]),
     r"'malignant_excluded' leaves no benign class"),
])
def test_a_card_field_that_is_missing_or_mistyped_is_named(
        tmp_path: Path, edit: Callable[[dict[str, Any]], object], named: str) -> None:
    b = _copy_bundle(tmp_path)
    _edit_card(b, edit)
    with pytest.raises(BundleError, match=named) as info:
        load_bundle(b)
    assert str(info.value).startswith("card.json does not match the card schema: ")
    assert "\n" not in str(info.value)


def test_report_keys_it_does_not_know_load_and_are_written_back(tmp_path: Path) -> None:
    b = _copy_bundle(tmp_path)
    reference = {"n_images": 3, "by_class": {"MEL": 1}}
    _edit_card(b, lambda c: c.update(reference=reference))
    src = load_bundle(b)
    card = src.card
    assert card.extra["reference"] == reference
    out = save_bundle(tmp_path / "saved", b / "model.onnx", card, gate_arrays=src.gate_arrays)
    written = json.loads((out / "card.json").read_text())
    assert written["reference"] == reference
    assert written["metrics"] == card.extra["metrics"]
    assert load_bundle(out).card.malignant == ["MEL", "BCC", "SCC"]


def test_the_malignant_probability_sums_the_cards_malignant_classes(
        tmp_path: Path, model: Dermsight, sample_image: Path) -> None:
    b = _copy_bundle(tmp_path)
    _edit_card(b, lambda c: c.update(malignant=["MEL"], malignant_excluded=[]))
    only_mel = Dermsight.load(b).predict(sample_image, heatmap=False)
    assert only_mel.malignant_probability == pytest.approx(only_mel.probabilities["MEL"],
                                                           abs=1e-6)
    shipped = model.predict(sample_image, heatmap=False)
    assert shipped.malignant_probability > only_mel.malignant_probability  # BCC, SCC add to it
    # a card written before the field existed: the taxonomy's malignant classes
    _edit_card(b, lambda c: c.pop("malignant"))
    assert load_bundle(b).card.malignant == ["MEL", "BCC", "SCC"]


def test_a_card_can_leave_a_class_out_of_the_malignant_probability(
        tmp_path: Path, model: Dermsight, sample_image: Path) -> None:
    b = _copy_bundle(tmp_path)
    _edit_card(b, lambda c: c.update(malignant_excluded=["NV"]))
    card = load_bundle(b).card
    assert card.malignant_excluded == ["NV"]
    assert json.loads(json.dumps(card.to_dict()))["malignant_excluded"] == ["NV"]
    shared = Dermsight.load(b).predict(sample_image, heatmap=False)
    p = shared.probabilities
    mal = p["MEL"] + p["BCC"] + p["SCC"]
    assert shared.malignant_probability == pytest.approx(mal / (1 - p["NV"]), rel=1e-5)
    _edit_card(b, lambda c: c.update(malignant_excluded=[]))
    plain = Dermsight.load(b).predict(sample_image, heatmap=False)
    assert plain.malignant_probability == pytest.approx(mal, abs=1e-6)
    assert plain.probabilities == p  # the field changes the malignant probability only


def test_save_bundle_refuses_a_card_the_schema_rejects(tmp_path: Path) -> None:
    src = load_bundle()
    bad = replace(src.card, temperature=0.0)
    with pytest.raises(BundleError, match=r"field 'temperature': .*greater than 0"):
        save_bundle(tmp_path / "b", src.onnx_path, bad)
    assert not (tmp_path / "b" / "card.json").exists()


def test_the_schemas_vocabularies_are_the_runtimes() -> None:
    from dermsight import cardschema, decision, gate, preprocess

    assert set(get_args(cardschema.Interpolation)) == set(preprocess._RESAMPLE)
    assert set(get_args(cardschema.ColorConstancy)) == set(preprocess.COLOR_CONSTANCY)
    assert set(get_args(cardschema.RuleName)) == {decision.ARGMAX, decision.LOGIT_ADJUSTED}
    assert set(cardschema.QualityCard.model_fields) == set(gate.DEFAULT_GATE)


def test_the_exported_schema_accepts_the_shipped_card_and_rejects_a_broken_one() -> None:
    from jsonschema import Draft202012Validator

    from dermsight.cardschema import card_json_schema

    validator = Draft202012Validator(card_json_schema())
    card = json.loads((default_bundle_path() / "card.json").read_text())
    assert list(validator.iter_errors(card)) == []
    card["thresholds"]["refer"] = "high"
    del card["input_spec"]
    bad = {".".join(map(str, e.absolute_path)) or e.message for e in validator.iter_errors(card)}
    assert "thresholds.refer" in bad
    assert any("input_spec" in m for m in bad)


def test_the_front_ends_generated_files_are_current() -> None:
    """frontend/src/generated/{card.schema.json,taxonomy.ts} are what the package says now
    (the front end's npm test checks card.ts against card.schema.json)."""
    tool = Path(__file__).resolve().parent.parent / "tools" / "gen_frontend_types.py"
    r = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
