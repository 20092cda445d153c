"""The demo model's output head and cross-entropy alone, forward and backward, one thread:
`F.cross_entropy` on an fp32 copy of the bf16 logits against `toktts.loss.cross_entropy_rows`.

    python benchmarks/cross_entropy.py [--rounds 25]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from toktts.loss import cross_entropy_rows

FRAMES, WIDTH, CODEBOOKS, CODES = 2500, 256, 4, 1024  # configs/demo.yaml: batch_frames, dec_dim, n_codebooks, codebook_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(FRAMES, WIDTH, requires_grad=True)
    head = torch.nn.Linear(WIDTH, CODEBOOKS * CODES)
    target = torch.randint(0, CODES, (FRAMES * CODEBOOKS,))

    def logits() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return head(x).view(-1, CODES)  # (M, V)

    arms = {
        "head + F.cross_entropy(logits.float())": lambda: F.cross_entropy(logits().float(), target, reduction="none").mean(),
        "head + cross_entropy_rows": lambda: cross_entropy_rows(logits(), target).mean(),
        "head alone": lambda: logits().float().sum(),
    }
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.rounds):  # the arms alternate, so a busy moment costs each alike
        for name, arm in arms.items():
            start = time.perf_counter()
            arm().backward()
            times[name].append(time.perf_counter() - start)
    for name, t in times.items():
        print(f"{name}: {1000 * statistics.median(t[1:]):.1f} ms")


if __name__ == "__main__":
    main()
