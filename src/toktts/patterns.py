"""Codebook layouts: how K parallel codebooks become the token streams the decoder models.

Shape letters: B batch, K codebooks, T frames, N streams (the decoder predicts N tokens per step),
S steps, C codebook size, V stream vocabulary (C codes + 3 special ids).

Special ids, per stream: PAD = V-3 (nothing here: before a delayed codebook starts, after the
end, and batch padding), BOS = V-2 (the decoder's first input), EOS = V-1 (end of speech).

**delay** (default; MusicGen/Parler): N = K streams, one step emits all K codebooks, codebook k
shifted right by k frames so it can condition on codebooks < k of the same frame. EOS is written
as an extra frame T and shifted like the codes. S = T + K steps. For K = 3, T = 4::

    step:   0   1   2   3   4   5   6
    k=0:   a0  a1  a2  a3  E   P   P
    k=1:   P   b0  b1  b2  b3  E   P
    k=2:   P   P   c0  c1  c2  c3  E

**flatten** (the seed project's interleaving): N = 1 stream, one token per step, frames written
codebook after codebook, with codebook-specific ids (codebook k's code c is k*C + c, so V =
K*C + 3) and EOS after the last frame. S = T*K + 1::

    a0 b0 c0 a1 b1 c1 a2 b2 c2 a3 b3 c3 E

Training targets are `tokens` (B, N, S); the decoder input is BOS followed by tokens[..., :-1].
PAD targets are ignored by the loss. During generation `allowed` says which ids may be sampled
at a step and `forced` fills in the steps whose token is fixed by the layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from toktts.errors import TokttsError

LAYOUTS = ("delay", "flatten")


@dataclass(frozen=True)
class Layout:
    name: str
    n_codebooks: int  # K
    codebook_size: int  # C

    def __post_init__(self) -> None:
        if self.name not in LAYOUTS:
            raise TokttsError(f"unknown layout {self.name!r}; use one of {', '.join(LAYOUTS)}")

    @property
    def n_streams(self) -> int:  # N
        return self.n_codebooks if self.name == "delay" else 1

    @property
    def vocab_size(self) -> int:  # V
        codes = self.codebook_size if self.name == "delay" else self.codebook_size * self.n_codebooks
        return codes + 3

    @property
    def pad_id(self) -> int:
        return self.vocab_size - 3

    @property
    def bos_id(self) -> int:
        return self.vocab_size - 2

    @property
    def eos_id(self) -> int:
        return self.vocab_size - 1

    def n_steps(self, n_frames: int) -> int:
        """S for a sequence of T frames, EOS included."""
        return n_frames + self.n_codebooks if self.name == "delay" else n_frames * self.n_codebooks + 1

    def n_frames(self, n_steps):
        """The largest T whose tokens fit in S steps (inverse of `n_steps`); int or tensor."""
        if self.name == "delay":
            frames = n_steps - self.n_codebooks
        else:
            frames = (n_steps - 1) // self.n_codebooks
        return frames.clamp(min=0) if isinstance(frames, torch.Tensor) else max(frames, 0)

    @property
    def tail(self) -> int:
        """Steps after stream 0's EOS until every stream has ended."""
        return self.n_codebooks - 1 if self.name == "delay" else 0

    # -- codes <-> tokens -------------------------------------------------------------------

    def tokens(self, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, K, T) codes, (B,) frame lengths -> (B, N, S) tokens with EOS and PAD, S = n_steps(T)."""
        B, K, T = codes.shape
        assert K == self.n_codebooks, (K, self.n_codebooks)
        frame = torch.arange(T + 1, device=codes.device)
        # (B, K, T+1): the codes, then EOS at frame `length`, PAD after it.
        padded = torch.cat([codes, codes.new_zeros(B, K, 1)], dim=2)
        padded = torch.where(frame < lengths[:, None, None], padded, self.pad_id)
        padded = torch.where(frame == lengths[:, None, None], self.eos_id, padded)
        if self.name == "delay":
            out = codes.new_full((B, K, self.n_steps(T)), self.pad_id)
            for k in range(K):
                out[:, k, k : k + T + 1] = padded[:, k]
            return out
        # flatten: (B, K, T+1) -> (B, T+1, K) -> (B, 1, (T+1)*K), ids offset by codebook.
        offsets = torch.arange(K, device=codes.device)[None, :, None] * self.codebook_size
        is_code = padded < self.codebook_size
        ids = torch.where(is_code, padded + offsets, padded)
        # EOS belongs once, at the head of frame `length`; the other codebooks' slots there are PAD.
        ids[:, 1:] = torch.where(ids[:, 1:] == self.eos_id, self.pad_id, ids[:, 1:])
        flat = ids.transpose(1, 2).reshape(B, 1, (T + 1) * K)
        return flat[:, :, : self.n_steps(T)]

    def codes(self, tokens: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
        """(B, N, S) tokens -> (B, K, T) codes, T = n_frames or the most the steps hold.
        Special ids (only present past a sequence's end) come back as code 0."""
        B, N, S = tokens.shape
        K, C = self.n_codebooks, self.codebook_size
        T = self.n_frames(S) if n_frames is None else n_frames
        if self.name == "delay":
            out = torch.stack([tokens[:, k, k : k + T] for k in range(K)], dim=1)  # (B, K, T)
        else:
            flat = tokens[:, 0, : T * K].reshape(B, T, K).transpose(1, 2)  # (B, K, T)
            offsets = torch.arange(K, device=tokens.device)[None, :, None] * C
            out = flat - offsets
        return torch.where((out >= 0) & (out < C), out, 0)

    def frame_lengths(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, S) tokens -> (B,) frames before the first EOS (or all the steps hold)."""
        head = tokens[:, 0]  # EOS is decided on stream 0 in both layouts
        is_eos = head == self.eos_id
        first = torch.where(is_eos.any(1), is_eos.float().argmax(1), head.shape[1])
        return first if self.name == "delay" else first // self.n_codebooks

    def corrupt(
        self,
        tokens: torch.Tensor,
        fraction: float,
        replacement: torch.Tensor | None = None,
        near: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Replace about `fraction` of the codes in (B, N, S) tokens by random codes of the same
        codebook: uniformly, or one of the codes `near` (K, C, n) lists for the true one
        (`nearest_codes`: codes that sound alike), or the codes of `replacement` (B, N, S) at those
        places. Special ids are kept either way. Uses the global torch RNG."""
        C = self.codebook_size
        is_code = tokens < self.pad_id  # the special ids follow the codes
        hit = is_code & (torch.rand(tokens.shape, device=tokens.device) < fraction)
        if replacement is not None:
            hit = hit & (replacement < self.pad_id)
            return torch.where(hit, replacement, tokens)
        # A code id is codebook * C + code in both layouts (the codebook is 0 for delay, whose
        # stream is its codebook).
        base = tokens // C * C
        if near is None:
            return torch.where(hit, base + torch.randint_like(tokens, C), tokens)
        if self.name == "delay":
            book = torch.arange(tokens.shape[1], device=tokens.device)[None, :, None].expand_as(tokens)
        else:
            book = (tokens // C).clamp(max=self.n_codebooks - 1)
        code = torch.where(is_code, tokens % C, 0)
        pick = torch.randint_like(tokens, near.shape[-1])
        return torch.where(hit, base + near.to(tokens.device)[book, code, pick], tokens)

    # -- generation constraints -----------------------------------------------------------

    def allowed(self, step: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(N, V) bool: which ids may be sampled at `step` before the end is decided.
        Only stream 0 may end, and only at a frame boundary."""
        V, C, K = self.vocab_size, self.codebook_size, self.n_codebooks
        mask = torch.zeros(self.n_streams, V, dtype=torch.bool, device=device)
        if self.name == "delay":
            mask[:, :C] = True
            mask[0, self.eos_id] = True
        else:
            k = step % K
            mask[0, k * C : (k + 1) * C] = True
            mask[0, self.eos_id] = k == 0
        return mask

    def forced(self, step: int, eos_step: torch.Tensor) -> torch.Tensor:
        """(B, N) ids fixed by the layout at `step` (-1 where the model chooses).

        `eos_step` (B,) is the step at which stream 0 emitted EOS (-1 if not yet)."""
        B = eos_step.shape[0]
        ended = eos_step >= 0
        if self.name == "delay":
            k = torch.arange(self.n_codebooks, device=eos_step.device)[None]  # (1, N): stream k lags k steps
            since = (step - eos_step)[:, None]  # (B, 1) steps since stream 0 ended
            ended = ended[:, None]
            out = torch.where(k > step, self.pad_id, -1).expand(B, -1)  # streams that have not begun
            # stream k ends k steps after stream 0 (whose own EOS, at since == 0, is the sampled one)
            out = torch.where(ended & (since == k) & (k > 0), self.eos_id, out)
            return torch.where(ended & (since > k), self.pad_id, out)
        out = torch.full((B, 1), -1, dtype=torch.long, device=eos_step.device)
        return torch.where((ended & (step > eos_step))[:, None], self.pad_id, out)

    def forces(self, step: int, any_ended: bool) -> bool:
        """Whether `forced` fixes anything at `step`: streams yet to begin (the delay's first
        `tail` steps), or items that have ended. Generation skips it otherwise (most steps)."""
        return any_ended or step < self.tail

    def finished(self, step: int, eos_step: torch.Tensor) -> torch.Tensor:
        """(B,) bool: every stream has emitted its EOS by the end of `step`."""
        return (eos_step >= 0) & (step >= eos_step + self.tail)
