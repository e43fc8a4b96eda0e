"""The facade's answers hold to the API's and the CLI's rules: a "cannot assess" result shows no
numbers as a result (README's example, ``repr``), metadata reads the same in every layer ("unknown",
NaN, "-0", site spellings, a DICOM tag under a form placeholder), and ``dermsight predict``
refuses a repeated option, names its decision rule and says when no heatmap was written."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from cli_support import run
from conftest import REPO
from dermsight import Dermsight, taxonomy
from dermsight.io import dicom
from dermsight.records import Metadata
from dermsight.taxonomy import TaxonomyError
from dermsight.web.settings import MAX_DEFAULT_WORKERS

PREDICT = "/api/v1/predict"
IGNORED = "metadata_ignored"
NORMALISED = "metadata_normalised"


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load()


@pytest.fixture(scope="module")
def lesion(data_dir: Path, sample_ids: list[str]) -> Path:
    return data_dir / "images" / f"{sample_ids[0]}.jpg"


@pytest.fixture(scope="module")
def refused(lesion: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real lesion photos the gate refuses: in black and white, and shrunk to one pixel."""
    root = tmp_path_factory.mktemp("refused")
    with Image.open(lesion) as im:
        im.convert("L").save(root / "grey.jpg", quality=95)
        im.convert("RGB").resize((1, 1)).save(root / "tiny.png")
    return {"grey": root / "grey.jpg", "tiny": root / "tiny.png"}


def _codes(flags: list[Any]) -> list[str]:
    return [f["code"] if isinstance(f, dict) else f.code for f in flags]


# --- 1. a "cannot assess" result shows no numbers as a result ----------------------------------


def _readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use it from Python", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "README's 'Use it from Python' has no python example"
    return found.group(1)


def _run_example(code: str, image: Path) -> str:
    assert '"lesion.jpg"' in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code.replace('"lesion.jpg"', repr(str(image))), {})  # README's own code
    return out.getvalue()


@pytest.mark.parametrize("kind", ["grey", "tiny"])
def test_readme_example_prints_no_diagnosis_for_a_refused_image(
    model: Dermsight, refused: dict[str, Path], kind: str
) -> None:
    pred = model.predict(refused[kind], age=55, sex="female", site="posterior torso", heatmap=False)
    assert not pred.assessable  # the gate refuses it: the premise of the check
    printed = _run_example(_readme_example(), refused[kind])
    assert "cannot_assess" in printed
    assert pred.prediction not in printed.split()  # e.g. "NV" as if it were the suggestion
    assert "{" not in printed  # no probabilities dict
    for flag in pred.flags:
        if flag.blocking:
            assert flag.message in printed  # the reasons instead


def test_readme_example_prints_the_result_of_an_assessable_image(
    model: Dermsight, lesion: Path
) -> None:
    pred = model.predict(lesion, age=55, sex="female", site="posterior torso", heatmap=False)
    assert pred.assessable
    printed = _run_example(_readme_example(), lesion)
    assert printed.split()[:2] == [pred.risk, pred.prediction]


@pytest.mark.parametrize("kind", ["grey", "tiny"])
def test_repr_of_a_refused_result_leaves_the_numbers_out(
    model: Dermsight, refused: dict[str, Path], kind: str
) -> None:
    pred = model.predict(refused[kind], heatmap=False)
    assert not pred.assessable
    shown = repr(pred)
    assert shown == str(pred)  # print(result) shows the same
    assert shown.startswith("Prediction(NOT A RESULT: the image could not be assessed")
    for name in ("probabilities=", "prediction=", "malignant_probability=", "decision_rule="):
        assert name not in shown
    assert "risk='cannot_assess'" in shown
    assert "flags=" in shown
    # still reachable, under the API's name, and to_dict() is unchanged
    d = pred.to_dict()
    assert "probabilities" not in d
    assert set(d["unreliable"]) >= {"note", "probabilities", "prediction", "malignant_probability"}


def test_repr_of_an_assessable_result_keeps_its_fields(model: Dermsight, lesion: Path) -> None:
    pred = model.predict(lesion, heatmap=False)
    assert pred.assessable
    shown = repr(pred)
    assert shown.startswith("Prediction(probabilities={")
    assert f"prediction={pred.prediction!r}" in shown
    assert "NOT A RESULT" not in shown
    assert "cam=" not in shown  # the arrays stay out, as before
    assert "image=" not in shown


# --- 2. "unknown" and NaN: one rule in every layer ---------------------------------------------


def _api(client: httpx.Client, image: Path, **form: str) -> dict[str, Any]:
    r = client.post(
        PREDICT,
        params={"heatmap": "false"},
        data=form,
        files={"image": (image.name, image.read_bytes(), "application/octet-stream")},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _cli(capsys: pytest.CaptureFixture[str], image: Path, *options: str) -> dict[str, Any]:
    code, out, err = run(capsys, "predict", str(image), "--json", "-q", *options)
    assert code == 0, err
    body: dict[str, Any] = json.loads(out)[0]
    return body


def test_unknown_is_not_given_without_a_flag_in_every_layer(
    model: Dermsight, lesion: Path, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    form = {"age": "unknown", "sex": "Unknown", "site": "UNKNOWN"}
    answers = [
        model.predict(lesion, **form, heatmap=False).to_dict(),
        model.predict(lesion, meta=form, heatmap=False).to_dict(),
        _api(client, lesion, **form),
        _cli(capsys, lesion, *(x for k, v in form.items() for x in (f"--{k}", v))),
    ]
    for d in answers:
        assert d["input"] == {"age": None, "sex": None, "site": None}
        assert not {IGNORED, NORMALISED} & set(_codes(d["flags"]))


@pytest.mark.parametrize("nan", [float("nan"), np.float64("nan"), np.float32("nan")])
def test_a_nan_given_to_the_facade_is_not_given_as_in_a_data_row(
    model: Dermsight, lesion: Path, nan: object
) -> None:
    # pandas reads an empty CSV cell as NaN: the facade treats it as the batch path does (not
    # given, no note), while the string "NaN" stays a value that could not be used
    omitted = model.predict(lesion, heatmap=False)
    for name in ("age", "sex", "site"):
        as_text = model.predict(lesion, **{name: "NaN"}, heatmap=False)
        as_nan = [
            model.predict(lesion, **{name: nan}, heatmap=False),
            model.predict(lesion, meta={name: nan}, heatmap=False),
            model.predict_batch([lesion], [{name: nan}])[0],
        ]
        assert IGNORED in _codes(as_text.flags)
        for got in as_nan:
            assert getattr(got.meta, name) is None
            assert IGNORED not in _codes(got.flags)
            assert got.flags == omitted.flags
            assert got.to_dict()["input"] == omitted.to_dict()["input"]


def test_nan_in_a_data_row_stays_an_empty_cell() -> None:
    # batch rows and data files read pandas' NaN as an empty cell, with no note (unchanged)
    assert Metadata.parse(age=float("nan")).notes == ()
    assert Metadata.lenient(age=float("nan"), sex="unknown").notes == ()


def test_api_and_cli_flag_the_string_nan(
    lesion: Path, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    for d in (_api(client, lesion, age="NaN"), _cli(capsys, lesion, "--age", "NaN")):
        assert d["input"]["age"] is None
        assert IGNORED in _codes(d["flags"])


# --- 3. a DICOM tag that fills a field the form gave as a placeholder --------------------------


@pytest.fixture(scope="module")
def dicom_file(lesion: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rgb = np.asarray(Image.open(lesion).convert("RGB"))
    return dicom.write_dicom(
        tmp_path_factory.mktemp("dcm") / "lesion.dcm",
        rgb,
        age=60,
        sex="female",
        site="upper extremity",
    )


def test_a_dicom_tag_under_a_form_placeholder_is_used_without_the_ignored_flag(
    model: Dermsight, dicom_file: Path, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    form = {"age": "NaN", "sex": "null", "site": "none"}
    answers = [
        model.predict(dicom_file, **form, heatmap=False).to_dict(),
        model.predict(dicom_file, age=float("nan"), heatmap=False).to_dict(),
        _api(client, dicom_file, **form),
        _cli(capsys, dicom_file, *(x for k, v in form.items() for x in (f"--{k}", v))),
    ]
    for d in answers:
        assert d["input"] == {"age": 60.0, "sex": "female", "site": "upper extremity"}
        assert IGNORED not in _codes(d["flags"]), d["flags"]


def test_fill_from_keeps_the_note_of_a_field_the_file_left_empty() -> None:
    form = Metadata.parse(age="NaN", sex="null")
    filled = form.fill_from(Metadata(age=60.0))
    assert filled.age == 60.0
    assert filled.notes == (("sex", "ignored"),)


# --- 7. "-0" is 0, without a flag ----------------------------------------------------------------


def test_minus_zero_is_zero_without_a_flag(
    model: Dermsight, lesion: Path, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = [
        model.predict(lesion, age=age, heatmap=False).to_dict() for age in ("-0", "-0.0", -0.0)
    ]
    answers += [_api(client, lesion, age="-0"), _cli(capsys, lesion, "--age", "-0")]
    for d in answers:
        age = d["input"]["age"]
        assert age == 0
        assert math.copysign(1.0, age) == 1.0
        assert '"age": -0.0' not in json.dumps(d)
        assert NORMALISED not in _codes(d["flags"])


# --- 9. the site spellings a DICOM tag may use are accepted from a form too ---------------------


SPELLINGS = [
    ("palms and soles", "palms/soles"),
    ("oral and genital", "oral/genital"),
    ("posterior-torso", "posterior torso"),
    ("head-neck", "head/neck"),
    ("Head / Neck", "head/neck"),
    ("arm", "upper extremity"),
    ("ARM", "upper extremity"),
    ("leg", "lower extremity"),
    ("upper limb", "upper extremity"),
    ("palm", "palms/soles"),
]


@pytest.mark.parametrize(("given", "site"), SPELLINGS)
def test_site_spellings_are_accepted(given: str, site: str) -> None:
    assert taxonomy.normalize_site(given) == site
    # the DICOM reader reads the same words the same way
    assert dicom.dicom_site(given.upper()) == site


@pytest.mark.parametrize("given", ["extremity", "skin", "elbow pit", "torso-ish"])
def test_ambiguous_or_unknown_sites_are_still_refused(given: str) -> None:
    with pytest.raises(TaxonomyError, match="unknown anatomic site"):
        taxonomy.normalize_site(given)


def test_site_spellings_read_the_same_in_every_layer(
    model: Dermsight, lesion: Path, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    for given, site in (
        ("palms and soles", "palms/soles"),
        ("arm", "upper extremity"),
        ("posterior-torso", "posterior torso"),
    ):
        answers = [
            model.predict(lesion, site=given, heatmap=False).to_dict(),
            _api(client, lesion, site=given),
            _cli(capsys, lesion, "--site", given),
        ]
        assert [d["input"]["site"] for d in answers] == [site] * 3
    r = client.post(
        PREDICT,
        data={"site": "extremity"},
        files={"image": ("a.jpg", lesion.read_bytes(), "image/jpeg")},
    )
    assert r.status_code == 422
    assert "unknown anatomic site 'extremity'" in r.json()["detail"]


# --- 4, 5, 6, 8: the CLI -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "values"),
    [("--age", ("50", "60")), ("--sex", ("male", "female")), ("--site", ("back", "back"))],
)
def test_cli_refuses_a_repeated_metadata_option(
    capsys: pytest.CaptureFixture[str], lesion: Path, option: str, values: tuple[str, str]
) -> None:
    code, out, err = run(capsys, "predict", str(lesion), option, values[0], option, values[1])
    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == [
        f"error: {option} is given more than once: give it once (it applies to every image of "
        "the command)"
    ]


def test_cli_text_output_names_the_decision_rule(
    model: Dermsight, lesion: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "predict", str(lesion))
    assert code == 0, err
    lines = out.splitlines()
    assert "suggested class" in lines[0]
    assert lines[1] == f"    suggested class chosen as: {model.card.decision.description}"


def test_cli_says_why_no_heatmap_was_written_for_a_refused_image(
    capsys: pytest.CaptureFixture[str], refused: dict[str, Path], lesion: Path, tmp_path: Path
) -> None:
    out_png = tmp_path / "heat.png"
    code, out, err = run(capsys, "predict", str(refused["grey"]), "--heatmap", str(out_png))
    assert code == 0  # "cannot assess" is an answer (README's exit codes)
    assert not out_png.exists()
    assert f"note: {refused['grey']}: no heatmap written: the image could not be assessed" in err
    assert "cannot assess (no result)" in out
    # an assessable image beside it still gets its file, and no such note
    code, _, err = run(
        capsys, "predict", str(refused["grey"]), str(lesion), "--heatmap", str(out_png)
    )
    assert code == 0
    assert (tmp_path / f"heat_{lesion.stem}.png").exists()
    assert not (tmp_path / "heat_grey.png").exists()
    assert err.count("no heatmap written") == 1


def test_serve_help_gives_the_real_workers_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "serve", "--help")
    assert code == 0
    text = " ".join(out.replace("│", " ").split())
    assert "CPU count" not in text
    assert (
        f"inferences at the same time (default: $DERMSIGHT_WORKERS, else the CPU cores this "
        f"process may use, at most {MAX_DEFAULT_WORKERS})"
    ) in text
