"""Where in a sentence the words are lost: for each `toktts evaluate` output given, the share of
the text's words that the ASR transcript matches (longest matching blocks, difflib), by where the
word stands in its sentence (fifths). A model that drifts on its own past starts right and loses
the words further on; teacher-forced speech (the true past) stays level.

    python benchmarks/drift.py runs/v5/eval/metrics.json runs/v5/eval-T0.3/metrics.json
"""
from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

KINDS = ("generated", "teacher_forced", "reference")
PARTS = 5


def matched_by_part(text: str, heard: str) -> list[tuple[int, int]]:
    """(words matched, words) in each fifth of `text`'s words."""
    words, got = text.split(), heard.split()
    matched = set()
    for block in difflib.SequenceMatcher(a=words, b=got, autojunk=False).get_matching_blocks():
        matched.update(range(block.a, block.a + block.size))
    counts = [[0, 0] for _ in range(PARTS)]
    for i in range(len(words)):
        part = counts[i * PARTS // len(words)]
        part[0] += i in matched
        part[1] += 1
    return [tuple(c) for c in counts]


def table(path: Path) -> list[str]:
    sentences = json.loads(path.read_text())["sentences"]
    lines = []
    for kind in KINDS:
        totals = [[0, 0] for _ in range(PARTS)]
        for s in sentences:
            for total, (hit, n) in zip(totals, matched_by_part(s["scored_text"], s[f"scored_{kind}"])):
                total[0] += hit
                total[1] += n
        cells = [f"{hit / max(n, 1):.0%}" for hit, n in totals]
        lines.append(f"| {path.parent.name} | {kind} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    print("| evaluation | audio | " + " | ".join(f"words {i + 1}/{PARTS}" for i in range(PARTS)) + " |")
    print("|---|---|" + "---|" * PARTS)
    for arg in sys.argv[1:]:
        print("\n".join(table(Path(arg))))
