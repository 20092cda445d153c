"""How far a training step is from this core's arithmetic floor, toktts's and the old
architecture's: the FLOPs of one step (forward and backward, counted by torch's FlopCounterMode),
this core's measured matmul rate, and so the best step time and the best ratio to the baseline
that no kernel work could beat at this model size. One thread, glibc keeping freed memory (as
`toktts train` runs), random weights.

    python benchmarks/training_floor.py [--config configs/ljspeech_ex_small.yaml] [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections import Counter

import torch
from torch.utils.flop_counter import FlopCounterMode

import old_baseline
from toktts.bench import TrainBench
from toktts.config import load_config
from toktts.devices import keep_freed_memory

aten = torch.ops.aten


def _attention_flops(query_shape, key_shape, value_shape, dropout_p=0.0, is_causal=False, **kwargs) -> int:
    """Scores and the weighted sum: 2 x (2 B H S L D) multiply-adds counted as FLOPs, over the
    scores a causal mask keeps only (a kernel that skipped the rest would need no more)."""
    b, h, s, d = query_shape
    l = key_shape[2]
    n = min(s, l)
    scores = n * (n + 1) // 2 + (s - n) * l if is_causal else s * l  # causal: query i sees keys 0..i
    return 4 * b * h * scores * d


def _attention_backward_flops(grad_shape, query_shape, key_shape, value_shape, out_shape_, lse_shape,
                              dropout_p=0.0, is_causal=False, **kwargs) -> int:
    """The four products a backward needs (dV, dP, dQ, dK), none of a kernel's recomputation."""
    return 2 * _attention_flops(query_shape, key_shape, value_shape, dropout_p, is_causal)


# torch counts the CUDA kernels' attention only; the CPU flash kernel is the one toktts runs here.
CPU_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward_flops,
}
ATTENTION_OPS = {str(op).split(".")[-1] for op in (*CPU_ATTENTION, aten._scaled_dot_product_efficient_attention,
                                                    aten._scaled_dot_product_efficient_attention_backward)}


def count_flops(step) -> Counter:
    """FLOPs of one call of `step`, by op name."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        step()
    return Counter({str(op).split(".")[-1]: n for op, n in counter.get_flop_counts()["Global"].items()})


def matmul_rate(dtype: torch.dtype, shapes: list[tuple[int, int, int]], rounds: int = 5) -> dict:
    """GFLOP/s of (M, K) @ (K, N) for each shape, best of `rounds` (the core's rate, not the noise's)."""
    rates = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        calls = max(1, int(2e10 // (2 * m * k * n)))  # ~20 GFLOP a round
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                torch.mm(a, b)
            best = min(best, (time.perf_counter() - start) / calls)
        rates[(m, k, n)] = 2 * m * k * n / best / 1e9
    return rates


def median_step(bench, runs: int) -> float:
    for _ in range(2):  # warm: the heap grows to the step's peak, kernels pick their paths
        bench.step()
    return statistics.median(bench.step()[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ljspeech_ex_small.yaml")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--batch-size", type=int, help="clips a step (default: 64 of 2 s, as compare.py; "
                        "with --no-baseline, what `toktts bench train` takes for the config)")
    parser.add_argument("--runs", type=int, default=3, help="timed steps of each model; the median is used")
    parser.add_argument("--no-baseline", action="store_true", help="toktts alone (any config; the baseline is EnCodec's 75 Hz x 2)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers on the baseline's labels
    torch.set_num_threads(1)
    keep_freed_memory()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    cfg = load_config([args.config])
    if args.no_baseline:
        toktts = TrainBench(cfg, batch_size=args.batch_size, precision=args.precision)
    else:  # the baseline's shape: EnCodec's 75 Hz, clips of 2 s
        args.batch_size = args.batch_size or 64
        toktts = TrainBench(cfg, batch_size=args.batch_size, seconds=2.0, precision=args.precision)
    width = toktts.cfg.model.dec_dim
    tokens = toktts.batch_size * toktts.frames
    # the step's own linear shapes (tokens x width -> 4 x width and back) and a square one
    shapes = [(tokens, width, 4 * width), (tokens, 4 * width, width), (2048, 2048, 2048)]
    rates = matmul_rate(dtype, shapes)
    peak = max(rates.values())
    print(f"matmul, {args.precision}, one thread:")
    for (m, k, n), r in rates.items():
        print(f"  ({m} x {k}) @ ({k} x {n}): {r:.0f} GFLOP/s")

    rows = [("toktts", toktts)]
    if not args.no_baseline:
        rows.append(("baseline", old_baseline.BaselineTrainBench(
            batch_size=args.batch_size, seconds=2.0, text_chars=toktts.text_chars, precision=args.precision)))
    floors, steps = {}, {}
    print(f"\nbatch {toktts.batch_size} x {toktts.frames} frames, {args.precision}, one thread; "
          f"floor = every FLOP at the best matmul rate above ({peak:.0f} GFLOP/s)")
    print("| model | matmul GFLOP | attention GFLOP | floor s | step s | floor / step |")
    print("|---|---|---|---|---|---|")
    for name, bench in rows:
        steps[name] = median_step(bench, args.runs)
        flops = count_flops(bench.step)
        attention = sum(n for op, n in flops.items() if op in ATTENTION_OPS)
        matmul = sum(flops.values()) - attention
        floors[name] = (matmul + attention) / peak / 1e9
        print(f"| {name} | {matmul / 1e9:.0f} | {attention / 1e9:.0f} | {floors[name]:.2f} | "
              f"{steps[name]:.2f} | {floors[name] / steps[name]:.0%} |")
    if "baseline" in steps:
        print(f"\nmeasured: toktts {steps['baseline'] / steps['toktts']:.1f}x the baseline; "
              f"the most any toktts kernel work could give at this size: "
              f"{steps['baseline'] / floors['toktts']:.1f}x (the baseline as measured over toktts's floor)")


if __name__ == "__main__":
    main()
