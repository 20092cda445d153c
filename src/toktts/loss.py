"""Cross-entropy over the decoder's logits without an fp32 copy of them.

Under bf16 autocast the head's logits (M = B x S x N rows of V = 1024 codes) are bf16, and
`F.cross_entropy` casts them all to fp32 first: a (M, V) fp32 tensor written, its log-softmax
another, and the same again in the backward pass: on a CPU that traffic costs about as much as
the head's matmul. Here the fp32 work is done a block of rows at a time and only the (M,)
log-sum-exp is kept for the backward pass, which recomputes the softmax from the saved
low-precision logits (benchmarks/RESULTS.md, "Cross-entropy without an fp32 copy").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ROWS = 2048  # rows per fp32 block: 8 MiB at V = 1024, within a core's L2 + L3 share


def cross_entropy_rows(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(M, V) logits, (M,) target ids -> (M,) fp32 cross-entropy per row, as
    `F.cross_entropy(logits.float(), target, reduction="none")` gives (equal to fp32 rounding)."""
    if logits.dtype == torch.float32 or not logits.requires_grad:
        return F.cross_entropy(logits.float(), target, reduction="none")
    return _CrossEntropyRows.apply(logits, target)


class _CrossEntropyRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        for s in range(0, logits.shape[0], ROWS):
            lse[s : s + ROWS] = torch.logsumexp(logits[s : s + ROWS].float(), dim=-1)
        ctx.save_for_backward(logits, target, lse)
        return lse - logits.gather(1, target[:, None])[:, 0].float()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target, lse = ctx.saved_tensors
        out = torch.empty_like(logits)
        for s in range(0, logits.shape[0], ROWS):
            rows = slice(s, s + ROWS)
            p = torch.exp(logits[rows].float() - lse[rows, None])  # softmax: d(lse)/d(logits)
            p.scatter_add_(1, target[rows, None], p.new_full((p.shape[0], 1), -1.0))  # minus d(picked)
            out[rows] = p * grad[rows, None]
        return out, None
