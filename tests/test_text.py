"""Tests for toktts.text: the cases in data/normalize_cases.tsv, properties that must hold for any
text (no digit out, only vocabulary characters, idempotent, never raises), bad inputs, speed on
large inputs, and the character vocabulary."""

from __future__ import annotations

import logging
import string
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toktts.errors import TokttsError
from toktts.text import PUNCTUATION, VOCAB, Vocab, normalize

CASES_FILE = Path(__file__).parent / "data" / "normalize_cases.tsv"
CORPUS_FILE = Path(__file__).parents[1] / "src" / "toktts" / "data" / "ljspeech" / "train.txt"


def load_cases(path: Path = CASES_FILE) -> list[tuple[str, int, str, str]]:
    """(group, line number, input, expected) for every INPUT<TAB>EXPECTED line. A "#" line without
    a tab is a comment; the last one before a case names its group."""
    cases = []
    group = ""
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if "\t" not in line:
            if line.startswith("#"):
                group = line.lstrip("#").strip()
            elif line.strip():
                raise ValueError(f"{path.name}:{number}: a case is INPUT<TAB>EXPECTED, got {line!r}")
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path.name}:{number}: one tab per case, got {len(fields) - 1}: {line!r}")
        cases.append((group, number, fields[0], fields[1]))
    return cases


CASES = load_cases()
ALLOWED = set(VOCAB.chars[VOCAB.pad_id + 1:])

# Pieces that exercise every rule and their interplay far more often than random Unicode does.
FRAGMENTS = [
    "0", "5", "12", "1997", "2005", "3.14", "1,000", ".5", "007", "3rd", "1st", "'90s", "1990s", "10:05",
    "3:30", "p.m.", "am", "$", "€", "£", "¢", "°", "%", "&", "+", "@", "#", "/", "=", "<", "x", "km",
    "ft", "Mr", "Mrs", "Dr", "St", "Jr", "Co", "No", "vs", "etc", "e.g", "i.e", "Ph", "D", "U.S.",
    "A", "I", "a", "s", "'s", "May", "Jan", "March", "Henry", "Chapter", "World War", "VIII", "IV",
    "XIV", "FBI", "NASA", "HELLO", "WORLD", "www.", ".com", "http://", "user_name", "@", "example",
    ".", ",", ";", ":", "!", "?", "-", "--", "'", '"', "(", ")", "[", "…", "—", "–", "“", "”", "’",
    "é", "ß", "ﬁ", "½", "²", "Ⅷ", "٣", "😀", "東", "\u00a0", "\u200b", "\t", "\n", " ", " ", " ",
]
texty = st.lists(st.sampled_from(FRAGMENTS), max_size=16).map("".join)
any_text = st.one_of(texty, st.text(), st.text(alphabet=st.characters(max_codepoint=0x7F)))
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --------------------------------------------------------------------------------------------
# The case file


def test_case_file_covers_every_class_with_several_cases():
    assert len(CASES) >= 150
    per_group: dict[str, int] = {}
    for group, *_ in CASES:
        per_group[group.lower()] = per_group.get(group.lower(), 0) + 1
    for topic in ("cardinals", "ordinals", "years", "currency", "percentages", "times", "dates",
                  "fractions", "units", "abbreviations", "symbols", "roman numerals", "acronyms",
                  "urls", "unicode", "whitespace", "bad input"):
        count = sum(n for group, n in per_group.items() if topic in group)
        assert count >= 4, f"only {count} cases about {topic!r} in {CASES_FILE.name}"


@pytest.mark.parametrize(("group", "number", "text", "expected"), CASES,
                         ids=[f"line{case[1]}" for case in CASES])
def test_normalize_case(group: str, number: int, text: str, expected: str):
    assert normalize(text) == expected, f"{CASES_FILE.name}:{number} ({group}): {text!r}"


def test_case_outputs_are_fixed_points_and_in_the_vocabulary():
    for _, number, text, _ in CASES:
        out = normalize(text)
        assert normalize(out) == out, f"line {number}: {text!r} -> {out!r}"
        assert set(out) <= ALLOWED, f"line {number}: {set(out) - ALLOWED}"


# --------------------------------------------------------------------------------------------
# Properties over arbitrary text


@PROPERTY_SETTINGS
@given(any_text)
def test_output_is_speakable_and_in_the_vocabulary(text: str):
    out = normalize(text)
    assert not any(c.isdigit() for c in out), out
    assert set(out) <= ALLOWED, set(out) - ALLOWED
    assert out == out.strip() and "  " not in out
    assert out == "" or any("a" <= c <= "z" for c in out)


@PROPERTY_SETTINGS
@given(any_text)
def test_normalize_is_idempotent(text: str):
    out = normalize(text)
    assert normalize(out) == out


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_any_integer_is_read_without_digits(n: int):
    out = normalize(f"{n:,}")
    assert out and not any(c.isdigit() for c in out)
    assert out.startswith("minus ") == (n < 0)


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("text", ["", " ", "   \n\t ", "😀🎉🙂", "!!! ??? ...", "()[]{}<>", "\x00\x07\x1b",
                                  "—–-", "\u200b\u00a0", "*^_|~\\"])
def test_nothing_speakable_gives_empty_string(text: str):
    assert normalize(text) == ""


@pytest.mark.parametrize("value", [None, b"bytes", 5, ["a"]])
def test_non_text_is_a_clear_error(value):
    with pytest.raises(TokttsError, match="expects a str"):
        normalize(value)


def test_one_megabyte_of_text_is_quick():
    sample = [text for _, _, text, _ in CASES] + CORPUS_FILE.read_text(encoding="utf-8").split("\n")[:2000]
    unit = " ".join(sample) + " "
    text = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
    start = time.perf_counter()
    out = normalize(text)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"{elapsed:.1f} s for 1 MB"
    assert len(out) > 500_000 and not any(c.isdigit() for c in out)


@pytest.mark.parametrize("unit", ["1", "12 ", "1.", "1,", "1-", "1/", "1:", " ", "(", ".", "-", "'", "A",
                                  "a.", "www.", "a@", "$", "Mr.", "x"])
def test_long_runs_take_linear_time(unit: str):
    # A regex that backtracks over a run would take minutes here rather than a fraction of a second.
    text = unit * (300_000 // len(unit))
    start = time.perf_counter()
    out = normalize(text)
    assert time.perf_counter() - start < 5
    assert not any(c.isdigit() for c in out)


def test_calls_do_not_influence_each_other():
    before = normalize("The FBI and 5 km")
    normalize("STOP THE PRESSES NOW PLEASE")  # shouted text reads capitals as words
    normalize("Henry VIII " * 50)
    assert normalize("The FBI and 5 km") == before == "the f b i and five kilometers"


# --------------------------------------------------------------------------------------------
# The vocabulary


def test_vocabulary_layout():
    assert VOCAB.pad_id == 0 and VOCAB.chars[0] == "<pad>"
    assert len(VOCAB) == len(VOCAB.chars) == len(set(VOCAB.chars))
    assert set(VOCAB.chars[1:]) == set(PUNCTUATION) | set(string.ascii_lowercase)
    assert not any(c.isdigit() or c.isupper() for c in VOCAB.chars[1:])


def test_encode_decode_round_trip_on_every_case_output():
    for _, _, text, _ in CASES:
        out = normalize(text)
        ids = VOCAB.encode(out)
        assert len(ids) == len(out) and all(0 < i < len(VOCAB) for i in ids)
        assert VOCAB.decode(ids) == out


def test_encode_maps_obvious_characters():
    vocab = Vocab()
    assert vocab.encode("HELLO") == vocab.encode("hello")
    assert vocab.encode("café") == vocab.encode("cafe")
    assert vocab.encode("“it’s”") == vocab.encode("\"it's\"")
    assert vocab.encode("a\tb\nc") == vocab.encode("a b c")


def test_encode_drops_unknown_characters_with_one_warning_each(caplog):
    vocab = Vocab()
    with caplog.at_level(logging.WARNING, logger="toktts.text"):
        ids = vocab.encode("a5b5€c5")
        assert vocab.decode(ids) == "abc"
        assert len(caplog.records) == 2
        assert "'5'" in caplog.records[0].getMessage() and "'€'" in caplog.records[1].getMessage()
        vocab.encode("5€5")
        assert len(caplog.records) == 2  # already reported


def test_decode_skips_padding_and_rejects_unknown_ids():
    a = VOCAB.chars.index("a")
    assert VOCAB.decode([VOCAB.pad_id, a, VOCAB.pad_id, a]) == "aa"
    for bad in (len(VOCAB), -1):
        with pytest.raises(TokttsError, match="outside the vocabulary"):
            VOCAB.decode([a, bad])


def test_decode_accepts_tensor_ids():
    torch = pytest.importorskip("torch")
    ids = torch.tensor(VOCAB.encode("hello, world."))
    assert VOCAB.decode(ids) == "hello, world."


def test_vocab_rebuilds_from_its_character_list():
    assert Vocab(list(VOCAB.chars)) == VOCAB
    for bad in (["a", "b"], ["<pad>", "a", "a"], ["<pad>", "ab"], []):
        with pytest.raises(TokttsError):
            Vocab(bad)
