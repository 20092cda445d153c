"""SSML and lexicons: what the model is given to read."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toktts.errors import TokttsError
from toktts.ssml import Part, is_ssml, parse, read
from toktts.text import Lexicon


@pytest.mark.parametrize("ssml, parts", [
    ('<speak>Hello <break time="700ms"/> world.</speak>', [Part("Hello", 0.7), Part("world.")]),
    ('Hello <break time="2s"/>world', [Part("Hello", 2.0), Part("world")]),  # no <speak>: still SSML
    ('<speak>a<break strength="x-strong"/>b<break strength="none"/>c</speak>', [Part("a", 1.0), Part("b", 0.0),
                                                                               Part("c")]),
    ('<speak>a<break time="99s"/>b</speak>', [Part("a", 10.0), Part("b")]),  # bounded
    ('<speak><say-as interpret-as="characters">IBM</say-as> 7</speak>', [Part("I B M 7")]),
    ('<speak><say-as interpret-as="characters">A1</say-as></speak>', [Part("A one")]),
    ('<speak><say-as interpret-as="telephone">(555) 010-9999</say-as></speak>',
     [Part("five five five, zero one zero, nine nine nine nine")]),
    ('<speak><say-as interpret-as="cardinal">1,234</say-as></speak>',
     [Part("one thousand, two hundred and thirty-four")]),
    ('<speak><say-as interpret-as="ordinal">21</say-as></speak>', [Part("twenty-first")]),
    ('<speak><sub alias="World Wide Web Consortium">W3C</sub></speak>', [Part("World Wide Web Consortium")]),
    ('<speak><p>One.</p><p><s>Two</s><s>three</s></p></speak>',
     [Part("One.", 0.8), Part("Two", 0.4), Part("three", 0.8)]),
    ('<speak xmlns="http://www.w3.org/2001/10/synthesis"><prosody rate="slow">slow</prosody> '
     '<emphasis>loud</emphasis><mark name="m"/> <!-- note --> end</speak>', [Part("slow loud end")]),
])
def test_parse(ssml, parts):
    assert is_ssml(ssml)
    assert parse(ssml) == parts


@pytest.mark.parametrize("text, words", [
    ("<speak>hi & bye</speak>", "cannot be read (not well-formed"),
    ("<speak>open <s>never closed</speak>", "mismatched tag"),
    ('<speak>a<break time="soon"/></speak>', "is not a duration"),
    ('<speak>a<break strength="huge"/></speak>', "strength=\"huge\"> is unknown"),
    ('<!DOCTYPE x [<!ENTITY a "aaaa">]><speak>&a;</speak>', "may not declare"),
])
def test_bad_ssml_is_one_clear_line(text, words):
    with pytest.raises(TokttsError) as info:
        read(text)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_plain_text_is_not_ssml_and_tags_are_never_read_aloud():
    assert not is_ssml("1 < 2 and 3 > 2") and not is_ssml("x<y")
    spoken = read('<speak>Hello <break time="1s"/><voice name="x">there</voice>, <audio src="a.wav">ding</audio>.</speak>')
    text = " ".join(p.text for p in spoken)
    assert text == "hello there, ding." and "voice" not in text and "break" not in text
    assert [p.pause for p in spoken] == [1.0, None]


def test_a_pause_after_nothing_speakable_joins_the_one_before():
    assert read('<speak>Hi. <break time="1s"/> 🙂 <break time="2s"/> Bye.</speak>') == [Part("hi.", 2.0),
                                                                                         Part("bye.")]
    with pytest.raises(TokttsError, match="nothing to say"):
        read('<speak><break time="1s"/></speak>')


def test_lexicon_respells_whole_words_in_any_case(tmp_path):
    lexicon = Lexicon({"Nguyen": "win", "SQL": "sequel", "New York": "noo york"})
    assert lexicon("SQL and sqlite by NGUYEN in new york") == "sequel and sqlite by win in noo york"
    path = tmp_path / "lexicon.txt"
    path.write_text("# names\nNguyen   win\n\nGIF jif\n")
    assert Lexicon.from_file(path).entries == {"nguyen": "win", "gif": "jif"}
    assert [p.text for p in read("A GIF by Nguyen.", Lexicon.from_file(path))] == ["a jif by win."]
    path.write_text("Nguyen\n")
    with pytest.raises(TokttsError, match=r"lexicon.txt:1: 'Nguyen' has no respelling"):
        Lexicon.from_file(path)
    path.write_bytes(b"caf\xe9 cafe\n")
    with pytest.raises(TokttsError, match="not UTF-8"):
        Lexicon.from_file(path)
    with pytest.raises(TokttsError, match="not found"):
        Lexicon.from_file(tmp_path / "none.txt")


_PIECES = [*"<>/=\"' abs.-&;!", "<speak>", "</speak>", "<break/>", '<break time="1s"/>', "<s>", "</s>",
           '<say-as interpret-as="characters">', "</say-as>", "&amp;", "hello", "42"]


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(_PIECES), max_size=20).map("".join))
def test_any_markup_reads_or_fails_in_one_line(text):
    try:
        parts = read(text)
    except TokttsError as e:
        assert "\n" not in str(e)
        return
    assert parts and all(p.text.strip() and "<" not in p.text and ">" not in p.text for p in parts)
    assert all(p.pause is None or 0 <= p.pause <= 10 for p in parts)
