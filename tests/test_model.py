import pytest
import torch

from toktts.config import ModelConfig
from toktts.model import TokTTS, guided_attention_loss, sample

from helpers import batch


def tiny(layout="delay", K=2, C=16, **kw):
    cfg = ModelConfig(
        layout=layout, enc_layers=2, enc_heads=2, enc_dim=32, dec_layers=2, dec_heads=2, dec_dim=48,
        dropout=0.0, text_vocab_size=30, n_codebooks=K, codebook_size=C, **kw,
    )
    torch.manual_seed(0)
    return TokTTS(cfg).eval()


@pytest.mark.parametrize("layout", ["delay", "flatten"])
def test_forward_shapes_and_loss(layout):
    model = tiny(layout)
    text, text_lengths, tokens = batch(model)
    logits, weights = model(text, text_lengths, tokens, attn_layers=2)
    B, N, S = tokens.shape
    assert logits.shape == (B, S, N, model.layout.vocab_size)  # (B, S, N, V)
    assert len(weights) == 2 and weights[0].shape == (B, 2, S, text.shape[1])  # (B, H, S, L)
    # attention never lands on padded characters
    assert weights[0][1, :, :, text_lengths[1]:].abs().max() == 0
    loss, per_stream = model.loss(logits, tokens)
    assert per_stream.shape == (N,)
    # an untrained model is close to uniform over the vocabulary
    assert abs(loss.item() - torch.log(torch.tensor(float(model.layout.vocab_size))).item()) < 0.5


def test_conv_prenet_starts_as_identity_learns_and_ignores_padding():
    model = tiny(enc_conv_layers=2, enc_conv_kernel=3)
    text, text_lengths, _ = batch(model)
    mask = torch.arange(text.shape[1])[None] < text_lengths[:, None]
    with torch.no_grad():
        out = model.encoder(text, mask)
        prenet, model.encoder.prenet = model.encoder.prenet, None
        assert torch.equal(out, model.encoder(text, mask))  # zero convolutions: the identity
        model.encoder.prenet = prenet
        for conv in prenet.convs:
            conv.weight.normal_(std=0.3)
        changed = model.encoder(text, mask)
        assert (changed - out).abs().max() > 1e-3
        # more padding after the text changes nothing for the real characters
        longer = torch.cat([text, torch.zeros(text.shape[0], 3, dtype=text.dtype)], 1)
        longer_mask = torch.cat([mask, torch.zeros(mask.shape[0], 3, dtype=torch.bool)], 1)
        padded = model.encoder(longer, longer_mask)
    assert torch.allclose(padded[:, : text.shape[1]][mask], changed[mask], atol=1e-5)


@pytest.mark.parametrize("layout", ["delay", "flatten"])
def test_decoder_is_causal(layout):
    """The logits at step s get no gradient from decoder inputs after s."""
    model = tiny(layout)
    text, text_lengths, tokens = batch(model)
    text_mask = torch.arange(text.shape[1])[None] < text_lengths[:, None]
    memory = model.encoder(text, text_mask)
    x = model.decoder.embed_tokens(tokens).detach().requires_grad_(True)
    # re-run the decoder blocks on a differentiable input embedding
    h = x
    mask = text_mask[:, None, None, :]
    for blk in model.decoder.blocks:
        n = blk.norm1(h)
        k, v = blk.self_attn.keys_values(n)
        h = h + blk.self_attn.attend(n, k, v, causal=True)[0]
        k, v = blk.cross_attn.keys_values(memory)
        h = h + blk.cross_attn.attend(blk.norm2(h), k, v, mask)[0]
        h = h + blk.mlp(blk.norm3(h))
    logits = model.decoder.logits(h)
    s = 4
    logits[:, s].sum().backward()
    grad = x.grad.abs().sum(-1)  # (B, S)
    assert grad[:, : s + 1].sum() > 0
    assert grad[:, s + 1 :].sum() == 0


def test_encoder_is_bidirectional_and_ignores_padding():
    model = tiny()
    text, text_lengths, _ = batch(model)
    mask = torch.arange(text.shape[1])[None] < text_lengths[:, None]
    out = model.encoder(text, mask)
    changed = text.clone()
    changed[0, -1] = (changed[0, -1] % 29) + 1  # last character of the full-length item
    changed[1, -1] = 5  # a padded position of item 1
    out2 = model.encoder(changed, mask)
    assert not torch.allclose(out[0, 0], out2[0, 0])  # the first position sees the last
    assert torch.allclose(out[1, : text_lengths[1]], out2[1, : text_lengths[1]], atol=1e-6)


@pytest.mark.parametrize("window", [3, 100])
def test_windowed_decoder_sees_only_its_last_steps(window):
    """With model.dec_window W, each self-attention layer sees its last W steps: through L
    layers the logits at step s depend on the inputs s - L * (W - 1) .. s only."""
    model = tiny(dec_window=window)
    text, text_lengths, tokens = batch(model, T=12)
    inputs = model.decoder_inputs(tokens)
    base, _ = model(text, text_lengths, tokens, inputs=inputs)
    s, L = 10, len(model.decoder.blocks)
    for changed_at in range(s + 1):
        other = inputs.clone()
        other[:, :, changed_at] = (other[:, :, changed_at] + 1) % model.layout.codebook_size
        logits, _ = model(text, text_lengths, tokens, inputs=other)
        seen = changed_at >= s - L * (window - 1)
        assert torch.allclose(logits[:, s], base[:, s], atol=1e-6) != seen, changed_at


@pytest.mark.parametrize("layout,window", [("delay", 0), ("flatten", 0), ("delay", 3), ("flatten", 4)])
def test_kv_cache_equals_full_recompute(layout, window):
    model = tiny(layout, dec_window=window)
    text, text_lengths, tokens = batch(model)
    full, _ = model(text, text_lengths, tokens)
    text_mask = torch.arange(text.shape[1])[None] < text_lengths[:, None]
    memory = model.encoder(text, text_mask)
    B, N, S = tokens.shape
    cache = model.decoder.start(memory, text_mask, S)
    inputs = torch.cat([torch.full_like(tokens[:, :, :1], model.layout.bos_id), tokens[:, :, :-1]], 2)
    steps = [model.decoder.step(inputs[:, :, s : s + 1], cache, s)[0] for s in range(S)]
    incremental = torch.cat(steps, dim=1)
    torch.testing.assert_close(incremental, full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layout", ["delay", "flatten"])
def test_seeded_generation_is_reproducible_and_well_formed(layout):
    model = tiny(layout)
    text, text_lengths, _ = batch(model)
    limits = torch.tensor([40, 25])
    runs = [
        model.generate(text, text_lengths, limits, temperature=1.0, top_k=8,
                       generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(runs[0]["tokens"], runs[1]["tokens"])
    other = model.generate(text, text_lengths, limits, temperature=1.0, top_k=8,
                           generator=torch.Generator().manual_seed(8))
    assert not torch.equal(runs[0]["tokens"], other["tokens"])
    out = runs[0]
    lay = model.layout
    codes = lay.codes(out["tokens"])
    assert codes.shape[1] == lay.n_codebooks
    assert int(codes.max()) < lay.codebook_size and int(codes.min()) >= 0
    for b in range(2):
        assert out["frames"][b] <= lay.n_frames(int(limits[b]) + lay.tail)
        if not out["stopped"][b]:
            assert out["frames"][b] == lay.n_frames(int(limits[b]) + lay.tail)


@pytest.mark.parametrize("layout", ["delay", "flatten"])
def test_per_item_generators_make_an_item_independent_of_its_batch(layout):
    model = tiny(layout)
    text, text_lengths, _ = batch(model, B=3)
    limits = torch.tensor([30, 30, 30])
    seeds = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    together = model.generate(text, text_lengths, limits, temperature=1.0, generator=seeds)
    alone = model.generate(text[1:2, : int(text_lengths[1])], text_lengths[1:2], limits[1:2], temperature=1.0,
                           generator=[torch.Generator().manual_seed(2)])
    T = int(alone["frames"][0])
    assert int(together["frames"][1]) == T
    lay = model.layout
    assert torch.equal(lay.codes(together["tokens"][1:2], T), lay.codes(alone["tokens"], T))


@pytest.mark.parametrize("layout", ["delay", "flatten"])
def test_steps_report_only_final_frames_and_end_as_generate(layout):
    """Every frame `frames_ready` counts is final: later steps never change it."""
    model = tiny(layout)
    text, text_lengths, _ = batch(model)
    limits = torch.tensor([40, 25])
    kwargs = dict(temperature=1.0, top_k=8)
    seen = []
    for progress in model.generate_steps(text, text_lengths, limits, generator=torch.Generator().manual_seed(7),
                                         **kwargs):
        ready = progress.frames_ready()
        seen.append((ready.clone(), progress.tokens.clone()))
    final = progress.result()
    reference = model.generate(text, text_lengths, limits, generator=torch.Generator().manual_seed(7), **kwargs)
    assert torch.equal(final["tokens"], reference["tokens"]) and torch.equal(final["frames"], reference["frames"])
    assert torch.equal(seen[-1][0], final["frames"])
    codes = model.layout.codes(final["tokens"])
    for ready, partial in seen:
        for b in range(2):
            n = int(ready[b])
            assert torch.equal(model.layout.codes(partial[b : b + 1], n)[0], codes[b, :, :n])
    assert [int(r[0]) for r, _ in seen] == sorted(int(r[0]) for r, _ in seen)  # never goes back


def ending_at_once() -> TokTTS:
    """A tiny model whose head always prefers EOS on stream 0."""
    model = tiny("delay")
    with torch.no_grad():
        model.decoder.head.bias.zero_()
        model.decoder.head.bias[model.layout.eos_id] = 100.0
    return model


def test_generation_stops_on_eos():
    """A model whose head always prefers EOS on stream 0 stops right away and says so."""
    model = ending_at_once()
    text, text_lengths, _ = batch(model)
    out = model.generate(text, text_lengths, torch.tensor([50, 50]), temperature=0.0)
    assert out["stopped"].all()
    assert out["frames"].tolist() == [0, 0]
    assert out["tokens"].shape[2] == model.layout.n_codebooks  # EOS, then the delayed streams end


def test_generation_does_not_end_before_its_floor():
    """`min_steps`: a model that would end at once ends exactly there, each item at its own."""
    model = ending_at_once()
    text, text_lengths, _ = batch(model)
    out = model.generate(text, text_lengths, torch.tensor([50, 50]), temperature=0.0, min_steps=torch.tensor([3, 7]))
    assert out["stopped"].all() and out["frames"].tolist() == [3, 7]


def test_generation_hits_limit_without_eos():
    model = tiny("delay")
    with torch.no_grad():
        model.decoder.head.bias[model.layout.eos_id] = -100.0
    text, text_lengths, _ = batch(model)
    out = model.generate(text, text_lengths, torch.tensor([12, 20]), temperature=0.0)
    assert not out["stopped"].any()
    assert out["frames"].tolist() == [11, 19]  # EOS due by step 11 <=> at most 11 frames


@pytest.mark.parametrize("layout", ["delay", "flatten"])
def test_teacher_forced_prediction_is_greedy_decoding_of_its_own_past(layout):
    """Given the tokens greedy decoding produced, the teacher-forced first choices are those same
    tokens wherever the model chose; they are never EOS or another special id."""
    model = tiny(layout)
    with torch.no_grad():
        model.decoder.head.bias[model.layout.eos_id] = -100.0  # run to the limit: no EOS in the past
    text, text_lengths, _ = batch(model)
    out = model.generate(text, text_lengths, torch.tensor([12, 20]), temperature=0.0)
    tokens = out["tokens"]
    predicted = model.predict(text, text_lengths, tokens)
    assert predicted.shape == tokens.shape
    chose = tokens < model.layout.pad_id  # PAD is forced by the delay layout, not chosen
    assert chose.float().mean() > 0.8
    assert torch.equal(predicted[chose], tokens[chose])
    assert int(predicted.max()) < model.layout.pad_id
    with torch.no_grad():  # even a model that wants to stop everywhere predicts codes
        model.decoder.head.bias[model.layout.eos_id] = 100.0
    assert int(model.predict(text, text_lengths, tokens).max()) < model.layout.pad_id


def test_sample_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample(logits, 1.0, 2, 1.0, g) for _ in range(200)])
    assert set(draws.flatten().tolist()) == {2, 3}
    draws = torch.stack([sample(logits, 1.0, 0, 0.5, g) for _ in range(200)])
    assert set(draws.flatten().tolist()) == {3}  # p(3) = 0.64 >= 0.5 alone
    assert sample(logits, 0.0, 0, 1.0, None).item() == 3


def test_top_k_draws_the_k_best_ids_in_proportion_to_their_probabilities():
    """Top-k samples among the k best ids alone and maps the draw back to its id: every row of a
    (B, N, V) batch, one generator or one per item, and with top-p on top."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 40) * 2
    expected = torch.full_like(logits, float("-inf"))
    best = logits.topk(5, dim=-1)
    expected.scatter_(-1, best.indices, best.values / 0.7)
    expected = expected.softmax(-1)  # (B, N, V)
    for generator in (torch.Generator().manual_seed(1), [torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)]):
        draws = torch.stack([sample(logits, 0.7, 5, 1.0, generator) for _ in range(4000)])  # (n, B, N)
        counts = torch.nn.functional.one_hot(draws, 40).float().mean(0)  # (B, N, V)
        assert (counts - expected).abs().max() < 0.035
    nucleus = torch.stack([sample(logits, 0.7, 5, 0.5, torch.Generator().manual_seed(4)) for _ in range(200)])
    assert (nucleus[..., None] == best.indices[None]).any(-1).all()  # each row's own k best


def test_guided_attention_prefers_the_diagonal():
    S, L = 20, 10
    diag = torch.zeros(1, 1, S, L)
    for s in range(S):
        diag[0, 0, s, s * L // S] = 1.0
    anti = diag.flip(-1)
    lengths = torch.tensor([L]), torch.tensor([S])
    assert guided_attention_loss([diag], *lengths, 0.2) < 0.05
    assert guided_attention_loss([anti], *lengths, 0.2) > 0.3


def test_bf16_autocast_close_to_fp32():
    model = tiny()
    text, text_lengths, tokens = batch(model)
    ref, _ = model(text, text_lengths, tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = model(text, text_lengths, tokens)
    assert (low.float() - ref).abs().max() < 0.1


def test_accuracy_counts_first_ranked_targets_and_skips_padding():
    model = tiny()
    _, _, tokens = batch(model)  # (B, N, S)
    B, N, S = tokens.shape
    V, pad = model.layout.vocab_size, model.layout.pad_id
    target = tokens.transpose(1, 2)  # (B, S, N)
    logits = torch.nn.functional.one_hot(target, V).float()  # every target ranked first
    assert torch.equal(model.accuracy(logits, tokens), torch.ones(N))
    # stream 0 wrong on every step that is not padding: 0 there, stream 1 untouched
    wrong = logits.clone()
    wrong[:, :, 0] = torch.nn.functional.one_hot((target[:, :, 0] + 1) % V, V).float()
    acc = model.accuracy(wrong, tokens)
    assert acc[0] == 0 and acc[1] == 1
    assert (target == pad).any()  # the batch has padding, which must not count as right or wrong


def test_codebook_weights_weigh_the_streams():
    model = tiny()
    text, text_lengths, tokens = batch(model)
    logits, _ = model(text, text_lengths, tokens)
    plain, per_stream = model.loss(logits, tokens)
    weighted, _ = model.loss(logits, tokens, [3.0, 1.0])
    assert torch.allclose(plain, per_stream.mean())
    assert torch.allclose(weighted, (3 * per_stream[0] + per_stream[1]) / 4)
    # a zero weight takes a stream out of the gradient
    logits = logits.detach().requires_grad_(True)
    model.loss(logits, tokens, [1.0, 0.0])[0].backward()
    assert logits.grad[:, :, 1].abs().max() == 0 and logits.grad[:, :, 0].abs().max() > 0


def test_dropped_text_reads_only_the_no_text_memory():
    model = tiny(unconditional=True)
    with torch.no_grad():
        model.null_memory.normal_()
    text, text_lengths, tokens = batch(model)
    other = torch.randint(1, 30, text.shape)
    drop = torch.tensor([True, False])
    a, _ = model(text, text_lengths, tokens, drop_text=drop)
    b, _ = model(other, text_lengths, tokens, drop_text=drop)
    assert torch.allclose(a[0], b[0], atol=1e-6)  # item 0 has no text: the text cannot matter
    assert not torch.allclose(a[1], b[1], atol=1e-3)  # item 1 reads its text
    with pytest.raises(ValueError, match="no 'no text' memory"):
        tiny()(text, text_lengths, tokens, drop_text=drop)


@pytest.mark.parametrize("scale", [0.0, 2.5])
def test_guided_generation_equals_guided_full_recompute(scale):
    """Greedy guided decoding over the KV cache picks, at every step, the argmax of
    u + s (c - u) computed by full teacher-forced passes with and without the text."""
    model = tiny(unconditional=True)
    with torch.no_grad():
        model.null_memory.normal_()
    text, text_lengths, _ = batch(model)
    out = model.generate(text, text_lengths, torch.tensor([6, 6]), temperature=0, cfg_scale=scale)
    tokens = out["tokens"]  # (B, N, S)
    B = len(text)
    cond, _ = model(text, text_lengths, tokens)
    uncond, _ = model(text, text_lengths, tokens, drop_text=torch.ones(B, dtype=torch.bool))
    guided = uncond + scale * (cond - uncond)  # (B, S, N, V)
    lay = model.layout
    for s in range(tokens.shape[2]):
        allowed = lay.allowed(s)
        forced = lay.forced(s, torch.full((B,), -1))
        best = guided[:, s].masked_fill(~allowed, float("-inf")).argmax(-1)  # (B, N)
        free = forced < 0
        stopped_before = (tokens[:, 0, :s] == lay.eos_id).any(1)[:, None]
        check = free & ~stopped_before
        assert torch.equal(best[check], tokens[:, :, s][check]), s


def test_guided_sampling_is_reproducible_and_batch_independent():
    model = tiny(unconditional=True, input_dropout=0.3)
    text, text_lengths, _ = batch(model, B=3)
    limits = torch.tensor([8, 8, 8])

    def gens():
        return [torch.Generator().manual_seed(7 + b) for b in range(3)]

    a = model.generate(text, text_lengths, limits, temperature=1.0, generator=gens(), cfg_scale=2.0)
    b = model.generate(text, text_lengths, limits, temperature=1.0, generator=gens(), cfg_scale=2.0)
    assert torch.equal(a["tokens"], b["tokens"])
    alone = model.generate(text[1:2], text_lengths[1:2], limits[1:2], temperature=1.0, generator=gens()[1:2],
                           cfg_scale=2.0)
    S = alone["tokens"].shape[2]
    assert torch.equal(alone["tokens"][0], a["tokens"][1, :, :S])


def test_input_dropout_stays_on_in_generation():
    """The decoder's audio input is dropped at generation as in training (Tacotron's prenet):
    two seeds give different greedy decodings, one seed the same."""
    model = tiny(input_dropout=0.5)
    text, text_lengths, _ = batch(model)
    limits = torch.tensor([8, 8])

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return model.generate(text, text_lengths, limits, temperature=0, generator=g)["tokens"]

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_ctc_loss_reaches_the_decoder_and_skips_dropped_items():
    model = tiny(ctc_head=True).train()
    text, text_lengths, tokens = batch(model, T=12)
    model(text, text_lengths, tokens)
    steps = model.layout.n_steps(torch.tensor([12, 12]))
    loss = model.ctc_loss(text, text_lengths, steps)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert model.decoder.blocks[0].mlp[0].weight.grad.abs().max() > 0
    model(text, text_lengths, tokens)
    none = model.ctc_loss(text, text_lengths, steps, keep=torch.tensor([False, False]))
    assert none.item() == 0


def test_phoneme_loss_teaches_the_encoder_alone_and_can_be_learned():
    model = tiny(phoneme_head=True, phoneme_vocab_size=12).train()
    text, text_lengths, tokens = batch(model, L=7)  # lengths 7 and 5: 14 and 10 CTC frames
    phonemes = torch.tensor([[3, 4, 4, 5, 6, 7, 8, 9, 10], [2, 11, 2, 0, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([9, 3])  # more phonemes than the first item's 7 characters
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        model(text, text_lengths, tokens)
        loss = model.phoneme_loss(text_lengths, phonemes, lengths)
        optimizer.zero_grad()
        loss.backward()
        if not losses:
            assert model.encoder.blocks[0].mlp[0].weight.grad.abs().max() > 0
            assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.decoder.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 1 and losses[-1] < 0.2 * losses[0]  # the encoder can spell them out
    # padding characters never count: changing what follows the second text's end changes nothing
    model.eval()
    with torch.no_grad():
        model(text, text_lengths, tokens)
        before = model.phoneme_loss(text_lengths, phonemes, lengths)
        text[1, 5:] = 3  # was padding
        model(text, text_lengths, tokens)
        torch.testing.assert_close(model.phoneme_loss(text_lengths, phonemes, lengths), before)


def test_own_samples_keep_specials_and_shift_by_one():
    from toktts.train import own_samples

    model = tiny()
    text, text_lengths, tokens = batch(model)
    inputs = own_samples(model, {"text": text, "text_lengths": text_lengths, "tokens": tokens}, None)
    expected = model.decoder_inputs(tokens)
    assert inputs.shape == tokens.shape  # (B, N, S)
    special = expected >= model.layout.pad_id
    assert torch.equal(inputs[special], expected[special])
    assert (inputs[~special] < model.layout.codebook_size).all()
    assert model.training is False  # the model's mode is left as it was
