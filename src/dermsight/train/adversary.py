"""A class-conditional source adversary for training (CDANN, Li et al. 2018, "Deep domain
generalization via conditional invariant adversarial networks"; off by default).

A small head reads the pooled image features through a gradient-reversal layer (Ganin & Lempitsky
2015) and tries to tell, *within each diagnosis*, which source an image comes from. The head
learns to tell them apart; the reversed gradient pushes the backbone towards features from which it
cannot, so that a melanoma from one camera looks like a melanoma from another. Conditioning on the
diagnosis matters here because the source predicts the label (a class seen through one camera
only would otherwise have to lose what marks it): only (class, source) cells with at least
``MIN_CELL`` training images take part, and only classes with two or more such cells. Within a
class every taking-part source weighs the same.

Training only: the adversary is not part of ``LesionNet`` (its state dict, the exported graph and
serving are unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

#: (class, source) cells with fewer training images than this take no part in the adversary
MIN_CELL = 20


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """Identity forward; the gradient backward is multiplied by ``-coeff``."""
    return _ReverseGradient.apply(x, coeff)


def ramp(step: int, total: int, peak: float) -> float:
    """DANN's schedule: ``peak * (2 / (1 + exp(-10 p)) - 1)``, p = step / total (0 -> peak)."""
    p = min(1.0, step / max(1, total))
    return peak * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


@dataclass(frozen=True)
class AdversaryTargets:
    """Per training image: its source's index (into ``sources``) and its weight in the adversary's
    loss (0: takes no part); per class, which sources take part (``cells``, a (classes, sources)
    boolean table; the adversary chooses among those only). Within a taking-part class every
    source's weights sum to the same, and the class's weights sum to its taking-part images."""

    source: np.ndarray
    weight: np.ndarray
    sources: list[str]
    cells: np.ndarray
    #: the adversary's loss when it cannot tell the sources apart (in each class the uniform
    #: guess over its taking-part sources): the weighted mean of log(sources of the class)
    chance_loss: float

    @classmethod
    def from_labels(cls, labels: np.ndarray, sources: np.ndarray, n_classes: int, *,
                    min_cell: int | None = None) -> AdversaryTargets:
        """``min_cell``: the smallest (class, source) cell that takes part (None: ``MIN_CELL``)."""
        min_cell = MIN_CELL if min_cell is None else min_cell
        names, source = np.unique(np.asarray(sources).astype(str), return_inverse=True)
        weight = np.zeros(len(labels), np.float32)
        cells = np.zeros((n_classes, len(names)), bool)
        chance = 0.0
        for c in np.unique(labels):
            in_c = labels == c
            counts = np.bincount(source[in_c], minlength=len(names))
            kept = np.flatnonzero(counts >= min_cell)
            if len(kept) < 2:
                continue
            cells[c, kept] = True
            n_kept = counts[kept].sum()
            for s in kept:
                weight[in_c & (source == s)] = n_kept / (len(kept) * counts[s])
            chance += math.log(len(kept)) * n_kept
        total = float(weight.sum())
        return cls(source=source.astype(np.int64), weight=weight,
                   sources=[str(n) for n in names], cells=cells,
                   chance_loss=chance / total if total else 0.0)

    def describe(self, classes: list[str]) -> dict[str, list[str]]:
        """{class: its taking-part sources}, for the training log."""
        return {classes[c]: [self.sources[s] for s in np.flatnonzero(row)]
                for c, row in enumerate(self.cells) if row.any()}


class SourceAdversary(nn.Module):
    """Pooled image features -> for each image, logits over the taking-part sources of its own
    class (the others masked out). One hidden layer; one output block per class."""

    def __init__(self, num_features: int, cells: np.ndarray, *, hidden: int = 256) -> None:
        super().__init__()
        self.n_classes, self.n_sources = cells.shape
        self.cells: torch.Tensor
        self.register_buffer("cells", torch.from_numpy(np.ascontiguousarray(cells)))
        self.net = nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, self.n_classes * self.n_sources))

    def forward(self, pooled: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.net(pooled.float()).view(-1, self.n_classes, self.n_sources)
        own = out[torch.arange(len(y), device=y.device), y]
        return own.masked_fill(~self.cells[y], float("-inf"))


def adversary_loss(logits: torch.Tensor, source: torch.Tensor, weight: torch.Tensor
                   ) -> torch.Tensor:
    """Weighted cross-entropy of the source, over the images that take part (weight > 0),
    normalised by their summed weight; 0 when none in the batch do."""
    part = weight > 0
    if not bool(part.any()):
        return logits.new_zeros(())
    ce = nn.functional.cross_entropy(logits[part], source[part], reduction="none")
    return (ce * weight[part]).sum() / weight[part].sum()


class AdversaryTraining:
    """The adversary's part of a training run: its head, each training image's target and weight
    (on the training device), the gradient-reversal schedule, and the epoch's mean loss."""

    def __init__(self, num_features: int, labels: np.ndarray, sources: np.ndarray,
                 n_classes: int, *, peak: float, device: torch.device) -> None:
        self.targets = AdversaryTargets.from_labels(labels, sources, n_classes)
        self.head = SourceAdversary(num_features, self.targets.cells).to(device)
        self.source = torch.from_numpy(self.targets.source).to(device)
        self.weight = torch.from_numpy(self.targets.weight).to(device)
        self.peak = peak
        self.coeff = 0.0
        self._sum, self._n = 0.0, 0

    def loss(self, fmap: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, *, step: int,
             total: int, lam: float = 1.0) -> torch.Tensor:
        """The adversary's loss on a batch (feature maps ``fmap`` of the images ``idx`` of the
        training set, labels ``y``); with mixup (``lam`` < 1) the pair's losses mixed as the
        classifier's are."""
        self.coeff = ramp(step, total, self.peak)
        pooled = reverse_gradient(fmap.mean(dim=(2, 3)), self.coeff)
        idx = idx.to(self.source.device)
        loss = adversary_loss(self.head(pooled, y), self.source[idx], self.weight[idx])
        if lam < 1.0:
            flip = idx.flip(0)
            loss = lam * loss + (1 - lam) * adversary_loss(
                self.head(pooled, y.flip(0)), self.source[flip], self.weight[flip])
        self._sum += float(loss.detach())
        self._n += 1
        return loss

    def epoch_record(self) -> dict[str, float]:
        """The epoch's mean adversary loss beside its chance level (loss near chance: the sources
        are no longer told apart within a class), and the reversal weight reached; resets."""
        record = {"adversary_loss": self._sum / max(self._n, 1),
                  "adversary_chance_loss": self.targets.chance_loss,
                  "adversary_coeff": self.coeff}
        self._sum, self._n = 0.0, 0
        return record
