"""toktts against the seed project's architecture, in one run on one machine.

    python benchmarks/compare.py                       # writes benchmarks/RESULTS.md
    python benchmarks/compare.py --threads 2 --out /tmp/results.md
    python benchmarks/compare.py --quick --out /tmp/quick.md   # a smoke test of this script

Both sides have the `ljspeech_ex_small` sizes (encoder 4 layers / width 128, decoder 6 / 192,
dropout 0.2) and random weights; EnCodec (24 kHz, 2 codebooks) has random weights too. Measured:

1. training throughput, audio frames per second of a whole step (forward, loss, backward,
   gradient clipping, AdamW) on batches of 64 clips of 2 s, in fp32 and with bf16 autocast;
2. synthesis of 2 s and 10 s of audio for one text: token generation alone, then with the mel
   codec's decoding (Griffin-Lim) and with EnCodec's decoding added;
3. EnCodec encoding for `prepare`: 16 utterances of 2-10 s, one at a time versus batched.

toktts and the baseline run alternately, round by round, so that both see the same load on a
shared machine; every figure is a median over the rounds. Each measurement records the wall time
and the process CPU time; with one intra-op thread (the default here) the CPU time is what the
wall time would be on an idle core, and the ratios use it. The results table, the machine, the
command and two torch.profiler summaries go to the output file; anything below the line
`NOTES_MARKER` in an existing file is kept.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import old_baseline

from toktts.bench import SynthBench, TrainBench, build_bench_codec, profile_synth, profile_train_step, timed
from toktts.config import load_config
from toktts.devices import keep_freed_memory
from toktts.inference import TTS

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "ljspeech_ex_small.yaml"
NOTES_MARKER = "<!-- notes below this line are kept by compare.py -->"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rounds(benches: dict[str, Callable[[], tuple[float, float]]], runs: int, warmup: int) -> dict[str, dict]:
    """Run each benchmark once per round, in turn; (wall, CPU) medians and all values per name."""
    for r in range(warmup):
        for name, fn in benches.items():
            log(f"  warm-up {r + 1}/{warmup}: {name}")
            fn()
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in benches}
    for r in range(runs):
        for name, fn in benches.items():
            wall, cpu = fn()
            out[name].append((wall, cpu))
            log(f"  round {r + 1}/{runs}: {name}: {wall:.3f} s wall, {cpu:.3f} s CPU")
    return {
        name: {"wall": statistics.median(w for w, _ in v), "cpu": statistics.median(c for _, c in v),
               "walls": [w for w, _ in v], "cpus": [c for _, c in v]}
        for name, v in out.items()
    }


# -- 1. training -------------------------------------------------------------------------------


def train_section(cfg, batch_size: int, runs: int, warmup: int) -> tuple[dict, dict]:
    log(f"training: batch {batch_size} x 2 s")
    toktts = {p: TrainBench(cfg, batch_size=batch_size, seconds=2.0, precision=p) for p in ("bf16", "fp32")}
    base = {p: old_baseline.BaselineTrainBench(batch_size=batch_size, seconds=2.0, text_chars=toktts["fp32"].text_chars,
                                               precision=p) for p in ("fp32", "bf16")}
    benches = {}
    for p in ("fp32", "bf16"):
        benches[f"baseline {p}"] = base[p].step
        benches[f"toktts {p}"] = toktts[p].step
    res = rounds(benches, runs, warmup)
    info = {
        "frames_per_step": toktts["fp32"].frames_per_step,
        "toktts": toktts["fp32"].describe(),
        "baseline_params_m": base["fp32"].num_params() / 1e6,
    }
    return res, info


# -- 2. synthesis ------------------------------------------------------------------------------


def synth_section(cfg, seconds_list: list[float], runs: int, warmup: int) -> tuple[dict, dict]:
    mel_cfg = load_config([CONFIG], ["codec.name=mel"])
    encodec = build_bench_codec(load_config([CONFIG]))
    mel = build_bench_codec(mel_cfg)
    frame_rate = encodec.frame_rate
    base = old_baseline.BaselineSynthBench(max_seconds=max(seconds_list))  # one model; positions cover the longest
    res, info = {}, {}
    for seconds in seconds_list:
        log(f"synthesis: {seconds:g} s")
        assert frame_rate == old_baseline.FRAME_RATE
        sample = SynthBench(cfg, seconds, precision="fp32", codec=encodec)  # backend auto: ONNX Runtime on CPU
        greedy = SynthBench(cfg, seconds, precision="fp32", temperature=0.0, codec=encodec)
        eager = SynthBench(cfg, seconds, precision="fp32", temperature=0.0, codec=encodec, backend="torch")
        int8 = SynthBench(cfg, seconds, precision="int8", temperature=0.0, codec=encodec)
        last: dict[str, Any] = {}
        benches = {
            "toktts fp32 sample": _generate(sample, last),
            "toktts fp32 greedy": _generate(greedy, {}),
            "toktts fp32 greedy torch": _generate(eager, {}),
            "toktts int8 greedy": _generate(int8, {}),
            "baseline greedy": _baseline_generate(base, seconds, beams=1, sample=False),
            "baseline beam-4 sample": _baseline_generate(base, seconds, beams=4, sample=True),
        }
        out = rounds(benches, runs, warmup)
        # both codecs decode the tokens of the last sampled generation, through the facade
        with_mel = TTS(sample.tts.model, sample.cfg, mel, sample.device, "fp32")
        decoders = {
            "mel decode": _decode(with_mel, last["tokens"]),
            "encodec decode": _decode(sample.tts, last["tokens"]),
        }
        out.update(rounds(decoders, runs, 1))
        res[seconds] = out
        info[seconds] = {
            "backends": {"sample": sample.tts.backend, "int8": int8.tts.backend, "eager": eager.tts.backend},
            "frames": sample.frames, "decoder_steps": sample.decoder_steps, "seconds_audio": sample.seconds_audio,
            "baseline_tokens": round(seconds * frame_rate) * old_baseline.N_CODEBOOKS + 1,
        }
    return res, info


def _generate(bench: SynthBench, keep: dict) -> Callable[[], tuple[float, float]]:
    def run() -> tuple[float, float]:
        wall, cpu, out = bench.generate()
        keep["tokens"] = out
        return wall, cpu
    return run


def _baseline_generate(base, seconds: float, beams: int, sample: bool) -> Callable[[], tuple[float, float]]:
    return lambda: timed(lambda: base.generate(seconds, beams, sample))[:2]


def _decode(tts: TTS, out: dict) -> Callable[[], tuple[float, float]]:
    return lambda: timed(lambda: tts.decode(out["tokens"], out["frames"]))[:2]


def precision_threads_section(cfg, seconds: float, runs: int) -> dict:
    """Batch-1 decoding in fp32, int8 and bf16 on 1 and 2 threads (toktts only, short); each
    precision on the backend `auto` gives it (ONNX Runtime for fp32 and int8 on a CPU)."""
    log(f"decode precision/threads check: {seconds:g} s")
    out = {}
    encodec = build_bench_codec(load_config([CONFIG]))
    old = torch.get_num_threads()
    for n in (1, 2):
        torch.set_num_threads(n)
        for p in ("fp32", "int8", "bf16"):
            bench = SynthBench(cfg, seconds, precision=p, codec=encodec)
            bench.tts.threads = n  # the facade runs on one thread unless told otherwise
            res = rounds({f"{p} ({bench.tts.backend}), {n} thread(s)": _generate(bench, {})}, runs, 1)
            for k, v in res.items():
                out[k] = {**v, "ms_per_step": 1000 * v["wall"] / bench.decoder_steps}
    torch.set_num_threads(old)
    return out


# -- 3. EnCodec encoding -----------------------------------------------------------------------


def encode_section(runs: int, n_utts: int, batch_seconds: float) -> tuple[dict, dict]:
    log(f"EnCodec encoding: {n_utts} utterances")
    codec = build_bench_codec(load_config([CONFIG]))
    g = torch.Generator().manual_seed(0)
    seconds = [2 + 8 * i / max(1, n_utts - 1) for i in range(n_utts)]  # 2 .. 10 s, evenly
    order = torch.randperm(n_utts, generator=g).tolist()  # a corpus is not sorted by length
    wavs = [0.1 * torch.randn(int(seconds[i] * codec.sample_rate), generator=g) for i in order]

    def encode(group: list[torch.Tensor]) -> None:
        longest = max(len(w) for w in group)
        x = torch.zeros(len(group), longest)
        for b, w in enumerate(group):
            x[b, : len(w)] = w
        codec.encode(x, torch.tensor([len(w) for w in group]))

    def sorted_groups(budget_s: float) -> list[list[torch.Tensor]]:
        """`prepare`'s grouping: sorted by length, as many per batch as fit `budget_s` padded."""
        items, groups, i = sorted(wavs, key=len), [], 0
        budget = budget_s * codec.sample_rate
        while i < len(items):
            j = i + 1
            while j < len(items) and len(items[j]) * (j + 1 - i) <= budget:
                j += 1
            groups.append(items[i:j])
            i = j
        return groups

    batched = sorted_groups(batch_seconds)
    benches = {
        "one at a time": lambda: timed(lambda: [encode([w]) for w in wavs])[:2],
        f"length-sorted batches of <= {batch_seconds:g} s ({len(batched)} batches)":
            lambda: timed(lambda: [encode(b) for b in batched])[:2],
        f"one padded batch of {n_utts}": lambda: timed(lambda: encode(wavs))[:2],
    }
    encode([wavs[0][: codec.sample_rate]])  # warm-up: one short item, not a whole round
    res = rounds(benches, runs, 0)
    return res, {"audio_s": sum(seconds), "n": n_utts}


# -- report ------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in have)
    except OSError:
        pass
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "flags": flags,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": str(torch.get_num_threads()),
        "load": " ".join(load),
    }


def fmt_ratio(new: float, old: float) -> str:
    return f"{old / new:.1f}x" if new > 0 else "-"


def render(args, m0, m1, train, synth, prec, enc, profiles) -> str:
    key = "cpu" if args.threads == 1 else "wall"
    lines = [
        "# toktts vs the old architecture: speed",
        "",
        f"Generated by `{args.command}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
        "",
        (f"Machine: {m0['nproc']} CPUs, {m0['cpu']} ({m0['flags']}), torch {m0['torch']}, Python {m0['python']}, "
         f"{args.threads} intra-op thread(s). Load average (1/5/15 min) {m0['load']} at the start, "
         f"{m1['load']} at the end: the machine was shared."),
        "",
        (f"Figures are medians over rounds in which toktts and the baseline alternate. Ratios use the "
         f"{'process CPU time (with one thread: the wall time of an idle core)' if key == 'cpu' else 'wall time'}; "
         "wall times are listed too. Random weights throughout (speed does not depend on them); "
         "toktts synthesis runs to a fixed length (EOS suppressed), the baseline with "
         "`min_new_tokens = max_new_tokens`."),
        "",
        ("Training: both run in one process with toktts's training allocator setting "
         "(`toktts.devices.keep_freed_memory`: glibc keeps freed memory instead of mapping it anew; "
         f"{'applied' if args.kept_memory else 'not available here'}), so neither pays page faults for its "
         "per-step tensors; one row has the baseline as the seed project ran it, with glibc's defaults. "
         "Synthesis and encoding run first, with glibc's defaults, as `toktts say` does."),
        "",
    ]
    # training
    fps = train["info"]["frames_per_step"]
    t = train["res"]
    ti = train["info"]["toktts"]
    lines += [
        "## Results",
        "",
        (f"Training: batch {ti['batch_size']} x 2 s ({fps} frames), {ti['text_chars']} characters per item; "
         f"toktts {ti['params_m']:.2f}M parameters ({ti['layout']} layout, guided attention on "
         f"{ti['guided_attn_layers']} layers), baseline {train['info']['baseline_params_m']:.2f}M. "
         f"Synthesis: one text, batch 1; toktts through the `TTS` facade (fp32 on CPU, temperature 0.7, top-k 50, "
         f"or greedy). Times in seconds."),
        "",
        "| measurement | toktts | baseline | speed-up | toktts wall | baseline wall |",
        "|---|---|---|---|---|---|",
    ]
    for p in ("fp32", "bf16"):
        a, b = t[f"toktts {p}"], t[f"baseline {p}"]
        lines.append(
            f"| training {p}: audio frames/s | {fps / a[key]:,.0f} | {fps / b[key]:,.0f} | {fmt_ratio(a[key], b[key])} "
            f"| {a['wall']:.2f} s/step | {b['wall']:.2f} s/step |"
        )
    best_t = min(t["toktts fp32"][key], t["toktts bf16"][key])
    best_b = min(t["baseline fp32"][key], t["baseline bf16"][key])
    lines.append(f"| training, best precision of each | {fps / best_t:,.0f} | {fps / best_b:,.0f} | "
                 f"{fmt_ratio(best_t, best_b)} | | |")
    d = t["baseline bf16, default allocator"]
    lines.append(f"| training bf16, the baseline with glibc's default allocator (as the seed project ran) | "
                 f"{fps / t['toktts bf16'][key]:,.0f} | {fps / d[key]:,.0f} | {fmt_ratio(t['toktts bf16'][key], d[key])} "
                 f"| {t['toktts bf16']['wall']:.2f} s/step | {d['wall']:.2f} s/step |")
    for seconds, res in synth["res"].items():
        info = synth["info"][seconds]
        audio = info["seconds_audio"]
        tg, ts = res["toktts fp32 greedy"], res["toktts fp32 sample"]
        bg, bb = res["baseline greedy"], res["baseline beam-4 sample"]
        mel, enc_d = res["mel decode"], res["encodec decode"]
        steps = f"{info['decoder_steps']} steps vs {info['baseline_tokens']}"
        backends = info["backends"]
        rows = [
            (f"{seconds:g} s: tokens, greedy ({steps}; toktts on {backends['sample']})", tg, bg),
            (f"{seconds:g} s: tokens, greedy, toktts on {backends['eager']} (the eager step)",
             res["toktts fp32 greedy torch"], bg),
            (f"{seconds:g} s: tokens, greedy, toktts int8 on {backends['int8']}", res["toktts int8 greedy"], bg),
            (f"{seconds:g} s: tokens, toktts sampling vs baseline beam-4 sampling", ts, bb),
        ]
        for name, a, b in rows:
            lines.append(
                f"| {name} | {a[key]:.3f} (RTF {a[key] / audio:.3f}) | {b[key]:.3f} (RTF {b[key] / audio:.3f}) | "
                f"{fmt_ratio(a[key], b[key])} | {a['wall']:.3f} | {b['wall']:.3f} |"
            )
        for dname, d in (("mel decode (Griffin-Lim 32 it.)", mel), ("EnCodec decode", enc_d)):
            a, b = ts[key] + d[key], bg[key] + d[key]
            lines.append(
                f"| {seconds:g} s: sampling + {dname} vs baseline greedy + same | {a:.3f} (RTF {a / audio:.3f}) | "
                f"{b:.3f} (RTF {b / audio:.3f}) | {fmt_ratio(a, b)} | {ts['wall'] + d['wall']:.3f} | "
                f"{bg['wall'] + d['wall']:.3f} |"
            )
        lines.append(f"| {seconds:g} s: codec decode alone: mel / EnCodec | {mel[key]:.3f} / {enc_d[key]:.3f} | | | "
                     f"{mel['wall']:.3f} / {enc_d['wall']:.3f} | |")
    first = min(synth["res"])
    r2, audio2 = synth["res"][first], synth["info"][first]["seconds_audio"]
    enc_best = max(enc["res"]["one at a time"][key] / v[key] for n, v in enc["res"].items() if n != "one at a time")
    t = train["res"]
    checks = [
        ("training frames/s >= 15x baseline (best precision of each, both with the allocator setting)",
         best_b / best_t, 15, "x"),
        ("training frames/s >= 15x baseline (toktts as it trains, the baseline with glibc's defaults)",
         t["baseline bf16, default allocator"][key] / t["toktts bf16"][key], 15, "x"),
        (f"{first:g} s synthesis, tokens: >= 15x faster than baseline greedy (fp32)",
         r2["baseline greedy"][key] / r2["toktts fp32 greedy"][key], 15, "x"),
        (f"{first:g} s synthesis, tokens: >= 15x faster than baseline greedy (best precision of each)",
         r2["baseline greedy"][key] / min(r2["toktts fp32 greedy"][key], r2["toktts int8 greedy"][key]), 15, "x"),
        (f"{first:g} s synthesis, tokens: model RTF <= 0.03 (sampling)",
         r2["toktts fp32 sample"][key] / audio2, 0.03, "rtf"),
        (f"{first:g} s synthesis with mel decoding: RTF <= 0.1",
         (r2["toktts fp32 sample"][key] + r2["mel decode"][key]) / audio2, 0.1, "rtf"),
        ("batched EnCodec encoding >= 3x one at a time", enc_best, 3, "x"),
    ]
    lines += ["", "Targets of the speed issue:", "", "| target | measured | met |", "|---|---|---|"]
    for name, value, goal, kind in checks:
        met = value >= goal if kind == "x" else value <= goal
        lines.append(f"| {name} | {value:.2f}{'x' if kind == 'x' else ''} | {'yes' if met else 'no'} |")
    lines += ["", (f"EnCodec encoding (random weights) of {enc['info']['n']} utterances, "
              f"{enc['info']['audio_s']:.0f} s of audio in all, 2-10 s each:"), "",
              "| strategy | time | speed-up vs one at a time | wall | audio s per s |", "|---|---|---|---|---|"]
    one = enc["res"]["one at a time"][key]
    for name, v in enc["res"].items():
        lines.append(f"| {name} | {v[key]:.2f} | {one / v[key]:.2f}x | {v['wall']:.2f} | "
                     f"{enc['info']['audio_s'] / v[key]:.1f} |")
    lines += ["", (f"Batch-1 decoding of {prec['seconds']:g} s (toktts, wall time, which is what matters for "
              "threads; the machine's other load shows up here):"), "",
              "| precision, threads | tokens (s) | ms per decoder step | CPU (s) |", "|---|---|---|---|"]
    for name, v in prec["res"].items():
        lines.append(f"| {name} | {v['wall']:.3f} | {v['ms_per_step']:.2f} | {v['cpu']:.3f} |")
    # profiles
    lines += ["", "## Where the time goes (torch.profiler, self CPU time)", ""]
    for title, p in profiles:
        lines += [f"### {title}", "", f"{p['ops']:,} op calls, {p['total_ms']:.0f} ms of op self time"
                  + (f", {p['per_step_ms']:.2f} ms per decoder step" if "per_step_ms" in p else "") + ":", ""]
        lines += ["| op family | ms | share |", "|---|---|---|"]
        for g, ms in p["groups_ms"].items():
            lines.append(f"| {g} | {ms:.1f} | {100 * ms / p['total_ms']:.0f}% |")
        lines += ["", "```", p["table"].strip(), "```", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description="toktts vs the old architecture, one run on one machine")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: see README)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--train-runs", type=int, default=3)
    ap.add_argument("--synth-runs", type=int, default=3)
    ap.add_argument("--encode-runs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round: checks that the script runs")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = ap.parse_args()
    args.command = " ".join(["python benchmarks/compare.py", *sys.argv[1:]])
    torch.set_num_threads(args.threads)
    cfg = load_config([CONFIG])
    m0 = machine()
    if args.quick:
        args.batch_size, args.train_runs, args.synth_runs, args.encode_runs = 4, 1, 1, 1
    seconds_list = [0.4, 1.0] if args.quick else [2.0, 10.0]

    # Synthesis and encoding first, with glibc's allocator as `toktts say` has it; then a baseline
    # training step as the seed project ran it; then training as toktts runs it, both sides in
    # this process with `keep_freed_memory` (which cannot be undone).
    synth_res, synth_info = synth_section(cfg, seconds_list, args.synth_runs, warmup=1)
    prec_seconds = 0.2 if args.quick else 1.0
    prec = precision_threads_section(cfg, prec_seconds, 1 if args.quick else 2)
    enc_res, enc_info = encode_section(args.encode_runs, 4 if args.quick else 16, 60.0)
    log("training: the baseline with glibc's default allocator")
    default_base = old_baseline.BaselineTrainBench(batch_size=args.batch_size, seconds=2.0, text_chars=100,
                                                   precision="bf16")
    defaults = rounds({"baseline bf16, default allocator": default_base.step}, max(1, args.train_runs - 1), 1)
    del default_base
    args.kept_memory = keep_freed_memory()  # as toktts training does; the baseline shares the process
    train_res, train_info = train_section(cfg, args.batch_size, args.train_runs, warmup=1)
    train_res.update(defaults)
    log("profiles")
    profiles = [
        (f"One toktts training step (bf16 autocast, batch {args.batch_size} x 2 s)",
         profile_train_step(cfg, row_limit=15, batch_size=args.batch_size, seconds=2.0, precision="bf16")),
        (f"One toktts training step (fp32, batch {args.batch_size} x 2 s)",
         profile_train_step(cfg, row_limit=10, batch_size=args.batch_size, seconds=2.0, precision="fp32")),
        (f"toktts token generation of {seconds_list[0]:g} s (fp32, batch 1, sampling, the eager step: --backend torch)",
         profile_synth(cfg, seconds=seconds_list[0], row_limit=15, precision="fp32", backend="torch")),
    ]
    m1 = machine()
    text = render(
        args, m0, m1, {"res": train_res, "info": train_info}, {"res": synth_res, "info": synth_info},
        {"seconds": prec_seconds, "res": prec}, {"res": enc_res, "info": enc_info}, profiles,
    )
    out = Path(args.out)
    if out.is_file() and NOTES_MARKER in out.read_text():
        text += "\n" + NOTES_MARKER + out.read_text().split(NOTES_MARKER, 1)[1]
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
