"""What the model reads: characters (always, by default) or espeak-ng phonemes (a diagnostic).

toktts reads characters: spelling-to-sound is the model's to learn. To measure how much of what a
voice gets wrong is spelling-to-sound, the same model can be trained on espeak-ng's IPA phonemes
of the same normalised text instead (`model.text_input: phonemes`); its punctuation is kept, so
the pauses the model learns from commas and periods stay:

    encode_texts(["though, tough."], "phonemes")  # the ids of "ðˈoʊ, tˈʌf."

The phoneme vocabulary is the character vocabulary followed by the IPA symbols espeak-ng writes
for en-us, so a character keeps its id. Phonemes need the `phonemizer` package and the espeak-ng
library (`pip install 'toktts[phonemes]'`, `apt-get install espeak-ng`); characters need nothing.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence

from toktts.errors import TokttsError
from toktts.text import VOCAB, Vocab

__all__ = ["PHONEME_VOCAB", "TEXT_INPUTS", "encode_texts", "phonemize", "text_vocab"]

TEXT_INPUTS = ("chars", "phonemes")

# Stress, length, the syllabic mark (U+0329), then the IPA letters of espeak-ng's en-us output
# beyond a-z: a character vocabulary extended, so every character keeps its id.
_IPA = "ˈˌː\u0329ɐɑɒæɔəɚɛɜɪʊʌᵻɾɹŋʃʒθðʔɡɬʲ"
PHONEME_VOCAB = Vocab(VOCAB.chars + tuple(_IPA))

# Marks kept through espeak-ng (it would drop them); the hyphen and apostrophe are not among them:
# inside a word ("twenty-one", "don't") espeak-ng reads them as part of it.
_MARKS = ';:,.!?"'
_SPACES = re.compile(r"\s+")
_lock = threading.Lock()  # one espeak-ng instance per process, not safe to share between threads


@functools.lru_cache(maxsize=1)
def _backend():
    hint = "phoneme input needs phonemizer and espeak-ng: pip install 'toktts[phonemes]' and apt-get install espeak-ng"
    try:
        from phonemizer.backend import EspeakBackend
        from phonemizer.separator import Separator
    except ImportError:
        raise TokttsError(hint) from None
    try:
        backend = EspeakBackend("en-us", preserve_punctuation=True, with_stress=True, punctuation_marks=_MARKS)
    except RuntimeError as e:  # the espeak-ng library is not installed
        raise TokttsError(f"{hint} ({e})") from None
    return backend, Separator(phone="", word=" ")


@functools.lru_cache(maxsize=65536)
def phonemize(text: str) -> str:
    """espeak-ng's en-us IPA of one normalised text, stress marked, punctuation kept, single
    spaces. One text a call: phonemizer drops empty lines from a list and shifts the rest."""
    if not text.strip():
        return ""
    backend, separator = _backend()
    with _lock:
        (out,) = backend.phonemize([text], separator=separator, strip=True)
    return _SPACES.sub(" ", out).strip()


def text_vocab(text_input: str) -> Vocab:
    """The vocabulary of a model that reads `text_input` ("chars" or "phonemes")."""
    if text_input not in TEXT_INPUTS:
        raise TokttsError(f"model.text_input must be one of {', '.join(TEXT_INPUTS)}, got {text_input!r}")
    return PHONEME_VOCAB if text_input == "phonemes" else VOCAB


def encode_texts(texts: Sequence[str], text_input: str) -> list[list[int]]:
    """Normalised texts -> the ids the model reads, one list per text."""
    vocab = text_vocab(text_input)
    if text_input == "phonemes":
        texts = [phonemize(t) for t in texts]
    return [vocab.encode(t) for t in texts]
