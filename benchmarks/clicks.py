"""Clicks in generated speech: of the sentences `toktts evaluate` wrote, those whose waveform
jumps by more than 1.0 from one sample to the next, or by more than 10x its own 99.9th
percentile step (a burst no recording has: one frame of loud high band from the codes sampled).

    python benchmarks/clicks.py runs/v11-int8-close/eval-c60 [more evaluation directories]
    KEY=audio_resynthesized python benchmarks/clicks.py ...   # the recordings through the codec
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def clicks(directory: Path, key: str = "audio_generated") -> tuple[int, list[tuple[str, float]]]:
    sentences = json.loads((directory / "metrics.json").read_text())["sentences"]
    found = []
    for sentence in sentences:
        path = Path(sentence[key])
        audio, _ = sf.read(path if path.is_absolute() or path.exists() else directory / path, dtype="float32")
        steps = np.abs(np.diff(audio))
        if steps.size and (steps.max() > 1.0 or steps.max() > 10 * np.percentile(steps, 99.9) + 1e-3):
            found.append((sentence["id"], round(float(steps.max()), 2)))
    return len(sentences), found


if __name__ == "__main__":
    for arg in sys.argv[1:] or sys.exit(__doc__):
        total, found = clicks(Path(arg), os.environ.get("KEY", "audio_generated"))
        print(f"{arg}: {len(found)}/{total} sentences with a click {found}")
