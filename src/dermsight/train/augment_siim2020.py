"""The training augmentations of the 1st-place SIIM-ISIC 2020 solution (Ha, Liu & Liu 2020), in
albumentations 2.x.

Their list (``get_transforms`` of the solution's ``dataset.py``, albumentations 0.4): transpose and
flips; brightness ±0.2 and contrast ±0.2 (each p 0.75); one of motion / median / Gaussian blur
(kernel ≤ 5) or Gaussian noise (variance 5–30) (p 0.7); one of optical distortion (limit 1.0),
grid distortion (5 steps, limit 1.0) or an elastic transform (alpha 3) (p 0.7); CLAHE (clip 4,
p 0.7); hue / saturation / value shifts 10 / 20 / 10 (p 0.5); shift ±10 %, scale ±10 %, rotation
±15° on a black border (p 0.85); resize; one square hole of 0.375 x the side (p 0.7); ImageNet
normalisation. Here the flips, the resize and the normalisation stay ``Augment``'s and
``preprocess``'s (the serving geometry and standardisation); everything between replaces
``Augment.colour``. Translated to the 2.x API: the two brightness / contrast steps are
``RandomBrightnessContrast`` with one limit at 0; the noise's variance is given as its standard
deviation over 255; shift-scale-rotate is ``Affine``; the hole is ``CoarseDropout`` with one
hole of fixed size; the elastic transform no longer carries the random affine of 0.4's
(``alpha_affine``), which 2.x removed.

Every draw comes from the caller's numpy generator (one seed per image), so a training run stays
reproducible and the data-loader workers see the same images as the training process.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

import numpy as np


@lru_cache(maxsize=1)
def siim2020_pipeline() -> Any:
    """The albumentations ``Compose`` (built once per process; albumentations is imported only
    when the option is on, and then sets OpenCV to one thread)."""
    import albumentations as A
    import cv2

    # one image at a time, as the other augmentations: OpenCV's own thread pool would compete
    # with torch's threads (and, with ``train.num_workers``, with the other workers)
    cv2.setNumThreads(1)
    noise_std = (np.sqrt(5.0) / 255.0, np.sqrt(30.0) / 255.0)
    return A.Compose([
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.0, p=0.75),
        A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.2, p=0.75),
        A.OneOf([
            A.MotionBlur(blur_limit=5),
            A.MedianBlur(blur_limit=5),
            A.GaussianBlur(blur_limit=(3, 5)),
            A.GaussNoise(std_range=noise_std),
        ], p=0.7),
        A.OneOf([
            A.OpticalDistortion(distort_limit=1.0),
            A.GridDistortion(num_steps=5, distort_limit=1.0),
            A.ElasticTransform(alpha=3),
        ], p=0.7),
        A.CLAHE(clip_limit=4.0, p=0.7),
        A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=10, p=0.5),
        A.Affine(translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), rotate=(-15, 15),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.85),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.375, 0.375),
                        hole_width_range=(0.375, 0.375), fill=0, p=0.7),
    ])


def siim2020_augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The pipeline above on a uint8 RGB image (same size out), its draws seeded from ``rng``."""
    pipeline = siim2020_pipeline()
    # one generator shared by every step, drawn from in turn: ``Compose.set_random_seed`` would
    # give each step the same seed, and then their draws (whether each applies) coincide
    seed = int(rng.integers(0, 2**31 - 1))
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    out = pipeline(image=np.ascontiguousarray(img))["image"]
    return np.ascontiguousarray(out, dtype=np.uint8)
