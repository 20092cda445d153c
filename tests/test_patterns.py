import pytest
import torch

from toktts.errors import TokttsError
from toktts.patterns import Layout


def random_codes(B, K, T, C, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, C, (B, K, T), generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T  # at least one full-length item
    return codes, lengths


@pytest.mark.parametrize("name", ["delay", "flatten"])
@pytest.mark.parametrize("K", [1, 2, 4, 8])
@pytest.mark.parametrize("T", [1, 5, 37])
def test_round_trip(name, K, T):
    C = 16
    layout = Layout(name, K, C)
    codes, lengths = random_codes(3, K, T, C, seed=K * 100 + T)
    tokens = layout.tokens(codes, lengths)
    assert tokens.shape == (3, layout.n_streams, layout.n_steps(T))  # (B, N, S)
    assert layout.n_frames(layout.n_steps(T)) == T
    assert torch.equal(layout.frame_lengths(tokens), lengths)
    back = layout.codes(tokens, T)
    assert back.shape == (3, K, T)
    for b in range(3):
        n = int(lengths[b])
        assert torch.equal(back[b, :, :n], codes[b, :, :n])
    # every id is a code or one of the specials, and exactly one EOS per stream per item
    assert int(tokens.max()) < layout.vocab_size
    assert torch.equal((tokens == layout.eos_id).sum(-1), torch.ones(3, layout.n_streams, dtype=torch.long))


def test_delay_matrix_matches_docstring():
    layout = Layout("delay", 3, 10)
    codes = torch.tensor([[[1, 2, 3, 4], [5, 6, 7, 8], [1, 3, 5, 7]]])
    P, E = layout.pad_id, layout.eos_id
    expected = torch.tensor(
        [[[1, 2, 3, 4, E, P, P], [P, 5, 6, 7, 8, E, P], [P, P, 1, 3, 5, 7, E]]]
    )
    assert torch.equal(layout.tokens(codes, torch.tensor([4])), expected)


def test_flatten_ids_are_codebook_specific():
    layout = Layout("flatten", 2, 10)
    codes = torch.tensor([[[5, 1], [5, 2]]])  # codebook 0 and 1 both use code 5 at frame 0
    tokens = layout.tokens(codes, torch.tensor([2]))
    assert tokens.tolist() == [[[5, 15, 1, 12, layout.eos_id]]]
    assert layout.vocab_size == 2 * 10 + 3


def test_flatten_padding_after_short_item():
    layout = Layout("flatten", 2, 10)
    codes = torch.zeros(2, 2, 3, dtype=torch.long)
    tokens = layout.tokens(codes, torch.tensor([3, 1]))
    P, E = layout.pad_id, layout.eos_id
    assert tokens[1, 0].tolist() == [0, 10, E, P, P, P, P]


@pytest.mark.parametrize("name", ["delay", "flatten"])
def test_generation_constraints_rebuild_training_tokens(name):
    """Replaying training tokens through `allowed`/`forced` reproduces them exactly: every
    target the model must predict is allowed and every fixed one is forced."""
    K, C = 3, 8
    layout = Layout(name, K, C)
    codes, lengths = random_codes(4, K, 6, C, seed=1)
    tokens = layout.tokens(codes, lengths)
    B, N, S = tokens.shape
    eos_step = torch.full((B,), -1)
    for s in range(S):
        forced = layout.forced(s, eos_step)
        target = tokens[:, :, s]
        allowed = layout.allowed(s)
        for b in range(B):
            for n in range(N):
                if forced[b, n] >= 0:
                    assert forced[b, n] == target[b, n], (s, b, n)
                else:
                    assert eos_step[b] < 0 or n > 0 or s == eos_step[b]
                    assert allowed[n, target[b, n]], (s, b, n, target[b, n])
        newly = (eos_step < 0) & (target[:, 0] == layout.eos_id)
        eos_step = torch.where(newly, s, eos_step)
        finished = layout.finished(s, eos_step)
        ends = torch.tensor([layout.n_steps(int(n)) - 1 for n in lengths])
        assert torch.equal(finished, s >= ends)


def test_unknown_layout():
    with pytest.raises(TokttsError, match="zigzag"):
        Layout("zigzag", 2, 10)


@pytest.mark.parametrize("name", ["delay", "flatten"])
def test_corrupt_replaces_codes_within_their_codebook(name):
    K, C, T = 3, 16, 200
    layout = Layout(name, K, C)
    codes, lengths = random_codes(4, K, T, C, seed=5)
    tokens = layout.tokens(codes, lengths)
    is_code = tokens < layout.pad_id
    torch.manual_seed(0)
    assert torch.equal(layout.corrupt(tokens, 0.0), tokens)
    noisy = layout.corrupt(tokens, 0.3)
    changed = noisy != tokens
    # specials stay; a code stays a code of its own codebook (random, so ~1/C keep their value)
    assert torch.equal(noisy[~is_code], tokens[~is_code])
    assert torch.equal(noisy[is_code] // C, tokens[is_code] // C)
    assert 0.3 * (1 - 1 / C) - 0.03 < changed[is_code].float().mean() < 0.3 * (1 - 1 / C) + 0.03
    everything = layout.corrupt(tokens, 1.0)
    assert (everything[is_code] != tokens[is_code]).float().mean() > 0.85


def test_corrupt_with_a_replacement_takes_its_codes_and_keeps_specials():
    lay = Layout("delay", 2, 16)
    codes = torch.randint(0, 16, (2, 2, 10))
    tokens = lay.tokens(codes, torch.tensor([10, 7]))
    other = lay.tokens(torch.randint(0, 16, (2, 2, 10)), torch.tensor([10, 7]))
    torch.manual_seed(0)
    mixed = lay.corrupt(tokens, 1.0, replacement=other)
    special = tokens >= lay.pad_id
    assert torch.equal(mixed[special], tokens[special])
    both = ~special & (other < lay.pad_id)
    assert torch.equal(mixed[both], other[both])
    assert torch.equal(lay.corrupt(tokens, 0.0, replacement=other), tokens)


@pytest.mark.parametrize("name", ["delay", "flatten"])
def test_near_noise_draws_each_code_from_its_own_neighbours(name):
    from toktts.codecs import nearest_codes

    K, C, T = 3, 16, 200
    layout = Layout(name, K, C)
    # codebook k's code c stands at (k + 1) * c on a line: its neighbours are c - 1 and c + 1
    words = torch.arange(C, dtype=torch.float)[None, :, None] * torch.arange(1, K + 1)[:, None, None]
    near = nearest_codes(words, 2)
    assert near.shape == (K, C, 2)
    assert sorted(near[1, 5].tolist()) == [4, 6] and near[2, 0].tolist() == [1, 2]
    codes, lengths = random_codes(4, K, T, C, seed=3)
    tokens = layout.tokens(codes, lengths)
    is_code = tokens < layout.pad_id
    torch.manual_seed(0)
    noisy = layout.corrupt(tokens, 0.5, near=near)
    assert torch.equal(noisy[~is_code], tokens[~is_code])
    changed = is_code & (noisy != tokens)
    assert 0.45 < changed[is_code].float().mean() < 0.55  # a neighbour is never the code itself
    assert torch.equal(noisy[is_code] // C, tokens[is_code] // C)  # flatten: the codebook's id range
    step = (noisy - tokens)[changed]
    assert set(step.abs().tolist()) <= {1, 2}  # one or two codes away on the line, never further
    if name == "delay":  # each stream is its codebook: the edges of the line bounce inwards
        assert (step[tokens[changed] == 0] > 0).all()


def test_nearest_codes_needs_fewer_than_the_codebook():
    from toktts.codecs import nearest_codes

    with pytest.raises(TokttsError, match="1 <= n < codebook size"):
        nearest_codes(torch.zeros(2, 8, 3), 8)
