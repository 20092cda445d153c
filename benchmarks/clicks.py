"""Clicks in generated speech: of the sentences `toktts evaluate` wrote, those whose waveform
jumps as no speech does (`toktts.audio.has_click`: a step over 1.0 between two samples, or over
10x the audio's own 99.9th percentile step). Evaluations since session 14 count them in their
metrics.json (`clicks_generated`, ...); this reads older ones from their audio, and names them.

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

from toktts.audio import has_click


def clicks(directory: Path, key: str = "audio_generated") -> tuple[int, list[tuple[str, float]]]:
    sentences = json.loads((directory / "metrics.json").read_text())["sentences"]
    found = []
    for sentence in sentences:
        path = Path(sentence[key])
        audio, _ = sf.read(path if path.is_absolute() or path.exists() else directory / path, dtype="float32")
        if has_click(audio):
            found.append((sentence["id"], round(float(np.abs(np.diff(audio)).max()), 2)))
    return len(sentences), found


if __name__ == "__main__":
    for arg in sys.argv[1:] or sys.exit(__doc__):
        total, found = clicks(Path(arg), os.environ.get("KEY", "audio_generated"))
        print(f"{arg}: {len(found)}/{total} sentences with a click {found}")
