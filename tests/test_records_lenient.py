"""``Metadata.lenient``: one bad cell in a data file costs only that field, and is noted."""

from __future__ import annotations

import pytest

from dermsight.records import IGNORED, Metadata
from dermsight.taxonomy import TaxonomyError


def test_a_bad_value_becomes_missing_alone_and_is_noted() -> None:
    m = Metadata.lenient("abc", "female", "elbow?")
    assert (m.age, m.sex, m.site) == (None, "female", None)
    assert set(m.notes) == {("age", IGNORED), ("site", IGNORED)}
    with pytest.raises(TaxonomyError):
        Metadata.parse("abc", "female", "elbow?")  # the strict parse still refuses


def test_good_values_parse_as_the_strict_parse_does() -> None:
    strict = Metadata.parse("55", "male", "torso")
    lenient = Metadata.lenient("55", "male", "torso")
    assert lenient == strict
    assert lenient.notes == strict.notes == ()
    assert Metadata.lenient() == Metadata()
