"""Reading, resampling and writing audio files."""
from __future__ import annotations

import io
import os
import stat
import struct
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


LIMIT_KNEE, LIMIT_CEILING = 0.9, 0.99  # `limit` passes samples below the knee, keeps all within the ceiling


def limit(audio: np.ndarray) -> np.ndarray:
    """A soft limiter: samples within +-LIMIT_KNEE pass unchanged, louder ones bend smoothly
    toward LIMIT_CEILING, so that a decoder's overshoot is never clipped flat at full scale. It
    works sample by sample, so streamed pieces come out as the whole would."""
    audio = np.asarray(audio, dtype=np.float32)
    loud = np.abs(audio) > LIMIT_KNEE
    if not loud.any():
        return audio
    out = audio.copy()
    head = LIMIT_CEILING - LIMIT_KNEE
    x = np.abs(audio[loud]) - LIMIT_KNEE
    out[loud] = np.sign(audio[loud]) * (LIMIT_KNEE + head * np.tanh(x / head))
    return out


CLICK_JUMP = 1.0  # a step between two samples over this (half of full scale's range) is a click ...
CLICK_RATIO = 10.0  # ... and so is one over 10x the audio's own 99.9th percentile step


def has_click(audio: np.ndarray) -> bool:
    """Whether a waveform jumps as no speech does: a step from one sample to the next over
    CLICK_JUMP, or over CLICK_RATIO x its own 99.9th percentile step (+ 0.001, for near
    silence). What a lone loud codec frame turns into after Griffin-Lim; recordings have none."""
    steps = np.abs(np.diff(np.asarray(audio, dtype=np.float32)))
    if not steps.size:
        return False
    top = float(steps.max())
    return top > CLICK_JUMP or top > CLICK_RATIO * float(np.percentile(steps, 99.9)) + 1e-3


def to_int16(audio: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> 16-bit little-endian samples, rounded. The server writes every
    lossless format from these (libsndfile's own float conversion rounds differently per
    format), so a seeded request gives the same samples in pcm, wav and flac; `say --stream`
    writes them raw."""
    return np.rint(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")


SPEED_RANGE = (0.25, 4.0)
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
# File extensions and the formats they choose (`pcm`: raw 16-bit little-endian mono).
EXTENSIONS = {".wav": "wav", ".flac": "flac", ".mp3": "mp3", ".ogg": "opus", ".opus": "opus", ".pcm": "pcm",
              ".raw": "pcm"}
# libsndfile's (container, subtype) per format; mp3 and Ogg/Opus need libsndfile >= 1.1.
_SOUNDFILE = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"),
              "opus": ("OGG", "OPUS")}
# The sampling rates the encoders take; anything else is resampled to 48 kHz first.
_RATES = {"mp3": {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000},
          "opus": {8000, 12000, 16000, 24000, 48000}}


def supported_formats() -> list[str]:
    """The formats this install can write, in OpenAI's order."""
    have = sf.available_formats()
    ok = {"wav", "pcm"}
    if "FLAC" in have:
        ok.add("flac")
    if "MP3" in have:
        ok.add("mp3")
    if "OGG" in have and "OPUS" in sf.available_subtypes("OGG"):
        ok.add("opus")
    return [f for f in MEDIA_TYPES if f in ok]


def pcm16(audio: np.ndarray) -> bytes:
    return to_int16(audio).tobytes()


def wav_stream_header(sample_rate: int) -> bytes:
    """A 44-byte PCM WAV header for a stream of unknown length: the RIFF and data sizes are
    0xFFFFFFFF, which readers (libsndfile, ffmpeg, browsers) take as "read to the end"."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)  # PCM, mono, 16-bit
    return b"RIFF" + struct.pack("<I", unknown) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt \
        + b"data" + struct.pack("<I", unknown)


def encode(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A whole utterance in one format (see `supported_formats`)."""
    if fmt == "pcm":
        return pcm16(audio)
    if fmt in _RATES and sample_rate not in _RATES[fmt]:
        audio, sample_rate = soxr.resample(audio, sample_rate, 48000), 48000
    container, subtype = _SOUNDFILE[fmt]
    samples = to_int16(audio) if subtype == "PCM_16" else np.clip(audio, -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


def change_speed(audio: np.ndarray, speed: float) -> np.ndarray:
    """Faster (> 1) or slower (< 1) speech at the same pitch (phase-vocoder time stretch)."""
    if speed == 1.0:
        return audio
    import librosa

    return librosa.effects.time_stretch(audio, rate=speed).astype(np.float32)


def output_format(path: str | Path, fmt: str | None = None) -> str:
    """The format to write `path` in: `fmt` if given, else the extension's, else wav (e.g.
    /dev/stdout). An unknown extension, a format this install cannot write, or an extension
    that says another format than `fmt` is a TokttsError."""
    suffix = Path(path).suffix.lower()
    from_name = EXTENSIONS.get(suffix)
    formats = supported_formats()
    if fmt is not None and fmt not in formats:
        raise TokttsError(f"format {fmt!r} cannot be written here; use one of: {', '.join(formats)}")
    if suffix and from_name is None and fmt is None:
        known = ", ".join(EXTENSIONS)
        raise TokttsError(f"output {str(path)!r} has the unknown extension {suffix!r}; use one of {known} "
                          "(or give --format)")
    if fmt is not None and from_name is not None and from_name != fmt:
        raise TokttsError(f"output {str(path)!r} ends in {suffix} but the format asked for is {fmt}; "
                          "make them agree")
    chosen = fmt or from_name or "wav"
    if chosen not in formats:
        raise TokttsError(f"this install cannot write {chosen} (libsndfile lacks it); use one of: {', '.join(formats)}")
    return chosen


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, fmt: str | None = None) -> Path:
    """Write mono audio to `path` in `fmt` (default: from the extension, see `output_format`).

    A regular file is written atomically: a crash or a full disk never leaves a half-written
    file at `path`, and a file already there stays as it was unless the new one is complete.
    A symlink is followed (the file it names is replaced, not the link). A FIFO or a character
    device (/dev/stdout) is written through, as it is."""
    if not str(path).strip():
        raise TokttsError("the output path is empty; give a file name, e.g. -o out.wav")
    path = Path(path)
    fmt = output_format(path, fmt)
    if path.is_dir():
        raise TokttsError(f"output {str(path)!r} is a directory; give a file name inside it")
    data = encode(audio, sample_rate, fmt)
    with writing(path, "choose another output path"):
        if is_stream(path):  # a FIFO, /dev/stdout (a pipe or a terminal), /dev/null ...
            with open(path, "wb") as f:
                f.write(data)
            return path
        target = Path(os.path.realpath(path))  # a symlink: replace the file it names, not the link
        if not target.parent.exists():
            raise TokttsError(f"output directory {str(path.parent)!r} does not exist; create it or choose "
                              "another path")
        write_atomic(target, data)
    return path


def is_stream(path: str | Path) -> bool:
    """Whether `path` (symlinks followed, /dev/stdout included) is something other than a
    regular file or a directory: written through as it is, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV (see `write_audio`)."""
    return write_audio(path, audio, sample_rate, "wav")
