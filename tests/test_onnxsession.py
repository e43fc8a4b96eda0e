"""Single-image runs in fixed-shape ONNX Runtime sessions (``dermsight.onnxsession``): the same
answers as the shape-agnostic session, for the shapes a request uses, within a bounded number of
sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermsight.onnxsession import ModelSession
from dermsight.predict import Dermsight
from dermsight.preprocess import encode_meta, preprocess
from dermsight.records import Metadata


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


def _images(data_dir: Path, ids: list[str], n: int) -> list[np.ndarray]:
    return [np.asarray(Image.open(data_dir / "images" / f"{i}.jpg").convert("RGB"))
            for i in ids[:n]]


def test_fixed_shape_sessions_answer_as_the_dynamic_one(
        model: Dermsight, data_dir: Path, sample_ids: list[str]) -> None:
    session = ModelSession(model.bundle.onnx_path, threads=1, max_fixed=2)
    spec, meta = model.card.input_spec, encode_meta(Metadata.parse(age=60, sex="male",
                                                                   site="back"),
                                                    model.card.meta_spec)
    images = _images(data_dir, sample_ids, 6)
    x = np.stack([preprocess(im, spec) for im in images])
    m = np.repeat(meta[None], len(x), axis=0)
    for i in range(len(x)):
        feeds = {"image": x[i : i + 1], "meta": m[i : i + 1]}
        assert session.session_for(feeds) is not session.dynamic
        for a, b in zip(session.run(None, feeds), session.dynamic.run(None, feeds), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert session.fixed_shapes == [{"batch": 1, "height": spec.size, "width": spec.size}]
    # a batch runs in the shape-agnostic session, and its rows are the single-image answers
    batch = session.run(["logits"], {"image": x, "meta": m})[0]
    assert session.session_for({"image": x, "meta": m}) is session.dynamic
    single = session.run(["logits"], {"image": x[:1], "meta": m[:1]})[0]
    np.testing.assert_allclose(batch[:1], single, rtol=1e-4, atol=1e-4)
    # at most max_fixed shapes get a session; the next ones run in the shape-agnostic one
    for side in (144, 128):
        feeds = {"image": np.ascontiguousarray(x[:1, :, :side, :side]), "meta": m[:1]}
        session.run(["cam"], feeds)
    assert len(session.fixed_shapes) == 2
    assert {"batch": 1, "height": 128, "width": 128} not in session.fixed_shapes
    feeds = {"image": np.ascontiguousarray(x[:1, :, :128, :128]), "meta": m[:1]}
    assert session.session_for(feeds) is session.dynamic


def test_a_request_uses_two_fixed_sessions_and_answers_as_before(
        model: Dermsight, data_dir: Path, sample_ids: list[str]) -> None:
    """Classification + heatmap of square images: the classification's shape and the heatmap's
    shifted frame; probabilities and maps equal those of the shape-agnostic session alone."""
    plain = Dermsight.load(threads=1)
    plain.session.max_fixed = 0  # every run in the shape-agnostic session
    for image in _images(data_dir, sample_ids[6:], 4):
        a = model.predict(image, age=45, sex="female", site="lower extremity")
        b = plain.predict(image, age=45, sex="female", site="lower extremity")
        assert a.prediction == b.prediction
        assert a.risk == b.risk
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
        assert a.cam is not None
        assert b.cam is not None
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-5)
    size = model.card.input_spec.size
    assert [s["height"] for s in model.session.fixed_shapes] == [size, size - 16]
    assert plain.session.fixed_shapes == []
