"""The offline mel codec: fit, shapes, batching, round-trip quality, persistence, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from toktts.codecs import Codec, build_codec
from toktts.codecs.mel import STATE_FILE, MelCodec, despike, mel_filterbank
from toktts.config import CodecConfig
from toktts.errors import TokttsError

SR = 24000
HOP = 320


def synth(seconds: float, seed: int) -> np.ndarray:
    """A speech-like test signal: a gliding harmonic tone under a syllable-rate envelope, with
    noise bursts (fricatives) in the quiet parts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 250) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    harmonic = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    noise = rng.standard_normal(n) * (envelope < 0.3)
    return (0.1 * harmonic * envelope + 0.03 * noise).astype(np.float32)


def batch(waves: list[np.ndarray], extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, S) batch and (B,) lengths; `extra` adds padding past the longest item."""
    lengths = torch.tensor([len(w) for w in waves])
    x = torch.zeros(len(waves), int(lengths.max()) + extra)
    for i, w in enumerate(waves):
        x[i, : len(w)] = torch.from_numpy(w)
    return x, lengths


def small_cfg(**kw) -> CodecConfig:
    return CodecConfig(name="mel", **{"n_codebooks": 2, "codebook_size": 64, **kw})


FIT_SET = [synth(2.0, seed) for seed in range(8)]  # 1,200 frames
HELD_OUT = [synth(seconds, 100 + i) for i, seconds in enumerate([1.5, 1.0, 0.7])]


@pytest.fixture(scope="module")
def codec() -> MelCodec:
    codec = MelCodec(small_cfg())
    codec.fit(FIT_SET)
    return codec


def valid_mask(frame_lengths: torch.Tensor, T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < frame_lengths[:, None]  # (B, T)


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(SR, 1024, 80).numpy()
    theirs = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=80)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-7)


def test_unfitted_codec_refuses(tmp_path):
    codec = MelCodec(small_cfg())
    assert not codec.is_fitted
    x, lengths = batch(HELD_OUT)
    for call in (lambda: codec.encode(x, lengths), lambda: codec.decode(torch.zeros(1, 2, 5, dtype=torch.long)),
                 lambda: codec.save(tmp_path), codec.codewords):
        with pytest.raises(TokttsError, match="not fitted.*toktts prepare"):
            call()


def test_fit_needs_enough_frames():
    with pytest.raises(TokttsError, match="fewer than codebook_size=64"):
        MelCodec(small_cfg()).fit([synth(0.2, 0)])  # 15 frames


def test_encode_shapes_and_frame_lengths(codec):
    assert isinstance(codec, Codec)
    assert (codec.sample_rate, codec.frame_rate, codec.hop_length) == (SR, 75, HOP)
    lengths = [SR, 16001, 7000, 320, 1]
    x, _ = batch([synth(n / SR, 7)[:n] for n in lengths], extra=100)  # S = 24,100 -> T = 76
    codes, frame_lengths = codec.encode(x, torch.tensor(lengths))
    assert codes.shape == (5, 2, 76)  # (B, K, T)
    assert codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 64
    assert frame_lengths.tolist() == [75, 51, 22, 1, 1]  # ceil(n / 320)
    assert frame_lengths.dtype == torch.long


def test_batched_encode_equals_one_at_a_time(codec):
    x, lengths = batch(HELD_OUT, extra=1000)
    codes, frame_lengths = codec.encode(x, lengths)
    for i, wave in enumerate(HELD_OUT):
        alone, alone_lengths = codec.encode(torch.from_numpy(wave)[None], lengths[i : i + 1])
        assert alone.shape[-1] == alone_lengths[0] == frame_lengths[i]
        assert torch.equal(alone[0], codes[i, :, : frame_lengths[i]])


def test_padding_does_not_leak(codec):
    """Garbage past an item's length must not change its codes."""
    x, lengths = batch(HELD_OUT)
    noisy = x.clone()
    noisy[torch.arange(x.shape[1])[None, :] >= lengths[:, None]] = 1.0
    assert torch.equal(codec.encode(x, lengths)[0], codec.encode(noisy, lengths)[0])


def test_decode_length_and_dtype(codec):
    for T in (1, 7, 100):
        codes = torch.randint(0, 64, (2, 2, T))
        audio = codec.decode(codes)
        assert audio.shape == (2, T * HOP)
        assert audio.dtype == torch.float32
        assert torch.isfinite(audio).all()


def test_what_follows_a_batch_items_end_is_not_heard_in_it(codec):
    """Told each item's length, the decoder gives an item the same waveform whatever the padding
    after its end holds (code 0 for a model's ended takes, here also the other item's loudest
    frame); not told, the padding reaches the item's last frames through Griffin-Lim's windows."""
    x, lengths = batch(HELD_OUT[:2])
    codes, frames = codec.encode(x, lengths)
    short, long = int(frames.argmin()), int(frames.argmax())
    n = int(frames[short])
    assert n < codes.shape[2]
    loudest = int(codec.codes_to_log_mel(codes[long : long + 1]).mean(-1).view(-1, codec.stack).mean(-1).argmax())
    zeros, loud = codes.clone(), codes.clone()
    zeros[short, :, n:] = 0
    loud[short, :, n:] = codes[long, :, loudest : loudest + 1]
    told = [codec.decode(c, frames)[short, : n * HOP] for c in (zeros, loud)]
    untold = [codec.decode(c)[short, : n * HOP] for c in (zeros, loud)]
    assert torch.equal(told[0], told[1])
    assert not torch.allclose(untold[0][-HOP:], untold[1][-HOP:], atol=1e-3)


def log_mel_error(codec: MelCodec, waves: list[np.ndarray]) -> tuple[float, float, float]:
    """Mean |log-mel difference| (nats) over the valid frames: quantised vs original, decoded vs
    quantised, decoded vs original."""
    x, lengths = batch(waves)
    codes, frame_lengths = codec.encode(x, lengths)
    mask = valid_mask(frame_lengths, codes.shape[-1])
    original = codec.log_mel(x, lengths)
    quantised = codec.codes_to_log_mel(codes)
    decoded = codec.log_mel(codec.decode(codes))

    def err(a: torch.Tensor, b: torch.Tensor) -> float:
        return (a - b).abs()[mask].mean().item()

    return err(quantised, original), err(decoded, quantised), err(decoded, original)


def test_decoded_audio_has_the_quantised_spectrum(codec):
    # measured: 0.30 nats with 32 Griffin-Lim iterations, 0.77 with none (random phase),
    # 5.8 with the filterbank transpose in place of its pseudo-inverse
    _, decode_err, _ = log_mel_error(codec, HELD_OUT)
    assert decode_err < 0.45


def test_despike_lowers_a_lone_loud_frame_to_its_neighbours_plus_the_margin():
    log_mel = torch.full((1, 9, 3), -6.0)  # (B, T, D)
    log_mel[0, 4, 2] = -1.0  # one frame loud in the top band: a click
    log_mel[0, 6:, 0] = -2.0  # an onset that stays loud: speech
    out = despike(log_mel, 0.5)
    assert out.shape == log_mel.shape
    assert out[0, 4, 2] == pytest.approx(-5.5)
    changed = (out != log_mel).nonzero().tolist()
    assert changed == [[0, 4, 2]]  # the onset (loud to the last frame) and every quiet bin pass
    assert torch.equal(despike(log_mel, 10.0), log_mel)
    edges = torch.tensor([0.0, -6, -6, -6, 0])[None, :, None]  # a loud first and last frame: one neighbour each
    assert despike(edges, 0.5).flatten().tolist() == [-5.5, -6, -6, -6, -5.5]
    assert torch.equal(despike(edges[:, :1], 0.5), edges[:, :1])  # a lone frame has none


def test_despike_changes_little_of_real_codes_and_decoding_lowers_a_planted_burst(codec):
    x, lengths = batch(HELD_OUT)
    codes, _ = codec.encode(x, lengths)
    log_mel = codec.codes_to_log_mel(codes)
    assert (despike(log_mel, 0.5) != log_mel).float().mean() < 0.05
    off = MelCodec(small_cfg(despike=0.0))
    off.codebooks, off.mean, off.std = codec.codebooks, codec.mean, codec.std
    # the codes of frame 20 replaced by the loudest codeword of each codebook: a lone burst
    loud = codec.codewords().sum(-1).argmax(-1)  # (K,)
    burst = codes.clone()
    burst[:, :, 20] = loud[None, :]
    on_energy = codec.log_mel(codec.decode(burst))[:, 20].exp().sum(-1)
    off_energy = off.log_mel(off.decode(burst))[:, 20].exp().sum(-1)
    assert (on_energy < off_energy).all()


def test_despike_is_validated():
    with pytest.raises(TokttsError, match="codec.despike"):
        MelCodec(small_cfg(despike=-1.0))


def test_second_codebook_refines_the_first():
    one = MelCodec(small_cfg(n_codebooks=1))
    one.fit(FIT_SET)
    two = MelCodec(small_cfg(n_codebooks=2))
    two.fit(FIT_SET)
    assert torch.equal(one.codebooks[0], two.codebooks[0])  # same seed, same first stage
    quant1, _, decoded1 = log_mel_error(one, HELD_OUT)
    quant2, _, decoded2 = log_mel_error(two, HELD_OUT)
    assert quant2 < 0.9 * quant1  # measured 0.245 vs 0.294
    assert decoded2 < decoded1


def test_codewords_are_what_codes_decode_to(codec):
    words = codec.codewords()
    assert words.shape == (codec.n_codebooks, codec.codebook_size, codec.dim)
    codes = torch.randint(0, codec.codebook_size, (2, codec.n_codebooks, 7), generator=torch.Generator().manual_seed(0))
    summed = sum(words[k][codes[:, k]] for k in range(codec.n_codebooks))  # (B, T, R*D)
    expected = summed.reshape(2, 7 * codec.stack, -1) * codec.std + codec.mean
    torch.testing.assert_close(codec.codes_to_log_mel(codes), expected)


def test_fit_is_seeded():
    a, b, c = (MelCodec(small_cfg(seed=s)) for s in (0, 0, 1))
    for codec in (a, b, c):
        codec.fit(FIT_SET[:4])
    assert torch.equal(a.codebooks, b.codebooks)
    assert not torch.equal(a.codebooks, c.codebooks)


def test_save_load_round_trip(codec, tmp_path):
    codec.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # no temp file left behind
    for loaded in (MelCodec.load(small_cfg(), tmp_path), build_codec(small_cfg(), tmp_path)):
        assert loaded.is_fitted
        x, lengths = batch(HELD_OUT)
        assert torch.equal(loaded.encode(x, lengths)[0], codec.encode(x, lengths)[0])
        codes = torch.randint(0, 64, (2, 2, 20))
        assert torch.equal(loaded.decode(codes), codec.decode(codes))


def test_load_missing_state(tmp_path):
    with pytest.raises(TokttsError, match=f"{STATE_FILE}.*not found.*toktts prepare"):
        MelCodec.load(small_cfg(), tmp_path)


def test_load_corrupt_state(tmp_path):
    (tmp_path / STATE_FILE).write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(TokttsError, match=f"{STATE_FILE}.*unreadable.*toktts prepare"):
        MelCodec.load(small_cfg(), tmp_path)


def test_load_checks_shapes_against_config(codec, tmp_path):
    codec.save(tmp_path)
    for wrong in (small_cfg(n_codebooks=4), small_cfg(codebook_size=128), small_cfg(n_mels=40)):
        with pytest.raises(TokttsError, match="shape .*toktts prepare"):
            MelCodec.load(wrong, tmp_path)
    with pytest.raises(TokttsError, match="fitted at sample_rate=24000.*codec.sample_rate=16000"):
        MelCodec.load(small_cfg(sample_rate=16000, frame_rate=50), tmp_path)  # same shapes, other rate


def test_bad_inputs(codec):
    x, lengths = batch(HELD_OUT)
    with pytest.raises(TokttsError, match="exceeds"):
        codec.encode(x, lengths + x.shape[1])
    with pytest.raises(TokttsError, match=r"\(B, S\)"):
        codec.encode(x[0], lengths[:1])
    with pytest.raises(TokttsError, match="must lie in"):
        codec.decode(torch.full((1, 2, 3), 64))
    with pytest.raises(TokttsError, match="K=2"):
        codec.decode(torch.zeros(1, 3, 3, dtype=torch.long))


def test_empty_inputs(codec):
    codes, frame_lengths = codec.encode(torch.zeros(2, 0), torch.tensor([0, 0]))
    assert codes.shape == (2, 2, 0) and frame_lengths.tolist() == [0, 0]
    assert codec.decode(codes).shape == (2, 0)


def test_to_returns_self(codec):
    assert codec.to("cpu") is codec


def test_stacked_frames_at_25_hz(tmp_path):
    """stack=3: 25 Hz codec frames, each three 75 Hz mel frames quantised together."""
    cfg = small_cfg(frame_rate=25, stack=3)
    codec = MelCodec(cfg)
    codec.fit(FIT_SET)
    assert codec.codebooks.shape == (2, 64, 3 * 80)  # (K, V, R*D)
    x, lengths = batch(HELD_OUT)
    codes, frame_lengths = codec.encode(x, lengths)
    assert codes.shape == (3, 2, -(-x.shape[1] // 960))  # (B, K, T) at 25 Hz
    assert frame_lengths.tolist() == [-(-int(n) // 960) for n in lengths]
    single, _ = codec.encode(x[1:2, : lengths[1]], lengths[1:2])
    assert torch.equal(single[0], codes[1, :, : frame_lengths[1]])
    audio = codec.decode(codes)
    assert audio.shape == (3, codes.shape[-1] * 960)
    # the decoded audio carries the quantised spectrum (at the 75 Hz mel rate)
    mask = torch.arange(codes.shape[-1] * 3)[None, :] < (frame_lengths * 3)[:, None]
    quantised = codec.codes_to_log_mel(codes)
    decoded = codec.log_mel(audio)
    assert (decoded - quantised).abs()[mask].mean() < 0.45
    codec.save(tmp_path)
    assert torch.equal(MelCodec.load(cfg, tmp_path).encode(x, lengths)[0], codes)
    with pytest.raises(TokttsError, match="stack"):
        MelCodec.load(small_cfg(frame_rate=25, stack=1), tmp_path)


def test_stack_must_divide_the_sample_rate():
    with pytest.raises(TokttsError, match="stack"):
        MelCodec(small_cfg(frame_rate=75, stack=7))
