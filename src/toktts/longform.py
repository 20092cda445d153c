"""Long text and streaming: split text into chunks the model speaks well, turn each chunk's codes
into audio window by window, and join the chunks with pauses.

The model is trained on single utterances (a few seconds, rarely over ~150 characters), and its
alignment degrades beyond what it has seen. So text of any length is spoken as a sequence of
chunks of at most `max_chars` characters (chosen from the training texts' lengths), cut at
sentence ends, then at clause marks, then between words.

Decoding goes through `FrameDecoder` and `Trimmer` in both the whole-chunk and the streaming
path. Both see the same windows of frames and make the same trimming decisions, so a streamed
chunk comes out sample for sample as the same chunk synthesized at once:

    codes (K, T) --FrameDecoder: windows of W frames, decoded with C frames of context on each
    side, crossfaded at the seams--> samples --Trimmer: leading/trailing silence cut (keeping
    a margin), edges faded--> chunk audio, then a pause that depends on the punctuation (or
    that an SSML <break>, <s> or <p> asks for: toktts.ssml).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_CHUNK_CHARS = 150  # for models saved before training recorded their texts' lengths
SENTENCE_PAUSE = 0.30  # seconds of silence after a chunk that ends a sentence (. ! ?)
CLAUSE_PAUSE = 0.15  # after a clause mark (, ; :)
WORD_PAUSE = 0.05  # after a chunk cut between words (no punctuation to pause on)

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")
_ENDS_CLAUSE = re.compile(r"[.!?,;:][\"')\]]*$")
_ENDS_SENTENCE = re.compile(r"[.!?][\"')\]]*$")
_OPEN_END = re.compile(r"[,;:]?([\"')\]]*)$")  # a clause mark or none, before closing quotes


@dataclass(frozen=True)
class Chunk:
    text: str  # normalised text to speak
    pause: float  # seconds of silence after it, unless it is the last


def chunk_chars_for(texts: list[str]) -> int:
    """The chunk length for a model trained on `texts`: their 75th-percentile length, so a chunk
    is never longer than most of what the model has learned to align."""
    return max(1, int(np.percentile([len(t) for t in texts], 75))) if texts else DEFAULT_CHUNK_CHARS


def pause_after(text: str) -> float:
    end = text.rstrip("\"' ")[-1:]
    if end and end in ".!?":
        return SENTENCE_PAUSE
    if end and end in ",;:":
        return CLAUSE_PAUSE
    return WORD_PAUSE


def split_text(text: str, max_chars: int, close: bool = False) -> list[Chunk]:
    """Cut normalised `text` into chunks of at most `max_chars` characters (a chunk may get one
    more: see below), packing whole
    sentences together while they fit; a word longer than a chunk is cut too, so that the cost
    of any text grows linearly with its length. A text that ends without punctuation gets a
    full stop: the training transcripts end in one, and without it the model reads a short text
    ("hello") as one that goes on and does not stop. With `close`, so does every chunk cut
    inside a sentence (a clause mark it ends with becomes the full stop), for the same reason;
    its pause stays the one its own ending asks for."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for clause in _CLAUSE_END.split(sentence):
            pieces.extend([clause] if len(clause) <= max_chars else _split_words(clause, max_chars))
    chunks: list[str] = []
    for piece in filter(None, (p.strip() for p in pieces)):
        # Fewer, longer chunks read more naturally: the model pauses at punctuation inside one.
        if chunks and len(chunks[-1]) + 1 + len(piece) <= max_chars:
            chunks[-1] += " " + piece
        else:
            chunks.append(piece)
    if chunks and not _ENDS_CLAUSE.search(chunks[-1]):
        chunks[-1] += "."  # one character over max_chars at most
    return [Chunk(_closed(c) if close else c, pause_after(c)) for c in chunks]


def _closed(chunk: str) -> str:
    """The chunk as spoken when it must end like a sentence: "was cut in," -> "was cut in."."""
    if _ENDS_SENTENCE.search(chunk):
        return chunk
    return _OPEN_END.sub(r".\1", chunk, count=1)


def _split_words(text: str, max_chars: int) -> list[str]:
    """Cut at spaces into the fewest pieces of at most max_chars, of about equal length; a word
    longer than max_chars is first cut into pieces of max_chars."""
    words = [w[i : i + max_chars] for w in text.split() for i in range(0, len(w), max_chars)]
    text = " ".join(words)
    n_pieces = -(-len(text) // max_chars)
    while True:
        target = -(-len(text) // n_pieces)
        pieces, current = [], ""
        for w in words:
            if current and len(current) + 1 + len(w) > target and len(pieces) < n_pieces - 1:
                pieces.append(current)
                current = w
            else:
                current = f"{current} {w}" if current else w
        pieces.append(current)
        if all(len(p) <= max_chars for p in pieces) or n_pieces >= len(words):
            return pieces
        n_pieces += 1


class FrameDecoder:
    """Decodes one chunk's codes window by window as frames arrive.

    Window w covers frames [w*W, (w+1)*W) and is decoded from C frames before to C frames after
    it, so the codec sees context on both sides (Griffin-Lim and convolutional decoders smear
    over a few frames). Neighbouring windows overlap by `fade` samples around each seam and are
    crossfaded there. A window is decoded once its right context has been generated (or the
    chunk has ended), always over the same frames, so feeding frames in any increments gives
    the same samples as feeding them all at once."""

    def __init__(self, codec, window_seconds: float = 1.0, context_seconds: float = 0.2, fade_seconds: float = 0.02):
        self.codec = codec
        self.hop = codec.sample_rate // codec.frame_rate
        self.window = max(1, round(window_seconds * codec.frame_rate))
        self.context = max(1, round(context_seconds * codec.frame_rate))
        # The seam's crossfade lies inside both windows' context and within one frame.
        self.half_fade = min(round(fade_seconds * codec.sample_rate) // 2, self.hop // 2)
        self.start = 0  # first frame of the next window
        self.tail = np.zeros(0, np.float32)  # the last window's faded-out overlap, not yet emitted

    def feed(self, codes: torch.Tensor, final: bool) -> np.ndarray:
        """(K, T) all the chunk's codes so far (T grows between calls) -> the new samples that are
        final. With `final`, T is the chunk's length and everything left comes out."""
        T = codes.shape[1]
        out = []
        while self.start < T:
            end = min(self.start + self.window, T)
            if not final and T < self.start + self.window + self.context:
                break  # this window, or its right context, is not generated yet
            out.append(self._window(codes, self.start, end, T if final else None))
            self.start = end
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _window(self, codes: torch.Tensor, start: int, end: int, total: int | None) -> np.ndarray:
        lo, hi = max(0, start - self.context), end + self.context
        if total is not None:
            hi = min(hi, total)
        with torch.inference_mode():
            audio = self.codec.decode(codes[None, :, lo:hi])[0].float().cpu().numpy()  # (samples,)
        hop, f = self.hop, self.half_fade
        last = total is not None and end == total
        a = (start - lo) * hop - (f if start > 0 else 0)  # this window's samples, seams widened by f
        b = (end - lo) * hop + (0 if last else f)
        piece = audio[a:b].astype(np.float32)
        if start > 0:  # crossfade the seam with the previous window's tail
            ramp = np.linspace(0.0, 1.0, 2 * f, endpoint=False, dtype=np.float32)
            piece[: 2 * f] = piece[: 2 * f] * ramp + self.tail
        if last:
            self.tail = np.zeros(0, np.float32)
            return piece
        ramp = np.linspace(1.0, 0.0, 2 * f, endpoint=False, dtype=np.float32)
        self.tail = piece[len(piece) - 2 * f :] * ramp
        return piece[: len(piece) - 2 * f]


class Trimmer:
    """Cuts a chunk's leading and trailing silence as its samples stream in, keeping `margin`
    seconds next to the speech and fading the cut edges, and counts voiced frames.

    Decisions are made on fixed analysis frames counted from the chunk's first sample, and
    samples are held back only while they might still be cut, so streaming and whole-chunk
    trimming give the same output."""

    def __init__(
        self, sample_rate: int, frame: int, threshold: float = 0.01, margin_seconds: float = 0.06,
        fade_seconds: float = 0.01,
    ):
        self.frame, self.threshold = frame, threshold
        self.margin = max(1, round(margin_seconds * sample_rate / frame))  # in analysis frames
        self.fade = min(round(fade_seconds * sample_rate), frame)
        self.buffer = np.zeros(0, np.float32)  # samples not emitted yet, from `offset` on
        self.offset = 0  # chunk position of buffer[0]
        self.analysed = 0  # analysis frames looked at
        self.voiced_frames = 0
        self.last_voiced = -1  # last voiced analysis frame
        self.started = False

    @property
    def voiced_fraction(self) -> float:
        return self.voiced_frames / max(1, self.analysed)

    def feed(self, samples: np.ndarray, final: bool) -> np.ndarray:
        self.buffer = np.concatenate([self.buffer, samples])
        end = self.offset + len(self.buffer)  # chunk position after the last sample so far
        first_voiced = None
        while (self.analysed + 1) * self.frame <= end:
            a = self.analysed * self.frame - self.offset
            rms = float(np.sqrt(np.mean(self.buffer[a : a + self.frame] ** 2)))
            if rms > self.threshold:
                self.voiced_frames += 1
                self.last_voiced = self.analysed
                if first_voiced is None and not self.started:
                    first_voiced = self.analysed
            self.analysed += 1
        out = np.zeros(0, np.float32)
        if not self.started and first_voiced is not None:
            begin = max(0, first_voiced - self.margin) * self.frame
            self.buffer = self.buffer[begin - self.offset :].copy()
            self.offset = begin
            ramp = np.linspace(0.0, 1.0, self.fade, endpoint=False, dtype=np.float32)
            self.buffer[: self.fade] *= ramp[: len(self.buffer)]
            self.started = True
        if not self.started:
            if final:
                self.buffer = self.buffer[:0]  # all silence: nothing to say
            else:  # keep only the margin's worth of silence that may precede the speech
                keep = max(0, self.analysed - self.margin) * self.frame
                if keep > self.offset:
                    self.buffer, self.offset = self.buffer[keep - self.offset :], keep
            return out
        if final:
            stop = min(end, (self.last_voiced + 1 + self.margin) * self.frame)
            out = self.buffer[: stop - self.offset].copy()
            ramp = np.linspace(1.0, 0.0, self.fade, endpoint=False, dtype=np.float32)
            n = min(self.fade, len(out))
            out[len(out) - n :] *= ramp[self.fade - n :]
            self.buffer, self.offset = self.buffer[:0], end
            return out
        # Up to the end of the last voiced frame nothing can be cut any more; keep back `fade`
        # samples so the final fade-out never reaches into audio already sent.
        safe = (self.last_voiced + 1) * self.frame - self.fade
        if safe > self.offset:
            out = self.buffer[: safe - self.offset]
            self.buffer, self.offset = self.buffer[safe - self.offset :], safe
        return out
