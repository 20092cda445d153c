"""What the model reads: characters (the default) or espeak-ng phonemes (a diagnostic).

toktts reads characters: spelling-to-sound is the model's to learn. To measure how much of what a
voice gets wrong is spelling-to-sound, the same model can be trained on espeak-ng's IPA phonemes
of the same normalised text instead (`model.text_input: phonemes`); its punctuation is kept, so
the pauses the model learns from commas and periods stay:

    encode_texts(["though, tough."], "phonemes")  # the ids of "ðˈoʊ, tˈʌf."

The phoneme vocabulary is the character vocabulary (punctuation and the letters espeak-ng also
writes) followed by the other IPA symbols espeak-ng writes for en-us; a symbol outside it is
dropped with a warning. A phoneme model is trained from scratch: it cannot start from a character
voice. Phonemes need the `phonemizer` package and the espeak-ng library (`pip install
'toktts[phonemes]'`, `apt-get install espeak-ng`); characters need nothing. What espeak-ng writes
depends on its version, which a phoneme model's config.json records (`espeak_version`).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Sequence

from toktts.config import TEXT_INPUTS
from toktts.errors import TokttsError
from toktts.text import VOCAB, Vocab

__all__ = ["PHONEME_VOCAB", "encode_texts", "espeak_version", "phonemize", "text_vocab"]

log = logging.getLogger(__name__)

# Stress, length, the syllabic mark (U+0329), then the IPA letters of espeak-ng's en-us output
# beyond a-z: a character vocabulary extended, so every character keeps its id.
_IPA = "ˈˌː\u0329ɐɑɒæɔəɚɛɜɪʊʌᵻɾɹŋʃʒθðʔɡɬʲ"
PHONEME_VOCAB = Vocab(VOCAB.chars + tuple(_IPA))
_SYMBOLS = frozenset(PHONEME_VOCAB.chars[1:])  # what a phoneme text may hold (padding aside)

# Marks kept through espeak-ng (it would drop them); the hyphen and apostrophe are not among them:
# inside a word ("twenty-one", "don't") espeak-ng reads them as part of it.
_MARKS = ';:,.!?"'
_SPACES = re.compile(r"\s+")
_lock = threading.Lock()  # one espeak-ng instance per process, not safe to share between threads
_unknown: set[str] = set()  # symbols already reported as dropped


@functools.lru_cache(maxsize=1)
def _backend():
    hint = ("phoneme input (model.text_input: phonemes) needs phonemizer and espeak-ng: pip install "
            "'toktts[phonemes]' and apt-get install espeak-ng (or set PHONEMIZER_ESPEAK_LIBRARY)")
    try:
        from phonemizer.backend import EspeakBackend
        from phonemizer.separator import Separator
    except ImportError:
        raise TokttsError(hint) from None
    try:
        # Its own logger without one warning: phonemizer reports a "words count mismatch" for nearly
        # every text with punctuation kept (espeak-ng joins and splits words), once a text.
        quiet = logging.getLogger("toktts.phonemes.espeak")
        quiet.addFilter(lambda record: "words count mismatch" not in record.getMessage())
        backend = EspeakBackend("en-us", preserve_punctuation=True, with_stress=True, punctuation_marks=_MARKS,
                                logger=quiet)
    except (RuntimeError, OSError) as e:  # the espeak-ng library is missing or does not load
        raise TokttsError(f"{hint} ({e})") from None
    return backend, Separator(phone="", word=" ")


def espeak_version() -> str:
    """The version of the espeak-ng library phonemes come from, e.g. "1.51"."""
    return ".".join(map(str, _backend()[0].version()))


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
    if text_input == "chars":
        return [vocab.encode(t) for t in texts]
    out = []
    for text in texts:
        said = phonemize(text)
        unknown = set(said) - _SYMBOLS - _unknown
        if unknown:
            _unknown.update(unknown)
            log.warning("espeak-ng wrote %s, not in the phoneme vocabulary: dropped", ", ".join(sorted(map(repr, unknown))))
        out.append(vocab.encode("".join(c for c in said if c in _SYMBOLS)))
    return out
