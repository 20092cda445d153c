"""The cross-entropy the training loss uses: F.cross_entropy's values and gradients without an
fp32 copy of the logits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toktts import loss
from toktts.loss import cross_entropy_rows


@pytest.mark.parametrize("rows", [1, 7, 5000])  # fewer than one block, and several with a ragged last one
def test_bf16_logits_give_fp32_cross_entropy_and_its_gradient(rows, monkeypatch):
    monkeypatch.setattr(loss, "ROWS", 3 if rows == 7 else loss.ROWS)
    g = torch.Generator().manual_seed(rows)
    logits = (4 * torch.randn(rows, 1024, generator=g)).bfloat16().requires_grad_()
    target = torch.randint(0, 1024, (rows,), generator=g)
    weights = torch.rand(rows, generator=g)  # a per-row weight, as the loss's PAD mask is
    reference = logits.detach().float().requires_grad_()
    expected = F.cross_entropy(reference, target, reduction="none")
    (expected * weights).sum().backward()

    got = cross_entropy_rows(logits, target)
    (got * weights).sum().backward()
    assert got.dtype == torch.float32 and got.shape == (rows,)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(logits.grad.float(), reference.grad, rtol=1e-2, atol=1e-3)  # bf16 rounding


def test_fp32_or_gradient_free_logits_take_torchs_own_path():
    logits = torch.randn(5, 16)
    target = torch.randint(0, 16, (5,))
    assert torch.equal(cross_entropy_rows(logits, target), F.cross_entropy(logits, target, reduction="none"))
    low = logits.bfloat16()  # e.g. validation under autocast
    assert torch.equal(cross_entropy_rows(low, target), F.cross_entropy(low.float(), target, reduction="none"))
