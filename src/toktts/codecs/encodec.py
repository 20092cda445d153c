"""EnCodec 24 kHz (Défossez et al. 2022) through `transformers`: 75 frames/s, 1024 codes per codebook.

The number of codebooks K picks the bandwidth: K = 2/4/8/16/32 <=> 1.5/3/6/12/24 kbps (each
codebook adds 75 frames/s x 10 bits). The 24 kHz model is causal and encodes the whole clip in
one chunk, so an item encoded inside a zero-padded batch gets the same codes on its valid frames
as encoded alone: every batch is padded with zeros to a whole number of hops (320 samples), and
the padding mask zeroes what lies past each item's length. (Its convolutions pad on the left by
reflection, which reaches a few frames ahead: items shorter than 7 frames, < 0.1 s, can get
different codes alone than in a batch.)

`pretrained=False` builds the same network with seeded random weights (and random codebooks;
transformers initialises them to zeros) so that the real code path runs offline in tests.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from toktts.config import CodecConfig
from toktts.errors import TokttsError

BANDWIDTHS = {2: 1.5, 4: 3.0, 8: 6.0, 16: 12.0, 32: 24.0}  # n_codebooks -> kbps


def _offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; honour it when it is set later too
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


def _download_error(cfg: CodecConfig, e: Exception) -> TokttsError:
    reason = (str(e).strip().splitlines() or [""])[0][:200]
    return TokttsError(
        f"could not load the EnCodec weights {cfg.model_id!r} ({type(e).__name__}: {reason}); "
        "without internet use the offline codec (`--set codec.name=mel`), or download the "
        f"weights once with `hf download {cfg.model_id}` (HF_HOME sets the cache)"
    )


def _check_config(cfg: CodecConfig, model_cfg) -> None:
    got = {"sample_rate": model_cfg.sampling_rate, "frame_rate": model_cfg.frame_rate,
           "codebook_size": model_cfg.codebook_size}
    for key, value in got.items():
        if getattr(cfg, key) != value:
            raise TokttsError(
                f"codec.{key}={getattr(cfg, key)} does not match the EnCodec model {cfg.model_id!r} "
                f"({key}={value}); set codec.{key}={value}"
            )
    if model_cfg.chunk_length is not None:
        raise TokttsError(
            f"EnCodec model {cfg.model_id!r} encodes in overlapping chunks; only single-chunk "
            "models such as facebook/encodec_24khz are supported"
        )


def _load_model(cfg: CodecConfig):
    """The EncodecModel `cfg` asks for, checked against `cfg`, in eval mode on the CPU."""
    from transformers import EncodecConfig, EncodecModel

    if not cfg.pretrained:
        model_cfg = EncodecConfig()  # the 24 kHz architecture
        _check_config(cfg, model_cfg)
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global RNG
            torch.manual_seed(cfg.seed)
            model = EncodecModel(model_cfg)
            # transformers starts the codebooks at zero (trained ones replace them); draw each
            # stage's codewords from the per-dimension statistics of its residual on a noise probe
            # so that codes vary from frame to frame like a trained codec's
            with torch.no_grad():
                residual = model.encoder(0.1 * torch.randn(1, 1, model_cfg.sampling_rate))[0].T  # (T, D)
                for layer in model.quantizer.layers:
                    embed = layer.codebook.embed  # (V, D)
                    embed.copy_(residual.mean(0) + residual.std(0) * torch.randn_like(embed))
                    residual = residual - embed[layer.codebook.quantize(residual)]
        return model.eval()
    # offline, a missing or partial cache, a wrong id: each fails with a different exception type
    try:
        model_cfg = EncodecConfig.from_pretrained(cfg.model_id, local_files_only=_offline())
    except Exception as e:  # noqa: BLE001
        raise _download_error(cfg, e) from None
    _check_config(cfg, model_cfg)
    try:
        model = EncodecModel.from_pretrained(cfg.model_id, config=model_cfg, local_files_only=_offline())
    except Exception as e:  # noqa: BLE001
        raise _download_error(cfg, e) from None
    return model.eval()


class EncodecCodec:
    """facebook/encodec_24khz behind the `Codec` interface (see module doc)."""

    def __init__(self, cfg: CodecConfig):
        if cfg.n_codebooks not in BANDWIDTHS:
            valid = ", ".join(f"{k} ({bw:g} kbps)" for k, bw in BANDWIDTHS.items())
            raise TokttsError(f"encodec codec.n_codebooks must be one of {valid}; got {cfg.n_codebooks}")
        self.cfg = cfg
        self.model = _load_model(cfg)
        mc = self.model.config
        self.sample_rate = mc.sampling_rate
        self.frame_rate = mc.frame_rate
        self.n_codebooks = cfg.n_codebooks
        self.codebook_size = mc.codebook_size
        self.hop_length = mc.hop_length
        self.bandwidth = BANDWIDTHS[cfg.n_codebooks]
        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> EncodecCodec:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def codewords(self) -> torch.Tensor:
        """(K, C, D) the residual quantizer's codebooks at this bandwidth."""
        layers = self.model.quantizer.layers[: self.n_codebooks]
        return torch.stack([layer.codebook.embed.detach().float() for layer in layers])

    def save(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """Nothing to write: the codec is rebuilt from the config (model id, n_codebooks)."""

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) sample counts -> (B,) frame counts, ceil(n / hop)."""
        return torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor").long()

    @torch.inference_mode()
    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waveforms, (B,) sample lengths -> (B, K, T) codes (T = ceil(S / hop)), (B,) frame lengths."""
        lengths = torch.as_tensor(lengths, device=self.device).long()
        if waveforms.dim() != 2 or lengths.shape != (waveforms.shape[0],):
            raise TokttsError(
                f"encode expects (B, S) waveforms and (B,) lengths, got {tuple(waveforms.shape)} "
                f"and {tuple(lengths.shape)}"
            )
        B, S = waveforms.shape
        if B and int(lengths.max()) > S:
            raise TokttsError(f"a length ({int(lengths.max())}) exceeds the waveform width {S}")
        T = -(-S // self.hop_length)
        if B == 0 or T == 0:
            return torch.zeros(B, self.n_codebooks, T, dtype=torch.long, device=self.device), self.frame_lengths(lengths)
        x = torch.nn.functional.pad(waveforms.to(self.device, torch.float32), (0, T * self.hop_length - S))
        mask = torch.arange(x.shape[1], device=self.device)[None, :] < lengths[:, None]  # (B, S')
        out = self.model.encode(x[:, None], padding_mask=mask[:, None], bandwidth=self.bandwidth, return_dict=True)
        codes = out.audio_codes  # (chunks=1, B, K, T)
        if codes.shape != (1, B, self.n_codebooks, T):
            raise RuntimeError(f"EnCodec returned codes of shape {tuple(codes.shape)}, expected {(1, B, self.n_codebooks, T)}")
        return codes[0].long(), self.frame_lengths(lengths)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, T) codes -> (B, T * hop) float32 waveforms, silent after each item's `lengths`
        (B,) frames. The 24 kHz model's convolutions are causal, so the padding after an item
        reaches no sample before its end; a non-causal model decodes a shorter item alone."""
        if codes.dim() != 3 or codes.shape[1] != self.n_codebooks:
            raise TokttsError(f"codes must be (B, K={self.n_codebooks}, T), got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise TokttsError(
                f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        B, _, T = codes.shape
        if B == 0 or T == 0:
            return torch.zeros(B, T * self.hop_length, device=self.device)
        if lengths is not None and bool((lengths < T).any()) and not self.model.config.use_causal_conv:
            audio = torch.zeros(B, T * self.hop_length, device=self.device)
            for b, n in enumerate(lengths.tolist()):
                if n > 0:
                    audio[b, : n * self.hop_length] = self.decode(codes[b : b + 1, :, :n])[0]
            return audio
        audio = self.model.decode(codes.to(self.device).long()[None], [None], return_dict=True).audio_values
        audio = audio[:, 0, : T * self.hop_length].float()  # (B, 1, S) -> (B, S)
        if lengths is not None:
            ends = lengths.to(audio.device)[:, None] * self.hop_length
            audio = audio.masked_fill(torch.arange(audio.shape[1], device=audio.device) >= ends, 0.0)
        return audio
