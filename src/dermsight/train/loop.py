"""The training loop: AdamW + warm-up/cosine, class-imbalance handling, EMA, per-epoch validation,
checkpoints every epoch, ``--resume``, JSONL log, and DDP under ``torchrun`` (gloo on CPU)."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler, WeightedRandomSampler
from tqdm import tqdm

from dermsight import taxonomy
from dermsight.cardschema import default_malignant
from dermsight.malignancy import malignant_probability
from dermsight.parallel import default_workers
from dermsight.quiet_warnings import sklearn_notes
from dermsight.train.adversary import AdversaryTraining
from dermsight.train.config import ConfigError, TrainConfig
from dermsight.train.data import LesionDataset, WithIndex
from dermsight.train.network import (
    LesionNet,
    add_mixstyle,
    freeze_bn_stats,
    freeze_early,
    set_train_mode,
)
from dermsight.train.sharpness import sharpness_aware_step
from dermsight.train.swa import WeightAverage


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextmanager
def distributed() -> Iterator[DistInfo]:
    """Initialise torch.distributed when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield DistInfo()
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    try:
        yield DistInfo(rank=dist.get_rank(), world=dist.get_world_size())
    finally:
        dist.destroy_process_group()


def check_distributed(cfg: TrainConfig, info: DistInfo) -> None:
    """Refuse settings that DDP would silently change (call before any data is loaded)."""
    if info.world > 1 and cfg.train.imbalance == "balanced_sampler":
        # a DistributedSampler replaces the weighted one: the balancing would silently vanish
        raise ConfigError("train.imbalance=balanced_sampler is not supported under torchrun "
                          "(DDP); use train.imbalance=weighted_loss")
    if info.world > 1 and cfg.train.head_probe_epochs:
        raise ConfigError("train.head_probe_epochs is not supported under torchrun (DDP)")
    if info.world > 1 and cfg.train.source_adversary:
        raise ConfigError("train.source_adversary is not supported under torchrun (DDP)")


#: the folder (inside the run folder) a checkpoint is written in before it replaces the old one
PARTIAL = ".partial"
#: the scikit-learn notes ``quick_metrics`` has printed in this process (each said once)
_TOLD: set[str] = set()


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` that never leaves a half-written ``path``: the file is written under the
    same name in ``PARTIAL`` beside it (so its bytes are those ``torch.save(obj, path)`` gives)
    and then moved over the old one, so a Ctrl-C or a full disk keeps the previous
    checkpoint."""
    tmp = path.parent / PARTIAL / path.name
    tmp.parent.mkdir(exist_ok=True)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def class_weights(labels: np.ndarray, n_classes: int, power: float) -> torch.Tensor:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    w = w / (w[counts > 0] * counts[counts > 0]).sum() * counts.sum()
    return torch.tensor(w, dtype=torch.float32)


def source_balance_weights(labels: np.ndarray, sources: np.ndarray, power: float
                           ) -> np.ndarray:
    """Per-sample weights that spread each class's weight evenly over the sources that have the
    class: (n_class / (n_sources_with_class * n_source_class)) ** power, rescaled to mean 1
    within each class (so the class weights are unchanged). ``power`` 0 = all ones."""
    w = np.ones(len(labels), np.float64)
    if power <= 0 or not len(labels):
        return w.astype(np.float32)
    for c in np.unique(labels):
        in_c = labels == c
        src, idx, counts = np.unique(sources[in_c], return_inverse=True, return_counts=True)
        wc = (in_c.sum() / (len(src) * counts[idx])) ** power
        w[in_c] = wc / wc.mean()
    return w.astype(np.float32)


def weighted_ce(logits: torch.Tensor, y: torch.Tensor, sample_w: torch.Tensor,
                class_w: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    """Cross-entropy with class and per-sample weights, normalised by the summed weights (as
    ``nn.CrossEntropyLoss(weight=...)`` does with class weights alone)."""
    ce = nn.functional.cross_entropy(logits, y, weight=class_w, reduction="none",
                                     label_smoothing=smoothing)
    cw = class_w[y] if class_w is not None else torch.ones_like(sample_w)
    return (ce * sample_w).sum() / (cw * sample_w).sum().clamp_min(1e-12)


def specific_weighted_ce(logp: torch.Tensor, y: torch.Tensor, sample_w: torch.Tensor,
                         class_w: torch.Tensor | None) -> torch.Tensor:
    """``weighted_ce`` of an unspecified-head network (``model.unspecified_head``: ``logp`` are
    log-probabilities whose last class is UNK) with the per-sample weights on the specific
    diagnoses only. -log P(y) splits into -log P(specific or not), every image, kept at weight 1,
    and -log p(y | specific), images with a specific diagnosis, multiplied by ``sample_w``;
    class weights multiply both, normalised by their sum. With ``sample_w`` all 1 it is
    ``weighted_ce`` (no smoothing)."""
    unk = logp.shape[1] - 1
    log_specific = torch.logsumexp(logp[:, :unk], dim=1)
    is_unk = y == unk
    binary = -torch.where(is_unk, logp[:, unk], log_specific)
    own = logp.gather(1, y[:, None])[:, 0]
    specific = torch.where(is_unk, torch.zeros_like(own), log_specific - own)
    cw = class_w[y] if class_w is not None else torch.ones_like(sample_w)
    return (cw * (binary + sample_w * specific)).sum() / cw.sum().clamp_min(1e-12)


def soft_cross_entropy(logits: torch.Tensor, soft: torch.Tensor, y: torch.Tensor,
                       sample_w: torch.Tensor, class_w: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy against per-image probabilities ``soft`` (distilling,
    ``dermsight.train.distill``), weighted as ``weighted_ce`` weighs the hard label (the class
    weight of the image's own label times its sample weight), so distilling keeps the run's class
    balance; with one-hot ``soft`` it is ``weighted_ce``."""
    ce = nn.functional.cross_entropy(logits, soft, reduction="none")  # probability targets
    cw = class_w[y] if class_w is not None else torch.ones_like(sample_w)
    return (ce * cw * sample_w).sum() / (cw * sample_w).sum().clamp_min(1e-12)


def mix_batch(x: torch.Tensor, m: torch.Tensor, alpha: float, seed: int, step: int
              ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018) of each sample with its mirror in the batch (as timm does), applied
    to the image *and* the metadata vector; lam ~ Beta(alpha, alpha) drawn from (seed, step), so a
    resumed run draws the same values. The loss is then lam * CE(y) + (1 - lam) * CE(y.flip(0))."""
    lam = float(np.random.default_rng([seed, step]).beta(alpha, alpha))
    return lam * x + (1 - lam) * x.flip(0), lam * m + (1 - lam) * m.flip(0), lam


def mix_batch_sparing(x: torch.Tensor, m: torch.Tensor, y: torch.Tensor, alpha: float, *,
                      seed: int, step: int, spare: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mix_batch`` (the same lam for the same seed and step) with every pair that holds a
    ``spare``-labelled sample left unmixed. Returns the images, the metadata and each sample's own
    weight ``w`` (lam, or 1 for a spared pair): its loss is w * CE(y) + (1 - w) * CE(y.flip(0))."""
    xm, mm, lam = mix_batch(x, m, alpha, seed, step)
    spared = (y == spare) | (y == spare).flip(0)
    w = torch.where(spared, 1.0, lam).to(x.dtype)
    return (torch.where(spared.view(-1, 1, 1, 1), x, xm), torch.where(spared[:, None], m, mm),
            w)


def mixed_ce(logits: torch.Tensor, y: torch.Tensor, sample_w: torch.Tensor,
             class_w: torch.Tensor | None, smoothing: float, *, w: torch.Tensor) -> torch.Tensor:
    """The mixup loss with a per-sample mixing weight ``w``: each sample's cross-entropies with
    its own label and its mirror's, weighted by w and 1 - w times their class and sample weights,
    normalised by the summed weights (``weighted_ce`` when w is all 1)."""
    yb, swb = y.flip(0), sample_w.flip(0)
    ce_a = nn.functional.cross_entropy(logits, y, weight=class_w, reduction="none",
                                       label_smoothing=smoothing)
    ce_b = nn.functional.cross_entropy(logits, yb, weight=class_w, reduction="none",
                                       label_smoothing=smoothing)
    cw_a = class_w[y] if class_w is not None else torch.ones_like(sample_w)
    cw_b = class_w[yb] if class_w is not None else torch.ones_like(sample_w)
    num = (w * sample_w * ce_a + (1 - w) * swb * ce_b).sum()
    return num / (w * sample_w * cw_a + (1 - w) * swb * cw_b).sum().clamp_min(1e-12)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def train_device(info: DistInfo | None = None) -> torch.device:
    """The CUDA GPU of this process when there is one (``LOCAL_RANK`` under torchrun), else CPU."""
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """Mixed-precision dtype on CUDA (bfloat16 where supported, else float16); None on CPU."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a batch-preparing process: the cores are shared among them


def loader_options(num_workers: int) -> dict[str, Any]:
    """DataLoader settings for ``train.num_workers`` processes (0: batches made in-process)."""
    if not num_workers:
        return {"num_workers": 0}
    return {"num_workers": num_workers, "worker_init_fn": _one_thread,
            "pin_memory": torch.cuda.is_available()}


@torch.no_grad()
def predict_logits(net: nn.Module, ds: LesionDataset, batch_size: int,
                   desc: str = "eval", *, num_workers: int = 0) -> np.ndarray:
    net.eval()
    device = next(net.parameters()).device
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False,
                        **loader_options(num_workers))
    out = []
    for x, m, *_ in tqdm(loader, desc=desc, leave=False, mininterval=5):
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        out.append(net(x, m.to(device, non_blocking=True)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def quick_metrics(labels: np.ndarray, logits: np.ndarray, classes: list[str],
                  malignant_excluded: Sequence[str] = ()) -> dict[str, float]:
    """Validation metrics for model selection (the full protocol lives in dermsight.evaluate).
    The malignant AUC ranks by the malignant probability the bundle will use (its classes and
    ``malignant_excluded``)."""
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    with sklearn_notes(told=_TOLD):  # a validation split without some class: said once a run
        balanced = float(balanced_accuracy_score(labels, probs.argmax(1)))
    res = {
        "balanced_accuracy": balanced,
        "nll": float(-np.log(probs[np.arange(len(labels)), labels] + 1e-12).mean()),
    }
    if "MEL" in classes:
        y = labels == classes.index("MEL")
        if 0 < y.sum() < len(y):
            res["mel_auc"] = float(roc_auc_score(y, probs[:, classes.index("MEL")]))
    malignant = default_malignant(classes)  # the set the card will record
    score = malignant_probability(probs, classes, malignant, malignant_excluded)
    y = np.isin(labels, [i for i, c in enumerate(classes) if c in malignant])
    if score is not None and 0 < y.sum() < len(y):
        res["malignant_auc"] = float(roc_auc_score(y, score))
    return res


def select_score(vm: dict[str, float], metric: str, epoch: int) -> float:
    """The figure an epoch is selected by (higher is better): ``last`` always takes the newest
    epoch; a validation figure missing this epoch (an AUC without positives) never wins."""
    if metric == "last":
        return float(epoch)
    if metric == "nll":
        return -vm["nll"]
    return vm.get(metric, float("-inf"))


def adamw(params: Sequence[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weights and none on biases and norm scales (1-d parameters)."""
    return torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
         {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}], lr=lr)


def probe_head(cfg: TrainConfig, net: LesionNet, train_ds: LesionDataset,
               class_w: torch.Tensor | None, log_path: Path) -> None:
    """Linear probing before fine-tuning (LP-FT, Kumar et al. 2022): ``train.head_probe_epochs``
    epochs that train only the head (metadata branch + classifier) on the frozen backbone, its
    BatchNorm statistics included, with AdamW and ``head_probe_lr`` on a cosine. The data order
    and augmentations have their own seeds (epochs 10,000 + k), so fine-tuning afterwards sees
    the same batches as without the probe. One line per epoch goes to ``log_path``."""
    tc = cfg.train
    device = next(net.parameters()).device
    opt = adamw([*net.meta.parameters(), *net.classifier.parameters()], tc.head_probe_lr,
                tc.weight_decay)
    loader = DataLoader(train_ds, batch_size=tc.batch_size, shuffle=True,
                        **loader_options(tc.num_workers),
                        drop_last=True,
                        generator=torch.Generator().manual_seed(cfg.seed + 10_000))
    total, step = len(loader) * tc.head_probe_epochs, 0
    for k in range(tc.head_probe_epochs):
        train_ds.set_epoch(10_000 + k)
        net.train()
        net.backbone.eval()  # frozen: weights and BatchNorm statistics stay ImageNet's
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for x, m, y, sw in tqdm(loader, desc=f"head probe {k + 1}/{tc.head_probe_epochs}",
                                mininterval=10):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, 0, tc.head_probe_lr)
            with torch.no_grad():
                fmap = net.feature_map(x.to(device).contiguous(memory_format=torch.channels_last))
            logits = net.head(fmap, m.to(device))
            loss = weighted_ce(logits.float(), y.to(device),
                               sw.to(device, dtype=torch.float32), class_w, tc.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
        record = {"head_probe_epoch": k + 1, "train_loss": loss_sum / max(seen, 1),
                  "epoch_seconds": time.perf_counter() - t0}
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


def train_sampler(cfg: TrainConfig, train_ds: LesionDataset, info: DistInfo
                  ) -> Sampler[int] | None:
    """How the loader draws training images: a DistributedSampler under torchrun; with
    ``train.imbalance: balanced_sampler`` images drawn with weight (1/class frequency)^power
    (power 1 = every class equally often); otherwise None (a plain shuffle)."""
    if info.world > 1:
        return DistributedSampler(train_ds, num_replicas=info.world, rank=info.rank,
                                  shuffle=True, seed=cfg.seed)
    if cfg.train.imbalance != "balanced_sampler":
        return None
    labels = train_ds.labels
    cw = class_weights(labels, len(cfg.data.classes), cfg.train.class_weight_power).numpy()
    return WeightedRandomSampler(cw[labels].tolist(), num_samples=len(labels),
                                 generator=torch.Generator().manual_seed(cfg.seed))


@dataclass
class RunState:
    """What a training run carries from epoch to epoch and keeps in last.pt: the network, its
    optimiser, the EMA copy, the weight average, the source adversary, the best epoch so far."""

    net: LesionNet
    opt: torch.optim.Optimizer
    #: where the network trains and its mixed-precision dtype (None: full precision), found once
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: torch.dtype | None = None
    ema: LesionNet | None = None
    swa: WeightAverage | None = None
    adv: AdversaryTraining | None = None
    #: the training images' teacher probabilities on the training device (distilling)
    soft: torch.Tensor | None = None
    #: loss scaling for float16 mixed precision (CUDA without bfloat16); a no-op otherwise
    scaler: torch.amp.GradScaler = field(
        default_factory=lambda: torch.amp.GradScaler("cuda", enabled=False))
    best_score: float = -1.0
    best_epoch: int = -1
    #: the generators the training data order is drawn from (the loader's and the sampler's),
    #: kept in last.pt with torch's own so that a resumed run goes on as an uninterrupted one
    generators: dict[str, torch.Generator] = field(default_factory=dict)

    @property
    def judge(self) -> LesionNet:
        """The weights validated and kept: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.net

    def optimise(self, loss: torch.Tensor, again: Callable[[], torch.Tensor] | None = None,
                 sam_rho: float = 0.0) -> None:
        """One optimiser step on ``loss``; with ``sam_rho`` > 0 a SAM step
        (``train.sam_rho``), for which ``again`` recomputes the batch's loss."""
        if sam_rho > 0 and again is not None:  # start_state refused float16 loss scaling
            sharpness_aware_step(self.opt, loss, again, sam_rho, self.net)
            return
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()

    def update_ema(self, decay: float, step: int) -> None:
        if self.ema is None:
            return
        with torch.no_grad():
            d = min(decay, (1 + step) / (10 + step))
            for pe, pn in zip(self.ema.state_dict().values(), self.net.state_dict().values(),
                              strict=True):
                if pe.dtype.is_floating_point:
                    pe.mul_(d).add_(pn.detach(), alpha=1 - d)
                else:
                    pe.copy_(pn)

    def save(self, path: Path, epoch: int) -> None:
        save_checkpoint({"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                         "ema": None if self.ema is None else self.ema.state_dict(),
                         "epoch": epoch, "best_score": self.best_score,
                         "best_epoch": self.best_epoch,
                         "swa": None if self.swa is None else self.swa.to_dict(),
                         "adversary": None if self.adv is None else self.adv.head.state_dict(),
                         "rng": rng_states(self.generators)},
                        path)

    def restore(self, path: Path, device: torch.device) -> int:
        """Everything ``save`` wrote; returns the epoch to go on with. The random states come
        back too (the data order and torch's generator: dropout, MixStyle, drop path), so the
        epochs still to come draw what an uninterrupted run draws; a checkpoint written before
        they were kept says so."""
        ck = torch.load(path, map_location=device, weights_only=False)
        if ck.get("rng") is not None:
            set_rng_states(ck["rng"], self.generators)
        else:
            print(f"note: {path} keeps no random states (written by an earlier dermsight): the "
                  f"resumed epochs draw another data order than an uninterrupted run would",
                  flush=True)
        self.net.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.load_state_dict(ck["ema"])
        if self.swa is not None and ck.get("swa") is not None:
            self.swa = WeightAverage.from_dict(ck["swa"])
        if self.adv is not None and ck.get("adversary") is not None:
            self.adv.head.load_state_dict(ck["adversary"])
        self.best_score, self.best_epoch = ck["best_score"], ck["best_epoch"]
        return int(ck["epoch"]) + 1


def rng_states(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """The random states an epoch leaves behind: the named ``generators``' and torch's global
    ones (CPU, and CUDA where there is one). Everything else a training run draws is seeded per
    image (augmentations) or per step (mixup)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generators": {k: g.get_state() for k, g in generators.items()}}


def set_rng_states(states: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Put back what ``rng_states`` kept (the states as CPU byte tensors, wherever the
    checkpoint was loaded to)."""
    torch.set_rng_state(states["torch"].cpu())
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    for k, g in generators.items():
        if k in states["generators"]:
            g.set_state(states["generators"][k].cpu())


def start_state(cfg: TrainConfig, net: LesionNet, train_ds: LesionDataset, info: DistInfo
                ) -> RunState:
    """A run's state before its first step: the EMA copy, the weight average and the source
    adversary as configured, and AdamW over the trainable weights (and the adversary's)."""
    tc = cfg.train
    ema = None
    if tc.ema_decay > 0:
        ema = deepcopy(net).eval()
        for p in ema.parameters():
            p.requires_grad_(False)
    adv = None
    if tc.source_adversary > 0:
        if train_ds.sources is None:
            raise ConfigError("train.source_adversary needs the training images' sources")
        adv = AdversaryTraining(net.num_features, train_ds.labels, train_ds.sources,
                                len(cfg.data.classes), peak=tc.source_adversary,
                                device=next(net.parameters()).device)
        if info.main:
            print("source adversary over " + json.dumps(adv.targets.describe(cfg.data.classes)),
                  flush=True)
    opt = adamw([p for p in net.parameters() if p.requires_grad]
                + ([] if adv is None else list(adv.head.parameters())), tc.lr, tc.weight_decay)
    device = next(net.parameters()).device
    dtype = amp_dtype(device, tc.amp)
    if tc.sam_rho > 0 and dtype == torch.float16:
        raise ConfigError("train.sam_rho does not work with float16 loss scaling (a GPU "
                          "without bfloat16): set train.amp=false")
    soft = None if train_ds.soft_targets is None else \
        torch.from_numpy(np.asarray(train_ds.soft_targets, np.float32)).to(device)
    return RunState(net=net, opt=opt, device=device, amp=dtype, ema=ema,
                    swa=WeightAverage() if tc.swa_from else None, adv=adv, soft=soft,
                    scaler=torch.amp.GradScaler("cuda", enabled=dtype == torch.float16))


def prepare_net(cfg: TrainConfig, net: LesionNet, info: DistInfo
                ) -> tuple[LesionNet, torch.device]:
    """Freeze the early blocks, add MixStyle when set, move the network to this process's
    device (channels-last) and say where training runs."""
    tc = cfg.train
    freeze_early(net, cfg.model.freeze_fraction)
    if cfg.model.freeze_bn_stats:
        freeze_bn_stats(net)
    if tc.mixstyle_p > 0:
        add_mixstyle(net, tc.mixstyle_p, tc.mixstyle_alpha, tc.mixstyle_after)
    device = train_device(info)
    net = net.to(device).to(memory_format=torch.channels_last)
    dtype = amp_dtype(device, tc.amp)
    if info.main:
        print(f"training on {device}" + (f" with {dtype} mixed precision" if dtype else ""),
              flush=True)
        hint = loader_hint(device, tc.num_workers)
        if hint:
            print(hint, flush=True)
    return net, device


def loader_hint(device: torch.device, num_workers: int) -> str | None:
    """A note when a GPU would wait on batches made in the training process."""
    if device.type != "cuda" or num_workers:
        return None
    suggest = max(1, min(12, default_workers() - 2))
    return (f"note: train.num_workers is 0, so one CPU process prepares every batch and the GPU "
            f"mostly waits; --set train.num_workers={suggest} gives the same batches faster")


def batch_loss(cfg: TrainConfig, model: nn.Module, state: RunState,
               batch: Sequence[torch.Tensor], *, step: int, total: int,
               class_w: torch.Tensor | None) -> torch.Tensor:
    """One training batch's loss: (image, meta, label, sample weight[, index]) on the training
    device, mixup when set, the class-weighted cross-entropy, plus the source adversary's loss
    when it is on (it reads the feature maps, so it calls the network's parts itself)."""
    tc = cfg.train
    device, dtype = state.device, state.amp
    x, m, y = (t.to(device, non_blocking=True) for t in batch[:3])
    sw = batch[3].to(device, dtype=torch.float32, non_blocking=True)
    lam, w = 1.0, None
    if tc.mixup_alpha > 0 and tc.mixup_spare_unk:
        x, m, w = mix_batch_sparing(x, m, y, tc.mixup_alpha, seed=cfg.seed, step=step,
                                    spare=cfg.data.classes.index(taxonomy.UNSPECIFIED))
    elif tc.mixup_alpha > 0:
        x, m, lam = mix_batch(x, m, tc.mixup_alpha, cfg.seed, step)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        x = x.contiguous(memory_format=torch.channels_last)
        if state.adv is None:
            logits = model(x, m)
        else:  # one process (check_distributed): model is the network itself
            fmap = state.net.feature_map(x)
            logits = state.net.head(fmap, m)
        if w is not None:
            loss = mixed_ce(logits.float(), y, sw, class_w, tc.label_smoothing, w=w)
        elif tc.source_balance_scope == "specific":  # config: no mixup, smoothing, distilling
            loss = specific_weighted_ce(logits.float(), y, sw, class_w)
        else:
            loss = weighted_ce(logits.float(), y, sw, class_w, tc.label_smoothing)
        if lam < 1.0:
            loss = lam * loss + (1 - lam) * weighted_ce(
                logits.float(), y.flip(0), sw.flip(0), class_w, tc.label_smoothing)
        if state.soft is not None:  # config refuses mixup here: lam is 1, w is None
            q = state.soft[batch[4].to(device)]
            loss = (1 - tc.distill_weight) * loss + tc.distill_weight * soft_cross_entropy(
                logits.float(), q, y, sw, class_w)
        if state.adv is not None:
            loss = loss + state.adv.loss(fmap, y, batch[4], step=step, total=total, lam=lam)
    return loss


def end_epoch(cfg: TrainConfig, state: RunState, val_ds: LesionDataset, out: Path,
              epoch: int, record: dict[str, Any]) -> None:
    """Validate the epoch's (EMA) weights, keep them as best.pt when they score best, log the
    epoch (``record``: its training figures), add them to the weight average, save last.pt."""
    tc = cfg.train
    vm = quick_metrics(val_ds.labels,
                       predict_logits(state.judge, val_ds, tc.eval_batch_size, "validate",
                                      num_workers=tc.num_workers),
                       cfg.data.classes, cfg.malignant_excluded())
    score = select_score(vm, tc.select_metric, epoch)
    improved = score > state.best_score
    if improved:
        state.best_score, state.best_epoch = score, epoch
        save_checkpoint({"model": state.judge.state_dict(), "epoch": epoch}, out / "best.pt")
    record = {"epoch": epoch + 1, **record, **{f"val_{k}": v for k, v in vm.items()},
              **({} if state.adv is None else state.adv.epoch_record()), "best": improved}
    with open(out / "train_log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)
    if state.swa is not None and epoch + 1 >= tc.swa_from:
        state.swa.add(state.judge.state_dict())
    state.save(out / "last.pt", epoch)


def train_loader(cfg: TrainConfig, train_ds: LesionDataset, state: RunState,
                 sampler: Sampler[int] | None) -> DataLoader:
    """The training batches. Each epoch draws its order from the loader's generator (and a
    weighted sampler's own), which ``state`` keeps in last.pt so that a resumed run draws the
    orders an uninterrupted one does (a DistributedSampler draws from seed + epoch itself).
    With the adversary or soft targets each batch also carries its images' indices."""
    tc = cfg.train
    indexed = state.adv is not None or state.soft is not None
    order = torch.Generator().manual_seed(cfg.seed)
    state.generators["loader"] = order
    if isinstance(sampler, WeightedRandomSampler) and sampler.generator is not None:
        state.generators["sampler"] = sampler.generator
    return DataLoader(WithIndex(train_ds) if indexed else train_ds,
                      batch_size=tc.batch_size, shuffle=sampler is None,
                      sampler=sampler, drop_last=True, **loader_options(tc.num_workers),
                      generator=order)


def resume_line(cfg: TrainConfig, state: RunState, done: int) -> str:
    """What a resumed run says it goes on from: epochs counted from 1, as in the log and the
    progress bar (``done`` epochs are finished)."""
    tc = cfg.train
    shown = -state.best_score if tc.select_metric == "nll" else state.best_score
    best = ("no epoch kept yet" if state.best_epoch < 0 else
            "keeping the newest epoch" if tc.select_metric == "last" else
            f"best so far {tc.select_metric} {shown:.4f} at epoch {state.best_epoch + 1}")
    return f"resuming after epoch {done} of {tc.epochs} ({best})"


def train_model(
    cfg: TrainConfig,
    net: LesionNet,
    train_ds: LesionDataset,
    val_ds: LesionDataset,
    out: Path,
    *,
    resume: bool,
    info: DistInfo,
) -> dict[str, Any]:
    """Train, validating every epoch; returns the best (by val ``select_metric``) state summary."""
    tc = cfg.train
    check_distributed(cfg, info)
    torch.manual_seed(cfg.seed)
    net, device = prepare_net(cfg, net, info)
    weight = None
    if tc.imbalance == "weighted_loss":
        weight = class_weights(train_ds.labels, len(cfg.data.classes),
                               tc.class_weight_power).to(device)
    last_ckpt = out / "last.pt"
    if tc.head_probe_epochs and not (resume and last_ckpt.exists()):
        probe_head(cfg, net, train_ds, weight, out / "head_probe_log.jsonl")
    model: nn.Module = net
    if info.world > 1:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    state = start_state(cfg, net, train_ds, info)
    sampler = train_sampler(cfg, train_ds, info)
    loader = train_loader(cfg, train_ds, state, sampler)
    total = len(loader) * tc.epochs
    warmup = int(tc.warmup_epochs * len(loader))
    start_epoch = 0
    if resume and last_ckpt.exists():
        start_epoch = state.restore(last_ckpt, device)
        if info.main:
            print(resume_line(cfg, state, start_epoch), flush=True)
    step = start_epoch * len(loader)
    for epoch in range(start_epoch, tc.epochs):
        train_ds.set_epoch(epoch)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        set_train_mode(net, True)
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not info.main,
                   mininterval=10)
        for batch in bar:
            for g in state.opt.param_groups:
                g["lr"] = lr_at(step, total, warmup, tc.lr)
            loss = batch_loss(cfg, model, state, batch, step=step, total=total, class_w=weight)
            state.optimise(loss, partial(batch_loss, cfg, model, state, batch, step=step,
                                         total=total, class_w=weight), tc.sam_rho)
            state.update_ema(tc.ema_decay, step)
            step += 1
            seen += len(batch[2])
            loss_sum += float(loss.detach()) * len(batch[2])
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}",
                            ips=f"{seen / (time.perf_counter() - t0):.0f}", refresh=False)
        train_time = time.perf_counter() - t0
        if info.main:
            end_epoch(cfg, state, val_ds, out, epoch,
                      {"train_loss": loss_sum / max(seen, 1),
                       "train_img_per_s": seen * info.world / train_time,
                       "epoch_seconds": train_time, "lr_end": state.opt.param_groups[0]["lr"]})
    # ``last`` has no validation figure: its score is only the epoch number
    summary = {"best_epoch": state.best_epoch + 1,
               "best_val_score": None if tc.select_metric == "last" else state.best_score,
               "select_metric": tc.select_metric}
    if state.swa is None or not info.main:
        return summary
    return keep_weight_average(cfg, state.judge, state.swa, val_ds, out, summary)


def keep_weight_average(cfg: TrainConfig, model: nn.Module, swa: WeightAverage,
                        val_ds: LesionDataset, out: Path, summary: dict[str, Any]
                        ) -> dict[str, Any]:
    """``train.swa_from``: the mean of the per-epoch weights becomes best.pt (the weights the
    bundle is made of), validated once; the epoch ``select_metric`` chose moves to
    best_epoch.pt. Done once per run: ``--resume`` on a finished run reads the result back."""
    tc = cfg.train
    done = out / "swa_summary.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    avg = deepcopy(model)
    avg.load_state_dict(swa.state)
    vm = quick_metrics(val_ds.labels, predict_logits(avg, val_ds, tc.eval_batch_size,
                                                     "validate the average"),
                       cfg.data.classes, cfg.malignant_excluded())
    (out / "best.pt").replace(out / "best_epoch.pt")
    epochs = [tc.swa_from, tc.epochs]
    save_checkpoint({"model": avg.state_dict(), "epoch": tc.epochs - 1, "swa_epochs": epochs},
               out / "best.pt")
    result = {**summary, "best_epoch": None, "best_val_score": None, "kept": "swa",
              "swa_epochs": epochs, "swa_snapshots": swa.n,
              "best_single_epoch": summary["best_epoch"],
              "best_single_val_score": summary["best_val_score"],
              **{f"swa_val_{k}": v for k, v in vm.items()}}
    done.write_text(json.dumps(result, indent=2))
    print(json.dumps({"swa": result}), flush=True)
    return result
