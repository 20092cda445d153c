"""Long text with the bundled voice: synthesis time against text length, and time to first
audio when streaming.

    OMP_NUM_THREADS=1 python benchmarks/bench_longform.py [--model DIR] [--sizes 1000 2500 5000 10000]

Texts are LJSpeech validation transcripts joined into paragraphs of the requested length. Prints
one row per size (wall time, seconds of audio, real-time factor, wall ms per character, chunks,
retries) and streaming's time to first audio (median of 5) on a 1,000-character text.
"""
from __future__ import annotations

import argparse
import statistics
import time

from toktts.corpus import packaged_transcripts
from toktts.inference import TTS


def paragraph(chars: int) -> str:
    sentences = [text for _, text in packaged_transcripts("val")]
    out, i = [], 0
    while sum(map(len, out)) + len(out) < chars:
        out.append(sentences[i % len(sentences)])
        i += 1
    return " ".join(out)[:chars].rsplit(" ", 1)[0] + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2500, 5000, 10000])
    args = parser.parse_args()
    tts = TTS.from_pretrained(args.model)
    tts("Warm up.", seed=0)
    print(f"{'chars':>6} {'wall s':>7} {'audio s':>8} {'RTF':>6} {'ms/char':>8} {'chunks':>6} {'retried':>7}")
    for size in args.sizes:
        text = paragraph(size)
        start = time.perf_counter()
        out = tts(text, seed=0)
        wall = time.perf_counter() - start
        audio = len(out["audio"]) / out["sampling_rate"]
        print(f"{len(text):>6} {wall:>7.1f} {audio:>8.1f} {wall / audio:>6.3f} {1000 * wall / len(text):>8.2f} "
              f"{len(out['chunks']):>6} {out['retries']:>7}", flush=True)
    firsts = []
    for seed in range(5):
        start = time.perf_counter()
        stream = iter(tts.stream(paragraph(1000), seed=seed))
        next(stream)
        firsts.append(time.perf_counter() - start)
        for _ in stream:
            pass
    print(f"stream: time to first audio {1000 * statistics.median(firsts):.0f} ms (median of 5, 1,000 characters)")


if __name__ == "__main__":
    main()
