"""The Python facade as a researcher uses it in a notebook, beyond the basic inputs.

``predict_batch`` takes any iterable (a generator failed with "object of type 'generator' has no
len()"), refuses one image given as the batch (a path string was read as "/ is a folder"), and
names the input that failed ("image 1 of 3 (10 bytes): not an image"). ``predict`` reads ``meta``
as ``predict_batch`` reads its metas (a dict failed with AttributeError; a hand-built
``Metadata(sex="man")`` went through unchecked and ``Metadata(age=np.int64(55))`` broke
``json.dumps(to_dict())``) and refuses ``meta`` together with ``age``/``sex``/``site`` (they
were dropped in silence). ``similar`` checks its arguments (``k=2.5`` was "Partition index must
be integer", ``k=True`` one neighbour, a result of another model answered with that model's
features). Numpy scalars read as their values (``np.float32('nan')`` was an age "outside
0-120"), an empty array or path string is refused (they gave an answer / "." is a folder), and
``overlay_png`` says why there is no heatmap. The rest pins what already held: JSON output,
TTA with a heatmap, threads, tiny and huge arrays, symlinks and files without an extension."""

from __future__ import annotations

import json
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsight import Dermsight
from dermsight.bundle import default_bundle_path, sha256_file, write_manifest
from dermsight.io.errors import ImageDecodeError
from dermsight.predict import Prediction
from dermsight.records import Metadata
from dermsight.taxonomy import TaxonomyError


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.fixture(scope="module")
def paths(data_dir: Path, sample_ids: list[str]) -> list[Path]:
    return [data_dir / "images" / f"{i}.jpg" for i in sample_ids[:4]]


@pytest.fixture(scope="module")
def result(model: Dermsight, paths: list[Path]) -> Prediction:
    return model.predict(paths[0], age=60, sex="male", site="back")


def _probs(preds: list[Prediction]) -> np.ndarray:
    return np.array([list(p.probabilities.values()) for p in preds])


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# -- predict_batch ------------------------------------------------------------------------------


def test_predict_batch_takes_any_iterable(model: Dermsight, paths: list[Path]) -> None:
    metas = [{"age": 40 + i, "sex": "F"} for i in range(2)]
    want = model.predict_batch(paths[:2], metas)
    from_generators = model.predict_batch((p for p in paths[:2]), (m for m in metas))
    from_tuple = model.predict_batch(tuple(paths[:2]), tuple(metas))
    np.testing.assert_allclose(_probs(from_generators), _probs(want), atol=1e-6)
    np.testing.assert_allclose(_probs(from_tuple), _probs(want), atol=1e-6)
    assert [p.meta for p in from_generators] == [p.meta for p in want]
    # an (N, H, W, 3) array is N images; mixed kinds in one list
    arrays = np.stack([_rgb(paths[0])] * 2)
    stacked = model.predict_batch(arrays)
    assert len(stacked) == 2
    alone = _probs([model.predict(arrays[0], heatmap=False)])
    np.testing.assert_allclose(_probs(stacked), np.vstack([alone, alone]), atol=1e-5)
    mixed = model.predict_batch([paths[0], str(paths[0]), paths[0].read_bytes(), arrays[0]])
    np.testing.assert_allclose(_probs(mixed), np.vstack([_probs(mixed[:1])] * 4), atol=1e-5)
    assert model.predict_batch(iter([])) == []


@pytest.mark.parametrize("one", ["path", "str", "bytes", "array", "pillow"])
def test_one_image_given_as_the_batch_is_refused(model: Dermsight, paths: list[Path],
                                                 one: str) -> None:
    image = {"path": paths[0], "str": str(paths[0]), "bytes": paths[0].read_bytes(),
             "array": _rgb(paths[0]), "pillow": Image.open(paths[0])}[one]
    with pytest.raises(TypeError, match=r"images must be a list .* \(for one image use predict\)"):
        model.predict_batch(image)  # type: ignore[arg-type]


def test_one_meta_given_as_the_metas_is_refused(model: Dermsight, paths: list[Path]) -> None:
    with pytest.raises(TypeError, match=r"metas must be a list .* one meta per entry, not dict"):
        model.predict_batch(paths[:1], {"age": 50})  # type: ignore[arg-type]


@pytest.mark.parametrize(("bad", "error", "message"), [
    (b"just some text", ImageDecodeError,
     r"^predict_batch: image 2 of 3 \(14 bytes\): not an image"),
    ("missing", ImageDecodeError, r"^predict_batch: image 2 of 3 \(.*nope\.jpg\): file not found"),
    (np.zeros((4, 4, 3), np.float32) + 0.5, ValueError,
     r"^predict_batch: image 2 of 3 \(array of shape \(4, 4, 3\)\): .*looks scaled to 0-1"),
    (42, TypeError, r"^predict_batch: image 2 of 3 \(int\): expected an image"),
])
def test_a_bad_image_among_good_ones_is_named(model: Dermsight, paths: list[Path],
                                              tmp_path: Path, bad: object,
                                              error: type[Exception], message: str) -> None:
    bad = tmp_path / "nope.jpg" if isinstance(bad, str) else bad
    with pytest.raises(error, match=message):
        model.predict_batch([paths[0], bad, paths[1]])  # type: ignore[list-item]
    # nothing was spoilt: the good ones alone still get their answers
    assert len(model.predict_batch([paths[0], paths[1]])) == 2


def test_a_bad_meta_is_named(model: Dermsight, paths: list[Path]) -> None:
    with pytest.raises(TaxonomyError, match=r"^predict_batch: meta 2: unknown sex 'x'"):
        model.predict_batch(paths[:2], [None, {"sex": "x"}])
    with pytest.raises(TypeError, match=r"^predict_batch: meta 1: each meta must be a dict"):
        model.predict_batch(paths[:1], [55])  # type: ignore[list-item]


# -- predict's metadata -------------------------------------------------------------------------


def test_meta_is_a_dict_or_a_checked_metadata_never_beside_age_sex_site(
        model: Dermsight, paths: list[Path]) -> None:
    by_kwargs = model.predict(paths[0], age="55", sex="F", site="back", heatmap=False)
    by_dict = model.predict(paths[0], meta={"age": "55", "sex": "F", "site": "back"},
                            heatmap=False)
    assert by_dict.meta == by_kwargs.meta == Metadata(55.0, "female", "posterior torso")
    assert by_dict.probabilities == pytest.approx(by_kwargs.probabilities, abs=1e-6)
    with pytest.raises(TypeError, match="give meta or age/sex/site, not both"):
        model.predict(paths[0], age=50, meta=Metadata(sex="male"), heatmap=False)
    with pytest.raises(TaxonomyError, match="unknown sex 'man'"):
        model.predict(paths[0], meta=Metadata(sex="man"), heatmap=False)
    with pytest.raises(TypeError, match="predict: meta must be a dict of age/sex/site"):
        model.predict(paths[0], meta="age=50", heatmap=False)  # type: ignore[arg-type]
    # a Metadata built from a pandas row: numpy values, normalised like any other input
    hand_made = model.predict(paths[0], meta=Metadata(age=np.int64(55), sex="F", site="Back"),
                              heatmap=False)
    assert hand_made.meta == by_kwargs.meta
    assert type(hand_made.meta.age) is float
    text = json.dumps(hand_made.to_dict(), allow_nan=False)
    assert json.loads(text)["input"] == {"age": 55.0, "sex": "female", "site": "posterior torso"}


@pytest.mark.parametrize(("age", "sex", "site", "want"), [
    (np.int64(55), np.str_("F"), np.str_("BACK"), Metadata(55.0, "female", "posterior torso")),
    (np.float32(55.5), None, None, Metadata(age=55.5)),
    (np.float32("nan"), None, None, Metadata()),  # pandas' missing value, as float('nan') is
    (np.float64("nan"), None, None, Metadata()),
    (pd.NA, pd.NA, pd.NA, Metadata()),  # a nullable column's empty cell (df.itertuples())
    (pd.NaT, None, None, Metadata()),
])
def test_numpy_and_pandas_values_read_as_their_values(
        model: Dermsight, paths: list[Path], age: object, sex: object, site: object,
        want: Metadata) -> None:
    got = model.predict(paths[0], age=age, sex=sex, site=site, heatmap=False)
    assert got.meta == want
    json.dumps(got.to_dict(), allow_nan=False)


@pytest.mark.parametrize(("age", "sex", "site"), [
    (" 55 ", "Male", "Posterior Torso"),
    ("45Y", " f ", "head_neck"),
    ("", "MALE", "trunk"),
    ("null", "m", "HEAD/NECK"),
    ("70.5", "female", "hand"),
])
def test_the_vocabulary_is_the_api_and_cli_one(model: Dermsight, paths: list[Path], age: str,
                                               sex: str, site: str) -> None:
    # the API form and ``dermsight predict`` hand these strings to Metadata.parse
    want = Metadata.parse(age=age, sex=sex, site=site)
    got = model.predict(paths[0], age=age, sex=sex, site=site, heatmap=False)
    assert got.meta == want
    assert got.meta.notes == want.notes


@pytest.mark.parametrize(("age", "message"), [
    (True, "age True is not a number"),
    ("60m", "give the age in years"),
    (float("inf"), "outside 0-120"),
])
def test_ages_that_are_not_ages_are_refused(model: Dermsight, paths: list[Path], age: object,
                                            message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        model.predict(paths[0], age=age, heatmap=False)


# -- similar ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "error", "message"), [
    (0, ValueError, "k must be at least 1, got 0"),
    (-3, ValueError, "k must be at least 1, got -3"),
    (2.5, TypeError, "k must be a whole number, not float"),
    (True, TypeError, "k must be a whole number, not bool"),
    ("3", TypeError, "k must be a whole number, not str"),
])
def test_similar_checks_k(model: Dermsight, result: Prediction, k: object,
                          error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        model.similar(result, k)  # type: ignore[arg-type]


def test_similar_answers_what_it_can(model: Dermsight, result: Prediction) -> None:
    assert model.reference is not None
    three = model.similar(result, np.int64(3))  # type: ignore[arg-type]
    assert [c.image_id for c in three] == [c.image_id for c in model.similar(result)[:3]]
    assert len(model.similar(result, 10**9)) == len(model.reference)
    blank = model.predict(np.full((300, 300, 3), 128, np.uint8))
    assert not blank.assessable
    assert model.similar(blank) == []
    with pytest.raises(TypeError, match="expected a Prediction"):
        model.similar(result.to_dict())  # type: ignore[arg-type]


def _copy_bundle(root: Path, version: str, network: bool) -> Path:
    """A copy of the shipped bundle with another card version and, with ``network``, another
    network (its first convolution's weights scaled): other features."""
    shutil.copytree(default_bundle_path(), root)
    card = json.loads((root / "card.json").read_text())
    card["version"] = version
    if network:
        onnx = pytest.importorskip("onnx")
        from onnx import numpy_helper

        graph = onnx.load(root / "model.onnx")
        first = next(t for t in graph.graph.initializer if len(t.dims) == 4)
        first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) * 0.7, first.name))
        onnx.save(graph, root / "model.onnx")
        card["onnx"]["sha256"] = sha256_file(root / "model.onnx")
    (root / "card.json").write_text(json.dumps(card))
    write_manifest(root)
    return root


def test_similar_refuses_a_result_of_another_network(model: Dermsight, result: Prediction,
                                                     tmp_path: Path) -> None:
    other = Dermsight(_copy_bundle(tmp_path / "other", "9.9.9", network=True), threads=1)
    assert other.card.onnx_sha256 != model.card.onnx_sha256
    with pytest.raises(ValueError, match=r"this result is from model .* version '.*', whose "
                                         r"network is not this model's \(.* version '9\.9\.9'\)"):
        other.similar(result)
    with pytest.raises(ValueError, match="predict with this model first"):
        model.similar(other.predict(result.image, heatmap=False))
    # a bundle that only differs in its card has the same features: its answers stand
    renamed = Dermsight(_copy_bundle(tmp_path / "renamed", "9.9.8", network=False), threads=1)
    assert [c.image_id for c in renamed.similar(result, 3)] == \
        [c.image_id for c in model.similar(result, 3)]


# -- outputs ------------------------------------------------------------------------------------


def test_to_dict_is_strict_json_and_round_trips(model: Dermsight, result: Prediction) -> None:
    blank = model.predict(np.full((300, 300, 3), 128, np.uint8))
    for pred in (result, blank):
        d = pred.to_dict()
        assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert "heatmap" in result.to_dict()
    assert "unreliable" in blank.to_dict()


def test_overlay_png_says_why_there_is_none(model: Dermsight, paths: list[Path],
                                            result: Prediction) -> None:
    assert result.overlay_png().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match=r"predict with heatmap=True"):
        model.predict(paths[0], heatmap=False).overlay_png()
    with pytest.raises(ValueError, match=r"predict with heatmap=True"):
        model.predict_batch(paths[:1])[0].overlay_png()
    blank = model.predict(np.full((300, 300, 3), 128, np.uint8))
    with pytest.raises(ValueError, match=r"could not be assessed \(see flags\)"):
        blank.overlay_png()
    assert result.overlay_png(alpha=np.float32(0.2)) != result.overlay_png(alpha=1)
    for alpha in (1.5, -0.1, float("nan"), "0.3"):
        with pytest.raises(ValueError, match="alpha must be a number from 0 to 1"):
            result.overlay_png(alpha=alpha)  # type: ignore[arg-type]


def test_tta_with_a_heatmap(model: Dermsight, paths: list[Path]) -> None:
    plain = model.predict(paths[0])
    tta = model.predict(paths[0], tta=True)
    assert tta.cam is not None
    assert plain.cam is not None
    assert tta.cam.shape == plain.cam.shape
    assert 0.0 <= float(tta.cam.min()) <= float(tta.cam.max()) <= 1.0
    assert sum(tta.probabilities.values()) == pytest.approx(1.0)
    again = model.predict(paths[0], tta=True)
    assert again.probabilities == pytest.approx(tta.probabilities, abs=1e-9)


def test_one_model_from_four_threads_answers_as_in_sequence(model: Dermsight,
                                                            paths: list[Path]) -> None:
    jobs = paths * 2
    alone = [model.predict(p) for p in jobs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(model.predict, jobs))
    for a, b in zip(alone, together, strict=True):
        assert b.probabilities == pytest.approx(a.probabilities, abs=1e-9)
        assert (a.risk, a.prediction) == (b.risk, b.prediction)
        assert a.cam is not None
        assert b.cam is not None
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-6)
        assert [c.image_id for c in model.similar(a, 3)] == \
            [c.image_id for c in model.similar(b, 3)]


# -- odd images and paths -----------------------------------------------------------------------


def test_empty_arrays_and_path_strings_are_refused(model: Dermsight) -> None:
    with pytest.raises(ValueError, match=r"the array has no pixels \(shape \(0, 0, 3\)\)"):
        model.predict(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="no pixels"):
        model.predict(np.zeros((0, 7, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="the path is an empty string"):
        model.predict("")


def test_tiny_and_huge_arrays(model: Dermsight, paths: list[Path]) -> None:
    tiny = model.predict(_rgb(paths[0])[:20, :20])
    assert not tiny.assessable
    assert tiny.cam is None
    assert "too_small" in [f.code for f in tiny.flags]
    with Image.open(paths[0]) as img:
        huge = np.asarray(img.convert("RGB").resize((4000, 6000)))
    assert model.predict(huge, heatmap=False).image is None  # kept only with heatmap=True
    big = model.predict(huge)
    assert big.assessable
    assert big.image is not None
    assert big.image.shape == (6000, 4000, 3)


def test_paths_of_every_kind(model: Dermsight, paths: list[Path], tmp_path: Path) -> None:
    want = model.predict(paths[0], heatmap=False).probabilities
    link = tmp_path / "link.jpg"
    link.symlink_to(paths[0])
    plain = tmp_path / "no_extension"
    plain.write_bytes(paths[0].read_bytes())
    for p in (link, plain, str(plain)):
        assert model.predict(p, heatmap=False).probabilities == pytest.approx(want, abs=1e-6)
    with pytest.raises(ImageDecodeError, match="is a folder, not an image"):
        model.predict(paths[0].parent)
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageDecodeError, match="broken link"):
        model.predict(tmp_path / "dangling.jpg")


def test_a_url_says_it_is_not_fetched(model: Dermsight) -> None:
    with pytest.raises(ImageDecodeError, match=r"https://example\.org/x\.jpg is a URL: predict "
                                               r"reads local files only"):
        model.predict("https://example.org/x.jpg")


# -- the model object in a notebook -------------------------------------------------------------


def test_the_model_shows_what_it_is_and_pickles(model: Dermsight, paths: list[Path]) -> None:
    shown = repr(model)
    assert shown.startswith(f"Dermsight({model.card.name!r} version {model.card.version!r}, ")
    assert str(model.bundle.path) in shown
    copy = pickle.loads(pickle.dumps(model))  # what a process pool does with it
    assert copy.info == model.info
    assert copy.session.threads == model.session.threads
    assert copy.predict(paths[0], heatmap=False).probabilities == pytest.approx(
        model.predict(paths[0], heatmap=False).probabilities, abs=1e-9)
    assert "cam=" not in repr(model.predict(paths[0]))  # no array printed in a notebook


@pytest.mark.parametrize(("threads", "error"), [(-1, ValueError), ("2", TypeError),
                                                (2.5, TypeError), (True, TypeError)])
def test_threads_must_be_a_count(threads: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"threads must be a whole number of threads"):
        Dermsight(threads=threads)  # type: ignore[arg-type]


def test_a_bad_thread_count_is_refused_before_the_bundle_is_read(tmp_path: Path) -> None:
    """``threads`` is checked first: a missing bundle folder does not hide the bad argument."""
    with pytest.raises(ValueError, match="threads must be"):
        Dermsight(tmp_path / "nowhere", threads=-1)


def test_metadata_parse_itself_reads_numpy_and_pandas_values() -> None:
    """At the shared depth: every caller of ``Metadata.parse`` (API, CLI, batch, facade) gets
    numpy scalars read as their values and pandas' missing values as not given."""
    import numpy as np
    import pandas as pd

    from dermsight.records import Metadata

    m = Metadata.parse(age=np.int64(55), sex=np.str_("F"), site=pd.NA)
    assert (m.age, m.sex, m.site) == (55.0, "female", None)
    assert Metadata.parse(age=np.float32("nan"), sex=pd.NaT).age is None
