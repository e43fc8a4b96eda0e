"""The 1st-place SIIM-ISIC 2020 augmentations (``train.siim2020_augment``, v2.17): reproducible
from the run's own random draws, each ingredient present, the lesion kept, off by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("albumentations")
pytest.importorskip("torch")

from dermsight.io.decode import decode_image
from dermsight.preprocess import InputSpec, resize_rgb
from dermsight.train.augment import Augment, dermoscopy_effects
from dermsight.train.augment_siim2020 import siim2020_augment
from dermsight.train.config import ConfigError, load_config

pytestmark = pytest.mark.train

CONFIGS = Path(__file__).parents[1] / "configs"


def _lesion(data_dir: Path, size: int = 160) -> np.ndarray:
    path = sorted((data_dir / "images").glob("ISIC_00[2-3]*.jpg"))[0]
    return resize_rgb(decode_image(path), InputSpec(size=size))


def _black_square(img: np.ndarray, side: int) -> bool:
    """Whether a side x side block of pure black (the hole) is in the image."""
    black = (img.max(axis=2) == 0).astype(np.int32)
    sums = np.pad(black.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    n = img.shape[0] - side + 1
    block = (sums[side:, side:] - sums[:n, side:] - sums[side:, :n] + sums[:n, :n])
    return bool((block == side * side).any())


def test_same_seed_same_image_and_the_ingredients_show(data_dir: Path) -> None:
    a = _lesion(data_dir)
    out = siim2020_augment(a, np.random.default_rng(7))
    assert out.shape == a.shape
    assert out.dtype == np.uint8
    assert np.array_equal(out, siim2020_augment(a, np.random.default_rng(7)))
    draws = [siim2020_augment(a, np.random.default_rng(seed)) for seed in range(80)]
    assert len({d.tobytes() for d in draws}) == 80
    side = int(160 * 0.375)
    holes = np.mean([_black_square(d, side) for d in draws])
    assert 0.5 < holes < 0.9  # one square hole of 0.375 x the side, p = 0.7
    # shift-scale-rotate (p = 0.85) leaves black at the borders; the plain image has none
    assert (a.max(axis=2) > 0).all()
    border = np.mean([(np.r_[d[0], d[-1], d[:, 0], d[:, -1]].max(axis=1) == 0).mean() > 0.1
                      for d in draws])
    assert border > 0.3
    # the colours move (brightness, contrast, CLAHE, hue / saturation / value) ...
    means = np.array([d[d.max(axis=2) > 0].reshape(-1, 3).mean(0) for d in draws])
    assert means.std(0).min() > 3
    # ... and the lesion stays about where it was (coarse layout, over the 8 x 8 cells that the
    # hole and the black borders left alone)
    cells = lambda z: z.astype(float).mean(2).reshape(20, 8, 20, 8).mean((1, 3))  # noqa: E731
    corr = []
    for d in draws:
        seen = (d.max(axis=2) > 0).reshape(20, 8, 20, 8).all((1, 3))
        corr.append(np.corrcoef(cells(d)[seen], cells(a)[seen])[0, 1])
    assert np.median(corr) > 0.6


def test_in_augment_it_replaces_the_colour_jitter_and_is_off_by_default(data_dir: Path
                                                                        ) -> None:
    a = resize_rgb(decode_image(sorted((data_dir / "images").glob("*.jpg"))[3]),
                   InputSpec(size=200))
    spec = InputSpec(size=128)
    on = Augment(siim2020=True, dermoscopy=True)
    off = Augment(dermoscopy=True)
    assert Augment().siim2020 is False
    for seed in range(3):
        rng = np.random.default_rng(seed)
        by_hand = on.geometry(a, spec, rng)
        by_hand = dermoscopy_effects(siim2020_augment(by_hand, rng), rng)
        assert np.array_equal(on(a, spec, np.random.default_rng(seed)), by_hand)
        rng = np.random.default_rng(seed)
        plain = dermoscopy_effects(off.colour(off.geometry(a, spec, rng), rng), rng)
        assert np.array_equal(off(a, spec, np.random.default_rng(seed)), plain)
        assert not np.array_equal(on(a, spec, np.random.default_rng(seed)), plain)


def test_the_setting_loads_and_a_bad_value_is_refused() -> None:
    assert load_config(CONFIGS / "default.yaml").train.siim2020_augment is False
    cfg = load_config(CONFIGS / "default.yaml", ["train.siim2020_augment=true"])
    assert cfg.train.siim2020_augment is True
    with pytest.raises(ConfigError, match="siim2020_augment"):
        load_config(CONFIGS / "default.yaml", ["train.siim2020_augment=maybe"])
