"""Training data: the labelled table, the fixed group-disjoint test/val/train split, an in-memory
image cache, dermoscopy augmentations, and torch datasets built on ``dermsight.preprocess``."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageFilter
from sklearn.model_selection import StratifiedGroupKFold
from torch.utils.data import Dataset
from tqdm import tqdm

from dermsight.io.decode import decode_image
from dermsight.preprocess import (
    _RESAMPLE,
    InputSpec,
    MetaSpec,
    encode_meta,
    normalize,
    preprocess,
)
from dermsight.records import Metadata
from dermsight.train.config import ConfigError, DataConfig

SPLITS = ("train", "val", "test")
#: rows of a held-out source (leave-one-source-out): never trained, tuned or tested on
EXTERNAL = "external"

#: metadata column names across the ISIC/SIIM layouts -> the normalised name
_META_COLUMNS = {"age": ("age", "age_approx"), "sex": ("sex",),
                 "site": ("site", "anatom_site", "anatom_site_general_challenge")}


def _read_root(root: Path, cfg: DataConfig) -> pd.DataFrame:
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
    # one set of metadata columns whatever the layout (2020: age/site; 2019 + HAM: age_approx /
    # anatom_site); values are parsed (and invalid ones dropped) by ``row_meta``
    for name, candidates in _META_COLUMNS.items():
        col = next((c for c in candidates if c in df.columns), None)
        df[name] = df[col] if col is not None else ""
    if "source" not in df.columns:
        df["source"] = root.name
    df["root"] = root.name
    df["path"] = [str(root / "images" / f"{i}.jpg") for i in df["image_id"]]
    return df


def load_table(cfg: DataConfig) -> pd.DataFrame:
    """All configured data folders as one table with normalised metadata columns (``age``,
    ``sex``, ``site``), ``source`` and ``root`` per image, filtered to the configured classes."""
    frames = [_read_root(Path(r), cfg) for r in cfg.roots]
    df = pd.concat(frames, ignore_index=True)
    dup = df["image_id"].duplicated(keep=False)
    if dup.any():
        raise ConfigError(f"{int(dup.sum())} image ids occur in more than one data folder "
                          f"(e.g. {df.loc[dup, 'image_id'].iloc[0]}): remove the duplicates")
    # a group id must never be shared across folders by accident (patient ids are per data set)
    df[cfg.group_col] = df["root"] + ":" + df[cfg.group_col].astype(str)
    df["label"] = df["diagnosis"].map({c: i for i, c in enumerate(cfg.classes)}).astype(int)
    return df


def assign_split(df: pd.DataFrame, cfg: DataConfig) -> pd.Series:
    """Stratified, group-disjoint test / val / train assignment, deterministic in ``split_seed``.

    Each data folder is split on its own (so adding a folder never moves the images of another
    one between splits: the single-folder split of earlier models is kept exactly). Within a
    folder, the table is cut into 20 stratified group folds; the first ``test_fraction`` of them
    form the test split and the next ``val_fraction`` the validation split. Rows whose source is
    in ``holdout_sources`` become ``external`` (leave-one-source-out).
    """
    if "root" in df.columns and df["root"].nunique() > 1:
        split = pd.concat([_split_one(part, cfg) for _, part in df.groupby("root", sort=True)])
        split = split.reindex(df.index)
    else:
        split = _split_one(df, cfg)
    if cfg.holdout_sources:
        split[df["source"].isin(cfg.holdout_sources)] = EXTERNAL
    return split


def _split_one(df: pd.DataFrame, cfg: DataConfig) -> pd.Series:
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
    """Metadata from a ``load_table`` row (an invalid value is treated as missing)."""
    return Metadata.lenient(row.get("age"), row.get("sex"), row.get("site"))


def load_images(paths: list[str], desc: str = "decode") -> list[np.ndarray]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(tqdm(pool.map(decode_image, paths), total=len(paths), desc=desc,
                         mininterval=5))


# --- augmentation ------------------------------------------------------------------------------


@dataclass
class Augment:
    """Augmentations on RGB uint8: the 8 flips/rotations, random resized crop,
    brightness/contrast/saturation/hue jitter. Output is (size, size) uint8 RGB.

    With ``dermoscopy=True`` also what other dermatoscopes and cameras do to an image (each with
    its own probability): zoom-out onto a black border, a circular dermatoscope vignette, blur,
    JPEG re-compression, gamma, and hairs.
    """

    size: int
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (0.8, 1.25)
    jitter: float = 0.15
    hue: float = 0.03
    dermoscopy: bool = False
    resample: str = "bicubic"

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = self._geometric_colour(img, rng)
        return dermoscopy_effects(out, rng) if self.dermoscopy else out

    def _geometric_colour(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
        out = np.asarray(crop.resize((self.size, self.size), _RESAMPLE[self.resample]))
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


def dermoscopy_effects(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera/dermatoscope variation on a square uint8 RGB image (same size out)."""
    s = img.shape[0]
    pil = Image.fromarray(np.ascontiguousarray(img))
    if rng.random() < 0.25:  # zoom out: the lesion smaller, a black (or dark) border around
        f = rng.uniform(0.6, 0.9)
        small = pil.resize((max(1, int(s * f)),) * 2, Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (s, s), (int(rng.integers(0, 25)),) * 3)
        room = s - small.size[0] + 1
        off = int(rng.integers(0, room)), int(rng.integers(0, room))
        canvas.paste(small, off)
        pil = canvas
    if rng.random() < 0.15:  # hairs: thin dark curves
        draw = ImageDraw.Draw(pil)
        colour = tuple(int(v) for v in rng.integers(10, 60, 3))
        for _ in range(int(rng.integers(1, 7))):
            pts = [tuple(float(v) for v in rng.uniform(0, s, 2))]
            angle = rng.uniform(0, 2 * np.pi)
            for _ in range(4):
                angle += rng.normal(0, 0.3)
                step = s / 8
                px, py = pts[-1]
                pts.append((px + step * np.cos(angle), py + step * np.sin(angle)))
            draw.line(pts, fill=colour, width=int(rng.integers(1, 3)))
    if rng.random() < 0.15:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.5)))
    if rng.random() < 0.2:
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(rng.integers(35, 90)))
        pil = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    x = np.asarray(pil, np.float32)
    if rng.random() < 0.3:
        gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
        x = 255.0 * np.power(x / 255.0, gamma)
    if rng.random() < 0.3:  # circular dermatoscope field of view, black outside
        r = rng.uniform(0.45, 0.75) * s
        cy, cx = ((s - 1) / 2 + rng.normal(0, s * 0.03, 2)).tolist()
        yy, xx = np.mgrid[0:s, 0:s]
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        mask = np.clip((r - dist) / (0.04 * s) + 0.5, 0.0, 1.0)[:, :, None]
        x = x * mask + (1 - mask) * np.float32(rng.uniform(0, 20))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


class LesionDataset(Dataset):
    """Cached RGB images + metadata -> (image tensor, meta vector, label).

    Evaluation uses ``preprocess`` (the serving path); training augments the RGB image first and
    then applies the same ``normalize``.
    """

    # ruff noqa below: known debt (issue 11): dataset options.
    def __init__(  # noqa: PLR0917
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
