"""Reading, resampling and writing audio files."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from toktts.errors import TokttsError
from toktts.files import write_atomic, writing


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A mono float32 waveform at `sample_rate` (any input rate and channel count).
    Raises ValueError / soundfile errors on unreadable files; callers decide how to count them."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate).astype(np.float32)
    return audio


def to_int16(audio: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> 16-bit little-endian samples, rounded. The server writes every
    lossless format from these (libsndfile's own float conversion rounds differently per
    format), so a seeded request gives the same samples in pcm, wav and flac; `say --stream`
    writes them raw."""
    return np.rint(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit PCM mono atomically: a crash or a full disk never leaves a half-written file
    at `path`, and a file already there stays as it was unless the new one is complete."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise TokttsError(f"output directory {str(parent)!r} does not exist; create it or choose another path")
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    with writing(path, "choose another output path"):
        return write_atomic(path, buffer.getvalue())
