"""The toktts model: a bidirectional character encoder and a causal codec-token decoder.

Shape letters: B batch, L text length, S decoder steps, N token streams, V stream vocabulary,
D width, H heads. See `toktts.patterns` for how codec codes (B, K, T) become streams (B, N, S).

    text ids (B, L) --embed + positions--> encoder blocks --> memory (B, L, D_enc)
    tokens (B, N, S) --sum of N embeddings + positions--> decoder blocks
        (causal self-attention, cross-attention to memory) --> heads --> logits (B, S, N, V)

Generation runs the decoder one step at a time over a preallocated KV cache; the cross-attention
keys and values of the memory are computed once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from toktts.config import ModelConfig
from toktts.dropout import Dropout
from toktts.loss import cross_entropy_rows
from toktts.patterns import Layout


def sinusoids(length: int, dim: int, offset: int = 0, device=None) -> torch.Tensor:
    """(length, dim) sinusoidal positions, starting at position `offset`."""
    pos = torch.arange(offset, offset + length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class Attention(nn.Module):
    """Multi-head attention of x (B, S, D) over a source (B, L, D_src): self- or cross-attention."""

    def __init__(self, dim: int, source_dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0, f"width {dim} is not divisible by {heads} heads"
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(source_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, D) -> (B, H, S, D/H)
        B, S, D = x.shape
        return x.view(B, S, self.heads, D // self.heads).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(source).chunk(2, dim=-1)
        return self.split(k), self.split(v)  # (B, H, L, D/H) each

    def attend(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self.split(self.q(x))  # (B, H, S, D/H)
        weights = None
        if need_weights:
            # The guided-attention loss and the alignment image need the weights, which the
            # fused kernel does not return; only cross-attention asks for them.
            # The scale and the mask ride in the matmul (baddbmm's alpha and input), the fp32 in the
            # softmax: a guided layer's forward and backward in bf16 ~15% faster than with a pass
            # for each (ljspeech_ex_small's shapes, benchmarks/RESULTS.md).
            B, H, S, Dh = q.shape
            L = k.shape[2]
            bias = torch.zeros((), dtype=q.dtype, device=q.device)
            if mask is not None:  # (B, 1, 1 or S, L) bool -> (B * H, 1 or S, L), broadcast over S
                bias = bias.expand(mask.shape).masked_fill(~mask, float("-inf"))
                bias = bias.expand(B, H, *mask.shape[-2:]).reshape(B * H, -1, L)
            scores = torch.baddbmm(
                bias, q.reshape(B * H, S, Dh), k.reshape(B * H, L, Dh).transpose(1, 2), alpha=1 / math.sqrt(Dh)
            )
            weights = scores.view(B, H, S, L).softmax(-1, dtype=torch.float32)
            y = weights.to(v.dtype) @ v
        else:
            # No dropout on the attention weights: on CPU it forces the slow unfused kernel and
            # costs more than the rest of the layer (measured); the residual dropouts remain.
            if q.device.type == "cpu" and q.dtype == torch.bfloat16:
                # The CPU fused kernel's bf16 backward is 3-4x slower than its fp32 one and was
                # half of a bf16 training step (benchmarks/RESULTS.md); run it in fp32.
                with torch.autocast("cpu", enabled=False):
                    y = F.scaled_dot_product_attention(
                        q.float(), k.float(), v.float(), attn_mask=mask, is_causal=causal
                    ).to(q.dtype)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        B, H, S, Dh = y.shape
        return self.out(y.transpose(1, 2).reshape(B, S, H * Dh)), weights


class Block(nn.Module):
    """Pre-norm transformer block; with `cross_dim` it also attends to the encoder memory."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float, cross_dim: int = 0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, dim, heads)
        self.cross_attn = Attention(dim, cross_dim, heads) if cross_dim else None
        self.norm2 = nn.LayerNorm(dim) if cross_dim else None
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim), Dropout(dropout)
        )
        self.drop = Dropout(dropout)

    def zero_residuals(self) -> None:
        """Zero the projections that write into the residual stream: the block becomes the
        identity, so it can be added to a trained model without changing what that model does."""
        for layer in (self.self_attn.out, self.cross_attn.out if self.cross_attn else None, self.mlp[2]):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)


class ConvPrenet(nn.Module):
    """Residual 1-D convolutions over the characters, so that each sees its neighbours before
    attention ("gh" in "though" and in "ghost"). Padding is zeroed before every convolution, so
    a character's output does not depend on how much padding follows. Every convolution starts
    at zero: the prenet starts as the identity and can be added to a trained model."""

    def __init__(self, dim: int, layers: int, kernel: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, kernel, padding=kernel // 2) for _ in range(layers))
        for conv in self.convs:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, D), (B, L) bool valid -> (B, L, D)."""
        for norm, conv in zip(self.norms, self.convs):
            h = norm(x).masked_fill(~mask[..., None], 0.0).transpose(1, 2)  # (B, D, L)
            x = x + F.gelu(conv(h)).transpose(1, 2)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.text_vocab_size, cfg.enc_dim, padding_idx=0)
        self.pos_scale = nn.Parameter(torch.ones(1))
        self.prenet = ConvPrenet(cfg.enc_dim, cfg.enc_conv_layers, cfg.enc_conv_kernel) if cfg.enc_conv_layers else None
        self.blocks = nn.ModuleList(
            Block(cfg.enc_dim, cfg.enc_heads, cfg.ff_mult, cfg.dropout) for _ in range(cfg.enc_layers)
        )
        self.norm = nn.LayerNorm(cfg.enc_dim)
        self.drop = Dropout(cfg.dropout)

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) ids, (B, L) bool valid -> (B, L, D_enc) memory."""
        B, L = text.shape
        x = self.embed(text) + self.pos_scale * sinusoids(L, self.embed.embedding_dim, device=text.device)
        x = self.drop(x)
        if self.prenet is not None:
            x = self.prenet(x, text_mask)
        mask = text_mask[:, None, None, :]  # (B, 1, 1, L): attend to real characters only
        for blk in self.blocks:
            h = blk.norm1(x)
            k, v = blk.self_attn.keys_values(h)
            x = x + blk.drop(blk.self_attn.attend(h, k, v, mask)[0])
            x = x + blk.mlp(blk.norm3(x))
        return self.norm(x)


@dataclass
class DecoderCache:
    """Preallocated self-attention keys/values for incremental decoding, and the cross-attention
    keys/values of the memory, computed once."""

    self_k: list[torch.Tensor]  # per layer (B, H, S_max, D/H)
    self_v: list[torch.Tensor]
    cross_k: list[torch.Tensor]  # per layer (B, H, L, D/H)
    cross_v: list[torch.Tensor]
    text_mask: torch.Tensor  # (B, 1, 1, L)


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig, layout: Layout):
        super().__init__()
        self.n_streams, self.vocab_size = layout.n_streams, layout.vocab_size
        self.embed = nn.Embedding(self.n_streams * self.vocab_size, cfg.dec_dim)  # one table per stream
        self.pos_scale = nn.Parameter(torch.ones(1))
        self.blocks = nn.ModuleList(
            Block(cfg.dec_dim, cfg.dec_heads, cfg.ff_mult, cfg.dropout, cross_dim=cfg.enc_dim)
            for _ in range(cfg.dec_layers)
        )
        self.norm = nn.LayerNorm(cfg.dec_dim)
        self.head = nn.Linear(cfg.dec_dim, self.n_streams * self.vocab_size)  # all streams in one matmul
        self.drop = Dropout(cfg.dropout)
        self.input_dropout = cfg.input_dropout
        self.window = cfg.dec_window
        self.register_buffer("stream_offset", torch.arange(self.n_streams) * self.vocab_size, persistent=False)
        self._positions: torch.Tensor | None = None  # sinusoids, see `positions`

    def embed_tokens(self, tokens: torch.Tensor, offset: int = 0, generator=None) -> torch.Tensor:
        """(B, N, S) ids -> (B, S, D): the sum of the N streams' embeddings, plus positions.
        `input_dropout` applies in training and generation alike (`generator` draws its mask)."""
        B, N, S = tokens.shape
        x = self.embed(tokens + self.stream_offset[None, :, None]).sum(1)  # (B, S, D)
        if self.input_dropout > 0:
            x = x * keep_mask(x.shape, self.input_dropout, x.device, generator).to(x.dtype)
        return self.drop(x + self.pos_scale * self.positions(offset, S, x.device))

    def positions(self, offset: int, length: int, device: torch.device) -> torch.Tensor:
        """Rows offset .. offset + length of the sinusoids, from a table kept between calls (a
        decoder step would otherwise spend ten small operators making one row)."""
        table = self._positions
        if table is None or table.device != device or len(table) < offset + length:
            size = max(offset + length, 2 * len(table) if table is not None else 1024)
            with torch.inference_mode(False):  # made in generation, used in training too
                table = self._positions = sinusoids(size, self.embed.embedding_dim, device=device)
        return table[offset : offset + length]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        return self.head(self.norm(x)).view(B, S, self.n_streams, self.vocab_size)  # (B, S, N, V)

    def forward(
        self, tokens: torch.Tensor, memory: torch.Tensor, text_mask: torch.Tensor, attn_layers: int = 0
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Teacher-forced pass: (B, N, S) inputs -> (B, S, N, V) logits and the cross-attention
        weights (B, H, S, L) of the first `attn_layers` layers."""
        x = self.embed_tokens(tokens)
        mask = text_mask[:, None, None, :]
        band = None
        if self.window and self.window < x.shape[1]:  # step s sees steps s - window + 1 .. s
            s = torch.arange(x.shape[1], device=x.device)
            band = (s[None, :] <= s[:, None]) & (s[None, :] > s[:, None] - self.window)  # (S, S)
        weights = []
        for i, blk in enumerate(self.blocks):
            h = blk.norm1(x)
            k, v = blk.self_attn.keys_values(h)
            x = x + blk.drop(blk.self_attn.attend(h, k, v, band, causal=band is None)[0])
            k, v = blk.cross_attn.keys_values(memory)
            y, w = blk.cross_attn.attend(blk.norm2(x), k, v, mask, need_weights=i < attn_layers)
            x = x + blk.drop(y)
            x = x + blk.mlp(blk.norm3(x))
            if w is not None:
                weights.append(w)
        self.last_hidden = x  # (B, S, D): what the CTC head reads
        return self.logits(x), weights

    def start(self, memory: torch.Tensor, text_mask: torch.Tensor, max_steps: int) -> DecoderCache:
        B = memory.shape[0]
        cross_k, cross_v = self.memory_keys_values(memory)
        cache = DecoderCache([], [], cross_k, cross_v, text_mask[:, None, None, :])
        for blk in self.blocks:
            attn = blk.self_attn
            shape = (B, attn.heads, max_steps, attn.q.out_features // attn.heads)
            cache.self_k.append(memory.new_zeros(shape))
            cache.self_v.append(memory.new_zeros(shape))
        return cache

    def memory_keys_values(self, memory: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every layer's cross-attention keys and values of the memory (B, H, L, D/H), made once
        per text."""
        pairs = [blk.cross_attn.keys_values(memory) for blk in self.blocks]
        return [k for k, _ in pairs], [v for _, v in pairs]

    def first_visible(self, pos: int) -> int:
        """The first step that self-attention at step `pos` sees (`dec_window`)."""
        return max(0, pos + 1 - self.window) if self.window else 0

    def step(
        self, tokens: torch.Tensor, cache: DecoderCache, pos: int, need_weights: bool = False, generator=None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One incremental step: (B, N, 1) inputs at position `pos` -> (B, 1, N, V) logits."""
        first = self.first_visible(pos)

        def remember(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            cache.self_k[i][:, :, pos : pos + 1] = k
            cache.self_v[i][:, :, pos : pos + 1] = v
            return cache.self_k[i][:, :, first : pos + 1], cache.self_v[i][:, :, first : pos + 1]

        x = self.embed_tokens(tokens, offset=pos, generator=generator)
        x, weights = self.step_blocks(x, remember, cache.cross_k, cache.cross_v, cache.text_mask, need_weights)
        return self.logits(x), weights

    def step_blocks(
        self,
        x: torch.Tensor,
        remember: Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        cross_k: list[torch.Tensor] | torch.Tensor,
        cross_v: list[torch.Tensor] | torch.Tensor,
        text_mask: torch.Tensor,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The blocks of one step: x (B, 1, D) embedded input -> (B, 1, D) states. `remember(i, k,
        v)` keeps layer i's keys and values of this step (B, H, 1, D/H) and returns those of every
        step so far; cross_k/cross_v[i] are layer i's of the memory. `toktts.onnx_decoder.build`
        writes the same computation as an ONNX graph (its equal tokens are tested; its cached
        graphs are keyed by this code's source, so a change here makes them be written again)."""
        weights = []
        for i, blk in enumerate(self.blocks):
            h = blk.norm1(x)
            k_all, v_all = remember(i, *blk.self_attn.keys_values(h))
            x = x + blk.self_attn.attend(h, k_all, v_all)[0]
            y, w = blk.cross_attn.attend(  # the alignment image needs the first layer only
                blk.norm2(x), cross_k[i], cross_v[i], text_mask, need_weights=need_weights and i == 0
            )
            x = x + y
            x = x + blk.mlp(blk.norm3(x))
            if w is not None:
                weights.append(w)
        return x, weights


def guided_attention_loss(
    weights: list[torch.Tensor], text_lengths: torch.Tensor, step_lengths: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Penalise cross-attention far from the diagonal (Tachibana et al., 2017): weight
    1 - exp(-(l/L - s/S)^2 / 2 sigma^2) on each (step s, character l), per item's own L and S.
    Text-to-speech alignment is monotonic; this makes the decoder find it in hundreds of steps
    instead of thousands."""
    B, H, S, L = weights[0].shape
    s = torch.arange(S, device=weights[0].device)[None, :, None] / step_lengths[:, None, None]
    l = torch.arange(L, device=weights[0].device)[None, None, :] / text_lengths[:, None, None]
    penalty = 1.0 - torch.exp(-((l - s) ** 2) / (2 * sigma**2))  # (B, S, L)
    valid = (s < 1) & (l < 1)
    penalty = penalty * valid
    total = sum((w.sum(1) * penalty).sum() for w in weights)  # heads summed first: one pass over w
    # Each query's weights sum to 1: the loss is the mean penalty paid per decoder step and head.
    return total / (step_lengths.sum() * H * len(weights))


class TokTTS(nn.Module):
    """Encoder-decoder transformer over characters and codec-token streams."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.layout = Layout(cfg.layout, cfg.n_codebooks, cfg.codebook_size)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg, self.layout)
        # The memory of "no text" (one position) that classifier-free guidance contrasts with.
        self.null_memory = nn.Parameter(torch.zeros(1, 1, cfg.enc_dim)) if cfg.unconditional else None
        # Decoder states -> characters (id 0, the padding id, is CTC's blank).
        self.ctc = nn.Linear(cfg.dec_dim, cfg.text_vocab_size) if cfg.ctc_head else None
        # Encoder states -> phonemes, two CTC frames per character (a spelling can have more
        # phonemes than letters: "x" is "ks"); used in training only.
        self.phonemes = nn.Linear(cfg.enc_dim, 2 * cfg.phoneme_vocab_size) if cfg.phoneme_head else None
        self.apply(self._init)
        # GPT-2 style: scale the residual projections down with depth.
        for name, p in self.named_parameters():
            if name.endswith(("out.weight", "mlp.2.weight")):
                n = cfg.dec_layers if name.startswith("decoder") else cfg.enc_layers
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(
        self, text: torch.Tensor, text_lengths: torch.Tensor, drop_text: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) text, (B,) lengths -> (B, L, D_enc) memory and (B, L) bool mask. Items where
        `drop_text` (B,) is True get the "no text" memory instead (one valid position)."""
        text_mask = torch.arange(text.shape[1], device=text.device)[None] < text_lengths[:, None]
        memory = self.encoder(text, text_mask)
        self.last_memory = memory  # (B, L, D) of every item, dropped or not: what the phoneme head reads
        if drop_text is not None:
            if self.null_memory is None:
                raise ValueError("this model has no 'no text' memory (model.unconditional is off)")
            first = torch.arange(text.shape[1], device=text.device)[None] == 0  # (1, L)
            memory = torch.where(drop_text[:, None, None], self.null_memory.to(memory.dtype), memory)
            text_mask = torch.where(drop_text[:, None], first, text_mask)
        return memory, text_mask

    def decoder_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, S) targets -> (B, N, S) decoder inputs: BOS, then the targets shifted by one."""
        bos = torch.full_like(tokens[:, :, :1], self.layout.bos_id)
        return torch.cat([bos, tokens[:, :, :-1]], dim=2)

    def forward(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        tokens: torch.Tensor,
        attn_layers: int = 0,
        input_noise: float = 0.0,
        inputs: torch.Tensor | None = None,
        drop_text: torch.Tensor | None = None,
        noise_near: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, L) text, (B,) lengths, (B, N, S) target tokens -> (B, S, N, V) logits predicting
        `tokens` and cross-attention weights. The decoder reads `inputs` (default: BOS + tokens
        shifted by one), of which `input_noise` of the codes are replaced by random ones
        (training): uniformly, or among the codes `noise_near` lists for the true one
        (`Layout.corrupt`); `drop_text` (B,) bool items read the "no text" memory."""
        memory, text_mask = self.encode(text, text_lengths, drop_text)
        if inputs is None:
            inputs = self.decoder_inputs(tokens)
        if input_noise > 0:
            inputs = self.layout.corrupt(inputs, input_noise, near=noise_near)
        return self.decoder(inputs, memory, text_mask, attn_layers)

    def loss(
        self, logits: torch.Tensor, tokens: torch.Tensor, weights: list[float] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy per stream (PAD targets ignored), averaged over streams with
        `weights` (one per stream; default equal). Returns (loss, per-stream loss (N,))."""
        B, S, N, V = logits.shape
        target = tokens.transpose(1, 2)  # (B, S, N)
        valid = target != self.layout.pad_id
        ce = cross_entropy_rows(logits.reshape(-1, V), target.reshape(-1)).view(B, S, N)
        per_stream = (ce * valid).sum((0, 1)) / valid.sum((0, 1)).clamp(min=1)  # (N,)
        if weights:
            w = torch.tensor(weights, dtype=per_stream.dtype, device=per_stream.device)
            loss = (per_stream * w).sum() / w.sum()
        else:
            loss = per_stream.mean()
        return loss, per_stream.detach()

    def accuracy(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, S, N, V) logits, (B, N, S) targets -> (N,) share of non-PAD targets ranked first.
        Apart from `loss`: an argmax over every logit is ~4% of a training step, and only the
        validation reports it."""
        target = tokens.transpose(1, 2)  # (B, S, N)
        valid = target != self.layout.pad_id
        correct = (logits.argmax(-1) == target) & valid
        return correct.sum((0, 1)) / valid.sum((0, 1)).clamp(min=1)

    def ctc_loss(
        self, text: torch.Tensor, text_lengths: torch.Tensor, step_lengths: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """CTC of the text (B, L) from the last teacher-forced pass's decoder states over each
        item's (B,) steps: the decoder must know which characters it is speaking. `keep` (B,)
        bool selects the items that count (those that read their text)."""
        log_probs = self.ctc(self.decoder.last_hidden).float().log_softmax(-1)  # (B, S, V_text)
        if keep is not None:
            log_probs, text, text_lengths, step_lengths = (
                log_probs[keep], text[keep], text_lengths[keep], step_lengths[keep]
            )
        if len(text) == 0:
            return log_probs.sum() * 0
        return F.ctc_loss(
            log_probs.transpose(0, 1), text, step_lengths, text_lengths, blank=0, reduction="mean", zero_infinity=True
        )

    def phoneme_loss(
        self, text_lengths: torch.Tensor, phonemes: torch.Tensor, phoneme_lengths: torch.Tensor
    ) -> torch.Tensor:
        """CTC of (B, P) phoneme ids from the last pass's encoder states, two frames per
        character of each item's (B,) length: the encoder must know how its text sounds."""
        B, L, _ = self.last_memory.shape
        log_probs = self.phonemes(self.last_memory).float().view(B, 2 * L, -1).log_softmax(-1)  # (B, 2L, V_ph)
        return F.ctc_loss(
            log_probs.transpose(0, 1), phonemes, 2 * text_lengths, phoneme_lengths, blank=0, reduction="mean",
            zero_infinity=True,
        )

    @torch.inference_mode()
    def predict(self, text: torch.Tensor, text_lengths: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced prediction: (B, N, S) tokens of real audio -> (B, N, S) the code the model
        ranks first at every step given the true past (EOS and ids the layout forbids there
        excluded). Decoded, it is what the model knows with no error of its own to build on."""
        logits, _ = self(text, text_lengths, tokens)  # (B, S, N, V)
        S, layout = logits.shape[1], self.layout
        n_masks = layout.n_codebooks if layout.name == "flatten" else 1
        masks = torch.stack([layout.allowed(s, logits.device) for s in range(n_masks)])  # (n_masks, N, V)
        masks[..., layout.eos_id] = False
        allowed = masks[torch.arange(S, device=logits.device) % n_masks]  # (S, N, V)
        return logits.float().masked_fill(~allowed, float("-inf")).argmax(-1).transpose(1, 2)

    @torch.inference_mode()
    def generate(self, *args, **kwargs) -> dict:
        """Sample token streams for a batch of texts; the arguments are `generate_steps`'.

        Returns `tokens` (B, N, S), `frames` (B,) frame lengths, `stopped` (B,) bool (True = ended
        with EOS, False = hit the limit) and, with `need_weights`, the first layer's
        cross-attention (B, H, S, L)."""
        for progress in self.generate_steps(*args, **kwargs):
            pass
        return progress.result()

    @torch.inference_mode()
    def generate_steps(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        max_steps: torch.Tensor,
        temperature: float = 0.7,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | list[torch.Generator | None] | None = None,
        need_weights: bool = False,
        cfg_scale: float = 1.0,
        decoder=None,
        min_steps: torch.Tensor | None = None,
    ) -> Iterator["Progress"]:
        """Decode one step at a time, yielding the `Progress` after each (streaming reads it).

        `max_steps` (B,) is each item's limit: stream 0 must emit EOS before that step; with
        `min_steps` (B,) it may not emit it before that step.
        `generator` is one for the batch or one per item; per-item generators make an item's
        tokens independent of what it is batched with. `cfg_scale` != 1 guides the logits away
        from the "no text" model's: u + s (c - u), both rows in one batched decoder step.
        `decoder` runs the steps in place of the model's own (`start` and `step` as `Decoder`'s:
        `toktts.onnx_decoder.OnnxDecoder`)."""
        layout, device = self.layout, text.device
        B = text.shape[0]
        # EOS may come up to step max_steps - 1; the delay layout then needs K - 1 more steps.
        S_max = int(max_steps.max()) + layout.tail
        guided = cfg_scale != 1.0
        if guided:  # rows B.. are the same items without their text
            drop = torch.arange(2 * B, device=device) >= B
            memory, text_mask = self.encode(text.repeat(2, 1), text_lengths.repeat(2), drop)
        else:
            memory, text_mask = self.encode(text, text_lengths)
        decoder = decoder or self.decoder
        cache = decoder.start(memory, text_mask, S_max)
        n_masks = layout.n_codebooks if layout.name == "flatten" else 1
        blocked = [~layout.allowed(s, device) for s in range(n_masks)]
        out = torch.full((B, layout.n_streams, S_max), layout.pad_id, dtype=torch.long, device=device)
        eos_step = torch.full((B,), -1, dtype=torch.long, device=device)
        prev = torch.full((B, layout.n_streams, 1), layout.bos_id, dtype=torch.long, device=device)
        attn = []
        # The steps at which some item may not end yet: the EOS mask is applied only while any
        # floor is ahead (one read of it here, none per step).
        floor = 0 if min_steps is None else int(min_steps.max())
        ended = False  # whether any item has emitted its EOS
        # Until an item ends or reaches its limit nothing is done: most steps skip those checks.
        first_limit, not_done = int(max_steps.min()) + layout.tail, torch.zeros(B, dtype=torch.bool, device=device)
        for s in range(S_max):
            logits, w = decoder.step(
                prev.repeat(2, 1, 1) if guided else prev, cache, s, need_weights=need_weights, generator=generator
            )
            if need_weights:
                attn.append(w[0][:B])
            logits = logits[:, 0].float()  # (B, N, V), or (2B, N, V) guided
            if guided:
                cond, uncond = logits[:B], logits[B:]
                logits = uncond + cfg_scale * (cond - uncond)
            logits = logits.masked_fill(blocked[s % n_masks], float("-inf"))
            if s < floor:
                logits[:, 0, layout.eos_id] = logits[:, 0, layout.eos_id].masked_fill(s < min_steps, float("-inf"))
            tok = sample(logits, temperature, top_k, top_p, generator)  # (B, N)
            if layout.forces(s, ended):
                forced = layout.forced(s, eos_step)
                tok = torch.where(forced >= 0, forced, tok)
            eos = tok[:, 0] == layout.eos_id
            if bool(eos.any()):  # the one read of a step
                newly = eos & (eos_step < 0) & (s < max_steps)
                eos_step = torch.where(newly, s, eos_step)
                ended = ended or bool(newly.any())
            out[:, :, s] = tok
            prev = tok[:, :, None]
            done, last = not_done, False
            if ended or s + 1 >= first_limit:
                done = (eos_step < 0) & (s + 1 >= max_steps + layout.tail)  # at the limit without an EOS
                if ended:
                    done |= layout.finished(s, eos_step)
                last = bool(done.all()) or s + 1 == S_max
            yield Progress(layout, out[:, :, : s + 1], eos_step, max_steps, done, attn if last else None)
            if last:
                return


@dataclass
class Progress:
    """Where a batch's generation stands after a step: `tokens` (B, N, s+1) so far."""

    layout: Layout
    tokens: torch.Tensor
    eos_step: torch.Tensor  # (B,) step of stream 0's EOS, -1 while going on
    max_steps: torch.Tensor  # (B,)
    done: torch.Tensor  # (B,) bool: nothing more will be added to this item
    attention: list[torch.Tensor] | None = None  # per step (B, H, 1, L), on the last step only

    def frames_ready(self) -> torch.Tensor:
        """(B,) frames whose every codebook is final (all of them once the item is done)."""
        # n_frames(S + 1): the frame completed at step S - 1 is whole, though no EOS follows yet.
        return self.frames().clamp(max=self.layout.n_frames(self.tokens.shape[2] + 1))

    def frames(self) -> torch.Tensor:
        """(B,) frame length: up to EOS, or all the limit allows for an item that has not ended."""
        limit = self.layout.n_frames(self.max_steps + self.layout.tail)
        return torch.where(self.eos_step >= 0, self.layout.frame_lengths(self.tokens), limit)

    def result(self) -> dict:
        result = {"tokens": self.tokens, "frames": self.frames(), "stopped": self.eos_step >= 0}
        if self.attention:
            result["attention"] = torch.cat(self.attention, dim=2)
        return result


def sample(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | list[torch.Generator | None] | None,
) -> torch.Tensor:
    """(B, ..., V) float logits -> (B, ...) ids. temperature 0 is greedy. `generator` is one for
    all rows or one per batch item. With top_k the draw is among the k best ids alone (ties at the
    k-th are broken as `topk` breaks them): softmax and multinomial over k values, not V, ~3x
    faster a step for the bundled voice's 4 x 1027 logits; top_p then cuts the same candidates,
    best first, and the draw is mapped back to its id."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    index = None  # (B, ..., k): which id each candidate is, the candidates best first
    if top_k and top_k < logits.shape[-1]:
        logits, index = logits.topk(top_k, dim=-1)
    if top_p < 1.0:
        if index is None:
            logits, index = logits.sort(-1, descending=True)
        probs = logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest set of the best reaching top_p
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    if isinstance(generator, (list, tuple)):
        ids = torch.stack([_multinomial(p, g) for p, g in zip(probs, generator, strict=True)])
    else:
        ids = _multinomial(probs, generator)
    return ids if index is None else index.gather(-1, ids[..., None])[..., 0]


def keep_mask(
    shape: tuple[int, ...], p: float, device, generator: torch.Generator | list[torch.Generator | None] | None = None
) -> torch.Tensor:
    """A dropout mask (B, ...) of 0 and 1 / (1 - p), drawn from `generator` (one for the batch or
    one per item, as in `sample`); rows beyond the generators' (a guided batch) repeat them."""
    if isinstance(generator, (list, tuple)):
        rows = [torch.rand(shape[1:], device=device, generator=g) for g in generator]
        u = torch.stack(rows)
        u = u.repeat(shape[0] // len(rows), *([1] * (len(shape) - 1)))
    else:
        u = torch.rand(shape, device=device, generator=generator)
    return (u >= p).float() / (1 - p)


def _multinomial(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])
