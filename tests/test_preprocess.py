"""The one preprocessing path: geometry, scaling, colour constancy and the metadata vector."""

from __future__ import annotations

import numpy as np
import pytest

from dermsight.preprocess import (
    InputSpec,
    MetaSpec,
    encode_meta,
    normalize,
    preprocess,
    resize_rgb,
    square_crop,
)
from dermsight.records import Metadata


def test_square_crop_takes_the_centre_of_the_short_side() -> None:
    img = np.zeros((100, 160, 3), np.uint8)
    img[:, 30:130] = 255  # the centre 100 columns
    out = square_crop(img)
    assert out.shape == (100, 100, 3)
    assert out.min() == 255


def test_resize_follows_the_spec_and_refuses_non_rgb() -> None:
    img = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    assert resize_rgb(img, InputSpec(size=64)).shape == (64, 64, 3)
    squashed = resize_rgb(img, InputSpec(size=64, crop="none"))
    assert squashed.shape == (64, 64, 3)
    assert not np.array_equal(squashed, resize_rgb(img, InputSpec(size=64)))
    near = resize_rgb(img, InputSpec(size=64, interpolation="nearest"))
    assert set(np.unique(near)) <= set(np.unique(img))  # nearest never invents values
    with pytest.raises(ValueError, match="RGB uint8"):
        resize_rgb(img.astype(np.float32), InputSpec())
    with pytest.raises(ValueError, match="RGB uint8"):
        resize_rgb(img[:, :, 0], InputSpec())


def test_normalize_scales_and_standardises_channels_first() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 0, 255, 51
    x = normalize(img, InputSpec(size=4, mean=(0.5, 0.5, 0.2), std=(0.5, 0.5, 0.1)))
    assert x.shape == (3, 4, 4)
    assert x.dtype == np.float32
    assert x.flags.c_contiguous
    assert np.allclose(x[0], -1.0)
    assert np.allclose(x[1], 1.0)
    assert np.allclose(x[2], 0.0)
    assert preprocess(np.zeros((300, 200, 3), np.uint8), InputSpec(size=32)).shape == (3, 32, 32)


def test_colour_constancy_is_part_of_the_spec_and_round_trips() -> None:
    spec = InputSpec(size=8, color_constancy="shades_of_gray", cc_power=4.0)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert InputSpec.from_dict({"size": 8, "mean": [0.5] * 3, "std": [0.5] * 3}).color_constancy \
        == "none"  # bundles made before colour constancy keep working
    cast = np.zeros((8, 8, 3), np.uint8)
    cast[...] = (200, 150, 100)  # a flat warm cast becomes neutral grey
    x = normalize(cast, spec)
    assert np.allclose(x[0], x[1], atol=1e-5)
    assert np.allclose(x[1], x[2], atol=1e-5)
    with pytest.raises(ValueError, match="unknown color_constancy"):
        normalize(cast, InputSpec(size=8, color_constancy="retinex"))


def test_metadata_vector_layout_and_missing_flags() -> None:
    spec = MetaSpec()
    v = encode_meta(Metadata(age=50, sex="female", site="palms/soles"), spec)
    assert v.shape == (spec.dim,)
    assert v[0] == pytest.approx(0.5)
    assert v[1] == 0
    sex = v[2 : 2 + len(spec.sexes) + 1]
    assert sex[spec.sexes.index("female")] == 1
    assert sex.sum() == 1
    site = v[2 + len(spec.sexes) + 1 :]
    assert site[spec.sites.index("palms/soles")] == 1
    assert site.sum() == 1
    empty = encode_meta(None, spec)
    assert empty[1] == 1
    assert empty[2 + len(spec.sexes)] == 1
    assert empty[-1] == 1
    assert empty.sum() == 3


def test_crop_fraction_shows_the_centre_of_the_view_and_round_trips() -> None:
    img = np.zeros((100, 160, 3), np.uint8)
    img[35:65, 65:95] = 255  # a bright 30 x 30 centre patch
    full = resize_rgb(img, InputSpec(size=30))
    assert full.shape == (30, 30, 3)
    assert 0 < full.mean() < 255  # the whole 100 x 100 centre square, mostly dark
    close = resize_rgb(img, InputSpec(size=30, crop_fraction=0.3))
    assert close.shape == (30, 30, 3)
    assert close.min() == 255  # only the centre 30 % of each side: the patch
    squashed = resize_rgb(img, InputSpec(size=30, crop="none", crop_fraction=0.5))
    assert np.array_equal(squashed, resize_rgb(img[25:75, 40:120], InputSpec(size=30,
                                                                          crop="none")))
    spec = InputSpec(size=8, crop_fraction=0.85)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert InputSpec.from_dict({"size": 8, "mean": [0.5] * 3, "std": [0.5] * 3}).crop_fraction \
        == 1.0  # bundles made before crop_fraction see all of the view, as before
    assert InputSpec(size=8, crop_fraction=1.0) == InputSpec(size=8)


def test_the_card_schema_bounds_crop_fraction() -> None:
    from pydantic import ValidationError

    from dermsight.cardschema import InputSpecCard

    base = {"size": 160, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert InputSpecCard.model_validate(base).crop_fraction == 1.0
    assert InputSpecCard.model_validate({**base, "crop_fraction": 0.85}).crop_fraction == 0.85
    for bad in (0.1, 1.2):
        with pytest.raises(ValidationError):
            InputSpecCard.model_validate({**base, "crop_fraction": bad})
