"""Training data for torch: an in-memory image cache and the dataset that turns cached images
into network inputs with ``dermsight.preprocess`` (the serving path) and, for training, the
augmentations of ``train.augment`` under the same ``InputSpec``. The tables and the split are in
``train.table``."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from dermsight.io.decode import decode_image, verify_image
from dermsight.io.errors import ImageDecodeError
from dermsight.preprocess import (
    InputSpec,
    MetaSpec,
    encode_meta,
    normalize,
    preprocess,
    resize_rgb,
)
from dermsight.records import Metadata
from dermsight.train.augment import Augment, swap_style
from dermsight.train.config import ConfigError

_T = TypeVar("_T")


def _read_or_reason(read: Callable[[str], _T], path: str) -> _T | str:
    """``read(path)``, or why the image cannot be read (``path: reason``)."""
    try:
        return read(path)
    except ImageDecodeError as exc:
        return f"{path}: {exc.reason}"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"


def _decode_or_reason(path: str) -> np.ndarray | str:
    """The decoded image, or why it cannot be read (``path: reason``)."""
    return _read_or_reason(decode_image, path)


def _reason(path: str) -> str | None:
    """Why the image at ``path`` cannot be read (None: it can), not keeping it."""
    checked = _read_or_reason(verify_image, path)
    return checked if isinstance(checked, str) else None


def unreadable_error(reasons: list[str], n: int) -> ConfigError:
    return ConfigError(f"{len(reasons)} of {n} images cannot be read: " + "; ".join(reasons[:3])
                       + (" ..." if len(reasons) > 3 else "")
                       + " (replace them, or remove their rows from the CSV)")


def load_images(paths: list[str], desc: str = "decode") -> list[np.ndarray]:
    """The decoded images of ``paths``; ``ConfigError`` naming the files that cannot be read
    (all of them counted, the first three named)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        decoded = list(tqdm(pool.map(_decode_or_reason, paths), total=len(paths), desc=desc,
                            mininterval=5))
    reasons = [d for d in decoded if isinstance(d, str)]
    if reasons:
        raise unreadable_error(reasons, len(paths))
    return [d for d in decoded if not isinstance(d, str)]


def unreadable_reasons(paths: list[str], desc: str = "check") -> list[str]:
    """Why each image of ``paths`` that cannot be read cannot be (``path: reason``), checked as
    ``check_images`` checks."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return [r for r in tqdm(pool.map(_reason, paths), total=len(paths), desc=desc,
                                mininterval=5) if r is not None]


def check_images(paths: list[str], desc: str = "check") -> None:
    """``load_images``' check without keeping the images (for the splits training does not
    load, before it starts): the same refusals and message, faster (``verify_image``: JPEGs
    decoded at 1/8 scale)."""
    reasons = unreadable_reasons(paths, desc)
    if reasons:
        raise unreadable_error(reasons, len(paths))


@dataclass(frozen=True)
class TrainingDraws:
    """What a training set changes in each image, drawn anew from (seed, epoch, image): the
    augmentations, the cross-source style swap (``style_mix``: its probability, ``style_beta``:
    the largest swapped window) and the metadata dropout. Evaluation sets have none."""

    augment: Augment
    seed: int = 0
    meta_dropout: float = 0.0
    style_mix: float = 0.0
    style_beta: float = 0.02


class LesionDataset(Dataset):
    """Cached RGB images + metadata -> (image tensor, meta vector, label, sample weight).

    Evaluation uses ``preprocess`` (the serving path); training augments the RGB image with the
    geometry of the same ``spec`` (crop, size, interpolation) and then applies the same
    ``normalize`` (colour constancy, scale, standardise).
    """

    def __init__(
        self,
        images: list[np.ndarray],
        metas: list[Metadata],
        labels: np.ndarray,
        spec: InputSpec,
        meta_spec: MetaSpec,
        *,
        draws: TrainingDraws | None = None,
        sources: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        self.images, self.metas, self.labels = images, metas, labels
        #: per-image teacher probabilities (N x C) when distilling (``train.distill_weight``),
        #: set by ``pipeline.make_datasets`` on the training set
        self.soft_targets: np.ndarray | None = None
        self.spec, self.meta_spec = spec, meta_spec
        self.draws, self.epoch = draws, 0
        self.sources = sources
        #: for each source, the indices of the images from every other source (style donors)
        self._donors = {} if sources is None else {
            s: np.flatnonzero(sources != s) for s in np.unique(sources)}
        self.weights = np.ones(len(images), np.float32) if weights is None else \
            np.asarray(weights, np.float32)

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def donor(self, i: int, rng: np.random.Generator) -> np.ndarray | None:
        """A random image from another source than image ``i``'s, at the network's size."""
        if self.sources is None:
            return None
        others = self._donors[self.sources[i]]
        if not len(others):
            return None
        img = self.images[int(others[rng.integers(len(others))])]
        return resize_rgb(img, self.spec)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, float]:
        img, meta = self.images[i], self.metas[i]
        d = self.draws
        if d is not None:
            rng = np.random.default_rng((d.seed, self.epoch, i))
            aug = d.augment(img, self.spec, rng)
            if d.style_mix and rng.random() < d.style_mix:
                donor = self.donor(i, rng)
                if donor is not None:
                    aug = swap_style(aug, donor, rng.uniform(0.2, 1.0) * d.style_beta,
                                     rng.uniform(0.5, 1.0))
            x = normalize(aug, self.spec)
            if d.meta_dropout and rng.random() < d.meta_dropout:
                meta = Metadata()
            elif d.meta_dropout:
                meta = Metadata(
                    age=None if rng.random() < 0.1 else meta.age,
                    sex=None if rng.random() < 0.1 else meta.sex,
                    site=None if rng.random() < 0.1 else meta.site,
                )
        else:
            x = preprocess(img, self.spec)
        m = encode_meta(meta, self.meta_spec)
        return torch.from_numpy(x), torch.from_numpy(m), int(self.labels[i]), \
            float(self.weights[i])


class WithIndex(Dataset):
    """A dataset's items with each item's index appended (for per-image training targets)."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        return (*self.ds[i], i)
