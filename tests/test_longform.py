"""Long text, streaming and the runaway guard: chunking, window-by-window decoding and trimming
(streamed in any increments = decoded at once), and the bundled voice end to end."""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

import toktts.inference as inference
from toktts.errors import TokttsError
from toktts.inference import TTS
from toktts.longform import DEFAULT_CHUNK_CHARS, CLAUSE_PAUSE, SENTENCE_PAUSE, WORD_PAUSE, FrameDecoder, Trimmer, split_text
from toktts.text import normalize

PARAGRAPH = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity. The quick brown fox jumps over "
    "the lazy dog. Dr. Smith paid $5.50 on Jan. 3, 1999; then he left! Did he come back? Nobody knows."
)


@pytest.fixture(scope="module")
def tts():
    return TTS.from_pretrained()


# -- chunking ---------------------------------------------------------------------------------


@pytest.mark.parametrize("max_chars", [12, 40, 80, 150, 1000])
def test_chunks_fit_and_keep_every_word_in_order(max_chars):
    spoken = normalize(PARAGRAPH)
    chunks = split_text(spoken, max_chars)
    assert all(len(c.text) <= max_chars for c in chunks)
    assert " ".join(c.text for c in chunks).split() == spoken.split()
    if max_chars >= len(spoken):
        assert len(chunks) == 1


def test_cuts_prefer_sentences_then_clauses_then_words():
    text = "one two three. four five, six seven eight nine ten eleven twelve"
    chunks = split_text(text, 15)
    assert [c.text for c in chunks][:2] == ["one two three.", "four five,"]
    assert [c.pause for c in chunks][:2] == [SENTENCE_PAUSE, CLAUSE_PAUSE]
    assert chunks[2].pause == WORD_PAUSE  # cut between words
    quoted = split_text('he said "stop." then he left.', 20)
    assert [c.text for c in quoted] == ['he said "stop."', "then he left."]  # the quote stays with its sentence


def test_a_word_longer_than_a_chunk_is_cut():
    chunks = split_text("a supercalifragilistic word.", 10)
    assert [c.text for c in chunks] == ["a", "supercalif", "ragilistic", "word."]
    huge = split_text("x" * 100_000, 150)  # one chunk would be quadratic in attention
    assert len(huge) == 667 and max(len(c.text) for c in huge) == 150


def test_a_text_without_final_punctuation_gets_a_full_stop():
    assert [c.text for c in split_text("hello", 150)] == ["hello."]
    assert [c.text for c in split_text("one two three four", 9)] == ["one two", "three", "four."]
    for done in ("hello.", "hello?", 'he said "stop."', "hello,", "(see above.)"):
        assert split_text(done, 150)[-1].text == done


def test_closed_chunks_end_as_sentences_and_keep_their_pauses():
    text = 'one two three four five, six seven. "eight nine ten, eleven," he said'
    open_, closed = split_text(text, 15), split_text(text, 15, close=True)
    assert [c.text for c in open_] == ["one two three", "four five,", "six seven.", '"eight', "nine ten,", 'eleven,"', "he said."]
    assert [c.text for c in closed] == ["one two three.", "four five.", "six seven.", '"eight.', "nine ten.", 'eleven."', "he said."]
    assert [c.pause for c in closed] == [c.pause for c in open_]  # a cut between words still pauses briefly


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ab .,;!?'", min_size=1, max_size=300), max_chars=st.integers(1, 60))
def test_closed_chunks_keep_every_letter_and_end_in_a_stop(text, max_chars):
    open_, closed = split_text(text, max_chars), split_text(text, max_chars, close=True)
    assert len(closed) == len(open_)
    for o, c in zip(open_, closed):
        assert c.text.rstrip("'")[-1:] in (".", "!", "?")
        if o.text.rstrip("'")[-1:] in (".", "!", "?"):
            assert c.text == o.text
        else:  # the same letters, a stop at the end
            assert c.text.replace(".", "").rstrip(",;:'") == o.text.replace(".", "").rstrip(",;:'")
        assert c.pause == o.pause


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ab .,!?'", min_size=1, max_size=300), max_chars=st.integers(1, 60))
def test_any_text_is_cut_into_short_chunks_that_keep_every_letter(text, max_chars):
    chunks = split_text(text, max_chars)
    assert all(len(c.text) <= max_chars + 1 for c in chunks)  # + the full stop of the last one
    joined = "".join(c.text for c in chunks).replace(" ", "")
    original = text.replace(" ", "")
    assert joined in (original, original + ".")


# -- window-by-window decoding and trimming ---------------------------------------------------------


def _increments(total: int, rng: np.random.Generator) -> list[int]:
    cuts = sorted(set(rng.integers(1, total, size=12).tolist()))
    return [c for c in cuts if c < total] + [total]


def test_frame_decoder_gives_the_same_samples_in_any_increments(tts):
    codec = tts.codec
    rng = np.random.default_rng(0)
    codes = torch.from_numpy(rng.integers(0, codec.codebook_size, (codec.n_codebooks, 83)))  # (K, T)
    whole = FrameDecoder(codec).feed(codes, final=True)
    hop = codec.sample_rate // codec.frame_rate
    assert whole.shape == (83 * hop,)
    for trial in range(3):
        decoder, pieces = FrameDecoder(codec), []
        for t in _increments(83, rng):
            pieces.append(decoder.feed(codes[:, :t], final=t == 83))
        assert sum(len(p) > 0 for p in pieces) >= 2  # it did stream
        np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_trimmer_cuts_silence_the_same_way_streamed_or_whole():
    rate, frame = 16000, 160
    rng = np.random.default_rng(1)
    speech = 0.3 * np.sin(np.linspace(0, 800 * np.pi, rate)).astype(np.float32)  # 1 s tone
    audio = np.concatenate([np.zeros(rate // 2), speech, np.zeros(rate // 4), speech, np.zeros(rate)]).astype(np.float32)
    whole = Trimmer(rate, frame).feed(audio, final=True)
    # half a second of silence before and a second after are cut to the 60 ms margin
    assert abs(len(whole) - (len(audio) - rate // 2 - rate + 2 * 960)) <= 2 * frame
    assert whole[0] == 0.0 and abs(whole[-1]) < 1e-3  # faded edges
    for _ in range(3):
        trimmer, pieces, start = Trimmer(rate, frame), [], 0
        for end in _increments(len(audio), rng):
            pieces.append(trimmer.feed(audio[start:end], final=end == len(audio)))
            start = end
        np.testing.assert_array_equal(np.concatenate(pieces), whole)
    silent = Trimmer(rate, frame)
    assert len(silent.feed(np.zeros(rate, np.float32), final=True)) == 0
    assert silent.voiced_fraction == 0.0


# -- the bundled voice end to end -------------------------------------------------------------


def test_long_text_is_spoken_in_chunks_with_pauses(tts):
    out = tts(PARAGRAPH * 3, seed=0)
    chunks = out["chunks"]
    assert len(chunks) >= 4
    # every word in order; a chunk cut inside a sentence is spoken with a full stop (close_chunks)
    marks = re.compile(r"[.,;:]")
    assert marks.sub("", out["text"]).split() == marks.sub("", normalize(PARAGRAPH * 3)).split()
    assert all(len(c["text"]) <= (tts.cfg.generate.chunk_chars or DEFAULT_CHUNK_CHARS) + 1 for c in chunks)
    assert all(c["text"][-1] in ".!?" for c in chunks)
    rate = out["sampling_rate"]
    assert len(out["audio"]) / rate > 0.5 * sum(c["frames"] for c in chunks) / tts.codec.frame_rate
    assert np.abs(out["audio"]).max() <= 1.0 + 1e-6
    # no click at the joins: on both sides of every pause the chunk's edge is faded to silence
    # (a burst inside a chunk is the voice's: a frame of loud high band in ~1% of its sentences)
    audio = out["audio"]
    silent = np.concatenate([[False], audio == 0, [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))  # where runs of exact zeros start and end
    pauses = [(s, e) for s, e in zip(edges[::2], edges[1::2]) if e - s >= 0.8 * WORD_PAUSE * rate]
    assert len(pauses) == len(chunks) - 1
    for start, end in pauses:
        assert np.abs(audio[max(0, start - 24) : start]).max() < 0.01
        assert np.abs(audio[end : end + 24]).max() < 0.01


def test_a_voice_set_to_close_its_chunks_speaks_them_as_sentences(tts, monkeypatch):
    text = "these were damnatory facts which the prisoner could not explain"
    monkeypatch.setattr(tts.cfg, "generate", replace(tts.cfg.generate, chunk_chars=30, close_chunks=True))
    out = tts(text, seed=0, retries=0)
    assert [c["text"] for c in out["chunks"]] == ["these were damnatory.", "facts which the.", "prisoner could not explain."]
    assert out["text"].replace(".", "").split() == text.split()


def test_stream_yields_the_same_tokens_and_audio_as_one_call(tts):
    text = PARAGRAPH
    whole = tts(text, seed=11)
    assert whole["retries"] == 0, "pick a text the voice speaks without retries for this comparison"
    stream = tts.stream(text, seed=11)
    pieces = list(stream)
    assert len(pieces) >= 2
    assert all(p.dtype == np.float32 and p.ndim == 1 for p in pieces)
    assert len(stream.chunks) == len(whole["chunks"])
    for streamed, called in zip(stream.chunks, whole["chunks"]):
        assert torch.equal(streamed["codes"], called["codes"])
    audio = np.concatenate(pieces)
    assert len(audio) == len(whole["audio"])
    np.testing.assert_allclose(audio, whole["audio"], atol=1e-6)


def test_a_live_chunk_is_retried_only_if_none_of_it_was_heard():
    """The first chunk streams as it is generated. A take that comes out silent has given out
    nothing (the trimmer holds silence back), so it is retried as in tts(); one that runs away
    has been heard, so it is reported instead. A tiny random model runs away; the same model
    with its end-of-speech logit raised ends every take at once."""
    from helpers import mute_tts, tiny_tts

    tts = tiny_tts(max_seconds=1.0)
    whole = tts("Hello there.", seed=0, retries=1)
    stream = tts.stream("Hello there.", seed=0, retries=1)
    assert len(np.concatenate(list(stream))) > 0
    assert whole["chunks"][0]["retries"] == 1 and whole["chunks"][0]["problem"] == "ran to its length limit"
    assert stream.chunks[0]["retries"] == 0 and stream.chunks[0]["problem"] == "ran to its length limit"
    tts = mute_tts()  # a fresh one: a decoder step graph is made of the weights at first use
    whole = tts.synthesize(["Hello there."], seed=0, retries=1)[0]  # (tts(text) would raise, below)
    stream = tts.stream("Hello there.", seed=0, retries=1)
    assert list(stream) == [] and len(whole["audio"]) == 0
    for report in (whole["chunks"][0], stream.chunks[0]):
        assert report["retries"] == 1 and report["problem"] == "mostly silent (0% voiced)"
        assert report["samples"] == 0
    with pytest.raises(TokttsError, match=r"only silence for 'Hello there.' \(every take, seed 0\)"):
        tts("Hello there.", seed=0, retries=1)


def test_a_stream_ends_when_asked_to_stop(tts):
    stop = []
    stream = iter(tts.stream(PARAGRAPH * 3, seed=0, should_stop=lambda: bool(stop)))
    assert len(next(stream)) > 0
    stop.append(True)  # e.g. the listener hung up
    assert list(stream) == []  # nothing more is generated


def test_a_text_sounds_the_same_alone_or_batched_with_others(tts):
    alone = tts("The band plays on.", seed=5)
    batched = tts.synthesize(["Something else entirely, and longer.", "The band plays on.", "Hi."], seed=5)[1]
    assert torch.equal(alone["chunks"][0]["codes"], batched["chunks"][0]["codes"])
    np.testing.assert_allclose(alone["audio"], batched["audio"], atol=1e-6)


def test_runaway_chunks_are_retried_then_reported(tts, caplog):
    # A limit far too short for the text: every attempt runs to it.
    out = tts("This sentence cannot possibly fit in a third of a second.", seed=1, max_seconds=0.3, retries=2)
    chunk = out["chunks"][0]
    assert out["stop_reason"] == "max_length" and chunk["stop_reason"] == "max_length"
    assert chunk["retries"] == 2 and chunk["problem"] == "ran to its length limit"
    assert "still ran to its length limit after 2 retries" in caplog.text
    none = tts("This sentence cannot possibly fit in a third of a second.", seed=1, max_seconds=0.3, retries=0)
    assert none["chunks"][0]["retries"] == 0


def test_mostly_silent_chunks_are_retried_with_new_seeds(tts, monkeypatch):
    monkeypatch.setattr(inference, "MIN_VOICED_FRACTION", 1.01)  # now every chunk counts as silent
    seeds = []
    generate = tts.generate_tokens

    def recording(texts, seed=None, **kwargs):  # the real generation, with its seeds written down
        seeds.append(list(seed))
        return generate(texts, seed=seed, **kwargs)

    monkeypatch.setattr(tts, "generate_tokens", recording)
    out = tts("Hello there.", seed=3, retries=1)
    chunk = out["chunks"][0]
    assert chunk["retries"] == 1 and chunk["problem"].startswith("mostly silent")
    assert seeds == [[3], [3 + inference.RETRY_SEED_STRIDE]]  # generated again, with a new seed


def test_of_takes_that_all_fail_the_most_voiced_is_kept(tts, monkeypatch):
    monkeypatch.setattr(inference, "MIN_VOICED_FRACTION", 1.01)  # every take counts as silent
    kept = tts("Hello there.", seed=3, retries=2)["chunks"][0]
    takes = {s: tts("Hello there.", seed=s, retries=0)["chunks"][0]["voiced_fraction"]
             for s in (3 + i * inference.RETRY_SEED_STRIDE for i in range(3))}
    assert len(set(takes.values())) > 1, "pick a text whose takes differ in how much is voiced"
    assert kept["retries"] == 2 and kept["voiced_fraction"] == max(takes.values())
    assert kept["seed"] == max(takes, key=takes.get)


def test_verify_transcribes_each_chunk(tts):
    out = tts("Hello there.", seed=0, verify=True, retries=1)
    chunk = out["chunks"][0]
    assert chunk["cer"] is not None and chunk["cer"] >= 0.0
    # retried exactly when the first transcript missed too much
    first = tts("Hello there.", seed=0, verify=True, retries=0)["chunks"][0]
    assert chunk["retries"] == (1 if first["cer"] > inference.VERIFY_MAX_CER else 0)


def test_best_of_keeps_the_take_the_asr_hears_best(tts):
    """N takes (seeds s, s + stride, ...) in one batch; the kept one is the take with the lowest
    CER among them, each take being what tts() gives for its seed alone."""
    text = "The quick brown fox jumps over the lazy dog."
    out = tts(text, seed=4, best_of=3, retries=0)
    chunk = out["chunks"][0]
    takes = [tts(text, seed=4 + j * inference.RETRY_SEED_STRIDE, verify=True, retries=0)["chunks"][0]
             for j in range(3)]
    best = min(takes, key=lambda t: (t["stop_reason"] != "eos", t["cer"]))
    assert chunk["cer"] == best["cer"] and chunk["seed"] == best["seed"]
    assert torch.equal(chunk["codes"], best["codes"])
    # the stream gives the same audio
    streamed = np.concatenate(list(tts.stream(text, seed=4, best_of=3, retries=0)))
    np.testing.assert_allclose(streamed, out["audio"], atol=1e-6)


# -- the CLI ------------------------------------------------------------------------------------


def test_say_streams_raw_pcm_to_stdout(tts):
    proc = subprocess.run(
        [sys.executable, "-m", "toktts.cli", "say", "Hello there. How are you today?", "--stream", "--seed", "2"],
        capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    pcm = np.frombuffer(proc.stdout, dtype="<i2")
    whole = tts("Hello there. How are you today?", seed=2)["audio"]
    assert len(pcm) == len(whole)
    assert np.abs(pcm.astype(np.float32) / 32767 - whole).max() < 2e-4


def test_say_reads_a_long_text_from_a_file_or_stdin(tmp_path):
    text_file = tmp_path / "long.txt"
    text_file.write_text(PARAGRAPH)
    out = tmp_path / "long.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "toktts.cli", "say", "--text-file", str(text_file), "-o", str(out), "--seed", "0"],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "chunks" in proc.stdout and out.stat().st_size > 44
    proc = subprocess.run(
        [sys.executable, "-m", "toktts.cli", "say", "-", "-o", str(tmp_path / "stdin.wav")],
        input="Read from standard input.", capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "stdin.wav").stat().st_size > 44
