"""How fast `toktts.text.normalize` reads text: sentences per second over the shipped transcripts.

    python benchmarks/bench_normalize.py              # 5 runs over the LJSpeech transcripts
    python benchmarks/bench_normalize.py --runs 9

Normalisation runs over every corpus sentence at `prepare` and over every input at synthesis, so
it has to keep up with thousands of sentences a second. Two inputs are timed:

1. the shipped LJSpeech transcripts (`src/toktts/data/ljspeech/train.txt`, `ID|text` lines),
   which are already spelled out: abbreviations, acronyms and punctuation are the work here;
2. the inputs of `tests/data/normalize_cases.tsv`, short and dense with numbers, money, dates,
   addresses and symbols, so that every rule and num2words are exercised.

One warm-up pass first (it fills num2words' cache, as a long `prepare` run would), then `--runs`
timed passes; the figures are medians. Wall time and process CPU time are both reported: on a
shared machine the CPU time is what the wall time would be on an idle core.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    from toktts.text import normalize
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT / "src"))
    from toktts.text import normalize

TRANSCRIPTS = ROOT / "src" / "toktts" / "data" / "ljspeech" / "train.txt"
CASES = ROOT / "tests" / "data" / "normalize_cases.tsv"


def read_transcripts(path: Path = TRANSCRIPTS) -> list[str]:
    return [line.split("|", 1)[1] for line in path.read_text(encoding="utf-8").splitlines() if "|" in line]


def read_case_inputs(path: Path = CASES) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    return [line.split("\t", 1)[0] for line in lines if "\t" in line]


def time_passes(sentences: list[str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of one pass of `normalize` over `sentences`."""
    for text in sentences:  # warm-up
        normalize(text)
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        for text in sentences:
            normalize(text)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed passes over each input (median)")
    args = parser.parse_args(argv)

    print(f"normalize on {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}, median of {args.runs} runs")
    for name, sentences in (("LJSpeech transcripts", read_transcripts()),
                            ("test-case inputs (number-dense)", read_case_inputs())):
        wall, cpu = time_passes(sentences, args.runs)
        chars = sum(map(len, sentences))
        print(f"{name:34s} {len(sentences):6d} sentences  {len(sentences) / wall:9,.0f} sentences/s  "
              f"({len(sentences) / cpu:,.0f}/s CPU, {chars / wall / 1e6:.2f} M chars/s)")


if __name__ == "__main__":
    main()
