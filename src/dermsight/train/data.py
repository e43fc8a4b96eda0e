"""Training data: the labelled table, the fixed group-disjoint test/val/train split, an in-memory
image cache, dermoscopy augmentations, and torch datasets built on ``dermsight.preprocess``."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold
from torch.utils.data import Dataset
from tqdm import tqdm

from dermsight.io.decode import decode_image
from dermsight.preprocess import InputSpec, MetaSpec, encode_meta, normalize, preprocess
from dermsight.records import Metadata
from dermsight.train.config import DataConfig
from dermsight.train.network import ConfigError

SPLITS = ("train", "val", "test")


def load_table(cfg: DataConfig) -> pd.DataFrame:
    """metadata.csv with normalised metadata columns, filtered to the configured classes."""
    root = Path(cfg.root)
    csv = root / "metadata.csv"
    if not csv.exists():
        raise ConfigError(f"data folder {root} has no metadata.csv (set data.root)")
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = {"image_id", "diagnosis", cfg.group_col} - set(df.columns)
    if missing:
        raise ConfigError(f"{csv} lacks columns {sorted(missing)}")
    if cfg.exclude_source_repos and "source_repo" in df.columns:
        df = df[~df["source_repo"].isin(cfg.exclude_source_repos)]
    df = df[df["diagnosis"].isin(cfg.classes)].reset_index(drop=True)
    df["path"] = [str(root / "images" / f"{i}.jpg") for i in df["image_id"]]
    df["label"] = df["diagnosis"].map({c: i for i, c in enumerate(cfg.classes)}).astype(int)
    return df


def assign_split(df: pd.DataFrame, cfg: DataConfig) -> pd.Series:
    """Stratified, group-disjoint test / val / train assignment, deterministic in ``split_seed``.

    The table is cut into 20 stratified group folds; the first ``test_fraction`` of them form the
    test split and the next ``val_fraction`` the validation split.
    """
    n_folds = 20
    order = df.sort_values("image_id").index
    sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=cfg.split_seed)
    fold = pd.Series(-1, index=df.index)
    sub = df.loc[order]
    for k, (_, idx) in enumerate(sgkf.split(sub, sub["diagnosis"], groups=sub[cfg.group_col])):
        fold.loc[sub.index[idx]] = k
    n_test = round(cfg.test_fraction * n_folds)
    n_val = round(cfg.val_fraction * n_folds)
    split = pd.Series("train", index=df.index)
    split[fold < n_test] = "test"
    split[(fold >= n_test) & (fold < n_test + n_val)] = "val"
    return split


def split_hash(df: pd.DataFrame, split: pd.Series, name: str) -> str:
    ids = sorted(df.loc[split == name, "image_id"])
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def row_meta(row: pd.Series) -> Metadata:
    """Metadata from a metadata.csv row (invalid values are treated as missing)."""
    try:
        return Metadata.parse(row.get("age_approx"), row.get("sex"), row.get("anatom_site"))
    except ValueError:
        return Metadata()


def load_images(paths: list[str], desc: str = "decode") -> list[np.ndarray]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(tqdm(pool.map(decode_image, paths), total=len(paths), desc=desc,
                         mininterval=5))


# --- augmentation ------------------------------------------------------------------------------


@dataclass
class Augment:
    """Dermoscopy augmentations on RGB uint8: the 8 flips/rotations, random resized crop,
    brightness/contrast/saturation/hue jitter. Output is (size, size) uint8 RGB."""

    size: int
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (0.8, 1.25)
    jitter: float = 0.15
    hue: float = 0.03

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        area = h * w
        for _ in range(10):
            a = area * rng.uniform(*self.scale)
            r = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
            cw, ch = int(round(np.sqrt(a * r))), int(round(np.sqrt(a / r)))
            if 0 < cw <= w and 0 < ch <= h:
                break
        else:
            cw = ch = min(h, w)
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(img[top : top + ch, left : left + cw])
        out = np.asarray(crop.resize((self.size, self.size), Image.Resampling.BICUBIC))
        k = int(rng.integers(0, 8))
        out = np.rot90(out, k % 4)
        if k >= 4:
            out = out[:, ::-1]
        x = out.astype(np.float32)
        b = 1 + rng.uniform(-self.jitter, self.jitter)
        c = 1 + rng.uniform(-self.jitter, self.jitter)
        s = 1 + rng.uniform(-self.jitter, self.jitter)
        grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = x * b
        x = (x - grey.mean() * b) * c + grey.mean() * b
        g = (x @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
        x = g + (x - g) * s
        if self.hue:
            shift = rng.uniform(-self.hue, self.hue) * 255
            x = x + np.array([shift, 0.0, -shift], np.float32)
        return np.clip(x + 0.5, 0, 255).astype(np.uint8)


class LesionDataset(Dataset):
    """Cached RGB images + metadata -> (image tensor, meta vector, label).

    Evaluation uses ``preprocess`` (the serving path); training augments the RGB image first and
    then applies the same ``normalize``.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        metas: list[Metadata],
        labels: np.ndarray,
        spec: InputSpec,
        meta_spec: MetaSpec,
        augment: Augment | None = None,
        meta_dropout: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.images, self.metas, self.labels = images, metas, labels
        self.spec, self.meta_spec = spec, meta_spec
        self.augment, self.meta_dropout = augment, meta_dropout
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        img, meta = self.images[i], self.metas[i]
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            x = normalize(self.augment(img, rng), self.spec)
            if self.meta_dropout and rng.random() < self.meta_dropout:
                meta = Metadata()
            elif self.meta_dropout:
                meta = Metadata(
                    age=None if rng.random() < 0.1 else meta.age,
                    sex=None if rng.random() < 0.1 else meta.sex,
                    site=None if rng.random() < 0.1 else meta.site,
                )
        else:
            x = preprocess(img, self.spec)
        m = encode_meta(meta, self.meta_spec)
        return torch.from_numpy(x), torch.from_numpy(m), int(self.labels[i])
