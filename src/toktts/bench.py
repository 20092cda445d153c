"""Speed benchmarks on random weights: training throughput and synthesis real-time factor.

    toktts bench train --config configs/ljspeech_ex_small.yaml
    toktts bench synth --config configs/demo.yaml

Nothing here needs a corpus, a download or a trained model: the model and the codec are built
from the config with random weights (EnCodec with `pretrained=False`, the mel codec with random
codebooks), and batches are random ids of realistic shapes. Speed does not depend on the values,
with one exception handled below: a random model may sample EOS at any step, so synthesis runs
on a copy whose EOS logit can never win, and every run produces exactly the requested audio.

Each figure is a median over several runs after untimed warm-up runs (the first calls pay for
allocations and kernel selection). Both the wall time and the process CPU time are recorded: on
a shared machine the wall time includes waiting for a core, and with one intra-op thread the CPU
time is close to what the wall time would be on an idle machine. `benchmarks/compare.py` uses
these functions to compare toktts with the seed project's architecture.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from toktts.codecs import Codec, build_codec
from toktts.config import Config
from toktts.errors import TokttsError
from toktts.devices import autocast, keep_freed_memory, num_threads, resolve_device
from toktts.inference import TTS
from toktts.model import TokTTS
from toktts.phonemes import text_vocab
from toktts.train import complete_model_config, make_optimizer, train_step

# LJSpeech reads ~15 characters per second of audio; a 2 s clip of the old `clip_seconds` mode
# keeps its whole transcript, ~100 characters on average.
CHARS_PER_SECOND = 15.0
CLIP_TEXT_CHARS = 100
DEFAULT_TRAIN_SECONDS = 4.0  # clip length when the config does not clip (a typical utterance)
SYNTH_TEXT = (
    "printing, in the only sense with which we are at present concerned, differs from most if "
    "not from all the arts and crafts represented in the exhibition. "
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[float, float, Any]:
    """(wall seconds, process CPU seconds, result) of one call, synchronised on GPUs.
    The CPU time sums over all threads of the process."""
    device = torch.device(device)
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def _bench_codec_config(cfg: Config) -> Config:
    """A completed copy of `cfg` whose codec builds offline: EnCodec with random weights (the same
    network, so the same speed)."""
    cfg = complete_model_config(copy.deepcopy(cfg))
    cfg.codec.pretrained = False
    return cfg


# -- training ----------------------------------------------------------------------------------


class _PlainAccelerator:
    """What `train_step` asks of an `Accelerator` (autocast, backward), without accelerate's
    process-wide state, so one process can time several precisions."""

    def __init__(self, device: torch.device, precision: str):
        self.device, self.precision = device, precision

    def autocast(self):
        return autocast(self.device, self.precision)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()


def random_batch(
    cfg: Config, batch_size: int, frames: int, text_chars: int, layout, device: torch.device, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A batch shaped like `data.collate`'s: text (B, L), text_lengths (B,), tokens (B, N, S),
    frames (B,); every item has `frames` frames and `text_chars` characters."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, len(text_vocab(cfg.model.text_input)), (batch_size, text_chars), generator=g)
    codes = torch.randint(0, cfg.codec.codebook_size, (batch_size, cfg.codec.n_codebooks, frames), generator=g)
    lengths = torch.full((batch_size,), frames)
    batch = {
        "text": text,
        "text_lengths": torch.full((batch_size,), text_chars),
        "tokens": layout.tokens(codes, lengths),  # (B, N, S)
        "frames": lengths,
    }
    return {k: v.to(device) for k, v in batch.items()}


def train_shape(
    cfg: Config, batch_size: int | None = None, seconds: float | None = None, text_chars: int | None = None
) -> tuple[int, int, int]:
    """(B, T, L) for a training benchmark: clips of `data.clip_seconds` (else `seconds`, default
    4 s), as many per batch as `train.batch_frames` holds, at most `train.max_batch_size`."""
    clip = cfg.data.clip_seconds
    seconds = seconds or (clip if clip > 0 else DEFAULT_TRAIN_SECONDS)
    frames = max(1, round(seconds * cfg.codec.frame_rate))
    if batch_size is None:
        batch_size = max(1, min(cfg.train.max_batch_size, cfg.train.batch_frames // frames))
    if text_chars is None:
        text_chars = CLIP_TEXT_CHARS if clip > 0 else max(1, round(CHARS_PER_SECOND * seconds))
    return batch_size, frames, text_chars


class TrainBench:
    """One training step (forward, loss with the guided-attention term as configured, backward,
    gradient clipping, AdamW step) on a fixed random batch, as `train.train` runs it."""

    def __init__(
        self,
        cfg: Config,
        batch_size: int | None = None,
        seconds: float | None = None,
        text_chars: int | None = None,
        device: str | None = None,
        precision: str | None = None,
    ):
        self.cfg = _bench_codec_config(cfg)
        t = self.cfg.train
        self.device = resolve_device(device)
        if self.device.type == "cpu":  # as `train.train` does
            keep_freed_memory()
        self.precision = precision or t.precision
        if self.precision not in ("bf16", "fp16", "fp32"):
            raise TokttsError(f"precision must be bf16, fp16 or fp32, got {self.precision!r}")
        torch.manual_seed(t.seed)
        self.model = TokTTS(self.cfg.model).to(self.device).train()
        self.optimizer = make_optimizer(self.model, t)
        self.batch_size, self.frames, self.text_chars = train_shape(self.cfg, batch_size, seconds, text_chars)
        self.batch = random_batch(
            self.cfg, self.batch_size, self.frames, self.text_chars, self.model.layout, self.device
        )
        self.accelerator = _PlainAccelerator(self.device, self.precision)
        self.frames_per_step = self.batch_size * self.frames

    def step(self) -> tuple[float, float]:
        """Run one step; returns its (wall, CPU) seconds."""

        def run():
            stats = train_step(self.model, self.batch, self.cfg, self.accelerator)
            if self.cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            return stats

        wall, cpu, _ = timed(run, self.device)
        return wall, cpu

    def describe(self) -> dict[str, Any]:
        t = self.cfg.train
        return {
            "params_m": round(self.model.num_params() / 1e6, 3),
            "batch_size": self.batch_size,
            "frames": self.frames,
            "text_chars": self.text_chars,
            "precision": self.precision,
            "layout": self.cfg.model.layout,
            "guided_attn_layers": t.guided_attn_layers if t.guided_attn_weight > 0 else 0,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
        }


def bench_train(
    cfg: Config,
    steps: int = 5,
    warmup: int = 2,
    batch_size: int | None = None,
    seconds: float | None = None,
    text_chars: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Training throughput of `cfg`'s model on random batches: median step time over `steps`
    timed steps after `warmup` untimed ones, and audio frames per second (`frames_per_s`, from
    the wall time). `precision` defaults to `train.precision`, `threads` to torch's default."""
    if steps < 1 or warmup < 0:
        raise TokttsError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    with num_threads(threads):
        bench = TrainBench(cfg, batch_size, seconds, text_chars, device, precision)
        for _ in range(warmup):
            bench.step()
        times = [bench.step() for _ in range(steps)]
        info = bench.describe()
    wall, cpu = median([w for w, _ in times]), median([c for _, c in times])
    return {
        "kind": "train",
        **info,
        "frames_per_step": bench.frames_per_step,
        "step_s": wall,
        "step_cpu_s": cpu,
        "step_s_all": [w for w, _ in times],
        "frames_per_s": bench.frames_per_step / wall,
        "frames_per_cpu_s": bench.frames_per_step / cpu,
        "audio_s_per_s": bench.frames_per_step / wall / bench.cfg.codec.frame_rate,
    }


# -- synthesis ---------------------------------------------------------------------------------


def never_ending(model: TokTTS) -> TokTTS:
    """A copy of `model` that cannot emit EOS on stream 0 (its head bias there is -1e4), so that
    generation always runs to its step limit: a fixed amount of audio for timing."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.decoder.head.bias[model.layout.eos_id] = -1e4  # stream 0's EOS: flat index 0 * V + eos_id
    return model


def randomize_mel_codec(codec, seed: int = 0) -> None:
    """Give an unfitted MelCodec random codebooks so that it can decode. Decoding time depends only
    on the shapes (a lookup, a matmul and a fixed number of Griffin-Lim iterations), not on the
    codewords. Mean and scale are those of speech log-mels (about -5 and 2.5 nats)."""
    if getattr(codec, "is_fitted", True):
        return
    g = torch.Generator().manual_seed(seed)
    K, V, D = codec.n_codebooks, codec.codebook_size, codec.cfg.n_mels
    width = getattr(codec, "dim", D)  # a codeword spans `stack` mel frames when the codec stacks them
    codebooks = torch.randn(K, V, width, generator=g) / (torch.arange(K) + 1.0)[:, None, None]  # residuals shrink
    codec.codebooks = codebooks.to(codec.device)
    codec.mean = torch.full((D,), -5.0, device=codec.device)
    codec.std = torch.full((D,), 2.5, device=codec.device)


def build_bench_codec(cfg: Config) -> Codec:
    """The config's codec, able to decode offline: EnCodec with random weights, the mel codec with
    random codebooks."""
    codec_cfg = copy.deepcopy(cfg.codec)
    codec_cfg.pretrained = False
    codec = build_codec(codec_cfg)
    if codec_cfg.name == "mel":
        randomize_mel_codec(codec, codec_cfg.seed)
    return codec


def synth_text(seconds: float) -> str:
    """An English text that takes about `seconds` to read (~15 characters a second)."""
    n = max(1, round(CHARS_PER_SECOND * seconds))
    return (SYNTH_TEXT * (n // len(SYNTH_TEXT) + 1))[:n].strip()


class SynthBench:
    """Synthesis of a fixed length through the `TTS` facade: token generation (batch 1, KV cache)
    and codec decoding, timed separately."""

    def __init__(
        self,
        cfg: Config,
        seconds: float = 2.0,
        device: str | None = None,
        precision: str | None = None,
        temperature: float | None = None,
        codec: Codec | None = None,
        backend: str | None = None,
    ):
        self.cfg = _bench_codec_config(cfg)
        self.seconds = seconds
        self.device = resolve_device(device)
        torch.manual_seed(self.cfg.train.seed)
        model = never_ending(TokTTS(self.cfg.model)).to(self.device).eval()
        self.codec = (codec or build_bench_codec(self.cfg)).to(self.device)
        self.tts = TTS(model, self.cfg, self.codec, self.device, precision, backend=backend)
        self.text = synth_text(seconds)
        self.temperature = temperature
        # The facade's limit is min(1 s + seconds_per_char * characters, max_seconds); the text is
        # long enough for max_seconds to decide, so every run yields int(seconds * frame_rate) frames.
        self.frames = max(1, int(seconds * self.codec.frame_rate))
        self.decoder_steps = self.tts.model.layout.n_steps(self.frames)

    def generate(self) -> tuple[float, float, dict]:
        """(wall, CPU, `generate_tokens` output) of one generation."""
        kwargs: dict[str, Any] = {"max_seconds": self.seconds, "seed": 0}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        wall, cpu, (_, out) = timed(lambda: self.tts.generate_tokens([self.text], **kwargs), self.device)
        frames = int(out["frames"][0])
        if frames != self.frames or bool(out["stopped"][0]):
            raise RuntimeError(f"benchmark generation made {frames} frames, expected {self.frames} without EOS")
        return wall, cpu, out

    def decode(self, out: dict) -> tuple[float, float]:
        """(wall, CPU) of decoding one generation's tokens to audio."""
        wall, cpu, _ = timed(lambda: self.tts.decode(out["tokens"], out["frames"]), self.device)
        return wall, cpu

    @property
    def seconds_audio(self) -> float:
        return self.frames / self.codec.frame_rate

    def describe(self) -> dict[str, Any]:
        g = self.cfg.generate
        return {
            "params_m": round(self.tts.model.num_params() / 1e6, 3),
            "precision": self.tts.precision,
            "backend": self.tts.backend,
            "temperature": g.temperature if self.temperature is None else self.temperature,
            "top_k": g.top_k,
            "cfg_scale": g.cfg_scale,
            "codec": self.cfg.codec.name,
            "text_chars": len(self.text),
            "frames": self.frames,
            "decoder_steps": self.decoder_steps,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
        }


def bench_synth(
    cfg: Config,
    seconds: float = 2.0,
    runs: int = 5,
    warmup: int = 1,
    device: str | None = None,
    precision: str | None = None,
    temperature: float | None = None,
    threads: int | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Real-time factor of synthesising `seconds` of audio (batch 1) with `cfg`'s model (random
    weights, EOS suppressed) and codec: token generation only (`model_rtf`), codec decoding only
    (`decode_rtf`) and both (`rtf`); wall-time medians over `runs` after `warmup` untimed runs.
    `precision` defaults to the facade's (fp32 on CPU, bf16 on GPUs), `backend` to its `auto`,
    `temperature` to the config's."""
    if runs < 1 or warmup < 0 or seconds <= 0:
        raise TokttsError(f"need runs >= 1, warmup >= 0 and seconds > 0; got {runs}, {warmup}, {seconds}")
    with num_threads(threads):
        bench = SynthBench(cfg, seconds, device, precision, temperature, backend=backend)
        if threads is not None:
            bench.tts.threads = threads  # the benchmark's setting, not the facade's default
        for _ in range(warmup):
            bench.decode(bench.generate()[2])
        model, decode = [], []
        for _ in range(runs):
            wall, cpu, out = bench.generate()
            model.append((wall, cpu))
            decode.append(bench.decode(out))
        info = bench.describe()
    audio = bench.seconds_audio
    model_s, decode_s = median([w for w, _ in model]), median([w for w, _ in decode])
    total_s = median([m[0] + d[0] for m, d in zip(model, decode)])
    return {
        "kind": "synth",
        **info,
        "seconds_audio": audio,
        "model_s": model_s,
        "decode_s": decode_s,
        "total_s": total_s,
        "model_cpu_s": median([c for _, c in model]),
        "decode_cpu_s": median([c for _, c in decode]),
        "model_rtf": model_s / audio,
        "decode_rtf": decode_s / audio,
        "rtf": total_s / audio,
        "ms_per_step": 1000 * model_s / bench.decoder_steps,
        "model_s_all": [w for w, _ in model],
        "decode_s_all": [w for w, _ in decode],
    }


# -- profiles ----------------------------------------------------------------------------------

# Op families for "where the time goes": the first pattern an op name contains decides.
OP_GROUPS = (
    ("attention (SDPA fwd/bwd)", ("scaled_dot_product", "flash_attention")),
    ("matmul (linear fwd/bwd, bmm)", ("addmm", "aten::mm", "bmm", "matmul", "linear")),
    ("dropout RNG", ("bernoulli", "dropout")),
    ("copies and dtype casts", ("copy_", "_to_copy", "clone", "contiguous")),
    ("softmax / cross-entropy", ("softmax", "nll_loss", "cross_entropy")),
    ("layer norm", ("layer_norm",)),
    ("sampling (top-k, multinomial)", ("topk", "multinomial", "exponential_", "sort")),
    ("GELU", ("gelu",)),
)


def _profile(fn: Callable[[], Any], row_limit: int) -> dict[str, Any]:
    """Profile one call: the torch.profiler table (top ops by self CPU time), the ops' total self
    time and its split into OP_GROUPS (the rest is elementwise ops and per-op overhead)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = {name: 0.0 for name, _ in OP_GROUPS}
    groups["other ops (elementwise, views, overhead)"] = 0.0
    for e in events:
        name = next((g for g, keys in OP_GROUPS if any(k in e.key for k in keys)), None)
        groups[name or "other ops (elementwise, views, overhead)"] += e.self_cpu_time_total
    return {
        "table": events.table(sort_by="self_cpu_time_total", row_limit=row_limit, max_name_column_width=64),
        "total_ms": total / 1000,
        "groups_ms": {k: v / 1000 for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "ops": sum(e.count for e in events),
    }


def profile_train_step(cfg: Config, row_limit: int = 15, threads: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """Profile one training step after two warm-up steps (keyword arguments go to TrainBench)."""
    with num_threads(threads):
        bench = TrainBench(cfg, **kwargs)
        bench.step()
        bench.step()
        result = _profile(bench.step, row_limit)
    return {**result, **bench.describe()}


def profile_synth(
    cfg: Config, seconds: float = 2.0, row_limit: int = 15, threads: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Profile one generation of `seconds` of tokens (no codec decoding) after a warm-up one;
    `per_step_ms` is the cost of one decode step (keyword arguments go to SynthBench)."""
    with num_threads(threads):
        bench = SynthBench(cfg, seconds, **kwargs)
        bench.generate()
        result = _profile(bench.generate, row_limit)
    return {**result, **bench.describe(), "per_step_ms": result["total_ms"] / bench.decoder_steps}


# -- reports -----------------------------------------------------------------------------------


def format_report(result: dict[str, Any]) -> str:
    """The human-readable part of a `bench_train` or `bench_synth` result."""
    r = result
    if r.get("kind") == "train":
        return "\n".join([
            (f"model: {r['params_m']:.2f}M parameters, {r['layout']} layout, {r['precision']}, "
             f"guided attention on {r['guided_attn_layers']} layer(s), {r['device']}, {r['threads']} thread(s)"),
            (f"batch: {r['batch_size']} x {r['frames']} frames ({r['frames_per_step']} frames), "
             f"{r['text_chars']} characters each"),
            (f"step: {r['step_s']:.3f} s wall, {r['step_cpu_s']:.3f} s CPU (median of {len(r['step_s_all'])}: "
             f"{', '.join(f'{t:.3f}' for t in r['step_s_all'])})"),
            f"throughput: {r['frames_per_s']:,.0f} audio frames/s = {r['audio_s_per_s']:.1f} s of audio per second",
        ])
    if r.get("kind") == "synth":
        return "\n".join([
            (f"model: {r['params_m']:.2f}M parameters, {r['precision']}, {r.get('backend', 'torch')} decoder steps, "
             f"temperature {r['temperature']}, "
             f"top-k {r['top_k']}, {r['device']}, {r['threads']} thread(s); codec {r['codec']}"),
            (f"audio: {r['seconds_audio']:.2f} s = {r['frames']} frames = {r['decoder_steps']} decoder steps "
             f"(text of {r['text_chars']} characters)"),
            f"tokens: {r['model_s']:.3f} s ({r['ms_per_step']:.2f} ms/step), RTF {r['model_rtf']:.3f}",
            f"codec decode: {r['decode_s']:.3f} s, RTF {r['decode_rtf']:.3f}",
            f"total: {r['total_s']:.3f} s, RTF {r['rtf']:.3f} (wall-time medians of {len(r['model_s_all'])} runs)",
        ])
    raise TokttsError(f"not a benchmark result (kind={r.get('kind')!r})")
