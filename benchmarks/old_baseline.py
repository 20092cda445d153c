"""The seed project's architecture, rebuilt as the speed baseline (not part of the package).

A `transformers` EncoderDecoderModel of two GPT-2 configs: the encoder is a causal GPT-2 over the
text's bytes (256 values + 3 specials), the decoder a GPT-2 with cross-attention over one
flattened sequence of both EnCodec codebooks (a0 b0 a1 b1 ..., 150 frames x 2 = 300 tokens for
2 s) followed by EOS, in one vocabulary shared by the two codebooks (1024 codes + 2 specials).
The old project trained it with Seq2SeqTrainer; what costs time is the step (forward, loss,
backward, gradient clipping, AdamW), which is what `BaselineTrainBench.step` runs. It sampled
with `generate(num_beams=4, do_sample=True)`, and greedily for evaluation.

Reference size `ljspeech_ex_small`: encoder 4 layers / 8 heads / width 128, decoder 6 / 12 / 192,
dropout 0.2, batch 64 clips of 2 s. GPT-2's learned positions must cover the longest sequence,
so `n_positions` is set from the longest benchmark (the old model could not go past its table).

    python benchmarks/old_baseline.py train --batch-size 64
    python benchmarks/old_baseline.py synth --seconds 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

CODEBOOK_SIZE = 1024
N_CODEBOOKS = 2
FRAME_RATE = 75
# decoder vocabulary: 1024 codes shared by both codebooks, then EOS (= pad) and the start token
AUDIO_EOS = CODEBOOK_SIZE
AUDIO_START = CODEBOOK_SIZE + 1
AUDIO_VOCAB = CODEBOOK_SIZE + 2
# encoder vocabulary: bytes, then pad, BOS, EOS
TEXT_PAD, TEXT_BOS, TEXT_EOS = 256, 257, 258
TEXT_VOCAB = 259


def build_model(
    enc_layers: int = 4, enc_heads: int = 8, enc_dim: int = 128,
    dec_layers: int = 6, dec_heads: int = 12, dec_dim: int = 192,
    dropout: float = 0.2, max_text: int = 512, max_tokens: int = 1024, seed: int = 0,
):
    """The old `ljspeech_ex_small` model (defaults) with random weights."""
    from transformers import EncoderDecoderConfig, EncoderDecoderModel, GPT2Config

    drop = {"resid_pdrop": dropout, "embd_pdrop": dropout, "attn_pdrop": dropout}
    encoder = GPT2Config(
        vocab_size=TEXT_VOCAB, n_positions=max_text, n_embd=enc_dim, n_layer=enc_layers, n_head=enc_heads,
        bos_token_id=TEXT_BOS, eos_token_id=TEXT_EOS, pad_token_id=TEXT_PAD, **drop,
    )
    decoder = GPT2Config(
        vocab_size=AUDIO_VOCAB, n_positions=max_tokens, n_embd=dec_dim, n_layer=dec_layers, n_head=dec_heads,
        bos_token_id=AUDIO_START, eos_token_id=AUDIO_EOS, pad_token_id=AUDIO_EOS,
        is_decoder=True, add_cross_attention=True, **drop,
    )
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = AUDIO_START
    config.pad_token_id = AUDIO_EOS
    config.eos_token_id = AUDIO_EOS
    torch.manual_seed(seed)
    model = EncoderDecoderModel(config=config)
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id = AUDIO_START, AUDIO_EOS, AUDIO_EOS
    gen.bos_token_id = AUDIO_START
    return model


def flatten_codes(codes: torch.Tensor) -> torch.Tensor:
    """(B, K, T) codes -> (B, T*K + 1) labels: frames interleaved (a0 b0 a1 b1 ...), then EOS."""
    B, K, T = codes.shape
    flat = codes.transpose(1, 2).reshape(B, T * K)
    return torch.cat([flat, flat.new_full((B, 1), AUDIO_EOS)], dim=1)


def random_text(batch_size: int, chars: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, chars + 2) byte ids framed by BOS/EOS and their attention mask."""
    body = torch.randint(97, 123, (batch_size, chars), generator=generator)  # a-z bytes
    ids = torch.cat([torch.full((batch_size, 1), TEXT_BOS), body, torch.full((batch_size, 1), TEXT_EOS)], dim=1)
    return ids, torch.ones_like(ids)


def _autocast(precision: str):
    import contextlib

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


class BaselineTrainBench:
    """One training step of the old model on a fixed random batch (clips of equal length)."""

    def __init__(self, batch_size: int = 64, seconds: float = 2.0, text_chars: int = 100,
                 precision: str = "fp32", lr: float = 5e-4, grad_clip: float = 1.0, **model_kwargs):
        frames = round(seconds * FRAME_RATE)
        self.model = build_model(max_tokens=max(1024, frames * N_CODEBOOKS + 1), **model_kwargs).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr)
        g = torch.Generator().manual_seed(0)
        self.input_ids, self.attention_mask = random_text(batch_size, text_chars, g)
        self.labels = flatten_codes(torch.randint(0, CODEBOOK_SIZE, (batch_size, N_CODEBOOKS, frames), generator=g))
        self.precision, self.grad_clip = precision, grad_clip
        self.frames_per_step = batch_size * frames
        self.batch_size, self.frames, self.text_chars = batch_size, frames, text_chars

    def step(self) -> tuple[float, float]:
        """One step; its (wall, process CPU) seconds."""
        start, cpu = time.perf_counter(), time.process_time()
        with _autocast(self.precision):
            # EncoderDecoderModel builds decoder_input_ids by shifting the labels right after the start token
            loss = self.model(input_ids=self.input_ids, attention_mask=self.attention_mask, labels=self.labels).loss
        loss.backward()
        if self.grad_clip > 0:  # Seq2SeqTrainer's default max_grad_norm
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start, time.process_time() - cpu

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


class BaselineSynthBench:
    """Generation of exactly `seconds` of audio tokens for one text of ~15 characters a second:
    `min_new_tokens` keeps EOS out (transformers masks it), `max_new_tokens` stops at
    2 x frames tokens. One model serves every length up to `max_seconds`."""

    def __init__(self, max_seconds: float = 10.0, precision: str = "fp32", **model_kwargs):
        max_tokens = round(max_seconds * FRAME_RATE) * N_CODEBOOKS + 1
        self.model = build_model(max_tokens=max(1024, max_tokens), **model_kwargs).eval()
        self.precision = precision

    def generate(self, seconds: float = 2.0, beams: int = 1, sample: bool = False) -> float:
        """Seconds taken to generate `seconds` of audio tokens (greedy, beam search, sampling)."""
        n_tokens = round(seconds * FRAME_RATE) * N_CODEBOOKS
        input_ids, attention_mask = random_text(1, max(1, round(15 * seconds)), torch.Generator().manual_seed(0))
        torch.manual_seed(0)
        start = time.perf_counter()
        with torch.inference_mode(), _autocast(self.precision):
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask,
                max_new_tokens=n_tokens, min_new_tokens=n_tokens,
                num_beams=beams, do_sample=sample, top_k=0 if sample else None,
            )
        elapsed = time.perf_counter() - start
        n = out.shape[1] - 1  # minus the start token
        if n != n_tokens:
            raise RuntimeError(f"baseline generated {n} tokens, expected {n_tokens}")
        return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    s = sub.add_parser("synth")
    s.add_argument("--seconds", type=float, default=2.0)
    s.add_argument("--runs", type=int, default=3)
    s.add_argument("--beams", type=int, default=1)
    s.add_argument("--sample", action="store_true")
    args = p.parse_args()
    if args.cmd == "train":
        bench = BaselineTrainBench(batch_size=args.batch_size, precision=args.precision)
        bench.step()  # warm-up
        step = statistics.median(bench.step()[0] for _ in range(args.steps))
        print(f"baseline train: {bench.num_params() / 1e6:.2f}M params, batch {bench.batch_size} x {bench.frames} "
              f"frames, {args.precision}: {step:.2f} s/step")
        print(json.dumps({"step_s": step, "frames_per_s": bench.frames_per_step / step}))
    else:
        bench = BaselineSynthBench(max_seconds=args.seconds)
        bench.generate(args.seconds, args.beams, args.sample)  # warm-up
        times = [bench.generate(args.seconds, args.beams, args.sample) for _ in range(args.runs)]
        gen = statistics.median(times)
        audio = round(args.seconds * FRAME_RATE) / FRAME_RATE
        print(f"baseline synth: {audio:.2f} s of audio, beams {args.beams}, sample {args.sample}: {gen:.3f} s")
        print(json.dumps({"model_s": gen, "rtf": gen / audio, "seconds_audio": audio}))


if __name__ == "__main__":
    main()
