"""``Dermsight.predict_batch(images, metas)`` with the metadata a Python user would write: a dict
per image is read as ``predict``'s keyword arguments (it failed deep inside with
``AttributeError: 'dict' object has no attribute 'age'``); anything else is a readable error."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermsight.predict import Dermsight
from dermsight.records import Metadata
from dermsight.taxonomy import TaxonomyError


@pytest.fixture(scope="module")
def model() -> Dermsight:
    return Dermsight.load(threads=1)


@pytest.fixture(scope="module")
def two(data_dir: Path, sample_ids: list[str]) -> list[Path]:
    return [data_dir / "images" / f"{i}.jpg" for i in sample_ids[:2]]


def test_dict_metas_are_read_as_predict_reads_its_arguments(model: Dermsight,
                                                            two: list[Path]) -> None:
    metas = [{"age": "55", "sex": "F", "site": "back"}, {"age": "NaN"}]
    got = model.predict_batch(two, metas)
    for path, meta, pred in zip(two, metas, got, strict=True):
        alone = model.predict(path, heatmap=False, **meta)
        assert pred.meta == alone.meta
        assert [f.code for f in pred.flags] == [f.code for f in alone.flags]
        assert pred.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
    assert got[0].meta == Metadata(age=55.0, sex="female", site="posterior torso")
    assert "metadata_ignored" in [f.code for f in got[1].flags]
    # Metadata objects and None still work, mixed with dicts
    mixed = model.predict_batch(two, [Metadata.parse(age=55, sex="F", site="back"), None])
    assert mixed[0].probabilities == pytest.approx(got[0].probabilities, abs=1e-5)
    assert mixed[1].meta == Metadata()


@pytest.mark.parametrize(("metas", "error", "message"), [
    ([{"agee": 55}, None], TaxonomyError, "unknown metadata field agee: give age, sex and site"),
    ([55, None], TypeError, "each meta must be a dict of age/sex/site"),
    ([None], ValueError, "2 images but 1 metas"),
    ([{"age": -3}, None], TaxonomyError, "age"),
])
def test_bad_metas_say_what_is_wrong(model: Dermsight, two: list[Path], metas: list[object],
                                     error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        model.predict_batch(two, metas)  # type: ignore[arg-type]
