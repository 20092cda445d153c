"""Phoneme input (the spelling-to-sound diagnostic): espeak-ng's IPA through the same model."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from toktts.config import load_config
from toktts.errors import TokttsError
from toktts import phonemes
from toktts.phonemes import PHONEME_VOCAB, encode_texts, espeak_version, phonemize, text_vocab
from toktts.text import VOCAB, normalize

from helpers import DEMO, tiny_overrides


def test_phoneme_vocabulary_extends_the_characters():
    assert PHONEME_VOCAB.chars[: len(VOCAB)] == VOCAB.chars  # a character keeps its id
    assert len(set(PHONEME_VOCAB.chars)) == len(PHONEME_VOCAB) > len(VOCAB)
    assert text_vocab("chars") is VOCAB and text_vocab("phonemes") is PHONEME_VOCAB
    with pytest.raises(TokttsError, match="'ipa'"):
        text_vocab("ipa")


def test_phonemes_say_how_a_spelling_sounds():
    # The same letters, other sounds, and other letters, the same sounds: what characters leave
    # the model to learn.
    assert phonemize("though") != phonemize("tough")
    assert phonemize("rough")[-1] == phonemize("tough")[-1] == "f"
    assert phonemize("knight") == phonemize("night")


def test_punctuation_is_kept_and_empty_texts_keep_their_place():
    said = phonemize('well, "yes": no; maybe! why? so.')
    assert [c for c in said if c in ',":;!?.'] == list(',"":;!?.')
    # each text keeps its place (phonemizer itself drops empty texts from a batch and shifts the rest)
    ids = encode_texts(["", "a", "  "], "phonemes")
    assert ids[0] == [] and ids[2] == [] and PHONEME_VOCAB.decode(ids[1]) == phonemize("a") != ""
    assert encode_texts(["a b."], "chars") == [VOCAB.encode("a b.")]


def test_phonemizing_logs_no_word_count_warnings(caplog):
    # phonemizer warned once a text ("words count mismatch") for most texts with punctuation:
    # 13,162 lines at the start of a phoneme model's training
    with caplog.at_level("WARNING"):
        encode_texts(["of the, said he: in a week.", "it is, as they say, a test of the logs."], "phonemes")
    assert not [r for r in caplog.records if "mismatch" in r.getMessage()]


def test_normalize_shows_the_phonemes_a_phoneme_model_reads():
    from helpers import toktts_here

    out = toktts_here("normalize", "--phonemes", "Dr. Smith's 2 knights.").stdout.strip()
    assert out == phonemize("doctor smith's two knights.") and "k" not in out.split()[-1]  # knights: no k


def test_every_symbol_espeak_writes_for_the_validation_sentences_is_in_the_vocabulary():
    from toktts.corpus import packaged_transcripts

    texts = [normalize(t) for _, t in packaged_transcripts("val")]
    said = "".join(phonemize(t) for t in texts)
    assert set(said) <= set(PHONEME_VOCAB.chars[1:]), sorted(set(said) - set(PHONEME_VOCAB.chars))
    assert all(len(ids) > 0 for ids in encode_texts(texts, "phonemes"))


def test_without_phonemizer_phonemes_are_one_line_saying_what_to_install(monkeypatch):
    phonemes._backend.cache_clear()
    monkeypatch.setitem(sys.modules, "phonemizer.backend", None)  # as if it were not installed
    try:
        with pytest.raises(TokttsError, match=r"pip install 'toktts\[phonemes\]' and apt-get install espeak-ng") as e:
            encode_texts(["a word never phonemized before"], "phonemes")
        assert "\n" not in str(e.value)
    finally:
        phonemes._backend.cache_clear()


@pytest.mark.slow
def test_a_model_trained_on_phonemes_reads_phonemes_at_synthesis(corpus, tmp_path):
    from toktts.data import TokenDataset, prepare
    from toktts.inference import TTS
    from toktts.train import train

    out = tmp_path / "ph"
    cfg = load_config([DEMO], tiny_overrides(corpus, out, **{"model.text_input": "phonemes", "train.max_steps": 2}))
    root = prepare(cfg, progress=False)  # the token cache holds text, not ids: shared with character models
    data = TokenDataset(root, "train", "phonemes")
    assert PHONEME_VOCAB.decode(data.text_ids[0]) == phonemize(data.texts[0])  # what training reads
    train(cfg, progress=False)
    meta = json.loads((out / "config.json").read_text())
    assert meta["model"]["text_input"] == "phonemes" and meta["text_vocab"] == list(PHONEME_VOCAB.chars)
    assert meta["espeak_version"] == espeak_version()

    tts = TTS.from_pretrained(out)
    assert tts.model.state_dict()["encoder.embed.weight"].shape[0] == len(PHONEME_VOCAB)
    text, lengths = tts._text_batch(["though, tough."])
    assert PHONEME_VOCAB.decode(text[0, : lengths[0]].tolist()) == phonemize("though, tough.")
    result = tts("Though, tough.", seed=0)
    assert result["audio"].size > 0 and torch.isfinite(torch.as_tensor(result["audio"])).all()

    meta["text_vocab"] = list(VOCAB.chars)  # a phoneme model's config naming the character vocabulary
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(TokttsError, match="another text vocabulary"):
        TTS.from_pretrained(out)
