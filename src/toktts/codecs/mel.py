"""The offline codec: log-mel frames quantised by residual k-means, decoded by Griffin-Lim.

Nothing to download. `fit` learns K codebooks of V codes from a few hundred utterances (this is
what `toktts prepare` does first); `save`/`load` keep them in `codec.safetensors` next to the
model. One codec frame per hop of `sample_rate // frame_rate` samples (320 at 24 kHz / 75 Hz),
made of `stack` mel frames (R = stack; 1 by default):

    waveform (B, S) --STFT--> |X| (B, F, T*R) --mel--> log-mel (B, T*R, D) --stack--> (B, T, R*D) --RVQ--> codes (B, K, T)
    codes (B, K, T) --sum of codewords--> (B, T, R*D) --unstack, exp, pinv(mel)--> |X| --Griffin-Lim--> (B, T * hop)

D = `n_mels` bins, F = n_fft // 2 + 1 frequency bins. Stacking (e.g. 25 Hz codec frames of three
75 Hz mel frames) trades some codec detail for a decoder that runs three times fewer steps per
second of speech, which is what makes a voice trainable and fast on a CPU. The STFT pads with zeros rather than by
reflection, so frame t only sees samples in [t * hop - n_fft / 2, t * hop + n_fft / 2): an item
encoded alone or inside a zero-padded batch gets the same codes on its valid frames.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from toktts.config import CodecConfig
from toktts.errors import TokttsError
from toktts.files import write_atomic

STATE_FILE = "codec.safetensors"
N_FFT = 1024  # 42.7 ms at 24 kHz; with hop 320 the windows overlap by ~70%
LOG_FLOOR = 1e-5  # magnitudes below this are silence: log(1e-5) = -11.5
GRIFFIN_LIM_MOMENTUM = 0.99  # "fast Griffin-Lim" (Perraudin et al. 2013)
KMEANS_ITERS = 10
MAX_FIT_FRAMES = 300_000  # k-means sees a seeded random subset beyond this
KMEANS_PP_POINTS = 32_768  # k-means++ seeding runs on a subset: it is sequential in V
GRIFFIN_LIM_FRAMES = 4096  # frames per Griffin-Lim sub-batch: larger batches fall out of cache and run slower
CHUNK_ROWS = 4096  # rows per distance matmul: a 16 MiB (n, V) block, few enough chunks that thread sync stays cheap


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """(D, F) Slaney-style mel filterbank (librosa's default: `htk=False, norm='slaney'`)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        # linear below 1 kHz, logarithmic above
        f = np.asarray(f, dtype=np.float64)
        mel = f / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log_part, mel)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        hz = m * (200.0 / 3)
        log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log_part, hz)

    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]  # equal area per filter
    return torch.from_numpy(weights).float()


@functools.lru_cache(maxsize=4)
def _filterbank_and_pinv(sample_rate: int, n_fft: int, n_mels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, F) mel filterbank and its (F, D) pseudo-inverse A^T (A A^T)^-1 (A has full row rank;
    the normal equations in float64 take milliseconds where torch.linalg.pinv's SVD took seconds)."""
    fb = mel_filterbank(sample_rate, n_fft, n_mels).double().numpy()
    pinv = np.linalg.solve(fb @ fb.T, fb).T
    return torch.from_numpy(fb).float(), torch.from_numpy(np.ascontiguousarray(pinv)).float()


class MelCodec:
    """Log-mel + residual k-means codec; `fit` (or `load`) before `encode`/`decode`."""

    def __init__(self, cfg: CodecConfig):
        if cfg.stack < 1 or cfg.sample_rate % (cfg.frame_rate * cfg.stack):
            raise TokttsError(
                f"mel codec needs sample_rate divisible by frame_rate * stack, got {cfg.sample_rate}, "
                f"{cfg.frame_rate} and {cfg.stack}; use e.g. codec.frame_rate=75 codec.stack=1 or 25 and 3"
            )
        for key in ("n_codebooks", "codebook_size", "n_mels"):
            if getattr(cfg, key) < 1:
                raise TokttsError(f"codec.{key} must be >= 1, got {getattr(cfg, key)}")
        if cfg.griffin_lim_iters < 0:
            raise TokttsError(f"codec.griffin_lim_iters must be >= 0, got {cfg.griffin_lim_iters}")
        if cfg.despike < 0:
            raise TokttsError(f"codec.despike must be >= 0 (0 = off), got {cfg.despike}")
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.frame_rate = cfg.frame_rate
        self.n_codebooks = cfg.n_codebooks
        self.codebook_size = cfg.codebook_size
        self.hop_length = cfg.sample_rate // cfg.frame_rate  # samples per codec frame
        self.stack = cfg.stack
        self.mel_hop = self.hop_length // self.stack  # samples per mel frame
        self.dim = self.stack * cfg.n_mels  # width of a codeword
        self.n_fft = max(N_FFT, self.mel_hop)
        self.device = torch.device("cpu")
        self._window = torch.hann_window(self.n_fft)
        self._mel, self._mel_pinv = _filterbank_and_pinv(cfg.sample_rate, self.n_fft, cfg.n_mels)
        self.codebooks: torch.Tensor | None = None  # (K, V, R*D), in normalised units
        self.mean = torch.zeros(cfg.n_mels)  # (D,) per-bin log-mel mean of the fit set
        self.std = torch.ones(cfg.n_mels)  # (D,) one global scale, repeated (see fit)

    # -- state ---------------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return self.codebooks is not None

    def _require_fitted(self) -> torch.Tensor:
        if self.codebooks is None:
            raise TokttsError(
                "mel codec is not fitted; run `toktts prepare` (it fits the codebooks and saves "
                f"{STATE_FILE}) or load one with MelCodec.load(cfg, directory)"
            )
        return self.codebooks

    def codewords(self) -> torch.Tensor:
        """(K, V, R*D) the codebooks, in normalised log-mel units."""
        return self._require_fitted()

    def to(self, device: torch.device | str) -> MelCodec:
        self.device = torch.device(device)
        for name in ("_window", "_mel", "_mel_pinv", "mean", "std", "codebooks"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(self.device))
        return self

    def save(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write `codec.safetensors` (codebooks and normalisation) atomically into `directory`;
        `dtype` (e.g. fp16 for a shipped voice) stores the codebooks smaller, loading gives fp32."""
        from safetensors.torch import save

        codebooks = self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            "codebooks": codebooks.to(dtype or torch.float32).cpu().contiguous(),
            "mean": self.mean.float().cpu().contiguous(),
            "std": self.std.float().cpu().contiguous(),
        }
        meta = {"sample_rate": str(self.sample_rate), "frame_rate": str(self.frame_rate), "n_fft": str(self.n_fft),
                "stack": str(self.stack)}
        write_atomic(directory / STATE_FILE, save(tensors, metadata=meta))

    @classmethod
    def load(cls, cfg: CodecConfig, directory: str | Path) -> MelCodec:
        """A fitted codec from `directory/codec.safetensors`, checked against `cfg`."""
        from safetensors import SafetensorError, safe_open

        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise TokttsError(f"mel codec state {str(path)!r} not found; rerun `toktts prepare` to fit it")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                codebooks, mean, std = (f.get_tensor(name) for name in ("codebooks", "mean", "std"))
        except (SafetensorError, OSError, KeyError, ValueError) as e:
            reason = (str(e).splitlines() or [""])[0]
            raise TokttsError(
                f"mel codec state {str(path)!r} is unreadable ({type(e).__name__}: {reason}); "
                "rerun `toktts prepare` to fit it again"
            ) from None
        for key in ("sample_rate", "frame_rate", "stack"):
            if key in meta and int(meta[key]) != getattr(cfg, key):
                raise TokttsError(
                    f"mel codec state {str(path)!r} was fitted at {key}={meta[key]} but the config "
                    f"says codec.{key}={getattr(cfg, key)}; rerun `toktts prepare` or fix the setting"
                )
        want = (cfg.n_codebooks, cfg.codebook_size, cfg.stack * cfg.n_mels)
        if tuple(codebooks.shape) != want or mean.shape != (cfg.n_mels,) or std.shape != (cfg.n_mels,):
            raise TokttsError(
                f"mel codec state {str(path)!r} holds codebooks of shape {tuple(codebooks.shape)} "
                f"(n_codebooks, codebook_size, stack * n_mels) but the config asks for {want}; rerun "
                "`toktts prepare` or fix the codec settings"
            )
        codec = cls(cfg)
        codec.codebooks, codec.mean, codec.std = codebooks.float(), mean.float(), std.float()
        return codec

    # -- features ------------------------------------------------------------------------------

    def _stft(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, S) -> complex (B, F, S // hop + 1), zero-padded at both ends (see module doc)."""
        return torch.stft(
            waveforms, self.n_fft, self.mel_hop, window=self._window,
            center=True, pad_mode="constant", return_complex=True,
        )

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) sample counts -> (B,) frame counts, ceil(n / hop)."""
        return torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor").long()

    @torch.inference_mode()
    def log_mel(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) waveforms -> (B, T*R, D) natural-log mel magnitudes at the mel rate,
        T = ceil(S / hop) codec frames of R = stack mel frames.

        Samples at or past `lengths` are zeroed first, so padding never leaks into valid frames."""
        waveforms = torch.as_tensor(waveforms, dtype=torch.float32).to(self.device)
        if waveforms.dim() != 2:
            raise TokttsError(f"waveforms must be (B, S), got shape {tuple(waveforms.shape)}")
        n_frames = -(-waveforms.shape[1] // self.hop_length) * self.stack
        if waveforms.shape[0] == 0 or n_frames == 0:
            return torch.zeros(waveforms.shape[0], n_frames, self.cfg.n_mels, device=self.device)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=self.device)
            positions = torch.arange(waveforms.shape[1], device=self.device)
            waveforms = waveforms * (positions[None, :] < lengths[:, None])
        # pad to a whole number of hops; the STFT then yields T + 1 frames, the last past the end
        waveforms = torch.nn.functional.pad(waveforms, (0, n_frames * self.mel_hop - waveforms.shape[1]))
        magnitude = self._stft(waveforms)[..., :n_frames].abs()  # (B, F, T)
        mel = torch.matmul(self._mel, magnitude)  # (B, D, T)
        return mel.clamp_min(LOG_FLOOR).log().transpose(1, 2)  # (B, T, D)

    # -- fitting -------------------------------------------------------------------------------

    @torch.inference_mode()
    def fit(self, waveforms: Iterable[np.ndarray | torch.Tensor], progress: bool = False) -> None:
        """Learn the normalisation and the residual k-means codebooks from 1-D waveforms at
        `sample_rate` (at most MAX_FIT_FRAMES frames are used, a seeded random subset).
        `progress` shows bars for the feature pass and the codebooks."""
        from tqdm.auto import tqdm

        frames = []
        for i, wav in enumerate(tqdm(waveforms, desc="mel codec: features", disable=not progress, unit="utt")):
            wav = torch.as_tensor(np.asarray(wav) if not torch.is_tensor(wav) else wav, dtype=torch.float32)
            if wav.dim() != 1:
                raise TokttsError(f"mel codec fit expects 1-D waveforms, item {i} has shape {tuple(wav.shape)}")
            if wav.numel() > 0:
                frames.append(self.log_mel(wav[None])[0])  # (T*R, D)
        x = torch.cat(frames) if frames else torch.empty(0, self.cfg.n_mels, device=self.device)  # (N*R, D)
        # per-bin mean, one global scale: a per-bin std would blow up bins that are (nearly)
        # constant in the fit set, e.g. everything above 8 kHz in 16 kHz recordings
        mean = x.mean(0) if len(x) else torch.zeros(self.cfg.n_mels, device=self.device)
        std = (x - mean).square().mean().sqrt().nan_to_num(1.0).clamp_min(1e-3).expand(self.cfg.n_mels).clone()
        # Stack within each utterance, so a codeword never spans two recordings.
        residual = torch.cat([self._stack((f - mean) / std) for f in frames]) if frames else x  # (N, R*D)
        if residual.shape[0] < self.codebook_size:
            raise TokttsError(
                f"mel codec fit got {residual.shape[0]} frames, fewer than codebook_size={self.codebook_size}; "
                "fit on more audio (codec.fit_utterances) or lower codec.codebook_size"
            )
        generator = torch.Generator(device="cpu").manual_seed(self.cfg.seed)
        if residual.shape[0] > MAX_FIT_FRAMES // self.stack:
            keep = torch.randperm(residual.shape[0], generator=generator)[: MAX_FIT_FRAMES // self.stack]
            residual = residual[keep.to(residual.device)]
        codebooks = []
        for k in tqdm(range(self.n_codebooks), desc="mel codec: k-means", disable=not progress, unit="codebook"):
            codebook = _kmeans(residual, self.codebook_size, KMEANS_ITERS, generator)
            codes, _ = _nearest(residual, codebook)
            residual = residual - codebook[codes]
            codebooks.append(codebook)
        self.mean, self.std = mean, std
        self.codebooks = torch.stack(codebooks)  # (K, V, D)

    # -- the codec -----------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waveforms, (B,) sample lengths -> (B, K, T) codes, (B,) frame lengths."""
        codebooks = self._require_fitted()
        lengths = torch.as_tensor(lengths, device=self.device).long()
        if waveforms.dim() != 2 or lengths.shape != (waveforms.shape[0],):
            raise TokttsError(
                f"encode expects (B, S) waveforms and (B,) lengths, got {tuple(waveforms.shape)} "
                f"and {tuple(lengths.shape)}"
            )
        if lengths.numel() and int(lengths.max()) > waveforms.shape[1]:
            raise TokttsError(f"a length ({int(lengths.max())}) exceeds the waveform width {waveforms.shape[1]}")
        feats = self._stack((self.log_mel(waveforms, lengths) - self.mean) / self.std)  # (B, T, R*D)
        B, T, D = feats.shape
        residual = feats.reshape(B * T, D)
        codes = []
        for codebook in codebooks:
            idx, _ = _nearest(residual, codebook)
            residual = residual - codebook[idx]
            codes.append(idx)
        codes = torch.stack(codes).reshape(self.n_codebooks, B, T).transpose(0, 1)  # (B, K, T)
        return codes.contiguous(), self.frame_lengths(lengths)

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3 or codes.shape[1] != self.n_codebooks:
            raise TokttsError(f"codes must be (B, K={self.n_codebooks}, T), got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise TokttsError(
                f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        return codes.to(self.device).long()

    @torch.inference_mode()
    def codes_to_log_mel(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, K, T) codes -> (B, T*R, D) the quantised log-mel they stand for, at the mel rate."""
        codebooks = self._require_fitted()
        codes = self._check_codes(codes)
        feats = sum(codebooks[k][codes[:, k]] for k in range(self.n_codebooks))  # (B, T, R*D)
        B, T, _ = feats.shape
        return feats.reshape(B, T * self.stack, self.cfg.n_mels) * self.std + self.mean

    def _stack(self, feats: torch.Tensor) -> torch.Tensor:
        """(..., T*R, D) -> (..., T, R*D): R consecutive mel frames side by side."""
        *lead, n, d = feats.shape
        return feats.reshape(*lead, n // self.stack, self.stack * d)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, T) codes -> (B, T * hop) float32 waveforms; an item's frames from its entry of
        `lengths` (B,) on are silence (a batch's padding: the codes there, code 0 for a model's
        ended takes, would otherwise be heard in the item's last frames through Griffin-Lim's
        overlapping windows, and its last frame despiked against them)."""
        log_mel = self.codes_to_log_mel(codes)  # (B, T*R, D)
        B, T, _ = log_mel.shape  # T counts mel frames from here on
        if B == 0 or T == 0:
            return torch.zeros(B, T * self.mel_hop, device=self.device)
        if lengths is not None:
            padding = torch.arange(T, device=log_mel.device) >= lengths.to(log_mel.device)[:, None] * self.stack  # (B, T)
            log_mel = log_mel.masked_fill(padding[..., None], math.log(LOG_FLOOR))
        if self.cfg.despike > 0:
            log_mel = despike(log_mel, self.cfg.despike)
        magnitude = torch.matmul(self._mel_pinv, log_mel.exp().transpose(1, 2)).clamp_min(0)  # (B, F, T)
        # the STFT of T * hop samples has T + 1 frames; the last is half past the end: repeat frame T - 1
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)
        per_batch = max(1, GRIFFIN_LIM_FRAMES // T)
        return torch.cat([self._griffin_lim(m, T * self.mel_hop) for m in magnitude.split(per_batch)])

    def _griffin_lim(self, magnitude: torch.Tensor, length: int) -> torch.Tensor:
        """(B, F, T + 1) magnitudes -> (B, length) waveforms; fast Griffin-Lim with momentum."""
        generator = torch.Generator(device="cpu").manual_seed(self.cfg.seed)
        phase = torch.rand(magnitude.shape, generator=generator).to(self.device) * (2 * math.pi)
        angles = torch.polar(torch.ones_like(magnitude), phase)
        previous = torch.zeros_like(angles)

        def istft(spec: torch.Tensor) -> torch.Tensor:
            return torch.istft(spec, self.n_fft, self.mel_hop, window=self._window, center=True, length=length)

        for _ in range(self.cfg.griffin_lim_iters):
            rebuilt = self._stft(istft(magnitude * angles))
            angles = rebuilt - previous * (GRIFFIN_LIM_MOMENTUM / (1 + GRIFFIN_LIM_MOMENTUM))
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        return istft(magnitude * angles).float()


def despike(log_mel: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, T, D) log-mel -> the same with no bin more than `margin` above the louder of its two
    neighbouring frames (an edge frame has one).

    A model's codes can sum to a frame louder than both its neighbours in a band, mostly the top
    one: a combination no recording has (none of the recordings' own codes does it). Griffin-Lim
    cannot give one frame's energy a coherent phase and it comes out as a click of a few
    milliseconds. Real onsets stay loud for more than one frame, so they pass; a frame may still
    rise `margin` above both neighbours. Frames only look at their neighbours, so a streaming
    decoder with a frame of context on each side despikes the frames it gives out as a whole
    decode does; in a batch `decode` silences the padding first, which the item's last frame's
    louder neighbour then never is."""
    if log_mel.shape[1] < 2:
        return log_mel
    left = torch.cat([log_mel[:, 1:2], log_mel[:, :-1]], dim=1)  # frame t - 1 (at the start: t + 1)
    right = torch.cat([log_mel[:, 1:], log_mel[:, -2:-1]], dim=1)  # frame t + 1 (at the end: t - 1)
    return torch.minimum(log_mel, torch.maximum(left, right) + margin)


# -- residual k-means helpers ------------------------------------------------------------------


def _nearest(x: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) points, (V, D) codebook -> (N,) nearest code, (N,) squared distance to it.

    ‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖²: one matmul per chunk of rows instead of an (N, V, D)
    difference. The (n, V) block is allocated once: a fresh multi-MiB buffer per chunk costs
    more in page faults than the matmul itself."""
    n_rows = max(1, min(CHUNK_ROWS, x.shape[0]))
    c2 = codebook.square().sum(1)  # (V,)
    block = torch.empty(n_rows, codebook.shape[0], dtype=x.dtype, device=x.device)  # (n, V)
    codes = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    dists = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], n_rows):
        chunk = x[start : start + n_rows]
        d = block[: chunk.shape[0]]
        torch.addmm(c2, chunk, codebook.T, alpha=-2, out=d)  # ‖c‖² − 2 x·c
        torch.min(d, 1, out=(dists[start : start + n_rows], codes[start : start + n_rows]))
    dists += torch.linalg.vector_norm(x, dim=1).square()  # no (N, D) temporary
    return codes, dists.clamp_min_(0)


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on (a subset of) x: (k, D) initial centres."""
    if x.shape[0] > KMEANS_PP_POINTS:
        x = x[torch.randperm(x.shape[0], generator=generator)[:KMEANS_PP_POINTS].to(x.device)]
    x2 = torch.linalg.vector_norm(x, dim=1).square()  # (N,)

    def sq_dist(i: int) -> torch.Tensor:  # ‖x − x_i‖²; the matmul form allocates no (N, D) temporary
        return torch.addmv(x2 + x2[i], x, x[i], alpha=-2).clamp_min_(0)

    first = int(torch.randint(x.shape[0], (1,), generator=generator))
    centres = [x[first]]
    d2 = sq_dist(first)
    # one uniform draw per centre, turned into a D²-weighted pick with a cumulative sum on device
    draws = torch.rand(k, generator=generator, dtype=torch.float64).to(x.device)
    for i in range(1, k):
        cumulative = d2.double().cumsum(0)
        if float(cumulative[-1]) <= 0:  # fewer distinct points than k: any point will do
            pick = int(torch.randint(x.shape[0], (1,), generator=generator))
        else:
            pick = int(torch.searchsorted(cumulative, draws[i] * cumulative[-1]).clamp_max(x.shape[0] - 1))
        centres.append(x[pick])
        d2 = torch.minimum(d2, sq_dist(pick))
    return torch.stack(centres)


def _kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means on (N, D) points -> (k, D) centres. Empty clusters are reseeded with the
    points farthest from their centres, so every code stays in use."""
    centres = _kmeans_pp(x, k, generator)
    previous = None
    for _ in range(iters):
        codes, dists = _nearest(x, centres)
        if previous is not None and torch.equal(codes, previous):
            break
        previous = codes
        sums = torch.zeros_like(centres).index_add_(0, codes, x)
        counts = torch.bincount(codes, minlength=k)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp_min(1)[:, None].to(x.dtype))
        n_empty = int(empty.sum())
        if n_empty:
            far = dists.topk(min(n_empty, x.shape[0])).indices
            centres[empty.nonzero()[: far.numel(), 0]] = x[far]
    return centres
