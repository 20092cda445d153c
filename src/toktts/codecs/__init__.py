"""Neural audio codecs behind one small interface.

A codec turns a batch of mono waveforms into discrete codes of shape (B, K, T) (K codebooks,
T frames at `frame_rate` Hz) and back. `build_codec(cfg, state_dir)` returns the codec named by
`cfg.name`; codecs that learn state from data (the mel codec) save it with `save(dir)` next to
the model weights and read it back from `state_dir`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from toktts.config import CodecConfig
from toktts.errors import TokttsError


@runtime_checkable
class Codec(Protocol):
    sample_rate: int
    frame_rate: int
    n_codebooks: int
    codebook_size: int

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) float waveforms at `sample_rate`, (B,) sample lengths -> (B, K, T) long codes,
        (B,) frame lengths. Padding frames of shorter items hold arbitrary codes."""

    def decode(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, T) long codes -> (B, S) float waveforms, S = T * sample_rate / frame_rate. With
        (B,) frame `lengths`, an item's frames from its length on are padding: its waveform there
        is silence and nothing of the padding reaches the frames before it."""

    def codewords(self) -> torch.Tensor:
        """(K, C, D) float: the vector each code of each codebook stands for (residual codebooks
        hold residuals). Codes whose vectors are close sound alike."""

    def to(self, device: torch.device | str) -> "Codec": ...

    def save(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write whatever the codec needs to be rebuilt (nothing for pretrained codecs); `dtype`
        may store learned state smaller."""


def nearest_codes(codewords: torch.Tensor, n: int) -> torch.Tensor:
    """(K, C, D) codewords -> (K, C, n) long: each code's n nearest other codes of its codebook,
    nearest first (Euclidean). The confusions a model that knows roughly what comes next makes."""
    K, C, _ = codewords.shape
    if not 1 <= n < C:
        raise TokttsError(f"need 1 <= n < codebook size ({C}) nearest codes, got {n}")
    x = codewords.float()
    dist = torch.cdist(x, x)  # (K, C, C)
    dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))  # a code is not its own neighbour
    return dist.topk(n, dim=-1, largest=False).indices


def build_codec(cfg: CodecConfig, state_dir: str | Path | None = None) -> Codec:
    """The codec `cfg` names; learned state (mel codebooks) is loaded from `state_dir` if given."""
    if cfg.name == "mel":
        from toktts.codecs.mel import MelCodec

        return MelCodec.load(cfg, state_dir) if state_dir is not None else MelCodec(cfg)
    if cfg.name == "encodec":
        from toktts.codecs.encodec import EncodecCodec

        return EncodecCodec(cfg)
    raise TokttsError(f"unknown codec {cfg.name!r}; use 'mel' (offline) or 'encodec'")
