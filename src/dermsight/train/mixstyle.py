"""MixStyle (Zhou et al., ICLR 2021, "Domain generalization with MixStyle"): during training, mix
the per-channel feature statistics (the "style": mean and standard deviation over the spatial
positions) of each image with those of another image in the batch, after a few early blocks of the
backbone. The content (the normalised features) is kept, so the network learns to classify lesions
under styles between the cameras it has seen.

It has no parameters and is the identity in eval mode, so validation, export and serving never see
it (the ONNX graph is the same as without it).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class MixStyle(nn.Module):
    """With probability ``p`` per forward call (one draw for the whole batch), replace each
    image's channel means and standard deviations by ``lam`` * its own + (1 - ``lam``) * those of
    a randomly chosen image of the batch, ``lam ~ Beta(alpha, alpha)`` per image. The statistics
    are detached (no gradient through them), as in the paper. ``after`` holds the indices of the
    backbone blocks whose output is mixed (``LesionNet.feature_map``)."""

    def __init__(self, p: float = 0.5, alpha: float = 0.1, after: Iterable[int] = (1, 2, 3),
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.p = p
        self.alpha = alpha
        self.after = frozenset(after)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.size(0) < 2 or float(torch.rand(())) >= self.p:
            return x
        b = x.size(0)
        mu = x.mean(dim=(2, 3), keepdim=True).detach()
        sig = (x.var(dim=(2, 3), keepdim=True) + self.eps).sqrt().detach()
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((b, 1, 1, 1)).to(x)
        perm = torch.randperm(b, device=x.device)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sig_mix = lam * sig + (1 - lam) * sig[perm]
        return (x - mu) / sig * sig_mix + mu_mix

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}, after={sorted(self.after)}"
