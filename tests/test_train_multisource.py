"""Model v2 training data (needs the [train] extra): several data folders with their own
metadata layouts, per-folder splits that keep the earlier split, leave-one-source-out, the
dermoscopy augmentations, and colour constancy identical in training and ONNX serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from dermsight.io.decode import decode_image  # noqa: E402
from dermsight.preprocess import (  # noqa: E402
    InputSpec,
    MetaSpec,
    preprocess,
    resize_rgb,
    shades_of_gray,
)
from dermsight.records import Metadata  # noqa: E402
from dermsight.train.augment import Augment, dermoscopy_effects  # noqa: E402
from dermsight.train.config import ConfigError, DataConfig, load_config  # noqa: E402
from dermsight.train.data import LesionDataset, TrainingDraws  # noqa: E402
from dermsight.train.pipeline import make_datasets, prepare_data  # noqa: E402
from dermsight.train.table import EXTERNAL, assign_split, load_table, row_meta  # noqa: E402

pytestmark = pytest.mark.train
NINE = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


@pytest.fixture(scope="module")
def isic2020_dir(data_dir: Path) -> Path:
    root = data_dir.parent / "isic2020-sample"
    if not (root / "metadata.csv").exists():
        pytest.fail(f"shared data not found at {root}")
    return root


def test_two_folders_one_table_with_normalised_metadata(data_dir: Path,
                                                        isic2020_dir: Path) -> None:
    cfg = DataConfig(root=[str(data_dir), str(isic2020_dir)], classes=NINE)
    df = load_table(cfg)
    assert set(df["root"]) == {data_dir.name, isic2020_dir.name}
    assert len(df) == len(pd.read_csv(data_dir / "metadata.csv")) + \
        len(pd.read_csv(isic2020_dir / "metadata.csv"))
    # UNK exists only in the 2020 folder (the source confound the card must report)
    assert set(df.loc[df["diagnosis"] == "UNK", "source"]) == {"isic2020"}
    # both metadata layouts end up in the same columns and parse
    sub = df[df["root"] == isic2020_dir.name].iloc[0]
    m = row_meta(sub)
    assert m.age is not None
    assert m.sex in ("male", "female")
    assert m.site is not None
    ham = df[df["source"] == "ham10000"].iloc[0]
    assert row_meta(ham).age is not None
    assert "torso" in set(df.loc[df["root"] == isic2020_dir.name, "site"])  # 2020: side-less
    assert Path(df["path"].iloc[-1]).exists()
    # an invalid value becomes missing for that field only
    bad = pd.Series({"age": "abc", "sex": "female", "site": "elbow?"})
    assert row_meta(bad) == Metadata(age=None, sex="female", site=None)


def test_adding_a_folder_keeps_the_earlier_split_and_never_splits_a_patient(
        data_dir: Path, isic2020_dir: Path) -> None:
    one = DataConfig(root=str(data_dir), exclude_source_repos=[
        "AmitBytesSage/Melanoma-Skin-Cancer-Detection-Model"])
    two = DataConfig(root=[str(data_dir), str(isic2020_dir)], classes=NINE,
                     exclude_source_repos=one.exclude_source_repos)
    d1, d2 = load_table(one), load_table(two)
    s1 = pd.Series(assign_split(d1, one).to_numpy(), index=d1["image_id"])
    s2 = pd.Series(assign_split(d2, two).to_numpy(), index=d2["image_id"])
    assert (s2.loc[s1.index] == s1).all()
    # the committed split of the shipped 8-class model is the same split
    shipped = pd.read_csv(Path(__file__).resolve().parents[1] / "configs" / "default-split.csv")
    assert (s2.loc[shipped["image_id"]].to_numpy() == shipped["split"].to_numpy()).all()
    d2["split"] = s2.to_numpy()
    assert d2.groupby("group_id")["split"].nunique().max() == 1
    p2020 = d2[d2["source"] == "isic2020"]
    assert set(p2020["split"]) == {"train", "val", "test"}
    assert p2020.groupby("patient_id")["split"].nunique().max() == 1  # by patient


def test_holdout_source_is_external_and_leaves_the_rest_alone(data_dir: Path) -> None:
    base = DataConfig(root=str(data_dir))
    loso = DataConfig(root=str(data_dir), holdout_sources=["isic2017"])
    df = load_table(base)
    s_base, s_loso = assign_split(df, base), assign_split(df, loso)
    held = df["source"] == "isic2017"
    assert held.sum() > 1000
    assert (s_loso[held] == EXTERNAL).all()
    assert (s_loso[~held] == s_base[~held]).all()


def test_duplicate_image_ids_across_folders_are_refused(data_dir: Path, tmp_path: Path) -> None:
    meta = pd.read_csv(data_dir / "metadata.csv", dtype=str).head(3)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        meta.to_csv(tmp_path / name / "metadata.csv", index=False)
    with pytest.raises(ConfigError, match="more than one data folder"):
        load_table(DataConfig(root=[str(tmp_path / "a"), str(tmp_path / "b")]))


def test_dermoscopy_augmentation_is_reproducible_and_varied(data_dir: Path,
                                                            sample_ids: list[str]) -> None:
    img = decode_image(data_dir / "images" / f"{sample_ids[0]}.jpg")
    aug, spec = Augment(dermoscopy=True), InputSpec(size=96)
    a = aug(img, spec, np.random.default_rng(7))
    assert a.shape == (96, 96, 3)
    assert a.dtype == np.uint8
    assert np.array_equal(a, aug(img, spec, np.random.default_rng(7)))
    outs = [aug(img, spec, np.random.default_rng(i)) for i in range(40)]
    corners = [o[:4, :4].mean() for o in outs]
    # some draws add a black vignette/border (dark corners), most keep the skin
    assert min(corners) < 30 < max(corners)


def test_dermoscopy_strength_scales_how_often_the_effects_happen(
        data_dir: Path, sample_ids: list[str]) -> None:
    """``dermoscopy_strength`` multiplies each effect's probability (capped at 1): near 0 an
    image comes back untouched, at 2 fewer images escape every effect than at 1, and far above 1
    none does; the config's value reaches the training images' augmentation."""
    img = resize_rgb(decode_image(data_dir / "images" / f"{sample_ids[0]}.jpg"),
                     InputSpec(size=64))

    def touched(strength: float) -> int:
        return sum(not np.array_equal(dermoscopy_effects(img, np.random.default_rng(i),
                                                         strength), img)
                   for i in range(200))

    once, twice = touched(1.0), touched(2.0)
    assert touched(1e-6) == 0
    assert 130 < once < twice  # about 79 % of the images at 1, 98 % at 2
    assert touched(50.0) == 200
    cfg = load_config(Path(__file__).parents[1] / "configs" / "default.yaml",
                      [f"data.root={data_dir}", "data.limit=8", "input.size=64",
                       "train.dermoscopy_strength=2"])
    built = make_datasets(cfg, prepare_data(cfg), ("train", "val"))
    draws = built["train"].draws
    assert draws is not None
    assert draws.augment.dermoscopy
    assert draws.augment.dermoscopy_strength == 2
    assert built["val"].draws is None  # validation is never augmented
    for bad in ("0", "-1"):
        with pytest.raises(ConfigError, match="dermoscopy_strength"):
            load_config(Path(__file__).parents[1] / "configs" / "default.yaml",
                        [f"train.dermoscopy_strength={bad}"])


def _dihedral(x: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of a (C, H, W) array."""
    rots = [np.rot90(x, k, axes=(1, 2)) for k in range(4)]
    return rots + [r[:, :, ::-1] for r in rots]


@pytest.mark.parametrize("crop", ["center_square", "none"])
def test_training_feeds_the_serving_geometry_of_the_spec(
        data_dir: Path, sample_ids: list[str], crop: str) -> None:
    """What training feeds the network follows the InputSpec (crop, size, interpolation, colour
    constancy) exactly as serving does: with the random crop and the colour jitter switched off,
    a training tensor is one of the 8 flips/rotations of ``preprocess(image, spec)``; changing
    the spec's interpolation changes the training tensor."""
    img = decode_image(data_dir / "images" / f"{sample_ids[2]}.jpg")[:, 40:]  # 256 x 216
    neutral = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, hue=0.0)
    fed: dict[str, np.ndarray] = {}
    for interpolation in ("bicubic", "nearest", "bilinear"):
        spec = InputSpec(size=72, interpolation=interpolation, crop=crop,
                         color_constancy="shades_of_gray")
        ds = LesionDataset([img], [Metadata()], np.zeros(1, int), spec, MetaSpec(),
                           draws=TrainingDraws(neutral, seed=3))
        fed[interpolation] = ds[0][0].numpy()
        served = preprocess(img, spec)
        # equal up to float32 summation order (colour constancy sums a rotated image)
        assert min(np.abs(fed[interpolation] - v).max() for v in _dihedral(served)) < 1e-5, \
            interpolation
    assert np.abs(fed["bicubic"] - fed["nearest"]).max() > 0.01  # >= 1 grey level, not rounding
    assert np.abs(fed["bicubic"] - fed["bilinear"]).max() > 0.01


def test_shades_of_gray_removes_a_colour_cast(data_dir: Path, sample_ids: list[str]) -> None:
    img = decode_image(data_dir / "images" / f"{sample_ids[1]}.jpg")
    cast = np.clip(img.astype(np.float32) * np.array([0.8, 1.0, 1.2]), 0, 255).astype(np.uint8)
    a, b = shades_of_gray(img), shades_of_gray(cast)
    raw_gap = np.abs(img.astype(np.float32) - cast).mean()
    assert np.abs(a - b).mean() < 0.35 * raw_gap
    # neutral illuminant: the channel norms come out (nearly) equal
    norms = np.power(np.mean(np.power(b.reshape(-1, 3), 6.0), 0), 1 / 6)
    assert norms.max() / norms.min() < 1.02


def test_colour_constancy_is_the_same_in_training_and_onnx_serving(
        data_dir: Path, sample_ids: list[str], tmp_path: Path) -> None:
    """The training dataset's tensors, the serving preprocess and the exported ONNX bundle run
    by the facade agree: colour constancy lives in the one shared preprocessing function."""
    from dermsight import Dermsight
    from dermsight.bundle import Card, Thresholds, load_bundle, save_bundle
    from dermsight.preprocess import encode_meta
    from dermsight.train.export import OUTPUTS, export_onnx
    from dermsight.train.network import LesionNet

    spec = InputSpec(size=96, color_constancy="shades_of_gray")
    meta_spec = MetaSpec()
    imgs = [decode_image(data_dir / "images" / f"{i}.jpg") for i in sample_ids[:4]]
    metas = [Metadata(age=50, sex="female")] * len(imgs)
    ds = LesionDataset(imgs, metas, np.zeros(len(imgs), int), spec, meta_spec)
    x_train = torch.stack([ds[i][0] for i in range(len(imgs))])
    x_serve = np.stack([preprocess(im, spec) for im in imgs])
    assert np.array_equal(x_train.numpy(), x_serve)
    assert not np.allclose(x_serve, np.stack([preprocess(im, InputSpec(size=96)) for im in imgs]))

    torch.manual_seed(0)
    net = LesionNet("tf_efficientnet_lite0", 9, meta_spec.dim, pretrained=False).eval()
    card = Card(name="t", version="0", classes=NINE, input_spec=spec, meta_spec=meta_spec,
                temperature=1.0, thresholds=Thresholds(0.5, 0.2), onnx_sha256="", outputs=OUTPUTS)
    save_bundle(tmp_path / "b", export_onnx(net, spec.size), card)
    model = Dermsight(load_bundle(tmp_path / "b"), threads=1)
    assert model.card.input_spec.color_constancy == "shades_of_gray"
    m = torch.from_numpy(np.stack([encode_meta(mt, meta_spec) for mt in metas]))
    with torch.no_grad():
        ref = net(x_train, m).numpy()
    served = np.stack([model.run_arrays(*[a[None] for a in model.prepare(im, mt)])["logits"][0]
                       for im, mt in zip(imgs, metas, strict=True)])
    assert np.abs(served - ref).max() < 1e-4
