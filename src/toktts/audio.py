"""Reading, resampling and writing audio files."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from toktts.errors import TokttsError


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A mono float32 waveform at `sample_rate` (any input rate and channel count).
    Raises ValueError / soundfile errors on unreadable files; callers decide how to count them."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate).astype(np.float32)
    return audio


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit PCM mono atomically: a crash never leaves a half-written file at `path`."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TokttsError(f"output directory {str(parent)!r} does not exist; create it or choose another path")
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    except OSError as e:
        raise TokttsError(f"cannot write {str(path)!r}: {e.strerror}; choose a writable location") from None
    return path
