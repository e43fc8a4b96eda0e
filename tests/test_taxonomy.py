"""Label and metadata mappings from every source dataset into dermsight's vocabulary."""

from __future__ import annotations

import pandas as pd
import pytest

from dermsight import taxonomy
from dermsight.records import Metadata
from dermsight.taxonomy import TaxonomyError


def test_nine_classes_and_malignant_set() -> None:
    assert taxonomy.CLASS_CODES == ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
    assert {"MEL", "BCC", "SCC"} == taxonomy.MALIGNANT
    assert {"AK"} == taxonomy.PREMALIGNANT


@pytest.mark.parametrize(
    ("dx", "code"),
    [
        ("mel", "MEL"),
        ("nv", "NV"),
        ("bcc", "BCC"),
        ("akiec", "AK"),
        ("bkl", "BKL"),
        ("df", "DF"),
        ("vasc", "VASC"),
        ("MEL", "MEL"),
        (" Nv ", "NV"),
    ],
)
def test_ham10000_dx(dx: str, code: str) -> None:
    assert taxonomy.normalize_diagnosis(dx) == code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("melanoma", "MEL"),
        ("nevus", "NV"),
        ("seborrheic keratosis", "BKL"),
        ("lichenoid keratosis", "BKL"),
        ("solar lentigo", "BKL"),
        ("lentigo NOS", "BKL"),
        ("cafe-au-lait macule", "UNK"),
        ("atypical melanocytic proliferation", "UNK"),
        ("unknown", "UNK"),
        ("Basal cell carcinoma", "BCC"),
        ("squamous_cell_carcinoma", "SCC"),
        ("Vascular lesion", "VASC"),
    ],
)
def test_siim2020_diagnosis_strings(text: str, code: str) -> None:
    assert taxonomy.normalize_diagnosis(text) == code


def test_unknown_diagnosis_is_a_clear_error() -> None:
    with pytest.raises(TaxonomyError, match="unknown diagnosis 'psoriasis'"):
        taxonomy.normalize_diagnosis("psoriasis")
    with pytest.raises(TaxonomyError, match="empty diagnosis"):
        taxonomy.normalize_diagnosis("  ")


def test_isic2019_one_hot_row() -> None:
    row = {c: "0.0" for c in taxonomy.ISIC2019_COLUMNS}
    row["image"] = "ISIC_0000000"
    row["SCC"] = "1.0"
    assert taxonomy.from_isic2019_row(row) == "SCC"
    row["MEL"] = "1.0"
    with pytest.raises(TaxonomyError, match="exactly one class"):
        taxonomy.from_isic2019_row(row)
    with pytest.raises(TaxonomyError, match="none"):
        taxonomy.from_isic2019_row({c: "0" for c in taxonomy.ISIC2019_COLUMNS})


@pytest.mark.parametrize(
    ("mel", "sk", "code"),
    [("1.0", "0.0", "MEL"), ("0.0", "1.0", "BKL"), ("0.0", "0.0", "NV"), (1, 0, "MEL")],
)
def test_isic2017_part3(mel: str, sk: str, code: str) -> None:
    assert taxonomy.from_isic2017(mel, sk) == code


@pytest.mark.parametrize(
    ("loc", "site"),
    [
        ("back", "posterior torso"),
        ("abdomen", "anterior torso"),
        ("chest", "anterior torso"),
        ("trunk", "torso"),
        ("face", "head/neck"),
        ("scalp", "head/neck"),
        ("ear", "head/neck"),
        ("neck", "head/neck"),
        ("hand", "upper extremity"),
        ("foot", "lower extremity"),
        ("acral", "palms/soles"),
        ("genital", "oral/genital"),
        ("unknown", None),
        ("", None),
    ],
)
def test_ham_localization_to_site(loc: str, site: str | None) -> None:
    assert taxonomy.normalize_site(loc) == site


@pytest.mark.parametrize(
    "value", ["head/neck", "HEAD NECK", "head_neck", "Anterior Torso", "palms/soles"]
)
def test_site_spellings(value: str) -> None:
    assert taxonomy.normalize_site(value) in taxonomy.SITES


def test_unknown_site_is_a_clear_error() -> None:
    with pytest.raises(TaxonomyError, match="unknown anatomic site 'elbow pit'"):
        taxonomy.normalize_site("elbow pit")


@pytest.mark.parametrize(
    ("value", "sex"),
    [("male", "male"), ("F", "female"), ("Female", "female"), ("", None), ("unknown", None)],
)
def test_sex(value: str, sex: str | None) -> None:
    assert taxonomy.normalize_sex(value) == sex


def test_bad_sex_is_a_clear_error() -> None:
    with pytest.raises(TaxonomyError, match=r"unknown sex 'x': expected one of male, female"):
        taxonomy.normalize_sex("x")


@pytest.mark.parametrize(
    ("value", "age"),
    [("45", 45.0), (45, 45.0), ("045Y", 45.0), ("", None), (float("nan"), None)],
)
def test_age(value: object, age: float | None) -> None:
    assert taxonomy.normalize_age(value) == age


@pytest.mark.parametrize("value", [-5, "-5", 400, "400", "121"])
def test_age_out_of_range_is_a_clear_error(value: object) -> None:
    with pytest.raises(TaxonomyError, match=r"outside 0-120 years"):
        taxonomy.normalize_age(value)


def test_age_not_a_number() -> None:
    with pytest.raises(TaxonomyError, match="not a number"):
        taxonomy.normalize_age("forty")


def test_metadata_parse() -> None:
    m = Metadata.parse(age="055Y", sex="M", site="TORSO")
    assert m == Metadata(age=55.0, sex="male", site="torso")


def test_every_value_of_the_shared_metadata_is_in_the_vocabulary(metadata: pd.DataFrame) -> None:
    for col, fn in (
        ("diagnosis", taxonomy.normalize_diagnosis),
        ("sex", taxonomy.normalize_sex),
        ("anatom_site", taxonomy.normalize_site),
        ("age_approx", taxonomy.normalize_age),
        ("anatom_site_raw", taxonomy.normalize_site),
    ):
        for value in metadata[col].unique():
            fn(value)  # raises on anything outside the vocabulary
    # HAM localization and the curated ISIC site agree wherever both are given.
    both = metadata[(metadata.anatom_site_raw != "") & (metadata.anatom_site != "")]
    mapped = both.anatom_site_raw.map(taxonomy.normalize_site)
    assert (mapped == both.anatom_site).mean() > 0.99
