"""toktts.dropout.Dropout: nn.Dropout's behaviour from a cheaper mask."""
import pytest
import torch

from toktts.dropout import Dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.003, 0.999])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_drops_a_fraction_p_at_every_element_position(p, dtype):
    """Three masks come from each 64-bit random number: the word with 15 random bits would keep
    every third element; the elements at each position modulo 3 and 4 must drop at rate p."""
    torch.manual_seed(0)
    drop = Dropout(p).train()
    x = torch.ones(600, 1200, dtype=dtype, requires_grad=True)
    y = drop(x)
    dropped = (y == 0).float().flatten()
    for k in (3, 4):
        sd = (p * (1 - p) / (dropped.numel() / k)) ** 0.5
        for r in range(k):
            assert abs(dropped[r::k].mean().item() - p) < 5 * sd, (k, r)
    kept = y[y != 0].float()
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-2, atol=0)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, y.detach())  # the gradient goes through the same mask
    assert not torch.equal(drop(x) == 0, drop(x) == 0)  # a new mask every call


def test_dropout_is_the_identity_in_evaluation_and_at_zero_and_empties_at_one():
    x = torch.randn(7, 5)
    assert torch.equal(Dropout(0.5).eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        Dropout(1.5)


def test_dropout_of_a_strided_view_keeps_its_shape():
    torch.manual_seed(0)
    x = torch.ones(64, 30).t()  # not contiguous
    y = Dropout(0.5).train()(x)
    assert y.shape == (30, 64) and 0.3 < (y == 0).float().mean() < 0.7
