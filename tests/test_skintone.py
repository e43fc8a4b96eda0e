"""dermsight.skintone: sRGB -> CIELAB, ITA of non-lesion skin, Del Bino bands."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsight.skintone import (
    BANDS,
    NOT_ESTIMABLE,
    ita_band,
    ita_degrees,
    ita_for_images,
    ita_from_lab,
    srgb_to_lab,
)

SIZE = 256


def _lab_to_srgb(lightness: float, a: float, b: float) -> np.ndarray:
    """Independent inverse (CIE 1976 + sRGB D65), for building patches of known L*a*b*."""
    fy = (lightness + 16.0) / 116.0
    fx, fz = fy + a / 500.0, fy - b / 200.0
    d = 6.0 / 29.0

    def finv(t: float) -> float:
        return t**3 if t > d else 3 * d * d * (t - 4.0 / 29.0)

    xyz = np.array([0.95047 * finv(fx), finv(fy), 1.08883 * finv(fz)])
    m_inv = np.array([[3.2404542, -1.5371385, -0.4985314],
                      [-0.9692660, 1.8760108, 0.0415560],
                      [0.0556434, -0.2040259, 1.0572252]])
    lin = np.clip(m_inv @ xyz, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(srgb * 255.0), 0, 255).astype(np.uint8)


def _patch(lab: tuple[float, float, float], noise: float = 0.0, seed: int = 0) -> np.ndarray:
    img = np.broadcast_to(_lab_to_srgb(*lab), (SIZE, SIZE, 3)).astype(np.float64)
    if noise:
        img = img + np.random.default_rng(seed).normal(0.0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _expected_ita(lightness: float, b: float) -> float:
    return math.degrees(math.atan((lightness - 50.0) / b))


# (L*, a*, b*) of typical skin from very light to dark, and the Del Bino band of each
SKINS = [
    ((75.0, 8.0, 12.0), "very light"),   # ITA 64.4
    ((66.0, 10.0, 16.0), "light"),       # 45.0
    ((60.0, 12.0, 15.0), "intermediate"),  # 33.7
    ((55.0, 12.0, 19.0), "tan"),         # 14.7
    ((45.0, 12.0, 20.0), "brown"),       # -14.0
    ((35.0, 10.0, 15.0), "dark"),        # -45.0
]


# --- colour conversion -------------------------------------------------------------------------


def test_srgb_to_lab_known_values() -> None:
    # reference values: CIE L*a*b* (D65/2 deg) of the sRGB primaries, white, black and grey
    rgb = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                    [128, 128, 128]], dtype=np.uint8)
    want = np.array([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0], [53.24, 80.09, 67.20],
                     [87.73, -86.18, 83.18], [32.30, 79.19, -107.86], [53.59, 0.0, 0.0]])
    np.testing.assert_allclose(srgb_to_lab(rgb), want, atol=0.02)


def test_srgb_to_lab_matches_scikit_image() -> None:
    color = pytest.importorskip("skimage.color")
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(srgb_to_lab(rgb), color.rgb2lab(rgb), atol=1e-3)


def test_lab_round_trip_of_the_test_helper() -> None:
    for lab, _ in SKINS:
        got = srgb_to_lab(_lab_to_srgb(*lab)[None])[0]
        np.testing.assert_allclose(got, lab, atol=0.6)


# --- ITA and bands -----------------------------------------------------------------------------


def test_ita_from_lab_formula_and_undefined() -> None:
    assert ita_from_lab(50.0, 10.0) == pytest.approx(0.0)
    assert ita_from_lab(60.0, 10.0) == pytest.approx(45.0)
    assert ita_from_lab(40.0, 10.0) == pytest.approx(-45.0)
    assert ita_from_lab(70.0, 0.0) is None
    assert ita_from_lab(70.0, -3.0) is None
    assert ita_from_lab(float("nan"), 5.0) is None


@pytest.mark.parametrize(("ita", "band"), [
    (80.0, "very light"), (55.01, "very light"), (55.0, "light"), (41.0, "intermediate"),
    (30.0, "intermediate"), (28.0, "tan"), (10.5, "tan"), (10.0, "brown"), (0.0, "brown"),
    (-29.9, "brown"), (-30.0, "dark"), (-70.0, "dark"),
])
def test_ita_band_del_bino_limits(ita: float, band: str) -> None:
    assert ita_band(ita) == band


def test_ita_band_missing() -> None:
    assert ita_band(None) == NOT_ESTIMABLE
    assert ita_band(float("nan")) == NOT_ESTIMABLE


@pytest.mark.parametrize(("lab", "band"), SKINS)
def test_uniform_patch_gives_its_ita_and_band(lab: tuple[float, float, float], band: str) -> None:
    ita = ita_degrees(_patch(lab))
    assert ita is not None
    assert ita == pytest.approx(_expected_ita(lab[0], lab[2]), abs=1.0)
    assert ita_band(ita) == band


@pytest.mark.parametrize(("lab", "band"), SKINS)
def test_noisy_patch_stays_within_one_degree(lab: tuple[float, float, float], band: str) -> None:
    ita = ita_degrees(_patch(lab, noise=3.0, seed=7))
    assert ita is not None
    assert ita == pytest.approx(_expected_ita(lab[0], lab[2]), abs=1.0)


def _with_lesion(img: np.ndarray, lab: tuple[float, float, float], radius: float) -> np.ndarray:
    out = img.copy()
    yy, xx = np.ogrid[:SIZE, :SIZE]
    blob = (yy - SIZE / 2) ** 2 + ((xx - SIZE / 2) * 0.8) ** 2 < radius**2
    out[blob] = _lab_to_srgb(*lab)
    return out


@pytest.mark.parametrize(("skin", "lesion"), [
    ((75.0, 8.0, 12.0), (30.0, 15.0, 20.0)),   # very light skin, brown naevus
    ((62.0, 10.0, 17.0), (25.0, 5.0, 8.0)),    # intermediate skin, very dark lesion
    ((45.0, 12.0, 20.0), (22.0, 6.0, 10.0)),   # brown skin, darker lesion
])
def test_central_dark_lesion_barely_moves_the_estimate(
    skin: tuple[float, float, float], lesion: tuple[float, float, float]
) -> None:
    bare = ita_degrees(_patch(skin, noise=2.0))
    # a lesion covering about 35 % of the image, centred
    with_lesion = ita_degrees(_with_lesion(_patch(skin, noise=2.0), lesion, radius=0.3 * SIZE))
    assert bare is not None
    assert with_lesion is not None
    assert with_lesion == pytest.approx(bare, abs=1.0)
    # without the skin-pixel selection, the lesion would pull the median down clearly
    naive = srgb_to_lab(_with_lesion(_patch(skin), lesion, radius=0.45 * SIZE)).reshape(-1, 3)
    naive_ita = ita_from_lab(float(np.median(naive[:, 0])), float(np.median(naive[:, 2])))
    assert naive_ita is None or abs(naive_ita - bare) > 5.0


def test_black_vignette_corners_are_excluded() -> None:
    skin = (66.0, 10.0, 16.0)
    img = _patch(skin, noise=2.0)
    yy, xx = np.ogrid[:SIZE, :SIZE]
    r = np.sqrt((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2)
    # black outside the dermatoscope's circle with a soft 6-px grey rim, as in real images
    fade = np.clip((r - 0.5 * SIZE) / 6.0, 0.0, 1.0)[..., None]
    vignetted = np.rint(img * (1.0 - fade)).astype(np.uint8)
    assert (vignetted.max(axis=-1) < 10).mean() > 0.15  # corners really are black
    ita = ita_degrees(vignetted)
    assert ita is not None
    assert ita == pytest.approx(_expected_ita(skin[0], skin[2]), abs=1.0)


def test_hair_and_specular_highlights_are_excluded() -> None:
    skin = (70.0, 9.0, 14.0)
    img = _patch(skin, noise=2.0)
    img[:, ::16] = (20, 15, 12)        # dark hairs every 16 px
    img[40:60, 40:200:30] = 255         # glare
    ita = ita_degrees(img)
    assert ita is not None
    assert ita == pytest.approx(_expected_ita(skin[0], skin[2]), abs=1.0)


def test_not_estimable_inputs() -> None:
    assert ita_degrees(np.zeros((SIZE, SIZE, 3), np.uint8)) is None          # all black
    assert ita_degrees(np.full((SIZE, SIZE, 3), 255, np.uint8)) is None      # all glare
    assert ita_degrees(np.full((SIZE, SIZE), 128, np.uint8)) is None         # grey 2-D
    blue = np.broadcast_to(np.array([150, 160, 200], np.uint8), (SIZE, SIZE, 3))
    assert ita_degrees(blue) is None                                       # b* < 0


def test_rgba_and_float_inputs() -> None:
    img = _patch((66.0, 10.0, 16.0))
    want = ita_degrees(img)
    rgba = np.concatenate([img, np.full((SIZE, SIZE, 1), 255, np.uint8)], axis=-1)
    assert ita_degrees(rgba) == pytest.approx(want)
    assert ita_degrees(img.astype(np.float64)) == pytest.approx(want)


def test_ita_for_images_keeps_order_and_threads_agree() -> None:
    images = [_patch(lab) for lab, _ in SKINS] + [np.zeros((32, 32, 3), np.uint8)]
    serial = ita_for_images(images)
    assert serial == ita_for_images(images, workers=2)
    assert [ita_band(v) for v in serial] == [*BANDS, NOT_ESTIMABLE]


# --- real images -------------------------------------------------------------------------------


def _real_images(data_dir: Path, n: int, source: str | None = None) -> list[np.ndarray]:
    meta = pd.read_csv(data_dir / "metadata.csv", dtype=str, keep_default_na=False)
    if source is not None:
        meta = meta[meta["source"] == source]
    ids = meta.sort_values("image_id")["image_id"].head(n).tolist()
    return [np.asarray(Image.open(data_dir / "images" / f"{i}.jpg").convert("RGB")) for i in ids]


def test_real_images_give_plausible_values(data_dir: Path) -> None:
    values = ita_for_images(_real_images(data_dir, 40, source="ham10000"))
    got = [v for v in values if v is not None]
    # about a third of HAM10000 images have a purple cast (skin b* <= 0): not estimable
    assert len(got) >= 0.6 * len(values)
    # human skin lies within about -60 to +90 degrees; HAM10000 is mostly light skin
    assert all(-70.0 < v < 90.0 for v in got)
    assert np.median(got) > 28.0


def test_blue_cast_archive_images_are_not_estimable(data_dir: Path) -> None:
    # the early ISIC archive (MSK) images have a blue/grey cast: skin b* <= 0, ITA undefined
    for image_id in ("ISIC_0000000", "ISIC_0000002", "ISIC_0000007"):
        img = np.asarray(Image.open(data_dir / "images" / f"{image_id}.jpg").convert("RGB"))
        assert ita_degrees(img) is None


def test_speed_per_256_px_image(data_dir: Path) -> None:
    images = _real_images(data_dir, 40)
    ita_degrees(images[0])
    start = time.perf_counter()
    for im in images:
        ita_degrees(im)
    per_image = (time.perf_counter() - start) / len(images)
    assert per_image < 0.010  # measured about 1.4 ms on an idle core; 10 ms leaves room for CI
