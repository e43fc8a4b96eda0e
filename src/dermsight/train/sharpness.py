"""Sharpness-aware minimisation (SAM, Foret et al. 2021) as one optimiser step: the gradient is
taken again at the weights moved ``rho`` up the loss's own gradient (the worst nearby point, to
first order), and that gradient updates the original weights. It seeks flat minima, which the
domain-generalisation literature (Cha et al. 2021, SWAD) links to robustness on unseen
domains. Each step costs two forward and backward passes of the same batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def running_stats_kept(net: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise by the batch as usual but leave their running statistics
    unchanged (momentum 0) inside the block: the second pass of a SAM step sees the same batch
    and must not count it twice."""
    bns = [m for m in net.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom


def sharpness_aware_step(opt: torch.optim.Optimizer, loss: torch.Tensor,
                         again: Callable[[], torch.Tensor], rho: float,
                         net: nn.Module) -> None:
    """One SAM step of ``opt``: backward ``loss`` (the batch's loss at the current weights
    w), move every weight with a gradient to w + rho * g / ||g|| (||g|| over all of them),
    backward ``again()`` (the same batch's loss there, BatchNorm statistics kept), return to
    w and let ``opt`` step with that second gradient."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
    grads = [p.grad for p in params if p.grad is not None]
    with torch.no_grad():
        scale = rho / (torch.linalg.vector_norm(torch.stack([g.norm(2) for g in grads])) + 1e-12)
        kept = [p.detach().clone() for p in params]  # w exactly (w + e - e need not round to w)
        for p, g in zip(params, grads, strict=True):
            p.add_(g * scale)
    opt.zero_grad(set_to_none=True)
    with running_stats_kept(net):
        again().backward()
    with torch.no_grad():
        for p, w in zip(params, kept, strict=True):
            p.copy_(w)
    opt.step()
