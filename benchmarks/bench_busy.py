"""`say` on a busy machine (issue 13): the same synthesis, timed with the machine idle and with
another job keeping every core busy (a torch matmul loop on the default thread count).

    python benchmarks/bench_busy.py [--runs 5] [--threads N]

Prints the median seconds of generation and of decoding for each condition and their ratio."""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from toktts import TTS

TEXT = "Printing, in the only sense with which we are at present concerned, differs from most if not from all the arts."
HOG = "import torch\na = torch.randn(1500, 1500)\nwhile True:\n    a @ a\n"


def timed(tts: TTS, runs: int) -> tuple[float, float]:
    gen, dec = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        _, result = tts.generate_tokens([TEXT], seed=i)
        t1 = time.perf_counter()
        tts.decode(result["tokens"], result["frames"])
        gen.append(t1 - t0)
        dec.append(time.perf_counter() - t1)
    return statistics.median(gen), statistics.median(dec)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="TTS threads (default: the facade's)")
    parser.add_argument("--precision", default=None)
    args = parser.parse_args()
    tts = TTS.from_pretrained(threads=args.threads, precision=args.precision)
    timed(tts, 1)  # warm up
    idle = timed(tts, args.runs)
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        time.sleep(2)
        busy = timed(tts, args.runs)
    finally:
        hog.kill()
    print(f"threads {tts.threads}, precision {tts.precision}, torch default threads {torch.get_num_threads()}")
    for name, (g, d) in (("idle", idle), ("busy", busy)):
        print(f"{name}: generation {g:.2f} s, decoding {d:.2f} s, total {g + d:.2f} s")
    print(f"busy / idle: {(busy[0] + busy[1]) / (idle[0] + idle[1]):.2f}x")


if __name__ == "__main__":
    main()
