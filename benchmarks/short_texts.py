"""How a voice says short texts ("Hi.", "Yes.", "Thank you."): for each text and seed, as `say`
speaks it (every default, silence retries included), whether the first take was kept, how much of
the kept take is voiced, and how long it is. A voice that never learned short takes speaks them
as near silence, which the retries only sometimes rescue.

    python benchmarks/short_texts.py                       # the bundled voice
    python benchmarks/short_texts.py runs/v10-int8 --seeds 8
"""
from __future__ import annotations

import argparse
import statistics

from toktts import TTS

TEXTS = ("Hi.", "Yes.", "No.", "Hello.", "Thank you.", "Good morning.", "Why?", "Wait.", "Okay.", "Bye.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None, help="model directory (default: the bundled voice)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 per text (default 8)")
    args = parser.parse_args()
    tts = TTS.from_pretrained(args.model)
    rows, first_ok, silent = [], 0, 0
    for text in TEXTS:
        seconds, voiced = [], []
        for seed in range(args.seeds):
            out = tts(text, seed=seed)
            chunk = out["chunks"][0]
            first_ok += chunk["retries"] == 0
            silent += chunk["problem"] is not None
            seconds.append(len(out["audio"]) / out["sampling_rate"])
            voiced.append(chunk["voiced_fraction"])
        rows.append((text, statistics.median(seconds), min(seconds), statistics.median(voiced)))
    print("| text | seconds (median) | seconds (min) | voiced (median) |\n|---|---|---|---|")
    for text, median, low, voiced in rows:
        print(f"| {text} | {median:.2f} | {low:.2f} | {voiced:.0%} |")
    takes = len(TEXTS) * args.seeds
    print(f"\n{takes} takes: first take kept {first_ok} ({first_ok / takes:.0%}); "
          f"still mostly silent after the retries {silent} ({silent / takes:.0%})")


if __name__ == "__main__":
    main()
