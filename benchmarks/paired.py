"""Paired comparison of two `toktts evaluate` outputs on the same sentences: per-sentence CER
differences (B - A), how many sentences each side wins, and a bootstrap 95% interval of the mean.

    python benchmarks/paired.py runs/v5/eval/metrics.json runs/v5/eval-T0.3/metrics.json
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path


def rows(path: str) -> dict[str, dict]:
    return {s["id"]: s for s in json.loads(Path(path).read_text())["sentences"]}


def main(a_path: str, b_path: str, key: str = "cer_generated", resamples: int = 10000) -> None:
    a, b = rows(a_path), rows(b_path)
    ids = sorted(set(a) & set(b))
    diff = [b[i][key] - a[i][key] for i in ids]
    mean = sum(diff) / len(diff)
    rng = random.Random(0)
    means = sorted(sum(rng.choice(diff) for _ in diff) / len(diff) for _ in range(resamples))
    lo, hi = means[int(0.025 * resamples)], means[int(0.975 * resamples)]
    wins, losses = sum(d < 0 for d in diff), sum(d > 0 for d in diff)
    print(f"{key}: B - A = {mean:+.1%} (95% bootstrap {lo:+.1%} .. {hi:+.1%}) over {len(ids)} sentences; "
          f"B better on {wins}, worse on {losses}")


if __name__ == "__main__":
    main(*sys.argv[1:3], *sys.argv[3:4])
