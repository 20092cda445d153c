"""Dropout with a cheaper mask on CPUs.

torch draws one random number per element for `nn.Dropout` on a CPU (`bernoulli_`, ~10% of a CPU
training step at dropout 0.2, benchmarks/RESULTS.md); `Dropout` draws three masks from each 64-bit
random number, compared as 16-bit integers. Forward and backward of a (64, 150, 192) dropout, one
thread: 20 -> 9 ms in bf16, 19 -> 11 ms in fp32. On other devices it is `nn.Dropout`.
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

# The three 16-bit words of a non-negative int64 that are uniform (the most significant one has
# only 15 random bits): the first three in memory on a little-endian machine, the last three else.
LANES = slice(0, 3) if sys.byteorder == "little" else slice(1, 4)
LEVELS = 1 << 16


class Dropout(nn.Module):
    """`nn.Dropout(p)`: zero each element with probability p (to within 1 / 65,536: a p below
    1 / 131,072 drops nothing) and scale the rest by 1 / (1 - p), in training only."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        threshold = round(self.p * LEVELS)
        if threshold == LEVELS:
            return x * 0
        n = x.numel()
        words = torch.empty(-(-n // 3), dtype=torch.int64).random_().view(torch.int16).view(-1, 4)[:, LANES]
        keep = (words >= threshold - LEVELS // 2).view(-1)[:n].view(x.shape)  # True with probability 1 - p
        return x * keep.to(x.dtype).mul_(LEVELS / (LEVELS - threshold))

    def extra_repr(self) -> str:
        return f"p={self.p}"
