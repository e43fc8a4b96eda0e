"""Weight averaging across epochs (SWA, Izmailov et al. 2018; SWAD, Cha et al. 2021): the uniform
mean of the weights a run reaches at the end of each epoch from ``train.swa_from`` on. Averaging
points along one trajectory finds a flatter region of the loss than any single point, which is
reported to hold up better on data from domains not trained on.

The mean covers every floating-point tensor of the state dict, BatchNorm running statistics
included (they are averages already; recomputing them would also overwrite the frozen ImageNet
statistics of the early blocks); integer buffers (BatchNorm's batch counters) take the newest
value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


class WeightAverage:
    """A running uniform mean of state dicts (all with the same keys and shapes)."""

    def __init__(self) -> None:
        self.n = 0
        self.state: dict[str, torch.Tensor] = {}

    def add(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        if self.n and state_dict.keys() != self.state.keys():
            raise ValueError("weight averaging needs state dicts with the same keys")
        self.n += 1
        for k, v in state_dict.items():
            v = v.detach()
            if self.n == 1 or not v.dtype.is_floating_point:
                self.state[k] = v.clone()
            else:
                self.state[k] += (v - self.state[k]) / self.n

    def to_dict(self) -> dict[str, Any]:
        """For a checkpoint (``--resume`` continues the same mean)."""
        return {"n": self.n, "state": self.state}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WeightAverage:
        avg = cls()
        avg.n, avg.state = int(d["n"]), dict(d["state"])
        return avg
