"""Training configuration: YAML -> typed dataclasses, unknown keys rejected, ``a.b=value``
overrides from the command line."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dermsight import taxonomy
from dermsight.errors import DermsightError
from dermsight.preprocess import COLOR_CONSTANCY, CROPS, INTERPOLATIONS, InputSpec

#: train.select_metric: the validation figures the training loop logs, or the last epoch
SELECT_METRICS = ("balanced_accuracy", "nll", "mel_auc", "malignant_auc", "last")
#: calibration.tau_metric: pooled validation balanced accuracy, or the mean over its sources
TAU_METRICS = ("pooled", "source_mean")
#: the smallest input.size: one cell of the backbone's last feature map (stride 32)
MIN_INPUT_SIZE = 32


class ConfigError(DermsightError, ValueError):
    """A bad training/model configuration (unknown backbone, bad key, missing file)."""


@dataclass(frozen=True)
class Provenance:
    """Where a run came from, for its card: the config file and the command that reproduces it."""

    config: str
    command: str

    @classmethod
    def of(cls, config: str | Path, out: str | Path, overrides: list[str] | None = None
           ) -> Provenance:
        sets = "".join(f" --set '{o}'" for o in overrides or [])
        return cls(str(config), f"dermsight train --config {config} --out {out}{sets}")


@dataclass
class DataConfig:
    #: one data folder (metadata.csv + images/) or a list of them (multi-source training)
    root: str | list[str] = "../shared/data/isic-subset"
    group_col: str = "group_id"
    #: "lesion": a data folder without ``group_col`` (patient_id / group_id) may be grouped by
    #: its lesion_id (one patient's lesions may then land in different splits); null: refused
    group_col_fallback: str | None = None
    test_fraction: float = 0.15
    val_fraction: float = 0.15
    split_seed: int = 0
    exclude_source_repos: list[str] = field(default_factory=list)
    classes: list[str] = field(
        default_factory=lambda: ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    )
    limit: int | None = None
    #: sources (the ``source`` column) kept out of train/val/test and scored after training:
    #: the leave-one-source-out protocol (split "external")
    holdout_sources: list[str] = field(default_factory=list)

    @property
    def roots(self) -> list[str]:
        return [self.root] if isinstance(self.root, str) else list(self.root)


@dataclass
class ModelConfig:
    backbone: str = "tf_efficientnet_lite0"
    pretrained: bool = True
    weights: str | None = None
    meta_hidden: int = 32
    drop_rate: float = 0.2
    #: > 0: stochastic depth (Huang et al. 2016) in the backbone's blocks while training, the
    #: rate rising with depth to this value (timm ``drop_path_rate``); none when scoring
    drop_path_rate: float = 0.0
    freeze_fraction: float = 0.0
    unspecified_head: bool = False  # UNK (last class) by its own sigmoid, not a softmax share
    #: with ``unspecified_head``: UNK's sigmoid learns on the features without shaping them (its
    #: loss reaches only its own row of the classifier; the backbone and the metadata branch learn
    #: from the specific diagnoses alone). Training only: the scored network is the same function.
    #: A number d in [0, 1] removes that share of UNK's gradient into the features (true = 1)
    unspecified_detach: bool | float = False
    freeze_bn_stats: bool = False  # backbone BatchNorm keeps ImageNet statistics; scale/shift train


@dataclass
class InputConfig:
    size: int = 160
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    interpolation: str = "bicubic"
    crop: str = "center_square"
    crop_fraction: float = 1.0  # the network sees the centre of the field of view (timm crop_pct)
    color_constancy: str = "none"  # none | shades_of_gray
    cc_power: float = 6.0

    def spec(self) -> InputSpec:
        """The ``InputSpec`` that training, export, the card and serving all use."""
        return InputSpec(size=self.size, mean=tuple(self.mean),  # type: ignore[arg-type]
                         std=tuple(self.std),  # type: ignore[arg-type]
                         interpolation=self.interpolation, crop=self.crop,
                         crop_fraction=self.crop_fraction,
                         color_constancy=self.color_constancy, cc_power=self.cc_power)


@dataclass
class TrainLoopConfig:
    epochs: int = 12
    batch_size: int = 32
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    imbalance: str = "weighted_loss"
    class_weight_power: float = 0.5
    meta_dropout: float = 0.3
    ema_decay: float = 0.998
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # > 0: mix image + metadata pairs, lam ~ Beta(alpha, alpha)
    #: with mixup: a pair in which either image is UNK is left unmixed, so "no specific
    #: diagnosis" (one source's images) is never taught as a share of a blend of two cameras
    mixup_spare_unk: bool = False
    num_threads: int = 2
    #: processes that prepare the training and validation batches (augmentations, preprocessing):
    #: 0 = the training process itself (enough on a CPU); a GPU needs several to be kept busy.
    #: The batches are the same whatever the number (each image's draws come from (seed, epoch,
    #: image))
    num_workers: int = 0
    eval_batch_size: int = 64
    #: which epoch's (EMA) weights become best.pt: the best by this validation figure, or
    #: ``last`` (the final epoch's, whatever the figures)
    select_metric: str = "balanced_accuracy"
    augment: str = "basic"  # basic | dermoscopy (adds vignettes, zoom-out, blur, JPEG, gamma, hair)
    #: with ``augment: dermoscopy``: each effect's probability times this, capped at 1
    #: (``dermsight.train.augment.DERMOSCOPY_P``; 1 = the shipped recipe)
    dermoscopy_strength: float = 1.0
    amp: bool = True  # mixed precision when training on a CUDA GPU (ignored on CPU)
    #: > 0: each class's loss weight spread evenly over the sources that have it, to the power
    #: given (1 = every (source, class) cell of a class weighs the same): source no longer
    #: predicts the label as cheaply
    source_balance: float = 0.0
    #: which part of the loss those weights multiply: ``all`` (the whole cross-entropy) or
    #: ``specific`` (with ``model.unspecified_head`` only: the loss over the specific diagnoses;
    #: "unspecified or not" keeps weight 1, so UNK - from one collection - is learned as without
    #: the weights; ``dermsight.train.loop.specific_weighted_ce``)
    source_balance_scope: str = "all"
    #: probability of giving a training image the low-frequency look (colour, illumination,
    #: vignetting) of an image from another source (Fourier amplitude swap, Yang & Soatto 2020)
    style_mix: float = 0.0
    #: largest half-width of the swapped low-frequency window, as a fraction of the image side
    style_mix_beta: float = 0.02
    #: > 0: before fine-tuning, train only the head (metadata branch + classifier) this many
    #: epochs on the frozen backbone, with ``head_probe_lr`` on a cosine (LP-FT, Kumar et al.
    #: 2022: fine-tuning from a probed head distorts the pretrained features less)
    head_probe_epochs: int = 0
    head_probe_lr: float = 3e-3
    #: > 0: MixStyle (Zhou et al. 2021) with this probability per batch: the channel means and
    #: standard deviations of each image's features after the blocks ``mixstyle_after`` are mixed
    #: with another image's, weight ~ Beta(mixstyle_alpha, mixstyle_alpha); training only
    mixstyle_p: float = 0.0
    mixstyle_alpha: float = 0.1
    mixstyle_after: list[int] = field(default_factory=lambda: [1, 2, 3])
    #: > 0: the kept weights (best.pt) are the uniform mean of the (EMA) weights at the end of
    #: epochs swa_from..epochs (SWA), not the epoch chosen by ``select_metric``; that epoch's
    #: weights stay in best_epoch.pt for comparison
    swa_from: int = 0
    #: > 0: this share of the training images gets a random convolution (RandConv, Xu et al.
    #: 2021: random local colour and texture filters;
    #: ``dermsight.train.augment.random_convolution``)
    randconv_p: float = 0.0
    #: > 0: this share of the training images is shown smaller in a field of skin
    #: (``dermsight.train.augment.zoom_out_onto_skin``)
    wide_field_p: float = 0.0
    #: the 1st-place SIIM-ISIC 2020 augmentations (``dermsight.train.augment_siim2020``) in
    #: place of the colour jitter, after the same crop and flips; with either ``augment``
    siim2020_augment: bool = False
    #: > 0: this share of the training images is re-saved whole, before the crop, as a JPEG or
    #: lossy WebP of quality 30-90 (``dermsight.train.augment.resave_lossy``)
    resave_p: float = 0.0
    #: > 0: a class-conditional source adversary (``dermsight.train.adversary``) whose reversed
    #: gradient, ramped from 0 to this weight over the run, pushes the backbone towards features
    #: that do not tell the sources apart within a diagnosis; training only
    source_adversary: float = 0.0
    #: > 0: sharpness-aware minimisation (SAM, Foret et al. 2021) with this radius: each step's
    #: gradient is taken again at the weights moved this far up the loss's own gradient
    #: (``dermsight.train.sharpness``); each step then costs two passes of its batch
    sam_rho: float = 0.0
    #: > 0: the loss is (1 - w) * the labels' cross-entropy + w * the cross-entropy against the
    #: soft targets in ``distill_targets`` (mean teacher probabilities per training image, made
    #: by ``dermsight distill-targets``; ``dermsight.train.distill``)
    distill_weight: float = 0.0
    distill_targets: str | None = None


@dataclass
class CalibrationConfig:
    refer_sensitivity: float = 0.95
    monitor_sensitivity: float = 0.99
    gate_false_reject: float = 0.005
    #: classes named only when they lead by a margin (adjusted log-probability) fitted on
    #: validation: for a class
    #: whose training images all come from one collection (UNK); empty = no margins
    margin_classes: list[str] = field(default_factory=list)
    #: the largest margin whose validation balanced accuracy is within this of margin 0
    margin_tolerance: float = 0.01
    #: what tau of the logit adjustment maximises on validation: ``pooled`` balanced accuracy, or
    #: ``source_mean`` (the mean of each validation source's balanced accuracy)
    tau_metric: str = "pooled"


@dataclass
class EvaluationConfig:
    n_boot: int = 200
    linear_probe: bool = True
    #: ONNX Runtime threads for finalize's scoring (0: one per core). Not ``train.num_threads``:
    #: a run trained on one thread need not be scored on one (the scores were measured identical)
    num_threads: int = 0


@dataclass
class TrainConfig:
    name: str = "dermsight-model"
    version: str = "0.0.0"
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def malignant_excluded(self) -> list[str]:
        """Classes left out of the malignant probability's denominator (the card's
        ``malignant_excluded``): UNK when it has its own head (``model.unspecified_head``: UNK may
        name a lesion but not lower its risk)."""
        return [taxonomy.UNSPECIFIED] if self.model.unspecified_head else []

    def validate(self) -> None:
        if not 0 < self.data.test_fraction < 0.5 or not 0 < self.data.val_fraction < 0.5:
            raise ConfigError("data.test_fraction and data.val_fraction must be in (0, 0.5)")
        # each setting's own range first, then the relations between settings, so a message
        # names the setting that is wrong (train.epochs=-1 is not a train.swa_from problem)
        self._validate_numbers()
        self._validate_train()
        self._validate_augment()
        self._validate_distill()
        if self.evaluation.num_threads < 0:
            raise ConfigError(f"evaluation.num_threads must be >= 0 (0: one per core), "
                              f"got {self.evaluation.num_threads}")
        self._validate_input()
        self._validate_data()
        self._validate_calibration()
        if self.model.unspecified_head and (len(self.data.classes) < 3
                                            or self.data.classes[-1] != taxonomy.UNSPECIFIED):
            raise ConfigError(f"model.unspecified_head needs {taxonomy.UNSPECIFIED} as the last of "
                              f"data.classes (and two or more others), got {self.data.classes}")
        detach = self.model.unspecified_detach
        if not isinstance(detach, bool | int | float) or not 0 <= detach <= 1:
            raise ConfigError(f"model.unspecified_detach must be true, false or a number in "
                              f"[0, 1], got {detach!r}")
        if detach and not self.model.unspecified_head:
            raise ConfigError("model.unspecified_detach needs model.unspecified_head: true")
        if not 0 <= self.model.drop_path_rate < 1:
            raise ConfigError(f"model.drop_path_rate must be in [0, 1) (0: off), "
                              f"got {self.model.drop_path_rate}")
        if self.model.freeze_bn_stats and not (self.model.pretrained or self.model.weights):
            raise ConfigError("model.freeze_bn_stats keeps the pretrained BatchNorm statistics: "
                              "it needs model.pretrained or model.weights")

    def _validate_data(self) -> None:
        d = self.data
        if not d.roots or not all(r.strip() for r in d.roots):
            raise ConfigError("data.root must name at least one data folder")
        bad = [c for c in d.classes if c not in taxonomy.BY_CODE]
        if bad:
            raise ConfigError(f"data.classes has unknown codes {bad}; the codes are "
                              f"{', '.join(taxonomy.BY_CODE)}")
        twice = sorted({c for c in d.classes if d.classes.count(c) > 1})
        if twice:
            raise ConfigError(f"data.classes lists {', '.join(twice)} more than once")
        if len(d.classes) < 2:
            raise ConfigError(f"data.classes needs at least two classes, got {d.classes}")
        if d.limit is not None and d.limit < 1:
            raise ConfigError(f"data.limit must be a number of images per split >= 1, or null "
                              f"(no cap), got {d.limit}")
        if d.group_col_fallback not in (None, "lesion"):
            raise ConfigError(f"data.group_col_fallback must be lesion or null, got "
                              f"{d.group_col_fallback!r}")
        if not d.group_col.strip():
            raise ConfigError("data.group_col must name the column that groups images of one "
                              "patient or lesion (e.g. group_id, lesion_id, patient_id)")

    def _validate_numbers(self) -> None:
        """Ranges of the plain numeric settings (outside them a run fails later, or trains
        something else than asked)."""
        t, m = self.train, self.model
        checks: tuple[tuple[str, float, bool, str], ...] = (
            ("train.epochs", t.epochs, t.epochs >= 1, ">= 1"),
            ("train.batch_size", t.batch_size, t.batch_size >= 2, ">= 2"),
            ("seed", self.seed, self.seed >= 0, ">= 0"),
            ("data.split_seed", self.data.split_seed, self.data.split_seed >= 0, ">= 0"),
            ("train.lr", t.lr, t.lr > 0, "> 0"),
            ("train.weight_decay", t.weight_decay, t.weight_decay >= 0, ">= 0"),
            ("train.warmup_epochs", t.warmup_epochs, t.warmup_epochs >= 0, ">= 0"),
            ("train.class_weight_power", t.class_weight_power, t.class_weight_power >= 0,
             ">= 0"),
            ("train.meta_dropout", t.meta_dropout, 0 <= t.meta_dropout <= 1, "in [0, 1]"),
            ("train.ema_decay", t.ema_decay, 0 <= t.ema_decay < 1, "in [0, 1) (0: no EMA)"),
            ("train.label_smoothing", t.label_smoothing, 0 <= t.label_smoothing < 1,
             "in [0, 1)"),
            ("train.num_threads", t.num_threads, t.num_threads >= 1, ">= 1"),
            ("train.eval_batch_size", t.eval_batch_size, t.eval_batch_size >= 1, ">= 1"),
            ("model.drop_rate", m.drop_rate, 0 <= m.drop_rate < 1, "in [0, 1)"),
            ("model.freeze_fraction", m.freeze_fraction, 0 <= m.freeze_fraction <= 1,
             "in [0, 1]"),
            ("model.meta_hidden", m.meta_hidden, m.meta_hidden >= 1, ">= 1"),
            ("evaluation.n_boot", self.evaluation.n_boot, self.evaluation.n_boot >= 0, ">= 0"),
        )
        for key, value, ok, wanted in checks:
            if not ok:
                raise ConfigError(f"{key} must be {wanted}, got {value}")

    def _validate_calibration(self) -> None:
        c = self.calibration
        for key in ("refer_sensitivity", "monitor_sensitivity"):
            if not 0 < getattr(c, key) <= 1:
                raise ConfigError(f"calibration.{key} must be in (0, 1], got {getattr(c, key)}")
        if not 0 < c.gate_false_reject < 1:
            raise ConfigError(f"calibration.gate_false_reject must be in (0, 1), got "
                              f"{c.gate_false_reject}")
        stray = [k for k in c.margin_classes if k not in self.data.classes]
        if stray:
            raise ConfigError(f"calibration.margin_classes {stray} are not in data.classes")
        if not 0 <= c.margin_tolerance <= 0.2:
            raise ConfigError(f"calibration.margin_tolerance must be in [0, 0.2], "
                              f"got {c.margin_tolerance}")
        if c.tau_metric not in TAU_METRICS:
            raise ConfigError(f"calibration.tau_metric must be {'|'.join(TAU_METRICS)}, "
                              f"got {c.tau_metric!r}")

    def _validate_source_balance(self) -> None:
        t = self.train
        if t.source_balance < 0:
            raise ConfigError(f"train.source_balance must be >= 0 (0 disables it), "
                              f"got {t.source_balance}")
        if t.source_balance_scope not in ("all", "specific"):
            raise ConfigError(f"train.source_balance_scope must be all|specific, "
                              f"got {t.source_balance_scope!r}")
        if t.source_balance_scope == "specific" and not (
                self.model.unspecified_head and t.source_balance > 0 and t.mixup_alpha == 0
                and t.label_smoothing == 0 and t.distill_weight == 0):
            raise ConfigError("train.source_balance_scope specific needs model.unspecified_head, "
                              "train.source_balance > 0 and no mixup, label smoothing or "
                              "distillation")

    def _validate_train(self) -> None:
        t = self.train
        if t.imbalance not in ("weighted_loss", "balanced_sampler", "none"):
            raise ConfigError(f"train.imbalance must be weighted_loss|balanced_sampler|none, "
                              f"got {t.imbalance!r}")
        if t.mixup_alpha < 0:
            raise ConfigError(f"train.mixup_alpha must be >= 0 (0 disables mixup), "
                              f"got {t.mixup_alpha}")
        if t.mixup_spare_unk and (t.mixup_alpha <= 0 or t.source_adversary
                                  or taxonomy.UNSPECIFIED not in self.data.classes):
            raise ConfigError(f"train.mixup_spare_unk needs train.mixup_alpha > 0, "
                              f"{taxonomy.UNSPECIFIED} among data.classes and no "
                              f"train.source_adversary")
        if t.head_probe_epochs < 0 or t.head_probe_lr <= 0:
            raise ConfigError("train.head_probe_epochs must be >= 0 (0: no probe) and "
                              "train.head_probe_lr > 0")
        if t.head_probe_epochs and t.imbalance == "balanced_sampler":
            raise ConfigError("train.head_probe_epochs needs train.imbalance weighted_loss or "
                              "none (the probe shuffles plainly)")
        if not 0 <= t.swa_from <= t.epochs:
            raise ConfigError(f"train.swa_from must be between 0 (off) and train.epochs "
                              f"({t.epochs}), got {t.swa_from}")
        # the learning rate rises over warmup_epochs, then decays on a cosine over the rest
        # (loop.lr_at): a warmup longer than the run never reaches the configured rate
        if t.warmup_epochs > t.epochs:
            raise ConfigError(f"train.warmup_epochs ({t.warmup_epochs:g}) must not exceed "
                              f"train.epochs ({t.epochs}): the learning rate would still be "
                              f"rising when training ends, never reaching train.lr; lower "
                              f"train.warmup_epochs (0: no warmup) or raise train.epochs")
        self._validate_source_balance()
        if t.sam_rho < 0:
            raise ConfigError(f"train.sam_rho must be >= 0 (0: off), got {t.sam_rho}")
        if t.num_workers < 0:
            raise ConfigError(f"train.num_workers must be >= 0, got {t.num_workers}")
        if t.select_metric not in SELECT_METRICS:
            raise ConfigError(f"train.select_metric must be one of {'|'.join(SELECT_METRICS)}, "
                              f"got {t.select_metric!r}")

    def _validate_distill(self) -> None:
        """Distilling from soft targets (``dermsight.train.distill``)."""
        t = self.train
        if not 0 <= t.distill_weight <= 1:
            raise ConfigError(f"train.distill_weight must be in [0, 1] (0: off), got "
                              f"{t.distill_weight}")
        if t.distill_weight > 0 and not t.distill_targets:
            raise ConfigError("train.distill_weight needs train.distill_targets (a file from "
                              "`dermsight distill-targets`)")
        if t.distill_weight > 0 and t.mixup_alpha > 0:
            raise ConfigError("train.distill_weight does not combine with train.mixup_alpha "
                              "(a mixed image has no teacher answer)")

    def _validate_augment(self) -> None:
        """The training-time augmentations of images and features."""
        t = self.train
        if not 0 <= t.style_mix <= 1 or not 0 < t.style_mix_beta <= 0.5:
            raise ConfigError("train.style_mix must be in [0, 1] and train.style_mix_beta in "
                              "(0, 0.5]")
        if not 0 <= t.mixstyle_p <= 1 or t.mixstyle_alpha <= 0:
            raise ConfigError("train.mixstyle_p must be in [0, 1] (0: off) and "
                              "train.mixstyle_alpha > 0")
        if not 0 <= t.randconv_p <= 1:
            raise ConfigError(f"train.randconv_p must be in [0, 1] (0: off), got {t.randconv_p}")
        if not 0 <= t.resave_p <= 1:
            raise ConfigError(f"train.resave_p must be in [0, 1] (0: off), got {t.resave_p}")
        if not 0 <= t.wide_field_p <= 1:
            raise ConfigError(f"train.wide_field_p must be in [0, 1] (0: off), got "
                              f"{t.wide_field_p}")
        if t.source_adversary < 0:
            raise ConfigError(f"train.source_adversary must be >= 0 (0: off), got "
                              f"{t.source_adversary}")
        if not isinstance(t.siim2020_augment, bool):
            raise ConfigError(f"train.siim2020_augment must be true or false, got "
                              f"{t.siim2020_augment!r}")
        if t.siim2020_augment and importlib.util.find_spec("albumentations") is None:
            raise ConfigError("train.siim2020_augment needs albumentations (the [train] extra: "
                              "pip install -e '.[train]')")
        if t.augment not in ("basic", "dermoscopy"):
            raise ConfigError(f"train.augment must be basic|dermoscopy, got {t.augment!r}")
        if not t.dermoscopy_strength > 0:
            raise ConfigError(f"train.dermoscopy_strength must be > 0 (1: as shipped), got "
                              f"{t.dermoscopy_strength}")

    def _validate_input(self) -> None:
        for key, allowed in (("color_constancy", COLOR_CONSTANCY), ("crop", CROPS),
                             ("interpolation", INTERPOLATIONS)):
            if getattr(self.input, key) not in allowed:
                raise ConfigError(f"input.{key} must be one of {'|'.join(allowed)}, "
                                  f"got {getattr(self.input, key)!r}")
        if not 0.3 <= self.input.crop_fraction <= 1.0:
            raise ConfigError(f"input.crop_fraction must be in [0.3, 1], "
                              f"got {self.input.crop_fraction}")
        i = self.input
        if i.size < MIN_INPUT_SIZE:
            raise ConfigError(f"input.size must be at least {MIN_INPUT_SIZE} pixels, got {i.size}")
        if len(i.mean) != 3 or len(i.std) != 3 or min(i.std) <= 0:
            raise ConfigError(f"input.mean and input.std need three numbers each (red, green, "
                              f"blue; std > 0), got {i.mean} and {i.std}")
        if i.cc_power <= 0:
            raise ConfigError(f"input.cc_power must be > 0, got {i.cc_power}")


#: the plain setting types and what a value of each must be (as YAML reads it)
_SCALARS: dict[Any, Any] = {
    type(None): lambda v: v is None,
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: (isinstance(v, int | float) and not isinstance(v, bool)
                      and math.isfinite(v)),
    str: lambda v: isinstance(v, str),
}


def _accepts(tp: Any, value: Any) -> bool:
    """Whether ``value`` (as YAML reads it) is of the annotated setting type ``tp``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_accepts(item, v) for v in value)
    check = _SCALARS.get(tp)
    return True if check is None else bool(check(value))


def _describe(tp: Any) -> str:
    """A setting type in words, for the message refusing a value of another type."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        words = [w for a in typing.get_args(tp)
                 for w in (("true", "false") if a is bool else (_describe(a),))]
        return ", ".join(words[:-1]) + " or " + words[-1]
    if typing.get_origin(tp) is list:
        return f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('a ')}s, e.g. [a, b]"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a text",
             type(None): "null"}
    return names.get(tp, str(tp))


def _typed(tp: Any, value: Any, key: str) -> Any:
    """``value`` checked against the setting's type ``tp``; a number written as text that
    YAML leaves a string (``6e-4``) is read as the number for a numeric setting."""
    numeric = tp is float or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                              and float in typing.get_args(tp)
                              and str not in typing.get_args(tp))
    if numeric and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
        else:
            value = number if math.isfinite(number) else value
    if not _accepts(tp, value):
        raise ConfigError(f"{key} must be {_describe(tp)}, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'} must be a section of keys "
                          f"(a mapping), got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(f'{where}{k}' for k in unknown)}; "
            f"valid keys here: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in values.items():
        sub = fields[k].default_factory if fields[k].default_factory is not dataclasses.MISSING \
            else None
        if sub is not None and dataclasses.is_dataclass(sub):
            kwargs[k] = _build(sub, v or {}, f"{where}{k}.")
        else:
            kwargs[k] = _typed(hints[k], v, f"{where}{k}")
    return cls(**kwargs)


def _setting_type(parts: list[str]) -> Any:
    """The annotated type of the setting a dotted key names (None: no such setting)."""
    cls: Any = TrainConfig
    for p in parts[:-1]:
        f = {f.name: f for f in dataclasses.fields(cls)}.get(p)
        if f is None or not dataclasses.is_dataclass(f.default_factory):
            return None
        cls = f.default_factory
    return typing.get_type_hints(cls).get(parts[-1])


def _override_value(parts: list[str], raw: str, dotted: str) -> Any:
    """The value of ``--set key=raw``: YAML, except that a text setting (``name``,
    ``version``, a folder) takes the text as typed (``version=3.10`` stays "3.10")."""
    tp = _setting_type(parts)
    text = tp is not None and _accepts(tp, "")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        if text:
            return raw.strip()
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"override {dotted!r}: the value {raw.strip()!r} is not readable "
                          f"({problem}); lists are written [a, b]") from exc
    if text and not _accepts(tp, value):
        return raw.strip()
    return value


def _set_override(tree: dict[str, Any], dotted: str) -> None:
    if "=" not in dotted:
        raise ConfigError(f"override {dotted!r} must look like section.key=value")
    key, raw = dotted.split("=", 1)
    node = tree
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"override {dotted!r} must look like section.key=value "
                          f"(an empty name in {key.strip()!r})")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {p} is not a section")
    node[parts[-1]] = _override_value(parts, raw, dotted)


def config_from_dict(tree: dict[str, Any]) -> TrainConfig:
    """A config from its ``to_dict()`` form, as a card records it. Settings added to the code
    since then take their defaults, which leave the recipe as it was (a new setting is off by
    default), so an older card's recipe compares equal to the file it was trained from."""
    cfg: TrainConfig = _build(TrainConfig, tree, "")
    cfg.validate()
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    tree: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        try:
            tree = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{p} is not valid YAML: {problem}{where}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p} is not a text file (UTF-8): {exc.reason} at byte "
                              f"{exc.start}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from exc
        base_dir = p.resolve().parent.parent  # configs/ lives in the repo root
    for o in overrides or []:
        _set_override(tree, o)
    cfg: TrainConfig = _build(TrainConfig, tree, "")
    if not cfg.data.roots or not all(r.strip() for r in cfg.data.roots):
        raise ConfigError("data.root must name at least one data folder")
    roots = []
    for r in cfg.data.roots:
        root = Path(r)
        if not root.is_absolute() and not root.exists() and (base_dir / root).exists():
            root = (base_dir / root).resolve()
        roots.append(str(root))
    cfg.data.root = roots[0] if isinstance(cfg.data.root, str) else roots
    cfg.validate()
    return cfg


def _backbone_tag(backbone: str) -> str:
    """How a config's ``name`` spells a backbone: ``tf_efficientnet_lite2`` -> ``effnetlite2``."""
    if backbone.startswith("tf_efficientnet_lite"):
        return "effnetlite" + backbone.removeprefix("tf_efficientnet_lite")
    return backbone.replace("_", "")


def name_backbone_mismatch(cfg: TrainConfig) -> str | None:
    """A warning when the config's ``name`` (what the card, the app and every prediction call
    the model) spells another EfficientNet-Lite than ``model.backbone`` — as ``--set
    model.backbone=...`` without ``--set name=...`` leaves it; None when they agree."""
    backbone = cfg.model.backbone
    named = [f"tf_efficientnet_lite{i}" for i in range(5)
             if _backbone_tag(f"tf_efficientnet_lite{i}") in cfg.name.lower()]
    if not named or backbone in named:
        return None
    suggested = re.sub(re.escape(_backbone_tag(named[0])), _backbone_tag(backbone), cfg.name,
                       flags=re.IGNORECASE)
    return (f"the model's name {cfg.name!r} says {named[0]}, but model.backbone is {backbone}; "
            f"the card, the app and every prediction will carry that name — add "
            f"--set name={suggested} (or another name)")


#: settings that change how a run is done, not what it learns from or how (a run that differs
#: from the shipped recipe only in these is the shipped recipe)
_HOW_ONLY = ("name", "version", "train.num_threads", "train.num_workers",
             "train.eval_batch_size", "evaluation.num_threads")


def flat_settings(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"train.epochs": 30, ...}`` (what two configs are compared by)."""
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(flat_settings(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _same_roots(mine: list[str], shipped: list[str], bases: list[Path]) -> bool:
    """Whether two lists of data folders name the same folders (the shipped card records them
    relative to the repository root; a config's are resolved)."""
    if len(mine) != len(shipped):
        return False
    for m, s in zip(mine, shipped, strict=True):
        here = Path(m).resolve()
        if not any((b / s).resolve() == here for b in bases) and Path(s).resolve() != here:
            return False
    return True


def shipped_identity_clash(cfg: TrainConfig, bases: list[Path] | None = None,
                           card_path: Path | None = None) -> str | None:
    """A warning when the config's ``name`` and ``version`` are the shipped model's (a config
    copied from ``configs/default.yaml``) while its data or settings differ from the recipe the
    shipped card records: the new bundle would present itself, in the app, the card and every
    prediction, as the shipped model. None when they are not both the shipped ones, or when the
    recipe is the same (a rebuild of the shipped model). ``bases``: folders the card's
    relative data folders may be relative to (the repository root)."""
    import json

    if card_path is None:
        from dermsight.bundle import default_bundle_path

        card_path = default_bundle_path() / "card.json"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if cfg.name != card.get("name") or cfg.version != card.get("version"):
            return None
        shipped = config_from_dict(card["training"]["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    was, now = flat_settings(shipped.to_dict()), flat_settings(cfg.to_dict())
    differ = [k for k in sorted(set(was) | set(now))
              if not k.startswith(_HOW_ONLY) and was.get(k) != now.get(k)]
    if "data.root" in differ and _same_roots(cfg.data.roots, shipped.data.roots,
                                             [*(bases or []), Path.cwd()]):
        differ.remove("data.root")
    if not differ:
        return None
    shown = "; ".join(f"{k}: {was.get(k)!r} in the shipped model, {now.get(k)!r} here"
                      for k in differ[:3])
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    return (f"name {cfg.name!r} and version {cfg.version!r} are the shipped model's, but this "
            f"run's data or settings differ from its recipe ({shown}{more}): the bundle would "
            f"present itself as the shipped model in the app, the card and every prediction — "
            f"add --set name=... and --set version=... to tell it apart")
