"""The facade as a Python library, polished after a researcher's audit:

1. ``predict_batch``'s ``timing_ms`` is each image's share of the batch, not the time since the
   batch started (16 images: 594..795 ms each, 11,206 ms in all for a 795 ms batch);
2. ``Prediction.to_dict()['heatmap']`` is the API's 112 px PNG (it was 224 px);
3. ``Dermsight.load(3)`` says what it takes (a raw ``TypeError`` from ``Path``), an (H, W, 1)
   grey array is read as (H, W) is, and a DataFrame of metas gives its rows (not its columns);
4. ``dir(dermsight)`` lists the lazily imported ``Dermsight`` and ``Prediction``;
5. a float NaN (``pd.read_csv``'s empty cell) handed to ``predict`` is "not given" without the
   ``metadata_ignored`` flag, as ``dermsight batch`` reads the same CSV;
6. ``DermsightError`` is the base of the errors a user can cause.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import dermsight
from cli_support import run
from dermsight.batch.store import read_output
from dermsight.gate import Flag
from dermsight.predict import Dermsight
from dermsight.records import Metadata


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.fixture(scope="module")
def images(data_dir: Path, sample_ids: list[str]) -> list[Path]:
    return [data_dir / "images" / f"{i}.jpg" for i in sample_ids[:4]]


def _meta_flags(flags: str | list[Flag] | None) -> set[str]:
    """The metadata flags of a result (``Flag`` objects) or of a batch output row (text)."""
    codes = (flags or "").split(";") if not isinstance(flags, list) else [f.code for f in flags]
    return {c for c in codes if c.startswith("metadata")}


# --- 1. timing_ms per image --------------------------------------------------------------------


@pytest.mark.parametrize("with_heatmap", [False, True])
def test_batch_timings_add_up_to_the_batch(model: Dermsight, images: list[Path],
                                           with_heatmap: bool) -> None:
    t0 = time.perf_counter()
    got = model.predict_batch(images, heatmap=with_heatmap)
    wall_ms = (time.perf_counter() - t0) * 1000.0
    timings = [p.timing_ms for p in got]
    assert all(t > 0 for t in timings)
    assert sum(timings) <= wall_ms * 1.1, (timings, wall_ms)
    # one image alone: its whole time, as before
    alone = model.predict(images[0], heatmap=with_heatmap)
    assert alone.timing_ms > 0


# --- 2. to_dict's heatmap is the API's ---------------------------------------------------------


def test_to_dict_heatmap_is_the_apis_112_px_png(model: Dermsight, images: list[Path]) -> None:
    from dermsight.web.routes.predict import run_prediction

    data = images[0].read_bytes()
    pred = model.predict(data)
    assert pred.assessable
    assert pred.cam is not None
    png = Image.open(io.BytesIO(base64.b64decode(pred.to_dict()["heatmap"])))
    assert max(png.size) == 112  # as the README and the API's schema say
    api = json.loads(run_prediction(model, data, Metadata(), heatmap=True, tta=False))
    assert api["heatmap"] == pred.to_dict()["heatmap"]


# --- 3. load's argument, a (H, W, 1) array, a DataFrame of metas ---------------------------------


def test_load_says_what_it_takes() -> None:
    for bad in (3, 2.5, ["bundles/x"]):
        with pytest.raises(TypeError, match="expected a bundle folder"):
            Dermsight.load(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected a bundle folder"):
            Dermsight(bad)  # type: ignore[arg-type]


def test_a_one_channel_array_is_grey(model: Dermsight, images: list[Path]) -> None:
    grey = np.asarray(Image.open(images[0]).convert("L"))
    flat = model.load_image(grey)
    assert np.array_equal(model.load_image(grey[:, :, None]), flat)
    assert flat.shape == (*grey.shape, 3)
    assert model.predict(grey[:, :, None], heatmap=False) == model.predict(grey, heatmap=False)
    with pytest.raises(ValueError, match="expected an"):
        model.load_image(np.zeros((8, 8, 2), np.uint8))


def test_a_dataframe_of_metas_gives_its_rows(model: Dermsight, images: list[Path]) -> None:
    df = pd.DataFrame({"age": [55, np.nan, 40, 70], "sex": ["F", "male", None, "female"],
                       "site": ["back", "arm", "leg", np.nan], "id": list("abcd")})
    got = model.predict_batch(images, df[["age", "sex", "site"]])
    want = model.predict_batch(images, df[["age", "sex", "site"]].to_dict("records"))
    assert got == want
    assert got[0].meta == Metadata(age=55.0, sex="female", site="posterior torso")
    assert got[1].meta.age is None
    with pytest.raises(dermsight.TaxonomyError, match=r"column\(s\) id: give it only"):
        model.predict_batch(images, df)


# --- 4. dir(dermsight) -------------------------------------------------------------------------


def test_dir_lists_the_lazy_names() -> None:
    names = dir(dermsight)
    for name in ("Dermsight", "Prediction", "DermsightError", "__version__"):
        assert name in names
    import pydoc

    text = pydoc.render_doc(dermsight, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    assert "class Dermsight" in text
    assert "class Prediction" in text
    # still lazy: importing and listing the package loads neither numpy nor ONNX Runtime
    code = ("import sys, dermsight; dir(dermsight); "
            "print(sorted(m for m in ('numpy', 'onnxruntime', 'PIL') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]"


# --- 5. a float NaN: not given, as in dermsight batch ------------------------------------------


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, images: list[Path]) -> Path:
    root = tmp_path_factory.mktemp("nan")
    cells = {"empty": ("", "", "back"), "empty_sex": ("55", "", ""),
             "placeholder": ("NaN", "male", "back")}
    rows = []
    for (rid, (age, sex, site)), image in zip(cells.items(), images, strict=False):
        shutil.copy(image, root / f"{rid}.jpg")
        rows.append({"id": rid, "path": f"{rid}.jpg", "age": age, "sex": sex, "site": site})
    csv = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def test_a_csv_row_gets_the_same_flags_from_predict_and_batch(
        model: Dermsight, manifest: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(manifest), "--out", str(out), "-q")
    assert code == 0, err
    scored = read_output(out).set_index("id")
    assert _meta_flags(scored.loc["empty", "flags"]) == set()
    assert _meta_flags(scored.loc["placeholder", "flags"]) == {"metadata_ignored"}
    # the CSV as pandas reads it by default: an empty cell is a float NaN
    as_pandas = pd.read_csv(manifest).set_index("id")
    for rid in ("empty", "empty_sex"):
        row = as_pandas.loc[rid]
        assert any(isinstance(v, float) and v != v for v in row[["age", "sex", "site"]])
        pred = model.predict(manifest.parent / row["path"], age=row["age"], sex=row["sex"],
                             site=row["site"], heatmap=False)
        assert _meta_flags(pred.flags) == _meta_flags(scored.loc[rid, "flags"]) == set(), rid
        assert pred.meta.as_dict() == {k: (None if pd.isna(v) else v)
                                       for k, v in scored.loc[rid, ["age", "sex", "site"]]
                                       .items()}
    # the cells as written (a placeholder string stays flagged, as in the API and CLI)
    as_text = pd.read_csv(manifest, dtype=str, keep_default_na=False).set_index("id")
    for rid, row in as_text.iterrows():
        pred = model.predict(manifest.parent / row["path"], age=row["age"], sex=row["sex"],
                             site=row["site"], heatmap=False)
        assert _meta_flags(pred.flags) == _meta_flags(scored.loc[rid, "flags"]), rid
    # and predict_batch on pandas' frame, as one would write it
    paths = [manifest.parent / p for p in as_pandas["path"]]
    batch = model.predict_batch(paths, as_pandas[["age", "sex", "site"]])
    assert _meta_flags(batch[0].flags) == set()


def test_a_float_nan_is_not_given_without_a_flag(model: Dermsight, images: list[Path]) -> None:
    for nan in (float("nan"), np.float32("nan")):
        for name in ("age", "sex", "site"):
            given: dict[str, object] = {name: nan}
            pred = model.predict(images[0], heatmap=False, **given)  # type: ignore[arg-type]
            assert getattr(pred.meta, name) is None
            assert _meta_flags(pred.flags) == set(), name
    assert Metadata.parse_given(age=float("nan")).notes == ()
    assert Metadata.parse_given(age="NaN").notes == (("age", "ignored"),)


# --- 6. one base for the errors a user can cause -----------------------------------------------


def test_dermsight_error_is_the_common_base() -> None:
    from dermsight import BundleError, DermsightError, ImageDecodeError, TaxonomyError
    from dermsight.batch.store import OutputFailure, OutputNotFound
    from dermsight.cardschema import CardError
    from dermsight.errors import DermsightError as Base
    from dermsight.io.errors import OutputError, ReaderError
    from dermsight.local_update import AdaptInputError, NoLabels, UpdateRefused
    from dermsight.reference_build import ReferenceDataError
    from dermsight.similar import ReferenceError
    from dermsight.train.config import ConfigError

    assert DermsightError is Base
    for cls in (BundleError, ImageDecodeError, TaxonomyError, ReaderError, CardError,
                AdaptInputError, NoLabels, UpdateRefused, ReferenceDataError, ReferenceError,
                ConfigError, OutputError, OutputFailure, OutputNotFound):
        assert issubclass(cls, DermsightError), cls
    # the older bases are kept: ``except ValueError`` catches what it caught
    for cls in (ImageDecodeError, TaxonomyError, ReaderError, CardError, AdaptInputError,
                ReferenceDataError, ConfigError):
        assert issubclass(cls, ValueError), cls
    assert not issubclass(BundleError, ValueError)
    assert issubclass(OutputNotFound, FileNotFoundError)  # a missing output folder is one


def test_a_users_error_is_caught_by_the_base(model: Dermsight, tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(dermsight.DermsightError):
        model.predict(bad)
    with pytest.raises(dermsight.DermsightError):
        model.predict(bad.with_name("missing.jpg"))
    with pytest.raises(dermsight.DermsightError):
        model.predict(bad, age=250)
    with pytest.raises(dermsight.DermsightError):
        Dermsight.load(tmp_path / "no-bundle")
