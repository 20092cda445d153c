"""Audio files: the format an output path asks for, and writing it safely (atomically, through
FIFOs and devices, along symlinks)."""
from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest
import soundfile as sf

from toktts.audio import EXTENSIONS, has_click, output_format, supported_formats, write_audio
from toktts.errors import TokttsError

RATE = 24000
TONE = (0.5 * np.sin(2 * np.pi * 220 * np.arange(RATE // 2) / RATE)).astype(np.float32)


def test_a_click_is_a_jump_no_speech_makes():
    assert not has_click(TONE) and not has_click(np.zeros(100)) and not has_click(np.zeros(0))
    burst = TONE.copy()
    burst[5000:5003] = [0.9, -0.9, 0.9]  # a few samples of full-scale alternation
    assert has_click(burst)
    quiet = 0.01 * TONE
    quiet[3000] += 0.05  # small, but ten times any step the quiet tone takes
    assert has_click(quiet) and not has_click(0.01 * TONE)


@pytest.mark.parametrize("suffix", sorted(EXTENSIONS))
def test_the_extension_chooses_the_format(suffix, tmp_path):
    fmt = EXTENSIONS[suffix]
    if fmt not in supported_formats():
        pytest.skip(f"this libsndfile cannot write {fmt}")
    path = write_audio(tmp_path / f"x{suffix.upper()}", TONE, RATE)  # case does not matter
    if fmt == "pcm":
        samples = np.frombuffer(path.read_bytes(), "<i2")
        assert len(samples) == len(TONE)
        return
    audio, rate = sf.read(str(path), dtype="float32")
    expected = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "opus": "OGG"}[fmt]
    assert sf.info(str(path)).format == expected
    assert abs(len(audio) / rate - len(TONE) / RATE) < 0.05


def test_format_choice_and_refusals(tmp_path):
    assert output_format("out") == "wav" and output_format("/dev/stdout", "flac") == "flac"
    assert output_format("a.ogg") == "opus" and output_format("a.wav", "wav") == "wav"
    with pytest.raises(TokttsError, match=r"unknown extension '.xyz'.*\.wav"):
        output_format("a.xyz")
    with pytest.raises(TokttsError, match="ends in .mp3 but the format asked for is wav"):
        output_format("a.mp3", "wav")
    with pytest.raises(TokttsError, match="format 'aac' cannot be written here"):
        output_format("a", "aac")
    for bad, words in (("", "empty"), ("  ", "empty"), (tmp_path, "is a directory"),
                       (tmp_path / "no" / "x.wav", "does not exist")):
        with pytest.raises(TokttsError, match=words):
            write_audio(bad, TONE, RATE)
    assert os.listdir(tmp_path) == []  # nothing half-written anywhere


def test_a_file_is_replaced_whole_and_no_temporary_file_stays(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(b"old")
    write_audio(path, TONE, RATE)
    assert sf.info(str(path)).frames == len(TONE)
    assert os.listdir(tmp_path) == ["x.wav"]


def test_a_symlink_is_followed_not_replaced(tmp_path):
    target, link = tmp_path / "real.wav", tmp_path / "link.wav"
    target.write_bytes(b"old")
    link.symlink_to(target)
    write_audio(link, TONE, RATE)
    assert link.is_symlink() and sf.info(str(target)).frames == len(TONE)
    devnull = tmp_path / "null.wav"
    devnull.symlink_to("/dev/null")
    write_audio(devnull, TONE, RATE)  # through the link into the device, which stays a device
    assert devnull.is_symlink() and os.path.realpath(devnull) == "/dev/null"


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    write_audio(fifo, TONE, RATE, "wav")
    reader.join(10)
    assert sf.read(io.BytesIO(got[0]))[0].shape == TONE.shape
    assert fifo.is_fifo()  # not replaced by a regular file


def test_the_limiter_bends_peaks_below_full_scale_and_leaves_the_rest():
    from toktts.audio import LIMIT_CEILING, LIMIT_KNEE, limit, to_int16

    x = np.linspace(-3, 3, 10001, dtype=np.float32)
    y = limit(x)
    quiet = np.abs(x) <= LIMIT_KNEE
    np.testing.assert_array_equal(y[quiet], x[quiet])
    assert np.abs(y).max() <= LIMIT_CEILING and np.all(np.diff(y) >= 0)  # up to the ceiling, still monotonic
    assert np.abs(to_int16(y)).max() < 32767  # nothing at full scale
    pieces = np.concatenate([limit(p) for p in np.array_split(x, 7)])
    np.testing.assert_array_equal(pieces, y)  # sample by sample: streamed = whole
