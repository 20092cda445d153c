"""EnCodec through transformers, with seeded random weights (pretrained=False) so it runs offline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from toktts.codecs import Codec, build_codec
from toktts.codecs.encodec import EncodecCodec
from toktts.config import CodecConfig
from toktts.errors import TokttsError

SR = 24000
HOP = 320


def cfg(**kw) -> CodecConfig:
    return CodecConfig(name="encodec", **{"pretrained": False, "n_codebooks": 8, **kw})


def tone_batch(lengths: list[int], extra: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S) zero-padded tones with a little noise, (B,) lengths."""
    rng = np.random.default_rng(seed)
    x = torch.zeros(len(lengths), max(lengths) + extra)
    for i, n in enumerate(lengths):
        t = np.arange(n) / SR
        wave = 0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t) + 0.05 * rng.standard_normal(n)
        x[i, :n] = torch.from_numpy(wave.astype(np.float32))
    return x, torch.tensor(lengths)


@pytest.fixture(scope="module")
def codec8() -> EncodecCodec:
    return EncodecCodec(cfg(n_codebooks=8))


@pytest.fixture(scope="module")
def codec2() -> EncodecCodec:
    return build_codec(cfg(n_codebooks=2))


@pytest.mark.parametrize("name", ["codec2", "codec8"])
def test_shapes_and_rates(name, request):
    codec = request.getfixturevalue(name)
    K = int(name[-1])
    assert isinstance(codec, Codec)
    assert (codec.sample_rate, codec.frame_rate, codec.n_codebooks, codec.codebook_size) == (SR, 75, K, 1024)
    lengths = [SR // 2, 8001, 3000]
    x, lengths_t = tone_batch(lengths, extra=100)  # S = 12,100 -> T = 38
    codes, frame_lengths = codec.encode(x, lengths_t)
    assert codes.shape == (3, K, 38)  # (B, K, T)
    assert codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 1024
    assert frame_lengths.tolist() == [38, 26, 10]  # ceil(n / 320)
    assert codes[0, 0].unique().numel() > 5  # the random codebooks are actually used
    audio = codec.decode(codes)
    assert audio.shape == (3, 38 * HOP)
    assert audio.dtype == torch.float32
    assert torch.isfinite(audio).all() and audio.abs().max() > 0


def test_batched_encode_matches_one_at_a_time(codec8):
    lengths = [SR // 2, 8001, 2240]  # >= 7 frames: shorter items see the reflect padding
    x, lengths_t = tone_batch(lengths, extra=700, seed=1)
    codes, frame_lengths = codec8.encode(x, lengths_t)
    same = total = 0
    for i, n in enumerate(lengths):
        alone, alone_lengths = codec8.encode(x[i : i + 1, :n], lengths_t[i : i + 1])
        assert alone.shape == (1, 8, frame_lengths[i]) and alone_lengths[0] == frame_lengths[i]
        # the first codebook decides the rest; floating-point differences between batch shapes
        # may flip a rare near-tie further down the residual chain
        assert torch.equal(alone[0, 0], codes[i, 0, : frame_lengths[i]])
        same += int((alone[0] == codes[i, :, : frame_lengths[i]]).sum())
        total += alone[0].numel()
    assert same / total > 0.97


def test_padding_does_not_leak(codec2):
    x, lengths = tone_batch([SR // 2, SR // 3], seed=2)
    noisy = x.clone()
    noisy[torch.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0.9
    assert torch.equal(codec2.encode(x, lengths)[0], codec2.encode(noisy, lengths)[0])


def test_a_batch_item_decodes_as_it_does_alone(codec2):
    """Decoding a padded batch gives each item what decoding it alone gives (the 24 kHz model is
    causal: the padding reaches nothing before it), and, told the lengths, silence after it."""
    x, lengths = tone_batch([SR // 2, SR // 5], seed=4)
    codes, frames = codec2.encode(x, lengths)
    n = int(frames[1])
    codes = codes.clone()
    codes[1, :, n:] = 0  # what a model's ended take holds there
    hop = codec2.hop_length
    batched = codec2.decode(codes, frames)
    assert torch.allclose(batched[1, : n * hop], codec2.decode(codes[1:, :, :n])[0], atol=1e-5)
    assert torch.equal(batched[1, n * hop :], torch.zeros(batched.shape[1] - n * hop))
    assert torch.allclose(batched[0], codec2.decode(codes[:1])[0], atol=1e-5)
    noncausal = EncodecCodec(cfg(n_codebooks=2))
    noncausal.model.config.use_causal_conv = False  # a model of another make: each item decoded alone
    alone = noncausal.decode(codes, frames)
    assert torch.allclose(alone[1, : n * hop], noncausal.decode(codes[1:, :, :n])[0], atol=1e-5)
    assert torch.equal(alone[1, n * hop :], torch.zeros(alone.shape[1] - n * hop))


def test_bandwidth_picks_a_prefix_of_the_codebooks(codec2, codec8):
    """Two codecs built with the same seed share their weights (seeding works), and 1.5 kbps
    codes are the first 2 of the 6 kbps codes (residual quantisation)."""
    x, lengths = tone_batch([SR // 2, SR // 4], seed=3)
    assert torch.equal(codec2.encode(x, lengths)[0], codec8.encode(x, lengths)[0][:, :2])


def test_codewords_are_what_the_decoder_reads(codec2):
    """A frame's quantised latent is the sum of its codes' codewords, one per codebook."""
    words = codec2.codewords()
    assert words.shape == (2, 1024, codec2.model.config.codebook_dim)
    assert (words[:, 0] != words[:, 1]).any(-1).all()  # codes differ (seeded random weights)
    codes = torch.randint(0, 1024, (3, 2, 5), generator=torch.Generator().manual_seed(0))
    latent = codec2.model.quantizer.decode(codes.transpose(0, 1))  # (B, D, T)
    torch.testing.assert_close(latent.transpose(1, 2), words[0][codes[:, 0]] + words[1][codes[:, 1]])


def test_invalid_n_codebooks():
    with pytest.raises(TokttsError, match=r"one of 2 \(1\.5 kbps\).*32 \(24 kbps\); got 3"):
        EncodecCodec(cfg(n_codebooks=3))


@pytest.mark.parametrize("key,value", [("sample_rate", 16000), ("frame_rate", 50), ("codebook_size", 2048)])
def test_config_must_match_the_model(key, value):
    with pytest.raises(TokttsError, match=f"codec.{key}={value} does not match"):
        EncodecCodec(cfg(**{key: value}))


def test_pretrained_offline_says_what_to_do(monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("facebook/encodec_24khz", "config.json"), str):
        pytest.skip("facebook/encodec_24khz is in this machine's Hugging Face cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokttsError, match=r"facebook/encodec_24khz.*codec\.name=mel"):
        EncodecCodec(cfg(pretrained=True))


def test_bad_codes(codec2):
    with pytest.raises(TokttsError, match="must lie in"):
        codec2.decode(torch.full((1, 2, 3), 1024))
    with pytest.raises(TokttsError, match="K=2"):
        codec2.decode(torch.zeros(1, 8, 3, dtype=torch.long))


def test_save_writes_nothing(codec2, tmp_path):
    codec2.save(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert codec2.to("cpu") is codec2
